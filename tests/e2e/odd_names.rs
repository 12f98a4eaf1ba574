//! Issue 22: no object name a store accepts stops a run. Objects whose names `object_store`
//! cannot make a `Path` of (tab, DEL, CR, other control characters; empty, `.` and `..`
//! segments) and folder placeholders (a name ending in `/`) are written through the real
//! servers, next to a garbage chunk and in the snapshots folder; the run must exit 0, count
//! each one in a chunk location as foreign, plan and delete the chunks around them as usual,
//! and leave every odd object in place.
//!
//! The names are written with raw HTTP / boto3 from `python3` (object_store cannot write
//! them): boto3 on the S3 servers, the JSON API's media upload on fake-gcs-server. s3s-fs
//! and fake-gcs-server keep objects as files, so they fold `a//b`, `a/./b`, `a/../b` and
//! `a/` into other names: those are written to moto's S3 server, which keeps names exactly,
//! and (but for `.` and `..` segments) to Azurite, by signed requests of `gc_kit::azurite`.
//!
//! Ignored unless the servers' variables were set at build time (`scripts/test` sets them).

use common::{Backend, chunk_name, code, json_stdout, partition, read_plan, runtime, stderr};
use gc_kit::synth::{SynthConfig, synthesize};
use gc_partition::listing::list_all;
use gc_partition::locations::Location;
use gc_partition::store::{StoreOptions, Stores};

/// Names of the chunk directory `dir` (`<prefix>/<hh>`) around the chunk `<hex>`, that every
/// store under test keeps as written.
fn control_names(dir: &str, hex: &str) -> Vec<String> {
    vec![format!("{dir}/\t{hex}"), format!("{dir}/{hex}\u{7f}"), format!("{dir}/{hex}\r"), format!("{dir}/{hex}\t")]
}

/// The names only a store that keeps names exactly (moto) can hold.
fn segment_names(prefix: &str, dir: &str, hex: &str) -> Vec<String> {
    let hh = &hex[..2];
    vec![
        format!("{dir}//{hex}"),
        format!("{dir}/./{hex}"),
        format!("{dir}/../{hh}/{hex}"),
        format!("{prefix}//{hh}/{hex}"),
        // Folder placeholders, as a GUI makes them: the chunk's own name and its directory.
        format!("{dir}/{hex}/"),
        format!("{dir}/"),
    ]
}

/// Runs a python3 program (boto3 or urllib against the server) that reads `names` as JSON on
/// stdin; its stdout parsed as JSON.
fn python(backend_env: &[(String, String)], program: &str, input: serde_json::Value) -> serde_json::Value {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args(["-c", program])
        .envs(backend_env.iter().cloned())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

const S3_PROGRAM: &str = r#"
import json, os, sys, boto3, botocore
job = json.load(sys.stdin)
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                  aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
out = []
for bucket, key in job["objects"]:
    if job["op"] == "create":
        s3.create_bucket(Bucket=bucket)
    elif job["op"] == "put":
        s3.put_object(Bucket=bucket, Key=key, Body=b"not a chunk")
    else:
        try:
            s3.head_object(Bucket=bucket, Key=key)
            out.append(True)
        except botocore.exceptions.ClientError as e:
            if e.response["Error"]["Code"] not in ("404", "NoSuchKey"): raise
            out.append(False)
print(json.dumps(out))
"#;

const GCS_PROGRAM: &str = r#"
import json, sys, urllib.request, urllib.parse, urllib.error
job = json.load(sys.stdin)
base = job["endpoint"].rstrip("/")
out = []
for bucket, key in job["objects"]:
    name = urllib.parse.quote(key, safe="")
    if job["op"] == "put":
        url = f"{base}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}"
        urllib.request.urlopen(urllib.request.Request(url, data=b"not a chunk", method="POST")).read()
    else:
        try:
            urllib.request.urlopen(f"{base}/storage/v1/b/{bucket}/o/{name}").read()
            out.append(True)
        except urllib.error.HTTPError as e:
            if e.code != 404: raise
            out.append(False)
print(json.dumps(out))
"#;

/// Writes or checks `objects` through the backend's server.
fn through_server(backend: &Backend, op: &str, objects: &[(String, String)]) -> Vec<bool> {
    if let Backend::Az { root, env, .. } = backend {
        return through_azurite(root, env, op, objects);
    }
    let (program, endpoint) = match backend {
        Backend::S3 { endpoint, .. } => (S3_PROGRAM, endpoint.clone()),
        Backend::Gcs { endpoint, .. } => (GCS_PROGRAM, endpoint.clone()),
        Backend::File | Backend::Az { .. } => unreachable!("file:// names are written by tests/memory/hostile.rs"),
    };
    let input = serde_json::json!({ "op": op, "endpoint": endpoint, "objects": objects });
    serde_json::from_value(python(&backend.env(), program, input)).unwrap()
}

/// Azurite: written with signed requests of the kit (object_store cannot write these
/// names), checked against the emulator's blob records (its names exactly).
fn through_azurite(
    root: &std::path::Path,
    env: &[(String, String)],
    op: &str,
    objects: &[(String, String)],
) -> Vec<bool> {
    let stores = Stores::from_url_and_env("az://", StoreOptions::default(), env.to_vec()).unwrap();
    let stores = gc_kit::azurite::test_server_stores(stores, root.to_owned(), env).unwrap();
    let azurite = gc_kit::azurite::of(&stores).unwrap();
    if op == "put" {
        for (container, name) in objects {
            azurite.put_raw(container, name, b"not a chunk").unwrap();
        }
        return Vec::new();
    }
    let held: std::collections::HashSet<(String, String)> =
        azurite.blobs().unwrap().into_iter().map(|(_, container, name, ..)| (container, name)).collect();
    objects.iter().map(|object| held.contains(object)).collect()
}

/// The synthetic partition plus odd objects: in the directory of a garbage chunk (which the
/// run must still delete), beside a referenced one (kept), and in the snapshots folder.
fn odd_names_are_foreign_and_stay(backend: &Backend, names: fn(&str, &str, &str) -> Vec<String>) {
    let fx = partition(backend, |c| c.seed = 22);
    let sets = fx.summary.sets.clone().unwrap();
    let (garbage_loc, garbage_id) = sets.garbage[0].clone();
    let (live_loc, live_id) = sets.referenced[0].clone();
    let mut odd: Vec<(String, String)> = Vec::new();
    for (location, id) in [(&garbage_loc, &garbage_id), (&live_loc, &live_id)] {
        let key = location.chunk_key(id);
        let dir = key.rsplit_once('/').unwrap().0;
        odd.extend(names(location.prefix(), dir, &id.to_hex()).into_iter().map(|k| (location.bucket().to_owned(), k)));
    }
    let in_locations = odd.len() as u64;
    let snapshots = format!("partitions/{}/snapshots", fx.partition);
    for snapshot in &fx.summary.snapshots {
        for suffix in ["snap", "manifest", "index"] {
            for name in names(&snapshots, &snapshots, &format!("{snapshot}.{suffix}")) {
                odd.push((fx.meta_bucket.clone(), name));
            }
        }
    }
    through_server(backend, "put", &odd);
    assert!(through_server(backend, "exists", &odd).iter().all(|&e| e), "the server keeps every odd name");

    let plan = fx.path("plan.jsonl");
    let out = fx.gc(&["--output", "json", "--plan-out", plan.to_str().unwrap(), "--bloom-fpr", common::EXACT_FPR]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = json_stdout(&out);
    assert_eq!(json["foreign_objects"], fx.summary.foreign_objects + in_locations, "{json}");
    assert_eq!(json["young_kept"], fx.summary.young_chunks, "no odd name is read as a chunk");
    let chunks = sets.referenced.len() + sets.garbage.len() + sets.young.len();
    assert_eq!(json["chunks_scanned"], chunks as u64, "no odd name is read as a chunk");
    let planned: Vec<String> = read_plan(&plan)
        .iter()
        .filter(|l| l["type"] == "delete")
        .map(|l| format!("{}/{}", l["bucket"].as_str().unwrap(), l["key"].as_str().unwrap()))
        .collect();
    let garbage_name = chunk_name(&garbage_loc, &garbage_id);
    assert!(planned.contains(&garbage_name), "the garbage chunk beside the odd names is planned");
    let mut unique = planned.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), planned.len(), "a key planned twice");
    assert!(planned.iter().all(|name| !odd.iter().any(|(b, k)| &format!("{b}/{k}") == name)));

    let out = fx.gc(&["--execute", "--verify", "--output", "json", "--bloom-fpr", common::EXACT_FPR]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let json = json_stdout(&out);
    assert_eq!(json["verify"]["ok"], true, "{json}");
    assert_eq!(json["deleted"], json["planned_deletes"]);
    assert_eq!(json["foreign_objects"], fx.summary.foreign_objects + in_locations);
    assert!(!fx.exists(garbage_loc.bucket(), &garbage_loc.chunk_key(&garbage_id)), "the garbage chunk is deleted");
    assert!(fx.exists(live_loc.bucket(), &live_loc.chunk_key(&live_id)), "the referenced chunk is kept");
    let still = through_server(backend, "exists", &odd);
    let gone: Vec<&(String, String)> = odd.iter().zip(&still).filter(|(_, e)| !**e).map(|(o, _)| o).collect();
    assert!(gone.is_empty(), "odd objects deleted: {gone:?}");
}

#[test]
#[cfg_attr(not(gc_test_s3), ignore = "no test server: scripts/test starts s3s-fs")]
fn s3_control_characters_are_foreign_and_kept() {
    odd_names_are_foreign_and_stay(&Backend::s3(), |_, dir, hex| control_names(dir, hex));
}

#[test]
#[cfg_attr(not(gc_test_gcs), ignore = "no test server: scripts/test starts fake-gcs-server")]
fn gcs_control_characters_are_foreign_and_kept() {
    odd_names_are_foreign_and_stay(&Backend::gcs(), |_, dir, hex| {
        let mut names = control_names(dir, hex);
        names.push(format!("{dir}/{hex}\u{1}"));
        names
    });
}

/// Azurite keeps names exactly, beside aged chunks: control characters, empty segments and
/// folder placeholders. Not U+0001: Azurite 3.35 holds it, but its List Blobs then answers
/// 500 (it cannot write it in XML; Azure sends such a name `Encoded`, which the listing
/// decodes, see `store/raw_list.rs`). Not `.` and `..` segments: URLs resolve them before the service sees
/// the name (`url` does so when signing, so such a request fails to authenticate), so Azure
/// cannot be asked to hold them.
#[test]
#[cfg_attr(not(gc_test_az), ignore = "no test server: scripts/test starts Azurite")]
fn azurite_odd_names_are_foreign_and_kept() {
    odd_names_are_foreign_and_stay(&Backend::az(), |prefix, dir, hex| {
        let mut names = control_names(dir, hex);
        let dots = |name: &String| name.split('/').any(|segment| segment == "." || segment == "..");
        names.extend(segment_names(prefix, dir, hex).into_iter().filter(|name| !dots(name)));
        names
    });
}

fn moto() -> Backend {
    common::moto_backend(&common::moto_endpoint())
}

/// On moto (names kept exactly, objects not ageable): a fresh partition written now, so
/// every chunk is young. Odd names in a chunk directory and in the snapshots folder, every
/// one of the issue's, beside the chunks: exit 0, each counted foreign, none read as a chunk
/// or a manifest (a placeholder `<snapshot>.snap/` read as the `.snap` would be fetched and
/// fail), all still there after `--execute`.
#[test]
#[cfg_attr(not(gc_test_moto), ignore = "no test server: scripts/test starts moto's S3 server")]
fn moto_every_odd_name_is_foreign_and_kept() {
    let backend = moto();
    let env = backend.env();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let bucket = format!("gc-odd-{}-{nanos}", std::process::id());
    through_server(&backend, "create", &[(bucket.clone(), String::new())]);
    let dir = tempfile::tempdir().unwrap();
    let live_path = dir.path().join("live.txt");
    let config = SynthConfig {
        meta_bucket: bucket.clone(),
        snapshots: 3,
        referenced_ids: 60,
        garbage_chunks: 0,
        young_chunks: 10,
        foreign_objects: 2,
        dead_snapshots: 0,
        extra_locations: 0,
        record_sets: true,
        unaged: true,
        live_set_path: Some(live_path.clone()),
        ..SynthConfig::default()
    };
    let stores = Stores::from_url_and_env("s3://", StoreOptions::default(), env.clone()).unwrap();
    let summary = runtime().block_on(synthesize(&stores, &config)).unwrap();
    let sets = summary.sets.clone().unwrap();
    let (location, id) = sets.referenced[0].clone();
    let key = location.chunk_key(&id);
    let chunk_dir = key.rsplit_once('/').unwrap().0;
    let hex = id.to_hex();
    let mut in_location: Vec<String> = control_names(chunk_dir, &hex);
    in_location.extend(segment_names(location.prefix(), chunk_dir, &hex));
    let snapshots = format!("partitions/{}/snapshots", summary.partition);
    let mut odd: Vec<(String, String)> = in_location.iter().map(|k| (bucket.clone(), k.clone())).collect();
    for snapshot in &summary.snapshots {
        for suffix in ["snap", "manifest", "index"] {
            let name = format!("{snapshot}.{suffix}");
            for k in control_names(&snapshots, &name).into_iter().chain(segment_names(&snapshots, &snapshots, &name)) {
                odd.push((bucket.clone(), k));
            }
        }
    }
    through_server(&backend, "put", &odd);

    // The listing alone: the chunks exactly, every odd name of the location foreign.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send((0, location.clone())).unwrap();
    drop(tx);
    let listing = runtime().block_on(list_all(stores.clone(), rx, 4, Default::default())).unwrap();
    let in_this_location = |l: &Location| l == &location;
    let chunks_here = sets.referenced.iter().chain(&sets.young).filter(|(l, _)| in_this_location(l)).count() as u64;
    let foreign_here = sets.foreign.iter().filter(|(b, k)| b == &bucket && k.starts_with(location.prefix())).count();
    assert_eq!(listing.chunk_count(), chunks_here);
    assert_eq!(listing.per_location[0].foreign_objects, foreign_here as u64 + in_location.len() as u64);
    let sample = &listing.per_location[0].foreign_sample;
    assert!(sample.iter().all(|name| !name.chars().any(char::is_control)), "control characters escaped: {sample:?}");

    let live = live_path.to_str().unwrap();
    let partition = summary.partition.to_string();
    let args = ["--partition", &partition, "--live-snapshots", live, "--cutoff", "7d", "--store", "s3://"];
    let args: Vec<&str> = args.iter().copied().chain(["--meta-bucket", &bucket, "--output", "json"]).collect();
    for mode in [None, Some("--execute")] {
        let mut run = args.clone();
        run.extend(mode);
        let out = common::gc_binary(&run, None, &env);
        assert_eq!(code(&out), 0, "{mode:?}: {}", stderr(&out));
        let json = json_stdout(&out);
        assert_eq!(json["foreign_objects"], summary.foreign_objects + in_location.len() as u64, "{json}");
        assert_eq!(json["chunks_scanned"], (sets.referenced.len() + sets.young.len()) as u64, "{json}");
        assert_eq!(json["planned_deletes"], 0);
    }
    let still = through_server(&backend, "exists", &odd);
    assert!(still.iter().all(|&e| e), "odd objects deleted");
}
