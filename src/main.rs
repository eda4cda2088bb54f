//! `psystem`: load public scientific data releases into PostgreSQL, resumably.
//!
//! Exit codes: 0 done; 1 the job or command failed (the message says where; committed pages are kept);
//! 2 usage or configuration error (unknown plugin or entry, disabled plugin, invalid manifest, bad arguments);
//! 3 paused by Ctrl+C (resume with `psystem resume`); 4 cancelled; 130 stopped at once by a second Ctrl+C.

mod output;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use psystem_api::runs::{PlannedJob, RunRequest};
use psystem_api::{Api, ApiError};
use psystem_core::JobState;
use psystem_jobs::{Control, JobEvent};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Exit code: usage or configuration error.
const EXIT_USAGE: u8 = 2;
/// Exit code: the job was paused (Ctrl+C).
const EXIT_PAUSED: u8 = 3;
/// Exit code: the job was cancelled.
const EXIT_CANCELLED: u8 = 4;
/// Exit code: stopped at once by a second Ctrl+C.
const EXIT_INTERRUPTED: i32 = 130;

#[derive(Parser, Debug)]
#[command(
    name = "psystem",
    version,
    about = "Load public scientific data releases into PostgreSQL: pausable, resumable, exactly once.",
    long_about = "Load public scientific data releases into PostgreSQL: pausable, resumable, exactly once.\n\n\
        Plugins (YAML manifests in the bundled assets/plugins/ and in $PSYSTEM_HOME/plugins/) name a source and its \
        ETL entries. `psystem run PLUGIN` loads the plugin's default entry page by page; each page commits together \
        with its checkpoint, so Ctrl+C (pause) or a crash loses nothing and `psystem resume` continues exactly there.\n\n\
        State lives in $PSYSTEM_HOME (default ~/.psystem): status.yaml, settings.yaml, plugins/, postgres/, logs/.",
    after_help = "Examples:\n  psystem plugins list\n  psystem run GHOTopOSTGRES --db postgres://me@localhost/health\n  psystem run who_gho WSH_8 --page-size 50\n  psystem status\n  psystem resume who_gho/WSH_8\n  psystem db up && psystem db url\n\n\
        Exit codes: 0 done, 1 failed, 2 usage or configuration error, 3 paused, 4 cancelled, 130 stopped at once."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// psystem home folder (default: $PSYSTEM_HOME, else ~/.psystem).
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<std::path::PathBuf>,
    /// Print results as JSON (one document on stdout) instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List, show, enable and disable plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Run an ETL entry of a plugin (its `run` entry when none is named); resumes an unfinished load of it.
    Run(RunArgs),
    /// Resume a paused, failed or interrupted job from its checkpoint.
    Resume(ResumeArgs),
    /// Abandon a paused or failed job: the next `psystem run` of it starts from the beginning.
    Cancel(CancelArgs),
    /// Show the jobs recorded in status.yaml.
    Status,
    /// Manage the local PostgreSQL cluster psystem runs when no database is named.
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Subcommand, Debug)]
enum PluginsCommand {
    /// List every plugin with its state and entries.
    List,
    /// Show one plugin: its entries, columns, tables and destination.
    Show {
        /// Plugin name (or folder name).
        name: String,
    },
    /// Enable a plugin (persists across restarts).
    Enable {
        /// Plugin name (or folder name).
        name: String,
    },
    /// Disable a plugin: runs are refused until it is enabled again.
    Disable {
        /// Plugin name (or folder name).
        name: String,
    },
}

#[derive(Args, Debug)]
struct DestinationArgs {
    /// Destination database URL (postgres://user@host:port/db). Default: the plugin's destination, else
    /// $DATABASE_URL, else the local database psystem manages.
    #[arg(long, value_name = "URL")]
    db: Option<String>,
    /// Do not draw a progress bar (also off when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
    /// Rows of the table to show when the load completes (0 for none).
    #[arg(long, default_value_t = 5, value_name = "N")]
    preview: i64,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Plugin name (or folder name), e.g. GHOTopOSTGRES.
    plugin: String,
    /// ETL entry key; default: the plugin's `run` entry.
    entry: Option<String>,
    #[command(flatten)]
    dest: DestinationArgs,
    /// Read from this API base URL instead of the manifest's (a mirror or a local server).
    #[arg(long, value_name = "URL")]
    source_url: Option<String>,
    /// Rows per request (default: the manifest's, else 1000).
    #[arg(long, value_name = "N")]
    page_size: Option<u64>,
    /// Start over, abandoning an unfinished load of this entry, instead of resuming it.
    #[arg(long)]
    restart: bool,
}

#[derive(Args, Debug)]
struct ResumeArgs {
    /// Job key `<plugin>/<entry>` as shown by `psystem status`; may be omitted when one job is unfinished.
    job: Option<String>,
    #[command(flatten)]
    dest: DestinationArgs,
    /// Rows per request from here on (default: the page size the job started with).
    #[arg(long, value_name = "N")]
    page_size: Option<u64>,
}

#[derive(Args, Debug)]
struct CancelArgs {
    /// Job key `<plugin>/<entry>`; may be omitted when one job is unfinished.
    job: Option<String>,
    /// Destination database URL, when status.yaml's (stored without password) is not enough.
    #[arg(long, value_name = "URL")]
    db: Option<String>,
}

#[derive(Subcommand, Debug)]
enum DbCommand {
    /// Initialise (first time) and start the local cluster.
    Up,
    /// Stop the local cluster.
    Down,
    /// Show whether the local cluster runs, where, and on which port.
    Status,
    /// Print the local cluster's connection URL.
    Url,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(home) = &cli.home {
        std::env::set_var(psystem_core::paths::HOME_ENV, home);
    }
    let _log_guard = output::init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            let code = match e.downcast_ref::<ApiError>() {
                Some(api) if api.is_usage() => ExitCode::from(EXIT_USAGE),
                _ => ExitCode::FAILURE,
            };
            eprintln!("error: {}", error_chain(&e));
            code
        }
    }
}

/// The error and its causes on one line, skipping a cause whose text the line already holds (sqlx repeats the
/// server's message in its source).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if out.contains(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let api = Api::from_env()?;
    let json = cli.json;
    match cli.command {
        Command::Plugins(cmd) => {
            match cmd {
                PluginsCommand::List => output::plugin_list(&api.plugins_list(), json)?,
                PluginsCommand::Show { name } => {
                    output::plugin_detail(&api.plugin_show(&name)?, json)?
                }
                PluginsCommand::Enable { name } => {
                    output::plugin_toggled(&api.set_plugin_enabled(&name, true)?, json)?
                }
                PluginsCommand::Disable { name } => {
                    output::plugin_toggled(&api.set_plugin_enabled(&name, false)?, json)?
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let req = RunRequest {
                plugin: args.plugin,
                entry: args.entry,
                db_url: args.dest.db.clone(),
                source_url: args.source_url,
                page_size: args.page_size,
                restart: args.restart,
                resume_load: None,
            };
            run_job(&api, req, &args.dest, json).await
        }
        Command::Resume(args) => {
            let req =
                api.resume_request(args.job.as_deref(), args.dest.db.clone(), args.page_size)?;
            run_job(&api, req, &args.dest, json).await
        }
        Command::Cancel(args) => {
            let job = api.cancel(args.job.as_deref(), args.db).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                println!(
                    "Cancelled {}/{} ({} rows committed stay in {}); the next `psystem run {} {}` starts from the beginning.",
                    job.plugin, job.entry, job.rows, job.table, job.plugin, job.entry
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            output::status(
                &api.status()?,
                &api.status_store().path().display().to_string(),
                json,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Db(cmd) => {
            match cmd {
                DbCommand::Up => output::cluster(&api.db_up().await?, json)?,
                DbCommand::Down => output::cluster(&api.db_down().await?, json)?,
                DbCommand::Status => output::cluster(&api.db_status().await?, json)?,
                DbCommand::Url => output::line(&api.db_url()?, json)?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Plans, starts and watches one job; Ctrl+C pauses it at the next checkpoint, a second Ctrl+C exits at once.
async fn run_job(
    api: &Api,
    req: RunRequest,
    dest: &DestinationArgs,
    json: bool,
) -> Result<ExitCode> {
    let planned: PlannedJob = api.plan(&req).await?;
    for note in &planned.notes {
        output::note(note, json);
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handle = api.start(&planned, tx);
    install_ctrlc(handle.control(), handle.key().to_string(), json)?;

    let mut progress = output::Progress::new(&planned, !dest.no_progress && !json, json);
    while let Some(event) = rx.recv().await {
        progress.on_event(&event);
        if matches!(event, JobEvent::Finished { .. }) {
            break;
        }
    }
    progress.finish();
    match handle.wait().await {
        Ok(outcome) => {
            let preview = if outcome.state == JobState::Completed && dest.preview > 0 {
                api.preview(&planned.spec.destination_url, &outcome.table, dest.preview)
                    .await
                    .ok()
            } else {
                None
            };
            output::outcome(&outcome, preview.as_ref(), json)?;
            Ok(match outcome.state {
                JobState::Paused => ExitCode::from(EXIT_PAUSED),
                JobState::Cancelled => ExitCode::from(EXIT_CANCELLED),
                _ => ExitCode::SUCCESS,
            })
        }
        Err(e) => {
            let key = planned.spec.key();
            Err(anyhow::Error::new(ApiError::from(e))
                .context(format!("job {key} failed; committed pages are kept — fix the cause and run `psystem resume {key}`")))
        }
    }
}

/// First Ctrl+C: pause at the next checkpoint. Second: exit at once (the open transaction is rolled back by the
/// server when the connection drops, so the database stays at the last checkpoint).
fn install_ctrlc(control: watch::Sender<Control>, key: String, json: bool) -> Result<()> {
    let presses = Arc::new(AtomicUsize::new(0));
    ctrlc::set_handler(move || {
        if presses.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = control.send(Control::Pause);
            if !json {
                eprintln!(
                    "\nPausing {key} after the current page… (press Ctrl+C again to stop at once)"
                );
            }
        } else {
            if !json {
                eprintln!("\nStopped at once; the last committed page is kept. Resume with: psystem resume {key}");
            }
            std::process::exit(EXIT_INTERRUPTED);
        }
    })?;
    Ok(())
}
