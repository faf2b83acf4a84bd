//! Generates the server side of KurrentDB's Streams service for the in-process
//! KurrentDB stand-in of the tests (`tests/kurrentdb_fake/`), from the `.proto` files
//! vendored from the `kurrentdb` crate (`tests/kurrentdb_fake/protos/`, see the README
//! there). protox parses them (no system `protoc`), tonic-build generates server code
//! only: the client side is the real `kurrentdb` crate under test.
//!
//! Option not taken: committing the generated Rust, which drifts silently from the
//! protos and hides what a protocol change touches.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?)
        .join("tests")
        .join("kurrentdb_fake")
        .join("protos");
    for file in ["streams.proto", "shared.proto", "status.proto", "code.proto"] {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let fds = protox::compile([root.join("streams.proto")], [&root])?;
    tonic_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
