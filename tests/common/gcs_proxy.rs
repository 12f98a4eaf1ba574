//! An HTTP proxy in front of fake-gcs-server that enforces what the emulator ignores: the
//! `x-goog-if-generation-match` (and `-metageneration-`) preconditions of a DELETE. It also
//! records every DELETE with its preconditions, every HEAD, and every object a list page
//! answered with its version (spec 10.1), so a test can check what the collector sent and aim
//! writers at the chunks it just listed or re-read.
//!
//! In front of any other server ([`GcsProxy::start_recording`]: Azurite, which enforces a
//! DELETE's `If-Match` itself, or moto's S3) it only records. There a HEAD's "generation" is
//! its `ETag`, a DELETE's precondition its `If-Match`, and a Blob Batch is recorded as its
//! Delete Blob sub-requests.
//!
//! A precondition is checked against the object's generation upstream (its HEAD) while a
//! lock is held that every mutating request through the proxy (deletes and uploads) takes:
//! the check and the delete are atomic with respect to writers that upload through it.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// A DELETE the proxy saw.
#[derive(Debug, Clone)]
pub struct SeenDelete {
    pub path: String,
    /// GCS: `x-goog-if-generation-match`; Azure: `If-Match`.
    pub if_generation_match: Option<String>,
    pub if_metageneration_match: Option<String>,
    /// The status the proxy answered.
    pub status: u16,
}

#[derive(Default)]
pub struct Seen {
    pub deletes: Vec<SeenDelete>,
    /// Paths HEADed or listed since the last [`GcsProxy::take_read`].
    pub read: Vec<String>,
    /// Every generation (ETag) a HEAD or a list page answered for each path, quotes trimmed.
    pub generations: HashMap<String, HashSet<String>>,
    /// Requests through the proxy by method, as the wire carried them.
    pub by_method: HashMap<String, u64>,
}

pub struct GcsProxy {
    pub url: String,
    pub seen: Arc<Mutex<Seen>>,
}

struct State {
    upstream: String,
    client: reqwest::Client,
    seen: Arc<Mutex<Seen>>,
    mutating: tokio::sync::Mutex<()>,
    /// Not fake-gcs-server upstream: record, never enforce.
    record_only: bool,
}

impl GcsProxy {
    /// Starts the proxy on a free loopback port, on `runtime`, forwarding to `upstream`.
    pub fn start(runtime: &tokio::runtime::Runtime, upstream: &str) -> GcsProxy {
        Self::start_for(runtime, upstream, false)
    }

    /// A recording proxy in front of any other server at `upstream` (`http://127.0.0.1:PORT`:
    /// Azurite, moto's S3): it records and counts requests by method, and enforces nothing.
    pub fn start_recording(runtime: &tokio::runtime::Runtime, upstream: &str) -> GcsProxy {
        Self::start_for(runtime, upstream, true)
    }

    fn start_for(runtime: &tokio::runtime::Runtime, upstream: &str, record_only: bool) -> GcsProxy {
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            seen: Arc::clone(&seen),
            mutating: tokio::sync::Mutex::new(()),
            record_only,
        });
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(Arc::clone(&state), request));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        GcsProxy { url, seen }
    }

    pub fn deletes(&self) -> Vec<SeenDelete> {
        self.seen.lock().unwrap().deletes.clone()
    }

    /// Requests with `method` the proxy forwarded or answered.
    pub fn requests(&self, method: &str) -> u64 {
        self.seen.lock().unwrap().by_method.get(method).copied().unwrap_or(0)
    }

    /// The paths the collector listed or re-read since the last call.
    pub fn take_read(&self) -> Vec<String> {
        std::mem::take(&mut self.seen.lock().unwrap().read)
    }

    /// Whether a HEAD or a list page through the proxy ever answered `generation` for `path`.
    pub fn answered(&self, path: &str, generation: &str) -> bool {
        let generation = generation.trim_matches('"');
        self.seen.lock().unwrap().generations.get(path).is_some_and(|g| g.contains(generation))
    }
}

fn note(seen: &Mutex<Seen>, path: String, generation: Option<&str>) {
    let mut seen = seen.lock().unwrap();
    if let Some(generation) = generation {
        seen.generations.entry(path.clone()).or_default().insert(generation.trim_matches('"').to_owned());
    }
    seen.read.push(path);
}

/// The (path, version) of every object a list page answered: GCS's JSON `objects.list` at
/// `/storage/v1/b/<bucket>/o` (paths `/<bucket>/<name>`, as the XML API names them), Azure's
/// List Blobs at `/<account>/<container>?comp=list` (paths `/<account>/<container>/<name>`).
fn listed(path: &str, query: &str, body: &[u8]) -> Vec<(String, Option<String>)> {
    if let Some(bucket) = path.strip_prefix("/storage/v1/b/").and_then(|rest| rest.strip_suffix("/o")) {
        let Ok(page) = serde_json::from_slice::<serde_json::Value>(body) else { return Vec::new() };
        let items = page["items"].as_array().cloned().unwrap_or_default();
        return items
            .iter()
            .filter_map(|item| {
                let name = item["name"].as_str()?;
                Some((format!("/{bucket}/{name}"), item["generation"].as_str().map(str::to_owned)))
            })
            .collect();
    }
    if !query.contains("comp=list") {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(body);
    let between = |s: &str, open: &str, close: &str| Some(s.split(open).nth(1)?.split(close).next()?.to_owned());
    text.split("<Blob>")
        .skip(1)
        .filter_map(|blob| {
            let name = between(blob, "<Name>", "</Name>")?;
            Some((format!("{path}/{name}"), between(blob, "<Etag>", "</Etag>")))
        })
        .collect()
}

fn header(request: &Request<Incoming>, name: &str) -> Option<String> {
    request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // object_store sends a key's `/` as `%2F`; the collector's own DELETE sends it plain.
    let path = request.uri().path().replace("%2F", "/").replace("%2f", "/");
    let method = request.method().clone();
    *state.seen.lock().unwrap().by_method.entry(method.to_string()).or_default() += 1;
    if method == Method::HEAD {
        let response = forward(&state, request).await;
        let name = if state.record_only { "etag" } else { "x-goog-generation" };
        let generation = response.headers().get(name).and_then(|v| v.to_str().ok());
        note(&state.seen, path, generation);
        return Ok(response);
    }
    if method == Method::GET {
        let query = request.uri().query().unwrap_or_default().to_owned();
        let (response, body) = forward_with_body(&state, request).await;
        for (object, generation) in listed(&path, &query, &body) {
            note(&state.seen, object, generation.as_deref());
        }
        return Ok(response);
    }
    if method == Method::DELETE {
        // Widens the window between the collector's re-read and its delete, where a writer's
        // upload must be refused by the precondition. Outside the lock, so that an upload
        // arriving meanwhile goes first. Inside it (Azure) or without it (GCS), 4 to 11 and
        // 9 to 23 of 300 deletes were refused in 6 runs each: a run could meet no race.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    if method == Method::POST && request.uri().query().is_some_and(|q| q.contains("comp=batch")) {
        // The same for a Blob Batch, one request for up to 256 deletes: without it, 9 of
        // 300 deletes were refused in a run.
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    let mutating = method == Method::DELETE || method == Method::POST || method == Method::PUT;
    let _lock = if mutating { Some(state.mutating.lock().await) } else { None };
    if method == Method::POST && state.record_only && request.uri().query().is_some_and(|q| q.contains("comp=batch")) {
        // A Blob Batch: each Delete Blob sub-request recorded with its If-Match and the
        // status of its sub-response (matched by Content-ID).
        let (parts, body) = request.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let (response, answer) = forward_bytes(&state, parts, body.clone()).await;
        let statuses = batch_statuses(&answer);
        let mut seen = state.seen.lock().unwrap();
        for (id, path, if_match) in batch_deletes(&body) {
            let status = statuses.get(&id).copied().unwrap_or(0);
            seen.deletes.push(SeenDelete {
                path,
                if_generation_match: if_match,
                if_metageneration_match: None,
                status,
            });
        }
        return Ok(response);
    }
    if method == Method::DELETE && state.record_only {
        let if_match = header(&request, "if-match");
        let response = forward(&state, request).await;
        let status = response.status().as_u16();
        let seen = SeenDelete { path, if_generation_match: if_match, if_metageneration_match: None, status };
        state.seen.lock().unwrap().deletes.push(seen);
        return Ok(response);
    }
    if method == Method::DELETE {
        let generation = header(&request, "x-goog-if-generation-match");
        let metageneration = header(&request, "x-goog-if-metageneration-match");
        let refused = match (&generation, &metageneration) {
            (None, None) => None,
            _ => precondition_failed(&state, &path, generation.as_deref(), metageneration.as_deref()).await,
        };
        let response = match refused {
            Some(response) => response,
            None => forward(&state, request).await,
        };
        state.seen.lock().unwrap().deletes.push(SeenDelete {
            path,
            if_generation_match: generation,
            if_metageneration_match: metageneration,
            status: response.status().as_u16(),
        });
        return Ok(response);
    }
    Ok(forward(&state, request).await)
}

/// A 412 response when the object at `path` is not the generation (or metageneration)
/// asked for; `None` when the delete may go ahead (or the object is gone: the DELETE then
/// answers 404 itself).
async fn precondition_failed(
    state: &State,
    path: &str,
    generation: Option<&str>,
    metageneration: Option<&str>,
) -> Option<Response<Full<Bytes>>> {
    let head = state.client.head(format!("{}{path}", state.upstream)).send().await.unwrap();
    if head.status() == reqwest::StatusCode::NOT_FOUND {
        return None;
    }
    let now = |name: &str| head.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    // fake-gcs-server's XML HEAD carries no metageneration: objects start at 1 and only
    // metadata updates raise it, which these tests never make.
    let now_metageneration = now("x-goog-metageneration").unwrap_or_else(|| "1".to_owned());
    let matches = generation.is_none_or(|g| now("x-goog-generation").as_deref() == Some(g))
        && metageneration.is_none_or(|m| m == now_metageneration);
    (!matches).then(|| {
        Response::builder()
            .status(StatusCode::PRECONDITION_FAILED)
            .body(Full::new(Bytes::from_static(
                b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>PreconditionFailed</Code></Error>",
            )))
            .unwrap()
    })
}

async fn forward(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    forward_with_body(state, request).await.0
}

/// The upstream's answer, and its body.
async fn forward_with_body(state: &State, request: Request<Incoming>) -> (Response<Full<Bytes>>, Bytes) {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    forward_bytes(state, parts, body).await
}

/// The Delete Blob sub-requests of a Blob Batch body: (Content-ID, path, If-Match).
fn batch_deletes(body: &[u8]) -> Vec<(String, String, Option<String>)> {
    let text = String::from_utf8_lossy(body);
    let mut deletes = Vec::new();
    for part in text.split("\r\n--") {
        let header = |name: &str| {
            part.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
            })
        };
        let Some(path) = part.lines().find_map(|l| l.strip_prefix("DELETE ")?.strip_suffix(" HTTP/1.1")) else {
            continue;
        };
        let path = path.split('?').next().unwrap_or(path).replace("%2F", "/");
        deletes.push((header("content-id").unwrap_or_default(), path, header("if-match")));
    }
    deletes
}

/// The status of each sub-response of a Blob Batch answer, by Content-ID.
fn batch_statuses(answer: &[u8]) -> HashMap<String, u16> {
    let text = String::from_utf8_lossy(answer);
    text.split("\r\n--")
        .filter_map(|part| {
            let id = part.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim().eq_ignore_ascii_case("content-id").then(|| value.trim().to_owned())
            })?;
            let status = part.lines().find_map(|l| l.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok())?;
            Some((id, status))
        })
        .collect()
}

/// Sends `parts` with `body` upstream: the answer, and its body.
async fn forward_bytes(
    state: &State,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> (Response<Full<Bytes>>, Bytes) {
    let target = format!("{}{}", state.upstream, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut headers = parts.headers;
    headers.remove(hyper::header::HOST);
    let upstream = state.client.request(parts.method.clone(), target).headers(headers).body(body).send().await.unwrap();
    let mut response = Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        if name != hyper::header::TRANSFER_ENCODING && name != hyper::header::CONNECTION {
            response = response.header(name, value);
        }
    }
    let body = upstream.bytes().await.unwrap();
    (response.body(Full::new(body.clone())).unwrap(), body)
}
