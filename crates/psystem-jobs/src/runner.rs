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

use crate::status::{JobStatus, StatusStore};
use chrono::Utc;
use psystem_core::transform::ColumnMap;
use psystem_core::{Counters, JobState, LoadMode, TableRef};
use psystem_postgres::{Destination, LoadHandle, LoadSpec};
use psystem_sources::gho::{GhoConfig, GhoSource};
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
    /// The GHO source settings.
    pub source: GhoConfig,
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
    /// For `psystem resume`: the load status.yaml recorded. If the database says it completed (the process
    /// stopped between the last commit and its status.yaml write), the job is complete and nothing is loaded again.
    pub resume_load: Option<i64>,
}

impl JobSpec {
    /// The job key, `<plugin>/<entry>`, used in status.yaml, the ledger and `psystem resume`.
    pub fn key(&self) -> String {
        job_key(&self.plugin, &self.entry)
    }

    /// The destination URL without its password.
    pub fn redacted_url(&self) -> String {
        psystem_core::redact::redact_url(&self.destination_url)
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
    let source = GhoSource::new(spec.source.clone()).map_err(|e| JobError::Setup(e.to_string()))?;
    let out_schema = spec
        .columns
        .output_schema(&GhoSource::schema())
        .map_err(|source| JobError::Transform {
            job: key.clone(),
            source,
        })?;
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
                return Ok(JobOutcome {
                    job: key,
                    load_id: id,
                    state: JobState::Completed,
                    counters: rec.counters,
                    total_rows: rec.total_rows,
                    unknown_fields: Vec::new(),
                    table: spec.table.clone(),
                    destination: spec.redacted_url(),
                });
            }
        }
    }

    let load_spec = LoadSpec {
        job_key: key.clone(),
        plugin: spec.plugin.clone(),
        entry: spec.entry.clone(),
        source_kind: psystem_core::plugin::SourceKind::GhoOdata
            .as_str()
            .to_string(),
        table: spec.table.clone(),
        mode: spec.mode,
        primary_key: spec.primary_key.clone(),
        schema: out_schema,
    };
    let mut load = destination.open_load(load_spec, spec.restart).await?;
    let page_size = spec.source.page_size.max(1);
    let mut skip = next_skip(&load);

    reconcile(&spec, &status, &load, skip, page_size, &events)?;
    let _ = events.send(JobEvent::Started {
        job: key.clone(),
        load_id: load.load_id,
        resumed: load.resumed,
        counters: load.counters,
        next_page: skip / page_size + 1,
        total_rows: load.total_rows,
    });
    info!(job = %key, load_id = load.load_id, resumed = load.resumed, next_skip = skip, "Job started.");
    mirror(&spec, &status, &load, JobState::Running, None)?;

    let mut unknown: BTreeSet<String> = BTreeSet::new();
    let result = page_loop(
        &spec,
        &status,
        &events,
        &mut control,
        &source,
        &destination,
        &mut load,
        &mut skip,
        &mut unknown,
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
    };
    match result {
        Ok(JobState::Completed) => {
            destination.finish_load(&mut load).await?;
            mirror(&spec, &status, &load, JobState::Completed, None)?;
            info!(job = %key, rows = load.counters.rows, pages = load.counters.pages, "Job completed.");
            let _ = events.send(finished(&key, JobState::Completed, load.counters, None));
            Ok(outcome(JobState::Completed, &load))
        }
        Ok(state) => {
            destination.set_state(load.load_id, state, None).await?;
            mirror(&spec, &status, &load, state, None)?;
            info!(job = %key, %state, next_skip = skip, "Job stopped at a checkpoint.");
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
    source: &GhoSource,
    destination: &Destination,
    load: &mut LoadHandle,
    skip: &mut u64,
    unknown: &mut BTreeSet<String>,
) -> Result<JobState, JobError> {
    let key = spec.key();
    let page_size = spec.source.page_size.max(1);
    loop {
        match *control.borrow_and_update() {
            Control::Run => {}
            Control::Pause => return Ok(JobState::Paused),
            Control::Cancel => return Ok(JobState::Cancelled),
        }
        if let Some(total) = load.total_rows {
            if *skip >= total && load.counters.pages > 0 {
                return Ok(JobState::Completed);
            }
        }
        let page_no = *skip / page_size + 1;
        let page = tokio::select! {
            page = source.fetch_page(*skip) => page.map_err(|source| JobError::Source { page: page_no, source })?,
            _ = control.changed() => continue, // abandon the page; the loop head acts on the request
        };
        let new_fields: Vec<String> = page
            .unknown_fields
            .iter()
            .filter(|f| !unknown.contains(*f))
            .cloned()
            .collect();
        if !new_fields.is_empty() {
            warn!(job = %key, fields = ?new_fields, "The source sent fields the GHO schema does not know; they are not loaded.");
            unknown.extend(new_fields.iter().cloned());
            let _ = events.send(JobEvent::UnknownFields {
                job: key.clone(),
                fields: new_fields,
            });
        }
        let rows = page.batch.num_rows() as u64;
        let batch = spec
            .columns
            .apply(&page.batch)
            .map_err(|source| JobError::Transform {
                job: key.clone(),
                source,
            })?;
        let next = *skip + rows;
        let total = page.total.or(load.total_rows);
        destination
            .commit_page(
                load,
                &batch,
                serde_json::json!({ "next_skip": next }),
                page.bytes,
                total,
            )
            .await?;
        *skip = next;
        mirror(spec, status, load, JobState::Running, None)?;
        let _ = events.send(JobEvent::PageCommitted {
            job: key.clone(),
            page_rows: rows,
            counters: load.counters,
            total_rows: load.total_rows,
        });
        // An empty page, or the announced total reached. (A short page is not the end: a server may cap
        // `$top` below the page size.)
        if page.is_last() || total.is_some_and(|t| *skip >= t) {
            return Ok(JobState::Completed);
        }
    }
}

fn finished(job: &str, state: JobState, counters: Counters, error: Option<String>) -> JobEvent {
    JobEvent::Finished {
        job: job.to_string(),
        state,
        counters,
        error,
    }
}

/// The `$skip` a load's checkpoint points at (0 for a new load).
fn next_skip(load: &LoadHandle) -> u64 {
    load.position
        .as_ref()
        .and_then(|p| p.get("next_skip"))
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

/// Compares status.yaml with the database's checkpoint and tells the user when they differ; the database wins.
fn reconcile(
    spec: &JobSpec,
    status: &StatusStore,
    load: &LoadHandle,
    db_skip: u64,
    page_size: u64,
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
    let file_skip = old
        .checkpoint
        .as_ref()
        .and_then(|p| p.get("next_skip"))
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let same_load = old.load_id == Some(load.load_id) && old.destination == spec.redacted_url();
    if same_load && file_skip == db_skip {
        return Ok(());
    }
    let message = if !load.resumed && file_skip > 0 {
        format!(
            "status.yaml says {key} had reached page {} ({} rows) of load {} in {}, but {} holds no unfinished load of it; \
             starting from page 1 so the table is complete",
            file_skip / page_size + 1,
            old.rows,
            old.load_id.map(|i| i.to_string()).unwrap_or_else(|| "?".into()),
            old.destination,
            spec.redacted_url()
        )
    } else {
        format!(
            "status.yaml says {key} is at page {} but the database's checkpoint (load {}) is at page {}; continuing from the database's checkpoint",
            file_skip / page_size + 1,
            load.load_id,
            db_skip / page_size + 1
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
    let page_size = spec.source.page_size.max(1);
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
                source: psystem_core::plugin::SourceKind::GhoOdata
                    .as_str()
                    .to_string(),
                state,
                load_id: Some(load.load_id),
                destination: spec.redacted_url(),
                table: spec.table.to_string(),
                mode: spec.mode.to_string(),
                checkpoint: load.position.clone(),
                next_page: next_skip(load) / page_size + 1,
                total_rows: load.total_rows,
                pages: load.counters.pages,
                rows: load.counters.rows,
                bytes: load.counters.bytes,
                pid: (state == JobState::Running).then(std::process::id),
                page_size: Some(spec.source.page_size),
                source_url: Some(spec.source.api.clone()),
                started_at,
                updated_at: Some(now),
                last_error: error.map(str::to_string),
            },
        );
    })?;
    Ok(())
}
