//! Compiles `proto/` with protox (a pure-Rust protobuf compiler), so building
//! moat never needs `protoc` on the machine.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "moat/marketdata/v1/marketdata.proto",
        "moat/state/v1/state.proto",
        "moat/gateway/v1/gateway.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let fds = protox::compile(files, [&root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("moat_descriptor.bin"), fds.encode_to_vec())?;
    // A strategy's state travels as `Bytes`: the state service keeps what it
    // received and answers loads from it without copying a megabyte.
    tonic_prost_build::configure()
        .bytes(".moat.state.v1.SaveRequest.data")
        .bytes(".moat.state.v1.LoadResponse.data")
        .bytes(".moat.gateway.v1.SaveStateRequest.data")
        .bytes(".moat.gateway.v1.LoadStateResponse.data")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
