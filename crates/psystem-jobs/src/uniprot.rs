//! UniProtKB loads shared by workers: a flat file split into work units, parsed while it streams, written into the
//! protein tables ([`psystem_postgres::protein`]) by any number of workers — tasks of this process, or
//! `psystem worker --db URL` processes on other machines.
//!
//! **Work units are byte ranges of the decompressed flat file, cut at entry boundaries** (after a `//` line):
//! [`plan_file_units`] reads the file once (gzip decompression plus a `memchr` scan, no parsing) and cuts a unit
//! about every [`WorkerSpec::unit_bytes`] bytes. A unit's spec holds `start`, `end` (decompressed offsets),
//! `entries` and `first_line`, so error messages name the line in the whole file.
//!
//! gzip cannot be entered in the middle, so a worker reaches a unit by decompressing from the start of the file
//! and discarding bytes up to `start`. Units are claimed lowest first and a worker keeps its decoder between
//! units ([`UnitCursor`]): when its next unit lies further on it keeps decompressing forward, so each worker
//! decompresses the file about once in all, whatever the number of units, while parsing (the expensive part) is
//! shared. A unit behind the decoder (a reclaimed one) reopens the file.
//!
//! A worker never sees a password: the [`WorkerSpec`] in the ledger has the source URL without credentials, the
//! file, its MD5 from the release's `RELEASE.metalink`, and the parser options. Each worker downloads the file into
//! its own cache and verifies it before claiming a unit.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use psystem_postgres::protein::{EntryBatch, ProteinFinishReport, ProteinLoad, ProteinUnitReport};
use psystem_postgres::release_load::{BoxError, UnitSpec};
use psystem_postgres::work_units::{ClaimedUnit, UnitState};
use psystem_postgres::{Destination, DestinationError};
use psystem_uniprot::{EntryReader, ErrorPolicy, UnitRange};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::runner::{Control, JobError};

/// The `kind` of a UniProt worker spec.
pub const WORKER_KIND: &str = "uniprot";

/// Default target size of a work unit: 64 MiB of decompressed flat file (about 25,000 Swiss-Prot entries).
pub const DEFAULT_UNIT_BYTES: u64 = 64 << 20;

/// Entries per batch handed from the parser to the writer (one MD5 lookup and one COPY per table per batch).
pub const BATCH_ENTRIES: usize = 500;

/// Attempts per unit before it fails the load.
pub const UNIT_ATTEMPTS: u32 = 3;

/// What a worker needs to join a UniProt load; stored in `psystem.loads.worker_spec`. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// Always [`WORKER_KIND`].
    pub kind: String,
    /// The plugin (source) name: the cache key.
    pub source: String,
    /// The URL of the folder holding the releases, without user name or password.
    pub source_url: String,
    /// The release, e.g. `2024_01`.
    pub release: String,
    /// The release folder relative to `source_url`, ending in `/`.
    pub release_root: String,
    /// The flat file relative to the release folder, e.g. `uniprot_sprot.dat.gz`.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its MD5 from the release's manifest (lower-case hex), when the release had one.
    pub md5: Option<String>,
    /// The dataset (`sprot`, `trembl`).
    pub dataset: String,
    /// What to do with an entry that fails to parse.
    pub error_policy: ErrorPolicy,
    /// Target size of a unit in decompressed bytes.
    pub unit_bytes: u64,
    /// Seconds a running unit may go without a heartbeat before it is reclaimed.
    pub heartbeat_timeout_secs: f64,
    /// The digest of the file the load's units were planned over, `algorithm:hex` ([`file_digest`]): a worker
    /// checks its copy against it (also when the release has no manifest) and never works a unit of one file over
    /// another. Absent in specs written before it existed (then only `md5` is checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_digest: Option<String>,
}

impl WorkerSpec {
    /// The heartbeat timeout.
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.heartbeat_timeout_secs.max(0.1))
    }
}

/// The digest identifying the bytes of a fetched file, `algorithm:hex`: the digest computed while it was read,
/// with the manifest's algorithm (`md5` for UniProt's `RELEASE.metalink`), or `sha1` when the release has no
/// manifest entry for it. Recorded with a load so that its units are never applied to another file.
pub fn file_digest(check: &psystem_releases::verify::FileCheck) -> String {
    format!(
        "{}:{}",
        check.algorithm.as_deref().unwrap_or("sha1"),
        check.computed.as_deref().unwrap_or_default()
    )
}

/// Opens a flat file for reading its decompressed text: gzip (single or multi-member, detected by the magic
/// bytes `1f 8b`) or plain.
///
/// # Errors
/// The I/O error of opening or reading the first bytes.
pub fn open_decompressed(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    let mut file = BufReader::with_capacity(1 << 20, File::open(path)?);
    let gzip = io::BufRead::fill_buf(&mut file)?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

/// Splits the flat file at `path` into work units of about `unit_bytes` decompressed bytes, at entry boundaries.
/// Unit keys are the zero-padded start offsets (`000000000000000`), so they sort in file order.
///
/// # Errors
/// [`JobError::Setup`] naming the file when it cannot be read or decompressed.
pub fn plan_file_units(path: &Path, unit_bytes: u64) -> Result<Vec<UnitSpec>, JobError> {
    let fail =
        |e: String| JobError::Setup(format!("splitting {} into work units: {e}", path.display()));
    let input = open_decompressed(path).map_err(|e| fail(e.to_string()))?;
    let ranges =
        psystem_uniprot::plan_units(input, unit_bytes.max(1)).map_err(|e| fail(e.to_string()))?;
    Ok(ranges
        .into_iter()
        .filter(|r| r.entries > 0)
        .map(|r| UnitSpec {
            key: format!("{:015}", r.start),
            bytes: r.end - r.start,
            spec: serde_json::to_value(r).ok(),
        })
        .collect())
}

/// A decoder positioned somewhere in the decompressed file, kept by a worker between units.
pub struct UnitCursor {
    path: PathBuf,
    reader: Box<dyn Read + Send>,
    pos: u64,
}

impl std::fmt::Debug for UnitCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnitCursor")
            .field("path", &self.path)
            .field("pos", &self.pos)
            .finish()
    }
}

impl UnitCursor {
    /// A cursor at `start` in `path`: `previous` is reused when it is on the same file at or before `start`,
    /// otherwise the file is opened again. Bytes before `start` are decompressed and discarded.
    ///
    /// # Errors
    /// I/O errors, and `UnexpectedEof` when the file is shorter than `start`.
    pub fn at(path: &Path, start: u64, previous: Option<UnitCursor>) -> io::Result<UnitCursor> {
        let mut cursor = match previous {
            Some(c) if c.path == path && c.pos <= start => c,
            _ => UnitCursor {
                path: path.to_path_buf(),
                reader: open_decompressed(path)?,
                pos: 0,
            },
        };
        let skip = start - cursor.pos;
        if skip > 0 {
            let skipped = io::copy(&mut (&mut cursor.reader).take(skip), &mut io::sink())?;
            if skipped != skip {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the file ends at byte {} before the unit's start {start}",
                        cursor.pos + skipped
                    ),
                ));
            }
            cursor.pos = start;
        }
        Ok(cursor)
    }
}

/// Parses the unit `range` of `path` in a blocking thread and sends its entries in batches of `batch_entries`.
/// The thread returns the cursor, positioned at the unit's end, when the unit was read to its end (`None` when it
/// stopped early: an error, or the receiver went away).
pub fn spawn_unit_parser(
    path: PathBuf,
    range: UnitRange,
    policy: ErrorPolicy,
    batch_entries: usize,
    previous: Option<UnitCursor>,
) -> (
    mpsc::Receiver<Result<EntryBatch, BoxError>>,
    tokio::task::JoinHandle<Option<UnitCursor>>,
) {
    let (tx, rx) = mpsc::channel::<Result<EntryBatch, BoxError>>(2);
    let handle = tokio::task::spawn_blocking(move || {
        let mut cursor = match UnitCursor::at(&path, range.start, previous) {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.blocking_send(Err(format!("{}: {e}", path.display()).into()));
                return None;
            }
        };
        let len = range.end - range.start;
        let mut reader = EntryReader::new((&mut cursor.reader).take(len))
            .with_source_name(path.clone())
            .with_position(range.start, range.first_line);
        let mut batch = EntryBatch::default();
        let mut complete = true;
        for item in reader.by_ref() {
            match item {
                Ok(entry) => batch.entries.push(entry),
                Err(e) if e.is_io() || policy == ErrorPolicy::Fail => {
                    let _ = tx.blocking_send(Err(Box::new(e)));
                    complete = false;
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "Skipping a malformed UniProt entry.");
                    batch.skipped.push(format!(
                        "{} (line {}): {}",
                        e.accession.as_deref().unwrap_or("?"),
                        e.line,
                        e.kind
                    ));
                }
            }
            if batch.entries.len() >= batch_entries
                && tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err()
            {
                return None;
            }
        }
        if !complete {
            return None;
        }
        let consumed = reader.bytes_consumed() - range.start;
        drop(reader);
        if (!batch.entries.is_empty() || !batch.skipped.is_empty())
            && tx.blocking_send(Ok(batch)).is_err()
        {
            return None;
        }
        if consumed != len {
            return None;
        }
        cursor.pos = range.end;
        Some(cursor)
    });
    (rx, handle)
}

/// What one worker did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WorkerReport {
    /// Units written.
    pub units: u64,
    /// Their summed reports.
    pub entries: ProteinUnitReport,
}

/// Progress of a worker: called after each unit.
pub type OnUnit<'a> = &'a (dyn Fn(&ClaimedUnit, &ProteinUnitReport) + Send + Sync);

/// One worker's loop over a load: claim a unit, parse it from the local copy of the file while a heartbeat
/// keeps the claim alive, write it in one transaction, repeat until no unit is left or `control` says stop.
/// A unit that fails is retried up to [`UNIT_ATTEMPTS`] times (by any worker); when it fails for good the load is
/// marked failed and the error returned.
///
/// # Errors
/// [`JobError::Destination`] for database errors and a unit that failed for good.
pub async fn work_on_load(
    dest: &Destination,
    load: &ProteinLoad,
    spec: &WorkerSpec,
    local: &Path,
    worker: &str,
    control: &watch::Receiver<Control>,
    on_unit: OnUnit<'_>,
) -> Result<WorkerReport, JobError> {
    let queue = load.queue();
    let mut report = WorkerReport::default();
    let mut cursor: Option<UnitCursor> = None;
    loop {
        if *control.borrow() != Control::Run {
            break;
        }
        let unit = match queue.claim(dest, worker).await {
            Ok(Some(u)) => u,
            Ok(None) => break,
            Err(DestinationError::LoadNotActive { .. }) => break,
            Err(e) => return Err(e.into()),
        };
        let range: UnitRange = match unit
            .spec
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
        {
            Some(r) => r,
            None => {
                let message = format!("work unit {} has no byte range", unit.key);
                queue.fail(dest, &unit, &message, 1).await?;
                load.abort(dest, &message).await?;
                return Err(JobError::Setup(message));
            }
        };
        let (batches, parser) = spawn_unit_parser(
            local.to_path_buf(),
            range,
            spec.error_policy,
            BATCH_ENTRIES,
            cursor.take(),
        );
        let beat = heartbeat(dest.clone(), queue, unit.clone());
        let written = load.write_unit(dest, &unit, batches).await;
        beat.abort();
        cursor = parser.await.ok().flatten();
        match written {
            Ok(r) => {
                report.units += 1;
                add_report(&mut report.entries, &r);
                on_unit(&unit, &r);
            }
            Err(e) => {
                let message = psystem_core::error::error_chain(&e);
                // A malformed entry fails the same way every time: no point in trying the unit again.
                let attempts = if is_parse_error(&e) { 1 } else { UNIT_ATTEMPTS };
                match queue.fail(dest, &unit, &message, attempts).await {
                    Ok(UnitState::Failed) => {
                        let message =
                            format!("unit {} failed {} times: {message}", unit.key, unit.attempt);
                        load.abort(dest, &message).await?;
                        return Err(e.into());
                    }
                    Ok(_) => {
                        warn!(worker, unit = %unit.key, error = %message, "Unit failed; it will be retried.")
                    }
                    Err(lost) => {
                        warn!(worker, unit = %unit.key, error = %lost, "Recording a unit failure failed.")
                    }
                }
            }
        }
    }
    Ok(report)
}

/// Whether `e` is a malformed entry (not an I/O error) reported by the parser of a unit.
fn is_parse_error(e: &DestinationError) -> bool {
    match e {
        DestinationError::UnitSource { source, .. } => source
            .downcast_ref::<psystem_uniprot::ParseError>()
            .is_some_and(|p| !p.is_io()),
        _ => false,
    }
}

fn add_report(sum: &mut ProteinUnitReport, r: &ProteinUnitReport) {
    sum.entries += r.entries;
    sum.inserted += r.inserted;
    sum.updated += r.updated;
    sum.unchanged += r.unchanged;
    sum.skipped += r.skipped;
    sum.skipped_entries
        .extend(r.skipped_entries.iter().take(20).cloned());
}

/// Heartbeats `unit` every third of the queue's timeout until aborted.
pub(crate) fn heartbeat(
    dest: Destination,
    queue: psystem_postgres::work_units::WorkQueue,
    unit: ClaimedUnit,
) -> tokio::task::JoinHandle<()> {
    let every = (queue.heartbeat_timeout() / 3).max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = queue.heartbeat(&dest, &unit).await {
                warn!(unit = %unit.key, error = %e, "Heartbeat failed.");
                if matches!(e, DestinationError::UnitLost { .. }) {
                    return;
                }
            }
        }
    })
}

/// Finishes `load` when every unit is done; `Ok(None)` when units remain or another worker finished it first.
///
/// # Errors
/// [`JobError::Destination`].
pub async fn finish_if_done(
    dest: &Destination,
    load: &ProteinLoad,
) -> Result<Option<ProteinFinishReport>, JobError> {
    let counts = load.queue().counts(dest).await?;
    if counts.done < counts.total() {
        return Ok(None);
    }
    match load.finish(dest).await {
        Ok(r) => Ok(Some(r)),
        Err(DestinationError::LoadNotActive { .. } | DestinationError::UnitsNotDone { .. }) => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs `workers` worker loops in this process on `load` until every unit is done (also waiting for units that
/// workers of other processes are writing, and reclaiming theirs when they stop heartbeating), then finishes the
/// load. `Ok(None)` when `control` stopped it first (committed units are kept).
///
/// # Errors
/// A unit that failed for good, database errors.
pub async fn run_local_workers(
    dest: &Destination,
    load: &ProteinLoad,
    spec: &WorkerSpec,
    local: &Path,
    workers: usize,
    control: &watch::Receiver<Control>,
    on_unit: OnUnit<'_>,
) -> Result<Option<ProteinFinishReport>, JobError> {
    let name = worker_name();
    loop {
        let loops = (0..workers.max(1)).map(|w| {
            let worker = format!("{name}/{w}");
            async move { work_on_load(dest, load, spec, local, &worker, control, on_unit).await }
        });
        for result in futures::future::join_all(loops).await {
            result?;
        }
        if *control.borrow() != Control::Run {
            return Ok(None);
        }
        if let Some(report) = finish_if_done(dest, load).await? {
            return Ok(Some(report));
        }
        let counts = load.queue().counts(dest).await?;
        if counts.failed > 0 {
            return Err(JobError::Setup(format!(
                "load #{} has {} failed unit(s); see psystem.work_units.last_error",
                load.load_id(),
                counts.failed
            )));
        }
        let state = dest.load_by_id(load.load_id()).await?.map(|r| r.state);
        if state != Some(psystem_core::JobState::Running) {
            return Err(JobError::Setup(format!(
                "load #{} is {} (another process ended it)",
                load.load_id(),
                state
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "gone".into())
            )));
        }
        debug!(
            load_id = load.load_id(),
            running = counts.running,
            "Waiting for units other workers hold."
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub use crate::runner::worker_name;
