//! Compiles `proto/petstore/v1/*.proto` without a `protoc` binary: protox parses the
//! files into a descriptor set (also written to `OUT_DIR` for server reflection) and
//! tonic-prost-build generates the messages, servers and clients from it.

use std::path::PathBuf;

use protox::prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/petstore/v1/petstore.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let fds = protox::compile(protos, ["proto"])?;
    std::fs::write(out_dir.join("petstore_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
