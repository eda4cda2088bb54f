//! Running one job: pages from a source, through the column transform, into the destination, one checkpoint per
//! page.
//!
//! The loop, per page: fetch the page at the checkpoint → apply `transform.columns` → in one database transaction
//! write the rows and the next checkpoint → mirror the new state into status.yaml → tell the caller. A kill at any
//! instant leaves the database at the last committed page, and the next run continues from exactly there, so the
//! destination ends up with the rows of an uninterrupted load: no duplicates, nothing missing.
//!
//! A job runs on its own tokio task ([`spawn`]); its [`JobHandle`] pauses or cancels it. Pause and cancel take
//! effect at the next safe point: after a commit, or by abandoning a page that is still being fetched (nothing of
//! it is committed).

use crate::source::{OpenSource, SourceSpec};
use crate::status::{JobStatus, StatusStore};
use chrono::Utc;
use psystem_core::transform::ColumnMap;
use psystem_core::{Counters, JobState, LoadMode, TableRef};
use psystem_postgres::{Destination, LoadHandle, LoadSpec};
use serde::Serialize;
use std::collections::BTreeSet;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// Everything needed to run one job. Built by the API layer from a plugin manifest and the command line.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Plugin name.
    pub plugin: String,
    /// ETL entry key.
    pub entry: String,
    /// What to read.
    pub source: SourceSpec,
    /// `transform.columns`.
    pub columns: ColumnMap,
    /// Destination connection URL (may hold a password: never logged or written; see [`JobSpec::redacted_url`]).
    pub destination_url: String,
    /// Destination table.
    pub table: TableRef,
    /// Load mode.
    pub mode: LoadMode,
    /// Primary key columns (destination names); required by `merge`.
    pub primary_key: Vec<String>,
    /// Start over instead of resuming an unfinished load of the same job.
    pub restart: bool,
    /// Load even when a completed load already read the same data into the same table (the compare loop skips
    /// it otherwise).
    pub force: bool,
    /// Target IDs and references from the ID cache.
    pub ids: Option<psystem_postgres::IdPlan>,
    /// `--since/--until` years for sources whose time is the file's modification time: a file modified outside
    /// the window is skipped. (GHO applies its window in the request instead.)
    pub file_window: Option<(Option<i64>, Option<i64>)>,
    /// For `psystem resume`: the load status.yaml recorded. If the database says it completed (the process
    /// stopped between the last commit and its status.yaml write), the job is complete and nothing is loaded again.
    pub resume_load: Option<i64>,
}

impl JobSpec {
    /// The options of the run that status.yaml keeps for `psystem resume` (the `--since/--until` window).
    pub fn run_options(&self) -> crate::status::RunOptions {
        let (since, until) = match &self.source {
            SourceSpec::Gho(c) => (c.since, c.until),
            SourceSpec::Files(_) => self.file_window.unwrap_or_default(),
        };
        crate::status::RunOptions {
            since,
            until,
            ..Default::default()
        }
    }

    /// The job key, `<plugin>/<entry>`, used in status.yaml, the ledger and `psystem resume`.
    pub fn key(&self) -> String {
        job_key(&self.plugin, &self.entry)
    }

    /// The destination URL without its password.
    pub fn redacted_url(&self) -> String {
        psystem_core::redact::redact_url(&self.destination_url)
    }

    /// The schema of the pages as loaded, from the source's schema: `transform.columns`, then the ID cache columns.
    ///
    /// # Errors
    /// [`JobError::Transform`] when the column map names a column the source lacks.
    pub fn load_schema(
        &self,
        source_schema: &arrow_schema::SchemaRef,
    ) -> Result<arrow_schema::SchemaRef, JobError> {
        let schema = self
            .columns
            .output_schema(source_schema)
            .map_err(|source| JobError::Transform {
                job: self.key(),
                source,
            })?;
        Ok(match &self.ids {
            Some(plan) => plan.output_schema(&schema),
            None => schema,
        })
    }

    /// What the destination loads: this job into its table with `schema`.
    pub fn load_spec(
        &self,
        schema: arrow_schema::SchemaRef,
        source_fingerprint: Option<String>,
    ) -> LoadSpec {
        LoadSpec {
            job_key: self.key(),
            plugin: self.plugin.clone(),
            entry: self.entry.clone(),
            source_kind: self.source.kind().as_str().to_string(),
            table: self.table.clone(),
            mode: self.mode,
            primary_key: self.primary_key.clone(),
            schema,
            source_fingerprint,
            ids: self.ids.clone(),
        }
    }
}

/// The job key of a plugin's entry: `<plugin>/<entry>`.
pub fn job_key(plugin: &str, entry: &str) -> String {
    format!("{plugin}/{entry}")
}

/// What a running job reports, in order. Sent on an unbounded channel; a consumer that wants fewer updates
/// (the desktop app: a few per second) samples them.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JobEvent {
    /// How the source reads its data (for a table: the type inference report), once, before loading.
    SourceReport {
        /// Job key.
        job: String,
        /// Lines for people.
        lines: Vec<String>,
    },
    /// The load is open: new, or resumed from its checkpoint.
    Started {
        /// Job key.
        job: String,
        /// `psystem.loads.id`.
        load_id: i64,
        /// True when continuing an earlier, unfinished load.
        resumed: bool,
        /// Counters already committed.
        counters: Counters,
        /// The page the job starts at, 1-based.
        next_page: u64,
        /// Rows in all when known from an earlier page.
        total_rows: Option<u64>,
    },
    /// status.yaml disagreed with the database; the database won. The message says how.
    Reconciled {
        /// Job key.
        job: String,
        /// What was found and what was done.
        message: String,
    },
    /// The source sent fields the declared schema does not have; they are not loaded.
    UnknownFields {
        /// Job key.
        job: String,
        /// Field names not seen before in this run.
        fields: Vec<String>,
    },
    /// A page and its checkpoint were committed.
    PageCommitted {
        /// Job key.
        job: String,
        /// Rows of this page.
        page_rows: u64,
        /// Counters after this page.
        counters: Counters,
        /// Rows in all, from `@odata.count`.
        total_rows: Option<u64>,
    },
    /// The job stopped: completed, paused, cancelled or failed.
    Finished {
        /// Job key.
        job: String,
        /// Final state.
        state: JobState,
        /// Counters at the end.
        counters: Counters,
        /// The error, when failed.
        error: Option<String>,
    },
}

/// A request to a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep going.
    Run,
    /// Stop at the next safe point; resumable.
    Pause,
    /// Stop at the next safe point and mark the load cancelled; a later run starts over.
    Cancel,
}

/// How a job ended.
#[derive(Debug, Clone, Serialize)]
pub struct JobOutcome {
    /// Job key.
    pub job: String,
    /// `psystem.loads.id`.
    pub load_id: i64,
    /// `completed`, `paused` or `cancelled`.
    pub state: JobState,
    /// Counters at the end.
    pub counters: Counters,
    /// Rows in all, when the source said.
    pub total_rows: Option<u64>,
    /// Fields the source sent that were not loaded.
    pub unknown_fields: Vec<String>,
    /// The destination table.
    pub table: TableRef,
    /// The destination, without password.
    pub destination: String,
    /// True when the compare loop found the same data already loaded and did nothing.
    pub skipped: bool,
    /// Keys that got a new target ID in this run.
    pub new_ids: u64,
    /// References left null because their entity was not loaded yet, as (column, keystring): the run resolves
    /// them in a second pass.
    pub deferred: Vec<(String, String)>,
}

impl JobOutcome {
    /// A completed job for which this run loaded nothing: `load_id` is the load that holds the data (0 for none),
    /// `skipped` says the compare loop or a window skipped it rather than a resume finding it done.
    fn without_loading(
        spec: &JobSpec,
        load_id: i64,
        counters: Counters,
        total_rows: Option<u64>,
        skipped: bool,
    ) -> JobOutcome {
        JobOutcome {
            job: spec.key(),
            load_id,
            state: JobState::Completed,
            counters,
            total_rows,
            unknown_fields: Vec::new(),
            table: spec.table.clone(),
            destination: spec.redacted_url(),
            skipped,
            new_ids: 0,
            deferred: Vec::new(),
        }
    }
}

/// Why a job failed. The last committed checkpoint is intact in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The source failed (HTTP, retries exhausted, bad body, bad value).
    #[error("page {page}: {source}")]
    Source {
        /// 1-based page number.
        page: u64,
        /// The source error.
        #[source]
        source: psystem_sources::SourceError,
    },
    /// The destination failed.
    #[error(transparent)]
    Destination(#[from] psystem_postgres::DestinationError),
    /// The column transform names a column the source does not have.
    #[error("plugin entry `{job}`: {source}")]
    Transform {
        /// Job key.
        job: String,
        /// The error.
        #[source]
        source: psystem_core::transform::UnknownColumn,
    },
    /// Another process holds this job.
    #[error("job `{job}` is running in another psystem process (the desktop app or another `psystem run`); pause it there, or wait for it to finish")]
    Busy {
        /// Job key.
        job: String,
    },
    /// status.yaml could not be written.
    #[error(transparent)]
    Status(#[from] crate::status::StatusError),
    /// The source could not be set up.
    #[error("{0}")]
    Setup(String),
}

/// A running job.
#[derive(Debug)]
pub struct JobHandle {
    key: String,
    control: watch::Sender<Control>,
    task: tokio::task::JoinHandle<Result<JobOutcome, JobError>>,
}

impl JobHandle {
    /// Job key.
    pub fn key(&self) -> &str {
        &self.key
    }
    /// Asks the job to pause at the next safe point.
    pub fn pause(&self) {
        let _ = self.control.send(Control::Pause);
    }
    /// Asks the job to stop at the next safe point and mark the load cancelled.
    pub fn cancel(&self) {
        let _ = self.control.send(Control::Cancel);
    }
    /// A sender that pauses or cancels the job from elsewhere (a signal handler).
    pub fn control(&self) -> watch::Sender<Control> {
        self.control.clone()
    }
    /// Waits for the job to end.
    ///
    /// # Errors
    /// The job's [`JobError`]; a panicked task becomes [`JobError::Setup`].
    pub async fn wait(self) -> Result<JobOutcome, JobError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(JobError::Setup(format!("job task ended abnormally: {e}"))),
        }
    }
}

/// Starts a job on its own task. Events arrive on `events` until [`JobEvent::Finished`].
pub fn spawn(
    spec: JobSpec,
    status: StatusStore,
    events: mpsc::UnboundedSender<JobEvent>,
) -> JobHandle {
    let (control, rx) = watch::channel(Control::Run);
    let key = spec.key();
    let task = tokio::spawn(run(spec, status, events, rx));
    JobHandle { key, control, task }
}

/// Runs a job to its end on the current task; see [`spawn`].
///
/// # Errors
/// [`JobError`]; the load is then marked failed in the ledger and status.yaml, at its last checkpoint.
pub async fn run(
    spec: JobSpec,
    status: StatusStore,
    events: mpsc::UnboundedSender<JobEvent>,
    mut control: watch::Receiver<Control>,
) -> Result<JobOutcome, JobError> {
    let key = spec.key();
    let schema_probe = OpenSource::open(&spec.source, None)
        .await
        .map_err(|source| JobError::Source { page: 1, source })?;
    let out_schema = spec.load_schema(&schema_probe.schema())?;
    let fingerprint = schema_probe.fingerprint();
    let report = schema_probe.report();
    if !report.is_empty() {
        let _ = events.send(JobEvent::SourceReport {
            job: key.clone(),
            lines: report,
        });
    }
    if let (Some((since, until)), Some(modified)) = (spec.file_window, schema_probe.modified()) {
        use chrono::Datelike;
        let year = i64::from(modified.year());
        if since.is_some_and(|s| year < s) || until.is_some_and(|u| year > u) {
            let message = format!(
                "{key}: the file was last modified in {year}, outside --since/--until; skipped"
            );
            info!(job = %key, "{message}");
            let _ = events.send(JobEvent::Reconciled {
                job: key.clone(),
                message,
            });
            let _ = events.send(finished(
                &key,
                JobState::Completed,
                Counters::default(),
                None,
            ));
            return Ok(JobOutcome::without_loading(
                &spec,
                0,
                Counters::default(),
                None,
                true,
            ));
        }
    }
    drop(schema_probe);
    let destination = Destination::connect(&spec.destination_url).await?;
    let _lock = destination
        .try_lock_job(&key)
        .await?
        .ok_or_else(|| JobError::Busy { job: key.clone() })?;

    if let Some(id) = spec.resume_load {
        if let Some(rec) = destination.load_by_id(id).await? {
            if rec.state == JobState::Completed && rec.job_key == key {
                info!(job = %key, load_id = id, "The load had already completed; nothing to resume.");
                status.update(|f| {
                    if let Some(j) = f.jobs.get_mut(&key) {
                        j.state = JobState::Completed;
                        j.pages = rec.counters.pages;
                        j.rows = rec.counters.rows;
                        j.bytes = rec.counters.bytes;
                        j.total_rows = rec.total_rows;
                        j.checkpoint = rec.position.clone();
                        j.last_error = None;
                        j.updated_at = Some(Utc::now());
                    }
                })?;
                let _ = events.send(JobEvent::Reconciled {
                    job: key.clone(),
                    message: format!("load {id} had already completed in the database; status.yaml is updated and nothing is loaded again"),
                });
                let _ = events.send(finished(&key, JobState::Completed, rec.counters, None));
                return Ok(JobOutcome::without_loading(
                    &spec,
                    id,
                    rec.counters,
                    rec.total_rows,
                    false,
                ));
            }
        }
    }

    if !spec.force && !spec.restart && spec.resume_load.is_none() {
        if let Some(done) = destination
            .last_completed(&key, &fingerprint, &spec.table)
            .await?
        {
            let message = format!(
                "{key}: load {} already loaded this data ({}) into {} at {}; nothing to do (pass --force to load it again)",
                done.id,
                fingerprint,
                spec.table,
                done.finished_at.unwrap_or(done.updated_at).format("%Y-%m-%d %H:%M:%S UTC")
            );
            info!(job = %key, load_id = done.id, "{message}");
            let _ = events.send(finished(&key, JobState::Completed, done.counters, None));
            return Ok(JobOutcome::without_loading(
                &spec,
                done.id,
                done.counters,
                done.total_rows,
                true,
            ));
        }
    }

    let load_spec = spec.load_spec(out_schema, Some(fingerprint));
    let mut load = destination.open_load(load_spec, spec.restart).await?;
    let mut source = OpenSource::open(&spec.source, load.total_rows)
        .await
        .map_err(|source| JobError::Source {
            page: load.counters.pages + 1,
            source,
        })?;

    if load.removed_rows > 0 {
        let message = format!(
            "{key}: removed the {} rows the abandoned load had appended to {} before loading again",
            load.removed_rows, spec.table
        );
        info!(job = %key, removed = load.removed_rows, "{message}");
        let _ = events.send(JobEvent::Reconciled {
            job: key.clone(),
            message,
        });
    }
    reconcile(&spec, &status, &load, &events)?;
    let _ = events.send(JobEvent::Started {
        job: key.clone(),
        load_id: load.load_id,
        resumed: load.resumed,
        counters: load.counters,
        next_page: load.counters.pages + 1,
        total_rows: load.total_rows,
    });
    info!(job = %key, load_id = load.load_id, resumed = load.resumed, position = ?load.position, "Job started.");
    mirror(&spec, &status, &load, JobState::Running, None)?;

    let mut unknown: BTreeSet<String> = BTreeSet::new();
    let mut ids = IdTally::default();
    let result = page_loop(
        &spec,
        &status,
        &events,
        &mut control,
        &mut source,
        &destination,
        &mut load,
        &mut unknown,
        &mut ids,
    )
    .await;

    let outcome = |state, load: &LoadHandle| JobOutcome {
        job: key.clone(),
        load_id: load.load_id,
        state,
        counters: load.counters,
        total_rows: load.total_rows,
        unknown_fields: unknown.iter().cloned().collect(),
        table: spec.table.clone(),
        destination: spec.redacted_url(),
        skipped: false,
        new_ids: ids.new_ids,
        deferred: ids.deferred.clone(),
    };
    match result {
        Ok(JobState::Completed) => {
            destination.finish_load(&mut load).await?;
            if let Err(e) =
                psystem_postgres::metrics::finish(destination.pool(), load.load_id, &spec.table)
                    .await
            {
                warn!(job = %key, error = %e, "Could not compute the column metrics of the load.");
            }
            mirror(&spec, &status, &load, JobState::Completed, None)?;
            info!(job = %key, rows = load.counters.rows, pages = load.counters.pages, "Job completed.");
            let _ = events.send(finished(&key, JobState::Completed, load.counters, None));
            Ok(outcome(JobState::Completed, &load))
        }
        Ok(state) => {
            destination.set_state(load.load_id, state, None).await?;
            mirror(&spec, &status, &load, state, None)?;
            info!(job = %key, %state, position = ?load.position, "Job stopped at a checkpoint.");
            let _ = events.send(finished(&key, state, load.counters, None));
            Ok(outcome(state, &load))
        }
        Err(err) => {
            let message = err.to_string();
            if let Err(e) = destination
                .set_state(load.load_id, JobState::Failed, Some(&message))
                .await
            {
                warn!(job = %key, error = %e, "Could not record the failure in the ledger.");
            }
            if let Err(e) = mirror(&spec, &status, &load, JobState::Failed, Some(&message)) {
                warn!(job = %key, error = %e, "Could not record the failure in status.yaml.");
            }
            let _ = events.send(finished(
                &key,
                JobState::Failed,
                load.counters,
                Some(message),
            ));
            Err(err)
        }
    }
}

/// The page loop of [`run`]: returns the state the job stopped in (`completed`, `paused`, `cancelled`).
#[allow(clippy::too_many_arguments)]
async fn page_loop(
    spec: &JobSpec,
    status: &StatusStore,
    events: &mpsc::UnboundedSender<JobEvent>,
    control: &mut watch::Receiver<Control>,
    source: &mut OpenSource,
    destination: &Destination,
    load: &mut LoadHandle,
    unknown: &mut BTreeSet<String>,
    ids: &mut IdTally,
) -> Result<JobState, JobError> {
    let key = spec.key();
    loop {
        match *control.borrow_and_update() {
            Control::Run => {}
            Control::Pause => return Ok(JobState::Paused),
            Control::Cancel => return Ok(JobState::Cancelled),
        }
        let page_no = load.counters.pages + 1;
        let position = load.position.clone();
        let fetch_started = std::time::Instant::now();
        let read = tokio::select! {
            read = source.read(position.as_ref()) => read.map_err(|source| JobError::Source { page: page_no, source })?,
            _ = control.changed() => continue, // abandon the page; the loop head acts on the request
        };
        let Some(page) = read else {
            return Ok(JobState::Completed);
        };
        let new_fields: Vec<String> = page
            .unknown_fields
            .iter()
            .filter(|f| !unknown.contains(*f))
            .cloned()
            .collect();
        if !new_fields.is_empty() {
            warn!(job = %key, fields = ?new_fields, "The source sent fields its schema does not know; they are not loaded.");
            unknown.extend(new_fields.iter().cloned());
            let _ = events.send(JobEvent::UnknownFields {
                job: key.clone(),
                fields: new_fields,
            });
        }
        let download_ms = fetch_started.elapsed().as_millis() as u64;
        let rows = page.batch.num_rows() as u64;
        let transform_started = std::time::Instant::now();
        let batch = spec
            .columns
            .apply(&page.batch)
            .map_err(|source| JobError::Transform {
                job: key.clone(),
                source,
            })?;
        let extras = psystem_postgres::PageExtras {
            rows_read: Some(rows),
            rows_rejected: 0,
            phase_ms: [
                ("download".to_string(), download_ms),
                (
                    "transform".to_string(),
                    transform_started.elapsed().as_millis() as u64,
                ),
            ]
            .into(),
        };
        let total = page.total_rows.or(load.total_rows);
        let report = match destination
            .commit_page_with(load, &batch, page.next, page.bytes, total, &extras)
            .await
        {
            Ok(report) => report,
            // A value the destination refuses: say where in the source it is (file and line), not only the
            // row of the page.
            Err(e) => match e.value_row() {
                Some(row) => match source.place_of_row(position.as_ref(), row).await {
                    Some(place) => return Err(e.in_file(place).into()),
                    None => return Err(e.into()),
                },
                None => return Err(e.into()),
            },
        };
        ids.new_ids += report.new_ids as u64;
        ids.deferred.extend(report.deferred);
        mirror(spec, status, load, JobState::Running, None)?;
        let _ = events.send(JobEvent::PageCommitted {
            job: key.clone(),
            page_rows: rows,
            counters: load.counters,
            total_rows: load.total_rows,
        });
        if page.last {
            return Ok(JobState::Completed);
        }
    }
}

/// What the ID cache did over a job's pages.
#[derive(Debug, Default)]
struct IdTally {
    new_ids: u64,
    deferred: Vec<(String, String)>,
}

fn finished(job: &str, state: JobState, counters: Counters, error: Option<String>) -> JobEvent {
    JobEvent::Finished {
        job: job.to_string(),
        state,
        counters,
        error,
    }
}

/// Compares status.yaml with the database's checkpoint and tells the user when they differ; the database wins.
fn reconcile(
    spec: &JobSpec,
    status: &StatusStore,
    load: &LoadHandle,
    events: &mpsc::UnboundedSender<JobEvent>,
) -> Result<(), JobError> {
    let key = spec.key();
    if spec.restart {
        return Ok(());
    }
    let Ok(Some(old)) = status.job(&key) else {
        return Ok(());
    };
    if old.state == JobState::Completed || old.state == JobState::Cancelled {
        return Ok(());
    }
    let same_load = old.load_id == Some(load.load_id) && old.destination == spec.redacted_url();
    if same_load && old.checkpoint == load.position {
        return Ok(());
    }
    let message = if !load.resumed && old.pages > 0 {
        format!(
            "status.yaml says {key} had reached page {} ({} rows) of load {} in {}, but {} holds no unfinished load of it; \
             starting from page 1 so the table is complete",
            old.pages + 1,
            old.rows,
            old.load_id.map(|i| i.to_string()).unwrap_or_else(|| "?".into()),
            old.destination,
            spec.redacted_url()
        )
    } else {
        format!(
            "status.yaml says {key} is at page {} ({} rows) but the database's checkpoint (load {}) is at page {} ({} rows); \
             continuing from the database's checkpoint",
            old.pages + 1,
            old.rows,
            load.load_id,
            load.counters.pages + 1,
            load.counters.rows
        )
    };
    warn!(job = %key, "{message}");
    let _ = events.send(JobEvent::Reconciled { job: key, message });
    Ok(())
}

/// Mirrors the load's committed state into status.yaml.
fn mirror(
    spec: &JobSpec,
    status: &StatusStore,
    load: &LoadHandle,
    state: JobState,
    error: Option<&str>,
) -> Result<(), JobError> {
    let key = spec.key();
    let now = Utc::now();
    status.update(|f| {
        let started_at = f
            .jobs
            .get(&key)
            .filter(|j| j.load_id == Some(load.load_id))
            .and_then(|j| j.started_at)
            .or(Some(now));
        f.jobs.insert(
            key.clone(),
            JobStatus {
                plugin: spec.plugin.clone(),
                entry: spec.entry.clone(),
                source: spec.source.kind().as_str().to_string(),
                state,
                load_id: Some(load.load_id),
                destination: spec.redacted_url(),
                table: spec.table.to_string(),
                mode: spec.mode.to_string(),
                checkpoint: load.position.clone(),
                next_page: load.counters.pages + 1,
                total_rows: load.total_rows,
                pages: load.counters.pages,
                rows: load.counters.rows,
                bytes: load.counters.bytes,
                pid: (state == JobState::Running).then(std::process::id),
                page_size: Some(spec.source.page_rows()),
                source_url: Some(spec.source.location()),
                started_at,
                updated_at: Some(now),
                last_error: error.map(str::to_string),
                release: None,
                options: spec.run_options(),
            },
        );
    })?;
    Ok(())
}

/// A cancellation token that fires when `control` leaves [`Control::Run`] (pause or cancel), for downloads.
pub(crate) fn cancel_on_stop(
    control: &tokio::sync::watch::Receiver<Control>,
) -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let mut control = control.clone();
    let t = token.clone();
    tokio::spawn(async move {
        while *control.borrow_and_update() == Control::Run {
            if control.changed().await.is_err() {
                return;
            }
        }
        t.cancel();
    });
    token
}

/// `host:pid`, the prefix of this process's worker names.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}
