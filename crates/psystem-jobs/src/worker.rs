//! `psystem worker`: a process that joins the shared loads of a database and works their units, on any machine.
//!
//! A shared load is a running row of `psystem.loads` with a `worker_spec` (see
//! [`psystem_postgres::work_units::shared_loads`]). Two kinds exist:
//! - `uniprot` ([`crate::uniprot::WorkerSpec`]): a flat file split into byte ranges. The worker downloads the
//!   file into its own cache, checks its MD5, works units ([`crate::uniprot::work_on_load`]) and finishes the load
//!   when it writes the last unit.
//! - `parquet` ([`ParquetWorkerSpec`]): an Open Targets dataset, one unit per Parquet file. For each unit it
//!   claims, the worker downloads that file, checks it against the release manifest's digest (in the unit's spec),
//!   and copies it into the load's staging table ([`psystem_postgres::release_load::DatasetLoad::copy_unit`]);
//!   the run that opened the load finishes it (it knows the key and the options), waiting for the units workers
//!   hold.
//!
//! A worker never receives a password: specs hold source URLs without credentials; the database is the worker's
//! own `--db`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use psystem_core::flatten::FlattenOptions;
use psystem_postgres::protein::{self, ProteinFinishReport, ProteinUnitReport};
use psystem_postgres::release_load::{self, DatasetLoad};
use psystem_postgres::work_units::{self, ClaimedUnit, SharedLoad, UnitState, WorkQueue};
use psystem_postgres::{Destination, DestinationError};
use psystem_releases::model::{DataFile, Layout, Release};
use psystem_releases::reader::{stream_file, DatasetSchema};
use psystem_releases::verify::{self, FileStatus};
use psystem_sources::manifest::{Algorithm, ManifestEntry};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::runner::{Control, JobError};
use crate::uniprot::{self, WorkerSpec};

/// The `kind` of an Open Targets (Parquet) worker spec.
pub const PARQUET_KIND: &str = "parquet";

/// Attempts per Parquet unit before it fails (as in the run that opened the load).
const PARQUET_ATTEMPTS: u32 = 2;

/// What a worker needs to copy the files of an Open Targets dataset load; stored in `psystem.loads.worker_spec`.
/// Each unit's spec is a [`ParquetUnit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParquetWorkerSpec {
    /// Always [`PARQUET_KIND`].
    pub kind: String,
    /// The plugin (source) name: the cache key.
    pub source: String,
    /// The URL of the folder holding the releases, without user name or password.
    pub source_url: String,
    /// The release, e.g. `25.03`.
    pub release: String,
    /// The release folder relative to `source_url`, ending in `/`.
    pub release_root: String,
    /// The dataset as found in the release.
    pub dataset: String,
    /// Its Hive partition keys, in folder order.
    pub partition_keys: Vec<String>,
    /// How structs become columns.
    pub flatten: FlattenOptions,
    /// Seconds a running unit may go without a heartbeat before it is reclaimed.
    pub heartbeat_timeout_secs: f64,
}

/// One Parquet file of a shared load (`psystem.work_units.spec`; the unit key is its release-relative path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParquetUnit {
    /// Size in bytes.
    pub size: u64,
    /// The manifest's algorithm (`sha1`, `md5`, `sha256`), when the release has a manifest.
    pub algorithm: Option<String>,
    /// The manifest's digest.
    pub digest: Option<String>,
    /// Hive partition values of the file's folders.
    pub partitions: Vec<(String, String)>,
}

pub use crate::runner::worker_name;

/// Options of `psystem worker`.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The database whose shared loads to join.
    pub destination_url: String,
    /// The download cache root.
    pub cache_root: PathBuf,
    /// Worker loops in this process.
    pub threads: usize,
    /// Exit when no load has work left, instead of waiting for new loads.
    pub exit_when_idle: bool,
    /// How often to look for new loads when idle.
    pub poll: Duration,
    /// Transport timeouts and retries.
    pub transport: psystem_transport::TransportOptions,
}

/// What `psystem worker` reports.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// Joined a load.
    Joined {
        /// The load id.
        load_id: i64,
        /// The job key.
        job: String,
        /// The release.
        release: String,
    },
    /// Wrote a unit.
    UnitDone {
        /// The load id.
        load_id: i64,
        /// The unit key.
        unit: String,
        /// Rows (Parquet) or entries (UniProt) of the unit.
        rows: u64,
        /// UniProt: what the unit changed.
        #[serde(skip_serializing_if = "Option::is_none")]
        report: Option<ProteinUnitReport>,
    },
    /// Completed a UniProt load (this worker wrote its last unit and finished it).
    Completed {
        /// The load id.
        load_id: i64,
        /// What the load changed.
        report: ProteinFinishReport,
    },
    /// A load could not be worked on, or a unit failed.
    Failed {
        /// The load id.
        load_id: i64,
        /// Why.
        error: String,
    },
    /// Nothing to do.
    Idle,
}

/// Runs `psystem worker`: joins the shared loads of a database, oldest first, and works their units with
/// `threads` loops; then waits for new loads — or, with `exit_when_idle`, exits once no shared load has a unit
/// pending or running (units other workers hold are waited for, and taken over if their heartbeat stops).
/// Stops at the next unit boundary when `control` says so. Returns the number of units written.
///
/// # Errors
/// The database cannot be reached.
pub async fn run_worker(
    options: WorkerOptions,
    events: mpsc::UnboundedSender<WorkerEvent>,
    control: watch::Receiver<Control>,
) -> Result<u64, JobError> {
    let dest = Destination::connect(&options.destination_url).await?;
    let mut state = WorkerState {
        options,
        events,
        control,
        name: worker_name(),
        joined: HashMap::new(),
        unusable: HashSet::new(),
        units_done: 0,
    };
    let mut idle_reported = false;
    loop {
        if state.stopped() {
            break;
        }
        let loads: Vec<SharedLoad> = work_units::shared_loads(&dest)
            .await?
            .into_iter()
            .filter(|l| !state.unusable.contains(&l.load_id))
            .collect();
        // A load with units still running elsewhere is not over: one of them may stop heartbeating and need
        // taking over, so an idle worker only leaves when no shared load has units left at all.
        let any_left = !loads.is_empty();
        let mut worked = false;
        for shared in loads {
            if state.stopped() {
                break;
            }
            let kind = shared.worker_spec.get("kind").and_then(|k| k.as_str());
            let units = match kind {
                Some(uniprot::WORKER_KIND) => state.uniprot_load(&dest, &shared).await?,
                Some(PARQUET_KIND) => state.parquet_load(&dest, &shared).await?,
                _ => {
                    state.unusable.insert(shared.load_id);
                    0
                }
            };
            worked |= units > 0;
        }
        if worked {
            idle_reported = false;
            continue;
        }
        if state.options.exit_when_idle && !any_left {
            break;
        }
        if !idle_reported && !any_left {
            let _ = state.events.send(WorkerEvent::Idle);
            idle_reported = true;
        }
        let mut control = state.control.clone();
        tokio::select! {
            _ = tokio::time::sleep(state.options.poll) => {}
            _ = control.changed() => {}
        }
    }
    dest.close().await;
    Ok(state.units_done)
}

struct WorkerState {
    options: WorkerOptions,
    events: mpsc::UnboundedSender<WorkerEvent>,
    control: watch::Receiver<Control>,
    name: String,
    /// UniProt loads joined so far and their verified local file.
    joined: HashMap<i64, PathBuf>,
    /// Loads this worker cannot work on (unknown kind, its file cannot be fetched or does not match).
    unusable: HashSet<i64>,
    units_done: u64,
}

impl WorkerState {
    fn stopped(&self) -> bool {
        *self.control.borrow() != Control::Run
    }

    fn give_up(&mut self, load_id: i64, error: String) {
        warn!(load_id, error, "Cannot work on a shared load.");
        self.unusable.insert(load_id);
        let _ = self.events.send(WorkerEvent::Failed { load_id, error });
    }

    /// Works the units of a UniProt load; returns how many this process wrote.
    async fn uniprot_load(
        &mut self,
        dest: &Destination,
        shared: &SharedLoad,
    ) -> Result<u64, JobError> {
        let load_id = shared.load_id;
        let Ok(spec) = serde_json::from_value::<WorkerSpec>(shared.worker_spec.clone()) else {
            self.give_up(load_id, "its worker spec cannot be read".into());
            return Ok(0);
        };
        let load = match protein::attach_protein_load(dest, load_id).await {
            Ok(l) => l,
            Err(DestinationError::LoadNotActive { .. }) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let local = match self.joined.get(&load_id) {
            Some(p) => p.clone(),
            None => {
                let _ = self.events.send(WorkerEvent::Joined {
                    load_id,
                    job: shared.job_key.clone(),
                    release: spec.release.clone(),
                });
                // The units are byte ranges of the file the load was split over: check the copy against that
                // file's digest (the release's MD5, or the digest the load recorded when there is no manifest).
                let (algorithm, digest) =
                    match spec.file_digest.as_deref().and_then(|d| d.split_once(':')) {
                        Some((algorithm, digest)) => (Some(algorithm), Some(digest)),
                        None => (spec.md5.as_ref().map(|_| "md5"), spec.md5.as_deref()),
                    };
                let file = FileToFetch {
                    source: &spec.source,
                    source_url: &spec.source_url,
                    release: &spec.release,
                    release_root: &spec.release_root,
                    path: &spec.file,
                    size: spec.size,
                    algorithm,
                    digest,
                };
                match fetch_verified(&self.options, &file, &self.control).await {
                    Ok(Some(p)) => {
                        self.joined.insert(load_id, p.clone());
                        p
                    }
                    Ok(None) => return Ok(0),
                    Err(e) => {
                        self.give_up(
                            load_id,
                            format!(
                                "{e} (the work units of load #{load_id} are byte ranges of the file with {} \
                                 {}, so this worker works on them only with that file; when the mirror now serves \
                                 another one, `psystem run` of job `{}` splits the new file and loads it)",
                                algorithm.unwrap_or("no digest"),
                                digest.unwrap_or_default(),
                                shared.job_key
                            ),
                        );
                        return Ok(0);
                    }
                }
            }
        };
        let events = &self.events;
        let on_unit = move |unit: &ClaimedUnit, r: &ProteinUnitReport| {
            let _ = events.send(WorkerEvent::UnitDone {
                load_id,
                unit: unit.key.clone(),
                rows: r.entries,
                report: Some(r.clone()),
            });
        };
        let loops = (0..self.options.threads.max(1)).map(|w| {
            let worker = format!("{}/{w}", self.name);
            let (load, spec, local, control, on_unit) =
                (&load, &spec, &local, &self.control, &on_unit);
            async move {
                uniprot::work_on_load(dest, load, spec, local, &worker, control, on_unit).await
            }
        });
        let mut units = 0;
        for r in futures::future::join_all(loops).await {
            match r {
                Ok(r) => units += r.units,
                Err(e) => {
                    let _ = self.events.send(WorkerEvent::Failed {
                        load_id,
                        error: psystem_core::error::error_chain(&e),
                    });
                }
            }
        }
        self.units_done += units;
        if !self.stopped() {
            if let Some(report) = uniprot::finish_if_done(dest, &load).await? {
                info!(load_id, "Shared load completed by this worker.");
                let _ = self.events.send(WorkerEvent::Completed { load_id, report });
            }
        }
        Ok(units)
    }

    /// Works the units (Parquet files) of an Open Targets dataset load; returns how many this process copied.
    async fn parquet_load(
        &mut self,
        dest: &Destination,
        shared: &SharedLoad,
    ) -> Result<u64, JobError> {
        let load_id = shared.load_id;
        let Ok(spec) = serde_json::from_value::<ParquetWorkerSpec>(shared.worker_spec.clone())
        else {
            self.give_up(load_id, "its worker spec cannot be read".into());
            return Ok(0);
        };
        if !self.joined.contains_key(&load_id) {
            let _ = self.events.send(WorkerEvent::Joined {
                load_id,
                job: shared.job_key.clone(),
                release: spec.release.clone(),
            });
            self.joined.insert(load_id, PathBuf::new());
        }
        let queue = WorkQueue::new(
            load_id,
            Duration::from_secs_f64(spec.heartbeat_timeout_secs.max(0.1)),
        );
        let loops =
            (0..self.options.threads.max(1)).map(|w| {
                let worker = format!("{}/{w}", self.name);
                let (spec, options, control, events) =
                    (&spec, &self.options, &self.control, &self.events);
                async move {
                    copy_parquet_units(dest, queue, spec, options, &worker, control, events).await
                }
            });
        let mut units = 0;
        for r in futures::future::join_all(loops).await {
            match r {
                Ok(n) => units += n,
                Err(e) => {
                    let _ = self.events.send(WorkerEvent::Failed {
                        load_id,
                        error: psystem_core::error::error_chain(&e),
                    });
                }
            }
        }
        self.units_done += units;
        Ok(units)
    }
}

/// One worker loop over a Parquet load: claim a file, download and verify it while heartbeating, read its
/// footer (the first time: attach to the load with the dataset's flattened schema), copy it into the staging
/// table. Returns the units copied.
async fn copy_parquet_units(
    dest: &Destination,
    queue: WorkQueue,
    spec: &ParquetWorkerSpec,
    options: &WorkerOptions,
    worker: &str,
    control: &watch::Receiver<Control>,
    events: &mpsc::UnboundedSender<WorkerEvent>,
) -> Result<u64, JobError> {
    let load_id = queue.load_id();
    let mut attached: Option<(DatasetLoad, DatasetSchema)> = None;
    let mut copied = 0;
    while *control.borrow() == Control::Run {
        let unit = match queue.claim(dest, worker).await {
            Ok(Some(u)) => u,
            Ok(None) | Err(DestinationError::LoadNotActive { .. }) => break,
            Err(e) => return Err(e.into()),
        };
        let beat = uniprot::heartbeat(dest.clone(), queue, unit.clone());
        let result = copy_one(dest, load_id, &unit, spec, options, control, &mut attached).await;
        beat.abort();
        match result {
            Ok(rows) => {
                copied += 1;
                let _ = events.send(WorkerEvent::UnitDone {
                    load_id,
                    unit: unit.key.clone(),
                    rows,
                    report: None,
                });
            }
            Err(e) => {
                let message = psystem_core::error::error_chain(&e);
                let state = queue.fail(dest, &unit, &message, PARQUET_ATTEMPTS).await;
                let _ = events.send(WorkerEvent::Failed {
                    load_id,
                    error: format!("unit {}: {message}", unit.key),
                });
                if matches!(state, Ok(UnitState::Failed)) {
                    return Err(e);
                }
            }
        }
    }
    Ok(copied)
}

async fn copy_one(
    dest: &Destination,
    load_id: i64,
    unit: &ClaimedUnit,
    spec: &ParquetWorkerSpec,
    options: &WorkerOptions,
    control: &watch::Receiver<Control>,
    attached: &mut Option<(DatasetLoad, DatasetSchema)>,
) -> Result<u64, JobError> {
    let file: ParquetUnit = unit
        .spec
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| JobError::Setup(format!("work unit {} has no file spec", unit.key)))?;
    let to_fetch = FileToFetch {
        source: &spec.source,
        source_url: &spec.source_url,
        release: &spec.release,
        release_root: &spec.release_root,
        path: &unit.key,
        size: file.size,
        algorithm: file.algorithm.as_deref(),
        digest: file.digest.as_deref(),
    };
    let Some(local) = fetch_verified(options, &to_fetch, control).await? else {
        return Err(JobError::Setup("stopped".into()));
    };
    if attached.is_none() {
        let summary = psystem_releases::footer::read_local_footer(&local)
            .map_err(|e| JobError::Setup(e.to_string()))?;
        let schema = DatasetSchema::new(
            &spec.dataset,
            &summary.schema,
            &spec.partition_keys,
            &spec.flatten,
        )
        .map_err(|e| JobError::Setup(e.to_string()))?
        .with_origin(&unit.key);
        let load = release_load::attach_dataset_load(dest, load_id, schema.flat.clone()).await?;
        *attached = Some((load, schema));
    }
    let (load, schema) = attached.as_ref().expect("attached above");
    let batches = stream_file(
        local,
        unit.key.clone(),
        file.partitions.clone(),
        schema.clone(),
    );
    let report = load.copy_unit(dest, unit, batches).await?;
    Ok(report.rows)
}

/// A release file a worker fetches into its cache.
struct FileToFetch<'a> {
    source: &'a str,
    source_url: &'a str,
    release: &'a str,
    release_root: &'a str,
    path: &'a str,
    size: u64,
    algorithm: Option<&'a str>,
    digest: Option<&'a str>,
}

/// Downloads a release file into this machine's cache (resuming a partial download) and checks it against the
/// digest of the release's manifest. `Ok(None)` when stopped.
async fn fetch_verified(
    options: &WorkerOptions,
    f: &FileToFetch<'_>,
    control: &watch::Receiver<Control>,
) -> Result<Option<PathBuf>, JobError> {
    let setup =
        |e: String| JobError::Setup(format!("file {} of release {}: {e}", f.path, f.release));
    let transport = psystem_transport::Transport::new(f.source_url, options.transport.clone())
        .map_err(|e| setup(e.to_string()))?;
    let cache = psystem_transport::Cache::new(options.cache_root.clone());
    let release = Release {
        source: f.source.to_string(),
        name: f.release.to_string(),
        root: f.release_root.to_string(),
        layout: Layout::UniProt,
        datasets: Vec::new(),
        manifest: None,
        sidecars: Vec::new(),
    };
    let file = DataFile {
        path: f.path.to_string(),
        size: f.size,
        partitions: Vec::new(),
    };
    let algorithm = match f.algorithm {
        None => None,
        Some("md5") => Some(Algorithm::Md5),
        Some("sha1") => Some(Algorithm::Sha1),
        Some("sha256") => Some(Algorithm::Sha256),
        Some(other) => return Err(setup(format!("unknown checksum algorithm {other}"))),
    };
    let entry = match (algorithm, f.digest) {
        (Some(algorithm), Some(digest)) => Some(ManifestEntry {
            path: f.path.to_string(),
            algorithm,
            digest: digest.to_string(),
            size: Some(f.size),
        }),
        _ => None,
    };
    let cancel = crate::runner::cancel_on_stop(control);
    let fetched = verify::fetch_file(
        &transport,
        &cache,
        &release,
        &file,
        entry.as_ref(),
        &cancel,
        &mut |_| {},
    )
    .await;
    let fetched = match fetched {
        Ok(f) => f,
        Err(psystem_releases::ReleaseError::Cancelled) => return Ok(None),
        Err(e) => return Err(setup(e.to_string())),
    };
    match fetched.check.status {
        FileStatus::Mismatch => {
            Err(setup(fetched.check.detail.clone().unwrap_or_else(|| {
                "does not match the release's checksum".into()
            })))
        }
        FileStatus::Unverified if f.digest.is_some() => Err(setup("could not be verified".into())),
        _ => Ok(Some(fetched.local)),
    }
}
