//! Release jobs: download, verify and load chosen datasets of one release (Open Targets) into Postgres.
//!
//! The steps, per run: resolve the release (`latest` → the newest `YY.MM`), discover its datasets, read its
//! checksum manifest (verified against its `.sha1` first), then for each dataset — several at once
//! ([`ReleaseJobSpec::parallel`]) — download every file into the cache hashing it as it streams, record each
//! verdict in `psystem.files`, and when all files match load them: one work unit per file
//! ([`psystem_postgres::release_load`]), copied by [`ReleaseJobSpec::workers`] tasks into a staging table, then the
//! table is created, replaced or merged in one transaction. A dataset already loaded from that release is skipped
//! unless `force`. Each dataset is a job in status.yaml (`<plugin>/<entry>`, with the release) so that
//! `psystem resume` continues it: downloads from their partial files, loads from the units not yet done.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use futures::stream::{self, StreamExt};
use psystem_core::flatten::FlattenOptions;
use psystem_core::{JobState, LoadMode, TableRef};
use psystem_postgres::release_load::{self, DatasetLoadSpec, FileCheck, FinishReport, UnitSpec};
use psystem_postgres::Destination;
use psystem_releases::model::{Dataset, Layout, Release};
use psystem_releases::provider::Provider;
use psystem_releases::reader::{stream_file, DatasetSchema};
use psystem_releases::verify::{self, FetchedFile, FileStatus, ReleaseManifest};
use psystem_releases::{footer, ReleaseError};
use psystem_transport::{Transport, TransportOptions};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::runner::{cancel_on_stop, job_key, Control, JobError};
use crate::status::{JobStatus, StatusStore};

/// The source kind recorded in the ledger for release loads.
pub const SOURCE_KIND: &str = "release";

/// Attempts per work unit before it fails (a unit is retried once after a transient error).
const UNIT_ATTEMPTS: u32 = 2;

/// One dataset to load.
#[derive(Debug, Clone)]
pub struct DatasetJob {
    /// The plugin's ETL entry key (the job is `<plugin>/<entry>`).
    pub entry: String,
    /// The dataset folder name (from 25.03 on).
    pub dataset: String,
    /// Other names of the dataset in older layouts.
    pub aliases: Vec<String>,
    /// The destination table.
    pub table: TableRef,
    /// `replace` (default) or `merge` (needs a primary key); the first load creates the table either way.
    pub mode: LoadMode,
    /// The primary-key columns (after flattening).
    pub primary_key: Vec<String>,
    /// How structs become columns.
    pub flatten: FlattenOptions,
}

/// A release load: which release, which datasets, where, and how.
#[derive(Debug, Clone)]
pub struct ReleaseJobSpec {
    /// The plugin name (`opentargets`): the cache key and the first half of the job keys.
    pub plugin: String,
    /// The URL of the folder holding the releases.
    pub source_url: String,
    /// The release; `None` or `latest` = the newest.
    pub release: Option<String>,
    /// The datasets to load.
    pub datasets: Vec<DatasetJob>,
    /// The destination database URL.
    pub destination_url: String,
    /// The download cache root (`~/.psystem/cache`).
    pub cache_root: PathBuf,
    /// Datasets loaded at the same time (default 2).
    pub parallel: usize,
    /// Files downloaded and copied at the same time within a dataset (default 2).
    pub workers: usize,
    /// Stop every dataset at the first failure instead of finishing the others.
    pub fail_fast: bool,
    /// Load a dataset even when a completed load of this release exists.
    pub force: bool,
    /// Start unfinished loads over instead of resuming them.
    pub restart: bool,
    /// Load a release that has no checksum manifest (recorded as unverified).
    pub allow_unverified: bool,
    /// Apply incompatible column type changes with a cast.
    pub allow_casts: bool,
    /// Timeouts and retries of the transport.
    pub transport: TransportOptions,
    /// The provider whose layout the releases follow (Open Targets, UniProt).
    pub provider: Provider,
    /// How UniProt flat files are split and parsed (ignored for Parquet datasets).
    pub uniprot: UniprotOptions,
    /// How long a work unit may go without a heartbeat before another worker (of this process or a
    /// `psystem worker` elsewhere) takes it over.
    pub heartbeat_timeout: std::time::Duration,
}

/// How a UniProt flat file loads: work units, parse errors, heartbeats.
#[derive(Debug, Clone)]
pub struct UniprotOptions {
    /// Target size of a work unit in decompressed bytes (default [`crate::uniprot::DEFAULT_UNIT_BYTES`]).
    pub unit_bytes: u64,
    /// What to do with an entry that fails to parse (default: fail the unit).
    pub error_policy: psystem_uniprot::ErrorPolicy,
}

impl Default for UniprotOptions {
    fn default() -> Self {
        UniprotOptions {
            unit_bytes: crate::uniprot::DEFAULT_UNIT_BYTES,
            error_policy: psystem_uniprot::ErrorPolicy::Fail,
        }
    }
}

impl ReleaseJobSpec {
    /// The destination URL without its password.
    pub fn redacted_url(&self) -> String {
        psystem_core::redact::redact_url(&self.destination_url)
    }

    /// The options of the run that status.yaml keeps for `psystem resume`: workers, unit size, error policy,
    /// `--allow-unverified`, `--allow-casts`, heartbeat timeout (the release, mode and source URL have fields of
    /// their own).
    pub fn run_options(&self) -> crate::status::RunOptions {
        crate::status::RunOptions {
            since: None,
            until: None,
            workers: Some(self.workers),
            unit_bytes: (self.provider == Provider::UniProt).then_some(self.uniprot.unit_bytes),
            skip_bad_entries: self.uniprot.error_policy == psystem_uniprot::ErrorPolicy::Skip,
            allow_unverified: self.allow_unverified,
            allow_casts: self.allow_casts,
            heartbeat_timeout_secs: Some(self.heartbeat_timeout.as_secs_f64()),
        }
    }
}

/// What a release job reports while it runs. Consumers sample as they like (the CLI redraws a few times a second).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ReleaseEvent {
    /// The release is known: its name, layout and the datasets this run loads.
    Resolved {
        /// The release name.
        release: String,
        /// The folder layout.
        layout: String,
        /// Whether the manifest was found and matched its `.sha1`.
        manifest: Option<String>,
    },
    /// A dataset starts (download and verify).
    DatasetStarted {
        /// The job key.
        job: String,
        /// Files and bytes of the dataset.
        files: usize,
        /// Bytes in all.
        bytes: u64,
    },
    /// Bytes arrived for a file (or were hashed from the cache).
    Download {
        /// The job key.
        job: String,
        /// Bytes of the dataset downloaded or hashed so far.
        done: u64,
        /// Bytes of the dataset in all.
        total: u64,
    },
    /// A file was checked against the manifest.
    FileChecked {
        /// The job key.
        job: String,
        /// The file, relative to the release.
        path: String,
        /// `verified`, `mismatch`, `unverified`.
        status: String,
    },
    /// A file's rows were committed into the staging table.
    UnitDone {
        /// The job key.
        job: String,
        /// The file.
        path: String,
        /// Rows of the file.
        rows: u64,
        /// Rows of the dataset committed so far.
        rows_done: u64,
        /// Files done / in all.
        units_done: u64,
        /// Files in all.
        units: u64,
    },
    /// A dataset ended.
    DatasetFinished {
        /// The outcome (boxed: it is much larger than the other events).
        outcome: Box<DatasetOutcome>,
    },
}

/// How one dataset ended.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetOutcome {
    /// The job key (`<plugin>/<entry>`).
    pub job: String,
    /// The dataset as found in the release.
    pub dataset: String,
    /// The release.
    pub release: String,
    /// The table.
    pub table: String,
    /// `completed`, `paused`, `failed`, or `completed` with `skipped`.
    pub state: JobState,
    /// True when a completed load of this release existed and nothing was done.
    pub skipped: bool,
    /// The load id, when a load was opened.
    pub load_id: Option<i64>,
    /// What the finish step did (rows inserted/updated/deleted, schema changes).
    pub report: Option<FinishReport>,
    /// Bytes of the dataset's files.
    pub bytes: u64,
    /// Whether every file matched the manifest.
    pub verified: bool,
    /// Seconds from start to end.
    pub seconds: f64,
    /// The error, when failed.
    pub error: Option<String>,
    /// UniProt: entries whose content MD5 was unchanged (not rewritten).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unchanged: Option<u64>,
    /// UniProt: entries skipped because they failed to parse (error policy `skip`), `accession (line N): message`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_entries: Vec<String>,
}

/// How a release job ended: one outcome per dataset.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseOutcome {
    /// The release loaded.
    pub release: String,
    /// One per dataset, in the order asked.
    pub datasets: Vec<DatasetOutcome>,
}

impl ReleaseOutcome {
    /// True when every dataset completed.
    pub fn all_completed(&self) -> bool {
        self.datasets.iter().all(|d| d.state == JobState::Completed)
    }
}

/// A release job's release as found on its source: the transport to it, the release (resolved from `latest` or
/// the name asked for, its datasets discovered), each dataset job with the dataset it loads (found by its name or
/// an alias), and the release's checksum manifest (none only with `allow_unverified`).
pub(crate) struct ResolvedRelease {
    pub(crate) transport: Arc<Transport>,
    pub(crate) release: Release,
    pub(crate) chosen: Vec<(DatasetJob, Dataset)>,
    pub(crate) manifest: Option<ReleaseManifest>,
}

/// Resolves `spec`'s release, finds every dataset it names and fetches the manifest: the first steps of a real run
/// and of a dry run alike.
///
/// # Errors
/// `JobError::Setup`: the release or a dataset not found, no manifest without `allow_unverified`, transport errors.
pub(crate) async fn resolve_release(spec: &ReleaseJobSpec) -> Result<ResolvedRelease, JobError> {
    let setup = |e: ReleaseError| JobError::Setup(e.to_string());
    let transport = Arc::new(
        Transport::new(&spec.source_url, spec.transport.clone()).map_err(|e| setup(e.into()))?,
    );
    let name = spec
        .provider
        .resolve_release(&transport, &spec.plugin, spec.release.as_deref())
        .await
        .map_err(setup)?;
    let release = spec
        .provider
        .discover(&transport, &spec.plugin, &name)
        .await
        .map_err(setup)?;
    // Every dataset must exist before anything starts.
    let mut chosen: Vec<(DatasetJob, Dataset)> = Vec::new();
    for job in &spec.datasets {
        let found = std::iter::once(&job.dataset)
            .chain(job.aliases.iter())
            .find_map(|n| release.dataset(n))
            .ok_or_else(|| {
                setup(ReleaseError::DatasetNotFound {
                    release: release.name.clone(),
                    dataset: job.dataset.clone(),
                    available: release
                        .datasets
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            })?;
        chosen.push((job.clone(), found.clone()));
    }
    let manifest = verify::fetch_manifest(&transport, &release)
        .await
        .map_err(setup)?;
    if manifest.is_none() && !spec.allow_unverified {
        return Err(setup(ReleaseError::NoManifest {
            release: release.name.clone(),
        }));
    }
    Ok(ResolvedRelease {
        transport,
        release,
        chosen,
        manifest,
    })
}

/// Runs a release job to its end. `control` pauses (at the next file boundary; partial downloads and committed
/// units are kept) or cancels it.
///
/// # Errors
/// Failures before any dataset starts (release not found, manifest mismatch, destination unreachable) are errors;
/// a dataset's failure is in its [`DatasetOutcome`] (and ends the run early with `fail_fast`).
pub async fn run_release(
    spec: ReleaseJobSpec,
    status: StatusStore,
    events: mpsc::UnboundedSender<ReleaseEvent>,
    control: watch::Receiver<Control>,
) -> Result<ReleaseOutcome, JobError> {
    let ResolvedRelease {
        transport,
        release,
        chosen,
        manifest,
    } = resolve_release(&spec).await?;
    let _ = events.send(ReleaseEvent::Resolved {
        release: release.name.clone(),
        layout: release.layout.describe().to_string(),
        manifest: manifest.as_ref().map(|m| m.describe()),
    });
    let dest = Destination::connect(&spec.destination_url).await?;
    let shared = Arc::new(Shared {
        spec,
        release,
        manifest,
        transport,
        dest,
        status,
        events,
        control,
        failed: std::sync::atomic::AtomicBool::new(false),
    });
    let parallel = shared.spec.parallel.max(1);
    let outcomes: Vec<DatasetOutcome> = stream::iter(chosen)
        .map(|(job, dataset)| {
            let shared = shared.clone();
            async move { shared.run_dataset(job, dataset).await }
        })
        .buffered(parallel)
        .collect()
        .await;
    shared.dest.close().await;
    Ok(ReleaseOutcome {
        release: shared.release.name.clone(),
        datasets: outcomes,
    })
}

struct Shared {
    spec: ReleaseJobSpec,
    release: Release,
    manifest: Option<ReleaseManifest>,
    transport: Arc<Transport>,
    dest: Destination,
    status: StatusStore,
    events: mpsc::UnboundedSender<ReleaseEvent>,
    control: watch::Receiver<Control>,
    failed: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn stop_requested(&self) -> bool {
        *self.control.borrow() != Control::Run
            || (self.spec.fail_fast && self.failed.load(std::sync::atomic::Ordering::SeqCst))
    }

    async fn run_dataset(&self, job: DatasetJob, dataset: Dataset) -> DatasetOutcome {
        let started = Instant::now();
        let key = job_key(&self.spec.plugin, &job.entry);
        let mut outcome = DatasetOutcome {
            job: key.clone(),
            dataset: dataset.name.clone(),
            release: self.release.name.clone(),
            table: job.table.to_string(),
            state: JobState::Running,
            skipped: false,
            load_id: None,
            report: None,
            bytes: dataset.bytes(),
            verified: false,
            seconds: 0.0,
            error: None,
            unchanged: None,
            skipped_entries: Vec::new(),
        };
        let result = self.load_dataset(&job, &dataset, &key, &mut outcome).await;
        outcome.seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(state) => outcome.state = state,
            Err(e) => {
                let message = psystem_core::error::error_chain(&e);
                warn!(job = %key, error = %message, "Dataset failed.");
                self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
                outcome.state = JobState::Failed;
                outcome.error = Some(message);
            }
        }
        let _ = self.write_status(&key, &job, &outcome);
        let _ = self.events.send(ReleaseEvent::DatasetFinished {
            outcome: Box::new(outcome.clone()),
        });
        outcome
    }

    fn write_status(
        &self,
        key: &str,
        job: &DatasetJob,
        o: &DatasetOutcome,
    ) -> Result<(), JobError> {
        let now = Utc::now();
        self.status.update(|f| {
            let started_at = f.jobs.get(key).and_then(|j| j.started_at).or(Some(now));
            f.jobs.insert(
                key.to_string(),
                JobStatus {
                    plugin: self.spec.plugin.clone(),
                    entry: job.entry.clone(),
                    source: SOURCE_KIND.to_string(),
                    state: o.state,
                    load_id: o.load_id,
                    destination: self.spec.redacted_url(),
                    table: job.table.to_string(),
                    mode: job.mode.to_string(),
                    checkpoint: None,
                    next_page: 0,
                    total_rows: None,
                    pages: 0,
                    rows: o.report.as_ref().map(|r| r.rows).unwrap_or(0),
                    bytes: o.bytes,
                    pid: (o.state == JobState::Running).then(std::process::id),
                    page_size: None,
                    source_url: Some(psystem_core::redact::redact_url(&self.spec.source_url)),
                    started_at,
                    updated_at: Some(now),
                    last_error: o.error.clone(),
                    release: Some(self.release.name.clone()),
                    options: self.spec.run_options(),
                },
            );
        })?;
        Ok(())
    }

    async fn load_dataset(
        &self,
        job: &DatasetJob,
        dataset: &Dataset,
        key: &str,
        outcome: &mut DatasetOutcome,
    ) -> Result<JobState, JobError> {
        let release = &self.release;
        let uniprot = release.layout == Layout::UniProt;
        if !self.spec.force && !self.spec.restart && uniprot {
            if let Some(id) = psystem_postgres::protein::last_completed(
                &self.dest,
                &release.name,
                &dataset.name,
                &job.table,
            )
            .await?
            {
                info!(job = %key, load_id = id, "Dataset already loaded from this release; skipped.");
                outcome.skipped = true;
                outcome.load_id = Some(id);
                outcome.verified = true;
                return Ok(JobState::Completed);
            }
        }
        if !self.spec.force && !self.spec.restart && !uniprot {
            if let Some(id) = release_load::last_completed_dataset(
                &self.dest,
                SOURCE_KIND,
                &release.name,
                &dataset.name,
                &job.table,
            )
            .await?
            {
                info!(job = %key, load_id = id, "Dataset already loaded from this release; skipped.");
                outcome.skipped = true;
                outcome.load_id = Some(id);
                outcome.verified = true;
                return Ok(JobState::Completed);
            }
        }
        let _lock = self
            .dest
            .try_lock_job(key)
            .await?
            .ok_or_else(|| JobError::Busy {
                job: key.to_string(),
            })?;
        self.write_status(key, job, outcome)?;
        let _ = self.events.send(ReleaseEvent::DatasetStarted {
            job: key.to_string(),
            files: dataset.files.len(),
            bytes: dataset.bytes(),
        });

        // A merge the server cannot run is refused before anything is downloaded.
        if job.mode == LoadMode::Merge && !uniprot {
            release_load::check_merge_supported(self.dest.pool(), &job.table).await?;
        }
        // 1. The manifest must list every file of the dataset (unless --allow-unverified) and the release must
        //    have every file the manifest lists under it; then download and verify every file (a few at a
        //    time): nothing loads unless all match.
        self.check_coverage(key, dataset).await?;
        let fetched = self.fetch_dataset(key, dataset).await?;
        let Some(fetched) = fetched else {
            return Ok(JobState::Paused);
        };
        let mut mismatches = Vec::new();
        for f in &fetched {
            if f.check.status == FileStatus::Mismatch {
                mismatches.push(
                    f.check
                        .detail
                        .clone()
                        .unwrap_or_else(|| f.check.path.clone()),
                );
            }
        }
        if !mismatches.is_empty() {
            return Err(JobError::Setup(format!(
                "{} of {} files of dataset {} do not match the manifest; nothing was loaded (the bad files were removed from the cache and download again next run): {}",
                mismatches.len(),
                fetched.len(),
                dataset.name,
                mismatches.join("; ")
            )));
        }
        let verified = fetched
            .iter()
            .all(|f| f.check.status == FileStatus::Verified);
        outcome.verified = verified;
        if uniprot {
            return self
                .load_flat_file(job, dataset, key, &fetched, outcome)
                .await;
        }

        // 2. The dataset's schema from the first file's footer; every other file's footer must agree.
        let first = &fetched[0];
        let summary =
            footer::read_local_footer(&first.local).map_err(|e| JobError::Setup(e.to_string()))?;
        let schema = DatasetSchema::new(
            &dataset.name,
            &summary.schema,
            &dataset.partition_keys,
            &job.flatten,
        )
        .map_err(|e| JobError::Setup(e.to_string()))?
        .with_origin(&first.check.path);
        for f in &fetched[1..] {
            let other =
                footer::read_local_footer(&f.local).map_err(|e| JobError::Setup(e.to_string()))?;
            schema
                .check_file(&other.schema, &f.check.path)
                .map_err(|e| JobError::Setup(e.to_string()))?;
        }

        // 3. The load: one work unit per file.
        let load_spec = DatasetLoadSpec {
            job_key: key.to_string(),
            plugin: self.spec.plugin.clone(),
            entry: job.entry.clone(),
            source_kind: SOURCE_KIND.to_string(),
            release: release.name.clone(),
            dataset: dataset.name.clone(),
            table: job.table.clone(),
            mode: job.mode,
            primary_key: job.primary_key.clone(),
            schema: schema.flat.clone(),
            units: fetched
                .iter()
                .map(|f| UnitSpec {
                    key: f.check.path.clone(),
                    bytes: f.check.size,
                    spec: serde_json::to_value(crate::worker::ParquetUnit {
                        size: f.check.size,
                        algorithm: f.check.algorithm.clone(),
                        digest: f.check.expected.clone(),
                        partitions: f.partitions.clone(),
                    })
                    .ok(),
                })
                .collect(),
            verified,
            allow_casts: self.spec.allow_casts,
            copy_options: Default::default(),
            heartbeat_timeout: self.spec.heartbeat_timeout,
            // `psystem worker` processes may copy files of this load too (docs/UNIPROT_LOADS.md, "psystem worker").
            worker_spec: serde_json::to_value(crate::worker::ParquetWorkerSpec {
                kind: crate::worker::PARQUET_KIND.to_string(),
                source: self.spec.plugin.clone(),
                source_url: psystem_core::redact::strip_credentials(&self.spec.source_url),
                release: release.name.clone(),
                release_root: release.root.clone(),
                dataset: dataset.name.clone(),
                partition_keys: dataset.partition_keys.clone(),
                flatten: job.flatten.clone(),
                heartbeat_timeout_secs: self.spec.heartbeat_timeout.as_secs_f64(),
            })
            .ok(),
        };
        let load =
            release_load::open_dataset_load(&self.dest, load_spec, self.spec.restart).await?;
        outcome.load_id = Some(load.load_id());
        self.write_status(key, job, outcome)?;
        let by_path: HashMap<&str, &FetchedFile> =
            fetched.iter().map(|f| (f.check.path.as_str(), f)).collect();
        let units = fetched.len() as u64;
        // 0: coordinate only — `psystem worker` processes copy the files, this run waits and finishes the load.
        let worker_count = self.spec.workers;
        if worker_count == 0 {
            info!(job = %key, load_id = load.load_id(), "Waiting for `psystem worker` processes to copy the files.");
        }
        let worker_name = crate::runner::worker_name();
        let progress = tokio::sync::Mutex::new((0u64, 0u64));
        let first_error: tokio::sync::Mutex<Option<String>> = tokio::sync::Mutex::new(None);
        // Local workers, then — while `psystem worker` processes elsewhere hold units — wait, and take over
        // the units whose worker stops heartbeating.
        loop {
            let work = (0..worker_count).map(|w| {
                let worker = format!("{worker_name}/{w}");
                let load = &load;
                let by_path = &by_path;
                let schema = &schema;
                let progress = &progress;
                let first_error = &first_error;
                async move {
                    loop {
                        if self.stop_requested() || first_error.lock().await.is_some() {
                            return;
                        }
                        let unit = match load.claim_unit(&self.dest, &worker).await {
                            Ok(Some(u)) => u,
                            Ok(None) => return,
                            Err(e) => {
                                *first_error.lock().await = Some(e.to_string());
                                return;
                            }
                        };
                        let Some(file) = by_path.get(unit.key.as_str()) else {
                            let message =
                                format!("work unit {} is not a file of this release", unit.key);
                            let _ = load.fail_unit(&self.dest, &unit, &message, 1).await;
                            *first_error.lock().await = Some(message);
                            return;
                        };
                        let batches = stream_file(
                            file.local.clone(),
                            file.check.path.clone(),
                            file.partitions.clone(),
                            schema.clone(),
                        );
                        match load.copy_unit(&self.dest, &unit, batches).await {
                            Ok(report) => {
                                let mut p = progress.lock().await;
                                p.0 += report.rows;
                                p.1 += 1;
                                let _ = self.events.send(ReleaseEvent::UnitDone {
                                    job: load_key(load),
                                    path: unit.key.clone(),
                                    rows: report.rows,
                                    rows_done: p.0,
                                    units_done: p.1,
                                    units,
                                });
                            }
                            Err(e) => {
                                let message = psystem_core::error::error_chain(&e);
                                let _ = load
                                    .fail_unit(&self.dest, &unit, &message, UNIT_ATTEMPTS)
                                    .await;
                                *first_error.lock().await = Some(message);
                                return;
                            }
                        }
                    }
                }
            });
            futures::future::join_all(work).await;
            if first_error.lock().await.is_some() || self.stop_requested() {
                break;
            }
            let counts = load.progress(&self.dest).await?;
            if counts.pending + counts.running == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        if let Some(error) = first_error.into_inner() {
            let message = format!("dataset {}: {error}", dataset.name);
            load.abort(&self.dest, &message).await?;
            return Err(JobError::Setup(message));
        }
        if self.stop_requested() {
            let counts = load.progress(&self.dest).await?;
            if counts.pending + counts.running > 0 {
                self.dest
                    .set_state(load.load_id(), JobState::Paused, None)
                    .await?;
                info!(job = %key, "Paused; committed files are kept, `psystem resume {key}` continues.");
                return Ok(JobState::Paused);
            }
        }
        let report = load.finish(&self.dest).await?;
        info!(job = %key, rows = report.rows, inserted = report.inserted, updated = report.updated, deleted = report.deleted, "Dataset loaded.");
        outcome.report = Some(report);
        Ok(JobState::Completed)
    }

    /// Loads a UniProt flat file (`sprot`, `trembl`): splits it into work units at entry boundaries, records the
    /// shared load (joinable by `psystem worker --db URL`) and works it with [`ReleaseJobSpec::workers`] loops of
    /// this process — none with `workers = 0`: the load then waits for other workers and this run returns with
    /// the job `running`.
    async fn load_flat_file(
        &self,
        job: &DatasetJob,
        dataset: &Dataset,
        key: &str,
        fetched: &[FetchedFile],
        outcome: &mut DatasetOutcome,
    ) -> Result<JobState, JobError> {
        use crate::uniprot::{self, WorkerSpec};
        let [file] = fetched else {
            return Err(JobError::Setup(format!(
                "dataset {} has {} files; a UniProt dataset is one flat file",
                dataset.name,
                fetched.len()
            )));
        };
        let name = file.check.path.rsplit('/').next().unwrap_or_default();
        if !(name.ends_with(".dat.gz") || name.ends_with(".dat") || name.ends_with(".txt")) {
            return Err(JobError::Setup(format!(
                "dataset {} is {name}, not a UniProtKB flat file (`.dat.gz`): psystem loads the flat-file datasets \
                 `sprot` and `trembl`; `psystem export uniprot --format fasta` writes FASTA from a loaded release",
                dataset.name
            )));
        }
        let options = &self.spec.uniprot;
        let local = file.local.clone();
        let unit_bytes = options.unit_bytes;
        let file_digest = uniprot::file_digest(&file.check);
        // A resumed load keeps the units it was split into; only a new load reads the file to plan them — and so
        // does an unfinished load split over another version of the file (the mirror now serves a corrected one):
        // its byte ranges do not fit this file, and `open_protein_load` starts it again with these units.
        let resumable = !self.spec.restart
            && psystem_postgres::protein::resumable_load_digest(&self.dest, key)
                .await?
                .is_some_and(|(_, digest)| digest.as_deref() == Some(file_digest.as_str()));
        let units = if resumable {
            Vec::new()
        } else {
            tokio::task::spawn_blocking(move || uniprot::plan_file_units(&local, unit_bytes))
                .await
                .map_err(|e| JobError::Setup(format!("splitting into work units: {e}")))??
        };
        let worker_spec = WorkerSpec {
            kind: uniprot::WORKER_KIND.to_string(),
            source: self.spec.plugin.clone(),
            source_url: psystem_core::redact::strip_credentials(&self.spec.source_url),
            release: self.release.name.clone(),
            release_root: self.release.root.clone(),
            file: file.check.path.clone(),
            size: file.check.size,
            md5: (file.check.algorithm.as_deref() == Some("md5"))
                .then(|| file.check.expected.clone())
                .flatten(),
            dataset: dataset.name.clone(),
            error_policy: options.error_policy,
            unit_bytes,
            heartbeat_timeout_secs: self.spec.heartbeat_timeout.as_secs_f64(),
            file_digest: Some(file_digest.clone()),
        };
        let spec = psystem_postgres::protein::ProteinLoadSpec {
            job_key: key.to_string(),
            plugin: self.spec.plugin.clone(),
            entry: job.entry.clone(),
            release: self.release.name.clone(),
            dataset: dataset.name.clone(),
            schema: job.table.schema.clone(),
            table: job.table.name.clone(),
            units,
            verified: outcome.verified,
            heartbeat_timeout: self.spec.heartbeat_timeout,
            worker_spec: serde_json::to_value(&worker_spec)
                .map_err(|e| JobError::Setup(e.to_string()))?,
            file_digest: Some(file_digest),
        };
        let load =
            psystem_postgres::protein::open_protein_load(&self.dest, spec, self.spec.restart)
                .await?;
        let unit_count = load.queue().counts(&self.dest).await?.total();
        outcome.load_id = Some(load.load_id());
        self.write_status(key, job, outcome)?;
        if self.spec.workers == 0 {
            info!(job = %key, load_id = load.load_id(), units = unit_count,
                "Shared load recorded; waiting for `psystem worker` processes to join it.");
            return Ok(JobState::Running);
        }
        let progress = std::sync::Mutex::new((0u64, 0u64));
        let events = self.events.clone();
        let on_unit = |unit: &psystem_postgres::work_units::ClaimedUnit,
                       r: &psystem_postgres::protein::ProteinUnitReport| {
            let (rows_done, units_done) = {
                let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                p.0 += r.entries;
                p.1 += 1;
                *p
            };
            let _ = events.send(ReleaseEvent::UnitDone {
                job: key.to_string(),
                path: unit.key.clone(),
                rows: r.entries,
                rows_done,
                units_done,
                units: unit_count,
            });
        };
        let finished = uniprot::run_local_workers(
            &self.dest,
            &load,
            &worker_spec,
            &file.local,
            self.spec.workers,
            &self.control,
            &on_unit,
        )
        .await;
        match finished {
            Ok(Some(report)) => {
                info!(job = %key, entries = report.units.entries, inserted = report.units.inserted,
                    updated = report.units.updated, unchanged = report.units.unchanged, deleted = report.deleted,
                    "UniProt release loaded.");
                outcome.report = Some(FinishReport {
                    inserted: report.units.inserted,
                    updated: report.units.updated,
                    deleted: report.deleted,
                    rows: report.units.entries,
                    ..Default::default()
                });
                outcome.skipped_entries = report.units.skipped_entries.clone();
                outcome.unchanged = Some(report.units.unchanged);
                Ok(JobState::Completed)
            }
            Ok(None) => {
                self.dest
                    .set_state(load.load_id(), JobState::Paused, None)
                    .await?;
                info!(job = %key, "Paused; written units are kept, `psystem resume {key}` continues.");
                Ok(JobState::Paused)
            }
            Err(e) => {
                let message = psystem_core::error::error_chain(&e);
                if let Err(abort) = load.abort(&self.dest, &message).await {
                    warn!(job = %key, error = %abort, "Marking the load failed failed.");
                }
                Err(e)
            }
        }
    }

    /// Holds the dataset's files against the manifest before anything is downloaded: a file the manifest lists
    /// under the dataset's folder but the release does not have is recorded `missing` in `psystem.files` and
    /// fails the dataset ([`ReleaseError::MissingFiles`]); a file the manifest does not list is recorded
    /// `unverified` and fails it ([`ReleaseError::NotInManifest`]) unless `--allow-unverified`. Nothing to check
    /// without a manifest (the run was refused before, unless `--allow-unverified`).
    async fn check_coverage(&self, key: &str, dataset: &Dataset) -> Result<(), JobError> {
        let Some(manifest) = &self.manifest else {
            return Ok(());
        };
        let plugin = &self.spec.plugin;
        let release = &self.release.name;
        let missing = manifest.missing_files(dataset);
        let unlisted: Vec<verify::FileCheck> = if self.spec.allow_unverified {
            Vec::new()
        } else {
            manifest
                .unlisted_files(dataset)
                .into_iter()
                .map(|f| manifest.unlisted_check(f))
                .collect()
        };
        for check in missing.iter().chain(&unlisted) {
            record_check(&self.dest, plugin, release, check).await?;
            let _ = self.events.send(ReleaseEvent::FileChecked {
                job: key.to_string(),
                path: check.path.clone(),
                status: check.status.as_str().to_string(),
            });
        }
        let paths = |checks: &[verify::FileCheck]| {
            let mut s = checks
                .iter()
                .take(10)
                .map(|c| c.path.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            if checks.len() > 10 {
                s.push_str(&format!(" … ({} files in all)", checks.len()));
            }
            s
        };
        if !missing.is_empty() {
            return Err(JobError::Setup(
                ReleaseError::MissingFiles {
                    dataset: dataset.name.clone(),
                    paths: paths(&missing),
                    manifest: manifest.name.clone(),
                }
                .to_string(),
            ));
        }
        if !unlisted.is_empty() {
            return Err(JobError::Setup(
                ReleaseError::NotInManifest {
                    dataset: dataset.name.clone(),
                    paths: paths(&unlisted),
                    manifest: manifest.name.clone(),
                }
                .to_string(),
            ));
        }
        Ok(())
    }

    /// Downloads (or hashes in place) every file of the dataset and records each verdict in `psystem.files`.
    /// `None` when paused.
    async fn fetch_dataset(
        &self,
        key: &str,
        dataset: &Dataset,
    ) -> Result<Option<Vec<FetchedFile>>, JobError> {
        let total = dataset.bytes();
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let cache = psystem_transport::Cache::new(self.spec.cache_root.clone());
        let cancel = self.cancel_token();
        let results: Vec<Result<Option<FetchedFile>, ReleaseError>> =
            stream::iter(dataset.files.iter())
                .map(|file| {
                    let done = done.clone();
                    let cache = &cache;
                    let cancel = &cancel;
                    async move {
                        if self.stop_requested() {
                            return Ok(None);
                        }
                        let events = self.events.clone();
                        let key = key.to_string();
                        let mut on_bytes = move |n: u64| {
                            let now = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                            let _ = events.send(ReleaseEvent::Download {
                                job: key.clone(),
                                done: now,
                                total,
                            });
                        };
                        let entry = self.manifest.as_ref().and_then(|m| m.entry(&file.path));
                        verify::fetch_file(
                            &self.transport,
                            cache,
                            &self.release,
                            file,
                            entry,
                            cancel,
                            &mut on_bytes,
                        )
                        .await
                        .map(Some)
                    }
                })
                .buffered(self.spec.workers.max(1))
                .collect()
                .await;
        let mut fetched = Vec::new();
        let mut paused = false;
        for r in results {
            match r {
                Ok(Some(f)) => {
                    record_check(&self.dest, &self.spec.plugin, &self.release.name, &f.check)
                        .await?;
                    let _ = self.events.send(ReleaseEvent::FileChecked {
                        job: key.to_string(),
                        path: f.check.path.clone(),
                        status: f.check.status.as_str().to_string(),
                    });
                    fetched.push(f);
                }
                Ok(None) | Err(ReleaseError::Cancelled) => paused = true,
                Err(e) => return Err(JobError::Setup(e.to_string())),
            }
        }
        if paused {
            return Ok(None);
        }
        Ok(Some(fetched))
    }

    /// A cancellation token that fires when the job is asked to pause or cancel (for downloads).
    fn cancel_token(&self) -> CancellationToken {
        cancel_on_stop(&self.control)
    }
}

fn load_key(load: &release_load::DatasetLoad) -> String {
    load.spec().job_key.clone()
}

/// Records one file's verdict in the destination's `psystem.files` ledger.
///
/// # Errors
/// [`JobError::Destination`].
pub async fn record_check(
    dest: &Destination,
    source: &str,
    release: &str,
    check: &verify::FileCheck,
) -> Result<(), JobError> {
    let status = match check.status {
        FileStatus::Verified => release_load::FileStatus::Verified,
        FileStatus::Mismatch => release_load::FileStatus::Mismatch,
        FileStatus::Unverified => release_load::FileStatus::Unverified,
        FileStatus::Missing => release_load::FileStatus::Missing,
    };
    release_load::record_file_check(
        dest,
        &FileCheck {
            source: source.to_string(),
            release: release.to_string(),
            path: check.path.clone(),
            // A missing file has no size of its own; the manifest's, if any, is in `check.size`.
            size: (check.status != FileStatus::Missing || check.size > 0).then_some(check.size),
            algorithm: check.algorithm.clone(),
            expected: check.expected.clone(),
            computed: check.computed.clone(),
            status,
            detail: check.detail.clone(),
            verified_at: Some(Utc::now()),
        },
    )
    .await?;
    Ok(())
}
