//! `az://` authorized by a bearer token (`AZURE_STORAGE_TOKEN`), as a managed or workload
//! identity authorizes it in production, on an Azurite that serves HTTPS with OAuth on
//! (`scripts/azurite-server run-tls`): a bearer token is refused over plain HTTP, and its
//! issuer, audience and lifetime are checked (not its signature). The collector's own
//! requests (raw list pages, conditional Blob Batches) carry the token, set by
//! `object_store`'s signer, over the HTTP client built from the environment's client settings
//! (`AZURE_ALLOW_INVALID_CERTIFICATES`: the server's certificate is self-signed).
//!
//! Ignored unless `GC_TEST_AZ_TLS_ENDPOINT` was set at build time (`scripts/test` sets it).

use base64::Engine;
use base64::prelude::BASE64_URL_SAFE_NO_PAD;
use common::{Backend, EXACT_FPR, Fixture, code, json_stdout, partition, stderr};

use super::az_sas::{assert_the_garbage_deleted_in_batches, gc_authorized_by};

/// Azure Storage's audience, and an issuer of Azure's token service.
const STORAGE: &str = "https://storage.azure.com";
const ISSUER: &str = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/";

/// A JSON Web Token for `audience`, valid from a minute ago for `lifetime_s` seconds (negative:
/// expired). Its signature is not a real one: Azurite does not check it.
fn token(audience: &str, lifetime_s: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    let claims = serde_json::json!({
        "aud": audience, "iss": ISSUER, "iat": now - 60, "nbf": now - 60, "exp": now + lifetime_s,
    });
    let part = |v: serde_json::Value| BASE64_URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{}", part(header), part(claims), BASE64_URL_SAFE_NO_PAD.encode("not checked"))
}

/// `gc_partition` on the fixture, authorized by `token` alone (no account key in its
/// environment).
fn gc_with_token(fx: &Fixture, token: &str, extra: &[&str]) -> std::process::Output {
    gc_authorized_by(fx, ("AZURE_STORAGE_TOKEN", token), extra)
}

#[test]
#[cfg_attr(not(gc_test_az_tls), ignore = "no test server: scripts/test starts Azurite over HTTPS")]
fn a_bearer_token_lists_and_deletes_in_conditional_batches_and_a_bad_one_is_refused() {
    let fx = partition(&Backend::az_tls(), |c| c.seed = 33);
    let sets = fx.summary.sets.clone().unwrap();
    let before = fx.fingerprint();
    for (bad, why) in [(token(STORAGE, -30), "expired"), (token("https://vault.azure.net", 3600), "another audience")] {
        let out = gc_with_token(&fx, &bad, &["--execute", "--max-delete-fraction", "1"]);
        assert_eq!(code(&out), 5, "a token of {why}: the listing is refused: {}", stderr(&out));
        assert!(stderr(&out).contains("403"), "{why}: {}", stderr(&out));
    }
    assert_eq!(fx.fingerprint(), before, "a refused token changed the store");

    let good = token(STORAGE, 3600);
    let out = gc_with_token(&fx, &good, &["--verify", "--output", "json", "--bloom-fpr", EXACT_FPR]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = json_stdout(&out);
    assert_eq!(json["planned_deletes"], sets.garbage.len(), "{json}");
    assert_eq!(fx.fingerprint(), before, "a dry run changed the store");

    let out = gc_with_token(&fx, &good, &["--execute", "--verify", "--output", "json", "--bloom-fpr", EXACT_FPR]);
    assert_the_garbage_deleted_in_batches(&fx, &out);
}
