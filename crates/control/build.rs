//! Makes sure the browser assets from npm (see the repository's package.json) are installed
//! before they are embedded. They are never checked in.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let marker = root.join("node_modules/swagger-ui-dist/swagger-ui-bundle.js");
    println!("cargo:rerun-if-changed=../../package-lock.json");
    if marker.exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(&root)
        .status();
    match status {
        Ok(s) if s.success() && marker.exists() => {}
        Ok(s) => {
            println!(
                "cargo:warning=`npm ci` in {} failed ({s}); install Node.js and npm, then run `npm ci` there",
                root.display()
            );
            std::process::exit(1);
        }
        Err(e) => {
            println!(
                "cargo:warning=cannot run npm ({e}): install Node.js and npm, then run `npm ci` in {}",
                root.display()
            );
            std::process::exit(1);
        }
    }
}
