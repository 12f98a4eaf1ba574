//! `az://` authorized by a shared access signature instead of the account key (spec 10.2:
//! the collector's own requests carry the bucket's `Auth` — Azure shared key, SAS or token —
//! applied by `object_store`'s signer). With only `AZURE_STORAGE_SAS_KEY` set:
//! - an account SAS lists and reads the partition (a dry run plans exactly the garbage),
//!   and one signed with another key is refused, the store untouched;
//! - a container (service) SAS executes the deletes: Blob Batches whose sub-requests each
//!   carry the signature and the listed ETag's `If-Match` delete exactly the garbage.
//!
//! Azurite 3.35 refuses a container's Blob Batch under an account SAS (HTTP 500: its table of
//! account-SAS permissions has no entry for `Container_SubmitBatch`; found with
//! `AZURITE_DEBUG_LOG`), so the deletes are tested under a container SAS, on a partition in
//! one container.
//!
//! Ignored unless `GC_TEST_AZ_ENDPOINT` was set at build time (`scripts/test` sets it).

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use common::{
    AZURITE_ACCOUNT, AZURITE_KEY, Backend, EXACT_FPR, Fixture, code, gc_binary, json_stdout, partition, stderr,
};
use hmac::{KeyInit, Mac};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

const EXPIRY: &str = "2099-01-01T00:00:00Z";
const VERSION: &str = "2019-12-12";

/// The base64 HMAC-SHA256 of `to_sign` under `key` (base64), as a SAS's `sig`.
fn signature(key: &str, to_sign: &str) -> String {
    let key = BASE64_STANDARD.decode(key).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(to_sign.as_bytes());
    BASE64_STANDARD.encode(mac.finalize().into_bytes())
}

/// A SAS value as it goes in a query string.
fn encode(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// An account SAS of `account` signed with `key`: blobs, every resource type,
/// read/write/delete/list/add/create, over HTTP or HTTPS, until 2099 (version 2019-12-12's
/// string to sign: <https://learn.microsoft.com/rest/api/storageservices/create-account-sas>).
fn account_sas(account: &str, key: &str) -> String {
    let (permissions, services, types, protocols) = ("rwdlac", "b", "sco", "https,http");
    let to_sign = format!("{account}\n{permissions}\n{services}\n{types}\n\n{EXPIRY}\n\n{protocols}\n{VERSION}\n");
    let sig = signature(key, &to_sign);
    format!(
        "sv={VERSION}&ss={services}&srt={types}&sp={permissions}&se={}&spr={}&sig={}",
        encode(EXPIRY),
        encode(protocols),
        encode(&sig)
    )
}

/// A service SAS of one `container`: read/delete/list, until 2099 (version 2019-12-12's string
/// to sign: <https://learn.microsoft.com/rest/api/storageservices/create-service-sas>).
fn container_sas(account: &str, key: &str, container: &str) -> String {
    let (permissions, protocols) = ("rdl", "https,http");
    let resource = format!("/blob/{account}/{container}");
    let to_sign = format!("{permissions}\n\n{EXPIRY}\n{resource}\n\n\n{protocols}\n{VERSION}\nc\n\n\n\n\n\n");
    let sig = signature(key, &to_sign);
    format!("sv={VERSION}&sr=c&sp={permissions}&se={}&spr={}&sig={}", encode(EXPIRY), encode(protocols), encode(&sig))
}

/// `gc_partition` on the fixture, authorized by `sas` alone (no account key in its
/// environment).
fn gc_with_sas(fx: &Fixture, sas: &str, extra: &[&str]) -> std::process::Output {
    gc_authorized_by(fx, ("AZURE_STORAGE_SAS_KEY", sas), extra)
}

/// `gc_partition` on the fixture, authorized by the variable `credential` alone (no account
/// key in its environment).
pub(crate) fn gc_authorized_by(fx: &Fixture, credential: (&str, &str), extra: &[&str]) -> std::process::Output {
    let mut env: Vec<(String, String)> =
        fx.backend.env().into_iter().filter(|(k, _)| k != "AZURE_STORAGE_ACCOUNT_KEY").collect();
    env.push((credential.0.to_owned(), credential.1.to_owned()));
    let live = fx.live_path.to_str().unwrap();
    let mut args = vec!["--partition", &fx.partition, "--live-snapshots", live, "--cutoff", "7d"];
    args.extend_from_slice(extra);
    args.extend(["--store", &fx.url]);
    gc_binary(&args, None, &env)
}

#[test]
#[cfg_attr(not(gc_test_az), ignore = "no test server: scripts/test starts Azurite")]
fn an_account_sas_lists_the_partition_and_a_forged_one_is_refused() {
    let fx = partition(&Backend::az(), |c| c.seed = 31);
    let sets = fx.summary.sets.clone().unwrap();
    let before = fx.fingerprint();
    let other_key = BASE64_STANDARD.encode([7u8; 64]);
    let forged = gc_with_sas(&fx, &account_sas(AZURITE_ACCOUNT, &other_key), &["--execute"]);
    assert_ne!(code(&forged), 0, "a signature of another key was accepted: {}", stderr(&forged));
    let sas = account_sas(AZURITE_ACCOUNT, AZURITE_KEY);
    let out = gc_with_sas(&fx, &sas, &["--verify", "--output", "json", "--bloom-fpr", EXACT_FPR]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = json_stdout(&out);
    assert_eq!(json["planned_deletes"], sets.garbage.len(), "{json}");
    assert_eq!(json["verify"]["ok"], true);
    assert_eq!(fx.fingerprint(), before, "neither run changed the store");
}

#[test]
#[cfg_attr(not(gc_test_az), ignore = "no test server: scripts/test starts Azurite")]
fn a_container_sas_deletes_the_garbage_in_conditional_batches() {
    let fx = partition(&Backend::az(), |c| {
        c.seed = 32;
        c.extra_locations = 0;
    });
    let sas = container_sas(AZURITE_ACCOUNT, AZURITE_KEY, &fx.meta_bucket);
    let out = gc_with_sas(&fx, &sas, &["--execute", "--verify", "--output", "json", "--bloom-fpr", EXACT_FPR]);
    assert_the_garbage_deleted_in_batches(&fx, &out);
}

/// `out`, an `--execute --verify` with an exact filter on `fx`, deleted exactly the garbage,
/// in conditional Blob Batches (no HEAD), and nothing else.
pub(crate) fn assert_the_garbage_deleted_in_batches(fx: &Fixture, out: &std::process::Output) {
    assert_eq!(code(out), 0, "{}", stderr(out));
    let sets = fx.summary.sets.clone().unwrap();
    let json = json_stdout(out);
    assert_eq!(json["deleted"], sets.garbage.len(), "{json}");
    assert_eq!(json["delete_failures"], 0);
    assert_eq!(json["verify"]["ok"], true);
    assert_eq!(json["requests"]["head"], 0, "the listed ETags condition the deletes: {json}");
    assert!(json["requests"]["batch_requests"].as_u64().unwrap() >= 1, "{json}");
    for (location, id) in &sets.garbage {
        assert!(!fx.exists(location.bucket(), &location.chunk_key(id)), "garbage {id:?} is still there");
    }
    for (location, id) in sets.referenced.iter().chain(&sets.young) {
        assert!(fx.exists(location.bucket(), &location.chunk_key(id)), "a kept chunk {id:?} was deleted");
    }
}
