//! Makes sure the browser assets from npm (Swagger UI; see the repository's package.json) are
//! installed before they are embedded. They are never checked in. The portal's build script
//! does the same for htmx: both take the same lock directory, so only one runs npm at a time,
//! and both use `npm install` (which keeps what is there) rather than `npm ci` (which deletes
//! node_modules first and would pull the other's files away mid-build).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let marker = root.join("node_modules/swagger-ui-dist/swagger-ui-bundle.js");
    println!("cargo:rerun-if-changed=../../package-lock.json");
    if marker.exists() {
        return;
    }
    let lock = root.join("target/.npm-install.lock");
    let _ = std::fs::create_dir_all(root.join("target"));
    let started = Instant::now();
    while std::fs::create_dir(&lock).is_err() {
        if marker.exists() {
            return;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = std::fs::remove_dir(&lock);
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let ok = marker.exists() || install(&root, &marker) || {
        std::thread::sleep(Duration::from_secs(2));
        install(&root, &marker)
    };
    let _ = std::fs::remove_dir(&lock);
    if !ok {
        println!(
            "cargo:warning=cannot install the npm packages in {}: install Node.js and npm, then run `npm ci` there",
            root.display()
        );
        std::process::exit(1);
    }
}

fn install(root: &Path, marker: &Path) -> bool {
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(root)
        .status();
    matches!(status, Ok(s) if s.success()) && marker.exists()
}
