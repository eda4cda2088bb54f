//! Transports: one interface to list folders, read byte ranges and download files resumably, whatever the
//! scheme of a release's base URL.
//!
//! | scheme | base URL form | listing from | notes |
//! |---|---|---|---|
//! | `file://` | `file:///abs/dir/` | the file system | absolute local paths only |
//! | `http://`, `https://` | `https://host/pub/…/platform/` | Apache/nginx autoindex HTML pages (`<a href>`) | `Range` requests; sizes in listings are `None` |
//! | `ftp://` | `ftp://[user:password@]host[:port]/pub/…/` | `MLSD` (RFC 3659), else `LIST` | passive mode, binary type, `REST` to resume; anonymous unless the URL has a user |
//! | `gs://` | `gs://bucket/prefix/` | the GCS JSON API (`/storage/v1/b/{bucket}/o?prefix&delimiter=/`) | anonymous; endpoint from [`TransportOptions::gcs_endpoint`] or `PSYSTEM_GCS_ENDPOINT` |
//!
//! Every operation takes a path relative to the base (`""` is the base itself, `"25.03/output/"` a folder,
//! `"25.03/output/target/part-0.parquet"` a file); `..`, absolute paths and empty segments are rejected.
//! Failures are [`TransportError`]s naming the (redacted) URL and the [`Operation`]; transient ones
//! ([`TransportError::is_retryable`]) are retried with exponential backoff. See `docs/TRANSPORTS.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), psystem_transport::TransportError> {
//! use psystem_transport::{Transport, TransportOptions};
//! use tokio_util::sync::CancellationToken;
//! let t = Transport::new("https://ftp.ebi.ac.uk/pub/databases/opentargets/platform/", TransportOptions::default())?;
//! let releases = t.list("").await?;
//! let footer = t.read_range("25.03/output/target/part-00000.parquet", 0..8).await?;
//! let cancel = CancellationToken::new();
//! let done = t
//!     .download("25.03/release_data_integrity", std::path::Path::new("/tmp/rdi"), &cancel, &mut |_p, _bytes| {})
//!     .await?;
//! # let _ = (releases, footer, done); Ok(()) }
//! ```

mod cache;
mod error;
mod file;
mod ftp;
mod gcs;
mod http;

use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use url::Url;

pub use cache::Cache;
pub use error::{Operation, TransportError};

/// The default GCS endpoint (the public JSON API).
pub const DEFAULT_GCS_ENDPOINT: &str = "https://storage.googleapis.com";
/// Environment variable that overrides the GCS endpoint when [`TransportOptions::gcs_endpoint`] is `None`.
pub const GCS_ENDPOINT_ENV: &str = "PSYSTEM_GCS_ENDPOINT";

/// Size of the chunks read from local files (bytes).
const FILE_CHUNK: usize = 256 * 1024;

/// Settings of a [`Transport`]. `Default` gives: 4 retries, 500 ms backoff base, 30 s connect and idle-read
/// timeouts, the GCS endpoint from `PSYSTEM_GCS_ENDPOINT` or [`DEFAULT_GCS_ENDPOINT`], user agent
/// `psystem/<version>`.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// How many times a retryable failure is retried (so at most `retries + 1` attempts). A download that made
    /// progress before failing gets a fresh count.
    pub retries: u32,
    /// First backoff delay; attempt `n` (from 0) waits `backoff_base * 2^n`, at most 60 s. An HTTP 429/503
    /// `Retry-After: <seconds>` is honoured when longer (also at most 60 s).
    pub backoff_base: Duration,
    /// Connect timeout (TCP + TLS, FTP login).
    pub connect_timeout: Duration,
    /// Idle timeout: the longest wait for a response or for the next chunk of a body.
    pub timeout: Duration,
    /// GCS JSON API endpoint (scheme, host, port; no path), e.g. `http://127.0.0.1:8080`. `None`: the
    /// environment variable `PSYSTEM_GCS_ENDPOINT`, else [`DEFAULT_GCS_ENDPOINT`].
    pub gcs_endpoint: Option<String>,
    /// `User-Agent` header of HTTP and GCS requests.
    pub user_agent: String,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            retries: 4,
            backoff_base: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            gcs_endpoint: None,
            user_agent: concat!("psystem/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// One entry of a folder listing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// The entry's name within its folder (percent-decoded; no `/`).
    pub name: String,
    /// Whether it is a folder (for GCS: a common prefix).
    pub is_dir: bool,
    /// Size in bytes, when the listing gives it exactly (file, FTP, GCS: yes; HTTP index pages: `None`;
    /// folders: `None`).
    pub size: Option<u64>,
}

/// Progress of a download, given to the observer with each chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadProgress {
    /// Offset in the file of the first byte of the chunk passed with this progress.
    pub offset: u64,
    /// Bytes of the file delivered so far, this chunk included (`offset + chunk.len()`).
    pub done: u64,
    /// The file's size, if known.
    pub total: Option<u64>,
}

/// The result of a completed [`Transport::download`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downloaded {
    /// Size of the downloaded file in bytes.
    pub bytes: u64,
    /// Bytes that were already in the `.part` file (or the complete file) when the call started and were kept;
    /// 0 for a fresh download or when the server ignored the range and the file was fetched again.
    pub resumed_from: u64,
}

/// A body being received: where it starts in the file, and its chunks.
pub(crate) struct Body {
    /// Offset in the file of the body's first byte (0 when a server ignored the requested range).
    pub start: u64,
    /// The chunks, in order.
    pub chunks: BoxStream<'static, Result<Bytes, TransportError>>,
}

enum Backend {
    File(file::FileBackend),
    Http(http::HttpBackend),
    Ftp(ftp::FtpBackend),
    Gcs(gcs::GcsBackend),
}

/// A transport for one base URL (see the crate docs for the schemes). Cheap to share behind an `Arc`; every
/// operation is independent (an FTP operation opens its own control connection).
pub struct Transport {
    base: String,
    options: TransportOptions,
    backend: Backend,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("base", &self.base)
            .finish()
    }
}

impl Transport {
    /// A transport for `base_url` (`file:///abs/dir/`, `http(s)://…/`, `ftp://…/`, `gs://bucket/prefix/`). A
    /// missing trailing `/` is added: the base is always a folder.
    ///
    /// # Errors
    /// [`TransportError::InvalidUrl`] for an unparsable URL, an unknown scheme, a relative `file:` path, a
    /// `gs://` URL without a bucket, or an unparsable GCS endpoint; [`TransportError::Network`] when the HTTP
    /// client cannot be built.
    pub fn new(base_url: &str, options: TransportOptions) -> Result<Transport, TransportError> {
        let redacted = redact_url(base_url);
        let invalid = |message: String| TransportError::InvalidUrl {
            url: redacted.clone(),
            operation: Operation::Open,
            message,
        };
        let mut url = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let backend = match url.scheme() {
            "file" => {
                let root = url
                    .to_file_path()
                    .map_err(|()| invalid("not an absolute local path".into()))?;
                Backend::File(file::FileBackend::new(root))
            }
            "http" | "https" => Backend::Http(http::HttpBackend::new(url.clone(), &options)?),
            "ftp" => Backend::Ftp(ftp::FtpBackend::new(url.clone(), &options).map_err(invalid)?),
            "gs" => {
                let endpoint = match &options.gcs_endpoint {
                    Some(e) => e.clone(),
                    None => std::env::var(GCS_ENDPOINT_ENV)
                        .unwrap_or_else(|_| DEFAULT_GCS_ENDPOINT.into()),
                };
                Backend::Gcs(gcs::GcsBackend::new(&url, &endpoint, &options).map_err(invalid)?)
            }
            other => return Err(invalid(format!("unsupported scheme `{other}`"))),
        };
        Ok(Transport {
            base: redact_url(url.as_str()),
            options,
            backend,
        })
    }

    /// The base URL, with any password replaced by `***`; always ends with `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The (redacted) URL of `path` under the base, as used in errors and logs.
    pub fn url_of(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The entries of folder `dir` (relative to the base; `""` = the base; a trailing `/` is optional), sorted
    /// by name. HTTP: the `<a href>` links of the index page that name a direct child (parent links, sort
    /// links `?C=N;O=D` and links leaving the folder are skipped). FTP: `MLSD`, or `LIST` when the server lacks
    /// it. GCS: objects and common prefixes under `prefix + dir` with delimiter `/`, all pages.
    ///
    /// # Errors
    /// [`TransportError::NotFound`] when the folder does not exist; others as in [`TransportError`].
    pub async fn list(&self, dir: &str) -> Result<Vec<Entry>, TransportError> {
        let dir = rel_dir(dir).map_err(|m| self.invalid(dir, Operation::List, m))?;
        let url = self.url_of(&dir);
        let mut entries = self
            .retrying(&url, || async {
                match &self.backend {
                    Backend::File(b) => b.list(&url, &dir).await,
                    Backend::Http(b) => b.list(&url, &dir).await,
                    Backend::Ftp(b) => b.list(&url, &dir).await,
                    Backend::Gcs(b) => b.list(&url, &dir).await,
                }
            })
            .await?;
        entries.sort();
        entries.dedup_by(|a, b| a.name == b.name);
        Ok(entries)
    }

    /// The size in bytes of file `path`. HTTP: `Content-Length` of a `HEAD`, else the total of a
    /// `Range: bytes=0-0` answer. FTP: `SIZE` (in binary type). GCS: the object's `size`.
    ///
    /// # Errors
    /// [`TransportError::NotFound`]; [`TransportError::Protocol`] when an HTTP server tells no size.
    pub async fn size(&self, path: &str) -> Result<u64, TransportError> {
        let url = self.url_of(path);
        match self.size_opt(path, Operation::Size).await? {
            Some(size) => Ok(size),
            None => Err(TransportError::Protocol {
                url,
                operation: Operation::Size,
                message: "the server does not tell the size".into(),
            }),
        }
    }

    async fn size_opt(
        &self,
        path: &str,
        operation: Operation,
    ) -> Result<Option<u64>, TransportError> {
        let path = rel_file(path).map_err(|m| self.invalid(path, operation, m))?;
        let url = self.url_of(&path);
        self.retrying(&url, || async {
            match &self.backend {
                Backend::File(b) => b.size(&url, &path, operation).await.map(Some),
                Backend::Http(b) => b.size(&url, &path, operation).await,
                Backend::Ftp(b) => b.size(&url, &path, operation).await.map(Some),
                Backend::Gcs(b) => b.size(&url, &path, operation).await.map(Some),
            }
        })
        .await
    }

    /// Bytes `range.start .. range.end` of file `path` (e.g. the last 8 bytes of a Parquet file for its footer
    /// length and `PAR1` magic), without downloading the rest. An empty range gives empty bytes.
    ///
    /// HTTP/GCS: `Range: bytes=a-b` (a server that ignores it is read up to `range.end` and cut); FTP: `REST a`,
    /// `RETR`, read `end - a` bytes, then the connection is dropped.
    ///
    /// # Errors
    /// [`TransportError::NotFound`]; [`TransportError::Protocol`] when the range reaches past the end of the
    /// file (HTTP 416 or a short answer); [`TransportError::Truncated`] when the body breaks off.
    pub async fn read_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, TransportError> {
        let op = Operation::ReadRange;
        let path = rel_file(path).map_err(|m| self.invalid(path, op, m))?;
        let url = self.url_of(&path);
        if range.end <= range.start {
            return Ok(Bytes::new());
        }
        self.retrying(&url, || async {
            let body = match &self.backend {
                Backend::File(b) => b.open(&url, &path, range.start, op).await?,
                Backend::Http(b) => b.open(&url, &path, range.start, Some(range.end), op).await?,
                Backend::Ftp(b) => b.open(&url, &path, range.start, op).await?,
                Backend::Gcs(b) => b.open(&url, &path, range.start, Some(range.end), op).await?,
            };
            let want = range.end - range.start;
            let mut skip = range.start - body.start;
            let mut out = Vec::with_capacity(want as usize);
            let mut chunks = body.chunks;
            while (out.len() as u64) < want {
                let Some(chunk) = self.next_chunk(&url, op, &mut chunks).await? else { break };
                let mut chunk = &chunk[..];
                if skip > 0 {
                    let n = skip.min(chunk.len() as u64) as usize;
                    chunk = &chunk[n..];
                    skip -= n as u64;
                }
                let take = chunk.len().min((want - out.len() as u64) as usize);
                out.extend_from_slice(&chunk[..take]);
            }
            if (out.len() as u64) < want {
                return Err(TransportError::Protocol {
                    url: url.clone(),
                    operation: op,
                    message: format!(
                        "range {}..{} reaches past the end of the file ({} bytes available from {})",
                        range.start,
                        range.end,
                        out.len(),
                        range.start
                    ),
                });
            }
            Ok(Bytes::from(out))
        })
        .await
    }

    /// The whole content of file `path`, in memory: for small files (manifests, `.sha1` files, index pages).
    ///
    /// # Errors
    /// [`TransportError::NotFound`]; [`TransportError::Truncated`] when fewer bytes than the announced size
    /// arrive (after the retries).
    pub async fn read_all(&self, path: &str) -> Result<Bytes, TransportError> {
        let op = Operation::ReadAll;
        let path = rel_file(path).map_err(|m| self.invalid(path, op, m))?;
        let url = self.url_of(&path);
        self.retrying(&url, || async {
            let (body, expected) = match &self.backend {
                Backend::File(b) => (b.open(&url, &path, 0, op).await?, None),
                Backend::Http(b) => b.open_all(&url, &path, op).await?,
                Backend::Ftp(b) => {
                    let size = b.size(&url, &path, op).await?;
                    (b.open(&url, &path, 0, op).await?, Some(size))
                }
                Backend::Gcs(b) => b.open_all(&url, &path, op).await?,
            };
            let mut out = Vec::new();
            let mut chunks = body.chunks;
            while let Some(chunk) = self.next_chunk(&url, op, &mut chunks).await? {
                out.extend_from_slice(&chunk);
            }
            if let Some(expected) = expected {
                if out.len() as u64 != expected {
                    return Err(TransportError::Truncated {
                        url: url.clone(),
                        operation: op,
                        expected,
                        received: out.len() as u64,
                    });
                }
            }
            Ok(Bytes::from(out))
        })
        .await
    }

    /// Downloads file `path` to `dest`, resumably.
    ///
    /// Bytes go to `dest` + `.part` (e.g. `x.parquet.part`); an existing `.part` is resumed from its length
    /// (HTTP/GCS `Range: bytes=N-`, FTP `REST N`, `file://` seek). When the server ignores the range (200 instead
    /// of 206) the file is fetched again from byte 0. When the file is complete and its length equals the size
    /// the server tells, `.part` is renamed to `dest` (an existing `dest` is replaced). A `.part` longer than
    /// the file is discarded. Parent folders of `dest` are created.
    ///
    /// `observer` receives every byte of the file exactly once, in order from offset 0, each chunk after it
    /// was written to `.part`: for a resumed download first the bytes already in `.part` (read once from disk),
    /// then the new bytes as they arrive, so a caller can hash while streaming. (Should a server start
    /// ignoring ranges during a retry, the bytes the observer has already seen are rewritten to disk from the
    /// new body but not given again; a changed file is then caught by the caller's checksum.)
    ///
    /// Connection errors, timeouts, 5xx/429 and a body cut short are retried (see [`TransportOptions`]); each
    /// retry continues from what was written. `cancel` is checked between chunks (and while waiting for one):
    /// a cancelled download flushes `.part` and returns [`TransportError::Cancelled`]; calling `download` again
    /// resumes it.
    ///
    /// # Errors
    /// [`TransportError::NotFound`]; [`TransportError::Cancelled`]; [`TransportError::Io`] for local disk
    /// errors; [`TransportError::Protocol`] when the server sends more bytes than the file's size;
    /// [`TransportError::Truncated`] when retries are exhausted with the file incomplete; others as in
    /// [`TransportError`].
    pub async fn download(
        &self,
        path: &str,
        dest: &Path,
        cancel: &CancellationToken,
        observer: &mut (dyn FnMut(DownloadProgress, &[u8]) + Send),
    ) -> Result<Downloaded, TransportError> {
        let op = Operation::Download;
        let path = rel_file(path).map_err(|m| self.invalid(path, op, m))?;
        let url = self.url_of(&path);
        let io = |e: std::io::Error| TransportError::Io {
            url: url.clone(),
            operation: op,
            source: e,
        };
        if cancel.is_cancelled() {
            return Err(TransportError::Cancelled {
                url,
                operation: op,
                bytes: 0,
            });
        }
        let total = self.size_opt(&path, op).await?;
        let part = part_path(dest);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        let mut have = match tokio::fs::metadata(&part).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(e)),
        };
        if let Some(total) = total {
            if have > total {
                tracing::warn!(url = %url, part = %part.display(), have, total, "discarding a .part longer than the file");
                tokio::fs::File::create(&part).await.map_err(io)?;
                have = 0;
            }
        }
        let resumed_from = have;
        if have > 0 {
            tracing::info!(url = %url, part = %part.display(), offset = have, "resuming download");
        }
        let mut state = DownloadState {
            observed: 0,
            total,
            restarted: false,
        };
        let mut attempt = 0u32;
        loop {
            let before = file_len(&part).await.map_err(io)?;
            let complete = total.is_some_and(|t| before == t);
            let result = if complete {
                feed_from_disk(&url, &part, &mut state, before, observer).await
            } else {
                self.fetch_into(&url, &path, &part, before, &mut state, cancel, observer)
                    .await
            };
            match result {
                Ok(()) => break,
                Err(e) if e.is_retryable() => {
                    let after = file_len(&part).await.map_err(io)?;
                    if after > before {
                        attempt = 0;
                    }
                    if attempt >= self.options.retries {
                        return Err(e);
                    }
                    let delay = self.backoff(attempt, &e);
                    tracing::warn!(url = %url, error = %e, attempt, delay_ms = delay.as_millis() as u64, offset = after, "download failed, retrying");
                    attempt += 1;
                    tokio::select! {
                        () = cancel.cancelled() => {
                            return Err(TransportError::Cancelled { url: url.clone(), operation: op, bytes: after });
                        }
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let bytes = file_len(&part).await.map_err(io)?;
        if let Some(total) = total {
            if bytes != total {
                return Err(TransportError::Truncated {
                    url,
                    operation: op,
                    expected: total,
                    received: bytes,
                });
            }
        }
        tokio::fs::rename(&part, dest).await.map_err(io)?;
        tracing::debug!(url = %url, dest = %dest.display(), bytes, resumed_from, "download complete");
        Ok(Downloaded {
            bytes,
            resumed_from: if state.restarted { 0 } else { resumed_from },
        })
    }

    /// One attempt of a download: request from `have`, append (or start over), feed the observer.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_into(
        &self,
        url: &str,
        path: &str,
        part: &Path,
        have: u64,
        state: &mut DownloadState,
        cancel: &CancellationToken,
        observer: &mut (dyn FnMut(DownloadProgress, &[u8]) + Send),
    ) -> Result<(), TransportError> {
        let op = Operation::Download;
        let io = |e: std::io::Error| TransportError::Io {
            url: url.to_string(),
            operation: op,
            source: e,
        };
        let body = match &self.backend {
            Backend::File(b) => b.open(url, path, have, op).await?,
            Backend::Http(b) => b.open(url, path, have, None, op).await?,
            Backend::Ftp(b) => b.open(url, path, have, op).await?,
            Backend::Gcs(b) => b.open(url, path, have, None, op).await?,
        };
        let mut file = if body.start == 0 && have > 0 {
            tracing::warn!(url = %url, offset = have, "the server ignored the range; downloading from the start");
            if state.observed == 0 {
                state.restarted = true;
            }
            tokio::fs::File::create(part).await.map_err(io)?
        } else if body.start != have {
            return Err(TransportError::Protocol {
                url: url.to_string(),
                operation: op,
                message: format!(
                    "asked for bytes from {have}, got a body starting at {}",
                    body.start
                ),
            });
        } else {
            feed_from_disk(url, part, state, have, observer).await?;
            tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(part)
                .await
                .map_err(io)?
        };
        let mut pos = body.start;
        let mut chunks = body.chunks;
        let total = state.total;
        loop {
            let next = tokio::select! {
                biased;
                () = cancel.cancelled() => None,
                next = self.next_chunk(url, op, &mut chunks) => Some(next),
            };
            let chunk = match next {
                None => {
                    file.flush().await.map_err(io)?;
                    return Err(TransportError::Cancelled {
                        url: url.to_string(),
                        operation: op,
                        bytes: pos,
                    });
                }
                Some(Err(e)) => {
                    file.flush().await.map_err(io)?;
                    return Err(e);
                }
                Some(Ok(None)) => break,
                Some(Ok(Some(chunk))) => chunk,
            };
            if let Some(total) = total {
                if pos + chunk.len() as u64 > total {
                    file.flush().await.map_err(io)?;
                    return Err(TransportError::Protocol {
                        url: url.to_string(),
                        operation: op,
                        message: format!("the server sent more than the file's {total} bytes"),
                    });
                }
            }
            file.write_all(&chunk).await.map_err(io)?;
            let end = pos + chunk.len() as u64;
            if end > state.observed {
                let from = (state.observed - pos) as usize;
                observer(
                    DownloadProgress {
                        offset: state.observed,
                        done: end,
                        total,
                    },
                    &chunk[from..],
                );
                state.observed = end;
            }
            pos = end;
        }
        file.flush().await.map_err(io)?;
        file.sync_data().await.map_err(io)?;
        if let Some(total) = total {
            if pos < total {
                return Err(TransportError::Truncated {
                    url: url.to_string(),
                    operation: op,
                    expected: total,
                    received: pos,
                });
            }
        }
        Ok(())
    }

    /// The next chunk of a body, within the idle timeout.
    async fn next_chunk(
        &self,
        url: &str,
        operation: Operation,
        chunks: &mut BoxStream<'static, Result<Bytes, TransportError>>,
    ) -> Result<Option<Bytes>, TransportError> {
        match tokio::time::timeout(self.options.timeout, chunks.next()).await {
            Err(_) => Err(TransportError::Timeout {
                url: url.to_string(),
                operation,
            }),
            Ok(None) => Ok(None),
            Ok(Some(Err(e))) => Err(e),
            Ok(Some(Ok(b))) => Ok(Some(b)),
        }
    }

    /// Runs `attempt` until it succeeds, fails with a non-retryable error, or the retries are used up.
    async fn retrying<T, F, Fut>(&self, url: &str, mut attempt: F) -> Result<T, TransportError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, TransportError>>,
    {
        let mut n = 0;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && n < self.options.retries => {
                    let delay = self.backoff(n, &e);
                    tracing::warn!(url = %url, error = %e, attempt = n, delay_ms = delay.as_millis() as u64, "retrying");
                    tokio::time::sleep(delay).await;
                    n += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn backoff(&self, attempt: u32, _error: &TransportError) -> Duration {
        let max = Duration::from_secs(60);
        self.options
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(max)
    }

    fn invalid(&self, path: &str, operation: Operation, message: String) -> TransportError {
        TransportError::InvalidUrl {
            url: self.url_of(path),
            operation,
            message,
        }
    }
}

struct DownloadState {
    /// Bytes of the file given to the observer so far.
    observed: u64,
    /// The file's size, if known.
    total: Option<u64>,
    /// The first attempt found a `.part` but the server ignored the range.
    restarted: bool,
}

/// Gives the observer the bytes `state.observed .. upto` of `.part`, read once from disk.
async fn feed_from_disk(
    url: &str,
    part: &Path,
    state: &mut DownloadState,
    upto: u64,
    observer: &mut (dyn FnMut(DownloadProgress, &[u8]) + Send),
) -> Result<(), TransportError> {
    if state.observed >= upto {
        return Ok(());
    }
    let io = |e: std::io::Error| TransportError::Io {
        url: url.to_string(),
        operation: Operation::Download,
        source: e,
    };
    let mut f = tokio::fs::File::open(part).await.map_err(io)?;
    f.seek(std::io::SeekFrom::Start(state.observed))
        .await
        .map_err(io)?;
    let mut buf = vec![0u8; FILE_CHUNK];
    while state.observed < upto {
        let want = ((upto - state.observed) as usize).min(buf.len());
        f.read_exact(&mut buf[..want]).await.map_err(io)?;
        let end = state.observed + want as u64;
        observer(
            DownloadProgress {
                offset: state.observed,
                done: end,
                total: state.total,
            },
            &buf[..want],
        );
        state.observed = end;
    }
    Ok(())
}

async fn file_len(path: &Path) -> std::io::Result<u64> {
    match tokio::fs::metadata(path).await {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// The `.part` file of a download destination: `dest` with `.part` appended to its file name.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

/// `url` with its password (if any) replaced by `***`; unparsable input is returned with everything between
/// `://` and the last `@` before the host replaced, so a secret never leaks into a message.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
            _ => url.to_string(),
        },
    }
}

/// Checks a relative path's segments: no empty, `.` or `..` segment, no `\` or NUL, not absolute.
fn check_segments(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        return Err("absolute paths are not allowed; give a path relative to the base".into());
    }
    for seg in path.split('/') {
        match seg {
            "" => return Err("empty path segment".into()),
            "." | ".." => return Err(format!("`{seg}` segments are not allowed")),
            s if s.contains('\\') || s.contains('\0') => {
                return Err("backslashes and NUL are not allowed".into())
            }
            _ => {}
        }
    }
    Ok(())
}

/// A folder path relative to the base: `""` or `a/b/` (a trailing `/` is added).
fn rel_dir(dir: &str) -> Result<String, String> {
    let trimmed = dir.strip_suffix('/').unwrap_or(dir);
    if trimmed.is_empty() {
        return if dir.is_empty() {
            Ok(String::new())
        } else {
            Err("`/` is not a relative folder".into())
        };
    }
    check_segments(trimmed)?;
    Ok(format!("{trimmed}/"))
}

/// A file path relative to the base: `a/b.parquet` (non-empty, no trailing `/`).
fn rel_file(path: &str) -> Result<String, String> {
    if path.is_empty() || path.ends_with('/') {
        return Err("a file path must be non-empty and must not end with `/`".into());
    }
    check_segments(path)?;
    Ok(path.to_string())
}

/// Percent-encodes each segment of a relative path (keeps the `/` separators).
pub(crate) fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Characters escaped in a path segment: everything but RFC 3986 unreserved characters.
pub(crate) const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_checked() {
        assert_eq!(rel_dir("").unwrap(), "");
        assert_eq!(rel_dir("a/b").unwrap(), "a/b/");
        assert_eq!(rel_dir("a/b/").unwrap(), "a/b/");
        assert!(rel_dir("/").is_err());
        assert!(rel_dir("../x").is_err());
        assert!(rel_dir("a//b").is_err());
        assert!(rel_file("a/b.parquet").is_ok());
        assert!(rel_file("/etc/passwd").is_err());
        assert!(rel_file("a/../b").is_err());
        assert!(rel_file("a/").is_err());
        assert!(rel_file("").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("ftp://bob:s3cret@host/pub/"),
            "ftp://bob:***@host/pub/"
        );
        assert_eq!(redact_url("https://host/a/"), "https://host/a/");
        assert!(!redact_url("ftp://bob:s3cret@ho st/").contains("s3cret"));
    }

    #[test]
    fn part_path_appends_suffix() {
        assert_eq!(
            part_path(Path::new("/c/x.parquet")),
            PathBuf::from("/c/x.parquet.part")
        );
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_path("a b/c%d/e.txt"), "a%20b/c%25d/e.txt");
    }
}
