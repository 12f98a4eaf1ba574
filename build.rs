//! Compiles `proto/snapshot.proto` with `protox` (pure Rust, no system `protoc`) and
//! `prost-build`. `bytes` fields become `bytes::Bytes` so chunk ids decode without copying.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/snapshot.proto");
    let fds = protox::compile(["proto/snapshot.proto"], ["proto"])?;
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    config.compile_fds(fds)?;
    Ok(())
}
