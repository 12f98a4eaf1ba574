//! A fault-injecting, call-recording wrapper around the real `ObjectStore` trait, in the
//! manner of object_store's `limit.rs` / `throttle.rs`: it implements the same trait, wraps
//! every bucket through `Stores::layered`, and sits *under* the library's retry layer, so an
//! injected transient error is retried exactly like a real one.
//!
//! What it can do, per `FaultPlan`:
//! - fail the Nth call of a kind (1-based), transiently (`Generic`) or permanently
//!   (`PermissionDenied`);
//! - fail a share of all calls transiently (seeded, deterministic per call number);
//! - end listing streams with an error half way (every one, or a share of them);
//! - delay calls of chosen kinds;
//! - fail deletes of chosen keys permanently; fail reads of chosen keys permanently;
//! - forbid every mutating call (put, multipart, delete, copy, rename): it fails and is
//!   recorded;
//! - run a hook on the first `head` of a chosen key (a writer refreshing a chunk);
//! - make chosen keys vanish (another deleter) right before their `head` or their delete
//!   reaches the store;
//! - panic at the Nth call of a kind (a bug in a layer, spec 9.3).
//!
//! Every call is logged (`Call`) with whether a `Stop` had been triggered when it started.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use gc_kit::mix::unit;
use gc_partition::error::Signal;
use gc_partition::gc::Stop;
use gc_partition::locations::key_of_held;
use gc_partition::store::{Layer, Stores};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, Error, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Get,
    Head,
    List,
    ListDelimiter,
    Delete,
    Put,
    Multipart,
    Copy,
    Rename,
}

impl Op {
    pub fn mutates(self) -> bool {
        matches!(self, Op::Delete | Op::Put | Op::Multipart | Op::Copy | Op::Rename)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Generic`: retried by the library.
    Transient,
    /// `PermissionDenied`: never retried.
    Permanent,
}

type Hook = Box<dyn Fn(&str, &Path) + Send + Sync>;

#[derive(Default)]
pub struct FaultPlan {
    /// (kind of call, N, error): the Nth call of that kind fails.
    pub fail_nth: Vec<(Op, u64, Kind)>,
    /// Share of every call (reads, listings, deletes) that fails transiently.
    pub transient_share: f64,
    pub seed: u64,
    /// Listing streams (`list`) under a key containing this text end with an error half way...
    pub break_listings_under: Option<String>,
    /// ...unless the key contains this text...
    pub break_listings_except: Option<String>,
    /// Listing streams of this (bucket, prefix) location end with an error half way...
    pub break_listings_of: Option<(String, String)>,
    /// ...(either kind of choice) every time (`1.0`) or for this share of them...
    pub break_listing_share: f64,
    /// ...and, when set, only the first listing of each prefix (a retry then succeeds).
    pub break_each_listing_once: bool,
    /// Listings yield their objects in reverse key order (a store breaking its promise).
    pub reverse_listings: bool,
    /// The error that ends a broken listing.
    pub break_listing_kind: Option<Kind>,
    pub delay: Option<(Duration, Vec<Op>)>,
    /// Deletes of these keys fail permanently.
    pub fail_delete_keys: HashSet<String>,
    /// Reads (`get`, not `head`) of these keys fail with this error.
    pub fail_get_keys: HashMap<String, Kind>,
    /// Every mutating call fails and is recorded.
    pub forbid_mutations: bool,
    /// Runs on the first `head` of the key, before the call reaches the store.
    pub on_first_head: Option<(String, Hook)>,
    /// The Nth delete call triggers the watched `Stop` (from inside the run, so the test
    /// knows exactly which calls started before it).
    pub stop_at_delete: Option<(u64, Signal)>,
    /// These keys are deleted from the store right before their first `head` reaches it.
    pub vanish_before_head: HashSet<String>,
    /// These keys are deleted from the store right before their delete reaches it.
    pub vanish_before_delete: HashSet<String>,
    /// The Nth call of this kind panics before it reaches the store (a bug in a layer).
    pub panic_at: Option<(Op, u64)>,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub seq: u64,
    pub op: Op,
    pub bucket: String,
    pub key: String,
    /// A `Stop` had been triggered when the call started.
    pub after_stop: bool,
    pub injected: bool,
}

pub struct Faults {
    plan: FaultPlan,
    seq: AtomicU64,
    per_op: Mutex<HashMap<Op, u64>>,
    calls: Mutex<Vec<Call>>,
    hooked: Mutex<bool>,
    broken_once: Mutex<HashSet<String>>,
    stop: Mutex<Option<Stop>>,
    pub injected: AtomicU64,
}

impl Faults {
    pub fn new(plan: FaultPlan) -> Arc<Self> {
        Arc::new(Self {
            plan,
            seq: AtomicU64::new(0),
            per_op: Mutex::default(),
            calls: Mutex::default(),
            hooked: Mutex::new(false),
            broken_once: Mutex::default(),
            stop: Mutex::default(),
            injected: AtomicU64::new(0),
        })
    }

    /// No fault, only the record of calls.
    pub fn recorder() -> Arc<Self> {
        Self::new(FaultPlan::default())
    }

    /// Calls recorded from now on note whether `stop` had been triggered.
    pub fn watch(&self, stop: &Stop) {
        *self.stop.lock().unwrap() = Some(stop.clone());
    }

    pub fn layer(self: &Arc<Self>) -> Layer {
        let faults = Arc::clone(self);
        Arc::new(move |bucket: &str, inner: Arc<dyn ObjectStore>| {
            Arc::new(FaultStore { inner, bucket: bucket.to_owned(), faults: Arc::clone(&faults) })
                as Arc<dyn ObjectStore>
        })
    }

    /// `stores` seen through this wrapper.
    pub fn wrap(self: &Arc<Self>, stores: &Stores) -> Stores {
        stores.layered(self.layer())
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn mutations(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.op.mutates()).collect()
    }

    pub fn count(&self, op: Op) -> u64 {
        self.per_op.lock().unwrap().get(&op).copied().unwrap_or(0)
    }

    /// Records the call and decides whether it fails.
    fn begin(&self, op: Op, bucket: &str, key: &str) -> Option<Error> {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let nth = {
            let mut per_op = self.per_op.lock().unwrap();
            let n = per_op.entry(op).or_default();
            *n += 1;
            *n
        };
        let after_stop = {
            let stop = self.stop.lock().unwrap();
            let after = stop.as_ref().is_some_and(|s| s.signal().is_some());
            if let (Some(stop), Some((n, signal))) = (stop.as_ref(), self.plan.stop_at_delete)
                && op == Op::Delete
                && nth == n
            {
                stop.trigger(signal);
            }
            after
        };
        let plan = &self.plan;
        let mut kind = plan.fail_nth.iter().find(|(o, n, _)| *o == op && *n == nth).map(|(_, _, k)| *k);
        if kind.is_none() && op == Op::Delete && plan.fail_delete_keys.contains(chunk_key(key)) {
            kind = Some(Kind::Permanent);
        }
        if kind.is_none() && op == Op::Get {
            kind = plan.fail_get_keys.get(key).copied();
        }
        if op.mutates() && plan.forbid_mutations {
            kind = Some(Kind::Permanent);
        }
        if kind.is_none() && plan.transient_share > 0.0 && unit(plan.seed, seq) < plan.transient_share {
            kind = Some(Kind::Transient);
        }
        let injected = kind.is_some();
        if injected {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        let call = Call { seq, op, bucket: bucket.to_owned(), key: key.to_owned(), after_stop, injected };
        self.calls.lock().unwrap().push(call);
        if plan.panic_at == Some((op, nth)) {
            panic!("injected panic at {op:?} call {nth} (seq {seq})");
        }
        kind.map(|k| error(k, op, key))
    }

    async fn delay(&self, op: Op) {
        if let Some((wait, ops)) = &self.plan.delay
            && ops.contains(&op)
        {
            tokio::time::sleep(*wait).await;
        }
    }
}

fn error(kind: Kind, op: Op, key: &str) -> Error {
    match kind {
        Kind::Transient => {
            Error::Generic { store: "faults", source: format!("injected transient {op:?} failure").into() }
        }
        Kind::Permanent => Error::PermissionDenied {
            path: key.to_owned(),
            source: format!("injected permanent {op:?} failure").into(),
        },
    }
}

/// Another deleter got there first: the object is gone (a missing one stays missing).
async fn vanish(store: &dyn ObjectStore, location: &Path) {
    match store.delete(location).await {
        Ok(()) | Err(Error::NotFound { .. }) => {}
        Err(e) => panic!("making {location} vanish: {e}"),
    }
}

/// The chunk key behind `key`: itself, or the key a chunk renamed aside came from.
fn chunk_key(key: &str) -> &str {
    key_of_held(key).unwrap_or(key)
}

impl FaultStore {
    /// What a test makes happen to a chunk right before the collector's re-read of it (its
    /// HEAD, or the rename aside that starts its delete): a writer's refresh
    /// (`on_first_head`), the chunk vanishing (`vanish_before_head`).
    async fn before_reread(&self, location: &Path) {
        if let Some((key, hook)) = &self.faults.plan.on_first_head
            && key == location.as_ref()
        {
            let mut hooked = self.faults.hooked.lock().unwrap();
            if !*hooked {
                *hooked = true;
                hook(&self.bucket, location);
            }
        }
        if self.faults.plan.vanish_before_head.contains(location.as_ref()) {
            vanish(self.inner.as_ref(), location).await;
        }
    }
}

pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    bucket: String,
    faults: Arc<Faults>,
}

impl fmt::Debug for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let failure = self.faults.begin(Op::Put, &self.bucket, location.as_ref());
        self.faults.delay(Op::Put).await;
        if let Some(e) = failure {
            return Err(e);
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        if let Some(e) = self.faults.begin(Op::Multipart, &self.bucket, location.as_ref()) {
            return Err(e);
        }
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { Op::Head } else { Op::Get };
        if op == Op::Head {
            self.before_reread(location).await;
        }
        let failure = self.faults.begin(op, &self.bucket, location.as_ref());
        self.faults.delay(op).await;
        if let Some(e) = failure {
            return Err(e);
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let (inner, faults, bucket) = (Arc::clone(&self.inner), Arc::clone(&self.faults), self.bucket.clone());
        locations
            .then(move |location| {
                let (inner, faults, bucket) = (Arc::clone(&inner), Arc::clone(&faults), bucket.clone());
                async move {
                    let location = location?;
                    let failure = faults.begin(Op::Delete, &bucket, location.as_ref());
                    faults.delay(Op::Delete).await;
                    if let Some(e) = failure {
                        return Err(e);
                    }
                    if faults.plan.vanish_before_delete.contains(chunk_key(location.as_ref())) {
                        vanish(inner.as_ref(), &location).await;
                    }
                    let once = stream::once(async move { Ok(location) }).boxed();
                    let mut deleted = inner.delete_stream(once);
                    deleted.next().await.unwrap_or_else(|| {
                        Err(Error::Generic { store: "faults", source: "delete_stream yielded nothing".into() })
                    })
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        let failure = self.faults.begin(Op::List, &self.bucket, &key);
        let mut inner = self.inner.list(prefix);
        let faults = Arc::clone(&self.faults);
        let plan = &self.faults.plan;
        let seq = self.faults.seq.load(Ordering::SeqCst);
        let under = plan.break_listings_under.as_ref().is_some_and(|under| key.contains(under.as_str()))
            && !plan.break_listings_except.as_ref().is_some_and(|except| key.contains(except.as_str()));
        let of = plan.break_listings_of.as_ref().is_some_and(|(bucket, prefix)| {
            *bucket == self.bucket && (prefix.is_empty() || key == *prefix || key.starts_with(&format!("{prefix}/")))
        });
        let broken = (under || of)
            && unit(plan.seed ^ 0xB4EA_C0DE, seq) < plan.break_listing_share
            && (!plan.break_each_listing_once || self.faults.broken_once.lock().unwrap().insert(key.clone()));
        if plan.reverse_listings {
            inner = stream::once(async move {
                let mut all: Vec<Result<ObjectMeta>> = inner.collect().await;
                all.reverse();
                stream::iter(all)
            })
            .flatten()
            .boxed();
        }
        let break_kind = plan.break_listing_kind.unwrap_or(Kind::Transient);
        if let Some(e) = failure {
            return stream::once(async move { Err(e) }).boxed();
        }
        if !broken {
            return inner;
        }
        // Yield the first half of what the store lists, then fail.
        stream::once(async move {
            let all: Vec<ObjectMeta> = match inner.try_collect().await {
                Ok(all) => all,
                Err(e) => return stream::iter(vec![Err(e)]),
            };
            faults.injected.fetch_add(1, Ordering::SeqCst);
            let half = all.len() / 2;
            let mut items: Vec<Result<ObjectMeta>> = all.into_iter().take(half).map(Ok).collect();
            items.push(Err(error(break_kind, Op::List, &key)));
            stream::iter(items)
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        let failure = self.faults.begin(Op::ListDelimiter, &self.bucket, &key);
        self.faults.delay(Op::ListDelimiter).await;
        if let Some(e) = failure {
            return Err(e);
        }
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        if let Some(e) = self.faults.begin(Op::Copy, &self.bucket, to.as_ref()) {
            return Err(e);
        }
        self.inner.copy_opts(from, to, options).await
    }

    /// A chunk renamed aside to be deleted (`file://`, `memory://`): the rename is where its
    /// delete starts, so the re-read hooks (`on_first_head`, `vanish_before_head`) fire here.
    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        if key_of_held(to.as_ref()).is_some() {
            self.before_reread(from).await;
        }
        if let Some(e) = self.faults.begin(Op::Rename, &self.bucket, to.as_ref()) {
            return Err(e);
        }
        self.inner.rename_opts(from, to, options).await
    }
}
