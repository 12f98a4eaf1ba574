use std::collections::BTreeSet;

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

use super::*;
use gc_partition::manifest::legacy;

const URL: &str =
    "gen://?chunks=3000&referenced=0.4&young=0.1&seed=7&snapshots=13&locations=3&foreign=600&legacy=0.5&now=1800000000";

fn generated(url: &str) -> Arc<Generated> {
    Arc::new(Generated::from_url(url).expect("valid gen url"))
}

fn buckets(g: &Arc<Generated>) -> Vec<GenBucket> {
    let mut names: Vec<String> = g.locations().iter().map(|l| l.bucket().to_owned()).collect();
    names.dedup();
    names.iter().map(|b| g.bucket(b)).collect()
}

async fn list_all(store: &dyn ObjectStore, prefix: Option<&str>) -> Vec<ObjectMeta> {
    let prefix = prefix.map(Path::from);
    store.list(prefix.as_ref()).try_collect().await.expect("list")
}

#[tokio::test]
async fn every_bucket_lists_in_strict_key_order_and_counts_match_the_prediction() {
    let g = generated(URL);
    let expected = g.expected();
    let (mut chunks, mut foreign) = (0u64, 0u64);
    for bucket in buckets(&g) {
        let objects = list_all(&bucket, None).await;
        assert!(objects.windows(2).all(|w| w[0].location < w[1].location), "{bucket} out of order");
        for (l, location) in g.locations().iter().enumerate().filter(|(_, l)| l.bucket() == bucket.name) {
            let under = list_all(&bucket, Some(location.prefix())).await;
            let ids = under.iter().filter(|m| location.chunk_of_key(m.location.as_ref()).is_some()).count() as u64;
            assert_eq!(ids, g.loc_len(l as u32));
            chunks += ids;
            foreign += under.len() as u64 - ids;
        }
    }
    assert_eq!(chunks, expected.chunks);
    assert_eq!(foreign, expected.foreign);
    assert_eq!(expected.foreign, 3 * 600);
    assert_eq!(expected.referenced + expected.young + expected.garbage, 3000);
    // The shares asked for, loosely (3000 draws).
    assert!((1000..1400).contains(&expected.referenced), "{expected:?}");
    assert!((200..400).contains(&expected.young), "{expected:?}");
}

#[tokio::test]
async fn head_get_and_delimiter_listings_agree_with_the_listing() {
    let g = generated(URL);
    for bucket in buckets(&g) {
        let all = list_all(&bucket, None).await;
        for m in all.iter().step_by(7) {
            let head = bucket.head(&m.location).await.expect("head of a listed object");
            assert_eq!((head.size, head.last_modified), (m.size, m.last_modified), "{}", m.location);
        }
        let chunk = all.iter().find(|m| m.location.as_ref().ends_with(|c: char| c.is_ascii_hexdigit()));
        let chunk = chunk.expect("a chunk");
        let body = bucket.get(&chunk.location).await.expect("get").bytes().await.expect("body");
        assert_eq!(body.len() as u64, chunk.size);
        let missing = Path::from(format!("{}/00/{}", g.locations()[0].prefix(), "0".repeat(64)));
        assert!(matches!(bucket.head(&missing).await, Err(object_store::Error::NotFound { .. })));

        // Walk the bucket with list_with_delimiter only: the same objects, in the same order.
        let mut walked = Vec::new();
        let mut dirs = vec![None::<Path>];
        while let Some(dir) = dirs.pop() {
            let result = bucket.list_with_delimiter(dir.as_ref()).await.expect("delimited listing");
            walked.extend(result.objects);
            dirs.extend(result.common_prefixes.into_iter().rev().map(Some));
        }
        walked.sort_by(|a, b| a.location.cmp(&b.location));
        assert_eq!(walked, all, "{bucket}");
    }
}

#[tokio::test]
async fn list_with_offset_is_the_listing_after_the_offset() {
    let g = generated(URL);
    let bucket = g.bucket("snapshots");
    let root = g.locations()[0].prefix().to_owned();
    for prefix in [None, Some(root.clone()), Some(format!("{root}/a3"))] {
        let all = list_all(&bucket, prefix.as_deref()).await;
        let mut offsets: Vec<String> = all.iter().step_by(37).map(|m| m.location.to_string()).collect();
        offsets.extend(all.iter().step_by(53).map(|m| format!("{}0", m.location)));
        offsets.extend([format!("{root}/a3"), format!("{root}/zz"), String::new(), format!("{root}/7")]);
        let prefix = prefix.map(Path::from);
        for offset in offsets {
            let got: Vec<ObjectMeta> = bucket
                .list_with_offset(prefix.as_ref(), &Path::from(offset.as_str()))
                .try_collect()
                .await
                .expect("list");
            let want: Vec<ObjectMeta> = all.iter().filter(|m| m.location.as_ref() > offset.as_str()).cloned().collect();
            assert_eq!(got, want, "offset {offset}");
        }
    }
}

#[tokio::test]
async fn manifests_parse_and_name_exactly_the_referenced_chunks() {
    let g = generated(URL);
    let partition = g.config().partition.clone();
    let meta = g.bucket("snapshots");
    let mut named: BTreeSet<(u32, [u8; 32])> = BTreeSet::new();
    let (mut legacy_pairs, mut snaps) = (0, 0);
    for (s, snapshot) in g.live_snapshots().iter().enumerate() {
        let fetch = |key: String| {
            let meta = meta.clone();
            async move {
                let bytes = meta.get(&Path::from(key.as_str())).await.ok()?.bytes().await.expect("body");
                Some(bytes)
            }
        };
        let text = fetch(gc_partition::manifest::legacy_manifest_key(&partition, snapshot)).await;
        let index = fetch(gc_partition::manifest::legacy_index_key(&partition, snapshot)).await;
        assert_eq!(text.is_some(), index.is_some(), "half a legacy pair for {snapshot}");
        if let (Some(text), Some(index)) = (text, index) {
            legacy_pairs += 1;
            let m = legacy::parse_manifest(&text, "m", snapshot, &partition).expect("legacy manifest parses");
            let ids = legacy::check_index(&m, &index, "i").expect("index matches its manifest");
            named.extend(ids.iter().map(|id| (0, *id)));
        }
        if let Some(bytes) = fetch(gc_partition::manifest::unified_key(&partition, snapshot)).await {
            snaps += 1;
            let m = unified::parse(bytes, "snap", snapshot, &partition).expect(".snap parses");
            assert_eq!(m.locations, g.locations());
            for group in &m.groups {
                named.extend(group.ids().iter().map(|id| (group.location, *id)));
            }
        }
        assert!(g.snapshot_ids(s as u64).iter().flatten().all(|id| named.iter().any(|(_, n)| n == id)));
    }
    assert!(legacy_pairs > 0 && snaps > 0, "{legacy_pairs} legacy pairs, {snaps} .snap");

    let mut referenced = BTreeSet::new();
    for bucket in buckets(&g) {
        for (l, location) in g.locations().iter().enumerate().filter(|(_, l)| l.bucket() == bucket.name) {
            for m in list_all(&bucket, Some(location.prefix())).await {
                let Some(id) = location.chunk_of_key(m.location.as_ref()) else { continue };
                let number = g.number_of(l as u32, &id.0).expect("a listed id decodes to its number");
                if g.class(number) == Class::Referenced {
                    referenced.insert((l as u32, id.0));
                }
            }
        }
    }
    assert_eq!(named, referenced);
    assert_eq!(referenced.len() as u64, g.expected().referenced);
}

#[tokio::test]
async fn the_seed_decides_everything() {
    let listing = |url: String| async move {
        let g = generated(&url);
        let bucket = g.bucket("snapshots");
        let objects = list_all(&bucket, None).await;
        let snap = bucket
            .get(&Path::from(format!("partitions/p1/snapshots/{}.snap", g.snapshot_id(3))))
            .await
            .ok()
            .map(|r| futures::executor::block_on(r.bytes()).expect("body"));
        (objects, snap, g.expected())
    };
    let a = listing(URL.to_owned()).await;
    assert_eq!(a, listing(URL.to_owned()).await);
    let b = listing(URL.replace("seed=7", "seed=8")).await;
    assert_ne!(a.0, b.0);
    assert_ne!(a.2, b.2);
}

#[tokio::test]
async fn deletes_are_counted_and_remembered_only_when_asked() {
    for remember in [false, true] {
        let g = generated(&format!("{URL}&remember={}", u8::from(remember)));
        let bucket = g.bucket("chunks-1");
        let root = g.locations()[1].prefix();
        let before = list_all(&bucket, Some(root)).await;
        let chunks: Vec<Path> = before
            .iter()
            .filter(|m| g.locations()[1].chunk_of_key(m.location.as_ref()).is_some())
            .take(10)
            .map(|m| m.location.clone())
            .collect();
        let deleted: Vec<Path> = bucket
            .delete_stream(stream::iter(chunks.clone()).map(Ok).boxed())
            .try_collect()
            .await
            .expect("deletes of chunks");
        assert_eq!(deleted, chunks);
        assert_eq!(g.deletes.deleted.load(Ordering::Relaxed), 10);
        let referenced = chunks
            .iter()
            .filter(|p| {
                let id = g.locations()[1].chunk_of_key(p.as_ref()).expect("chunk");
                g.number_of(1, &id.0).map(|n| g.class(n)) == Some(Class::Referenced)
            })
            .count() as u64;
        assert_eq!(g.deletes.deleted_referenced.load(Ordering::Relaxed), referenced);
        let after = list_all(&bucket, Some(root)).await;
        let head = bucket.head(&chunks[0]).await;
        if remember {
            assert_eq!(after.len(), before.len() - 10);
            assert!(matches!(head, Err(object_store::Error::NotFound { .. })));
        } else {
            assert_eq!(after, before);
            assert!(head.is_ok());
        }
        let foreign = before.iter().find(|m| m.location.as_ref().ends_with(".part")).expect("a foreign object");
        let refused: Result<Vec<Path>> =
            bucket.delete_stream(stream::iter([Ok(foreign.location.clone())]).boxed()).try_collect().await;
        assert!(refused.is_err(), "a foreign object was deleted");
        assert!(bucket.put(&Path::from("x"), PutPayload::from_static(b"x")).await.is_err());
    }
}

#[test]
fn bad_urls_name_the_parameter() {
    for (url, needle) in [
        ("gen://?chunks=ten", "chunks"),
        ("gen://?referenced=1.5", "referenced"),
        ("gen://?referenced=0.9&young=0.2", "young"),
        ("gen://?colour=blue", "colour"),
        ("gen://?snapshots=0", "snapshots"),
        ("gen://?partition=a/b", "partition"),
        ("gen://?locations=0", "locations"),
    ] {
        let err = GenConfig::parse(url).expect_err(url).to_string();
        assert!(err.contains(needle), "{url}: {err}");
    }
    let cfg = GenConfig::parse("gen://?chunks=1_000_000&snapshots=0&referenced=0").expect("valid");
    assert_eq!(cfg.chunks, 1_000_000);
}

#[test]
fn ids_decode_to_their_number_and_sort_with_it_in_every_directory() {
    for chunks in [1, 255, 256, 257, 10_000] {
        let g = generated(&format!("gen://?chunks={chunks}&locations=2"));
        let mut previous: Option<(u32, [u8; 32])> = None;
        for number in 0..chunks {
            let c = g.chunk(number);
            assert_eq!(g.number_of(c.location, &c.id), Some(number));
            if let Some((l, id)) = previous.filter(|(l, id)| *l == c.location && id[0] == c.id[0]) {
                assert!(id < c.id, "location {l} dir {:02x} out of order", id[0]);
            }
            previous = Some((c.location, c.id));
        }
    }
}
