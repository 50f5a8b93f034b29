//! Installs htmx from npm before it is embedded (see ../build-support/npm.rs).

#[path = "../build-support/npm.rs"]
mod npm;

fn main() {
    npm::ensure(
        env!("CARGO_MANIFEST_DIR"),
        "node_modules/htmx.org/dist/htmx.min.js",
    );
}
