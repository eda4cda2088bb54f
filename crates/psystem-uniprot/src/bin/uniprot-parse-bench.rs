//! Throughput benchmark of the UniProtKB flat-file parser on one core.
//!
//! Builds a large flat file (default 200 MB) in a temporary directory by repeating the fixture entries with
//! rewritten primary accessions, then parses it to full `Entry` values three times and reports the best run:
//! MB/s (10^6 bytes of uncompressed flat file per second) and entries/s, then one JSON line.
//!
//! ```text
//! cargo build --release -p psystem-uniprot
//! $CARGO_TARGET_DIR/release/uniprot-parse-bench --mb 200 [--fixtures DIR] [--runs 3] [--gzip]
//! ```
//! `--gzip` also times the same file gzip-compressed (decompression included). `--file PATH` times an existing
//! flat file (plain or gzip, e.g. a real `uniprot_sprot.dat.gz`) instead of building one; `--keep DIR` writes the
//! built file into DIR and keeps it. It also times `plan_units` (work-unit planning) over the plain bytes in memory.
//!
//! Built with `--features bench-mimalloc`, this binary (only it) allocates with mimalloc; the JSON line's
//! `allocator` says which allocator ran.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use psystem_uniprot::{open_path, ErrorPolicy};

/// With the `bench-mimalloc` feature the benchmark allocates with mimalloc (a choice for binaries; the library
/// never sets an allocator). Without it, the system allocator (glibc malloc).
#[cfg(feature = "bench-mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Name of the global allocator, for the report.
const ALLOCATOR: &str = if cfg!(feature = "bench-mimalloc") {
    "mimalloc"
} else {
    "system"
};

fn main() -> Result<()> {
    let mut mb: u64 = 200;
    let mut runs: u32 = 3;
    let mut gzip = false;
    let mut file: Option<PathBuf> = None;
    let mut keep: Option<PathBuf> = None;
    let mut fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/uniprot");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mb" => mb = args.next().context("--mb N")?.parse()?,
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--fixtures" => fixtures = PathBuf::from(args.next().context("--fixtures DIR")?),
            "--gzip" => gzip = true,
            "--file" => file = Some(PathBuf::from(args.next().context("--file PATH")?)),
            "--keep" => keep = Some(PathBuf::from(args.next().context("--keep DIR")?)),
            other => {
                bail!("unknown argument `{other}` (use --mb N, --runs N, --fixtures DIR, --gzip)")
            }
        }
    }
    let dir = tempfile::tempdir()?;
    let (path, bytes, written) = if let Some(f) = file {
        // Count entries and decompressed bytes with one untimed pass.
        let mut reader = open_path(&f)?;
        let report = reader.for_each_entry(ErrorPolicy::Skip, |_| {})?;
        if report.skipped > 0 {
            eprintln!(
                "{}: {} entries skipped: {:?}",
                f.display(),
                report.skipped,
                report.skipped_entries.first()
            );
        }
        (f, reader.bytes_consumed(), report.parsed)
    } else {
        let entries = fixture_entries(&fixtures)?;
        if entries.is_empty() {
            bail!("no parseable entries under {}", fixtures.display());
        }
        let path = keep.as_deref().unwrap_or(dir.path()).join("bench.dat");
        let (bytes, written) = build_file(&path, &entries, mb * 1_000_000)?;
        eprintln!(
            "built {} ({} entries, {:.1} MB) from {} distinct fixture entries",
            path.display(),
            written,
            bytes as f64 / 1e6,
            entries.len()
        );
        (path, bytes, written)
    };
    let plain = time_parse(&path, runs, bytes, written)?;
    let mut json = serde_json::json!({
        "bench": "uniprot-parse",
        "allocator": ALLOCATOR,
        "file_mb": bytes as f64 / 1e6,
        "entries": written,
        "runs": runs,
        "best_seconds": plain.0,
        "mb_per_s": plain.1,
        "entries_per_s": plain.2,
        "best_cpu_seconds": plain.3,
        "mb_per_cpu_s": plain.4,
    });
    // The MD5 of every entry's text is part of the parse; its own speed bounds the parser's.
    let data = std::fs::read(&path)?;
    let start = Instant::now();
    let digest = <md5::Md5 as md5::Digest>::digest(&data);
    let md5_secs = start.elapsed().as_secs_f64();
    println!(
        "md5 alone: {:.1} MB/s ({:x})",
        data.len() as f64 / 1e6 / md5_secs,
        digest
    );
    json["md5_only_mb_per_s"] = serde_json::json!(data.len() as f64 / 1e6 / md5_secs);
    // Planning work units: one scan of the plain text for entry boundaries, no parsing.
    let start = Instant::now();
    let cpu_start = thread_cpu_seconds();
    let units = psystem_uniprot::plan_units(&data[..], 64 * 1024 * 1024)?;
    let plan_secs = start.elapsed().as_secs_f64();
    let plan_cpu = match (cpu_start, thread_cpu_seconds()) {
        (Some(a), Some(b)) => b - a,
        _ => plan_secs,
    };
    let entries_in_units: u64 = units.iter().map(|u| u.entries).sum();
    println!(
        "plan_units (64 MiB units, from memory): {:.0} MB/s wall, {:.0} MB per CPU s, {} units, {entries_in_units} entries",
        data.len() as f64 / 1e6 / plan_secs,
        data.len() as f64 / 1e6 / plan_cpu,
        units.len()
    );
    json["plan_units_mb_per_s"] = serde_json::json!(data.len() as f64 / 1e6 / plan_secs);
    json["plan_units_mb_per_cpu_s"] = serde_json::json!(data.len() as f64 / 1e6 / plan_cpu);
    drop(data);
    if gzip {
        let gz = dir.path().join("bench.dat.gz");
        let mut enc =
            flate2::write::GzEncoder::new(std::fs::File::create(&gz)?, flate2::Compression::fast());
        std::io::copy(&mut std::fs::File::open(&path)?, &mut enc)?;
        enc.finish()?.sync_all()?;
        let g = time_parse(&gz, runs, bytes, written)?;
        json["gzip_mb_per_s"] = serde_json::json!(g.1);
        json["gzip_entries_per_s"] = serde_json::json!(g.2);
        json["gzip_mb_per_cpu_s"] = serde_json::json!(g.4);
    }
    println!("{json}");
    eprintln!("allocator: {ALLOCATOR}");
    Ok(())
}

/// CPU time of this thread in seconds (Linux `/proc/thread-self/schedstat`), when available: on a shared machine
/// it measures the parser's own work, which wall time does not.
fn thread_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_ascii_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

/// Best of `runs`: (wall seconds, MB/s, entries/s, CPU seconds, MB per CPU second).
fn time_parse(
    path: &Path,
    runs: u32,
    bytes: u64,
    expected: u64,
) -> Result<(f64, f64, f64, f64, f64)> {
    let mut best = f64::MAX;
    let mut best_cpu = f64::MAX;
    for run in 1..=runs {
        let cpu_start = thread_cpu_seconds();
        let start = Instant::now();
        let mut residues = 0u64;
        let report = open_path(path)?.for_each_entry(ErrorPolicy::Fail, |e| {
            residues += e.sequence.residues.len() as u64
        })?;
        let secs = start.elapsed().as_secs_f64();
        let cpu = match (cpu_start, thread_cpu_seconds()) {
            (Some(a), Some(b)) => b - a,
            _ => secs,
        };
        if report.parsed != expected {
            bail!("parsed {} entries, expected {expected}", report.parsed);
        }
        println!(
            "{} run {run}: {:.3} s wall, {:.1} MB/s, {:.0} entries/s; {:.3} s CPU, {:.1} MB per CPU s ({residues} residues)",
            path.file_name().unwrap_or_default().to_string_lossy(),
            secs,
            bytes as f64 / 1e6 / secs,
            expected as f64 / secs,
            cpu,
            bytes as f64 / 1e6 / cpu,
        );
        best = best.min(secs);
        best_cpu = best_cpu.min(cpu);
    }
    Ok((
        best,
        bytes as f64 / 1e6 / best,
        expected as f64 / best,
        best_cpu,
        bytes as f64 / 1e6 / best_cpu,
    ))
}

/// The raw text of every fixture entry that parses (entries are cut at `//` lines).
fn fixture_entries(dir: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| d.display().to_string())? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let mut cur = String::new();
        for line in text.lines() {
            cur.push_str(line);
            cur.push('\n');
            if line == "//" {
                if psystem_uniprot::parse_entry(cur.as_bytes()).is_ok() {
                    out.push(std::mem::take(&mut cur));
                }
                cur.clear();
            }
        }
    }
    Ok(out)
}

/// Write entries round-robin, each with a fresh primary accession, until `target` bytes.
fn build_file(path: &Path, entries: &[String], target: u64) -> Result<(u64, u64)> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let (mut bytes, mut n) = (0u64, 0u64);
    while bytes < target {
        let e = &entries[(n as usize) % entries.len()];
        let ac = e.find("\nAC   ").context("entry without AC")? + 6;
        let end = ac + e[ac..].find(';').context("AC without ';'")?;
        let new = format!("{}{}{}", &e[..ac], format_args!("X{n:08}"), &e[end..]);
        out.write_all(new.as_bytes())?;
        bytes += new.len() as u64;
        n += 1;
    }
    out.flush()?;
    Ok((bytes, n))
}
