//! `status.yaml`: a human-readable mirror of every job's state and checkpoint.
//!
//! The database ledger (`psystem.loads`, `psystem.checkpoints`) is the truth; this file mirrors it after every
//! commit so that `psystem status` and the desktop app can show jobs without a database connection, and so that a
//! resume knows which plugin, entry and table a job was about. Format (documented in `docs/STATUS.md`):
//!
//! ```yaml
//! version: 1
//! jobs:
//!   GHOTopOSTGRES/NCDMORT3070:        # job key: <plugin>/<entry>
//!     plugin: GHOTopOSTGRES
//!     entry: NCDMORT3070
//!     source: gho_odata
//!     state: paused                   # queued | running | paused | completed | failed | cancelled
//!     load_id: 12                     # psystem.loads.id in the destination
//!     destination: postgres://postgres@127.0.0.1:5433/psystem   # never with a password
//!     table: public.ncdmort3070
//!     mode: merge
//!     checkpoint: {next_skip: 3000}   # where the next page starts (source-specific)
//!     next_page: 4                    # 1-based page number the checkpoint points at
//!     total_rows: 8000                # as announced by the source, when known
//!     pages: 3
//!     rows: 3000
//!     bytes: 1234567
//!     page_size: 1000
//!     source_url: https://ghoapi.azureedge.net/api
//!     started_at: 2026-11-22T10:00:00Z
//!     updated_at: 2026-11-22T10:02:13Z
//!     last_error: null
//!     pid: 4242                       # while running: the process running it
//!     options: {since: 2010, until: 2020}   # other options of the run that `psystem resume` applies again
//! ```
//!
//! Every write replaces the whole file atomically (temp file, fsync, rename) while holding an exclusive lock on
//! `status.yaml.lock`, and keeps the entries of other jobs, so that several psystem processes (the CLI and the
//! desktop app) can share it. A file that cannot be parsed is kept aside as `status.yaml.broken-<time>` and a new
//! one is started, so a damaged mirror never blocks a load.

use chrono::{DateTime, Utc};
use psystem_core::{Counters, Home, JobState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The current format version of status.yaml.
pub const STATUS_VERSION: u32 = 1;

/// The whole status.yaml file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StatusFile {
    /// Format version, [`STATUS_VERSION`].
    #[serde(default)]
    pub version: u32,
    /// Jobs by job key (`<plugin>/<entry>`).
    #[serde(default)]
    pub jobs: BTreeMap<String, JobStatus>,
}

/// One job's entry in status.yaml.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobStatus {
    /// Plugin name.
    pub plugin: String,
    /// ETL entry key.
    pub entry: String,
    /// Source kind (`gho_odata`, …).
    #[serde(default)]
    pub source: String,
    /// Job state.
    pub state: JobState,
    /// `psystem.loads.id` of the load in the destination.
    #[serde(default)]
    pub load_id: Option<i64>,
    /// Destination URL without its password.
    #[serde(default)]
    pub destination: String,
    /// Destination table, `schema.table`.
    #[serde(default)]
    pub table: String,
    /// Load mode.
    #[serde(default)]
    pub mode: String,
    /// Where the next page starts, as the source describes it (GHO: `{next_skip: N}`); null before the first page.
    #[serde(default)]
    pub checkpoint: Option<serde_json::Value>,
    /// 1-based number of the next page.
    #[serde(default)]
    pub next_page: u64,
    /// Rows the source announced in all, when known.
    #[serde(default)]
    pub total_rows: Option<u64>,
    /// Pages committed.
    #[serde(default)]
    pub pages: u64,
    /// Rows committed.
    #[serde(default)]
    pub rows: u64,
    /// Bytes received from the source.
    #[serde(default)]
    pub bytes: u64,
    /// Process id of the psystem process that last wrote this entry while running it. With `state: running` and
    /// no such process alive, the job was interrupted (killed, crashed) and `psystem resume` continues it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Rows per page the job was started with; a resume keeps it.
    #[serde(default)]
    pub page_size: Option<u64>,
    /// Base URL of the source (GHO: the OData API), so that a resume reads from the same place.
    #[serde(default)]
    pub source_url: Option<String>,
    /// When the load started.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// When this entry was last written.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    /// The last error, with its place (page, URL, row), when the job failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Release sources: the release being loaded (e.g. `25.03`), so that a resume loads the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// The other options of `psystem run` that shape the load (`--since`, `--unit-size`, …), so that
    /// `psystem resume` applies them again. Never holds a secret.
    #[serde(default, skip_serializing_if = "RunOptions::is_empty")]
    pub options: RunOptions,
}

/// The options a job was started with, beyond those with fields of their own in [`JobStatus`] (mode, release,
/// source URL, page size): what `psystem resume` must apply again for the load to end as a clean load with the
/// same options would. Absent options keep their defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunOptions {
    /// GHO: the first year (`TimeDim`) loaded; files: a file last modified before this year is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// GHO: the last year (`TimeDim`) loaded; files: a file last modified after this year is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// Release jobs: files (Open Targets) or work units (UniProt) worked on at the same time (`--workers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// UniProt: the target size of a work unit in decompressed bytes (`--unit-size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_bytes: Option<u64>,
    /// UniProt: malformed entries are skipped and listed instead of failing (`--skip-bad-entries`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_bad_entries: bool,
    /// Release jobs: a release without a checksum manifest may load, unverified (`--allow-unverified`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unverified: bool,
    /// Release jobs: incompatible column type changes are applied with a cast (`--allow-casts`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_casts: bool,
    /// Release jobs: seconds a work unit may go without a heartbeat before it is taken over
    /// (`--heartbeat-timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout_secs: Option<f64>,
}

impl RunOptions {
    /// True when every option has its default (nothing is written to status.yaml then).
    pub fn is_empty(&self) -> bool {
        *self == RunOptions::default()
    }
}

impl JobStatus {
    /// True when the entry says `running` but the process that ran it is gone (killed or crashed): the job waits
    /// for `psystem resume`. Only checked on Linux (`/proc`); elsewhere always false.
    pub fn is_interrupted(&self) -> bool {
        self.state == JobState::Running
            && self.pid.is_some_and(|pid| {
                cfg!(target_os = "linux") && !Path::new(&format!("/proc/{pid}")).exists()
            })
    }

    /// The counters of this entry.
    pub fn counters(&self) -> Counters {
        Counters {
            pages: self.pages,
            rows: self.rows,
            bytes: self.bytes,
        }
    }
}

/// status.yaml could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct StatusError {
    /// The file.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// Reads and writes `$PSYSTEM_HOME/status.yaml`.
#[derive(Debug, Clone)]
pub struct StatusStore {
    path: PathBuf,
}

impl StatusStore {
    /// The store of a psystem home.
    pub fn new(home: &Home) -> StatusStore {
        StatusStore {
            path: home.status_file(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file; a missing or empty file gives no jobs. A file that does not parse is reported as an error
    /// here (readers should show it) — writers set it aside instead, see [`StatusStore::update`].
    ///
    /// # Errors
    /// [`StatusError`] for I/O errors and parse errors (as `InvalidData`, with line and column).
    pub fn read(&self) -> Result<StatusFile, StatusError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) if text.trim().is_empty() => Ok(StatusFile::default()),
            Ok(text) => serde_yaml_ng::from_str(&text)
                .map_err(|e| self.err(std::io::Error::new(std::io::ErrorKind::InvalidData, e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StatusFile::default()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// One job's entry, if any.
    ///
    /// # Errors
    /// As [`StatusStore::read`].
    pub fn job(&self, key: &str) -> Result<Option<JobStatus>, StatusError> {
        Ok(self.read()?.jobs.remove(key))
    }

    /// Read-modify-write under an exclusive lock: `f` changes the file's content, which is then written atomically.
    /// Entries `f` does not touch (other plugins' jobs) are kept.
    ///
    /// # Errors
    /// [`StatusError`] for I/O errors; the old file is then unchanged.
    pub fn update<R>(&self, f: impl FnOnce(&mut StatusFile) -> R) -> Result<R, StatusError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.err(e))?;
        }
        let lock_path = self.path.with_extension("yaml.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.err(e))?;
        lock.lock().map_err(|e| self.err(e))?;
        let mut file = match self.read() {
            Ok(f) => f,
            Err(e) if e.source.kind() == std::io::ErrorKind::InvalidData => {
                let aside = self.path.with_extension(format!(
                    "yaml.broken-{}",
                    Utc::now().format("%Y%m%dT%H%M%S")
                ));
                tracing::warn!(path = %self.path.display(), kept_as = %aside.display(), error = %e.source,
                    "status.yaml could not be parsed; it was set aside and a new one started (the database ledger still holds every checkpoint).");
                std::fs::rename(&self.path, &aside).map_err(|e| self.err(e))?;
                StatusFile::default()
            }
            Err(e) => return Err(e),
        };
        let out = f(&mut file);
        file.version = STATUS_VERSION;
        let text = format!(
            "# psystem job status, rewritten after every checkpoint. The database ledger is the truth;\n# see docs/STATUS.md for the format.\n{}",
            serde_yaml_ng::to_string(&file).map_err(|e| self.err(std::io::Error::other(e)))?
        );
        psystem_core::atomic::write_atomic(&self.path, text.as_bytes()).map_err(|e| self.err(e))?;
        drop(lock);
        Ok(out)
    }

    /// Writes one job's entry, keeping the others.
    ///
    /// # Errors
    /// As [`StatusStore::update`].
    pub fn put(&self, key: &str, status: JobStatus) -> Result<(), StatusError> {
        self.update(|f| {
            f.jobs.insert(key.to_string(), status);
        })
    }

    fn err(&self, source: std::io::Error) -> StatusError {
        StatusError {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(plugin: &str, rows: u64) -> JobStatus {
        JobStatus {
            plugin: plugin.into(),
            entry: "e".into(),
            source: "gho_odata".into(),
            state: JobState::Paused,
            load_id: Some(3),
            destination: "postgres://u@h/db".into(),
            table: "public.t".into(),
            mode: "merge".into(),
            checkpoint: Some(serde_json::json!({"next_skip": rows})),
            next_page: 2,
            total_rows: Some(165),
            pages: 1,
            rows,
            bytes: 10,
            pid: None,
            page_size: Some(50),
            source_url: None,
            started_at: Some(Utc::now()),
            updated_at: Some(Utc::now()),
            last_error: None,
            release: None,
            options: RunOptions {
                since: Some(2010),
                ..RunOptions::default()
            },
        }
    }

    #[test]
    fn keeps_other_jobs_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = StatusStore::new(&Home::at(dir.path()));
        store.put("a/e", job("a", 50)).unwrap();
        store.put("b/e", job("b", 7)).unwrap();
        store.put("a/e", job("a", 100)).unwrap();
        let f = store.read().unwrap();
        assert_eq!(f.version, STATUS_VERSION);
        assert_eq!(f.jobs.len(), 2);
        assert_eq!(f.jobs["a/e"].rows, 100);
        assert_eq!(f.jobs["b/e"], job("b", 7).clone_with_times(&f.jobs["b/e"]));
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(text.contains("state: paused"), "{text}");
        assert!(text.contains("next_skip: 100"), "{text}");
        assert!(text.contains("since: 2010"), "{text}");
        assert!(
            !text.contains("skip_bad_entries"),
            "defaults are not written: {text}"
        );
    }

    #[test]
    fn broken_file_is_set_aside_by_writers() {
        let dir = tempfile::tempdir().unwrap();
        let store = StatusStore::new(&Home::at(dir.path()));
        std::fs::write(store.path(), "jobs: [this is: not: valid").unwrap();
        assert!(store.read().is_err());
        store.put("a/e", job("a", 1)).unwrap();
        assert_eq!(store.read().unwrap().jobs.len(), 1);
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("status.yaml.broken-")
            });
        assert!(aside);
    }

    impl JobStatus {
        fn clone_with_times(mut self, other: &JobStatus) -> JobStatus {
            self.started_at = other.started_at;
            self.updated_at = other.updated_at;
            self
        }
    }
}
