//! Test-kit support for Azurite (`scripts/azurite-server`), the Azure Blob emulator the test
//! suite runs against. Never used by `gc_partition` itself.
//!
//! `object_store` writes and reads Azurite as it would Azure. What it cannot do there:
//! create a container (a signed `PUT ?restype=container` here, with `object_store`'s own
//! signer) and age a blob, which Azurite has no API for: `scripts/azurite-age-hook.js`,
//! preloaded into the server, sets a blob's Last-Modified in Azurite's metadata database, and
//! lists every blob record for the tests' before/after comparisons. The hook's port is in
//! the file `ROOT/age-port` of the server's root.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use gc_partition::store::Stores;
use object_store::ClientOptions;
use object_store::azure::{AzureAccessKey, AzureAuthorizer, AzureCredential};
use object_store::client::{HttpConnector, HttpRequest, HttpRequestBody, ReqwestConnector};

/// One blob record of the emulator: account, container, name, size, last-modified (RFC
/// 3339), ETag, snapshot.
pub type BlobRecord = (String, String, String, u64, String, String, String);

/// The Azurite server behind an `az://` store, and how to reach its hook.
#[derive(Debug, Clone)]
pub struct Azurite {
    /// `http://127.0.0.1:PORT/ACCOUNT`, as `AZURE_STORAGE_ENDPOINT` names it.
    endpoint: String,
    account: String,
    /// The account key (Azurite's well-known, public one).
    key: String,
    root: PathBuf,
}

fn var<'a>(env: &'a [(String, String)], name: &str) -> Result<&'a str, String> {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).ok_or_else(|| format!("{name} is unset"))
}

/// `stores` (an `az://` store whose endpoint is Azurite, configured from `env`, the server's
/// root at `root`) made ageable, and able to create containers.
pub fn test_server_stores(stores: Stores, root: PathBuf, env: &[(String, String)]) -> Result<Stores, String> {
    let azurite = Azurite {
        endpoint: var(env, "AZURE_STORAGE_ENDPOINT")?.trim_end_matches('/').to_owned(),
        account: var(env, "AZURE_STORAGE_ACCOUNT_NAME")?.to_owned(),
        key: var(env, "AZURE_STORAGE_ACCOUNT_KEY")?.to_owned(),
        root,
    };
    Ok(stores.with_attachment(Arc::new(azurite)))
}

/// The Azurite of `stores`, if they were made by [`test_server_stores`].
pub fn of(stores: &Stores) -> Option<&Azurite> {
    stores.attachment::<Azurite>()
}

impl Azurite {
    /// Creates `container`; one that exists already is fine.
    pub fn create_container(&self, container: &str) -> Result<(), String> {
        match self.container_request(http::Method::PUT, container)? {
            (201 | 409, _) => Ok(()),
            (status, body) => Err(format!("create container {container}: HTTP {status}: {body}")),
        }
    }

    /// Deletes every container that holds a blob, blobs and all (Azurite removes them at
    /// once): a fresh server for the next test.
    pub fn empty(&self) -> Result<(), String> {
        let mut containers: Vec<String> = self.blobs()?.into_iter().map(|record| record.1).collect();
        containers.dedup();
        for container in containers {
            match self.container_request(http::Method::DELETE, &container)? {
                (202 | 404, _) => {}
                (status, body) => return Err(format!("delete container {container}: HTTP {status}: {body}")),
            }
        }
        Ok(())
    }

    /// Writes a small block blob named exactly `name` (any name Azurite holds, which
    /// `object_store` could not write: control characters, `.` segments, a trailing `/`),
    /// every byte but `A-Za-z0-9-_~/` percent-encoded in the URL.
    pub fn put_raw(&self, container: &str, name: &str, body: &[u8]) -> Result<(), String> {
        const KEEP: &percent_encoding::AsciiSet =
            &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~').remove(b'/');
        let path = percent_encoding::utf8_percent_encode(name, KEEP);
        let url = format!("{}/{container}/{path}", self.endpoint);
        let extra = [("x-ms-blob-type", "BlockBlob")];
        match self.signed(http::Method::PUT, &url, &extra, body)? {
            (201, _) => Ok(()),
            (status, answer) => Err(format!("put {container}/{name:?}: HTTP {status}: {answer}")),
        }
    }

    /// A signed Create or Delete Container request: its status and body.
    fn container_request(&self, method: http::Method, container: &str) -> Result<(u16, String), String> {
        let url = format!("{}/{container}?restype=container", self.endpoint);
        self.signed(method, &url, &[], b"")
    }

    /// A request signed with the account key: its status and body.
    fn signed(
        &self,
        method: http::Method,
        url: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, String), String> {
        let mut builder = http::Request::builder().method(method.clone()).uri(url);
        for (name, value) in extra {
            builder = builder.header(*name, *value);
        }
        let mut request: HttpRequest = builder
            .header("content-length", body.len().to_string())
            .body(HttpRequestBody::empty())
            .map_err(|e| e.to_string())?;
        let key = AzureAccessKey::try_new(&self.key).map_err(|e| e.to_string())?;
        let credential = AzureCredential::AccessKey(key);
        AzureAuthorizer::new(&credential, &self.account).try_authorize(&mut request).map_err(|e| e.to_string())?;
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        send(method.as_str(), url, &headers, body)
    }

    /// Makes `blob` of `container` report `when` as its Last-Modified.
    pub fn age(&self, container: &str, blob: &str, when: DateTime<Utc>) -> Result<(), String> {
        let job = serde_json::json!({
            "account": self.account, "container": container, "blob": blob,
            "lastModified": when.to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        match send("POST", &format!("{}/age", self.hook()?), &[], job.to_string().as_bytes())? {
            (204, _) => Ok(()),
            (status, _) => Err(format!("the ageing hook answered HTTP {status}")),
        }
    }

    /// Every blob record the emulator holds, sorted: equal lists mean an unchanged store.
    pub fn blobs(&self) -> Result<Vec<BlobRecord>, String> {
        let (status, body) = send("GET", &format!("{}/blobs", self.hook()?), &[], b"")?;
        if status != 200 {
            return Err(format!("the ageing hook answered HTTP {status}"));
        }
        let mut records: Vec<BlobRecord> = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        records.sort();
        Ok(records)
    }

    fn hook(&self) -> Result<String, String> {
        let file = self.root.join("age-port");
        let port = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        Ok(format!("http://127.0.0.1:{}", port.trim()))
    }
}

/// One HTTP/1.1 request to a loopback `http://` URL, blocking (the kit's ageing is called
/// from synchronous code inside async tasks): its status and body. An `https://` URL (an
/// Azurite serving TLS, for bearer tokens) goes through [`send_tls`].
fn send(method: &str, url: &str, headers: &[(String, String)], body: &[u8]) -> Result<(u16, String), String> {
    if url.starts_with("https://") {
        return send_tls(method, url, headers, body);
    }
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: not http:// or https://"))?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let fail = |e: std::io::Error| format!("{method} {url}: {e}");
    let mut stream = TcpStream::connect(host).map_err(fail)?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(fail)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (name, value) in headers.iter().filter(|(k, _)| k != "content-length") {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body)).map_err(fail)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(fail)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("{url}: no status"))?;
    // The hook sends a plain body; Azurite's error bodies are only shown, chunked or not.
    Ok((status, rest.to_owned()))
}

/// One request to an `https://` test server whose certificate is its own (self-signed), with
/// `object_store`'s HTTP client, on a thread and runtime of its own: the kit's calls are
/// synchronous and may be made inside async tasks. For the few container requests only; the
/// ageing hook is plain `http://`.
fn send_tls(method: &str, url: &str, headers: &[(String, String)], body: &[u8]) -> Result<(u16, String), String> {
    let fail = |e: &dyn std::fmt::Display| format!("{method} {url}: {e}");
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers.iter().filter(|(k, _)| k != "content-length") {
        builder = builder.header(name, value);
    }
    let request = builder.body(HttpRequestBody::from(body.to_vec())).map_err(|e| fail(&e))?;
    let options = ClientOptions::new().with_allow_invalid_certificates(true);
    let client = ReqwestConnector::default().connect(&options).map_err(|e| fail(&e))?;
    let exchange = async move {
        let response = client.execute(request).await.map_err(|e| fail(&e))?;
        let status = response.status().as_u16();
        let body = response.into_body().bytes().await.map_err(|e| fail(&e))?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| fail(&e))?;
                runtime.block_on(exchange)
            })
            .join()
            .map_err(|_| fail(&"the request's thread panicked"))?
    })
}
