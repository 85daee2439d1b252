//! Compiles `proto/v1beta1/deviceplugin.proto` (the kubelet device plugin API) into Rust.
//!
//! `protox` parses the proto in pure Rust, so building hal0 needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTO: &str = "proto/v1beta1/deviceplugin.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile(["v1beta1/deviceplugin.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
