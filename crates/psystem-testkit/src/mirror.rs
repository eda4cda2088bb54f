//! A local release mirror for tests: one HTTP/1.1 server on `127.0.0.1` that serves a folder
//!
//! - as a plain web server, like EBI's HTTPS mirror: files with `HEAD`, `Range: bytes=a-b`, `bytes=a-` and the
//!   suffix form `bytes=-n` (`206` + `Content-Range`; `416` + `Content-Range: bytes */size` when the range
//!   starts past the end), and an Apache-style autoindex HTML page for folder URLs ending in `/` (links
//!   `name/` for folders and `name` for files, a "Parent Directory" link and the `?C=N;O=D` sort links, as
//!   Apache's `mod_autoindex` writes them); a folder URL without the `/` is redirected (301) to it;
//! - as the Google Cloud Storage JSON API for one bucket mapped to the folder
//!   (<https://cloud.google.com/storage/docs/json_api/v1/objects>): `GET /storage/v1/b/{bucket}/o` with
//!   `prefix`, `delimiter`, `pageToken`, `maxResults` (`{"kind":"storage#objects","items":[{"name","size"
//!   (a decimal string),…}],"prefixes":[…],"nextPageToken"}`; the page size is [`MirrorServer::set_gcs_page_size`],
//!   default 1000), `GET /storage/v1/b/{bucket}/o/{percent-encoded name}` (the object resource) and the same
//!   with `?alt=media` (the bytes, with `Range`).
//!
//! Fault injection: [`MirrorServer::fail_next`] answers the next `n` requests with a status (e.g. 503), and
//! [`MirrorServer::cut_next_download_after`] makes the next `GET` of a file body send that many bytes of the
//! body and then drop the connection (the `Content-Length` announced is the full one). Every request is
//! logged ([`MirrorServer::requests`]) with its method, path, query and `Range` header.
//!
//! The server runs on the tokio runtime of the caller of [`MirrorServer::start`] and stops when dropped.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = psystem_testkit::mirror::MirrorServer::start("/srv/mirror".into()).await?;
//! server.fail_next(1, 503);
//! let _url = server.base_url(); // http://127.0.0.1:PORT/
//! let _gs = (server.gcs_endpoint(), server.bucket()); // http://127.0.0.1:PORT, "open-targets"
//! # Ok(()) }
//! ```

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;

/// The bucket name [`MirrorServer::start`] serves (the real Open Targets bucket is `open-targets`).
pub const DEFAULT_BUCKET: &str = "open-targets";

/// Characters escaped in hrefs and GCS names: all but RFC 3986 unreserved characters.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorRequest {
    /// Method, e.g. `GET`, `HEAD`.
    pub method: String,
    /// Path as sent (still percent-encoded), e.g. `/25.03/output/x.parquet`.
    pub path: String,
    /// Query string as sent, if any, e.g. `alt=media`.
    pub query: Option<String>,
    /// The `Range` header, if any, e.g. `bytes=100-`.
    pub range: Option<String>,
    /// Status answered (for a cut download: the 200/206 that was started).
    pub status: u16,
}

struct Faults {
    fail: VecDeque<u16>,
    cut_after: Option<u64>,
    /// Only a download whose path contains this is cut (any when `None`).
    cut_path: Option<String>,
    gcs_page_size: usize,
    log: Vec<MirrorRequest>,
}

struct Shared {
    root: PathBuf,
    bucket: String,
    faults: Mutex<Faults>,
}

impl Shared {
    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running mirror server (HTTP + GCS JSON API); stops when dropped.
pub struct MirrorServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for MirrorServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorServer")
            .field("addr", &self.addr)
            .field("root", &self.shared.root)
            .field("bucket", &self.shared.bucket)
            .finish()
    }
}

impl Drop for MirrorServer {
    fn drop(&mut self) {
        self.stop.cancel();
        self.task.abort();
    }
}

impl MirrorServer {
    /// Serves `root` on an ephemeral port of 127.0.0.1, with GCS bucket [`DEFAULT_BUCKET`].
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start(root: PathBuf) -> std::io::Result<MirrorServer> {
        Self::start_on(root, SocketAddr::from(([127, 0, 0, 1], 0)), DEFAULT_BUCKET).await
    }

    /// Serves `root` on `addr` (port 0 = any free port), answering the GCS JSON API for `bucket`.
    ///
    /// # Errors
    /// `addr` cannot be bound.
    pub async fn start_on(
        root: PathBuf,
        addr: SocketAddr,
        bucket: &str,
    ) -> std::io::Result<MirrorServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            root,
            bucket: bucket.to_string(),
            faults: Mutex::new(Faults {
                fail: VecDeque::new(),
                cut_after: None,
                cut_path: None,
                gcs_page_size: 1000,
                log: Vec::new(),
            }),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(error = %e, "mirror server stopped");
            }
        });
        tracing::info!(%addr, "mirror server listening");
        Ok(MirrorServer {
            addr,
            shared,
            stop,
            task,
        })
    }

    /// `http://127.0.0.1:PORT/`: the URL of the served folder.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// `http://127.0.0.1:PORT`: the endpoint to give a GCS client instead of `https://storage.googleapis.com`.
    pub fn gcs_endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The GCS bucket name mapped to the folder.
    pub fn bucket(&self) -> &str {
        &self.shared.bucket
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next `GET` that sends a file body (HTTP file or GCS `alt=media`) sends `bytes` bytes of the body,
    /// then drops the connection.
    pub fn cut_next_download_after(&self, bytes: u64) {
        let mut f = self.shared.faults();
        f.cut_after = Some(bytes);
        f.cut_path = None;
    }

    /// The next `GET` of a file body whose path contains `part` sends `bytes` bytes of the body, then drops the
    /// connection; other downloads are served whole.
    pub fn cut_next_download_of(&self, part: &str, bytes: u64) {
        let mut f = self.shared.faults();
        f.cut_after = Some(bytes);
        f.cut_path = Some(part.to_string());
    }

    /// The next `n` requests (any path) are answered with `status` (e.g. 503) and a short text body.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut f = self.shared.faults();
        f.fail.extend(std::iter::repeat_n(status, n));
    }

    /// Items + prefixes per page of a GCS object list (default 1000, as GCS); `maxResults` lowers it per request.
    pub fn set_gcs_page_size(&self, n: usize) {
        self.shared.faults().gcs_page_size = n.max(1);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<MirrorRequest> {
        self.shared.faults().log.clone()
    }

    /// Forgets the logged requests.
    pub fn clear_requests(&self) {
        self.shared.faults().log.clear();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let failure = shared.faults().fail.pop_front();
    let response = match failure {
        Some(status) => text(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "injected failure\n",
        ),
        None if method != Method::GET && method != Method::HEAD => {
            text(StatusCode::METHOD_NOT_ALLOWED, "GET and HEAD only\n")
        }
        None => match path.strip_prefix("/storage/v1/b/") {
            Some(rest) => gcs(&shared, &method, rest, query.as_deref(), req.headers()).await,
            None => http(&shared, &method, &path, req.headers()).await,
        },
    };
    shared.faults().log.push(MirrorRequest {
        method: method.to_string(),
        path,
        query,
        range,
        status: response.status().as_u16(),
    });
    response
}

fn text(status: StatusCode, body: &str) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(body.to_string()))
        .expect("valid response")
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=UTF-8")
        .body(Body::from(value.to_string()))
        .expect("valid response")
}

/// The local path of a `/`-separated relative path whose segments are percent-encoded (`encoded`) or not;
/// `None` for `..`, `.`, backslashes or undecodable segments.
fn local_path(root: &Path, rel: &str, encoded: bool) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    for seg in rel.split('/').filter(|s| !s.is_empty()) {
        let seg = if encoded {
            percent_decode_str(seg).decode_utf8().ok()?.into_owned()
        } else {
            seg.to_string()
        };
        if seg == ".." || seg == "." || seg.contains('\\') || seg.contains('/') {
            return None;
        }
        p.push(seg);
    }
    Some(p)
}

async fn http(shared: &Shared, method: &Method, path: &str, headers: &HeaderMap) -> Response {
    let Some(local) = local_path(&shared.root, path, true) else {
        return text(StatusCode::BAD_REQUEST, "bad path\n");
    };
    let Ok(meta) = tokio::fs::metadata(&local).await else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    if meta.is_dir() {
        if !path.ends_with('/') {
            return Response::builder()
                .status(StatusCode::MOVED_PERMANENTLY)
                .header(header::LOCATION, format!("{path}/"))
                .body(Body::empty())
                .expect("valid response");
        }
        return match index_page(&local, path).await {
            Ok(html) => Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/html;charset=UTF-8")
                .body(if method == Method::HEAD {
                    Body::empty()
                } else {
                    Body::from(html)
                })
                .expect("valid response"),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
        };
    }
    serve_file(
        shared,
        method,
        &local,
        meta.len(),
        headers,
        "application/octet-stream",
    )
    .await
}

/// An Apache `mod_autoindex` (FancyIndexing, HTMLTable) page for folder `local` at URL path `url_path`.
async fn index_page(local: &Path, url_path: &str) -> std::io::Result<String> {
    let mut entries = Vec::new();
    let mut rd = tokio::fs::read_dir(local).await?;
    while let Some(e) = rd.next_entry().await? {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let meta = tokio::fs::metadata(e.path()).await?;
        entries.push((name, meta.is_dir(), meta.len()));
    }
    entries.sort();
    let title = html_escape(&percent_decode_str(url_path).decode_utf8_lossy());
    let mut page = format!(
        "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 3.2 Final//EN\">\n<html>\n <head>\n  <title>Index of {title}</title>\n </head>\n <body>\n<h1>Index of {title}</h1>\n  <table>\n   <tr><th valign=\"top\"><img src=\"/icons/blank.gif\" alt=\"[ICO]\"></th><th><a href=\"?C=N;O=D\">Name</a></th><th><a href=\"?C=M;O=A\">Last modified</a></th><th><a href=\"?C=S;O=A\">Size</a></th><th><a href=\"?C=D;O=A\">Description</a></th></tr>\n   <tr><th colspan=\"5\"><hr></th></tr>\n"
    );
    if url_path != "/" {
        let trimmed = url_path.trim_end_matches('/');
        let parent = &trimmed[..trimmed.rfind('/').map_or(0, |i| i + 1)];
        let parent = if parent.is_empty() { "/" } else { parent };
        page.push_str(&format!(
            "<tr><td valign=\"top\"><img src=\"/icons/back.gif\" alt=\"[PARENTDIR]\"></td><td><a href=\"{parent}\">Parent Directory</a></td><td>&nbsp;</td><td align=\"right\">  - </td><td>&nbsp;</td></tr>\n"
        ));
    }
    for (name, is_dir, len) in entries {
        let href = utf8_percent_encode(&name, ENCODE).to_string();
        let shown = html_escape(&name);
        if is_dir {
            page.push_str(&format!(
                "<tr><td valign=\"top\"><img src=\"/icons/folder.gif\" alt=\"[DIR]\"></td><td><a href=\"{href}/\">{shown}/</a></td><td align=\"right\">2025-03-12 10:00  </td><td align=\"right\">  - </td><td>&nbsp;</td></tr>\n"
            ));
        } else {
            page.push_str(&format!(
                "<tr><td valign=\"top\"><img src=\"/icons/unknown.gif\" alt=\"[   ]\"></td><td><a href=\"{href}\">{shown}</a></td><td align=\"right\">2025-03-12 10:00  </td><td align=\"right\">{}</td><td>&nbsp;</td></tr>\n",
                human_size(len)
            ));
        }
    }
    page.push_str("   <tr><th colspan=\"5\"><hr></th></tr>\n</table>\n</body></html>\n");
    Ok(page)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Apache's rounded sizes: `512`, `1.2K`, `38M`.
fn human_size(len: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if len < 1024 {
        return len.to_string();
    }
    let mut v = len as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.1}{}", UNITS[unit])
    } else {
        format!("{v:.0}{}", UNITS[unit])
    }
}

/// A `Range` header against a file of `len` bytes: `Ok(None)` = whole file, `Ok(Some((a, b)))` = bytes a..=b,
/// `Err(())` = not satisfiable (416). Malformed or multi-range headers are ignored (whole file), as HTTP allows.
#[allow(clippy::result_unit_err)]
fn parse_range(value: Option<&HeaderValue>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || len == 0 {
            return Err(());
        }
        return Ok(Some((len.saturating_sub(n), len - 1)));
    }
    let Ok(start) = a.parse::<u64>() else {
        return Ok(None);
    };
    let end = if b.is_empty() {
        len.saturating_sub(1)
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(len.saturating_sub(1)),
            _ => return Ok(None),
        }
    };
    if start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn serve_file(
    shared: &Shared,
    method: &Method,
    local: &Path,
    len: u64,
    headers: &HeaderMap,
    content_type: &str,
) -> Response {
    let (status, start, count) = match parse_range(headers.get(header::RANGE), len) {
        Err(()) => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .body(Body::empty())
                .expect("valid response");
        }
        Ok(None) => (StatusCode::OK, 0, len),
        Ok(Some((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, count.to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", start + count - 1),
        );
    }
    if method == Method::HEAD {
        return builder.body(Body::empty()).expect("valid response");
    }
    let mut file = match tokio::fs::File::open(local).await {
        Ok(f) => f,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
    };
    if let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await {
        return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n"));
    }
    let cut = {
        let mut f = shared.faults();
        let shown = local.to_string_lossy();
        if f.cut_path.as_deref().is_none_or(|p| shown.contains(p)) {
            f.cut_path = None;
            f.cut_after.take()
        } else {
            None
        }
    };
    let body = match cut {
        None => Body::from_stream(ReaderStream::with_capacity(file.take(count), 16 * 1024)),
        Some(cut) => {
            tracing::info!(path = %local.display(), cut, "cutting this download");
            let head = ReaderStream::with_capacity(file.take(count.min(cut)), 16 * 1024);
            // Give the bytes time to leave, then fail the body: hyper drops the connection.
            let tail = futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "download cut by the test server",
                ))
            });
            Body::from_stream(head.chain(tail))
        }
    };
    builder.body(body).expect("valid response")
}

/// Every file under `root`, as `/`-separated names relative to it, sorted.
async fn object_names(root: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let mut rd = tokio::fs::read_dir(&dir).await?;
        while let Some(e) = rd.next_entry().await? {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            let meta = tokio::fs::metadata(e.path()).await?;
            if meta.is_dir() {
                stack.push((e.path(), format!("{prefix}{name}/")));
            } else {
                out.push((format!("{prefix}{name}"), meta.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

async fn gcs(
    shared: &Shared,
    method: &Method,
    rest: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let not_found = |what: &str| {
        json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": {"code": 404, "message": format!("No such {what}"), "errors": [{"reason": "notFound"}]}}),
        )
    };
    let (bucket, object) = match rest.split_once("/o") {
        Some((b, o)) => (percent_decode_str(b).decode_utf8_lossy().into_owned(), o),
        None => return not_found("route"),
    };
    if bucket != shared.bucket {
        return not_found(&format!("bucket: {bucket}"));
    }
    if object.is_empty() || object == "/" {
        // Objects: list.
        let prefix = param("prefix").unwrap_or("");
        let delimiter = param("delimiter");
        let page = shared.faults().gcs_page_size;
        let page = param("maxResults")
            .and_then(|m| m.parse::<usize>().ok())
            .map_or(page, |m| m.clamp(1, page));
        let names = match object_names(&shared.root).await {
            Ok(n) => n,
            Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
        };
        // (key, size): size None marks a prefix.
        let mut keys: BTreeSet<(String, Option<u64>)> = BTreeSet::new();
        for (name, size) in names.into_iter().filter(|(n, _)| n.starts_with(prefix)) {
            match delimiter.and_then(|d| name[prefix.len()..].find(d).map(|i| (d, i))) {
                Some((d, i)) => {
                    keys.insert((name[..prefix.len() + i + d.len()].to_string(), None));
                }
                None => {
                    keys.insert((name, Some(size)));
                }
            }
        }
        let token = param("pageToken");
        let mut remaining = keys
            .into_iter()
            .filter(|(k, _)| token.is_none_or(|t| k.as_str() > t))
            .peekable();
        let mut items = Vec::new();
        let mut prefixes = Vec::new();
        let mut last = None;
        for (key, size) in remaining.by_ref().take(page) {
            match size {
                Some(size) => items.push(serde_json::json!({
                    "kind": "storage#object", "name": key, "bucket": shared.bucket, "size": size.to_string(),
                    "contentType": "application/octet-stream"
                })),
                None => prefixes.push(serde_json::Value::String(key.clone())),
            }
            last = Some(key);
        }
        let mut body = serde_json::json!({"kind": "storage#objects"});
        if !items.is_empty() {
            body["items"] = serde_json::Value::Array(items);
        }
        if !prefixes.is_empty() {
            body["prefixes"] = serde_json::Value::Array(prefixes);
        }
        if remaining.peek().is_some() {
            body["nextPageToken"] = serde_json::Value::String(last.unwrap_or_default());
        }
        return json(StatusCode::OK, body);
    }
    let Some(encoded) = object.strip_prefix('/') else {
        return not_found("route");
    };
    let Ok(name) = percent_decode_str(encoded).decode_utf8() else {
        return not_found("object");
    };
    let Some(local) = local_path(&shared.root, &name, false) else {
        return not_found("object");
    };
    let meta = match tokio::fs::metadata(&local).await {
        Ok(m) if m.is_file() => m,
        _ => return not_found(&format!("object: {}/{name}", shared.bucket)),
    };
    if param("alt") == Some("media") {
        return serve_file(
            shared,
            method,
            &local,
            meta.len(),
            headers,
            "application/octet-stream",
        )
        .await;
    }
    json(
        StatusCode::OK,
        serde_json::json!({"kind": "storage#object", "name": name, "bucket": shared.bucket, "size": meta.len().to_string()}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(parse_range(Some(&h("bytes=0-9")), 100), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some(&h("bytes=90-")), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some(&h("bytes=-8")), 100), Ok(Some((92, 99))));
        assert_eq!(
            parse_range(Some(&h("bytes=95-200")), 100),
            Ok(Some((95, 99)))
        );
        assert_eq!(parse_range(Some(&h("bytes=100-")), 100), Err(()));
        assert_eq!(parse_range(None, 100), Ok(None));
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512");
        assert_eq!(human_size(1300), "1.3K");
        assert_eq!(human_size(40 * 1024 * 1024), "40M");
    }
}
