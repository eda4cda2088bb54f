//! `release-gen`: writes a synthetic Open Targets-shaped release (see `psystem_bench::generate` and
//! `docs/BENCHMARKS.md`).
//!
//! ```text
//! release-gen --out DIR --release 25.03 --rows 2000000 --files 8 [--seed S] [--change PERCENT]
//! ```
//!
//! Prints a summary on stderr and one JSON line on stdout:
//! `{"tool":"release-gen","release_dir":…,"rows":…,"files":…,"bytes":…,"changed":…,"replaced":…,"seconds":…,"rows_per_s":…}`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use psystem_bench::generate::{write_release, GenSpec};

/// Write a synthetic Open Targets-shaped Parquet release with its release_data_integrity.
#[derive(Parser, Debug)]
#[command(name = "release-gen", version)]
struct Args {
    /// Folder that receives <RELEASE>/ (which must not exist yet).
    #[arg(long)]
    out: PathBuf,
    /// Release name, e.g. 25.03.
    #[arg(long)]
    release: String,
    /// Rows in the release.
    #[arg(long, default_value_t = 2_000_000)]
    rows: u64,
    /// Parquet part files.
    #[arg(long, default_value_t = 8)]
    files: u32,
    /// Seed of every random draw (same seed, same bytes).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write a changed release: PERCENT% of rows get a new score and name, PERCENT/2% of ids are replaced
    /// by new ones (0 = base release; at most 66).
    #[arg(long, default_value_t = 0.0)]
    change: f64,
    /// Dataset folder under output/.
    #[arg(long, default_value = "bench_entity")]
    dataset: String,
    /// Maximum rows per Parquet row group.
    #[arg(long, default_value_t = 131_072)]
    row_group_rows: usize,
    /// Threads writing files at once (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut spec = GenSpec::new(&args.out, &args.release, args.rows);
    spec.files = args.files;
    spec.seed = args.seed;
    spec.change_percent = args.change;
    spec.dataset = args.dataset;
    spec.row_group_rows = args.row_group_rows;
    if let Some(t) = args.threads {
        spec.threads = t;
    }
    let summary = write_release(&spec).context("release-gen")?;
    let rows_per_s = summary.rows as f64 / summary.seconds;
    eprintln!(
        "wrote {} rows in {} files ({:.1} MB) to {} in {:.2} s ({:.0} rows/s); changed {}, replaced {}",
        summary.rows,
        summary.files.len(),
        summary.bytes as f64 / 1e6,
        summary.release_dir.display(),
        summary.seconds,
        rows_per_s,
        summary.changed,
        summary.replaced
    );
    println!(
        "{}",
        serde_json::json!({
            "tool": "release-gen",
            "release_dir": summary.release_dir,
            "rows": summary.rows,
            "files": summary.files.len(),
            "bytes": summary.bytes,
            "changed": summary.changed,
            "replaced": summary.replaced,
            "seconds": summary.seconds,
            "rows_per_s": rows_per_s,
        })
    );
    Ok(())
}
