//! WHO Global Health Observatory (GHO) indicators over the GHO OData API, as Arrow record batches.
//!
//! Format source: the GHO OData API (<https://www.who.int/data/gho/info/gho-odata-api>) and a saved
//! response, `shared/fixtures/who_gho/WSH_8.json` (`https://ghoapi.azureedge.net/api/WSH_8`, 165 rows).
//! A response is an envelope `{"@odata.context": "…/$metadata#<IndicatorCode>", "@odata.count": N,
//! "value": [row, …]}` whose rows are flat JSON objects; see [`GhoSource::schema`] for the fields.
//!
//! Paging is client-driven: nothing in a response links to the next page, so [`GhoSource`] asks for
//! `GET {api}/{indicator}?$top={page_size}&$skip={skip}&$orderby=Id&$count=true`. `$orderby=Id` makes
//! `$skip` stable between requests; `$count=true` gives the total (`@odata.count`) for progress.
//! The next page starts at `skip + batch.num_rows()`; the last page is empty or reaches the total
//! ([`GhoPage::is_last`]).
//!
//! A time window ([`GhoConfig::since`], [`GhoConfig::until`]: years, inclusive) is applied by the
//! server: the request gets `&$filter=TimeDim ge {since} and TimeDim le {until}` (only the parts that
//! are set; spaces sent as `%20`). Paging and `@odata.count` are then over the filtered result, and
//! rows whose `TimeDim` is null are left out.
//!
//! Transient failures — timeouts, connection errors, a body that breaks off, `429 Too Many Requests`
//! (its `Retry-After` honoured up to [`MAX_RETRY_AFTER`]), `408` and `5xx` — are retried with
//! exponential backoff and jitter ([`RetryPolicy`]); each retry is logged with `tracing::warn!`.
//!
//! ```no_run
//! use psystem_sources::gho::{GhoConfig, GhoSource};
//!
//! # async fn run() -> Result<(), psystem_sources::SourceError> {
//! let source = GhoSource::new(GhoConfig::new("https://ghoapi.azureedge.net/api", "WSH_8"))?;
//! let mut skip = 0;
//! loop {
//!     let page = source.fetch_page(skip).await?;
//!     if !page.unknown_fields.is_empty() {
//!         eprintln!("fields not in the schema: {:?}", page.unknown_fields);
//!     }
//!     eprintln!("rows {}..{} of {:?}", skip, skip + page.batch.num_rows() as u64, page.total);
//!     if page.is_last() {
//!         break;
//!     }
//!     skip = page.next_skip();
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arrow_array::builder::{
    Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rand::Rng;
use serde_json::Value;

use crate::SourceError;

/// The public GHO OData API root.
pub const DEFAULT_API: &str = "https://ghoapi.azureedge.net/api";
/// Default rows per request (`$top`).
pub const DEFAULT_PAGE_SIZE: u64 = 1000;
/// Default time limit of one request, from connecting until the whole body is read.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default number of requests made for one page before giving up (the first one included).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;
/// Default wait before the first retry; it doubles with every further retry.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Default cap of the computed backoff between two attempts.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest `Retry-After` honoured on a 429; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// Longest body excerpt quoted in an error message, in characters.
const EXCERPT_CHARS: usize = 300;

/// How transient failures are retried.
///
/// The wait before retry `n` (1-based) is drawn uniformly from `[b/2, b]` where
/// `b = min(initial_backoff × 2^(n-1), max_backoff)` ("equal jitter"); after a 429 it is at least the
/// server's `Retry-After` (capped at [`MAX_RETRY_AFTER`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Requests made for one page before giving up, the first one included (0 is treated as 1).
    /// Default [`DEFAULT_MAX_ATTEMPTS`].
    pub max_attempts: u32,
    /// Backoff before the first retry. Default [`DEFAULT_INITIAL_BACKOFF`].
    pub initial_backoff: Duration,
    /// Cap of the computed backoff. Default [`DEFAULT_MAX_BACKOFF`].
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

impl RetryPolicy {
    /// The jittered wait before retry number `retry` (1 = the first retry), without `Retry-After`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)));
        let cap = exp.min(self.max_backoff);
        let half = cap / 2;
        let spread = (cap - half).as_micros() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            rand::rng().random_range(0..=spread)
        };
        half + Duration::from_micros(jitter)
    }
}

/// Where and what to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GhoConfig {
    /// API root without the indicator, e.g. [`DEFAULT_API`] (`https://ghoapi.azureedge.net/api`);
    /// `http` or `https`; a trailing `/` is ignored.
    pub api: String,
    /// Indicator code, e.g. `WSH_8` (letters, digits, `_`, `-`, `.`).
    pub indicator: String,
    /// Rows per request (`$top`), at least 1. Default [`DEFAULT_PAGE_SIZE`].
    pub page_size: u64,
    /// Time limit of one request, from connecting until the whole body is read. Default
    /// [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// How transient failures are retried.
    pub retry: RetryPolicy,
    /// First year to load, inclusive: only rows with `TimeDim >= since` (sent as
    /// `$filter=TimeDim ge {since}`). Default `None`: no lower bound. When `since` or `until` is set,
    /// rows whose `TimeDim` is null are not loaded.
    pub since: Option<i64>,
    /// Last year to load, inclusive: only rows with `TimeDim <= until` (sent as
    /// `$filter=TimeDim le {until}`). Default `None`: no upper bound. At least `since` when both are
    /// set.
    pub until: Option<i64>,
}

impl Default for GhoConfig {
    /// [`DEFAULT_API`] and the default page size, timeout and retries, no time window (all years),
    /// with an empty `indicator` (which [`GhoSource::new`] rejects: set it).
    fn default() -> Self {
        GhoConfig {
            api: DEFAULT_API.to_string(),
            indicator: String::new(),
            page_size: DEFAULT_PAGE_SIZE,
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
            since: None,
            until: None,
        }
    }
}

impl GhoConfig {
    /// A configuration for `indicator` at `api` with default page size, timeout and retries and no
    /// time window (all years).
    pub fn new(api: impl Into<String>, indicator: impl Into<String>) -> GhoConfig {
        GhoConfig {
            api: api.into(),
            indicator: indicator.into(),
            ..GhoConfig::default()
        }
    }
}

/// One page of an indicator's rows.
#[derive(Debug, Clone)]
pub struct GhoPage {
    /// `$skip` of the request: the position of the first row in the `Id`-ordered result.
    pub skip: u64,
    /// The rows, with the schema of [`GhoSource::schema`].
    pub batch: RecordBatch,
    /// `@odata.count`: rows of the whole indicator within the time window (all of them without one),
    /// when the server sent it.
    pub total: Option<u64>,
    /// Bytes of the response body received.
    pub bytes: u64,
    /// Field names found in rows of this page that are not in the schema (their values are not in
    /// `batch`); the caller reports them.
    pub unknown_fields: BTreeSet<String>,
}

impl GhoPage {
    /// `skip` of the next page: `skip + batch.num_rows()`.
    pub fn next_skip(&self) -> u64 {
        self.skip + self.batch.num_rows() as u64
    }

    /// Whether this is the last page: it is empty, or it reaches `total`.
    pub fn is_last(&self) -> bool {
        self.batch.num_rows() == 0 || self.total.is_some_and(|t| self.next_skip() >= t)
    }
}

/// Reads one WHO GHO indicator page by page (see the [module documentation](self)).
#[derive(Debug, Clone)]
pub struct GhoSource {
    config: GhoConfig,
    /// `{api}/{indicator}`, without a query.
    base: String,
    /// The `$filter` of the time window, decoded (`TimeDim ge 2005 and TimeDim le 2008`).
    filter: Option<String>,
    /// `&$filter=…` (percent-encoded) to append to the query, or empty.
    filter_param: String,
    client: reqwest::Client,
}

#[derive(Clone, Copy)]
enum Kind {
    Int64,
    Float64,
    Utf8,
    Timestamp,
}

/// The fields of a GHO row, in the order of the API's responses.
const FIELDS: [(&str, Kind); 25] = [
    ("Id", Kind::Int64),
    ("IndicatorCode", Kind::Utf8),
    ("SpatialDimType", Kind::Utf8),
    ("SpatialDim", Kind::Utf8),
    ("ParentLocationCode", Kind::Utf8),
    ("ParentLocation", Kind::Utf8),
    ("TimeDimType", Kind::Utf8),
    ("TimeDim", Kind::Int64),
    ("Dim1Type", Kind::Utf8),
    ("Dim1", Kind::Utf8),
    ("Dim2Type", Kind::Utf8),
    ("Dim2", Kind::Utf8),
    ("Dim3Type", Kind::Utf8),
    ("Dim3", Kind::Utf8),
    ("DataSourceDimType", Kind::Utf8),
    ("DataSourceDim", Kind::Utf8),
    ("Value", Kind::Utf8),
    ("NumericValue", Kind::Float64),
    ("Low", Kind::Float64),
    ("High", Kind::Float64),
    ("Comments", Kind::Utf8),
    ("Date", Kind::Timestamp),
    ("TimeDimensionValue", Kind::Utf8),
    ("TimeDimensionBegin", Kind::Timestamp),
    ("TimeDimensionEnd", Kind::Timestamp),
];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let fields: Vec<Field> = FIELDS
        .iter()
        .map(|(name, kind)| {
            let dt = match kind {
                Kind::Int64 => DataType::Int64,
                Kind::Float64 => DataType::Float64,
                Kind::Utf8 => DataType::Utf8,
                Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            };
            Field::new(*name, dt, true)
        })
        .collect();
    Arc::new(Schema::new(fields))
});

impl GhoSource {
    /// Checks `config` and builds the HTTP client (one per source, reused for every page).
    ///
    /// # Errors
    /// [`SourceError::Config`] for an `api` that is not an `http(s)` URL, an indicator code that is
    /// empty or has characters other than letters, digits, `_`, `-`, `.`, a `page_size` of 0, or a
    /// `since` after `until`;
    /// [`SourceError::Client`] if the client cannot be built.
    pub fn new(config: GhoConfig) -> Result<GhoSource, SourceError> {
        let api = config.api.trim_end_matches('/');
        let parsed = url::Url::parse(api).map_err(|e| SourceError::Config {
            detail: format!(
                "api `{}` is not a URL ({e}); expected e.g. {DEFAULT_API}",
                config.api
            ),
        })?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(SourceError::Config {
                detail: format!(
                    "api `{}` must be an http(s) URL without a query or fragment, e.g. {DEFAULT_API}",
                    config.api
                ),
            });
        }
        let ind = &config.indicator;
        if ind.is_empty()
            || ind.starts_with('.')
            || !ind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(SourceError::Config {
                detail: format!(
                    "indicator `{ind}` is not a GHO indicator code (letters, digits, _, -, .; e.g. WSH_8)"
                ),
            });
        }
        if config.page_size == 0 {
            return Err(SourceError::Config {
                detail: "page_size must be at least 1".into(),
            });
        }
        if let (Some(since), Some(until)) = (config.since, config.until) {
            if since > until {
                return Err(SourceError::Config {
                    detail: format!(
                        "since {since} is after until {until}, so the time window is empty; \
                         both are years, inclusive (since <= until)"
                    ),
                });
            }
        }
        let bounds: Vec<String> = [("ge", config.since), ("le", config.until)]
            .into_iter()
            .filter_map(|(op, year)| year.map(|y| format!("TimeDim {op} {y}")))
            .collect();
        let filter = (!bounds.is_empty()).then(|| bounds.join(" and "));
        let filter_param = match &filter {
            // form-urlencoding writes a space as `+` (a literal `+` as `%2B`); RFC 3986 and the OData
            // URL conventions spell it `%20`.
            Some(f) => format!(
                "&$filter={}",
                url::form_urlencoded::byte_serialize(f.as_bytes())
                    .collect::<String>()
                    .replace('+', "%20")
            ),
            None => String::new(),
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("psystem/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SourceError::Client {
                detail: psystem_core::error::error_chain(&e),
            })?;
        // The parser's normal form (lower-case scheme and host, no default port, …) is what the
        // client sends, so that `page_url` in messages is exactly the requested URL.
        let base = format!("{}/{ind}", parsed.as_str().trim_end_matches('/'));
        Ok(GhoSource {
            config,
            base,
            filter,
            filter_param,
            client,
        })
    }

    /// The configuration this source was built with.
    pub fn config(&self) -> &GhoConfig {
        &self.config
    }

    /// The declared schema of every page's batch; all fields nullable, a field missing from a row is
    /// null:
    ///
    /// | field | Arrow type |
    /// |---|---|
    /// | `Id` (row identifier, not contiguous) | Int64 |
    /// | `NumericValue`, `Low`, `High` (in the indicator's unit) | Float64 |
    /// | `TimeDim` (e.g. the year 2004) | Int64 |
    /// | `Date` (last update), `TimeDimensionBegin`, `TimeDimensionEnd` | Timestamp(Microsecond, "UTC") |
    /// | `IndicatorCode`, `SpatialDimType`, `SpatialDim`, `ParentLocationCode`, `ParentLocation`, `TimeDimType`, `Dim1Type`, `Dim1`, `Dim2Type`, `Dim2`, `Dim3Type`, `Dim3`, `DataSourceDimType`, `DataSourceDim`, `Value` (display text such as `"[5]/[10]"`), `Comments`, `TimeDimensionValue` | Utf8 |
    ///
    /// Decoding rules: JSON integers are accepted for the Float64 fields and integral numbers such as
    /// `2004.0` for the Int64 ones. Timestamps are RFC 3339 strings with any number of fractional
    /// digits and an offset (`2013-06-11T14:01:25.3+02:00`), converted to UTC; a value without an
    /// offset (`2013-06-11T14:01:25.3`) is taken as UTC; digits beyond microseconds are truncated.
    pub fn schema() -> SchemaRef {
        Arc::clone(&SCHEMA)
    }

    /// The `$filter` sent for the time window, decoded, e.g. `TimeDim ge 2005 and TimeDim le 2008`;
    /// `None` without `since` and `until`.
    pub fn filter(&self) -> Option<&str> {
        self.filter.as_deref()
    }

    /// The URL of the page starting at `skip`, exactly as it is requested:
    /// `{api}/{indicator}?$top={page_size}&$skip={skip}&$orderby=Id&$count=true`, followed by
    /// `&$filter=TimeDim%20ge%20{since}%20and%20TimeDim%20le%20{until}` when a time window is set (only
    /// the bounds that are set).
    pub fn page_url(&self, skip: u64) -> String {
        format!(
            "{}?$top={}&$skip={skip}&$orderby=Id&$count=true{}",
            self.base, self.config.page_size, self.filter_param
        )
    }

    /// Fetches and decodes the page starting at `skip` (0 for the first page), retrying transient
    /// failures per the config's [`RetryPolicy`].
    ///
    /// # Errors
    /// * [`SourceError::Http`] — a 4xx other than 408/429 (e.g. 404 for an unknown indicator), not retried;
    /// * [`SourceError::NotOData`] — a 2xx body that is not JSON or has no `value` array, not retried;
    /// * [`SourceError::Decode`] — a row with a value of the wrong type, naming the row, its `Id` and the field;
    /// * [`SourceError::RetriesExhausted`] — timeouts, connection errors, broken-off bodies, 408, 429
    ///   or 5xx on every attempt;
    /// * [`SourceError::Request`] — the request could not be made at all (redirect loop).
    pub async fn fetch_page(&self, skip: u64) -> Result<GhoPage, SourceError> {
        let url = self.page_url(skip);
        let attempts = self.config.retry.max_attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.attempt(&url, skip).await {
                Ok(page) => {
                    tracing::debug!(url = %url, attempt, rows = page.batch.num_rows(), bytes = page.bytes, "GHO page fetched");
                    return Ok(page);
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient {
                    reason,
                    retry_after,
                }) => {
                    last = reason;
                    if attempt == attempts {
                        break;
                    }
                    let mut wait = self.config.retry.backoff(attempt);
                    if let Some(ra) = retry_after {
                        wait = wait.max(ra.min(MAX_RETRY_AFTER));
                    }
                    tracing::warn!(
                        url = %url,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        error = %last,
                        "GHO request failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
        Err(SourceError::RetriesExhausted {
            url,
            attempts,
            last,
        })
    }

    /// One request: a page, a transient failure, or a fatal error.
    async fn attempt(&self, url: &str, skip: u64) -> Result<GhoPage, Failure> {
        let response = self
            .client
            .get(url)
            .timeout(self.config.timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| transport_failure(url, e))?;
        let status = response.status();
        if status.is_success() {
            let body = response
                .bytes()
                .await
                .map_err(|e| transport_failure(url, e))?;
            return decode_page(url, skip, &body).map_err(Failure::Fatal);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(parse_retry_after);
        // The body of an error response only feeds the message; a failure to read it is not an error.
        let excerpt = match response.bytes().await {
            Ok(b) => excerpt(&b),
            Err(_) => String::new(),
        };
        let code = status.as_u16();
        if code == 429 || code == 408 || status.is_server_error() {
            let after = match retry_after {
                Some(d) => format!(" (Retry-After {} s)", d.as_secs()),
                None => String::new(),
            };
            return Err(Failure::Transient {
                reason: format!("HTTP {status}{after}: `{excerpt}`"),
                retry_after: if code == 429 { retry_after } else { None },
            });
        }
        Err(Failure::Fatal(SourceError::Http {
            url: url.to_string(),
            status: code,
            excerpt,
        }))
    }
}

enum Failure {
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    Fatal(SourceError),
}

fn transport_failure(url: &str, e: reqwest::Error) -> Failure {
    let detail = psystem_core::error::error_chain(&e);
    if e.is_builder() || e.is_redirect() {
        return Failure::Fatal(SourceError::Request {
            url: url.to_string(),
            detail,
        });
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body broke off"
    } else {
        "request failed"
    };
    Failure::Transient {
        reason: format!("{what}: {detail}"),
        retry_after: None,
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
fn parse_retry_after(v: &reqwest::header::HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(s).ok()?;
    let secs = (when.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

/// The start of a body, as (lossy) text, at most [`EXCERPT_CHARS`] characters.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// A short rendering of a JSON value for messages.
fn show(v: &Value) -> String {
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "the number",
        Value::String(_) => "the string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    match v {
        Value::Number(_) | Value::String(_) => {
            let text = v.to_string();
            let short = match text.char_indices().nth(60) {
                Some((i, _)) => format!("{}…", &text[..i]),
                None => text,
            };
            format!("{kind} {short}")
        }
        _ => kind.to_string(),
    }
}

enum Column {
    Int64(Int64Builder),
    Float64(Float64Builder),
    Utf8(StringBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Column {
    fn new(kind: Kind, rows: usize) -> Column {
        match kind {
            Kind::Int64 => Column::Int64(Int64Builder::with_capacity(rows)),
            Kind::Float64 => Column::Float64(Float64Builder::with_capacity(rows)),
            Kind::Utf8 => Column::Utf8(StringBuilder::with_capacity(rows, rows * 8)),
            Kind::Timestamp => Column::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            ),
        }
    }

    /// Appends one cell; `Err` describes a value of the wrong type.
    fn append(&mut self, v: Option<&Value>) -> Result<(), String> {
        let v = match v {
            None | Some(Value::Null) => {
                match self {
                    Column::Int64(b) => b.append_null(),
                    Column::Float64(b) => b.append_null(),
                    Column::Utf8(b) => b.append_null(),
                    Column::Timestamp(b) => b.append_null(),
                }
                return Ok(());
            }
            Some(v) => v,
        };
        match self {
            Column::Int64(b) => b.append_value(json_i64(v)?),
            Column::Float64(b) => match v.as_f64() {
                Some(f) => b.append_value(f),
                None => return Err(format!("expected a number, found {}", show(v))),
            },
            Column::Utf8(b) => match v.as_str() {
                Some(s) => b.append_value(s),
                None => return Err(format!("expected a string, found {}", show(v))),
            },
            Column::Timestamp(b) => match v.as_str() {
                Some(s) => b.append_value(parse_timestamp_micros(s)?),
                None => {
                    return Err(format!(
                        "expected an RFC 3339 timestamp string, found {}",
                        show(v)
                    ))
                }
            },
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Column::Int64(mut b) => Arc::new(b.finish()),
            Column::Float64(mut b) => Arc::new(b.finish()),
            Column::Utf8(mut b) => Arc::new(b.finish()),
            Column::Timestamp(mut b) => Arc::new(b.finish()),
        }
    }
}

/// An integer, or an integral float such as `2004.0`, within the i64 range.
fn json_i64(v: &Value) -> Result<i64, String> {
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    if let Some(f) = v.as_f64() {
        // 2^63 is exactly representable; i64::MAX is not.
        if f.fract() == 0.0
            && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f)
        {
            return Ok(f as i64);
        }
        return Err(format!("expected an integer, found {}", show(v)));
    }
    Err(format!("expected an integer, found {}", show(v)))
}

/// Microseconds since the Unix epoch (UTC) of an RFC 3339 timestamp; without an offset it is UTC.
fn parse_timestamp_micros(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_micros());
    }
    if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(naive.and_utc().timestamp_micros());
    }
    Err(format!(
        "cannot parse `{s}` as an RFC 3339 timestamp (e.g. 2013-06-11T14:01:25.3+02:00)"
    ))
}

/// Decodes a response body into a page.
fn decode_page(url: &str, skip: u64, body: &[u8]) -> Result<GhoPage, SourceError> {
    let not_odata = |what: String| SourceError::NotOData {
        url: url.to_string(),
        detail: format!("{what}; the body starts with `{}`", excerpt(body)),
    };
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| not_odata(format!("not JSON ({e})")))?;
    let Value::Object(mut envelope) = doc else {
        return Err(not_odata("the JSON is not an object".into()));
    };
    let total = match envelope.get("@odata.count") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            not_odata(format!(
                "@odata.count is {}, not a non-negative integer",
                show(v)
            ))
        })?),
    };
    let rows = match envelope.remove("value") {
        Some(Value::Array(rows)) => rows,
        Some(other) => {
            return Err(not_odata(format!(
                "\"value\" is {}, not an array",
                show(&other)
            )))
        }
        None => return Err(not_odata("the object has no \"value\" array".into())),
    };

    let mut columns: Vec<Column> = FIELDS
        .iter()
        .map(|(_, kind)| Column::new(*kind, rows.len()))
        .collect();
    let mut unknown_fields = BTreeSet::new();
    let mut cells: [Option<&Value>; FIELDS.len()] = [None; FIELDS.len()];
    for (row_index, row) in rows.iter().enumerate() {
        let decode_err = |id: Option<i64>, field: &str, detail: String| SourceError::Decode {
            url: url.to_string(),
            skip,
            row: row_index,
            id,
            field: field.to_string(),
            detail,
        };
        let Value::Object(obj) = row else {
            return Err(decode_err(
                None,
                "(row)",
                format!("expected a JSON object, found {}", show(row)),
            ));
        };
        cells.fill(None);
        for (key, value) in obj {
            match FIELDS.iter().position(|(name, _)| name == key) {
                Some(i) => cells[i] = Some(value),
                None => {
                    if !unknown_fields.contains(key) {
                        unknown_fields.insert(key.clone());
                    }
                }
            }
        }
        let id = obj.get("Id").and_then(Value::as_i64);
        for (i, column) in columns.iter_mut().enumerate() {
            column
                .append(cells[i])
                .map_err(|detail| decode_err(id, FIELDS[i].0, detail))?;
        }
    }
    let arrays: Vec<ArrayRef> = columns.into_iter().map(Column::finish).collect();
    let batch =
        RecordBatch::try_new(GhoSource::schema(), arrays).map_err(|source| SourceError::Arrow {
            url: url.to_string(),
            source,
        })?;
    Ok(GhoPage {
        skip,
        batch,
        total,
        bytes: body.len() as u64,
        unknown_fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
    use arrow_array::Array;

    const URL: &str = "http://x/api/T?$skip=0";

    #[test]
    fn parses_timestamps_with_offsets_and_fractions() {
        // 2013-06-11T12:01:25.3Z
        assert_eq!(
            parse_timestamp_micros("2013-06-11T14:01:25.3+02:00").unwrap(),
            1_370_952_085_300_000
        );
        assert_eq!(
            parse_timestamp_micros("2013-06-11T12:01:25.300Z").unwrap(),
            1_370_952_085_300_000
        );
        assert_eq!(
            parse_timestamp_micros("2013-06-11T12:01:25.3").unwrap(),
            1_370_952_085_300_000
        );
        assert_eq!(
            parse_timestamp_micros("2004-01-01T00:00:00+01:00").unwrap(),
            1_072_911_600_000_000
        );
        assert_eq!(
            parse_timestamp_micros("2013-06-11T12:01:25.1234567Z").unwrap(),
            1_370_952_085_123_456
        );
        assert!(parse_timestamp_micros("11/06/2013").is_err());
    }

    #[test]
    fn decodes_types_nulls_and_unknown_fields() {
        let body = br#"{"@odata.context":"c","@odata.count":9,"value":[
            {"Id":1,"TimeDim":2004.0,"NumericValue":3,"Value":"[5]/[10]","Date":"2013-06-11T14:01:25.3+02:00","Extra":1},
            {"Id":2,"NumericValue":null}
        ]}"#;
        let page = decode_page(URL, 0, body).unwrap();
        assert_eq!(page.total, Some(9));
        assert_eq!(page.bytes, body.len() as u64);
        assert_eq!(page.unknown_fields, BTreeSet::from(["Extra".to_string()]));
        let b = &page.batch;
        assert_eq!(b.schema(), GhoSource::schema());
        assert_eq!(
            b.column_by_name("TimeDim")
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(0),
            2004
        );
        let nv = b
            .column_by_name("NumericValue")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!((nv.value(0), nv.is_null(1)), (3.0, true));
        assert!(b.column_by_name("TimeDim").unwrap().is_null(1)); // missing → null
        let date = b
            .column_by_name("Date")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(date.value(0), 1_370_952_085_300_000);
        assert_eq!(
            b.column_by_name("Value")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            "[5]/[10]"
        );
        assert!(!page.is_last());
        assert_eq!(page.next_skip(), 2);
    }

    #[test]
    fn rejects_wrong_types_with_location() {
        let body = br#"{"value":[{"Id":1},{"Id":7,"NumericValue":"12"}]}"#;
        match decode_page(URL, 40, body).unwrap_err() {
            SourceError::Decode {
                skip,
                row,
                id,
                field,
                detail,
                ..
            } => {
                assert_eq!(
                    (skip, row, id, field.as_str()),
                    (40, 1, Some(7), "NumericValue")
                );
                assert!(detail.contains("\"12\""), "{detail}");
            }
            e => panic!("{e}"),
        }
        let e = decode_page(URL, 0, br#"{"value":[{"Id":1,"TimeDim":2004.5}]}"#).unwrap_err();
        assert!(e.to_string().contains("field TimeDim"), "{e}");
        let e = decode_page(URL, 0, br#"{"value":[{"Id":1,"SpatialDim":3}]}"#).unwrap_err();
        assert!(e.to_string().contains("field SpatialDim"), "{e}");
        let e = decode_page(URL, 0, br#"{"value":[3]}"#).unwrap_err();
        assert!(e.to_string().contains("row 0 (Id unknown)"), "{e}");
    }

    #[test]
    fn rejects_non_odata_bodies() {
        for body in [
            &b"<html></html>"[..],
            b"[]",
            br#"{"error":{}}"#,
            br#"{"value":{}}"#,
            br#"{"value":[],"@odata.count":-1}"#,
        ] {
            assert!(
                matches!(decode_page(URL, 0, body), Err(SourceError::NotOData { .. })),
                "{body:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_within_bounds() {
        let p = RetryPolicy {
            max_attempts: 9,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let w1 = p.backoff(1);
            assert!(
                w1 >= Duration::from_millis(50) && w1 <= Duration::from_millis(100),
                "{w1:?}"
            );
            let w3 = p.backoff(3);
            assert!(
                w3 >= Duration::from_millis(200) && w3 <= Duration::from_millis(400),
                "{w3:?}"
            );
            let w9 = p.backoff(40);
            assert!(
                w9 >= Duration::from_millis(500) && w9 <= Duration::from_millis(1000),
                "{w9:?}"
            );
        }
    }

    #[test]
    fn config_is_checked() {
        assert!(GhoSource::new(GhoConfig::default()).is_err()); // no indicator
        assert!(GhoSource::new(GhoConfig::new("ftp://x/api", "WSH_8")).is_err());
        assert!(GhoSource::new(GhoConfig::new(DEFAULT_API, "../x")).is_err());
        assert!(GhoSource::new(GhoConfig {
            page_size: 0,
            ..GhoConfig::new(DEFAULT_API, "WSH_8")
        })
        .is_err());
        let s = GhoSource::new(GhoConfig {
            page_size: 50,
            ..GhoConfig::new("https://ghoapi.azureedge.net/api/", "WSH_8")
        })
        .unwrap();
        assert_eq!(
            s.page_url(100),
            "https://ghoapi.azureedge.net/api/WSH_8?$top=50&$skip=100&$orderby=Id&$count=true"
        );
        assert_eq!(s.filter(), None);
        // The API URL in its normal form, as it is requested.
        let s =
            GhoSource::new(GhoConfig::new("HTTPS://GhoApi.azureedge.net:443", "WSH_8")).unwrap();
        assert_eq!(
            s.page_url(0),
            "https://ghoapi.azureedge.net/WSH_8?$top=1000&$skip=0&$orderby=Id&$count=true"
        );
        assert!(GhoSource::new(GhoConfig::new("https://x/api#frag", "WSH_8")).is_err());
    }

    #[test]
    fn time_window_becomes_a_percent_encoded_filter() {
        let with = |since, until| {
            GhoSource::new(GhoConfig {
                page_size: 7,
                since,
                until,
                ..GhoConfig::new("http://127.0.0.1:1/api", "WSH_8")
            })
        };
        let base = "http://127.0.0.1:1/api/WSH_8?$top=7&$skip=14&$orderby=Id&$count=true";
        for (since, until, filter, param) in [
            (
                Some(2005),
                Some(2008),
                "TimeDim ge 2005 and TimeDim le 2008",
                "&$filter=TimeDim%20ge%202005%20and%20TimeDim%20le%202008",
            ),
            (
                Some(2005),
                None,
                "TimeDim ge 2005",
                "&$filter=TimeDim%20ge%202005",
            ),
            (
                None,
                Some(-3),
                "TimeDim le -3",
                "&$filter=TimeDim%20le%20-3",
            ),
            (
                Some(2004),
                Some(2004),
                "TimeDim ge 2004 and TimeDim le 2004",
                "&$filter=TimeDim%20ge%202004%20and%20TimeDim%20le%202004",
            ),
        ] {
            let s = with(since, until).unwrap();
            assert_eq!(s.filter(), Some(filter));
            let page_url = s.page_url(14);
            assert_eq!(page_url, format!("{base}{param}"));
            // What is sent is what is shown: the URL is already in the parser's normal form, and
            // decodes back to the filter.
            let parsed = url::Url::parse(&page_url).unwrap();
            assert_eq!(parsed.as_str(), page_url);
            let sent: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
            assert_eq!(
                sent.last().unwrap(),
                &("$filter".to_string(), filter.to_string())
            );
        }
        assert_eq!(
            with(None, None).unwrap().page_url(14),
            base,
            "no window, no $filter"
        );
        match with(Some(2009), Some(2008)) {
            Err(SourceError::Config { detail }) => {
                assert!(
                    detail.contains("since 2009 is after until 2008"),
                    "{detail}"
                )
            }
            other => panic!("expected a Config error, got {other:?}"),
        }
    }
}
