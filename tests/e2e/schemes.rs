//! The release binary's stores are the spec's: `gen://` (the test kit's generated store) is
//! an unknown scheme there, a usage error (exit 2, nothing read), and the kit's latency
//! variable is not read. The kit's `gc_partition_kit` has both (`kit/tests/e2e_gen.rs`).

use common::*;

/// What `gc_partition` says of a store URL it does not know.
const UNKNOWN: &str = "is not file:///ABS/DIR, gs://, s3://, az:// or memory://";

#[test]
fn gc_partition_refuses_gen_urls_as_an_unknown_scheme() {
    let fx = partition(&Backend::File, |_| {});
    let live = fx.live_path.to_str().unwrap();
    let args = ["--partition", &fx.partition, "--live-snapshots", live, "--cutoff", "7d"];
    for url in ["gen://?chunks=1000&seed=1", "gen:?chunks=10"] {
        let out = gc_binary(&[&args[..], &["--store", url]].concat(), None, &[]);
        assert_eq!(code(&out), 2, "{url}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("store URL {url:?} {UNKNOWN}")), "{url}: {err}");
    }
}

#[test]
fn gc_partition_does_not_read_the_kits_latency_variable() {
    let fx = partition(&Backend::File, |_| {});
    // The kit would refuse this profile; `gc_partition` does not look at it.
    let env = [("GC_PARTITION_SIM_LATENCY".to_owned(), "no-such-profile".to_owned())];
    let live = fx.live_path.to_str().unwrap();
    let args = ["--partition", &fx.partition, "--live-snapshots", live, "--cutoff", "7d", "--store", &fx.url];
    let out = gc_binary(&args, None, &env);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains("GC_PARTITION_SIM_LATENCY"), "{}", stderr(&out));
}
