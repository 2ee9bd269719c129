//! Compiles `proto/secumon/v1/secumon.proto` with protox (pure Rust), so a fresh machine
//! needs no system `protoc`. Only the messages are generated here; the gRPC service code
//! is generated in `secumon-transport`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/secumon/v1/secumon.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure().build_client(false).build_server(false).compile_fds(descriptors)?;
    Ok(())
}
