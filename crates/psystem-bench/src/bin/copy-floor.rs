//! `copy-floor`: the floor of the release-load benchmark (see `psystem_bench::floor` and `docs/BENCHMARKS.md`).
//!
//! ```text
//! copy-floor --db URL --release-dir DIR/<release> [--table T] [--dataset D] [--runs 3] [--copy-file PATH]
//!            [--primary-key COLUMN …]
//! ```
//!
//! Encodes the release's rows into one binary COPY file (psystem's flattening and encoder), then times the
//! server's `COPY t FROM '<file>' (FORMAT binary)` into an unindexed table, best of `--runs`. Prints a summary
//! on stderr and one JSON line on stdout:
//! `{"tool":"copy-floor","rows":…,"best_seconds":…,"rows_per_s":…,"run_seconds":[…],"encode_seconds":…,
//! "encode_rows_per_s":…,"copy_bytes":…,"table_bytes":…,"server_version":…}`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use psystem_bench::floor::{encode_release, run_floor, FloorSpec};

/// Measure the server's own binary COPY of a generated release (the benchmark floor).
#[derive(Parser, Debug)]
#[command(name = "copy-floor", version)]
struct Args {
    /// Database URL (a superuser, or a member of pg_read_server_files and pg_checkpoint).
    #[arg(long, env = "PSYSTEM_BENCH_DATABASE_URL")]
    db: String,
    /// The release folder (holding output/<dataset>/).
    #[arg(long)]
    release_dir: PathBuf,
    /// Dataset folder under output/.
    #[arg(long, default_value = "bench_entity")]
    dataset: String,
    /// Table to create (dropped first if it exists, and at the end unless --keep-table).
    #[arg(long, default_value = "bench_floor")]
    table: String,
    /// Timed COPY runs; the best counts.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where to write the binary COPY file; the server must be able to read it
    /// (default: <temp dir>/psystem-copy-floor-<pid>.pgcopy).
    #[arg(long)]
    copy_file: Option<PathBuf>,
    /// Keep the COPY file afterwards.
    #[arg(long)]
    keep_file: bool,
    /// Keep the table (with the last run's rows) afterwards.
    #[arg(long)]
    keep_table: bool,
    /// Also time ADD PRIMARY KEY on these columns after each COPY (the keyed floor: the end state of a first
    /// load with a primary key). Repeat the flag for a composite key.
    #[arg(long = "primary-key", value_name = "COLUMN")]
    primary_key: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,sqlx::query=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let copy_file = args.copy_file.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("psystem-copy-floor-{}.pgcopy", std::process::id()))
    });
    let copy_file = std::path::absolute(&copy_file).context("copy file path")?;
    let (release_dir, dataset) = (args.release_dir.clone(), args.dataset.clone());
    let target = copy_file.clone();
    let encoded =
        tokio::task::spawn_blocking(move || encode_release(&release_dir, &dataset, &target))
            .await
            .context("encoding task")?;
    let encoded = match encoded {
        Ok(e) => e,
        Err(e) => {
            let _ = std::fs::remove_file(&copy_file);
            return Err(e).context("copy-floor: encoding the release");
        }
    };
    eprintln!(
        "encoded {} rows from {} files into {} ({:.1} MB) in {:.2} s ({:.0} rows/s)",
        encoded.rows,
        encoded.files.len(),
        copy_file.display(),
        encoded.copy_bytes as f64 / 1e6,
        encoded.seconds,
        encoded.rows as f64 / encoded.seconds
    );
    let spec = FloorSpec {
        db_url: args.db,
        table: args.table,
        runs: args.runs,
        keep_table: args.keep_table,
        primary_key: args.primary_key,
    };
    let result = run_floor(&spec, &encoded).await;
    if !args.keep_file {
        let _ = std::fs::remove_file(&copy_file);
    }
    let result = result.context("copy-floor: timing COPY")?;
    eprintln!(
        "floor: COPY {} rows (FORMAT binary) best {:.2} s of {:?} → {:.0} rows/s; table {:.1} MB; PostgreSQL {}",
        result.rows,
        result.best_seconds,
        result
            .run_seconds
            .iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>(),
        result.rows_per_s,
        result.table_bytes as f64 / 1e6,
        result.server_version
    );
    if let (Some(best), Some(rps)) = (result.keyed_best_seconds, result.keyed_rows_per_s) {
        eprintln!("keyed floor: COPY + ADD PRIMARY KEY best {best:.2} s → {rps:.0} rows/s");
    }
    println!(
        "{}",
        serde_json::json!({
            "tool": "copy-floor",
            "rows": result.rows,
            "best_seconds": result.best_seconds,
            "rows_per_s": result.rows_per_s,
            "run_seconds": result.run_seconds,
            "keyed_best_seconds": result.keyed_best_seconds,
            "keyed_rows_per_s": result.keyed_rows_per_s,
            "keyed_run_seconds": result.keyed_run_seconds,
            "encode_seconds": encoded.seconds,
            "encode_rows_per_s": encoded.rows as f64 / encoded.seconds,
            "copy_bytes": encoded.copy_bytes,
            "table_bytes": result.table_bytes,
            "server_version": result.server_version,
            "columns": encoded.schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>(),
        })
    );
    Ok(())
}
