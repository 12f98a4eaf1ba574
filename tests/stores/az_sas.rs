//! `az://` authorized by a shared access signature instead of the account key (spec 10.2:
//! the collector's own requests carry the bucket's `Auth` — Azure shared key, SAS or token —
//! applied by `object_store`'s signer). With only `AZURE_STORAGE_SAS_KEY` set, Azurite lists
//! the partition, and the Blob Batches of conditional deletes (each sub-request carrying the
//! signature) delete exactly the garbage; a signature made with another key is refused and
//! the store is left untouched.
//!
//! Ignored unless `GC_TEST_AZ_ENDPOINT` was set at build time (`scripts/test` sets it).

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use common::{
    AZURITE_ACCOUNT, AZURITE_KEY, Backend, EXACT_FPR, Fixture, code, gc_binary, json_stdout, partition, stderr,
};
use hmac::{KeyInit, Mac};

/// An account SAS of `account` signed with `key` (base64): blobs, every resource type,
/// read/write/delete/list/add/create, over HTTP or HTTPS, until 2099 (version 2019-12-12's
/// string to sign: <https://learn.microsoft.com/rest/api/storageservices/create-account-sas>).
fn account_sas(account: &str, key: &str) -> String {
    let (version, permissions, services, types, expiry, protocols) =
        ("2019-12-12", "rwdlac", "b", "sco", "2099-01-01T00:00:00Z", "https,http");
    let to_sign = format!("{account}\n{permissions}\n{services}\n{types}\n\n{expiry}\n\n{protocols}\n{version}\n");
    let key = BASE64_STANDARD.decode(key).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(to_sign.as_bytes());
    let signature = BASE64_STANDARD.encode(mac.finalize().into_bytes());
    let encode = |s: &str| s.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D").replace(':', "%3A");
    format!(
        "sv={version}&ss={services}&srt={types}&sp={permissions}&se={}&spr={}&sig={}",
        encode(expiry),
        protocols.replace(',', "%2C"),
        encode(&signature)
    )
}

/// `gc_partition` on the fixture, authorized by `sas` alone (no account key in its
/// environment).
fn gc_with_sas(fx: &Fixture, sas: &str, extra: &[&str]) -> std::process::Output {
    let mut env: Vec<(String, String)> =
        fx.backend.env().into_iter().filter(|(k, _)| k != "AZURE_STORAGE_ACCOUNT_KEY").collect();
    env.push(("AZURE_STORAGE_SAS_KEY".to_owned(), sas.to_owned()));
    let live = fx.live_path.to_str().unwrap();
    let mut args = vec!["--partition", &fx.partition, "--live-snapshots", live, "--cutoff", "7d"];
    args.extend_from_slice(extra);
    args.extend(["--store", &fx.url]);
    gc_binary(&args, None, &env)
}

#[test]
#[cfg_attr(not(gc_test_az), ignore = "no test server: scripts/test starts Azurite")]
fn a_shared_access_signature_lists_and_deletes_in_batches_as_the_key_does() {
    let fx = partition(&Backend::az(), |c| c.seed = 31);
    let sets = fx.summary.sets.clone().unwrap();
    let before = fx.fingerprint();
    let other_key = BASE64_STANDARD.encode([7u8; 64]);
    let forged = gc_with_sas(&fx, &account_sas(AZURITE_ACCOUNT, &other_key), &["--execute"]);
    assert_ne!(code(&forged), 0, "a signature of another key was accepted: {}", stderr(&forged));
    assert_eq!(fx.fingerprint(), before, "a refused run changed the store");

    let sas = account_sas(AZURITE_ACCOUNT, AZURITE_KEY);
    let out = gc_with_sas(&fx, &sas, &["--execute", "--verify", "--output", "json", "--bloom-fpr", EXACT_FPR]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = json_stdout(&out);
    assert_eq!(json["deleted"], sets.garbage.len(), "{json}");
    assert_eq!(json["delete_failures"], 0);
    assert_eq!(json["verify"]["ok"], true);
    assert_eq!(json["requests"]["head"], 0, "the listed ETags condition the deletes: {json}");
    for (location, id) in &sets.garbage {
        assert!(!fx.exists(location.bucket(), &location.chunk_key(id)), "garbage {id:?} is still there");
    }
    for (location, id) in sets.referenced.iter().chain(&sets.young) {
        assert!(fx.exists(location.bucket(), &location.chunk_key(id)), "a kept chunk {id:?} was deleted");
    }
}
