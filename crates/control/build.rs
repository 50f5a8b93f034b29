//! Installs Swagger UI from npm before it is embedded (see ../build-support/npm.rs).

#[path = "../build-support/npm.rs"]
mod npm;

fn main() {
    npm::ensure(
        env!("CARGO_MANIFEST_DIR"),
        "node_modules/swagger-ui-dist/swagger-ui-bundle.js",
    );
}
