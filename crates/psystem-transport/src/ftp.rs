//! `ftp://` transport (RFC 959, with `SIZE`, `REST` and `MLSD` of RFC 3659) through `suppaftp`: passive mode
//! (the data address of a `PASV` reply is replaced by the control connection's peer, for servers behind NAT),
//! binary type, anonymous login (`anonymous` / `anonymous@`) unless the URL has a user and password. Each
//! operation opens its own control connection and closes it afterwards.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use suppaftp::list::File as ListFile;
use suppaftp::tokio::AsyncFtpStream;
use suppaftp::types::FileType;
use suppaftp::{FtpError, Mode, Status};
use tokio_util::io::ReaderStream;
use url::Url;

use crate::{Body, Entry, Operation, TransportError, TransportOptions, FILE_CHUNK};

pub(crate) struct FtpBackend {
    host: String,
    port: u16,
    user: String,
    password: String,
    /// Server path of the base folder, decoded, starting and ending with `/`.
    root: String,
    connect_timeout: Duration,
    timeout: Duration,
}

impl FtpBackend {
    pub(crate) fn new(base: Url, options: &TransportOptions) -> Result<Self, String> {
        let host = base
            .host_str()
            .ok_or("an ftp:// URL needs a host")?
            .to_string();
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let (user, password) = if base.username().is_empty() {
            ("anonymous".to_string(), "anonymous@".to_string())
        } else {
            (
                decode(base.username()),
                base.password().map(decode).unwrap_or_default(),
            )
        };
        Ok(FtpBackend {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: base.port().unwrap_or(21),
            user,
            password,
            root: decode(base.path()),
            connect_timeout: options.connect_timeout,
            timeout: options.timeout,
        })
    }

    fn server_path(&self, rel: &str) -> String {
        format!("{}{}", self.root, rel)
    }

    /// Connects, logs in, and sets passive mode and binary type.
    async fn connect(&self, url: &str, op: Operation) -> Result<AsyncFtpStream, TransportError> {
        let setup = async {
            let addr = tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(|e| network(url, op, e.to_string()))?
                .next()
                .ok_or_else(|| network(url, op, format!("no address for host {}", self.host)))?;
            let mut ftp = AsyncFtpStream::connect_timeout(addr, self.connect_timeout)
                .await
                .map_err(|e| ftp_error(url, op, e))?;
            ftp.set_mode(Mode::Passive);
            ftp.set_passive_nat_workaround(true);
            ftp.login(self.user.as_str(), self.password.as_str())
                .await
                .map_err(|e| ftp_error(url, op, e))?;
            ftp.transfer_type(FileType::Binary)
                .await
                .map_err(|e| ftp_error(url, op, e))?;
            Ok::<_, TransportError>(ftp)
        };
        match tokio::time::timeout(self.connect_timeout + self.timeout, setup).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout {
                url: url.into(),
                operation: op,
            }),
        }
    }

    async fn timed<T, F>(&self, url: &str, op: Operation, f: F) -> Result<T, TransportError>
    where
        F: std::future::Future<Output = Result<T, FtpError>>,
    {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(|e| ftp_error(url, op, e)),
            Err(_) => Err(TransportError::Timeout {
                url: url.into(),
                operation: op,
            }),
        }
    }

    pub(crate) async fn list(&self, url: &str, dir: &str) -> Result<Vec<Entry>, TransportError> {
        let op = Operation::List;
        let mut ftp = self.connect(url, op).await?;
        let path = self.server_path(dir);
        let lines = match self.timed(url, op, ftp.mlsd(Some(&path))).await {
            Ok(lines) => lines.into_iter().map(|l| (l, true)).collect::<Vec<_>>(),
            // 500/502/504: no MLSD on this server; fall back to LIST.
            Err(TransportError::Ftp {
                code: Some(500 | 501 | 502 | 504),
                ..
            }) => {
                let lines = self.timed(url, op, ftp.list(Some(&path))).await?;
                lines.into_iter().map(|l| (l, false)).collect()
            }
            Err(e) => return Err(e),
        };
        let _ = ftp.quit().await;
        let mut out = Vec::new();
        for (line, mlsd) in lines {
            if line.trim().is_empty() || line.starts_with("total ") {
                continue;
            }
            let parsed = if mlsd {
                // MLSD facts `type=cdir` / `type=pdir` are the folder itself and its parent.
                let facts = line.split(' ').next().unwrap_or("").to_ascii_lowercase();
                if facts.contains("type=cdir;") || facts.contains("type=pdir;") {
                    continue;
                }
                suppaftp::list::ListParser::parse_mlsd(&line)
            } else {
                line.parse::<ListFile>()
            };
            let file = parsed.map_err(|e| TransportError::Protocol {
                url: url.into(),
                operation: op,
                message: format!("unreadable listing line `{line}`: {e}"),
            })?;
            let name = file.name().to_string();
            if name == "." || name == ".." || name.is_empty() {
                continue;
            }
            let is_dir = file.is_directory();
            out.push(Entry {
                name,
                is_dir,
                size: (!is_dir).then_some(file.size() as u64),
            });
        }
        Ok(out)
    }

    pub(crate) async fn size(
        &self,
        url: &str,
        path: &str,
        op: Operation,
    ) -> Result<u64, TransportError> {
        let mut ftp = self.connect(url, op).await?;
        let size = self
            .timed(url, op, ftp.size(self.server_path(path)))
            .await?;
        let _ = ftp.quit().await;
        Ok(size as u64)
    }

    /// `REST offset` (when > 0) and `RETR`: the file's bytes from `offset`, until the server closes the data
    /// connection. Dropping the body closes both connections (an abandoned transfer needs no `ABOR`).
    pub(crate) async fn open(
        &self,
        url: &str,
        path: &str,
        offset: u64,
        op: Operation,
    ) -> Result<Body, TransportError> {
        let mut ftp = self.connect(url, op).await?;
        if offset > 0 {
            let offset =
                usize::try_from(offset).map_err(|_| network(url, op, "offset too large".into()))?;
            self.timed(url, op, ftp.resume_transfer(offset)).await?;
        }
        let transfer = self
            .timed(url, op, ftp.retr_as_stream(self.server_path(path)))
            .await?;
        let reader = ReaderStream::with_capacity(transfer, FILE_CHUNK);
        let url = url.to_string();
        let chunks = FtpBody {
            _control: ftp,
            reader,
        }
        .map(move |r| r.map_err(|e| network(&url, op, e.to_string())))
        .boxed();
        Ok(Body {
            start: offset,
            chunks,
        })
    }
}

/// The data stream of a `RETR`, keeping its control connection open while it is read.
struct FtpBody<R> {
    _control: AsyncFtpStream,
    reader: ReaderStream<R>,
}

impl<R: tokio::io::AsyncRead + Unpin> Stream for FtpBody<R> {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.reader.poll_next_unpin(cx)
    }
}

fn network(url: &str, op: Operation, message: String) -> TransportError {
    TransportError::Network {
        url: url.into(),
        operation: op,
        message,
    }
}

/// An FTP client error: 550 → NotFound, other replies → Ftp with their code, connection errors → Network.
fn ftp_error(url: &str, op: Operation, e: FtpError) -> TransportError {
    match e {
        FtpError::UnexpectedResponse(resp) => {
            let code = resp.status.code();
            let text = String::from_utf8_lossy(&resp.body).trim().to_string();
            if resp.status == Status::FileUnavailable {
                TransportError::NotFound {
                    url: url.into(),
                    operation: op,
                }
            } else {
                TransportError::Ftp {
                    url: url.into(),
                    operation: op,
                    code: Some(code),
                    message: text,
                }
            }
        }
        FtpError::ConnectionError(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            TransportError::Timeout {
                url: url.into(),
                operation: op,
            }
        }
        FtpError::ConnectionError(io) => network(url, op, io.to_string()),
        other => TransportError::Ftp {
            url: url.into(),
            operation: op,
            code: None,
            message: other.to_string(),
        },
    }
}
