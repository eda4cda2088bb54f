//! A local FTP server for tests: `libunftp` with the `unftp-sbe-fs` file system back-end serving a folder
//! read-write to anonymous users on `127.0.0.1`, passive mode on a block of free ports picked at start.
//! It speaks what psystem's FTP transport uses: `USER/PASS`, `TYPE I`, `PASV`/`EPSV`, `SIZE`, `MLSD`, `LIST`,
//! `REST` + `RETR`.
//!
//! Fault injection: [`FtpServer::cut_next_download_after`] makes the next `RETR` send that many bytes and then
//! fail the data connection; [`FtpServer::retrievals`] lists every `RETR` with its `REST` offset.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = psystem_testkit::ftp::FtpServer::start("/srv/mirror".into()).await?;
//! let _url = server.url(); // ftp://127.0.0.1:PORT/
//! # Ok(()) }
//! ```

use std::fmt::Debug;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio_util::sync::CancellationToken;
use unftp_core::auth::DefaultUser;
use unftp_core::storage::{Fileinfo, Result as StorageResult, StorageBackend};
use unftp_sbe_fs::{Filesystem, Meta};

/// Number of passive data ports reserved per server.
const PASSIVE_PORTS: u16 = 16;

/// One `RETR` the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtpRetrieval {
    /// Path asked for, as the client gave it (e.g. `/25.03/x.parquet`).
    pub path: String,
    /// The `REST` offset in effect (0 without `REST`).
    pub offset: u64,
}

#[derive(Default)]
struct Faults {
    cut_after: Option<u64>,
    /// Only a retrieval whose path contains this is cut (any when `None`).
    cut_path: Option<String>,
    log: Vec<FtpRetrieval>,
}

fn lock(f: &Mutex<Faults>) -> MutexGuard<'_, Faults> {
    f.lock().unwrap_or_else(|e| e.into_inner())
}

/// The file system back-end with the fault injection and `RETR` log.
#[derive(Debug)]
struct FaultyFs {
    inner: Filesystem,
    faults: Arc<Mutex<Faults>>,
}

impl Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("cut_after", &self.cut_after)
            .finish()
    }
}

/// A reader that ends with an error (a broken data connection) instead of end-of-file.
struct CutReader {
    inner: Box<dyn AsyncRead + Send + Sync + Unpin>,
}

impl AsyncRead for CutReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "download cut by the test server",
                )))
            }
            other => other,
        }
    }
}

#[async_trait::async_trait]
impl StorageBackend<DefaultUser> for FaultyFs {
    type Metadata = Meta;

    fn supported_features(&self) -> u32 {
        StorageBackend::<DefaultUser>::supported_features(&self.inner)
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
    ) -> StorageResult<Meta> {
        self.inner.metadata(user, path).await
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
    ) -> StorageResult<Vec<Fileinfo<PathBuf, Meta>>> {
        self.inner.list(user, path).await
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
        start_pos: u64,
    ) -> StorageResult<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        let shown = path.as_ref().to_string_lossy().into_owned();
        let cut = {
            let mut f = lock(&self.faults);
            f.log.push(FtpRetrieval {
                path: shown.clone(),
                offset: start_pos,
            });
            if f.cut_path.as_deref().is_none_or(|p| shown.contains(p)) {
                f.cut_path = None;
                f.cut_after.take()
            } else {
                None
            }
        };
        let reader = self.inner.get(user, path, start_pos).await?;
        Ok(match cut {
            None => reader,
            Some(n) => Box::new(CutReader {
                inner: Box::new(reader.take(n)),
            }),
        })
    }

    async fn put<P: AsRef<Path> + Send + Debug, R: AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        user: &DefaultUser,
        input: R,
        path: P,
        start_pos: u64,
    ) -> StorageResult<u64> {
        self.inner.put(user, input, path, start_pos).await
    }

    async fn del<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
    ) -> StorageResult<()> {
        self.inner.del(user, path).await
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
    ) -> StorageResult<()> {
        self.inner.mkd(user, path).await
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        from: P,
        to: P,
    ) -> StorageResult<()> {
        self.inner.rename(user, from, to).await
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
    ) -> StorageResult<()> {
        self.inner.rmd(user, path).await
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &DefaultUser,
        path: P,
    ) -> StorageResult<()> {
        self.inner.cwd(user, path).await
    }
}

/// A running FTP server; stops when dropped.
pub struct FtpServer {
    addr: SocketAddr,
    root: PathBuf,
    faults: Arc<Mutex<Faults>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Debug for FtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtpServer")
            .field("addr", &self.addr)
            .field("root", &self.root)
            .finish()
    }
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        self.stop.cancel();
        self.task.abort();
    }
}

/// A port free on 127.0.0.1 right now (bound and released).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// A block of [`PASSIVE_PORTS`] consecutive ports that are all free on 127.0.0.1 right now.
fn free_port_block() -> std::io::Result<std::ops::RangeInclusive<u16>> {
    for _ in 0..200 {
        let base: u16 = rand::random_range(20_000..60_000);
        let all_free =
            (base..base + PASSIVE_PORTS).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return Ok(base..=base + PASSIVE_PORTS - 1);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free block of passive ports",
    ))
}

impl FtpServer {
    /// Serves `root` to anonymous users on a free port of 127.0.0.1 (passive ports: a free block of 16),
    /// on the caller's tokio runtime; returns once the server accepts connections.
    ///
    /// # Errors
    /// `root` is not a folder, no free ports, or the server did not come up within 5 s.
    pub async fn start(root: PathBuf) -> std::io::Result<FtpServer> {
        let faults = Arc::new(Mutex::new(Faults::default()));
        let fs_root = root.clone();
        Filesystem::new(fs_root.clone())?;
        let fs_faults = faults.clone();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let port = free_port()?;
        let server = libunftp::ServerBuilder::new(Box::new(move || FaultyFs {
            inner: Filesystem::new(fs_root.clone()).expect("checked at start"),
            faults: fs_faults.clone(),
        }))
        .greeting("psystem test FTP server")
        .passive_ports(free_port_block()?)
        .passive_host(libunftp::options::PassiveHost::Ip(
            std::net::Ipv4Addr::LOCALHOST,
        ))
        .idle_session_timeout(60)
        .shutdown_indicator(async move {
            stopped.cancelled().await;
            libunftp::options::Shutdown::new().grace_period(Duration::from_millis(10))
        })
        .build()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let task = tokio::spawn(async move {
            if let Err(e) = server.listen(addr.to_string()).await {
                tracing::error!(error = %e, "FTP server stopped");
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                task.abort();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "FTP server did not start",
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(%addr, "FTP server listening");
        Ok(FtpServer {
            addr,
            root,
            faults,
            stop,
            task,
        })
    }

    /// `ftp://127.0.0.1:PORT/`: the URL of the served folder.
    pub fn url(&self) -> String {
        format!("ftp://{}/", self.addr)
    }

    /// The socket address of the control connection.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next `RETR` sends `bytes` bytes (from its `REST` offset), then fails its data connection.
    pub fn cut_next_download_after(&self, bytes: u64) {
        let mut f = lock(&self.faults);
        f.cut_after = Some(bytes);
        f.cut_path = None;
    }

    /// The next `RETR` of a path containing `part` sends `bytes` bytes (from its `REST` offset), then fails its
    /// data connection; other retrievals are served whole.
    pub fn cut_next_download_of(&self, part: &str, bytes: u64) {
        let mut f = lock(&self.faults);
        f.cut_after = Some(bytes);
        f.cut_path = Some(part.to_string());
    }

    /// Every `RETR` so far, in order, with its `REST` offset.
    pub fn retrievals(&self) -> Vec<FtpRetrieval> {
        lock(&self.faults).log.clone()
    }
}
