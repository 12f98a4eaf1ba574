//! Compiles `proto/snapshot.proto` with `protox` (pure Rust, no system `protoc`) and
//! `prost-build`. `bytes` fields become `bytes::Bytes` so chunk ids decode without copying.
//!
//! Also turns the test servers' variables into cfgs: `gc_test_s3` when `GC_TEST_S3_ENDPOINT`
//! is set, `gc_test_gcs` when `GC_TEST_GCS_ENDPOINT` is, `gc_test_moto` when
//! `GC_TEST_MOTO_ENDPOINT` is (moto's S3 server, which keeps versions), `gc_test_az` when
//! `GC_TEST_AZ_ENDPOINT` is (Azurite), `gc_test_az_tls` when `GC_TEST_AZ_TLS_ENDPOINT` is
//! (Azurite over HTTPS with OAuth on). Tests that need a server are
//! ignored without its cfg, so a plain `cargo test` never counts them as passed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/snapshot.proto");
    let servers = [
        ("GC_TEST_S3_ENDPOINT", "gc_test_s3"),
        ("GC_TEST_GCS_ENDPOINT", "gc_test_gcs"),
        ("GC_TEST_MOTO_ENDPOINT", "gc_test_moto"),
        ("GC_TEST_AZ_ENDPOINT", "gc_test_az"),
        ("GC_TEST_AZ_TLS_ENDPOINT", "gc_test_az_tls"),
    ];
    for (var, cfg) in servers {
        println!("cargo:rerun-if-env-changed={var}");
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            println!("cargo:rustc-cfg={cfg}");
        }
    }
    let fds = protox::compile(["proto/snapshot.proto"], ["proto"])?;
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    config.compile_fds(fds)?;
    Ok(())
}
