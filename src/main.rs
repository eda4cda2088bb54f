//! `psystem`: load public scientific data releases into PostgreSQL, resumably.
//!
//! Exit codes: 0 done; 1 the job or command failed (the message says where; committed pages are kept);
//! 2 usage or configuration error (unknown plugin or entry, disabled plugin, invalid manifest, bad arguments);
//! 3 paused by Ctrl+C (resume with `psystem resume`); 4 cancelled; 130 stopped at once by a second Ctrl+C.

mod output;
mod release_cmd;
mod uniprot_cmd;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use psystem_api::idcache::CacheScope;
use psystem_api::runs::{PlannedJob, ResumePlan, RunRequest};
use psystem_api::{Api, ApiError};
use psystem_core::JobState;
use psystem_jobs::dryrun::OutputFormat;
use psystem_jobs::{Control, JobEvent};
use psystem_postgres::idcache::{CacheQuery, CacheSort};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// mimalloc rather than the system allocator: parsing UniProt entries makes many small allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Browse and verify the releases of a release plugin (Open Targets): list, show (datasets, files, schema
    /// from the Parquet footers, key suggestions), verify (checksum manifest).
    #[command(subcommand)]
    Releases(release_cmd::ReleasesCommand),
    /// Run an ETL entry of a plugin (its `run` entry when none is named); resumes an unfinished load of it.
    Run(RunArgs),
    /// Resume a paused, failed or interrupted job from its checkpoint.
    Resume(ResumeArgs),
    /// Abandon a paused or failed job: the next `psystem run` of it starts from the beginning.
    Cancel(CancelArgs),
    /// Show the jobs recorded in status.yaml.
    Status,
    /// Browse, search, export, import and clear the ID cache (unique key → target ID per entity).
    #[command(subcommand)]
    Idcache(IdcacheCommand),
    /// Past loads and their run metrics, from the ledger in the database.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Join the shared loads of a database (UniProt flat files split into work units): claim units, write them,
    /// heartbeat; run it on any number of machines. Ctrl+C stops after the unit in hand.
    Worker(uniprot_cmd::WorkerArgs),
    /// Export the entries of a loaded UniProt release as FASTA (UniProt headers) or JSON lines.
    Export(uniprot_cmd::ExportArgs),
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
    /// ETL entry keys, loaded in dependency order (entities before the entries that refer to them); default: the
    /// plugin's `run` entry.
    entries: Vec<String>,
    /// Run every ETL entry of the plugin.
    #[arg(long, conflicts_with = "entries")]
    all: bool,
    /// Load even data a completed load already holds (by default such an entry is skipped).
    #[arg(long)]
    force: bool,
    /// Run the whole pipeline without writing to the destination; report per table the rows that would be
    /// inserted, updated and deleted and the target IDs that would be assigned.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: write what would be loaded into DIR/<table>.parquet (or .csv).
    #[arg(long, value_name = "DIR", requires = "dry_run")]
    output: Option<std::path::PathBuf>,
    /// With --output: parquet or csv.
    #[arg(long, default_value = "parquet", value_parser = ["parquet", "csv"], requires = "output")]
    output_format: String,
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
    /// Only data from YEAR on: GHO rows whose TimeDim is at least YEAR; a file last modified before YEAR is skipped.
    #[arg(long, value_name = "YEAR")]
    since: Option<i64>,
    /// Only data up to YEAR: GHO rows whose TimeDim is at most YEAR; a file last modified after YEAR is skipped.
    #[arg(long, value_name = "YEAR")]
    until: Option<i64>,
    #[command(flatten)]
    release: release_cmd::ReleaseRunArgs,
}

/// `psystem resume`: the job continues with every option it was started with (status.yaml keeps them). Page
/// size, workers, heartbeat timeout and the permissive flags may change; mode, release, source URL, `--since`,
/// `--until` and unit size must equal the job's own (a different one is refused: start over with `run --restart`).
#[derive(Args, Debug)]
struct ResumeArgs {
    /// Job key `<plugin>/<entry>` as shown by `psystem status`; may be omitted when one job is unfinished.
    job: Option<String>,
    #[command(flatten)]
    dest: DestinationArgs,
    /// Rows per request from here on (default: the page size the job started with).
    #[arg(long, value_name = "N")]
    page_size: Option<u64>,
    /// Release jobs: files or work units worked on at the same time (default: as the job started).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Release jobs: heartbeat timeout of work units (default: as the job started).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    heartbeat_timeout: Option<std::time::Duration>,
    /// UniProt: skip malformed entries from here on (a job started without it fails on them).
    #[arg(long)]
    skip_bad_entries: bool,
    /// Release jobs: allow a release without a checksum manifest from here on.
    #[arg(long)]
    allow_unverified: bool,
    /// Release jobs: allow casts of incompatible column types from here on.
    #[arg(long)]
    allow_casts: bool,
    /// Must equal the job's mode (a resume cannot change it).
    #[arg(long, value_name = "MODE", value_parser = ["replace", "merge"])]
    mode: Option<String>,
    /// Must equal the job's release (a resume cannot change it).
    #[arg(long, value_name = "YY.MM")]
    release: Option<String>,
    /// Must name the job's source (e.g. the same URL with its password, which status.yaml does not keep).
    #[arg(long, value_name = "URL")]
    source_url: Option<String>,
    /// Must equal the job's --since (a resume cannot change it).
    #[arg(long, value_name = "YEAR")]
    since: Option<i64>,
    /// Must equal the job's --until (a resume cannot change it).
    #[arg(long, value_name = "YEAR")]
    until: Option<i64>,
    /// Must equal the job's --unit-size (a resume cannot change it).
    #[arg(long, value_name = "SIZE")]
    unit_size: Option<bytesize::ByteSize>,
}

impl ResumeArgs {
    /// The options for [`Api::resume_plan`].
    fn options(&self) -> psystem_api::runs::ResumeOptions {
        psystem_api::runs::ResumeOptions {
            db_url: self.dest.db.clone(),
            page_size: self.page_size,
            workers: self.workers,
            heartbeat_timeout: self.heartbeat_timeout,
            allow_unverified: self.allow_unverified,
            allow_casts: self.allow_casts,
            skip_bad_entries: self.skip_bad_entries,
            mode: self.mode.as_deref().and_then(psystem_core::LoadMode::parse),
            release: self.release.clone(),
            source_url: self.source_url.clone(),
            since: self.since,
            until: self.until,
            unit_bytes: self.unit_size.map(|s| s.as_u64()),
        }
    }
}

#[derive(Args, Debug)]
struct CancelArgs {
    /// Job key `<plugin>/<entry>`; may be omitted when one job is unfinished.
    job: Option<String>,
    /// Destination database URL, when status.yaml's (stored without password) is not enough.
    #[arg(long, value_name = "URL")]
    db: Option<String>,
}

#[derive(Args, Debug)]
struct ScopeArgs {
    /// Database holding the ID cache (default: $DATABASE_URL, else the local database).
    #[arg(long, value_name = "URL")]
    db: Option<String>,
    /// Destination schema the entries belong to.
    #[arg(long, default_value = "public")]
    schema: String,
}

#[derive(Subcommand, Debug)]
enum IdcacheCommand {
    /// The entities in the cache, with their unique key columns and entry counts.
    Entities {
        /// Database holding the ID cache (default: $DATABASE_URL, else the local database).
        #[arg(long, value_name = "URL")]
        db: Option<String>,
    },
    /// One page of an entity's entries.
    List(ListArgs),
    /// Entries whose unique key or target ID contains TEXT (case-insensitive).
    Search {
        /// Text to look for.
        text: String,
        #[command(flatten)]
        list: ListArgs,
    },
    /// The entry with this unique key or target ID.
    Show {
        /// The entity (participant, phenotype, …).
        #[arg(long)]
        entity: String,
        /// A unique keystring (e.g. `p1__cleft-ear__765`) or a target ID.
        key_or_id: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Write an entity's entries as CSV (unique_key,target_id,first_seen_run,last_seen_run).
    Export {
        /// The entity.
        #[arg(long)]
        entity: String,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Read entries from a CSV written by export; never overwrites a different cached ID.
    Import {
        /// The entity.
        #[arg(long)]
        entity: String,
        /// The CSV file.
        file: std::path::PathBuf,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Delete an entity's entries and its unique key definition (its rows then get new target IDs).
    Clear {
        /// The entity.
        #[arg(long)]
        entity: String,
        /// Do it without asking (required when standard input is not a terminal).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        scope: ScopeArgs,
    },
}

#[derive(Args, Debug)]
struct ListArgs {
    /// The entity (participant, phenotype, …).
    #[arg(long)]
    entity: String,
    /// Sort by: key, id, first, last.
    #[arg(long, default_value = "key")]
    sort: String,
    /// Sort descending.
    #[arg(long)]
    desc: bool,
    /// Page number, from 1.
    #[arg(long, default_value_t = 1)]
    page: i64,
    /// Entries per page.
    #[arg(long, default_value_t = 50)]
    page_size: i64,
    #[command(flatten)]
    scope: ScopeArgs,
}

#[derive(Subcommand, Debug)]
enum RunsCommand {
    /// Past loads, newest first.
    List {
        /// Database holding the ledger (default: $DATABASE_URL, else the local database).
        #[arg(long, value_name = "URL")]
        db: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// One load with its metrics: rows, bytes, time per phase, nulls and distinct values per column.
    Show {
        /// The load id (`psystem runs list`).
        id: i64,
        /// Database holding the ledger (default: $DATABASE_URL, else the local database).
        #[arg(long, value_name = "URL")]
        db: Option<String>,
    },
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
    // `psystem … | head` closes stdout early: end quietly like other command-line tools instead of panicking.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
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
            eprintln!("error: {}", psystem_core::error::error_chain(e.as_ref()));
            code
        }
    }
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
        Command::Releases(cmd) => release_cmd::releases(&api, cmd, json).await,
        Command::Run(args) => {
            // A plugin that cannot be found or read falls through to the usual path, which reports it.
            let kind = api
                .catalog()
                .get(&args.plugin)
                .ok()
                .map(|p| p.source_kind());
            let is_release = kind == Some(psystem_core::plugin::SourceKind::Release);
            if let Some(kind) = kind {
                refuse_inapplicable_flags(&args, kind)?;
            }
            let format = if args.output_format == "csv" {
                OutputFormat::Csv
            } else {
                OutputFormat::Parquet
            };
            if is_release && args.dry_run {
                return dry_run_release(
                    &api,
                    &args,
                    args.output.as_deref().map(|d| (d, format)),
                    json,
                )
                .await;
            }
            if is_release {
                let interrupt = Interrupt::install(json)?;
                return release_cmd::run(
                    &api,
                    args.plugin,
                    args.entries,
                    args.all,
                    &args.release,
                    args.dest.db.clone(),
                    args.source_url,
                    args.force,
                    args.restart,
                    json,
                    &interrupt,
                )
                .await;
            }
            let req = RunRequest {
                plugin: args.plugin,
                entry: None,
                force: args.force,
                db_url: args.dest.db.clone(),
                source_url: args.source_url,
                page_size: args.page_size,
                restart: args.restart,
                since: args.since,
                until: args.until,
                resume_load: None,
            };
            let interrupt = Interrupt::install(json)?;
            let jobs = api.plan_run(&req, &args.entries, args.all).await?;
            if args.dry_run {
                return dry_run_jobs(&jobs, args.output.as_deref().map(|d| (d, format)), json)
                    .await;
            }
            run_jobs(&api, jobs, &args.dest, json, &interrupt).await
        }
        Command::Resume(args) => {
            let interrupt = Interrupt::install(json)?;
            match api.resume_plan(args.job.as_deref(), &args.options())? {
                ResumePlan::Release(req) => release_cmd::resume(&api, req, json, &interrupt).await,
                ResumePlan::Run(req) => {
                    let job = api.plan(&req).await?;
                    run_jobs(&api, vec![job], &args.dest, json, &interrupt).await
                }
            }
        }
        Command::Cancel(args) => {
            let job = api.cancel(args.job.as_deref(), args.db).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else if job.source == psystem_jobs::release::SOURCE_KIND {
                println!(
                    "Cancelled {}/{}: its unfinished load was abandoned (staging table and pending work units \
                     removed; a UniProt load's entries already written stay in {} until the next load completes); \
                     the next `psystem run {} {}` starts from the beginning.",
                    job.plugin, job.entry, job.table, job.plugin, job.entry
                );
            } else if job.rows > 0 {
                println!(
                    "Cancelled {}/{} ({} rows committed stay in {}); the next `psystem run {} {}` starts from the beginning.",
                    job.plugin, job.entry, job.rows, job.table, job.plugin, job.entry
                );
            } else {
                println!(
                    "Cancelled {}/{}: its unfinished load was abandoned and nothing of it stays in {}; the next \
                     `psystem run {} {}` starts from the beginning.",
                    job.plugin, job.entry, job.table, job.plugin, job.entry
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
        Command::Idcache(cmd) => {
            idcache_command(&api, cmd, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs(cmd) => {
            match cmd {
                RunsCommand::List { db, limit } => output::runs(&api.runs(db, limit).await?, json)?,
                RunsCommand::Show { id, db } => match api.run_detail(db, id).await? {
                    Some(run) => output::run_detail(&run, json)?,
                    None => anyhow::bail!("no load {id} in the ledger; see `psystem runs list`"),
                },
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(args) => {
            let interrupt = Interrupt::install(json)?;
            uniprot_cmd::worker(&api, args, json, &interrupt).await
        }
        Command::Export(args) => uniprot_cmd::export(&api, args, json).await,
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

fn scope(s: ScopeArgs) -> CacheScope {
    CacheScope {
        db_url: s.db,
        schema: Some(s.schema),
    }
}

fn cache_query(l: &ListArgs, search: Option<String>) -> Result<CacheQuery> {
    let sort = match l.sort.as_str() {
        "key" => CacheSort::UniqueKey,
        "id" => CacheSort::TargetId,
        "first" => CacheSort::FirstSeen,
        "last" => CacheSort::LastSeen,
        other => anyhow::bail!("--sort must be key, id, first or last, not `{other}`"),
    };
    anyhow::ensure!(
        l.page >= 1 && l.page_size >= 1,
        "--page and --page-size start at 1"
    );
    Ok(CacheQuery {
        search,
        sort,
        descending: l.desc,
        offset: (l.page - 1) * l.page_size,
        limit: l.page_size,
    })
}

async fn idcache_command(api: &Api, cmd: IdcacheCommand, json: bool) -> Result<()> {
    match cmd {
        IdcacheCommand::Entities { db } => output::entities(
            &api.idcache_entities(&CacheScope {
                db_url: db,
                schema: None,
            })
            .await?,
            json,
        ),
        IdcacheCommand::List(l) => {
            let q = cache_query(&l, None)?;
            let page = api.idcache_list(&scope(l.scope), &l.entity, &q).await?;
            output::cache_page(&l.entity, &page, &q, json)
        }
        IdcacheCommand::Search { text, list } => {
            let q = cache_query(&list, Some(text))?;
            let page = api
                .idcache_list(&scope(list.scope), &list.entity, &q)
                .await?;
            output::cache_page(&list.entity, &page, &q, json)
        }
        IdcacheCommand::Show {
            entity,
            key_or_id,
            scope: s,
        } => match api.idcache_show(&scope(s), &entity, &key_or_id).await? {
            Some(e) => output::cache_entry(&entity, &e, json),
            None => anyhow::bail!(
                "no {entity} with unique key or target ID `{key_or_id}` in the ID cache"
            ),
        },
        IdcacheCommand::Export {
            entity,
            output: file,
            scope: s,
        } => {
            let n = match &file {
                Some(path) => {
                    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
                    let n = api.idcache_export(&scope(s), &entity, &mut f).await?;
                    std::io::Write::flush(&mut f)?;
                    n
                }
                None => {
                    api.idcache_export(&scope(s), &entity, &mut std::io::stdout())
                        .await?
                }
            };
            if file.is_some() {
                output::note(&format!("exported {n} {entity} entries"), json);
            }
            Ok(())
        }
        IdcacheCommand::Import {
            entity,
            file,
            scope: s,
        } => {
            let input = std::fs::File::open(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let report = api.idcache_import(&scope(s), &entity, input).await?;
            output::import_report(&entity, &report, json)
        }
        IdcacheCommand::Clear {
            entity,
            yes,
            scope: s,
        } => {
            if !yes {
                use std::io::IsTerminal;
                anyhow::ensure!(
                    std::io::stdin().is_terminal(),
                    "clearing the ID cache gives every {entity} a new target ID on its next load; pass --yes to confirm"
                );
                eprint!("Clear every {entity} entry from the ID cache? Their rows get new target IDs on the next load. [y/N] ");
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    eprintln!("Nothing cleared.");
                    return Ok(());
                }
            }
            let n = api.idcache_clear(&scope(s), &entity).await?;
            output::line(
                &format!("Cleared {n} {entity} entries and the {entity} unique key definition."),
                json,
            )
        }
    }
}

/// Refuses (exit 2) the options of `psystem run` that do not apply to plugins of `kind`: `--since`, `--until` and
/// `--page-size` on a release plugin, the release options on a GHO or files plugin.
fn refuse_inapplicable_flags(args: &RunArgs, kind: psystem_core::plugin::SourceKind) -> Result<()> {
    let r = &args.release;
    let (given, why): (Vec<&str>, String) = if kind == psystem_core::plugin::SourceKind::Release {
        let given = [
            ("--since", args.since.is_some()),
            ("--until", args.until.is_some()),
            ("--page-size", args.page_size.is_some()),
        ];
        (
            given.iter().filter(|(_, on)| *on).map(|(f, _)| *f).collect(),
            format!(
                "plugin {} loads releases, which have no years to filter and no pages (a release loads whole \
                 files); --since and --until apply to GHO and file plugins, --page-size to GHO plugins",
                args.plugin
            ),
        )
    } else {
        let given = [
            ("--release", r.release.is_some()),
            ("--mode", r.mode.is_some()),
            ("--parallel", r.parallel.is_some()),
            ("--workers", r.workers.is_some()),
            ("--unit-size", r.unit_size.is_some()),
            ("--skip-bad-entries", r.skip_bad_entries),
            ("--heartbeat-timeout", r.heartbeat_timeout.is_some()),
            ("--fail-fast", r.fail_fast),
            ("--allow-unverified", r.allow_unverified),
            ("--allow-casts", r.allow_casts),
        ];
        (
            given.iter().filter(|(_, on)| *on).map(|(f, _)| *f).collect(),
            format!(
                "these options apply only to release plugins (Open Targets, UniProt), and plugin {} reads {}; \
                 its load mode is the entry's destination.postgres.mode in plugin.yaml",
                args.plugin,
                if kind == psystem_core::plugin::SourceKind::Files {
                    "files (CSV, TSV, Parquet, JSON lines)"
                } else {
                    "the WHO GHO OData API"
                }
            ),
        )
    };
    if given.is_empty() {
        return Ok(());
    }
    Err(ApiError::Config(format!(
        "{} cannot be used here: {why}; leave {} out",
        given.join(", "),
        if given.len() == 1 { "it" } else { "them" }
    ))
    .into())
}

/// `psystem run RELEASE-PLUGIN --dry-run`: the release pipeline without writing to the database
/// ([`Api::dry_run_release`]), reported like any dry run.
async fn dry_run_release(
    api: &Api,
    args: &RunArgs,
    output: Option<(&std::path::Path, OutputFormat)>,
    json: bool,
) -> Result<ExitCode> {
    let r = &args.release;
    let mode = match r.mode.as_deref() {
        None => None,
        Some(m) => Some(psystem_core::LoadMode::parse(m).ok_or_else(|| {
            ApiError::Config(format!("--mode must be replace or merge, not {m}"))
        })?),
    };
    let req = psystem_api::releases::ReleaseRunRequest {
        plugin: args.plugin.clone(),
        entries: args.entries.clone(),
        all: args.all,
        release: r.release.clone(),
        source_url: args.source_url.clone(),
        db_url: args.dest.db.clone(),
        mode,
        parallel: r.parallel,
        workers: r.workers,
        fail_fast: r.fail_fast,
        force: args.force,
        restart: args.restart,
        allow_unverified: r.allow_unverified,
        allow_casts: r.allow_casts,
        unit_bytes: r.unit_size.map(|s| s.as_u64()),
        skip_bad_entries: r.skip_bad_entries,
        heartbeat_timeout: r.heartbeat_timeout,
    };
    let planned = api.plan_release(&req).await?;
    for note in &planned.notes {
        output::note(note, json);
    }
    let outcome = api.dry_run_release(&planned, output).await.map_err(|e| {
        anyhow::Error::new(e).context(format!("dry run of {} release", args.plugin))
    })?;
    let mut reports = Vec::new();
    for d in outcome.datasets {
        if let Some(load) = d.skipped_by {
            output::note(
                &format!(
                    "{}: release {} is already loaded into {} (load {load}); a run skips it — add --force to see \
                     what loading it again would change",
                    d.job, outcome.release, d.report.table
                ),
                json,
            );
        } else if !d.verified {
            output::note(
                &format!(
                    "{}: the files of dataset {} are not verified (no manifest entry)",
                    d.job, d.dataset
                ),
                json,
            );
        }
        if !d.skipped_entries.is_empty() {
            output::note(
                &format!(
                    "{}: {} malformed entries would be skipped: {}",
                    d.job,
                    d.skipped_entries.len(),
                    d.skipped_entries.join("; ")
                ),
                json,
            );
        }
        reports.push((d.job, d.report, d.output));
    }
    if !json {
        println!("release {}:", outcome.release);
    }
    output::dry_run(&reports, json)?;
    Ok(ExitCode::SUCCESS)
}

/// `psystem run --dry-run`: each job through the whole pipeline, nothing written to the destination.
async fn dry_run_jobs(
    jobs: &[PlannedJob],
    output: Option<(&std::path::Path, OutputFormat)>,
    json: bool,
) -> Result<ExitCode> {
    let mut pending = Default::default();
    let mut reports = Vec::new();
    for planned in jobs {
        for note in &planned.notes {
            output::note(note, json);
        }
        let (report, file) = psystem_jobs::dryrun::dry_run(&planned.spec, output, &mut pending)
            .await
            .map_err(|e| {
                anyhow::Error::new(ApiError::from(e))
                    .context(format!("dry run of {}", planned.spec.key()))
            })?;
        reports.push((planned.spec.key(), report, file));
    }
    output::dry_run(&reports, json)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs planned jobs one after the other, then the second pass for deferred references. Ctrl+C pauses the
/// running job at its next checkpoint and starts no further job; a second Ctrl+C exits at once.
async fn run_jobs(
    api: &Api,
    jobs: Vec<PlannedJob>,
    dest: &DestinationArgs,
    json: bool,
    interrupt: &Interrupt,
) -> Result<ExitCode> {
    let mut outcomes = Vec::new();
    let mut code = ExitCode::SUCCESS;
    if interrupt.pressed() {
        eprintln!("Interrupted before any job started; nothing was loaded.");
        return Ok(ExitCode::from(EXIT_PAUSED));
    }
    for planned in &jobs {
        if interrupt.pressed() {
            break;
        }
        for note in &planned.notes {
            output::note(note, json);
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let handle = api.start(planned, tx);
        interrupt.watch(handle.control(), vec![handle.key().to_string()]);
        let mut progress = output::Progress::new(planned, !dest.no_progress && !json, json);
        while let Some(event) = rx.recv().await {
            progress.on_event(&event);
            if matches!(event, JobEvent::Finished { .. }) {
                break;
            }
        }
        progress.finish();
        let outcome = match handle.wait().await {
            Ok(outcome) => outcome,
            Err(e) => {
                let key = planned.spec.key();
                let started = api.status_store().job(&key).ok().flatten().is_some();
                let context = if started {
                    format!("job {key} failed; committed pages are kept — fix the cause and run `psystem resume {key}`")
                } else {
                    format!("job {key} could not start")
                };
                return Err(anyhow::Error::new(ApiError::from(e)).context(context));
            }
        };
        let preview =
            if outcome.state == JobState::Completed && dest.preview > 0 && !outcome.skipped {
                api.preview(&planned.spec.destination_url, &outcome.table, dest.preview)
                    .await
                    .ok()
            } else {
                None
            };
        if !json {
            output::outcome(&outcome, preview.as_ref(), json)?;
        }
        let state = outcome.state;
        outcomes.push(serde_json::json!({ "outcome": outcome, "preview": preview }));
        match state {
            JobState::Paused => {
                code = ExitCode::from(EXIT_PAUSED);
                break;
            }
            JobState::Cancelled => {
                code = ExitCode::from(EXIT_CANCELLED);
                break;
            }
            _ => {}
        }
    }
    let mut unresolved = Vec::new();
    if outcomes.len() == jobs.len() && !interrupt.pressed() {
        for planned in &jobs {
            for (column, key) in api.resolve_deferred(planned).await? {
                unresolved.push(format!("{}.{column}: {key}", planned.spec.table));
            }
        }
    }
    if json {
        let doc = if outcomes.len() == 1 {
            outcomes.remove(0)
        } else {
            serde_json::Value::Array(outcomes)
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    anyhow::ensure!(
        unresolved.is_empty(),
        "{} references are not in the ID cache after every entry of the run loaded (left null), e.g. {}; load the \
         entities they refer to, then run again with --force",
        unresolved.len(),
        unresolved.iter().take(10).cloned().collect::<Vec<_>>().join("; ")
    );
    Ok(code)
}

/// The job a Ctrl+C pauses: its control channel and the job keys it runs (one for GHO/files, one per dataset for a
/// release run).
type CurrentJob = Arc<std::sync::Mutex<Option<(watch::Sender<Control>, Vec<String>)>>>;

/// The Ctrl+C handler of a run (the `ctrlc` crate allows one per process): it pauses whichever job runs.
struct Interrupt {
    current: CurrentJob,
    presses: Arc<AtomicUsize>,
}

/// What to do after a second Ctrl+C stopped the run at once: `psystem resume KEY` for each job status.yaml
/// holds (it resumes from the last checkpoint), and for jobs stopped before their first step (status.yaml has
/// none of them yet) the `psystem run` that starts them again.
fn stopped_hint(keys: &[String]) -> String {
    let status = psystem_core::Home::from_env()
        .ok()
        .and_then(|h| psystem_jobs::StatusStore::new(&h).read().ok())
        .unwrap_or_default();
    let (started, not_started): (Vec<&String>, Vec<&String>) = keys.iter().partition(|k| {
        status
            .jobs
            .get(k.as_str())
            .is_some_and(|j| j.state.is_resumable() || j.state == JobState::Running)
    });
    let mut parts = Vec::new();
    if !started.is_empty() {
        let commands: Vec<String> = started
            .iter()
            .map(|k| format!("psystem resume {k}"))
            .collect();
        parts.push(format!(
            "the last committed checkpoint is kept. Resume with: {}",
            commands.join("; ")
        ));
    }
    if !not_started.is_empty() {
        let plugin = not_started[0].split('/').next().unwrap_or_default();
        let entries: Vec<&str> = not_started
            .iter()
            .filter_map(|k| k.split_once('/').map(|(_, e)| e))
            .collect();
        parts.push(format!(
            "{} had not started, so there is nothing to resume; run it again: psystem run {plugin} {}",
            not_started
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            entries.join(" ")
        ));
    }
    if parts.is_empty() {
        return "what was committed is kept".into();
    }
    parts.join("; ")
}

impl Interrupt {
    fn install(json: bool) -> Result<Interrupt> {
        let current: CurrentJob = Arc::default();
        let presses = Arc::new(AtomicUsize::new(0));
        let (c, p) = (current.clone(), presses.clone());
        ctrlc::set_handler(move || {
            let job = c.lock().ok().and_then(|g| g.clone());
            let keys = job.as_ref().map(|(_, k)| k.clone()).unwrap_or_default();
            if p.fetch_add(1, Ordering::SeqCst) == 0 {
                if let Some((control, _)) = &job {
                    let _ = control.send(Control::Pause);
                }
                if !json {
                    let what = if keys.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", keys.join(", "))
                    };
                    eprintln!(
                        "\nPausing{what} at the next checkpoint… (press Ctrl+C again to stop at once)"
                    );
                }
            } else {
                if !json {
                    eprintln!("\nStopped at once; {}", stopped_hint(&keys));
                }
                std::process::exit(EXIT_INTERRUPTED);
            }
        })?;
        Ok(Interrupt { current, presses })
    }

    /// From now on Ctrl+C pauses the job behind `control`, which runs the jobs `keys` (`<plugin>/<entry>`).
    fn watch(&self, control: watch::Sender<Control>, keys: Vec<String>) {
        if let Ok(mut g) = self.current.lock() {
            *g = Some((control, keys));
        }
    }

    fn pressed(&self) -> bool {
        self.presses.load(Ordering::SeqCst) > 0
    }
}
