//! A local WHO Global Health Observatory (GHO) OData server for tests, with fault injection.
//!
//! [`GhoServer`] is a real HTTP/1.1 server on `127.0.0.1`, written on a raw
//! [`tokio::net::TcpListener`] so that faults (a body that breaks off, a connection reset, …) can be
//! produced exactly. It runs its own tokio runtime on a background thread, so it works from sync and
//! async tests alike, and it stops when dropped.
//!
//! It serves every `<INDICATOR>.json` file of a directory — a saved response of
//! `https://ghoapi.azureedge.net/api/<INDICATOR>`, i.e. `{"@odata.context": …, "value": [ … ]}`, such as
//! `shared/fixtures/who_gho/WSH_8.json` — at `/api/<INDICATOR>`, and understands the OData query
//! options the GHO API documents (<https://www.who.int/data/gho/info/gho-odata-api>) that psystem uses
//! for paging and for a time window:
//!
//! * `$filter=TimeDim ge 2005 and TimeDim le 2008` keeps the rows for which every comparison holds
//!   (see [`Filter`]): one or more `TimeDim <op> <integer>` joined by `and`, with `op` one of `eq ne
//!   gt ge lt le` (any case); a row whose `TimeDim` is null or missing matches no comparison. It is
//!   applied first, so `$orderby`, `$skip`, `$top` and `$count` work on the filtered rows;
//! * `$orderby=Id` (also `Id asc`, `Id desc`) sorts the rows by `Id`; without it, file order is kept;
//! * `$skip=N`, `$top=N` slice the (ordered) rows;
//! * `$count=true` adds `"@odata.count": <rows after $filter>` to the envelope (as the real API does:
//!   the count of the filtered result, not of the file).
//!
//! Names and values may be percent-encoded (`%24top=50`, `TimeDim%20ge%202005`; `+` is a space).
//! Anything else is answered with 400 and an OData-style error body that names the problem, so a test
//! never passes by silently ignoring an option: another `$` option (e.g. `$select`), a `$filter` on
//! another field or with `or`, `not`, functions or parentheses, bad syntax, and a `$` option given
//! twice. Rows are written exactly as they are in the file (the raw JSON text of each row), so values
//! are byte-for-byte the file's values. An unknown indicator gets a 404 with an OData-style error body.
//!
//! ```
//! use psystem_testkit::gho_server::{Fault, GhoServer};
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("X.json"), r#"{"@odata.context":"c","value":[{"Id":2},{"Id":1}]}"#).unwrap();
//! let server = GhoServer::start(dir.path()).unwrap();
//! server.inject(Fault::Status(503)); // the next request gets a 503, the one after it is served
//! assert!(server.api_url().starts_with("http://127.0.0.1:"));
//! // GET {api_url}/X?$orderby=Id&$top=1&$count=true -> {"@odata.context":"c","@odata.count":2,"value":[{"Id":1}]}
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Largest request head (request line and headers) the server reads, in bytes.
const MAX_HEAD: usize = 64 * 1024;

/// A fault to apply to one upcoming request (see [`GhoServer::inject`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Wait this long before answering normally (added to [`GhoServer::set_delay`]'s delay).
    Delay(Duration),
    /// Answer with this HTTP status (e.g. 500, 503, 404) and a small OData-style JSON error body.
    Status(u16),
    /// Answer `429 Too Many Requests` with a `Retry-After: <retry_after_secs>` header.
    TooManyRequests {
        /// Value of the `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// Send the normal 200 response head with the full `Content-Length`, then only half of the body
    /// (rounded down), then close the connection.
    TruncatedBody,
    /// Read the request, then close the connection with `SO_LINGER` 0 (a TCP reset) before sending
    /// any response byte.
    ConnectionReset,
    /// Answer `200 OK` with an HTML page (`Content-Type: text/html`), as a captive portal or a CDN
    /// error page would: not an OData envelope.
    NotOData,
}

/// One request the server received, as logged by [`GhoServer::requests`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Request method, e.g. `GET`.
    pub method: String,
    /// Path of the request target, without the query, e.g. `/api/WSH_8`.
    pub path: String,
    /// Decoded `$top`, if given and a valid non-negative integer.
    pub top: Option<u64>,
    /// Decoded `$skip`, if given and a valid non-negative integer.
    pub skip: Option<u64>,
    /// Decoded `$orderby`, as given (e.g. `Id`, `Id desc`).
    pub orderby: Option<String>,
    /// Decoded `$count`, if given as `true` or `false`.
    pub count: Option<bool>,
    /// Decoded `$filter`, as given (e.g. `TimeDim ge 2005 and TimeDim le 2008`), even when it is not
    /// supported (then `status` is 400).
    pub filter: Option<String>,
    /// HTTP status sent; `None` while the response is pending (delays) and when no response head is
    /// sent at all ([`Fault::ConnectionReset`]).
    pub status: Option<u16>,
    /// The injected fault applied to this request, if any.
    pub fault: Option<Fault>,
}

#[derive(Default)]
struct Shared {
    faults: VecDeque<Fault>,
    delay: Duration,
    log: Vec<RequestRecord>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panicking test thread must not make every later call panic too.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running local GHO OData server; stops (and closes its port) when dropped.
pub struct GhoServer {
    addr: SocketAddr,
    dir: PathBuf,
    shared: Arc<Mutex<Shared>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for GhoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GhoServer")
            .field("addr", &self.addr)
            .field("dir", &self.dir)
            .finish()
    }
}

impl GhoServer {
    /// Serves every `<INDICATOR>.json` file in `dir` (a saved `{"@odata.context":…, "value":[…]}`
    /// response) at `/api/<INDICATOR>`, on an ephemeral port of 127.0.0.1.
    ///
    /// Files are read on each request, so files written after the start are served too.
    ///
    /// # Errors
    /// `dir` is not a readable directory, or the port cannot be bound, or the runtime cannot start.
    pub fn start(dir: impl AsRef<Path>) -> std::io::Result<GhoServer> {
        Self::start_on(dir, 0)
    }

    /// Same as [`GhoServer::start`], on the given port of 127.0.0.1 (0 = any free port).
    ///
    /// # Errors
    /// As [`GhoServer::start`]; also when `port` is in use.
    pub fn start_on(dir: impl AsRef<Path>, port: u16) -> std::io::Result<GhoServer> {
        let dir = dir.as_ref().to_path_buf();
        if !std::fs::metadata(&dir)?.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("GHO test server: {} is not a directory", dir.display()),
            ));
        }
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (tx, rx) = oneshot::channel();
        let thread = {
            let shared = Arc::clone(&shared);
            let dir = Arc::new(dir.clone());
            std::thread::Builder::new().name(format!("gho-server-{}", addr.port())).spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "GHO test server: cannot register listener");
                            return;
                        }
                    };
                    accept_loop(listener, dir, shared, rx).await;
                });
                // Dropping the runtime here cancels connections still in flight.
            })?
        };
        tracing::debug!(%addr, dir = %dir.display(), "GHO test server started");
        Ok(GhoServer {
            addr,
            dir,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Base URL of the API, e.g. `http://127.0.0.1:41234/api` (no trailing slash).
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Indicator codes served (the stems of the `*.json` files in the directory), sorted.
    pub fn indicators(&self) -> Vec<String> {
        indicators_in(&self.dir)
    }

    /// Queues a fault; each queued fault applies to exactly one upcoming request, first in first out.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared).faults.push_back(fault);
    }

    /// Sets a delay applied before every response (including faulty ones); `Duration::ZERO` removes it.
    pub fn set_delay(&self, d: Duration) {
        lock(&self.shared).delay = d;
    }

    /// All requests received so far, in order of arrival. A request is logged as soon as its head is
    /// read; its `status` is filled in just before the response is written.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared).log.clone()
    }
}

impl Drop for GhoServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Indicator codes served from `dir`: the stems of its `*.json` files whose names are valid
/// indicator codes, sorted. An unreadable directory gives an empty list.
pub fn indicators_in(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".json")?;
            valid_indicator(stem).then(|| stem.to_string())
        })
        .collect();
    out.sort();
    out
}

fn valid_indicator(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

async fn accept_loop(
    listener: TcpListener,
    dir: Arc<PathBuf>,
    shared: Arc<Mutex<Shared>>,
    mut shutdown: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let dir = Arc::clone(&dir);
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, &dir, &shared).await {
                            tracing::debug!(%peer, error = %e, "GHO test server: connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "GHO test server: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
}

/// The OData query options of one request, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// `$top`.
    pub top: Option<u64>,
    /// `$skip`.
    pub skip: Option<u64>,
    /// `$orderby`, as given.
    pub orderby: Option<String>,
    /// `$count`.
    pub count: Option<bool>,
    /// `$filter`, as given (decoded); parsed by [`Filter::parse`].
    pub filter: Option<String>,
}

/// Ordering requested by `$orderby`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// File order (no `$orderby`).
    File,
    /// `Id` ascending (`Id`, `Id asc`).
    IdAsc,
    /// `Id` descending (`Id desc`).
    IdDesc,
}

/// Decodes a query string (without `?`) into [`Query`], leniently: malformed values are left `None`
/// here and reported by [`validate_query`].
pub fn parse_query(query: &str) -> Query {
    let mut q = Query::default();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "$top" => q.top = v.trim().parse().ok(),
            "$skip" => q.skip = v.trim().parse().ok(),
            "$orderby" => q.orderby = Some(v.into_owned()),
            "$count" => q.count = parse_bool(&v),
            "$filter" => q.filter = Some(v.into_owned()),
            _ => {}
        }
    }
    q
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A comparison operator of a `$filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `eq`: equal.
    Eq,
    /// `ne`: not equal.
    Ne,
    /// `gt`: greater than.
    Gt,
    /// `ge`: greater than or equal.
    Ge,
    /// `lt`: less than.
    Lt,
    /// `le`: less than or equal.
    Le,
}

impl CmpOp {
    /// The operator named `word` (`eq`, `ne`, `gt`, `ge`, `lt`, `le`; any case).
    pub fn from_word(word: &str) -> Option<CmpOp> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CmpOp::Eq,
            "ne" => CmpOp::Ne,
            "gt" => CmpOp::Gt,
            "ge" => CmpOp::Ge,
            "lt" => CmpOp::Lt,
            "le" => CmpOp::Le,
            _ => return None,
        })
    }

    /// Whether `ordering` (of the row's value against the literal) satisfies the operator.
    fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            CmpOp::Eq => ordering == Equal,
            CmpOp::Ne => ordering != Equal,
            CmpOp::Gt => ordering == Greater,
            CmpOp::Ge => ordering != Less,
            CmpOp::Lt => ordering == Less,
            CmpOp::Le => ordering != Greater,
        }
    }
}

/// One `TimeDim <op> <integer>` comparison of a `$filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comparison {
    /// The operator.
    pub op: CmpOp,
    /// The integer literal on the right.
    pub value: i64,
}

/// The supported form of `$filter`: comparisons `TimeDim <op> <integer>` joined by `and`, all of
/// which must hold (e.g. `TimeDim ge 2005 and TimeDim le 2008`). Words are separated by whitespace;
/// operator names and `and` may be in any case; the field name is exactly `TimeDim`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The comparisons, in the order given; never empty.
    pub comparisons: Vec<Comparison>,
}

impl Filter {
    /// Parses the decoded `$filter` text.
    ///
    /// # Errors
    /// A message for a 400 response naming the problem: an empty filter, a field other than
    /// `TimeDim`, `or`/`not`, functions or parentheses, an unknown operator, a value that is not an
    /// integer, or a missing or extra word.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let fail = |why: String| {
            Err(format!(
                "The query parameter '$filter' value '{text}' is not supported by the GHO test server: \
                 {why}. Supported: one or more 'TimeDim <op> <integer>' joined by 'and', op one of \
                 eq, ne, gt, ge, lt, le."
            ))
        };
        if let Some(c) = text.chars().find(|c| matches!(c, '(' | ')')) {
            return fail(format!(
                "'{c}' found; functions and parentheses are not supported"
            ));
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.is_empty() {
            return fail("the filter is empty".into());
        }
        let logical = |w: &str| {
            ["and", "or", "not"]
                .iter()
                .any(|l| w.eq_ignore_ascii_case(l))
        };
        let mut comparisons = Vec::new();
        let mut i = 0;
        loop {
            match words.get(i) {
                Some(&"TimeDim") => {}
                Some(w) if logical(w) => {
                    return fail(format!(
                        "expected the field TimeDim at word {}, found the logical operator '{w}'",
                        i + 1
                    ))
                }
                Some(w) => {
                    return fail(format!(
                        "only the field TimeDim (exactly so spelled) can be compared, found '{w}'"
                    ))
                }
                None => return fail("it ends with 'and' where a comparison is expected".into()),
            }
            let op = match words.get(i + 1) {
                Some(w) => match CmpOp::from_word(w) {
                    Some(op) => op,
                    None => {
                        return fail(format!("'{w}' after TimeDim is not a comparison operator"))
                    }
                },
                None => return fail("TimeDim is not followed by a comparison operator".into()),
            };
            let value = match words.get(i + 2) {
                Some(w) => match w.parse::<i64>() {
                    Ok(v) => v,
                    Err(_) => {
                        return fail(format!(
                            "'{w}' is not an integer literal (64-bit, e.g. 2005)"
                        ))
                    }
                },
                None => {
                    return fail(format!(
                        "TimeDim {} is not followed by an integer",
                        words[i + 1]
                    ))
                }
            };
            comparisons.push(Comparison { op, value });
            i += 3;
            match words.get(i) {
                None => return Ok(Filter { comparisons }),
                Some(w) if w.eq_ignore_ascii_case("and") => i += 1,
                Some(w) if logical(w) => {
                    return fail(format!(
                        "the logical operator '{w}' is not supported (only 'and')"
                    ))
                }
                Some(w) => {
                    return fail(format!(
                        "expected 'and' or the end after a comparison, found '{w}'"
                    ))
                }
            }
        }
    }

    /// Whether a row whose `TimeDim` is `time_dim` satisfies every comparison. A null or missing
    /// `TimeDim` matches no comparison (so no filter).
    pub fn matches(&self, time_dim: Option<&serde_json::Number>) -> bool {
        let Some(n) = time_dim else {
            return false;
        };
        self.comparisons.iter().all(|c| {
            let ordering = if let Some(i) = n.as_i64() {
                i.cmp(&c.value)
            } else if n.as_u64().is_some() {
                // Beyond i64::MAX: greater than any i64 literal.
                std::cmp::Ordering::Greater
            } else {
                // A non-integral number such as 2004.5 (JSON has no NaN).
                n.as_f64()
                    .and_then(|f| f.partial_cmp(&(c.value as f64)))
                    .unwrap_or(std::cmp::Ordering::Less)
            };
            c.op.holds(ordering)
        })
    }
}

/// Checks a query string strictly; returns the ordering, or a message for a 400 response.
pub fn validate_query(query: &str) -> Result<(Query, Order), String> {
    let mut order = Order::File;
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k.starts_with('$') {
            if seen.iter().any(|s| *s == k) {
                return Err(format!(
                    "The query option '{k}' was specified more than once, but it must be specified at most once."
                ));
            }
            seen.push(k.to_string());
        }
        match k.as_ref() {
            "$top" | "$skip" if v.trim().parse::<u64>().is_err() => {
                return Err(format!(
                    "The query parameter '{k}' has an invalid value '{v}': expected a non-negative integer."
                ));
            }
            "$count" if parse_bool(&v).is_none() => {
                return Err(format!("The query parameter '$count' has an invalid value '{v}': expected true or false."));
            }
            "$top" | "$skip" | "$count" => {}
            "$filter" => {
                Filter::parse(&v)?;
            }
            "$orderby" => {
                let words: Vec<&str> = v.split_whitespace().collect();
                order = match words.as_slice() {
                    ["Id"] => Order::IdAsc,
                    ["Id", dir] if dir.eq_ignore_ascii_case("asc") => Order::IdAsc,
                    ["Id", dir] if dir.eq_ignore_ascii_case("desc") => Order::IdDesc,
                    _ => {
                        return Err(format!(
                            "The query parameter '$orderby' value '{v}' is not supported by the GHO test server (only Id, Id asc, Id desc)."
                        ))
                    }
                };
            }
            other if other.starts_with('$') => {
                return Err(format!(
                    "The query option '{other}' is not supported by the GHO test server."
                ));
            }
            _ => {}
        }
    }
    Ok((parse_query(query), order))
}

#[derive(Deserialize)]
struct FileEnvelope<'a> {
    #[serde(rename = "@odata.context", borrow)]
    context: Option<&'a RawValue>,
    #[serde(borrow)]
    value: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct RowKeys {
    #[serde(rename = "Id")]
    id: Option<i64>,
    #[serde(rename = "TimeDim")]
    time_dim: Option<serde_json::Value>,
}

/// Builds the response body for a saved GHO response `file` (its JSON text) and a query: rows kept by
/// `$filter`, ordered, sliced by `$skip`/`$top`, written as their raw JSON text, `@odata.context`
/// kept, `@odata.count` (the number of rows kept by `$filter`: all rows of the file without one)
/// added when `$count=true`.
///
/// # Errors
/// The file is not a JSON object with a `value` array, a row's `Id` is not an integer, a row's
/// `TimeDim` is neither a number nor null while a `$filter` is given, or `query.filter` is not a
/// supported filter ([`validate_query`] reports that first, as a 400).
pub fn render_page(file: &str, query: &Query, order: Order) -> Result<String, String> {
    let filter = query.filter.as_deref().map(Filter::parse).transpose()?;
    let env: FileEnvelope<'_> = serde_json::from_str(file)
        .map_err(|e| format!("saved response is not an OData envelope: {e}"))?;
    let mut rows: Vec<(Option<i64>, &RawValue)> = Vec::with_capacity(env.value.len());
    for (i, raw) in env.value.iter().enumerate() {
        let keys = serde_json::from_str::<RowKeys>(raw.get())
            .map_err(|e| format!("saved response row {i}: cannot read its Id: {e}"))?;
        if let Some(filter) = &filter {
            let time_dim = match &keys.time_dim {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::Number(n)) => Some(n),
                Some(other) => {
                    return Err(format!(
                        "saved response row {i}: TimeDim is {other}, not a number; cannot apply $filter"
                    ))
                }
            };
            if !filter.matches(time_dim) {
                continue;
            }
        }
        rows.push((keys.id, raw));
    }
    match order {
        Order::File => {}
        Order::IdAsc => rows.sort_by_key(|r| r.0),
        Order::IdDesc => rows.sort_by_key(|r| std::cmp::Reverse(r.0)),
    }
    let total = rows.len();
    let skip = usize::try_from(query.skip.unwrap_or(0))
        .unwrap_or(usize::MAX)
        .min(total);
    let top = usize::try_from(query.top.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
    let end = skip.saturating_add(top).min(total);

    let mut body = String::with_capacity(file.len() / 2 + 128);
    body.push('{');
    if let Some(ctx) = env.context {
        body.push_str("\"@odata.context\":");
        body.push_str(ctx.get());
        body.push(',');
    }
    if query.count == Some(true) {
        body.push_str(&format!("\"@odata.count\":{total},"));
    }
    body.push_str("\"value\":[");
    for (i, (_, raw)) in rows[skip..end].iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(raw.get());
    }
    body.push_str("]}");
    Ok(body)
}

struct Response {
    status: u16,
    content_type: &'static str,
    extra_headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json; charset=utf-8",
            extra_headers: Vec::new(),
            body: body.into_bytes(),
        }
    }

    fn odata_error(status: u16, message: &str) -> Response {
        let body =
            serde_json::json!({ "error": { "code": status.to_string(), "message": message } });
        Response::json(status, body.to_string())
    }

    fn head(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (k, v) in &self.extra_headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
}

/// Reads one request head; `Ok(None)` when the peer closed before sending a complete one.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or("").to_string();
                let target = req.path.unwrap_or("");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                return Ok(Some(Request {
                    method,
                    path: path.to_string(),
                    query: query.to_string(),
                }));
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("bad request head: {e}"),
                ))
            }
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The normal (fault-free) response to a request.
async fn route(dir: &Path, req: &Request) -> Response {
    if req.method != "GET" {
        let mut r = Response::odata_error(
            405,
            &format!(
                "The requested resource does not support http method '{}'.",
                req.method
            ),
        );
        r.extra_headers.push(("Allow".into(), "GET".into()));
        return r;
    }
    let Some(indicator) = req
        .path
        .strip_prefix("/api/")
        .filter(|s| valid_indicator(s))
    else {
        return Response::odata_error(
            404,
            &format!(
                "No HTTP resource was found that matches the request URI '{}'.",
                req.path
            ),
        );
    };
    let file = dir.join(format!("{indicator}.json"));
    let text = match tokio::fs::read_to_string(&file).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Response::odata_error(404, &format!("Indicator '{indicator}' was not found (no {indicator}.json in the test server's directory)."));
        }
        Err(e) => {
            return Response::odata_error(500, &format!("cannot read {}: {e}", file.display()))
        }
    };
    let (query, order) = match validate_query(&req.query) {
        Ok(v) => v,
        Err(msg) => return Response::odata_error(400, &msg),
    };
    match render_page(&text, &query, order) {
        Ok(body) => Response::json(200, body),
        Err(msg) => Response::odata_error(500, &format!("{}: {msg}", file.display())),
    }
}

async fn handle(mut stream: TcpStream, dir: &Path, shared: &Mutex<Shared>) -> std::io::Result<()> {
    let Some(req) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let q = parse_query(&req.query);
    // Taking the fault and logging the request under one lock keeps faults and log in arrival order.
    let (fault, delay, index) = {
        let mut s = lock(shared);
        let fault = s.faults.pop_front();
        s.log.push(RequestRecord {
            method: req.method.clone(),
            path: req.path.clone(),
            top: q.top,
            skip: q.skip,
            orderby: q.orderby,
            count: q.count,
            filter: q.filter,
            status: None,
            fault: fault.clone(),
        });
        (fault, s.delay, s.log.len() - 1)
    };
    tracing::debug!(method = %req.method, path = %req.path, query = %req.query, ?fault, "GHO test server: request");

    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(Fault::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    if fault == Some(Fault::ConnectionReset) {
        stream.set_zero_linger()?;
        drop(stream);
        return Ok(());
    }

    let response = match &fault {
        Some(Fault::Status(code)) => Response::odata_error(
            *code,
            &format!("Injected fault: HTTP {code} from the GHO test server."),
        ),
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut r =
                Response::odata_error(429, "Injected fault: too many requests; retry later.");
            r.extra_headers
                .push(("Retry-After".into(), retry_after_secs.to_string()));
            r
        }
        Some(Fault::NotOData) => Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            extra_headers: Vec::new(),
            body: b"<!DOCTYPE html>\n<html><head><title>Service notice</title></head>\
                    <body><h1>The service is temporarily unavailable</h1></body></html>\n"
                .to_vec(),
        },
        _ => route(dir, &req).await,
    };
    lock(shared).log[index].status = Some(response.status);

    stream.write_all(&response.head()).await?;
    if fault == Some(Fault::TruncatedBody) {
        stream
            .write_all(&response.body[..response.body.len() / 2])
            .await?;
    } else {
        stream.write_all(&response.body).await?;
    }
    stream.flush().await?;
    stream.shutdown().await?;
    // Drain what the client may still send so that closing does not turn into a reset.
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    const FILE: &str = r#"{
  "@odata.context": "https://ghoapi.azureedge.net/api/$metadata#T",
  "value": [
    {"Id": 30, "Value": "c", "NumericValue": 3.10},
    {"Id": 10, "Value": "a", "NumericValue": 1e2},
    {"Id": 20, "Value": "b", "NumericValue": null}
  ]
}"#;

    fn ids(body: &str) -> Vec<i64> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Id"].as_i64().unwrap())
            .collect()
    }

    #[test]
    fn parses_percent_encoded_options() {
        let q = parse_query("%24top=5&%24skip=10&$orderby=Id%20desc&$count=true&foo=bar");
        assert_eq!(
            q,
            Query {
                top: Some(5),
                skip: Some(10),
                orderby: Some("Id desc".into()),
                count: Some(true),
                filter: None,
            }
        );
        assert_eq!(
            parse_query("$filter=TimeDim%20ge%202005+and+TimeDim%20le%202008").filter,
            Some("TimeDim ge 2005 and TimeDim le 2008".into())
        );
        assert_eq!(validate_query("$orderby=Id+asc").unwrap().1, Order::IdAsc);
        assert_eq!(validate_query("$orderby=Id").unwrap().1, Order::IdAsc);
        assert_eq!(
            validate_query("$orderby=Id%20DESC").unwrap().1,
            Order::IdDesc
        );
        assert_eq!(validate_query("").unwrap().1, Order::File);
    }

    #[test]
    fn rejects_bad_or_unsupported_options() {
        assert!(validate_query("$top=-1").unwrap_err().contains("$top"));
        assert!(validate_query("$skip=x").unwrap_err().contains("$skip"));
        assert!(validate_query("$count=yes").unwrap_err().contains("$count"));
        assert!(validate_query("$orderby=Value")
            .unwrap_err()
            .contains("$orderby"));
        assert!(validate_query("$select=Id")
            .unwrap_err()
            .contains("$select"));
        // Unsupported filters are 400s; the message names the filter and the problem.
        for (filter, problem) in [
            ("Id%20eq%201", "found 'Id'"),
            ("timedim%20eq%202005", "found 'timedim'"),
            ("TimeDim%20ge%202005%20or%20TimeDim%20le%202000", "'or'"),
            ("year(Date)%20eq%202005", "functions and parentheses"),
            ("(TimeDim%20eq%202005)", "functions and parentheses"),
            ("TimeDim%20between%202005", "'between'"),
            ("TimeDim%20ge%202005.5", "'2005.5' is not an integer"),
            ("TimeDim%20ge%20'2005'", "is not an integer"),
            ("TimeDim%20ge", "not followed by an integer"),
            ("TimeDim%20ge%202005%20and", "ends with 'and'"),
            (
                "TimeDim%20ge%202005%20TimeDim%20le%202008",
                "expected 'and'",
            ),
            ("", "empty"),
        ] {
            let err = validate_query(&format!("$filter={filter}")).unwrap_err();
            assert!(
                err.contains("'$filter'") && err.contains(problem),
                "{filter}: {err}"
            );
        }
        assert!(
            validate_query("$filter=TimeDim%20eq%201&%24filter=TimeDim%20eq%202")
                .unwrap_err()
                .contains("more than once")
        );
        assert!(validate_query("$top=1&$top=2")
            .unwrap_err()
            .contains("more than once"));
        assert!(validate_query("other=1&other=2").is_ok());
    }

    #[test]
    fn parses_filters() {
        use CmpOp::*;
        let parsed = |f: &str| {
            Filter::parse(f)
                .unwrap_or_else(|e| panic!("{f}: {e}"))
                .comparisons
                .into_iter()
                .map(|c| (c.op, c.value))
                .collect::<Vec<_>>()
        };
        assert_eq!(parsed("TimeDim ge 2005"), vec![(Ge, 2005)]);
        assert_eq!(
            parsed("TimeDim ge 2005 and TimeDim le 2008"),
            vec![(Ge, 2005), (Le, 2008)]
        );
        assert_eq!(
            parsed("  TimeDim EQ -1 AND TimeDim Ne 0 and TimeDim gt +3 and TimeDim lT 9 and TimeDim lE 8 "),
            vec![(Eq, -1), (Ne, 0), (Gt, 3), (Lt, 9), (Le, 8)]
        );
        assert!(Filter::parse("TimeDim ge 99999999999999999999")
            .unwrap_err()
            .contains("not an integer"));
        assert!(Filter::parse("not TimeDim eq 1")
            .unwrap_err()
            .contains("'not'"));
        assert!(Filter::parse("TimeDim ge 1 and and TimeDim le 2")
            .unwrap_err()
            .contains("'and'"));
        // validate_query accepts a supported filter, percent-encoded or with + for spaces.
        let (q, _) =
            validate_query("%24filter=TimeDim+ge+2005%20and%20TimeDim%20le%202008").unwrap();
        assert_eq!(
            q.filter.as_deref(),
            Some("TimeDim ge 2005 and TimeDim le 2008")
        );
    }

    #[test]
    fn evaluates_filters_with_nulls_never_matching() {
        let f = |text: &str| Filter::parse(text).unwrap();
        let n = |v: serde_json::Value| match v {
            serde_json::Value::Number(n) => n,
            other => panic!("{other}"),
        };
        let window = f("TimeDim ge 2005 and TimeDim le 2008");
        for (year, expected) in [
            (2004, false),
            (2005, true),
            (2006, true),
            (2008, true),
            (2009, false),
        ] {
            assert_eq!(window.matches(Some(&n(year.into()))), expected, "{year}");
        }
        assert!(!window.matches(None));
        // Every operator, at, below and above its literal.
        for (text, at, below, above) in [
            ("TimeDim eq 2005", true, false, false),
            ("TimeDim ne 2005", false, true, true),
            ("TimeDim gt 2005", false, false, true),
            ("TimeDim ge 2005", true, false, true),
            ("TimeDim lt 2005", false, true, false),
            ("TimeDim le 2005", true, true, false),
        ] {
            let filter = f(text);
            let got = (
                filter.matches(Some(&n(2005.into()))),
                filter.matches(Some(&n(2004.into()))),
                filter.matches(Some(&n(2006.into()))),
            );
            assert_eq!(got, (at, below, above), "{text}");
            assert!(!filter.matches(None), "{text}: null never matches");
        }
        // Non-integral and huge numbers compare by value.
        assert!(f("TimeDim gt 2004").matches(Some(&n(serde_json::json!(2004.5)))));
        assert!(!f("TimeDim le 2004").matches(Some(&n(serde_json::json!(2004.5)))));
        assert!(f("TimeDim eq 2004").matches(Some(&n(serde_json::json!(2004.0)))));
        assert!(f("TimeDim gt 0").matches(Some(&n(serde_json::json!(u64::MAX)))));
    }

    const YEARS_FILE: &str = r#"{
  "@odata.context": "c",
  "value": [
    {"Id": 6, "TimeDim": 2006},
    {"Id": 1, "TimeDim": 2004},
    {"Id": 5, "TimeDim": null},
    {"Id": 3, "TimeDim": 2008},
    {"Id": 2, "TimeDim": 2005},
    {"Id": 4},
    {"Id": 7, "TimeDim": 2009},
    {"Id": 8, "TimeDim": 2007.0}
  ]
}"#;

    #[test]
    fn filters_before_ordering_slicing_and_counting() {
        let page = |q: &str| {
            let (q, o) = validate_query(q).unwrap();
            let body: serde_json::Value =
                serde_json::from_str(&render_page(YEARS_FILE, &q, o).unwrap()).unwrap();
            let ids: Vec<i64> = body["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["Id"].as_i64().unwrap())
                .collect();
            (ids, body["@odata.count"].as_u64())
        };
        let window = "$filter=TimeDim%20ge%202005%20and%20TimeDim%20le%202008";
        assert_eq!(
            page(&format!("{window}&$orderby=Id&$count=true")),
            (vec![2, 3, 6, 8], Some(4))
        );
        assert_eq!(
            page(&format!("{window}&$orderby=Id&$count=true&$skip=1&$top=2")),
            (vec![3, 6], Some(4))
        );
        assert_eq!(
            page(&format!("{window}&$orderby=Id%20desc&$count=true&$skip=3")),
            (vec![2], Some(4))
        );
        // Without $orderby, file order.
        assert_eq!(page(window), (vec![6, 3, 2, 8], None));
        // Null and missing TimeDim never match, not even `ne`.
        assert_eq!(
            page("$filter=TimeDim%20ne%200&$orderby=Id&$count=true"),
            (vec![1, 2, 3, 6, 7, 8], Some(6))
        );
        assert_eq!(
            page("$filter=TimeDim%20gt%203000&$count=true"),
            (vec![], Some(0))
        );
        // Without a filter, every row, and the count of the file.
        assert_eq!(
            page("$orderby=Id&$count=true&$top=2"),
            (vec![1, 2], Some(8))
        );
        // A TimeDim that is not a number cannot be filtered: an error (a 500 from the server).
        let (q, o) = validate_query("$filter=TimeDim%20eq%201").unwrap();
        let err = render_page(r#"{"value":[{"Id":1,"TimeDim":"2004"}]}"#, &q, o).unwrap_err();
        assert!(err.contains("TimeDim"), "{err}");
        assert!(render_page(
            r#"{"value":[{"Id":1,"TimeDim":"2004"}]}"#,
            &Query::default(),
            o
        )
        .is_ok());
    }

    #[test]
    fn orders_slices_and_counts() {
        let all = |q: &str| {
            let (q, o) = validate_query(q).unwrap();
            render_page(FILE, &q, o).unwrap()
        };
        assert_eq!(ids(&all("")), vec![30, 10, 20]);
        assert_eq!(ids(&all("$orderby=Id")), vec![10, 20, 30]);
        assert_eq!(ids(&all("$orderby=Id desc")), vec![30, 20, 10]);
        assert_eq!(ids(&all("$orderby=Id&$skip=1&$top=1")), vec![20]);
        assert_eq!(ids(&all("$orderby=Id&$skip=2&$top=5")), vec![30]);
        assert_eq!(ids(&all("$orderby=Id&$skip=9")), Vec::<i64>::new());
        assert_eq!(ids(&all("$top=0")), Vec::<i64>::new());

        let counted: serde_json::Value = serde_json::from_str(&all("$count=true&$top=1")).unwrap();
        assert_eq!(counted["@odata.count"], 3);
        assert_eq!(
            counted["@odata.context"],
            "https://ghoapi.azureedge.net/api/$metadata#T"
        );
        let uncounted: serde_json::Value = serde_json::from_str(&all("$count=false")).unwrap();
        assert!(uncounted.get("@odata.count").is_none());
    }

    #[test]
    fn writes_rows_verbatim() {
        let (q, o) = validate_query("$orderby=Id").unwrap();
        let body = render_page(FILE, &q, o).unwrap();
        // Number spellings of the file are kept, not re-serialized.
        assert!(
            body.contains(r#"{"Id": 30, "Value": "c", "NumericValue": 3.10}"#),
            "{body}"
        );
        assert!(body.contains(r#""NumericValue": 1e2"#), "{body}");
    }

    #[test]
    fn rejects_files_that_are_not_envelopes() {
        assert!(render_page("[1,2]", &Query::default(), Order::File).is_err());
        assert!(render_page(r#"{"value":[{"Id":"x"}]}"#, &Query::default(), Order::IdAsc).is_err());
    }

    /// Sends a raw GET and returns (status line + headers, body bytes, read error if any).
    fn get(server: &GhoServer, target: &str) -> (String, Vec<u8>, Option<std::io::ErrorKind>) {
        let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = Vec::new();
        let err = s.read_to_end(&mut buf).err().map(|e| e.kind());
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
            .unwrap_or(buf.len());
        (
            String::from_utf8_lossy(&buf[..split]).into_owned(),
            buf[split..].to_vec(),
            err,
        )
    }

    fn serve() -> (tempfile::TempDir, GhoServer) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("T.json"), FILE).unwrap();
        let server = GhoServer::start(dir.path()).unwrap();
        (dir, server)
    }

    #[test]
    fn serves_over_http_and_logs_requests() {
        let (_dir, server) = serve();
        assert_eq!(server.indicators(), vec!["T".to_string()]);
        let (head, body, err) = get(&server, "/api/T?%24top=2&$skip=0&$orderby=Id&$count=true");
        assert!(err.is_none());
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: application/json; charset=utf-8"),
            "{head}"
        );
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{head}"
        );
        assert_eq!(ids(std::str::from_utf8(&body).unwrap()), vec![10, 20]);

        let (head, body, _) = get(&server, "/api/NOPE");
        assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
        let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(err["error"]["message"].as_str().unwrap().contains("NOPE"));

        let (head, body, _) = get(&server, "/api/T?$filter=Id%20eq%201");
        assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
        let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(msg.contains("$filter") && msg.contains("'Id'"), "{msg}");

        // A supported filter; FILE's rows have no TimeDim, so none matches.
        let (head, body, _) = get(
            &server,
            "/api/T?$filter=TimeDim%20ge%202005%20and%20TimeDim%20le%202008&$count=true",
        );
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(page["@odata.count"], 0);
        assert_eq!(page["value"], serde_json::json!([]));

        let log = server.requests();
        assert_eq!(log.len(), 4);
        assert_eq!(log[0].path, "/api/T");
        assert_eq!(
            (log[0].top, log[0].skip, log[0].count),
            (Some(2), Some(0), Some(true))
        );
        assert_eq!(log[0].orderby.as_deref(), Some("Id"));
        assert_eq!(log[0].status, Some(200));
        assert_eq!(log[0].filter, None);
        assert_eq!(log[1].status, Some(404));
        assert_eq!(log[2].status, Some(400));
        assert_eq!(log[2].filter.as_deref(), Some("Id eq 1"));
        assert_eq!(log[3].status, Some(200));
        assert_eq!(
            log[3].filter.as_deref(),
            Some("TimeDim ge 2005 and TimeDim le 2008")
        );
    }

    #[test]
    fn applies_faults_in_order_one_per_request() {
        let (_dir, server) = serve();
        server.inject(Fault::Status(503));
        server.inject(Fault::TooManyRequests {
            retry_after_secs: 7,
        });
        server.inject(Fault::TruncatedBody);
        server.inject(Fault::ConnectionReset);
        server.inject(Fault::NotOData);
        server.inject(Fault::Delay(Duration::from_millis(200)));

        let (head, _, _) = get(&server, "/api/T");
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        let (head, _, _) = get(&server, "/api/T");
        assert!(
            head.starts_with("HTTP/1.1 429 ") && head.contains("Retry-After: 7\r\n"),
            "{head}"
        );
        let (head, body, _) = get(&server, "/api/T");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert_eq!(body.len(), len / 2);
        let (head, body, err) = get(&server, "/api/T");
        assert!(head.is_empty() && body.is_empty(), "{head}");
        assert_eq!(err, Some(std::io::ErrorKind::ConnectionReset));
        let (head, body, _) = get(&server, "/api/T");
        assert!(
            head.starts_with("HTTP/1.1 200 ") && head.contains("text/html"),
            "{head}"
        );
        assert!(body.starts_with(b"<!DOCTYPE html>"));
        let t = std::time::Instant::now();
        let (head, _, _) = get(&server, "/api/T");
        assert!(head.starts_with("HTTP/1.1 200 ") && t.elapsed() >= Duration::from_millis(200));
        let (head, _, _) = get(&server, "/api/T");
        assert!(head.starts_with("HTTP/1.1 200 "), "no fault left: {head}");

        let faults: Vec<Option<Fault>> = server.requests().into_iter().map(|r| r.fault).collect();
        assert_eq!(
            faults,
            vec![
                Some(Fault::Status(503)),
                Some(Fault::TooManyRequests {
                    retry_after_secs: 7
                }),
                Some(Fault::TruncatedBody),
                Some(Fault::ConnectionReset),
                Some(Fault::NotOData),
                Some(Fault::Delay(Duration::from_millis(200))),
                None,
            ]
        );
        assert_eq!(server.requests()[3].status, None);
    }

    #[test]
    fn stops_when_dropped() {
        let (_dir, server) = serve();
        let addr = server.addr();
        server.set_delay(Duration::from_secs(30)); // an in-flight request must not block the drop
        let pending = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            write!(s, "GET /api/T HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
        });
        std::thread::sleep(Duration::from_millis(100));
        let t = std::time::Instant::now();
        drop(server);
        assert!(t.elapsed() < Duration::from_secs(5));
        pending.join().unwrap();
        assert!(std::net::TcpStream::connect(addr).is_err());
    }
}
