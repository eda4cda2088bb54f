//! `psystem worker` (join the shared loads of a database) and `psystem export` (FASTA or JSON from a loaded
//! UniProt release).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use psystem_api::proteins::WorkerRequest;
use psystem_api::Api;
use psystem_jobs::worker::WorkerEvent;
use psystem_jobs::Control;
use psystem_postgres::protein::export::{ExportFilter, ExportFormat};
use tokio::sync::{mpsc, watch};

use crate::{Interrupt, EXIT_PAUSED};

/// `psystem worker`.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The database whose shared loads to join (default: $DATABASE_URL, else the local database).
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// Work units written at the same time by this process.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub threads: usize,
    /// Exit when no load has units left, instead of waiting for new loads.
    #[arg(long)]
    pub exit_when_idle: bool,
    /// How often to look for new loads while idle, e.g. 5s, 1m.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub poll: Duration,
}

/// `psystem export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The plugin whose loaded entries to export (uniprot).
    pub plugin: String,
    /// fasta (UniProt headers, 60 residues per line) or json (one object per entry per line).
    #[arg(long, default_value = "fasta", value_parser = ["fasta", "json"])]
    pub format: String,
    /// Write to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// The schema holding the protein tables (default: the plugin entry's destination schema, else `uniprot`).
    #[arg(long)]
    pub schema: Option<String>,
    /// The plugin entry whose table to export (sprot, trembl; default: the plugin's `run` entry).
    #[arg(long, value_name = "ENTRY")]
    pub entry: Option<String>,
    /// Only entries of this dataset (sprot, trembl).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Only these primary accessions (repeat the flag).
    #[arg(long = "accession", value_name = "ACC")]
    pub accessions: Vec<String>,
    /// At most N entries.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// The database (default: $DATABASE_URL, else the local database).
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
}

/// Runs `psystem worker` until Ctrl+C (finishing the unit in hand) or, with --exit-when-idle, until idle.
pub async fn worker(
    api: &Api,
    args: WorkerArgs,
    json: bool,
    interrupt: &Interrupt,
) -> Result<ExitCode> {
    let (control_tx, control_rx) = watch::channel(Control::Run);
    interrupt.watch(control_tx.clone(), Vec::new());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let req = WorkerRequest {
        db_url: args.db,
        threads: args.threads,
        exit_when_idle: args.exit_when_idle,
        poll: args.poll,
    };
    let run = api.run_worker(&req, tx, control_rx.clone());
    let print = async {
        while let Some(event) = rx.recv().await {
            print_event(&event, json);
        }
    };
    let (units, ()) = tokio::join!(run, print);
    let units = units?;
    if !json {
        eprintln!("Worker stopped after writing {units} unit(s).");
    }
    if *control_rx.borrow() != Control::Run {
        return Ok(ExitCode::from(EXIT_PAUSED));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_event(event: &WorkerEvent, json: bool) {
    if json {
        if let Ok(line) = serde_json::to_string(event) {
            println!("{line}");
        }
        return;
    }
    match event {
        WorkerEvent::Joined {
            load_id,
            job,
            release,
        } => {
            eprintln!("Joined load #{load_id} ({job}, release {release}).")
        }
        WorkerEvent::UnitDone {
            load_id,
            unit,
            rows,
            report: None,
        } => {
            eprintln!("load #{load_id} unit {unit}: {rows} rows copied")
        }
        WorkerEvent::UnitDone {
            load_id,
            unit,
            report: Some(report),
            ..
        } => eprintln!(
            "load #{load_id} unit {unit}: {} entries ({} new, {} changed, {} unchanged{})",
            report.entries,
            report.inserted,
            report.updated,
            report.unchanged,
            if report.skipped > 0 {
                format!(", {} skipped", report.skipped)
            } else {
                String::new()
            }
        ),
        WorkerEvent::Completed { load_id, report } => eprintln!(
            "Load #{load_id} completed: {} entries, {} new, {} changed, {} unchanged, {} deleted.",
            report.units.entries,
            report.units.inserted,
            report.units.updated,
            report.units.unchanged,
            report.deleted
        ),
        WorkerEvent::Failed { load_id, error } => eprintln!("load #{load_id}: {error}"),
        WorkerEvent::Idle => {
            eprintln!("No shared load has work left; waiting for new loads (Ctrl+C to stop).")
        }
    }
}

/// Runs `psystem export`.
pub async fn export(api: &Api, args: ExportArgs, json: bool) -> Result<ExitCode> {
    let catalog = api.catalog();
    let plugin = catalog.get(&args.plugin)?;
    let (key, entry) = plugin.entry(args.entry.as_deref())?;
    let pg = entry
        .destination
        .as_ref()
        .and_then(|d| d.postgres.clone())
        .unwrap_or_default();
    let schema = args
        .schema
        .clone()
        .or(pg.schema)
        .unwrap_or_else(|| "uniprot".to_string());
    let filter = ExportFilter {
        schema,
        table: pg.table.unwrap_or_else(|| key.to_string()),
        dataset: args.dataset,
        accessions: args.accessions,
        limit: args.limit,
    };
    let format = if args.format == "json" {
        ExportFormat::Json
    } else {
        ExportFormat::Fasta
    };
    let count = match &args.output {
        Some(path) => {
            let mut file = tokio::fs::File::create(path)
                .await
                .with_context(|| format!("creating {}", path.display()))?;
            api.export_proteins(
                args.db,
                &filter,
                format,
                &mut file,
                &path.display().to_string(),
            )
            .await?
        }
        None => {
            let mut out = tokio::io::stdout();
            api.export_proteins(args.db, &filter, format, &mut out, "stdout")
                .await?
        }
    };
    if json && args.output.is_some() {
        println!(
            "{}",
            serde_json::json!({ "entries": count, "output": args.output })
        );
    } else if args.output.is_some() || count == 0 {
        eprintln!(
            "Exported {count} entr{} as {}{}.",
            if count == 1 { "y" } else { "ies" },
            args.format,
            args.output
                .as_ref()
                .map(|p| format!(" to {}", p.display()))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
