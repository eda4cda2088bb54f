//! The managed local PostgreSQL cluster that psystem runs when the user names no database.
//!
//! State lives in `<home>/postgres/` (`home` is `PSYSTEM_HOME` or `~/.psystem`):
//!
//! * `data/` — the data directory (`initdb`), unless running as root with a private home (below);
//! * `server.log` — the server's log (`pg_ctl -l`);
//! * `run/` — the private Unix-socket directory (`-k`), so `/var/run/postgresql` is never needed;
//! * `cluster.yaml` — port, data directory, binaries, superuser and OS user, written atomically.
//!
//! The server listens on `127.0.0.1` only, on a port picked once and reused while it stays free,
//! and trusts local connections (see `docs/LOCAL_DATABASE.md` for that trade-off).
//!
//! PostgreSQL refuses to run as root. When psystem runs as root, `initdb` and `pg_ctl` run as the
//! `postgres` system user (`runuser`, falling back to `su`). If that user cannot reach
//! `<home>/postgres` (an ancestor folder is not world-traversable, e.g. `/root`), the data
//! directory, log and socket directory move to `/var/lib/psystem/<hash of the home path>/`, and
//! `cluster.yaml` records where.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Uid, User};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgConnection};
use tracing::{debug, info, warn};

/// Environment variable naming a folder that holds `initdb`, `pg_ctl` and `postgres`.
pub const PG_BIN_ENV: &str = "PSYSTEM_PG_BIN";

/// Name of the database psystem creates in the local cluster and puts in its URL.
pub const DATABASE_NAME: &str = "psystem";

/// Where Debian/Ubuntu install versioned server binaries (`<root>/<version>/bin`).
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";
/// Where the cluster lives when running as root and the home is not reachable by `postgres`.
const ROOT_FALLBACK_DIR: &str = "/var/lib/psystem";
/// The system user that runs the server when psystem runs as root.
const POSTGRES_USER: &str = "postgres";
/// How long `up` waits for the server to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `down` lets `pg_ctl stop -m fast` wait.
const STOP_TIMEOUT_SECS: u32 = 60;
/// How long `status` waits for a connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of the server log quoted in a start failure.
const LOG_TAIL_LINES: usize = 40;
/// Longest socket directory that still fits `<dir>/.s.PGSQL.<port>` in `sun_path` (108 bytes).
const MAX_SOCKET_DIR_LEN: usize = 91;

/// Errors from managing the local cluster. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// `initdb`, `pg_ctl` and `postgres` were not found.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found (looked in {searched}). \
         Install the PostgreSQL server, e.g. `sudo apt-get install postgresql` (Debian/Ubuntu), \
         `sudo dnf install postgresql-server` (Fedora/RHEL) or `brew install postgresql` (macOS), \
         or set PSYSTEM_PG_BIN to the folder that holds them"
    )]
    ServerBinariesMissing {
        /// Where psystem looked.
        searched: String,
    },
    /// Running as root, but there is no `postgres` system user to run the server as.
    #[error(
        "psystem runs as root, but PostgreSQL refuses to run as root and there is no `postgres` \
         system user to run it as. Install the server package (e.g. `sudo apt-get install \
         postgresql`, which creates that user), create a `postgres` user, or run psystem as a \
         normal user"
    )]
    NoPostgresUser,
    /// The data directory belongs to an OS user other than the one psystem runs as.
    #[error(
        "the local cluster's data directory {data_dir} belongs to OS user `{owner}`; run psystem \
         as that user (or as root), or point PSYSTEM_HOME elsewhere"
    )]
    DataDirOwner {
        /// The data directory.
        data_dir: PathBuf,
        /// Its owner (a name, or a numeric uid).
        owner: String,
    },
    /// The cluster has never been initialised in this home.
    #[error(
        "no local PostgreSQL cluster in {home} yet; run `psystem db up` to create and start it"
    )]
    NotInitialized {
        /// The psystem home folder.
        home: PathBuf,
    },
    /// `initdb` failed.
    #[error(
        "initdb failed; check that the data directory's parent is writable and empty, then retry \
         `psystem db up`:\n{output}"
    )]
    InitdbFailed {
        /// What `initdb` printed.
        output: String,
    },
    /// The server did not start, or did not accept connections in time.
    #[error(
        "the local PostgreSQL server did not start (full log: {log_file}); fix the cause below and \
         retry `psystem db up`:\n{log_tail}"
    )]
    StartFailed {
        /// The server log.
        log_file: PathBuf,
        /// The last lines the server logged during this start (or what `pg_ctl` printed).
        log_tail: String,
    },
    /// `pg_ctl stop` failed.
    #[error("stopping the local PostgreSQL server failed; retry `psystem db down`:\n{output}")]
    StopFailed {
        /// What `pg_ctl` printed.
        output: String,
    },
    /// Another tool (`pg_ctl status`, `runuser`, …) failed unexpectedly.
    #[error("`{command}` failed:\n{output}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed and how it exited.
        output: String,
    },
    /// Connecting to the running server, or creating the `psystem` database, failed.
    #[error("the local PostgreSQL server at {url} did not answer as expected ({source}); see `psystem db status` and the server log")]
    Database {
        /// Where psystem connected.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// `cluster.yaml` exists but cannot be read.
    #[error("the cluster state file {path} is invalid ({message}); fix or delete it (the data directory is kept) and retry")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A file-system operation or process launch failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file, folder or program involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

type Result<T, E = ClusterError> = std::result::Result<T, E>;

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> ClusterError {
    let path = path.into();
    move |source| ClusterError::Io { path, source }
}

/// What `up`, `down` and `status` report about the local cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// Whether `initdb` has run (the data directory holds a cluster).
    pub initialized: bool,
    /// Whether the server runs (per `pg_ctl status`) and accepts connections.
    pub running: bool,
    /// The data directory (where it is, or would be, created).
    pub data_dir: PathBuf,
    /// The TCP port on 127.0.0.1: the live one when running, else the saved one.
    pub port: Option<u16>,
    /// The connection URL (`postgres://<user>@127.0.0.1:<port>/psystem`), once initialised.
    pub url: Option<String>,
    /// The server's version when running (`SHOW server_version`), else the data directory's
    /// major version (`PG_VERSION`) once initialised.
    pub server_version: Option<String>,
    /// The server log.
    pub log_file: PathBuf,
    /// The OS user the server runs as when psystem runs as root (normally `postgres`); `None`
    /// when it runs as the current user.
    pub run_as: Option<String>,
}

/// The contents of `cluster.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ClusterState {
    port: u16,
    data_dir: PathBuf,
    log_file: PathBuf,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    superuser: String,
    #[serde(default)]
    run_as: Option<String>,
}

/// Where a cluster's files go.
#[derive(Debug, Clone)]
struct Layout {
    /// The folder holding data, log and socket directory (chowned to `run_as`).
    root: PathBuf,
    data_dir: PathBuf,
    log_file: PathBuf,
    socket_dir: PathBuf,
    run_as: Option<String>,
}

impl Layout {
    fn under(root: PathBuf, run_as: Option<String>) -> Layout {
        Layout {
            data_dir: root.join("data"),
            log_file: root.join("server.log"),
            socket_dir: root.join("run"),
            root,
            run_as,
        }
    }
}

/// A managed local PostgreSQL cluster in a psystem home folder.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    home: PathBuf,
}

impl LocalCluster {
    /// `home` is the psystem home folder (PSYSTEM_HOME or ~/.psystem); state lives in `home/postgres/`.
    pub fn new(home: impl Into<PathBuf>) -> LocalCluster {
        let home = home.into();
        let home = std::path::absolute(&home).unwrap_or(home);
        LocalCluster { home }
    }

    /// The psystem home folder this cluster belongs to.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Finds initdb/pg_ctl/postgres: env PSYSTEM_PG_BIN (a folder), else the newest
    /// /usr/lib/postgresql/<ver>/bin (numeric version sort), else `pg_ctl` on PATH.
    ///
    /// # Errors
    /// [`ClusterError::ServerBinariesMissing`], whose message says how to install the server
    /// (e.g. `sudo apt-get install postgresql` on Debian/Ubuntu) and that PSYSTEM_PG_BIN can point
    /// at the binaries.
    pub fn server_binaries() -> Result<PathBuf, ClusterError> {
        if let Some(dir) = std::env::var_os(PG_BIN_ENV) {
            let dir = PathBuf::from(dir);
            return if has_server_binaries(&dir) {
                Ok(dir)
            } else {
                Err(ClusterError::ServerBinariesMissing {
                    searched: format!("{PG_BIN_ENV}={}", dir.display()),
                })
            };
        }
        if let Some(dir) = newest_versioned_bin(Path::new(DEBIAN_PG_ROOT)) {
            return Ok(dir);
        }
        if let Some(dir) = std::env::var_os("PATH").and_then(|path| bin_on_path(&path)) {
            return Ok(dir);
        }
        Err(ClusterError::ServerBinariesMissing {
            searched: format!("{PG_BIN_ENV} (unset), {DEBIAN_PG_ROOT}/<version>/bin and PATH"),
        })
    }

    /// Initialises (first time) and starts the cluster if not running; idempotent; returns its
    /// status. Waits until it accepts connections (timeout ~30 s, error with the log tail), and
    /// creates the `psystem` database if missing.
    pub async fn up(&self) -> Result<ClusterStatus, ClusterError> {
        let _lock = self.lock().await?;
        let mut state = match self.load_state()? {
            Some(state) if is_initialized(&state.data_dir) => state,
            _ => self.initialize().await?,
        };
        let run_as = effective_run_as(&state.data_dir)?;
        let bin = resolve_bin(Some(&state), &state.data_dir)?;
        let mut changed = false;
        if state.run_as != run_as {
            state.run_as = run_as;
            changed = true;
        }
        if state.bin_dir != bin {
            state.bin_dir = bin;
            changed = true;
        }
        if changed {
            self.save_state(&state)?;
        }
        let runner = Runner::new(&state);
        let deadline = Instant::now() + START_TIMEOUT;

        if let Some(pid) = self.running_pid(&state, &runner, true).await? {
            debug!(pid, "local PostgreSQL already running");
            if let Some(port) = read_pid_file(&state.data_dir).and_then(|p| p.port) {
                if port != state.port {
                    state.port = port;
                    self.save_state(&state)?;
                }
            }
            self.wait_until_ready(&state, deadline, None).await?;
        } else {
            let log_offset = self.start(&mut state, &runner).await?;
            self.wait_until_ready(&state, deadline, Some(log_offset))
                .await?;
        }
        self.ensure_database(&state).await?;
        self.status_of(Some(&state)).await
    }

    /// Stops it (`pg_ctl stop -m fast`); Ok if not running (or never initialised).
    pub async fn down(&self) -> Result<ClusterStatus, ClusterError> {
        let _lock = self.lock().await?;
        let state = match self.load_state()? {
            Some(state) if is_initialized(&state.data_dir) => state,
            _ => return self.status_of(None).await,
        };
        let runner = Runner::new(&state);
        if self.running_pid(&state, &runner, true).await?.is_some() {
            info!(data_dir = %state.data_dir.display(), "stopping local PostgreSQL");
            let args: Vec<OsString> = vec![
                "stop".into(),
                "-D".into(),
                state.data_dir.clone().into(),
                "-m".into(),
                "fast".into(),
                "-w".into(),
                "-t".into(),
                STOP_TIMEOUT_SECS.to_string().into(),
            ];
            let out = runner.run(&state.bin_dir.join("pg_ctl"), &args).await?;
            if !out.status.success() {
                return Err(ClusterError::StopFailed {
                    output: describe_output(&out),
                });
            }
        } else {
            debug!("local PostgreSQL is not running");
        }
        self.status_of(Some(&state)).await
    }

    /// Reports whether the cluster is initialised and running (`pg_ctl status` plus a connection
    /// attempt), where it lives and how to connect.
    pub async fn status(&self) -> Result<ClusterStatus, ClusterError> {
        match self.load_state()? {
            Some(state) if is_initialized(&state.data_dir) => {
                let mut state = state;
                state.run_as = effective_run_as(&state.data_dir)?;
                state.bin_dir = resolve_bin(Some(&state), &state.data_dir)?;
                self.status_of(Some(&state)).await
            }
            _ => self.status_of(None).await,
        }
    }

    /// The connection URL (postgres://<user>@127.0.0.1:<port>/psystem).
    ///
    /// # Errors
    /// [`ClusterError::NotInitialized`] if the cluster was never initialised.
    pub fn url(&self) -> Result<String, ClusterError> {
        match self.load_state()? {
            Some(state) if is_initialized(&state.data_dir) => {
                Ok(connection_url(&state.superuser, state.port, DATABASE_NAME))
            }
            _ => Err(ClusterError::NotInitialized {
                home: self.home.clone(),
            }),
        }
    }

    // ----- internals -------------------------------------------------------------------------

    fn state_dir(&self) -> PathBuf {
        self.home.join("postgres")
    }

    fn state_path(&self) -> PathBuf {
        self.state_dir().join("cluster.yaml")
    }

    /// Serialises `up`/`down` in this home across processes (an exclusive `flock`).
    async fn lock(&self) -> Result<Flock<File>> {
        let dir = self.state_dir();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let lock_path = path.clone();
        tokio::task::spawn_blocking(move || Flock::lock(file, FlockArg::LockExclusive))
            .await
            .map_err(|e| ClusterError::Io {
                path: lock_path,
                source: io::Error::other(e),
            })?
            .map_err(|(_, errno)| ClusterError::Io {
                path,
                source: io::Error::from(errno),
            })
    }

    fn load_state(&self) -> Result<Option<ClusterState>> {
        let path = self.state_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        serde_yaml_ng::from_str(&text)
            .map(Some)
            .map_err(|e| ClusterError::State {
                path,
                message: e.to_string(),
            })
    }

    /// Writes `cluster.yaml` atomically: temp file, fsync, rename, fsync of the folder.
    fn save_state(&self, state: &ClusterState) -> Result<()> {
        let dir = self.state_dir();
        let path = self.state_path();
        let text = serde_yaml_ng::to_string(state).map_err(|e| ClusterError::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let body = format!(
            "# psystem local PostgreSQL cluster; written by psystem, edit with care.\n{text}"
        );
        let tmp = dir.join(format!(".cluster.yaml.{}.tmp", std::process::id()));
        let write = || -> io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(body.as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err(&path)(e)
        })
    }

    /// The layout a new cluster gets in this home (no side effects).
    fn layout_for_new(&self) -> Result<Layout> {
        let state_dir = self.state_dir();
        if !Uid::effective().is_root() {
            return Ok(Layout::under(state_dir, None));
        }
        let run_as = Some(POSTGRES_USER.to_string());
        let canonical = lenient_canonicalize(&state_dir);
        if ancestors_traversable(&canonical) {
            Ok(Layout::under(state_dir, run_as))
        } else {
            let canonical_home = lenient_canonicalize(&self.home);
            let hash = short_hash(canonical_home.as_os_str());
            Ok(Layout::under(
                Path::new(ROOT_FALLBACK_DIR).join(hash),
                run_as,
            ))
        }
    }

    /// Runs `initdb` (or adopts an initialised data directory whose `cluster.yaml` was lost)
    /// and saves a fresh `cluster.yaml`.
    async fn initialize(&self) -> Result<ClusterState> {
        let bin = Self::server_binaries()?;
        let layout = self.layout_for_new()?;
        let superuser = match &layout.run_as {
            Some(user) => user.clone(),
            None => current_user_name(),
        };
        prepare_root(&layout, &self.state_dir())?;
        let state = ClusterState {
            port: pick_free_port()?,
            data_dir: layout.data_dir.clone(),
            log_file: layout.log_file.clone(),
            socket_dir: layout.socket_dir.clone(),
            bin_dir: bin,
            superuser,
            run_as: layout.run_as.clone(),
        };
        if is_initialized(&layout.data_dir) {
            warn!(
                data_dir = %layout.data_dir.display(),
                "adopting an initialised data directory without cluster.yaml"
            );
        } else {
            info!(
                data_dir = %layout.data_dir.display(),
                run_as = layout.run_as.as_deref().unwrap_or("(current user)"),
                "initialising local PostgreSQL cluster"
            );
            let args: Vec<OsString> = vec![
                "-D".into(),
                layout.data_dir.clone().into(),
                "-U".into(),
                state.superuser.clone().into(),
                "--auth=trust".into(),
                "--encoding=UTF8".into(),
                "--locale=C".into(),
            ];
            let runner = Runner::new(&state);
            let out = runner.run(&state.bin_dir.join("initdb"), &args).await?;
            if !out.status.success() {
                return Err(ClusterError::InitdbFailed {
                    output: describe_output(&out),
                });
            }
            debug!(output = %String::from_utf8_lossy(&out.stdout), "initdb done");
        }
        self.save_state(&state)?;
        Ok(state)
    }

    /// The postmaster's pid if `pg_ctl status` says it runs and the pid is this cluster's live
    /// postmaster. With `remove_stale` (only under the lock, from `up`/`down`), a
    /// `postmaster.pid` whose pid belongs to some other process is removed.
    async fn running_pid(
        &self,
        state: &ClusterState,
        runner: &Runner,
        remove_stale: bool,
    ) -> Result<Option<i64>> {
        let args: Vec<OsString> = vec!["status".into(), "-D".into(), state.data_dir.clone().into()];
        let pg_ctl = state.bin_dir.join("pg_ctl");
        let out = runner.run(&pg_ctl, &args).await?;
        match out.status.code() {
            Some(0) => {}
            // 3: not running; 4: no accessible data directory.
            Some(3) | Some(4) => return Ok(None),
            _ => {
                return Err(ClusterError::Command {
                    command: runner.describe(&pg_ctl, &args),
                    output: describe_output(&out),
                })
            }
        }
        let pid = match read_pid_file(&state.data_dir) {
            Some(info) => info.pid,
            None => return Ok(None),
        };
        if is_our_postmaster(pid, &state.data_dir) == Some(false) {
            if !remove_stale {
                debug!(pid, "postmaster.pid is stale");
                return Ok(None);
            }
            warn!(
                pid,
                "postmaster.pid names a process that is not this cluster's server; removing it"
            );
            let pid_file = state.data_dir.join("postmaster.pid");
            fs::remove_file(&pid_file).map_err(io_err(&pid_file))?;
            return Ok(None);
        }
        Ok(Some(pid))
    }

    /// Starts the server (`pg_ctl start -w`), choosing a free port; retries with a new port if
    /// the chosen one was taken in the meantime. Returns the log's length before the start.
    async fn start(&self, state: &mut ClusterState, runner: &Runner) -> Result<u64> {
        const ATTEMPTS: usize = 3;
        ensure_private_dir(&state.socket_dir, state.run_as.as_deref())?;
        clear_stale_sockets(&state.socket_dir)?;
        for attempt in 1..=ATTEMPTS {
            let port = if attempt == 1 && port_is_free(state.port) {
                state.port
            } else {
                pick_free_port()?
            };
            if port != state.port {
                info!(
                    old = state.port,
                    new = port,
                    "saved port is taken; using a new one"
                );
                state.port = port;
                self.save_state(state)?;
            }
            let socket_dir = if state.socket_dir.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
                shell_quote(state.socket_dir.as_os_str())
            } else {
                warn!(
                    socket_dir = %state.socket_dir.display(),
                    "socket directory path too long for a Unix socket; listening on TCP only"
                );
                "''".to_string()
            };
            let options = format!("-p {port} -c listen_addresses=127.0.0.1 -k {socket_dir}");
            let args: Vec<OsString> = vec![
                "start".into(),
                "-D".into(),
                state.data_dir.clone().into(),
                "-l".into(),
                state.log_file.clone().into(),
                "-w".into(),
                "-t".into(),
                START_TIMEOUT.as_secs().to_string().into(),
                "-o".into(),
                options.into(),
            ];
            let log_offset = file_len(&state.log_file);
            info!(port, data_dir = %state.data_dir.display(), "starting local PostgreSQL");
            let out = runner.run(&state.bin_dir.join("pg_ctl"), &args).await?;
            if out.status.success() {
                return Ok(log_offset);
            }
            let mut log_tail = read_log_tail(&state.log_file, log_offset);
            if log_tail.trim().is_empty() {
                log_tail = describe_output(&out);
            }
            let port_taken =
                log_tail.contains("Address already in use") || log_tail.contains("could not bind");
            let shmem_busy = log_tail.contains("pre-existing shared memory block");
            if attempt < ATTEMPTS && (port_taken || shmem_busy) {
                warn!(attempt, %log_tail, "local PostgreSQL did not start; retrying");
                if shmem_busy {
                    // Back-ends of a killed postmaster are still exiting.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                continue;
            }
            return Err(ClusterError::StartFailed {
                log_file: state.log_file.clone(),
                log_tail,
            });
        }
        unreachable!("the last attempt returns")
    }

    /// Waits until the server accepts connections as the superuser.
    async fn wait_until_ready(
        &self,
        state: &ClusterState,
        deadline: Instant,
        log_offset: Option<u64>,
    ) -> Result<()> {
        loop {
            let attempt = tokio::time::timeout(PROBE_TIMEOUT, connect(state, "postgres")).await;
            match attempt {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Ok(Err(e)) if Instant::now() >= deadline => {
                    let mut log_tail = read_log_tail(&state.log_file, log_offset.unwrap_or(0));
                    log_tail.push_str(&format!(
                        "\n(connecting to 127.0.0.1:{} failed: {e})",
                        state.port
                    ));
                    return Err(ClusterError::StartFailed {
                        log_file: state.log_file.clone(),
                        log_tail,
                    });
                }
                Err(_) if Instant::now() >= deadline => {
                    return Err(ClusterError::StartFailed {
                        log_file: state.log_file.clone(),
                        log_tail: read_log_tail(&state.log_file, log_offset.unwrap_or(0)),
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Creates the `psystem` database if missing.
    async fn ensure_database(&self, state: &ClusterState) -> Result<()> {
        let url = connection_url(&state.superuser, state.port, "postgres");
        let db_err = |source| ClusterError::Database {
            url: url.clone(),
            source,
        };
        let mut conn = connect(state, "postgres").await.map_err(db_err)?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(DATABASE_NAME)
                .fetch_optional(&mut conn)
                .await
                .map_err(db_err)?;
        if exists.is_none() {
            info!(database = DATABASE_NAME, "creating database");
            let created = sqlx::query(&format!("CREATE DATABASE \"{DATABASE_NAME}\""))
                .execute(&mut conn)
                .await;
            match created {
                Ok(_) => {}
                // 42P04 duplicate_database: someone else created it meanwhile.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
                Err(e) => return Err(db_err(e)),
            }
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// Builds the status; `state` is `None` when the cluster is not initialised.
    async fn status_of(&self, state: Option<&ClusterState>) -> Result<ClusterStatus> {
        let state = match state {
            Some(state) => state,
            None => {
                let layout = self.layout_for_new()?;
                return Ok(ClusterStatus {
                    initialized: false,
                    running: false,
                    data_dir: layout.data_dir,
                    port: None,
                    url: None,
                    server_version: None,
                    log_file: layout.log_file,
                    run_as: layout.run_as,
                });
            }
        };
        let runner = Runner::new(state);
        let mut port = state.port;
        let mut running = false;
        let mut server_version = None;
        if self.running_pid(state, &runner, false).await?.is_some() {
            if let Some(live) = read_pid_file(&state.data_dir).and_then(|p| p.port) {
                port = live;
            }
            let probe = ClusterState {
                port,
                ..state.clone()
            };
            match tokio::time::timeout(PROBE_TIMEOUT, connect(&probe, "postgres")).await {
                Ok(Ok(mut conn)) => {
                    running = true;
                    server_version = sqlx::query_scalar::<_, String>("SHOW server_version")
                        .fetch_one(&mut conn)
                        .await
                        .ok();
                    let _ = conn.close().await;
                }
                Ok(Err(e)) => {
                    warn!(port, error = %e, "server process runs but refuses connections")
                }
                Err(_) => warn!(port, "server process runs but a connection timed out"),
            }
        }
        if server_version.is_none() {
            server_version = fs::read_to_string(state.data_dir.join("PG_VERSION"))
                .ok()
                .map(|v| v.trim().to_string());
        }
        Ok(ClusterStatus {
            initialized: true,
            running,
            data_dir: state.data_dir.clone(),
            port: Some(port),
            url: Some(connection_url(&state.superuser, port, DATABASE_NAME)),
            server_version,
            log_file: state.log_file.clone(),
            run_as: state.run_as.clone(),
        })
    }
}

// ----- processes ---------------------------------------------------------------------------------

/// Runs server tools, as `run_as` (via `runuser`, else `su`) when psystem runs as root.
struct Runner {
    run_as: Option<String>,
    cwd: PathBuf,
}

impl Runner {
    fn new(state: &ClusterState) -> Runner {
        let cwd = state
            .data_dir
            .parent()
            .filter(|p| p.is_dir())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        let run_as = if Uid::effective().is_root() {
            state.run_as.clone()
        } else {
            None
        };
        Runner { run_as, cwd }
    }

    fn command(&self, program: &Path, args: &[OsString]) -> tokio::process::Command {
        let mut cmd = match &self.run_as {
            None => {
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args);
                cmd
            }
            Some(user) => match find_runuser() {
                Some(runuser) => {
                    let mut cmd = tokio::process::Command::new(runuser);
                    cmd.arg("-u").arg(user).arg("--").arg(program).args(args);
                    cmd
                }
                None => {
                    let mut cmd = tokio::process::Command::new("su");
                    cmd.arg(user)
                        .arg("-s")
                        .arg("/bin/sh")
                        .arg("-c")
                        .arg(shell_command(program, args));
                    cmd
                }
            },
        };
        cmd.current_dir(&self.cwd)
            .env("LC_ALL", "C")
            .env("LANG", "C")
            .env_remove("PGDATA")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn describe(&self, program: &Path, args: &[OsString]) -> String {
        let cmd = shell_command(program, args);
        match &self.run_as {
            Some(user) => format!("runuser -u {user} -- {cmd}"),
            None => cmd,
        }
    }

    async fn run(&self, program: &Path, args: &[OsString]) -> Result<Output> {
        debug!(command = %self.describe(program, args), "running");
        self.command(program, args)
            .output()
            .await
            .map_err(io_err(program))
    }
}

fn find_runuser() -> Option<PathBuf> {
    [
        "/usr/sbin/runuser",
        "/sbin/runuser",
        "/usr/bin/runuser",
        "/bin/runuser",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| is_executable(p))
    .or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("runuser"))
                .find(|p| is_executable(p))
        })
    })
}

fn shell_quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@".contains(c))
    {
        return s.into_owned();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn shell_command(program: &Path, args: &[OsString]) -> String {
    std::iter::once(shell_quote(program.as_os_str()))
        .chain(args.iter().map(|a| shell_quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe_output(out: &Output) -> String {
    let mut text = String::new();
    text.push_str(String::from_utf8_lossy(&out.stdout).trim_end());
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stderr.trim_end());
    }
    if !out.status.success() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("({})", out.status));
    }
    text
}

// ----- binaries ----------------------------------------------------------------------------------

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|name| is_executable(&dir.join(name)))
}

/// The newest `<root>/<version>/bin` holding the server binaries, by numeric version.
fn newest_versioned_bin(root: &Path) -> Option<PathBuf> {
    fs::read_dir(root)
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_string();
            let version: Vec<u32> = name
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<_>>()?;
            let bin = entry.path().join("bin");
            has_server_binaries(&bin).then_some((version, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin)
}

/// The folder of `pg_ctl` on PATH (following a symlink if the server binaries are not beside it).
fn bin_on_path(path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path).find_map(|dir| {
        let pg_ctl = dir.join("pg_ctl");
        if !is_executable(&pg_ctl) {
            return None;
        }
        if has_server_binaries(&dir) {
            return Some(dir);
        }
        let real = fs::canonicalize(&pg_ctl).ok()?;
        let real_dir = real.parent()?.to_path_buf();
        has_server_binaries(&real_dir).then_some(real_dir)
    })
}

/// The binaries for an existing cluster: PSYSTEM_PG_BIN, else the recorded folder, else the one
/// matching the data directory's major version, else discovery.
fn resolve_bin(state: Option<&ClusterState>, data_dir: &Path) -> Result<PathBuf> {
    if std::env::var_os(PG_BIN_ENV).is_none() {
        if let Some(recorded) = state.map(|s| &s.bin_dir) {
            if has_server_binaries(recorded) {
                return Ok(recorded.clone());
            }
        }
        if let Ok(major) = fs::read_to_string(data_dir.join("PG_VERSION")) {
            let bin = Path::new(DEBIAN_PG_ROOT).join(major.trim()).join("bin");
            if has_server_binaries(&bin) {
                return Ok(bin);
            }
        }
    }
    LocalCluster::server_binaries()
}

// ----- users and folders -------------------------------------------------------------------------

fn current_user_name() -> String {
    User::from_uid(Uid::effective())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "psystem".to_string())
}

fn postgres_user() -> Result<User> {
    User::from_name(POSTGRES_USER)
        .ok()
        .flatten()
        .ok_or(ClusterError::NoPostgresUser)
}

/// Who must run the server for this data directory: `None` (the current user) unless psystem
/// runs as root, then the directory's owner.
fn effective_run_as(data_dir: &Path) -> Result<Option<String>> {
    let meta = fs::metadata(data_dir).map_err(io_err(data_dir))?;
    let owner = Uid::from_raw(meta.uid());
    let owner_name = || {
        User::from_uid(owner)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| owner.to_string())
    };
    let me = Uid::effective();
    if me.is_root() {
        if owner.is_root() {
            return Err(ClusterError::DataDirOwner {
                data_dir: data_dir.to_path_buf(),
                owner: "root".to_string(),
            });
        }
        Ok(Some(owner_name()))
    } else if owner != me {
        Err(ClusterError::DataDirOwner {
            data_dir: data_dir.to_path_buf(),
            owner: owner_name(),
        })
    } else {
        Ok(None)
    }
}

/// Creates the layout's folders (and `state_dir`) and, as root, hands them to `run_as`.
fn prepare_root(layout: &Layout, state_dir: &Path) -> Result<()> {
    fs::create_dir_all(state_dir).map_err(io_err(state_dir))?;
    let owner = match &layout.run_as {
        Some(_) => {
            let user = postgres_user()?;
            Some((user.uid.as_raw(), user.gid.as_raw()))
        }
        None => None,
    };
    if layout.root != state_dir {
        // The root fallback: /var/lib/psystem (0755, root) / <hash> (0700, postgres).
        if let Some(parent) = layout.root.parent() {
            if !parent.exists() {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
                fs::set_permissions(parent, fs::Permissions::from_mode(0o755))
                    .map_err(io_err(parent))?;
            }
        }
        fs::create_dir_all(&layout.root).map_err(io_err(&layout.root))?;
        fs::set_permissions(&layout.root, fs::Permissions::from_mode(0o700))
            .map_err(io_err(&layout.root))?;
    }
    ensure_private_dir(&layout.socket_dir, None)?;
    if let Some((uid, gid)) = owner {
        chown_recursive(&layout.root, uid, gid)?;
    }
    Ok(())
}

/// Creates `dir` with mode 0700, owned by `run_as` (when root).
fn ensure_private_dir(dir: &Path, run_as: Option<&str>) -> Result<()> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    if let Some(name) = run_as {
        if Uid::effective().is_root() {
            let user = User::from_name(name)
                .ok()
                .flatten()
                .ok_or(ClusterError::NoPostgresUser)?;
            std::os::unix::fs::lchown(dir, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .map_err(io_err(dir))?;
        }
    }
    Ok(())
}

fn chown_recursive(path: &Path, uid: u32, gid: u32) -> Result<()> {
    let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io_err(path))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(io_err(path))? {
            let entry = entry.map_err(io_err(path))?;
            chown_recursive(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Canonicalises the longest existing prefix of `path` and appends the rest.
fn lenient_canonicalize(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut cur = path;
    loop {
        if let Ok(canon) = fs::canonicalize(cur) {
            let mut out = canon;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                cur = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Whether every existing ancestor of `path` is traversable by others (o+x).
fn ancestors_traversable(path: &Path) -> bool {
    path.ancestors()
        .skip(1)
        .filter_map(|dir| fs::metadata(dir).ok())
        .all(|meta| meta.permissions().mode() & 0o001 != 0)
}

/// A short, stable hash (FNV-1a 64, 12 hex digits) of a path.
fn short_hash(s: &OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in s.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")[..12].to_string()
}

fn is_initialized(data_dir: &Path) -> bool {
    data_dir.join("PG_VERSION").is_file()
}

// ----- ports, pid file, log, connections ---------------------------------------------------------

fn pick_free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_err("127.0.0.1:0"))?;
    let port = listener.local_addr().map_err(io_err("127.0.0.1:0"))?.port();
    drop(listener);
    Ok(port)
}

fn port_is_free(port: u16) -> bool {
    port != 0 && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// What `postmaster.pid` says: line 1 the pid, line 4 the port.
struct PidFile {
    pid: i64,
    port: Option<u16>,
}

fn read_pid_file(data_dir: &Path) -> Option<PidFile> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    let port = lines.nth(2).and_then(|l| l.trim().parse().ok());
    Some(PidFile { pid, port })
}

/// Whether `pid` is this data directory's live postmaster: `Some(false)` if the process is gone,
/// a zombie (a killed postmaster not yet reaped by its parent), another program, or a postgres
/// process working in another data directory (a reused pid); `None` if there is no `/proc`.
fn is_our_postmaster(pid: i64, data_dir: &Path) -> Option<bool> {
    if !Path::new("/proc/self").exists() {
        return None;
    }
    let proc_dir = PathBuf::from(format!("/proc/{}", pid.unsigned_abs()));
    let Ok(stat) = fs::read_to_string(proc_dir.join("stat")) else {
        return Some(false);
    };
    // `pid (comm) state …`; comm may hold spaces and parentheses, so split at the last `)`.
    let Some((head, rest)) = stat.rsplit_once(')') else {
        return Some(false);
    };
    let comm = head.split_once('(').map(|(_, c)| c).unwrap_or("");
    let state = rest.split_whitespace().next().unwrap_or("");
    if matches!(state, "Z" | "X" | "x") || !(comm == "postgres" || comm == "postmaster") {
        return Some(false);
    }
    // The postmaster works in its data directory; unreadable (another user's process) proves
    // nothing, so only a readable, different working directory counts as foreign.
    match (
        fs::read_link(proc_dir.join("cwd")),
        fs::canonicalize(data_dir),
    ) {
        (Ok(cwd), Ok(data)) => Some(cwd == data),
        _ => Some(true),
    }
}

/// Removes socket and socket-lock files (`.s.PGSQL.<port>[.lock]`) left in the private socket
/// directory by a server that was killed. Only called while the cluster is known to be down.
fn clear_stale_sockets(socket_dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(socket_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(socket_dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(socket_dir))?;
        if entry.file_name().to_string_lossy().starts_with(".s.PGSQL.") {
            let path = entry.path();
            debug!(path = %path.display(), "removing a stale socket file");
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(path)(e)),
            }
        }
    }
    Ok(())
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The last lines of the log written after `offset`.
fn read_log_tail(path: &Path, offset: u64) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let start = offset.min(len).max(len.saturating_sub(MAX_BYTES));
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let text = read().unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

fn connection_url(user: &str, port: u16, database: &str) -> String {
    let mut url =
        url::Url::parse(&format!("postgres://127.0.0.1:{port}/{database}")).expect("a valid URL");
    let _ = url.set_username(user);
    url.to_string()
}

async fn connect(state: &ClusterState, database: &str) -> Result<PgConnection, sqlx::Error> {
    PgConnectOptions::new()
        .host("127.0.0.1")
        .port(state.port)
        .username(&state.superuser)
        .database(database)
        .ssl_mode(PgSslMode::Disable)
        .application_name("psystem")
        .disable_statement_logging()
        .connect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        let root = tempfile::tempdir().unwrap();
        for version in ["9.6", "15", "10", "16"] {
            let bin = root.path().join(version).join("bin");
            fs::create_dir_all(&bin).unwrap();
            for name in ["initdb", "pg_ctl", "postgres"] {
                let path = bin.join(name);
                fs::write(&path, "#!/bin/sh\n").unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        // 17 has no binaries: skipped.
        fs::create_dir_all(root.path().join("17/bin")).unwrap();
        assert_eq!(
            newest_versioned_bin(root.path()),
            Some(root.path().join("16/bin"))
        );
    }

    #[test]
    fn quoting_and_urls() {
        assert_eq!(shell_quote(OsStr::new("/a/b")), "/a/b");
        assert_eq!(shell_quote(OsStr::new("a b'c")), "'a b'\\''c'");
        assert_eq!(shell_quote(OsStr::new("")), "''");
        assert_eq!(
            connection_url("alice", 5433, "psystem"),
            "postgres://alice@127.0.0.1:5433/psystem"
        );
        assert_eq!(short_hash(OsStr::new("/root/.psystem")).len(), 12);
        assert_eq!(
            short_hash(OsStr::new("/root/.psystem")),
            short_hash(OsStr::new("/root/.psystem"))
        );
    }

    #[test]
    fn lenient_canonicalize_keeps_missing_tail() {
        let dir = tempfile::tempdir().unwrap();
        let canon = fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            lenient_canonicalize(&dir.path().join("a/b")),
            canon.join("a/b")
        );
    }
}
