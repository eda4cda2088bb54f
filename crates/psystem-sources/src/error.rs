//! The error type of all sources.

/// What went wrong while fetching or decoding source data. Each message says what failed, where
/// (URL, `$skip`, row index and `Id`, field) and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The source configuration is invalid (API URL, indicator code, page size).
    #[error("invalid source configuration: {detail}; fix the plugin manifest or the command-line options")]
    Config {
        /// What is wrong and which value.
        detail: String,
    },

    /// The HTTP client could not be built (TLS backend or system configuration).
    #[error(
        "cannot create the HTTP client: {detail}; check the system's TLS/network configuration"
    )]
    Client {
        /// The underlying error.
        detail: String,
    },

    /// The request could not be made at all (an invalid URL or a redirect loop); not retried.
    #[error("request to {url} could not be made: {detail}; check the API URL")]
    Request {
        /// The request URL.
        url: String,
        /// The underlying error, with its causes.
        detail: String,
    },

    /// The server answered with an HTTP status that is not worth retrying (a 4xx other than 408/429).
    #[error(
        "HTTP {status} from {url}: `{excerpt}`; {hint}",
        hint = http_hint(*.status)
    )]
    Http {
        /// The request URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the response body (at most a few hundred characters).
        excerpt: String,
    },

    /// A successful (2xx) response whose body is not an OData envelope (not JSON, or no `value` array).
    #[error(
        "the response from {url} is not a WHO GHO OData envelope: {detail}; check that the API URL is \
         the OData root (e.g. https://ghoapi.azureedge.net/api) and not a proxy or portal page, and retry later"
    )]
    NotOData {
        /// The request URL.
        url: String,
        /// What was wrong, with the start of the body.
        detail: String,
    },

    /// A row of an OData page has a value of the wrong JSON type or an unparsable timestamp.
    #[error(
        "cannot decode row {row} (Id {id}) of the page at $skip={skip} from {url}: field {field}: {detail}; \
         the indicator's data do not match the documented GHO format — report it, or exclude the indicator",
        id = display_id(.id)
    )]
    Decode {
        /// The request URL.
        url: String,
        /// `$skip` of the page.
        skip: u64,
        /// Index of the row within the page's `value` array (0-based; the row's position in the
        /// ordered result is `skip + row`).
        row: usize,
        /// The row's `Id`, if it has a readable one.
        id: Option<i64>,
        /// The field (column) name; `(row)` when the row itself is not a JSON object.
        field: String,
        /// What was found and what was expected.
        detail: String,
    },

    /// A transient failure (timeout, connection error, broken-off body, 429, 5xx) persisted through
    /// every attempt.
    #[error(
        "giving up on {url} after {attempts} attempts; last error: {last}; check the network and the \
         service's status, then resume the job (pages already loaded are kept)"
    )]
    RetriesExhausted {
        /// The request URL.
        url: String,
        /// How many requests were made.
        attempts: u32,
        /// The last failure.
        last: String,
    },

    /// A data file (CSV, TSV, JSON Lines, Parquet; local or downloaded) cannot be read or decoded.
    #[error("cannot read {path}{loc}: {detail}", loc = file_location(.line, .column))]
    File {
        /// The file's path or URL (password redacted).
        path: String,
        /// The 1-based line of the record, when known.
        line: Option<u64>,
        /// The column, when one cell is at fault.
        column: Option<String>,
        /// What was found, what was expected and what to do.
        detail: String,
    },

    /// Building the Arrow record batch failed (a bug in psystem; please report it).
    #[error("cannot build the Arrow batch for {url}: {source}; this is a bug in psystem, please report it")]
    Arrow {
        /// The request URL.
        url: String,
        /// The Arrow error.
        #[source]
        source: arrow_schema::ArrowError,
    },
}

fn display_id(id: &Option<i64>) -> String {
    match id {
        Some(id) => id.to_string(),
        None => "unknown".to_string(),
    }
}

fn file_location(line: &Option<u64>, column: &Option<String>) -> String {
    let mut s = String::new();
    if let Some(line) = line {
        s.push_str(&format!(", line {line}"));
    }
    if let Some(column) = column {
        s.push_str(&format!(", column `{column}`"));
    }
    s
}

fn http_hint(status: u16) -> &'static str {
    match status {
        404 => "check the indicator code (the list is at https://ghoapi.azureedge.net/api/Indicator) and the API URL",
        400 => "the server rejected the query; check the API URL and the indicator code",
        401 | 403 => "the server refused access; check the API URL and any proxy in between",
        _ => "check the API URL and the indicator code",
    }
}
