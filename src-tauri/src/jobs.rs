//! Jobs of the desktop app: starting GHO/files jobs ([`psystem_api::Api::start`]) and release jobs
//! ([`psystem_jobs::release::run_release`] on a thread of its own), pausing, resuming and cancelling them, and
//! turning their events into [`JobCard`]s pushed to the UI at most [`PROGRESS_PER_SECOND`] times a second per job.
//!
//! State lives where the CLI keeps it: status.yaml (written by the job runner, atomically) and the ledger in the
//! destination database (each job holds a Postgres advisory lock on its key while it runs, so the CLI and the app
//! never run the same job at once: the second one fails with `job_busy`).

use crate::error::{IpcError, IpcResult};
use chrono::{DateTime, Utc};
use psystem_api::releases::ReleaseRunRequest;
use psystem_api::runs::{ResumeOptions, ResumePlan, RunRequest};
use psystem_api::{Api, ApiError};
use psystem_core::{JobState, LoadMode};
use psystem_jobs::release::{ReleaseEvent, SOURCE_KIND as RELEASE_SOURCE};
use psystem_jobs::{Control, JobEvent, JobStatus};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Most `job-progress` events per second per job.
pub const PROGRESS_PER_SECOND: u32 = 4;
/// Log lines kept in memory per job.
const LOG_LINES: usize = 500;

/// Where job events go: the Tauri app (`emit`), or a test recorder.
pub trait EventSink: Send + Sync + 'static {
    /// Sends event `name` with a JSON payload to the UI.
    fn emit(&self, name: &str, payload: serde_json::Value);
}

/// One job as the Jobs screen shows it (`jobs_list`, the `job-progress` event). Serialised in camelCase.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobCard {
    /// `<plugin>/<entry>`.
    pub key: String,
    /// Plugin name.
    pub plugin: String,
    /// ETL entry key.
    pub entry: String,
    /// Source kind: `gho_odata`, `files`, `release`.
    pub source: String,
    /// `queued`, `running`, `paused`, `completed`, `failed`, `cancelled`.
    pub state: String,
    /// Release plugins: the release loaded.
    pub release: Option<String>,
    /// The destination URL without password.
    pub destination: String,
    /// Destination table, `schema.table`.
    pub table: String,
    /// Rows committed.
    pub rows: u64,
    /// Bytes read (GHO: response bodies; releases: downloaded or hashed).
    pub bytes: u64,
    /// Pages committed.
    pub pages: u64,
    /// Rows in all, when the source said.
    pub total_rows: Option<u64>,
    /// Release jobs: files loaded.
    pub units_done: Option<u64>,
    /// Release jobs: files in all.
    pub units: Option<u64>,
    /// Rows per second since this app started the job.
    pub rows_per_second: Option<f64>,
    /// Seconds left at that rate, when the total is known.
    pub seconds_left: Option<f64>,
    /// The last error (failed jobs) or why an interrupted job stopped.
    pub last_error: Option<String>,
    /// When status.yaml or an event last changed it.
    pub updated_at: Option<DateTime<Utc>>,
    /// True when this app runs it now (Pause and Cancel apply here).
    pub running_here: bool,
    /// True when Resume applies (paused, failed or interrupted, and not running anywhere).
    pub resumable: bool,
}

impl JobCard {
    /// The card of a status.yaml entry. A job whose process is gone (`running` with a dead pid) is `failed`, with
    /// `lastError` saying it was interrupted.
    pub fn from_status(key: &str, s: &JobStatus) -> JobCard {
        let interrupted = s.is_interrupted();
        let state = if interrupted {
            "failed".to_string()
        } else {
            s.state.as_str().to_string()
        };
        let last_error = if interrupted {
            Some(format!(
                "interrupted: the process that ran it (pid {}) stopped; Resume continues from the last checkpoint",
                s.pid.unwrap_or_default()
            ))
        } else {
            s.last_error.clone()
        };
        JobCard {
            key: key.to_string(),
            plugin: s.plugin.clone(),
            entry: s.entry.clone(),
            source: s.source.clone(),
            resumable: interrupted || matches!(s.state, JobState::Paused | JobState::Failed),
            state,
            release: s.release.clone(),
            destination: psystem_core::redact::redact_url(&s.destination),
            table: s.table.clone(),
            rows: s.rows,
            bytes: s.bytes,
            pages: s.pages,
            total_rows: s.total_rows,
            units_done: None,
            units: None,
            rows_per_second: None,
            seconds_left: None,
            last_error,
            updated_at: s.updated_at,
            running_here: false,
        }
    }
}

impl JobCard {
    /// A card with only a key (plugin and entry from it), state `failed`: a job that ended before anything knew it.
    fn empty(key: &str) -> JobCard {
        let (plugin, entry) = key.split_once('/').unwrap_or((key, ""));
        JobCard {
            key: key.to_string(),
            plugin: plugin.to_string(),
            entry: entry.to_string(),
            source: String::new(),
            state: "failed".into(),
            release: None,
            destination: String::new(),
            table: String::new(),
            rows: 0,
            bytes: 0,
            pages: 0,
            total_rows: None,
            units_done: None,
            units: None,
            rows_per_second: None,
            seconds_left: None,
            last_error: None,
            updated_at: Some(Utc::now()),
            running_here: false,
            resumable: false,
        }
    }
}

/// What `job_start` asks for.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartRequest {
    /// Plugin name.
    pub plugin: String,
    /// ETL entry; default the plugin's `run` entry.
    pub entry: Option<String>,
    /// Destination URL; default: the active saved database unless the plugin names its own destination.
    pub db: Option<String>,
    /// Release plugins: the release (default: latest).
    pub release: Option<String>,
    /// Load mode override (`replace`, `merge`, `append`; release plugins: `replace` or `merge`).
    pub mode: Option<String>,
    /// Source URL override (a mirror or a local test server).
    pub source_url: Option<String>,
    /// GHO: rows per request override.
    pub page_size: Option<u64>,
    /// Start over instead of resuming an unfinished load.
    #[serde(default)]
    pub restart: bool,
    /// Load even what a completed load already holds.
    #[serde(default)]
    pub force: bool,
}

struct Live {
    card: JobCard,
    control: watch::Sender<Control>,
    started: Instant,
    rows_at_start: u64,
    last_emit: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    live: HashMap<String, Live>,
    logs: HashMap<String, VecDeque<String>>,
}

/// The jobs this app runs, and the view of every job in status.yaml.
#[derive(Clone)]
pub struct Jobs {
    api: Api,
    sink: Arc<dyn EventSink>,
    inner: Arc<Mutex<Inner>>,
}

fn busy(key: &str) -> IpcError {
    IpcError::new(
        "job_running",
        format!("job {key} is already running in this app"),
    )
}

/// `job-finished` payload.
#[derive(Debug, Clone, Serialize)]
struct Finished<'a> {
    key: &'a str,
    state: &'a str,
    message: Option<String>,
}

impl Jobs {
    /// Jobs over `api`, reporting to `sink`.
    pub fn new(api: Api, sink: Arc<dyn EventSink>) -> Jobs {
        Jobs {
            api,
            sink,
            inner: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every job: status.yaml's entries, with the live state of the ones this app runs, sorted by key.
    ///
    /// # Errors
    /// `status_file` when status.yaml cannot be read.
    pub fn list(&self) -> IpcResult<Vec<JobCard>> {
        let mut cards: HashMap<String, JobCard> = self
            .api
            .status()?
            .iter()
            .map(|(k, s)| (k.clone(), JobCard::from_status(k, s)))
            .collect();
        for (k, live) in &self.lock().live {
            cards.insert(k.clone(), live.card.clone());
        }
        let mut v: Vec<JobCard> = cards.into_values().collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(v)
    }

    /// Keys of the jobs this app runs now.
    pub fn running(&self) -> Vec<String> {
        self.lock().live.keys().cloned().collect()
    }

    /// The last `lines` log lines of job `key`: this session's events, else the job's log file
    /// (`$PSYSTEM_HOME/logs/desktop/<key with / as __>.log`).
    pub fn log(&self, key: &str, lines: usize) -> Vec<String> {
        let from_memory: Vec<String> = self
            .lock()
            .logs
            .get(key)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default();
        let all = if from_memory.is_empty() {
            std::fs::read_to_string(self.log_path(key))
                .map(|t| t.lines().map(str::to_string).collect())
                .unwrap_or_default()
        } else {
            from_memory
        };
        let skip = all.len().saturating_sub(lines);
        all.into_iter().skip(skip).collect()
    }

    fn log_path(&self, key: &str) -> std::path::PathBuf {
        self.api
            .home()
            .logs_dir()
            .join("desktop")
            .join(format!("{}.log", key.replace('/', "__")))
    }

    fn log_line(&self, key: &str, line: String) {
        let line = format!("{} {line}", Utc::now().format("%Y-%m-%d %H:%M:%S"));
        tracing::info!(job = key, "{line}");
        let path = self.log_path(key);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            let _ = writeln!(f, "{line}");
        }
        let mut inner = self.lock();
        let log = inner.logs.entry(key.to_string()).or_default();
        log.push_back(line);
        while log.len() > LOG_LINES {
            log.pop_front();
        }
    }

    /// The destination URL new jobs of `plugin`/`entry` get: `db` if given; else none (the API's order: the
    /// plugin's own URL, `DATABASE_URL`, the local cluster) when the plugin's destination URL resolves; else `active`.
    pub fn default_db(
        &self,
        plugin: &str,
        entry: Option<&str>,
        db: Option<String>,
        active: Option<String>,
    ) -> Option<String> {
        if db.as_deref().is_some_and(|d| !d.is_empty()) {
            return db;
        }
        let catalog = self.api.catalog();
        let manifest_url = catalog.get(plugin).ok().and_then(|p| {
            let (_, e) = p.entry(entry).ok()?;
            e.destination
                .as_ref()
                .and_then(|d| d.postgres.as_ref())
                .and_then(|pg| pg.url.as_ref())
                .and_then(|u| u.resolve())
        });
        if manifest_url.is_some() {
            None
        } else {
            active
        }
    }

    /// Starts a job: a GHO or files entry through [`Api::plan`] and [`Api::start`], a release entry through
    /// [`Api::plan_release`] and `run_release`. Returns the job key.
    ///
    /// # Errors
    /// The API's plan errors (`plugin_not_found`, `plugin_disabled`, `entry_not_found`, `invalid_config`, …),
    /// `job_running` when this app already runs it, `invalid_argument` for an unknown mode.
    pub async fn start(&self, req: StartRequest) -> IpcResult<String> {
        let kind = self
            .api
            .catalog()
            .get(&req.plugin)
            .map_err(ApiError::from)?
            .source_kind();
        if kind == psystem_core::plugin::SourceKind::Release {
            return self.start_release(req).await;
        }
        if req.mode.is_some() {
            return Err(IpcError::new(
                "invalid_argument",
                "mode applies to release plugins; set a GHO or files entry's mode in its plugin file",
            ));
        }
        let run = RunRequest {
            plugin: req.plugin.clone(),
            entry: req.entry.clone(),
            db_url: req.db.clone(),
            source_url: req.source_url.clone(),
            page_size: req.page_size,
            restart: req.restart,
            force: req.force,
            ..RunRequest::default()
        };
        self.start_planned(run).await
    }

    async fn start_planned(&self, run: RunRequest) -> IpcResult<String> {
        let planned = self.api.plan(&run).await?;
        let key = planned.spec.key();
        for note in &planned.notes {
            self.log_line(&key, format!("note: {note}"));
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        {
            let mut inner = self.lock();
            if inner.live.contains_key(&key) {
                return Err(busy(&key));
            }
            let handle = self.api.start(&planned, tx);
            let card = JobCard {
                key: key.clone(),
                plugin: planned.spec.plugin.clone(),
                entry: planned.spec.entry.clone(),
                source: planned.spec.source.kind().as_str().to_string(),
                state: "queued".into(),
                release: None,
                destination: planned.spec.redacted_url(),
                table: planned.spec.table.to_string(),
                rows: 0,
                bytes: 0,
                pages: 0,
                total_rows: None,
                units_done: None,
                units: None,
                rows_per_second: None,
                seconds_left: None,
                last_error: None,
                updated_at: Some(Utc::now()),
                running_here: true,
                resumable: false,
            };
            inner.live.insert(
                key.clone(),
                Live {
                    card,
                    control: handle.control(),
                    started: Instant::now(),
                    rows_at_start: 0,
                    last_emit: None,
                },
            );
            let jobs = self.clone();
            let k = key.clone();
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    let done = matches!(event, JobEvent::Finished { .. });
                    jobs.on_job_event(&k, event);
                    if done {
                        break;
                    }
                }
                let result = handle.wait().await;
                let (state, message) = match result {
                    Ok(o) => (o.state.as_str().to_string(), None),
                    Err(e) => {
                        let e = IpcError::from(ApiError::from(e));
                        ("failed".to_string(), Some(e.message))
                    }
                };
                jobs.finish(&k, &state, message);
            });
        }
        self.log_line(
            &key,
            format!("started into {}", planned.spec.redacted_url()),
        );
        self.emit_card(&key, true);
        Ok(key)
    }

    async fn start_release(&self, req: StartRequest) -> IpcResult<String> {
        let mode = match req.mode.as_deref() {
            None | Some("") => None,
            Some(m) => Some(
                LoadMode::parse(m)
                    .filter(|m| matches!(m, LoadMode::Replace | LoadMode::Merge))
                    .ok_or_else(|| {
                        IpcError::new(
                            "invalid_argument",
                            format!("release loads take mode replace or merge, not `{m}`"),
                        )
                    })?,
            ),
        };
        self.start_release_request(ReleaseRunRequest {
            plugin: req.plugin.clone(),
            entries: req.entry.clone().into_iter().collect(),
            release: req.release.clone(),
            source_url: req.source_url.clone(),
            db_url: req.db.clone(),
            mode,
            force: req.force,
            restart: req.restart,
            ..ReleaseRunRequest::default()
        })
        .await
    }

    /// Starts the release job of `request` (one entry) on a thread of its own. Returns the job key.
    async fn start_release_request(&self, request: ReleaseRunRequest) -> IpcResult<String> {
        let planned = self.api.plan_release(&request).await?;
        let spec = planned.spec;
        let dataset =
            spec.datasets.first().cloned().ok_or_else(|| {
                IpcError::new("invalid_config", "the release plan has no dataset")
            })?;
        let key = psystem_jobs::job_key(&spec.plugin, &dataset.entry);
        for note in &planned.notes {
            self.log_line(&key, format!("note: {note}"));
        }
        let (control, control_rx) = watch::channel(Control::Run);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = oneshot::channel();
        {
            let mut inner = self.lock();
            if inner.live.contains_key(&key) {
                return Err(busy(&key));
            }
            let card = JobCard {
                key: key.clone(),
                plugin: spec.plugin.clone(),
                entry: dataset.entry.clone(),
                source: RELEASE_SOURCE.to_string(),
                state: "queued".into(),
                release: spec.release.clone(),
                destination: spec.redacted_url(),
                table: dataset.table.to_string(),
                rows: 0,
                bytes: 0,
                pages: 0,
                total_rows: None,
                units_done: Some(0),
                units: None,
                rows_per_second: None,
                seconds_left: None,
                last_error: None,
                updated_at: Some(Utc::now()),
                running_here: true,
                resumable: false,
            };
            inner.live.insert(
                key.clone(),
                Live {
                    card,
                    control,
                    started: Instant::now(),
                    rows_at_start: 0,
                    last_emit: None,
                },
            );
        }
        let status = self.api.status_store();
        let redacted = spec.redacted_url();
        // run_release's future is not Send: it runs on a thread of its own with a current-thread runtime.
        let spawned = std::thread::Builder::new()
            .name(format!("release {key}"))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| psystem_jobs::JobError::Setup(format!("runtime: {e}")))
                    .and_then(|rt| {
                        rt.block_on(psystem_jobs::release::run_release(
                            spec, status, tx, control_rx,
                        ))
                    });
                let _ = done_tx.send(result);
            });
        if let Err(e) = spawned {
            self.lock().live.remove(&key);
            return Err(IpcError::new("io", format!("cannot start a thread: {e}")));
        }
        let jobs = self.clone();
        let k = key.clone();
        tokio::spawn(async move {
            let mut last_state: Option<(String, Option<String>)> = None;
            while let Some(event) = rx.recv().await {
                if let ReleaseEvent::DatasetFinished { outcome } = &event {
                    last_state = Some((outcome.state.as_str().to_string(), outcome.error.clone()));
                }
                jobs.on_release_event(&k, event);
            }
            let (state, message) = match done_rx.await {
                Ok(Ok(outcome)) => match outcome.datasets.first() {
                    Some(d) => (d.state.as_str().to_string(), d.error.clone()),
                    None => last_state.unwrap_or(("completed".into(), None)),
                },
                Ok(Err(e)) => (
                    "failed".to_string(),
                    Some(IpcError::from(ApiError::from(e)).message),
                ),
                Err(_) => (
                    "failed".to_string(),
                    Some("the release job ended abnormally".into()),
                ),
            };
            jobs.finish(&k, &state, message);
        });
        self.log_line(&key, format!("release job started into {redacted}"));
        self.emit_card(&key, true);
        Ok(key)
    }

    fn update(&self, key: &str, f: impl FnOnce(&mut Live)) {
        if let Some(live) = self.lock().live.get_mut(key) {
            f(live);
            live.card.updated_at = Some(Utc::now());
            let elapsed = live.started.elapsed().as_secs_f64();
            let done = live.card.rows.saturating_sub(live.rows_at_start);
            if elapsed >= 0.5 && done > 0 {
                let rate = done as f64 / elapsed;
                live.card.rows_per_second = Some(rate);
                live.card.seconds_left = live
                    .card
                    .total_rows
                    .map(|t| t.saturating_sub(live.card.rows) as f64 / rate);
            }
        }
    }

    fn on_job_event(&self, key: &str, event: JobEvent) {
        let mut force = false;
        match event {
            JobEvent::SourceReport { lines, .. } => {
                for l in lines {
                    self.log_line(key, l);
                }
            }
            JobEvent::Started {
                load_id,
                resumed,
                counters,
                next_page,
                total_rows,
                ..
            } => {
                self.log_line(
                    key,
                    format!(
                        "load {load_id} {} at page {next_page} ({} rows committed before)",
                        if resumed { "resumed" } else { "opened" },
                        counters.rows
                    ),
                );
                force = true;
                self.update(key, |l| {
                    l.card.state = "running".into();
                    l.card.rows = counters.rows;
                    l.card.bytes = counters.bytes;
                    l.card.pages = counters.pages;
                    l.card.total_rows = total_rows;
                    l.rows_at_start = counters.rows;
                    l.started = Instant::now();
                });
            }
            JobEvent::Reconciled { message, .. } => self.log_line(key, message),
            JobEvent::UnknownFields { fields, .. } => self.log_line(
                key,
                format!(
                    "fields not in the schema (not loaded): {}",
                    fields.join(", ")
                ),
            ),
            JobEvent::PageCommitted {
                page_rows,
                counters,
                total_rows,
                ..
            } => {
                self.log_line(
                    key,
                    format!(
                        "page {} committed: {page_rows} rows ({} in all)",
                        counters.pages, counters.rows
                    ),
                );
                self.update(key, |l| {
                    l.card.state = "running".into();
                    l.card.rows = counters.rows;
                    l.card.bytes = counters.bytes;
                    l.card.pages = counters.pages;
                    if total_rows.is_some() {
                        l.card.total_rows = total_rows;
                    }
                });
            }
            JobEvent::Finished {
                state,
                counters,
                error,
                ..
            } => {
                self.update(key, |l| {
                    l.card.rows = counters.rows;
                    l.card.bytes = counters.bytes;
                    l.card.pages = counters.pages;
                    l.card.last_error = error.clone();
                    l.card.state = state.as_str().into();
                });
                return;
            }
        }
        self.emit_card(key, force);
    }

    fn on_release_event(&self, key: &str, event: ReleaseEvent) {
        let mut force = false;
        match event {
            ReleaseEvent::Resolved {
                release, manifest, ..
            } => {
                self.log_line(
                    key,
                    format!(
                        "release {release}; manifest {}",
                        manifest.as_deref().unwrap_or("none")
                    ),
                );
                force = true;
                self.update(key, |l| {
                    l.card.release = Some(release.clone());
                    l.card.state = "running".into();
                });
            }
            ReleaseEvent::DatasetStarted { files, bytes, .. } => {
                self.log_line(
                    key,
                    format!("dataset started: {files} files, {bytes} bytes"),
                );
                force = true;
                self.update(key, |l| {
                    l.card.state = "running".into();
                    l.card.units = Some(files as u64);
                });
            }
            ReleaseEvent::Download { done, .. } => self.update(key, |l| l.card.bytes = done),
            ReleaseEvent::FileChecked { path, status, .. } => {
                self.log_line(key, format!("{status} {path}"));
            }
            ReleaseEvent::UnitDone {
                path,
                rows,
                rows_done,
                units_done,
                units,
                ..
            } => {
                self.log_line(key, format!("loaded {path}: {rows} rows"));
                self.update(key, |l| {
                    l.card.rows = rows_done;
                    l.card.units_done = Some(units_done);
                    l.card.units = Some(units);
                    l.card.pages = units_done;
                });
            }
            ReleaseEvent::DatasetFinished { outcome } => {
                self.log_line(
                    key,
                    format!(
                        "dataset {} {}{}",
                        outcome.dataset,
                        outcome.state.as_str(),
                        outcome
                            .error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ),
                );
                return;
            }
        }
        self.emit_card(key, force);
    }

    /// Sends the live card of `key` as `job-progress`, unless one went out less than 1/4 s ago (`force` sends
    /// anyway: state changes).
    fn emit_card(&self, key: &str, force: bool) {
        let card = {
            let mut inner = self.lock();
            let Some(live) = inner.live.get_mut(key) else {
                return;
            };
            let min = Duration::from_millis(1000 / u64::from(PROGRESS_PER_SECOND));
            if !force && live.last_emit.is_some_and(|t| t.elapsed() < min) {
                return;
            }
            live.last_emit = Some(Instant::now());
            live.card.clone()
        };
        self.sink.emit(
            "job-progress",
            serde_json::to_value(&card).unwrap_or_default(),
        );
    }

    fn finish(&self, key: &str, state: &str, message: Option<String>) {
        let live = self.lock().live.remove(key);
        // The final card: status.yaml's entry (the runner wrote it last), else what the events said.
        let mut card = self
            .api
            .status_store()
            .job(key)
            .ok()
            .flatten()
            .map(|s| JobCard::from_status(key, &s))
            .or(live.map(|l| l.card))
            .unwrap_or_else(|| JobCard::empty(key));
        if state == "failed" && card.state != "failed" {
            // Failed before status.yaml had the job (e.g. busy in another process): keep status.yaml's view, and
            // say what happened in the card.
            card.last_error = message.clone();
        }
        card.running_here = false;
        self.log_line(
            key,
            format!(
                "finished: {state}{}",
                message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
        );
        self.sink.emit(
            "job-progress",
            serde_json::to_value(&card).unwrap_or_default(),
        );
        self.sink.emit(
            "job-finished",
            serde_json::to_value(Finished {
                key,
                state,
                message,
            })
            .unwrap_or_default(),
        );
    }

    /// Asks job `key` to pause at its next safe point (page or file boundary). The card says `paused` when it has.
    ///
    /// # Errors
    /// `job_not_found` when this app does not run it.
    pub fn pause(&self, key: &str) -> IpcResult<()> {
        self.control(key, Control::Pause)
    }

    fn control(&self, key: &str, c: Control) -> IpcResult<()> {
        let inner = self.lock();
        let live = inner.live.get(key).ok_or_else(|| {
            IpcError::new(
                "job_not_found",
                format!("job {key} is not running in this app"),
            )
        })?;
        let _ = live.control.send(c);
        Ok(())
    }

    /// The destination for resuming or cancelling a job of status.yaml: status.yaml's when it holds no password,
    /// else `active` when it is the same database, else none (the API's usual order).
    fn recorded_db(status: &JobStatus, active: Option<String>) -> Option<String> {
        let recorded = status.destination.clone();
        if !recorded.is_empty() && !recorded.contains("***") {
            return Some(recorded);
        }
        active.filter(|a| psystem_core::redact::redact_url(a) == recorded)
    }

    fn status_of(&self, key: &str) -> IpcResult<(String, JobStatus)> {
        self.api
            .status()?
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .ok_or_else(|| {
                IpcError::new(
                    "job_not_found",
                    format!(
                        "no job `{key}` in {}",
                        self.api.status_store().path().display()
                    ),
                )
            })
    }

    /// Resumes job `key` of status.yaml from its checkpoint, as `psystem resume KEY` does.
    ///
    /// # Errors
    /// `job_not_found`, `job_running`, the API's plan errors.
    pub async fn resume(&self, key: &str, active: Option<String>) -> IpcResult<String> {
        let (key, status) = self.status_of(key)?;
        if self.lock().live.contains_key(&key) {
            return Err(busy(&key));
        }
        let db = Self::recorded_db(&status, active);
        // The API applies every option the job was started with (release, mode, source, workers, unit size, …).
        let options = ResumeOptions {
            db_url: db,
            ..ResumeOptions::default()
        };
        match self.api.resume_plan(Some(&key), &options)? {
            ResumePlan::Release(req) => self.start_release_request(req).await,
            ResumePlan::Run(req) => self.start_planned(req).await,
        }
    }

    /// Cancels job `key`: a job this app runs stops at its next safe point and is marked cancelled; a paused or
    /// failed job is marked cancelled in the ledger and status.yaml (as `psystem cancel KEY`).
    ///
    /// # Errors
    /// `job_not_found`, `job_busy` (another process runs it), `destination`.
    pub async fn cancel(&self, key: &str, active: Option<String>) -> IpcResult<()> {
        if self.control(key, Control::Cancel).is_ok() {
            return Ok(());
        }
        let (key, status) = self.status_of(key)?;
        let db = Self::recorded_db(&status, active);
        // One API call for every kind of job (GHO, files, Open Targets, UniProt), as `psystem cancel`.
        self.api.cancel(Some(&key), db).await?;
        self.log_line(&key, "cancelled".into());
        if let Ok((_, s)) = self.status_of(&key) {
            self.sink.emit(
                "job-progress",
                serde_json::to_value(JobCard::from_status(&key, &s)).unwrap_or_default(),
            );
        }
        self.sink.emit(
            "job-finished",
            serde_json::to_value(Finished {
                key: &key,
                state: "cancelled",
                message: None,
            })
            .unwrap_or_default(),
        );
        Ok(())
    }

    /// Pauses every job this app runs and waits (at most `timeout`) until they have stopped. Returns the keys still
    /// running at the deadline.
    pub async fn pause_all_and_wait(&self, timeout: Duration) -> Vec<String> {
        for key in self.running() {
            let _ = self.pause(&key);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = self.running();
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
