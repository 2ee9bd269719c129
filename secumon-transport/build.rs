//! Generates the gRPC client and server for `secumon.v1.Ingest` from the proto kept in
//! `secumon-core`, with protox (no system `protoc`). Messages come from `secumon_core::proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = "../secumon-core/proto";
    let proto = "../secumon-core/proto/secumon/v1/secumon.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], [root])?;
    tonic_prost_build::configure().extern_path(".secumon.v1", "::secumon_core::proto").compile_fds(descriptors)?;
    Ok(())
}
