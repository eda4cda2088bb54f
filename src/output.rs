//! What the CLI prints: text for people, or one JSON document with `--json`; progress bars; logging setup.

use anyhow::Result;
use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};
use psystem_api::plugins::{PluginDetail, PluginList, PluginSummary};
use psystem_api::runs::PlannedJob;
use psystem_api::ClusterStatus;
use psystem_jobs::{JobEvent, JobOutcome, JobStatus};
use psystem_postgres::dryrun::DryRunReport;
use psystem_postgres::idcache::{CacheEntry, CachePage, CacheQuery, EntitySummary, ImportReport};
use psystem_postgres::metrics::{RunDetail, RunSummary};
use psystem_postgres::TablePreview;
use serde::Serialize;
use std::io::IsTerminal;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Logs: warnings (more with -v) to stderr; info and up appended to `$PSYSTEM_HOME/logs/psystem.log`.
/// No URL with a password is ever logged (the engine logs redacted URLs only).
pub fn init_logging(verbose: u8) -> Option<()> {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let stderr_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .compact()
        .with_filter(stderr_filter);
    let file_layer = psystem_core::Home::from_env().ok().and_then(|home| {
        let dir = home.logs_dir();
        std::fs::create_dir_all(&dir).ok()?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("psystem.log"))
            .ok()?;
        Some(
            // Plain text: no colours, and span fields formatted by this layer's own field formatter (a type of
            // its own), never the stderr layer's cached, coloured copy.
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .fmt_fields(PlainFields::default())
                .with_writer(std::sync::Mutex::new(file))
                .with_filter(EnvFilter::new("info,sqlx=warn")),
        )
    });
    tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .init();
    Some(())
}

/// The log file's field formatter: tracing-subscriber's default one under a type of its own, so that span fields
/// formatted (with colours) for stderr are never reused in the file.
#[derive(Default)]
struct PlainFields(tracing_subscriber::fmt::format::DefaultFields);

impl<'writer> tracing_subscriber::fmt::FormatFields<'writer> for PlainFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        self.0.format_fields(writer, fields)
    }
}

fn print_json<T: Serialize + ?Sized>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A note for the user (stderr, so that stdout stays clean for `--json`).
/// Bytes for people: `1.21 MiB`.
pub fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

pub fn note(msg: &str, json: bool) {
    if json {
        eprintln!("{}", serde_json::json!({ "note": msg }));
    } else {
        eprintln!("note: {msg}");
    }
}

/// One value on a line.
pub fn line(s: &str, json: bool) -> Result<()> {
    if json {
        print_json(s)
    } else {
        println!("{s}");
        Ok(())
    }
}

/// `psystem plugins list`.
pub fn plugin_list(list: &PluginList, json: bool) -> Result<()> {
    if json {
        return print_json(list);
    }
    if list.plugins.is_empty() {
        println!("No plugins found.");
    } else {
        println!(
            "{:<16} {:<8} {:<8} {:<10} {:<12} ENTRIES",
            "NAME", "ENABLED", "ORIGIN", "SOURCE", "CREATOR"
        );
        for p in &list.plugins {
            println!(
                "{:<16} {:<8} {:<8} {:<10} {:<12} {}",
                p.name,
                if p.enabled { "yes" } else { "no" },
                format!("{:?}", p.origin).to_lowercase(),
                p.source,
                p.creator.clone().unwrap_or_default(),
                p.entries
                    .iter()
                    .map(|e| if p.run.as_deref() == Some(e) {
                        format!("{e}*")
                    } else {
                        e.clone()
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        println!("(* = default entry; `psystem plugins show NAME` for details)");
    }
    for e in &list.errors {
        eprintln!("warning: {e}");
    }
    Ok(())
}

/// `psystem plugins show`.
pub fn plugin_detail(p: &PluginDetail, json: bool) -> Result<()> {
    if json {
        return print_json(p);
    }
    let s = &p.summary;
    println!(
        "{} — {}",
        s.name,
        s.description
            .clone()
            .unwrap_or_else(|| "(no description)".into())
    );
    println!("  creator:  {}", s.creator.clone().unwrap_or_default());
    println!(
        "  enabled:  {}",
        if s.enabled {
            "yes"
        } else {
            "no (psystem plugins enable NAME)"
        }
    );
    println!("  source:   {}", s.source);
    println!(
        "  manifest: {} ({})",
        s.path,
        format!("{:?}", s.origin).to_lowercase()
    );
    for e in &p.etl {
        println!(
            "\n  entry {}{}",
            e.key,
            if e.default { " (default)" } else { "" }
        );
        if let Some(i) = &e.indicator {
            println!("    indicator:   {i}");
        }
        if let Some(a) = &e.api {
            println!("    api:         {a}");
        }
        if let Some(f) = &e.file {
            println!("    file:        {f}");
        }
        println!("    table:       {}", e.table);
        println!(
            "    mode:        {}",
            e.mode
                .clone()
                .unwrap_or_else(|| "(default: merge by the primary key, else append)".into())
        );
        if !e.primary_key.is_empty() {
            println!("    primary key: {}", e.primary_key.join(", "));
        }
        if let Some(entity) = &e.entity {
            println!(
                "    entity:      {entity}, unique key ({})",
                e.unique_key.join(", ")
            );
        }
        for (column, entity) in &e.references {
            println!("    reference:   {column} → {entity} (its target ID in {column}_target_id)");
        }
        println!(
            "    destination: {}",
            e.destination_url
                .clone()
                .unwrap_or_else(|| "(--db, $DATABASE_URL or the local database)".into())
        );
        if e.columns.is_empty() {
            println!("    columns:     all");
        } else {
            let cols: Vec<String> = e
                .columns
                .iter()
                .map(|(a, b)| {
                    if a == b {
                        a.clone()
                    } else {
                        format!("{a}→{b}")
                    }
                })
                .collect();
            println!("    columns:     {}", cols.join(", "));
        }
    }
    Ok(())
}

/// `psystem plugins enable|disable`.
pub fn plugin_toggled(p: &PluginSummary, json: bool) -> Result<()> {
    if json {
        return print_json(p);
    }
    println!(
        "Plugin {} is now {}.",
        p.name,
        if p.enabled { "enabled" } else { "disabled" }
    );
    Ok(())
}

/// `psystem status`.
pub fn status(jobs: &[(String, JobStatus)], path: &str, json: bool) -> Result<()> {
    if json {
        let map: std::collections::BTreeMap<_, _> = jobs.iter().map(|(k, v)| (k, v)).collect();
        return print_json(&map);
    }
    if jobs.is_empty() {
        println!("No jobs yet ({path}). Start one with `psystem run PLUGIN`.");
        return Ok(());
    }
    println!(
        "{:<32} {:<11} {:>12} {:>7} {:>10}  TABLE / NOTE",
        "JOB", "STATE", "ROWS", "PAGES", "BYTES"
    );
    for (key, j) in jobs {
        let rows = match j.total_rows {
            Some(t) => format!("{}/{}", j.rows, t),
            None => j.rows.to_string(),
        };
        println!(
            "{:<32} {:<11} {:>12} {:>7} {:>10}  {}",
            key,
            if j.is_interrupted() {
                "interrupted".to_string()
            } else {
                j.state.to_string()
            },
            rows,
            j.pages,
            HumanBytes(j.bytes).to_string(),
            j.table
        );
        if let Some(e) = &j.last_error {
            println!("{:<32} last error: {e}", "");
        }
        if j.state.is_resumable() {
            println!("{:<32} resume with: psystem resume {key}", "");
        }
    }
    Ok(())
}

/// `psystem db …`.
pub fn cluster(s: &ClusterStatus, json: bool) -> Result<()> {
    if json {
        return print_json(s);
    }
    println!(
        "local database: {}",
        if s.running {
            "running"
        } else if s.initialized {
            "stopped"
        } else {
            "not initialised"
        }
    );
    println!("  data:  {}", s.data_dir.display());
    if let Some(p) = s.port {
        println!("  port:  {p} (127.0.0.1)");
    }
    if let Some(u) = &s.url {
        println!("  url:   {u}");
    }
    if let Some(v) = &s.server_version {
        println!("  server: {v}");
    }
    println!("  log:   {}", s.log_file.display());
    Ok(())
}

/// Draws a progress bar from job events (or prints one line per event when stderr is not a terminal).
pub struct Progress {
    bar: Option<ProgressBar>,
    json: bool,
    key: String,
}

impl Progress {
    /// A progress display for a planned job.
    pub fn new(job: &PlannedJob, draw: bool, json: bool) -> Progress {
        let bar = (draw && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix} [{bar:30}] {human_pos}/{human_len} rows · {msg} · {rate} · {eta} left",
                )
                .expect("valid template")
                .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{} rows/s", HumanCount(s.per_sec().round() as u64));
                })
                .progress_chars("=> "),
            );
            b.set_prefix(job.spec.key());
            b
        });
        Progress {
            bar,
            json,
            key: job.spec.key(),
        }
    }

    /// Updates from one event.
    pub fn on_event(&mut self, e: &JobEvent) {
        match e {
            JobEvent::Started {
                load_id,
                resumed,
                counters,
                next_page,
                total_rows,
                ..
            } => {
                let msg = if *resumed {
                    format!(
                        "Resuming {} (load {load_id}) at page {next_page}: {} rows in {} pages already loaded.",
                        self.key, counters.rows, counters.pages
                    )
                } else {
                    format!("Loading {} (load {load_id}).", self.key)
                };
                self.say(&msg);
                if let Some(b) = &self.bar {
                    if let Some(t) = total_rows {
                        b.set_length(*t);
                    }
                    b.set_position(counters.rows);
                    b.reset_eta();
                }
            }
            JobEvent::Reconciled { message, .. } => self.say(&format!("note: {message}")),
            JobEvent::SourceReport { lines, .. } => {
                for l in lines {
                    self.say(l);
                }
            }
            JobEvent::UnknownFields { fields, .. } => self.say(&format!(
                "warning: the source sent fields psystem does not know, not loaded: {}",
                fields.join(", ")
            )),
            JobEvent::PageCommitted {
                counters,
                total_rows,
                ..
            } => {
                if let Some(b) = &self.bar {
                    if let Some(t) = total_rows {
                        b.set_length(*t);
                    }
                    b.set_position(counters.rows);
                    b.set_message(format!(
                        "page {} · {}",
                        counters.pages,
                        HumanBytes(counters.bytes)
                    ));
                } else if !self.json {
                    let of = total_rows.map(|t| format!("/{t}")).unwrap_or_default();
                    eprintln!(
                        "page {} committed: {}{} rows, {}",
                        counters.pages,
                        counters.rows,
                        of,
                        HumanBytes(counters.bytes)
                    );
                }
            }
            JobEvent::Finished { .. } => {}
        }
    }

    fn say(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(msg),
            None if !self.json => eprintln!("{msg}"),
            None => {}
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// The end of `psystem run|resume`: a summary and, for a completed load, a few rows.
pub fn outcome(o: &JobOutcome, preview: Option<&TablePreview>, json: bool) -> Result<()> {
    if json {
        return print_json(&serde_json::json!({ "outcome": o, "preview": preview }));
    }
    if o.skipped && o.load_id == 0 {
        println!(
            "Skipped {}: the file was modified outside the --since/--until window.",
            o.job
        );
        return Ok(());
    }
    if o.skipped {
        println!(
            "Skipped {}: load {} already holds this data in {} (--force to load it again).",
            o.job, o.load_id, o.table
        );
        return Ok(());
    }
    match o.state {
        psystem_core::JobState::Completed => {
            println!(
                "Completed {}: {} rows in {} pages ({}) into {} at {}.",
                o.job,
                o.counters.rows,
                o.counters.pages,
                HumanBytes(o.counters.bytes),
                o.table,
                o.destination
            );
        }
        psystem_core::JobState::Paused => {
            println!(
                "Paused {} after page {} ({} rows committed). Resume with: psystem resume {}",
                o.job, o.counters.pages, o.counters.rows, o.job
            );
        }
        state => println!("{} {}: {} rows committed.", state, o.job, o.counters.rows),
    }
    if o.new_ids > 0 {
        println!("{} new target IDs were assigned.", o.new_ids);
    }
    if !o.unknown_fields.is_empty() {
        println!(
            "Fields sent by the source and not loaded: {}",
            o.unknown_fields.join(", ")
        );
    }
    if let Some(p) = preview.filter(|p| !p.rows.is_empty()) {
        println!("\nFirst rows of {}:", o.table);
        print_rows(p);
    }
    Ok(())
}

/// Prints rows as an aligned text table; columns that are empty in every shown row are left out and counted.
fn print_rows(p: &TablePreview) {
    let cell = |v: &serde_json::Value| -> String {
        let s = match v {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        if s.chars().count() > 28 {
            format!("{}…", s.chars().take(27).collect::<String>())
        } else {
            s
        }
    };
    let shown: Vec<usize> = (0..p.columns.len())
        .filter(|&i| {
            p.rows
                .iter()
                .any(|r| r.get(i).is_some_and(|v| !v.is_null()))
        })
        .collect();
    let table: Vec<Vec<String>> = p
        .rows
        .iter()
        .map(|r| {
            shown
                .iter()
                .map(|&i| r.get(i).map(cell).unwrap_or_default())
                .collect()
        })
        .collect();
    let widths: Vec<usize> = shown
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            table
                .iter()
                .map(|r| r[k].chars().count())
                .max()
                .unwrap_or(0)
                .max(p.columns[i].chars().count())
        })
        .collect();
    let fmt_row = |cells: Vec<String>| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_string()
    };
    println!(
        "{}",
        fmt_row(shown.iter().map(|&i| p.columns[i].clone()).collect())
    );
    println!(
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    );
    for r in table {
        println!("{}", fmt_row(r));
    }
    let hidden = p.columns.len() - shown.len();
    if hidden > 0 {
        println!("({hidden} columns empty in these rows not shown)");
    }
}

/// `psystem idcache entities`.
pub fn entities(list: &[EntitySummary], json: bool) -> Result<()> {
    if json {
        return print_json(list);
    }
    if list.is_empty() {
        println!(
            "The ID cache is empty: load an ETL entry that declares `entity` and `unique_key`."
        );
        return Ok(());
    }
    println!(
        "{:<20} {:>10}  {:<30} TARGET",
        "ENTITY", "ENTRIES", "UNIQUE KEY"
    );
    for e in list {
        println!(
            "{:<20} {:>10}  {:<30} {}",
            e.entity,
            HumanCount(e.count.max(0) as u64).to_string(),
            e.key_columns.join(" + "),
            e.target
        );
    }
    Ok(())
}

/// `psystem idcache list|search`.
pub fn cache_page(entity: &str, page: &CachePage, q: &CacheQuery, json: bool) -> Result<()> {
    if json {
        return print_json(page);
    }
    if page.entries.is_empty() {
        println!(
            "No {entity} entries{}.",
            q.search
                .as_ref()
                .map(|s| format!(" matching `{s}`"))
                .unwrap_or_default()
        );
        return Ok(());
    }
    let w = page
        .entries
        .iter()
        .map(|e| e.unique_key.chars().count())
        .max()
        .unwrap_or(10)
        .clamp(10, 60);
    println!(
        "{:<w$}  {:<38} {:>6} {:>6}",
        "UNIQUE KEY", "TARGET ID", "FIRST", "LAST"
    );
    for e in &page.entries {
        println!(
            "{:<w$}  {:<38} {:>6} {:>6}",
            e.unique_key, e.target_id, e.first_seen_run, e.last_seen_run
        );
    }
    let pages = (page.total + q.limit - 1) / q.limit.max(1);
    println!(
        "page {} of {} ({} {entity} entries{})",
        q.offset / q.limit.max(1) + 1,
        pages.max(1),
        page.total,
        q.search
            .as_ref()
            .map(|s| format!(" matching `{s}`"))
            .unwrap_or_default()
    );
    Ok(())
}

/// `psystem idcache show`.
pub fn cache_entry(entity: &str, e: &CacheEntry, json: bool) -> Result<()> {
    if json {
        return print_json(e);
    }
    println!("{entity} {}", e.unique_key);
    println!("  target ID:      {}", e.target_id);
    println!("  first seen:     load {}", e.first_seen_run);
    println!("  last seen:      load {}", e.last_seen_run);
    Ok(())
}

/// `psystem idcache import`.
pub fn import_report(entity: &str, r: &ImportReport, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    println!(
        "Imported {entity}: {} new, {} unchanged, {} conflicts.",
        r.inserted,
        r.unchanged,
        r.conflicts.len()
    );
    for c in r.conflicts.iter().take(20) {
        match (&c.cached_id, &c.owner) {
            (Some(cached), _) => println!(
                "  conflict: line {}: key `{}` has ID `{}` in the file, but the cache holds `{cached}`",
                c.line, c.unique_key, c.file_id
            ),
            (None, Some(owner)) => println!(
                "  conflict: line {}: key `{}` has ID `{}` in the file, but key `{owner}` already holds that ID",
                c.line, c.unique_key, c.file_id
            ),
            (None, None) => println!(
                "  conflict: line {}: key `{}` has ID `{}` in the file",
                c.line, c.unique_key, c.file_id
            ),
        }
    }
    Ok(())
}

/// `psystem runs list`.
pub fn runs(list: &[RunSummary], json: bool) -> Result<()> {
    if json {
        return print_json(list);
    }
    if list.is_empty() {
        println!("No loads in this database yet.");
        return Ok(());
    }
    println!(
        "{:>5}  {:<32} {:<10} {:<8} {:>10} {:>10} {:>9}  {:<19}  TABLE",
        "LOAD", "JOB", "STATE", "MODE", "ROWS", "BYTES", "TIME", "STARTED"
    );
    for r in list {
        println!(
            "{:>5}  {:<32} {:<10} {:<8} {:>10} {:>10} {:>9}  {:<19}  {}",
            r.id,
            r.job_key,
            r.state.to_string(),
            r.mode.to_string(),
            HumanCount(r.rows).to_string(),
            HumanBytes(r.bytes).to_string(),
            format!("{:.1} s", r.duration_ms as f64 / 1000.0),
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            r.table
        );
    }
    Ok(())
}

/// `psystem runs show`.
pub fn run_detail(r: &RunDetail, json: bool) -> Result<()> {
    if json {
        return print_json(r);
    }
    let s = &r.summary;
    println!(
        "load {} — {} ({}, {}) into {}",
        s.id, s.job_key, s.state, s.mode, s.table
    );
    println!(
        "  started:  {}",
        s.started_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    if let Some(f) = s.finished_at {
        println!(
            "  finished: {} ({:.1} s)",
            f.format("%Y-%m-%d %H:%M:%S UTC"),
            s.duration_ms as f64 / 1000.0
        );
    }
    println!(
        "  pages {} · rows {} · {}",
        s.pages,
        HumanCount(s.rows),
        HumanBytes(s.bytes)
    );
    if let Some(e) = &s.last_error {
        println!("  last error: {e}");
    }
    let Some(m) = &r.metrics else {
        println!("  (no run metrics recorded)");
        return Ok(());
    };
    println!(
        "  rows read {} · written {} · rejected {}",
        m.rows_read, m.rows_written, m.rows_rejected
    );
    let phases: Vec<String> = m
        .phase_ms
        .iter()
        .map(|(k, v)| format!("{k} {v} ms"))
        .collect();
    println!("  time per phase: {}", phases.join(" · "));
    println!("  {:<32} {:>10} {:>10}", "COLUMN", "NULLS", "DISTINCT");
    for (name, c) in &m.columns {
        let distinct = c
            .distinct
            .map(|d| d.to_string())
            .unwrap_or_else(|| "-".into());
        println!("  {:<32} {:>10} {:>10}", name, c.nulls, distinct);
    }
    Ok(())
}

/// `psystem run --dry-run`.
pub fn dry_run(
    reports: &[(String, DryRunReport, Option<std::path::PathBuf>)],
    json: bool,
) -> Result<()> {
    if json {
        let docs: Vec<_> = reports
            .iter()
            .map(|(job, r, file)| serde_json::json!({ "job": job, "report": r, "output": file }))
            .collect();
        return print_json(&docs);
    }
    println!("Dry run — nothing was written to the destination.");
    println!(
        "{:<32} {:<24} {:<8} {:>8} {:>9} {:>8} {:>8} {:>8}",
        "JOB", "TABLE", "MODE", "ROWS", "INSERTED", "UPDATED", "DELETED", "NEW IDS"
    );
    for (job, r, _) in reports {
        println!(
            "{:<32} {:<24} {:<8} {:>8} {:>9} {:>8} {:>8} {:>8}",
            job,
            format!("{}{}", r.table, if r.table_exists { "" } else { " (new)" }),
            r.mode,
            r.rows,
            r.inserted,
            r.updated,
            r.deleted,
            r.new_ids
        );
    }
    for (job, r, file) in reports {
        if r.unresolved_references > 0 {
            println!("warning: {job}: {} references cannot be resolved from the ID cache; the load would fail", r.unresolved_references);
        }
        if let Some(f) = file {
            println!("{job}: what would be loaded is in {}", f.display());
        }
    }
    Ok(())
}
