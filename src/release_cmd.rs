//! `psystem releases list|show|verify` and `psystem run|resume` for release plugins (Open Targets).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use psystem_api::releases::{ReleaseRunRequest, ShowOptions};
use psystem_api::Api;
use psystem_core::{JobState, LoadMode};
use psystem_jobs::release::{ReleaseEvent, ReleaseOutcome};
use psystem_jobs::Control;
use tokio::sync::{mpsc, watch};

use crate::output::human_bytes;
use crate::{Interrupt, EXIT_PAUSED};

/// `psystem releases …`.
#[derive(Subcommand, Debug)]
pub enum ReleasesCommand {
    /// The releases a release plugin's source offers, newest first.
    List {
        /// A release plugin, e.g. opentargets.
        plugin: String,
        /// Read from this folder of releases instead of the manifest's `source.url` (a mirror).
        #[arg(long, value_name = "URL")]
        source_url: Option<String>,
    },
    /// A release's datasets with file counts and sizes; --schema reads the columns from the Parquet footers
    /// (range requests, nothing downloaded).
    Show {
        /// A release plugin, e.g. opentargets.
        plugin: String,
        /// The release (YY.MM); default: the newest.
        release: Option<String>,
        /// Only these datasets (repeat the flag).
        #[arg(long = "dataset", value_name = "NAME")]
        datasets: Vec<String>,
        /// List every file with its size.
        #[arg(long)]
        files: bool,
        /// Show each dataset's columns (flattened, as loaded) with their Arrow and PostgreSQL types.
        #[arg(long)]
        schema: bool,
        /// Download the datasets into the cache and propose primary keys from uniqueness in the data.
        #[arg(long)]
        suggest_keys: bool,
        /// Read from this folder of releases instead of the manifest's `source.url`.
        #[arg(long, value_name = "URL")]
        source_url: Option<String>,
    },
    /// Check the release's manifest against its .sha1, then download (resumably, into ~/.psystem/cache) and
    /// hash every file of the chosen datasets; with --db the verdicts go into psystem.files.
    Verify {
        /// A release plugin, e.g. opentargets.
        plugin: String,
        /// The release (YY.MM); default: the newest.
        release: Option<String>,
        /// Only these datasets (repeat the flag); default: all.
        #[arg(long = "dataset", value_name = "NAME")]
        datasets: Vec<String>,
        /// Record the verdicts in this database's psystem.files ledger.
        #[arg(long, value_name = "URL")]
        db: Option<String>,
        /// Read from this folder of releases instead of the manifest's `source.url`.
        #[arg(long, value_name = "URL")]
        source_url: Option<String>,
    },
}

/// The options of `psystem run` that only release plugins use.
#[derive(Args, Debug, Default)]
pub struct ReleaseRunArgs {
    /// Release plugins: the release to load (YY.MM or `latest`; default: latest).
    #[arg(long, value_name = "YY.MM")]
    pub release: Option<String>,
    /// Release plugins: `replace` (full refresh, swapped in atomically) or `merge` (upsert by primary key and
    /// delete rows absent from the release); default: the entry's mode, else replace.
    #[arg(long, value_name = "MODE", value_parser = ["replace", "merge"])]
    pub mode: Option<String>,
    /// Release plugins: datasets loaded at the same time (default 2).
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Release plugins: files (Open Targets) or work units (UniProt) worked on at the same time per dataset
    /// (default 2). UniProt with 0: record the shared load and leave it to `psystem worker` processes.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// UniProt: target size of a work unit, in decompressed flat-file bytes (e.g. 64MiB, 256KiB; default 64MiB).
    #[arg(long, value_name = "SIZE")]
    pub unit_size: Option<bytesize::ByteSize>,
    /// UniProt: count and list entries that fail to parse and go on (default: such an entry fails its unit).
    #[arg(long)]
    pub skip_bad_entries: bool,
    /// Release plugins: how long a work unit may go without a heartbeat before another worker (a `psystem
    /// worker` elsewhere) takes it over (e.g. 30s, 2m; default 60s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub heartbeat_timeout: Option<std::time::Duration>,
    /// Release plugins: stop all datasets at the first failure (default: finish the others, then report).
    #[arg(long)]
    pub fail_fast: bool,
    /// Release plugins: load a release that has no checksum manifest (the ledger records it as unverified).
    #[arg(long)]
    pub allow_unverified: bool,
    /// Release plugins: apply an incompatible column type change with a cast (USING col::newtype).
    #[arg(long)]
    pub allow_casts: bool,
}

/// Runs `psystem releases …`.
pub async fn releases(api: &Api, cmd: ReleasesCommand, json: bool) -> Result<ExitCode> {
    match cmd {
        ReleasesCommand::List { plugin, source_url } => {
            let list = api.releases_list(&plugin, source_url.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for r in &list {
                    println!("{}{}", r.name, if r.latest { "  (latest)" } else { "" });
                }
            }
        }
        ReleasesCommand::Show {
            plugin,
            release,
            datasets,
            files,
            schema,
            suggest_keys,
            source_url,
        } => {
            let options = ShowOptions {
                datasets,
                files,
                schema,
                suggest_keys,
            };
            let d = api
                .release_show(&plugin, release.as_deref(), source_url.as_deref(), &options)
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("{} release {} at {}", d.source, d.release, d.url);
            println!("  layout:   {}", d.layout);
            println!(
                "  manifest: {}",
                d.manifest
                    .as_deref()
                    .unwrap_or("none (loads need --allow-unverified)")
            );
            println!("  {} datasets:", d.datasets.len());
            let width = d.datasets.iter().map(|x| x.name.len()).max().unwrap_or(0);
            for ds in &d.datasets {
                let parts = if ds.partition_keys.is_empty() {
                    String::new()
                } else {
                    format!("  partitioned by {}", ds.partition_keys.join(", "))
                };
                let entry = ds
                    .entry
                    .as_deref()
                    .map(|e| format!("  → entry {e}"))
                    .unwrap_or_default();
                println!(
                    "    {:width$}  {:>4} files  {:>10}{}{}{}",
                    ds.name,
                    ds.files,
                    human_bytes(ds.bytes),
                    ds.rows.map(|r| format!("  {r} rows")).unwrap_or_default(),
                    parts,
                    entry,
                );
                for (path, size) in &ds.file_list {
                    println!("        {path}  {}", human_bytes(*size));
                }
                for (name, arrow, pg) in &ds.columns {
                    println!("        {name}: {pg}  ({arrow})");
                }
                if let Some(k) = &ds.keys {
                    if k.keys.is_empty() {
                        println!("        no unique key found among the text and integer columns");
                    }
                    for key in &k.keys {
                        println!(
                            "        suggested primary key: [{}] (unique and non-null in {} rows)",
                            key.columns.join(", "),
                            key.rows
                        );
                    }
                    for (cols, why) in k.rejected.iter().take(5) {
                        println!("        not a key: [{}]: {why}", cols.join(", "));
                    }
                }
            }
        }
        ReleasesCommand::Verify {
            plugin,
            release,
            datasets,
            db,
            source_url,
        } => {
            let mut print = |c: &psystem_releases::verify::FileCheck| {
                if !json {
                    let digest = c.computed.as_deref().unwrap_or("");
                    match &c.detail {
                        Some(d) if c.status == psystem_releases::verify::FileStatus::Mismatch => {
                            eprintln!("  MISMATCH {}: {d}", c.path)
                        }
                        Some(d) => eprintln!("  {:10} {}: {d}", c.status.as_str(), c.path),
                        None => eprintln!(
                            "  {:10} {}  {} {}",
                            c.status.as_str(),
                            c.path,
                            human_bytes(c.size),
                            digest
                        ),
                    }
                }
            };
            let report = api
                .release_verify(
                    &plugin,
                    release.as_deref(),
                    source_url.as_deref(),
                    &datasets,
                    db.as_deref(),
                    &mut print,
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "release {}: manifest {}; {} files checked, {} mismatched, {} missing, {} not in the manifest{}",
                    report.release,
                    report.manifest.as_deref().unwrap_or("-"),
                    report.files.len(),
                    report.mismatches(),
                    report.missing(),
                    report.unverified(),
                    if report.recorded {
                        "; recorded in psystem.files"
                    } else {
                        ""
                    }
                );
            }
            if !report.all_verified() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `psystem run PLUGIN [ENTRIES…]` for a release plugin.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    api: &Api,
    plugin: String,
    entries: Vec<String>,
    all: bool,
    args: &ReleaseRunArgs,
    db: Option<String>,
    source_url: Option<String>,
    force: bool,
    restart: bool,
    json: bool,
    interrupt: &Interrupt,
) -> Result<ExitCode> {
    let mode = match args.mode.as_deref() {
        None => None,
        Some(m) => Some(LoadMode::parse(m).ok_or_else(|| anyhow::anyhow!("unknown mode {m}"))?),
    };
    let req = ReleaseRunRequest {
        plugin,
        entries,
        all,
        release: args.release.clone(),
        source_url,
        db_url: db,
        mode,
        parallel: args.parallel,
        workers: args.workers,
        fail_fast: args.fail_fast,
        force,
        restart,
        allow_unverified: args.allow_unverified,
        allow_casts: args.allow_casts,
        unit_bytes: args.unit_size.map(|s| s.as_u64()),
        skip_bad_entries: args.skip_bad_entries,
        heartbeat_timeout: args.heartbeat_timeout,
    };
    let planned = api.plan_release(&req).await?;
    for note in &planned.notes {
        crate::output::note(note, json);
    }
    let (control_tx, control_rx) = watch::channel(Control::Run);
    let keys = planned.spec.datasets.iter();
    let keys = keys.map(|d| psystem_jobs::job_key(&planned.spec.plugin, &d.entry));
    interrupt.watch(control_tx.clone(), keys.collect());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let spec = planned.spec.clone();
    let status = api.status_store();
    // Run on this task (the job's futures borrow across awaits) while printing its events.
    let run = psystem_jobs::release::run_release(spec, status, tx, control_rx);
    let mut printer = Printer::new(json);
    let print = async {
        while let Some(event) = rx.recv().await {
            printer.on_event(&event);
        }
    };
    let (outcome, ()) = tokio::join!(run, print);
    let outcome = outcome?;
    report(&outcome, json)
}

/// `psystem resume PLUGIN/ENTRY` for a job of a release plugin: the request [`Api::resume_plan`] made from what
/// the job was started with (release, mode, source URL, destination, workers, unit size, error policy, …), run
/// as `psystem run` runs it.
pub async fn resume(
    api: &Api,
    req: ReleaseRunRequest,
    json: bool,
    interrupt: &Interrupt,
) -> Result<ExitCode> {
    let args = ReleaseRunArgs {
        release: req.release.clone(),
        mode: req.mode.map(|m| m.to_string()),
        parallel: req.parallel,
        workers: req.workers,
        unit_size: req.unit_bytes.map(bytesize::ByteSize::b),
        skip_bad_entries: req.skip_bad_entries,
        heartbeat_timeout: req.heartbeat_timeout,
        fail_fast: req.fail_fast,
        allow_unverified: req.allow_unverified,
        allow_casts: req.allow_casts,
    };
    run(
        api,
        req.plugin,
        req.entries,
        false,
        &args,
        req.db_url,
        req.source_url,
        false,
        false,
        json,
        interrupt,
    )
    .await
}

struct Printer {
    json: bool,
    last_download: std::time::Instant,
}

impl Printer {
    fn new(json: bool) -> Printer {
        Printer {
            json,
            last_download: std::time::Instant::now(),
        }
    }

    fn on_event(&mut self, event: &ReleaseEvent) {
        if self.json {
            return;
        }
        match event {
            ReleaseEvent::Resolved {
                release,
                layout,
                manifest,
            } => eprintln!(
                "release {release} ({layout}); manifest: {}",
                manifest.as_deref().unwrap_or("none — loading unverified")
            ),
            ReleaseEvent::DatasetStarted { job, files, bytes } => {
                eprintln!("{job}: {files} files, {}", human_bytes(*bytes))
            }
            ReleaseEvent::Download { job, done, total } => {
                if self.last_download.elapsed().as_millis() >= 1000 || done == total {
                    self.last_download = std::time::Instant::now();
                    eprintln!(
                        "{job}: downloaded and hashed {} of {}",
                        human_bytes(*done),
                        human_bytes(*total)
                    );
                }
            }
            ReleaseEvent::FileChecked { job, path, status } => {
                if status != "verified" {
                    eprintln!("{job}: {path}: {status}");
                }
            }
            ReleaseEvent::UnitDone {
                job,
                path,
                rows,
                rows_done,
                units_done,
                units,
            } => {
                // UniProt units are byte ranges (keys are zero-padded offsets), Open Targets units are files.
                if path.bytes().all(|b| b.is_ascii_digit()) {
                    eprintln!(
                        "{job}: unit {units_done}/{units} written ({rows} entries, {rows_done} in all), from byte {}",
                        path.trim_start_matches('0').parse::<u64>().unwrap_or(0)
                    )
                } else {
                    eprintln!(
                        "{job}: file {units_done}/{units} loaded ({rows} rows, {rows_done} in all): {path}"
                    )
                }
            }
            ReleaseEvent::DatasetFinished { .. } => {}
        }
    }
}

fn report(outcome: &ReleaseOutcome, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(outcome)?);
    } else {
        println!("release {}:", outcome.release);
        for d in &outcome.datasets {
            let what = match (&d.state, d.skipped, &d.report) {
                (JobState::Completed, true, _) => format!(
                    "already loaded from release {} (load {}); skipped — pass --force to load it again",
                    d.release,
                    d.load_id.unwrap_or(0)
                ),
                (JobState::Completed, false, Some(r)) => {
                    let mut s = format!(
                        "{} rows in {} — {} inserted, {} updated, {} deleted; {} in {:.1} s ({}{})",
                        r.rows,
                        d.table,
                        r.inserted,
                        r.updated,
                        r.deleted,
                        human_bytes(d.bytes),
                        d.seconds,
                        if d.verified { "verified" } else { "UNVERIFIED" },
                        d.load_id.map(|id| format!(", load {id}")).unwrap_or_default()
                    );
                    if let Some(n) = d.unchanged {
                        s.push_str(&format!("; {n} unchanged (same content MD5, not rewritten)"));
                    }
                    if !d.skipped_entries.is_empty() {
                        s.push_str(&format!(
                            "; {} malformed entr{} skipped: {}",
                            d.skipped_entries.len(),
                            if d.skipped_entries.len() == 1 { "y" } else { "ies" },
                            d.skipped_entries.join("; ")
                        ));
                    }
                    if !r.added_columns.is_empty() {
                        s.push_str(&format!("; new columns: {}", r.added_columns.join(", ")));
                    }
                    for (c, from, to) in &r.widened_columns {
                        s.push_str(&format!("; {c} widened {from} → {to}"));
                    }
                    if !r.missing_columns.is_empty() {
                        s.push_str(&format!(
                            "; not in this release (kept, NULL for new rows): {}",
                            r.missing_columns.join(", ")
                        ));
                    }
                    s
                }
                (JobState::Paused, ..) => format!("paused; resume with `psystem resume {}`", d.job),
                (JobState::Running, ..) => format!(
                    "shared load {} recorded; it completes as `psystem worker --db URL` processes work its units",
                    d.load_id.map(|id| format!("#{id}")).unwrap_or_default()
                ),
                (JobState::Failed, ..) => format!("FAILED: {}", d.error.as_deref().unwrap_or("?")),
                (s, ..) => s.to_string(),
            };
            println!("  {} ({}): {what}", d.job, d.dataset);
        }
    }
    if outcome.datasets.iter().any(|d| d.state == JobState::Failed) {
        let failed: Vec<&str> = outcome
            .datasets
            .iter()
            .filter(|d| d.state == JobState::Failed)
            .map(|d| d.job.as_str())
            .collect();
        let resume: Vec<String> = failed
            .iter()
            .map(|k| format!("psystem resume {k}"))
            .collect();
        anyhow::bail!(
            "{} of {} datasets failed: {}; fix the cause, then continue with: {}",
            failed.len(),
            outcome.datasets.len(),
            failed.join(", "),
            resume.join("; ")
        );
    }
    if outcome.datasets.iter().any(|d| d.state == JobState::Paused) {
        return Ok(ExitCode::from(EXIT_PAUSED));
    }
    Ok(ExitCode::SUCCESS)
}
