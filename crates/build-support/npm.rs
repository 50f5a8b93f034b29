//! Shared by the build scripts that embed browser assets from npm (Swagger UI in `control`,
//! htmx in `portal`; see the repository's package.json). The assets are never checked in: this
//! installs them when they are missing. Both scripts take the same lock directory, so only one
//! runs npm at a time, and both use `npm install` (which keeps what is there) rather than
//! `npm ci` (which deletes node_modules first and would pull the other's files away).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Makes sure `marker` (relative to the repository root) exists, installing the npm packages
/// if needed; exits the build with a clear message when that fails.
pub fn ensure(manifest_dir: &str, marker: &str) {
    let root = PathBuf::from(manifest_dir).join("../..");
    let marker = root.join(marker);
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
