//! Makes sure the browser assets from npm (htmx; see the repository's package.json) are
//! installed before they are embedded. They are never checked in. The control plane's build
//! script does the same for Swagger UI; a lock directory keeps two of ours from running npm at
//! once, and a failed run is retried once, in case the other script's `npm ci` got in the way.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let marker = root.join("node_modules/htmx.org/dist/htmx.min.js");
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
    // `npm install` keeps what is there (unlike `npm ci`), so a concurrent Swagger UI check
    // never sees node_modules vanish; with a lock file it installs exactly the locked versions.
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(root)
        .status();
    matches!(status, Ok(s) if s.success()) && marker.exists()
}
