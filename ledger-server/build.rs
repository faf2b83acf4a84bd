//! Compile `proto/` without a system `protoc`: protox parses the files into a
//! descriptor set, tonic-build generates from it, and the set is written out for
//! server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?)
        .join("..")
        .join("proto");
    let files = [
        root.join("timebank/v1/ledger.proto"),
        root.join("timebank/v1/queries.proto"),
        root.join("timebank/v1/partners.proto"),
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("timebank_v1_descriptor.bin"), fds.encode_to_vec())?;
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        // tonic's ProstCodec but for one answer: an undecodable request is
        // INVALID_ARGUMENT with an ErrorInfo (src/codec.rs says why).
        .codec_path("crate::codec::ProtoCodec")
        .compile_fds(fds)?;
    Ok(())
}
