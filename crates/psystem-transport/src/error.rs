//! [`TransportError`]: what went wrong, on which URL, during which [`Operation`].

use std::fmt;

/// The transport operation that failed, named in every [`TransportError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Opening a transport for a base URL ([`crate::Transport::new`]).
    Open,
    /// Listing a folder ([`crate::Transport::list`]).
    List,
    /// Asking for a file's size ([`crate::Transport::size`]).
    Size,
    /// Reading a byte range ([`crate::Transport::read_range`]).
    ReadRange,
    /// Reading a whole (small) file ([`crate::Transport::read_all`]).
    ReadAll,
    /// Downloading a file into a local path ([`crate::Transport::download`]).
    Download,
    /// Resolving a path in the download cache ([`crate::Cache::path_for`]).
    CachePath,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Open => "open",
            Operation::List => "list",
            Operation::Size => "size",
            Operation::ReadRange => "read range",
            Operation::ReadAll => "read",
            Operation::Download => "download",
            Operation::CachePath => "cache path",
        })
    }
}

/// An error of a transport operation.
///
/// Every variant names the URL (with any password replaced by `***`, see [`crate::redact_url`]) and the
/// [`Operation`]. Secrets never appear in the message. [`TransportError::is_retryable`] tells which errors the
/// transport retries by itself (connection problems, timeouts, HTTP 5xx/408/429, FTP 4xx, a body cut short).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The file or folder does not exist (HTTP 404/410, FTP 550, GCS 404, no such local file).
    #[error("{operation} {url}: not found")]
    NotFound {
        /// The URL that was asked for.
        url: String,
        /// What was being done.
        operation: Operation,
    },
    /// The HTTP server (or the GCS JSON API) answered with an unexpected status.
    #[error("{operation} {url}: HTTP status {status}")]
    Http {
        /// The URL that was asked for.
        url: String,
        /// What was being done.
        operation: Operation,
        /// The HTTP status code, e.g. 503.
        status: u16,
    },
    /// A local file system error (reading a `file://` source, writing the `.part` file or the cache).
    #[error("{operation} {url}: {source}")]
    Io {
        /// The URL (or local path) concerned.
        url: String,
        /// What was being done.
        operation: Operation,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The connection failed or broke (refused, reset, closed in the middle of a body, DNS failure).
    #[error("{operation} {url}: connection failed: {message}")]
    Network {
        /// The URL that was asked for.
        url: String,
        /// What was being done.
        operation: Operation,
        /// The cause, as reported by the HTTP or FTP client.
        message: String,
    },
    /// The FTP server refused a command (its reply code and text).
    #[error("{operation} {url}: FTP error{}: {message}", code.map(|c| format!(" {c}")).unwrap_or_default())]
    Ftp {
        /// The URL that was asked for.
        url: String,
        /// What was being done.
        operation: Operation,
        /// The FTP reply code, if the server sent one (e.g. 421, 550).
        code: Option<u32>,
        /// The server's reply text or the client's description.
        message: String,
    },
    /// No answer (connect, or no data for the idle read timeout).
    #[error("{operation} {url}: timed out")]
    Timeout {
        /// The URL that was asked for.
        url: String,
        /// What was being done.
        operation: Operation,
    },
    /// The body ended before the expected number of bytes arrived (the connection was cut mid-body).
    /// A download keeps what arrived in its `.part` file and the retry continues from there.
    #[error("{operation} {url}: body ended after {received} of {expected} bytes")]
    Truncated {
        /// The URL that was asked for.
        url: String,
        /// What was being done.
        operation: Operation,
        /// Bytes expected (file size or range length).
        expected: u64,
        /// Bytes received (for a download: the length of the file so far).
        received: u64,
    },
    /// The server answered something that does not follow the protocol (a malformed listing, a wrong
    /// `Content-Range`, more bytes than the file's size, a range outside the file, an unknown size).
    #[error("{operation} {url}: {message}")]
    Protocol {
        /// The URL that was asked for.
        url: String,
        /// What was being done.
        operation: Operation,
        /// What was wrong.
        message: String,
    },
    /// The URL (or a relative path given to an operation) is not usable.
    #[error("{operation} {url}: invalid URL or path: {message}")]
    InvalidUrl {
        /// The URL or path given (redacted).
        url: String,
        /// What was being done.
        operation: Operation,
        /// Why it is invalid.
        message: String,
    },
    /// A download was stopped by its cancellation token; its `.part` file holds `bytes` bytes and the next
    /// download of the same file resumes from there.
    #[error("{operation} {url}: cancelled after {bytes} bytes")]
    Cancelled {
        /// The URL that was being downloaded.
        url: String,
        /// What was being done.
        operation: Operation,
        /// Bytes of the file in the `.part` file.
        bytes: u64,
    },
}

impl TransportError {
    /// Whether the transport retries this error (with backoff, see [`crate::TransportOptions`]): network
    /// errors, timeouts, truncated bodies, HTTP 408/429/5xx, and FTP 4xx replies (transient by RFC 959).
    pub fn is_retryable(&self) -> bool {
        match self {
            TransportError::Network { .. }
            | TransportError::Timeout { .. }
            | TransportError::Truncated { .. } => true,
            TransportError::Http { status, .. } => {
                *status == 408 || *status == 429 || (500..600).contains(status)
            }
            TransportError::Ftp { code, .. } => matches!(code, Some(400..=499)),
            _ => false,
        }
    }

    /// The (redacted) URL the error is about.
    pub fn url(&self) -> &str {
        match self {
            TransportError::NotFound { url, .. }
            | TransportError::Http { url, .. }
            | TransportError::Io { url, .. }
            | TransportError::Network { url, .. }
            | TransportError::Ftp { url, .. }
            | TransportError::Timeout { url, .. }
            | TransportError::Truncated { url, .. }
            | TransportError::Protocol { url, .. }
            | TransportError::InvalidUrl { url, .. }
            | TransportError::Cancelled { url, .. } => url,
        }
    }

    /// The operation that failed.
    pub fn operation(&self) -> Operation {
        match self {
            TransportError::NotFound { operation, .. }
            | TransportError::Http { operation, .. }
            | TransportError::Io { operation, .. }
            | TransportError::Network { operation, .. }
            | TransportError::Ftp { operation, .. }
            | TransportError::Timeout { operation, .. }
            | TransportError::Truncated { operation, .. }
            | TransportError::Protocol { operation, .. }
            | TransportError::InvalidUrl { operation, .. }
            | TransportError::Cancelled { operation, .. } => *operation,
        }
    }
}

/// A `reqwest` error as a [`TransportError`], without the URL reqwest would print (it may hold a password).
pub(crate) fn from_reqwest(url: &str, operation: Operation, e: reqwest::Error) -> TransportError {
    if e.is_timeout() {
        return TransportError::Timeout {
            url: url.to_string(),
            operation,
        };
    }
    if let Some(status) = e.status() {
        return status_error(url, operation, status.as_u16());
    }
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    TransportError::Network {
        url: url.to_string(),
        operation,
        message,
    }
}

/// An HTTP status that is not a success as a [`TransportError`] (404/410 → NotFound).
pub(crate) fn status_error(url: &str, operation: Operation, status: u16) -> TransportError {
    if status == 404 || status == 410 {
        TransportError::NotFound {
            url: url.to_string(),
            operation,
        }
    } else {
        TransportError::Http {
            url: url.to_string(),
            operation,
            status,
        }
    }
}

/// A local I/O error; `NotFound` becomes [`TransportError::NotFound`], `TimedOut` a timeout.
pub(crate) fn from_io(url: &str, operation: Operation, e: std::io::Error) -> TransportError {
    match e.kind() {
        std::io::ErrorKind::NotFound => TransportError::NotFound {
            url: url.to_string(),
            operation,
        },
        std::io::ErrorKind::TimedOut => TransportError::Timeout {
            url: url.to_string(),
            operation,
        },
        _ => TransportError::Io {
            url: url.to_string(),
            operation,
            source: e,
        },
    }
}
