//! The synthetic release: an Open Targets-shaped (≥ 25.03 layout) Parquet release of one dataset,
//! deterministic from a seed, written streaming with the `parquet` crate's `ArrowWriter`.
//!
//! Layout (the one Open Targets uses from 25.03, see `/work/shared/fixtures/README.md` and
//! `docs/BENCHMARKS.md`):
//!
//! ```text
//! <out>/<release>/output/<dataset>/part-0000N-<uuid>-c000.snappy.parquet   one file per part, N from 0
//! <out>/<release>/release_data_integrity                                   GNU sha1sum lines, one per file:
//!                                                                          `<sha1>  ./output/<dataset>/part-…`
//! <out>/<release>/release_data_integrity.sha1                              `<sha1 of the manifest>  release_data_integrity`
//! ```
//!
//! Columns of every file ([`schema`]; every field nullable, as Spark writes them):
//!
//! | column | Arrow type | values |
//! |---|---|---|
//! | `id` | `Utf8` | `ENT_0000001` … (1-based entity index, at least 7 digits); unique within a release |
//! | `name` | `Utf8` | e.g. `Kinase ALPHA-417`; a revised row ends in ` (rev)` |
//! | `description` | `Utf8` | 70–90 characters of words, some non-ASCII, with occasional tab, newline, `"` and `\`; NULL for ~1% |
//! | `score` | `Float64` | uniform in [0, 1) |
//! | `location` | `Struct{chromosome: Utf8, start: Int64, end: Int64}` | chromosome `1`…`22`, `X`, `Y`, `MT`; 1 ≤ start < end (bases); NULL for ~2% |
//! | `synonyms` | `List<Utf8>` (item field `element`, as Spark writes it) | 0–4 strings |
//!
//! Every row of entity index `i` is drawn from its own ChaCha8 stream seeded from `(seed, i)`, so a row
//! does not depend on the file count or on which thread wrote it. A *changed* release
//! ([`GenSpec::change_percent`] `P` > 0) keeps the row positions of the base release; at each position a
//! separate draw decides: with probability `P/2 %` the entity is removed and a new one (entity index
//! `rows + position`, never present in the base) takes its place; with probability `P %` the entity
//! keeps its id but gets a different `score` and `name`; otherwise the row is identical to the base row.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_array::builder::{Float64Builder, Int64Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch, StructArray};
use arrow_buffer::NullBuffer;
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha1::{Digest, Sha1};

/// The file name of the checksum manifest in a release folder.
pub const MANIFEST_NAME: &str = "release_data_integrity";
/// The file name of the manifest's own checksum.
pub const MANIFEST_SHA1_NAME: &str = "release_data_integrity.sha1";

/// Random streams, one per purpose, so that adding a draw to one never shifts another.
const STREAM_ENTITY: u64 = 1;
const STREAM_REVISION: u64 = 2;
const STREAM_CHANGE: u64 = 3;
const STREAM_UUID: u64 = 4;

/// What [`write_release`] writes.
#[derive(Debug, Clone)]
pub struct GenSpec {
    /// The folder that receives `<release>/`; created if missing.
    pub out: PathBuf,
    /// The release name, e.g. `25.03`; one path component.
    pub release: String,
    /// The dataset folder under `output/`, e.g. `bench_entity`; one path component.
    pub dataset: String,
    /// Rows in the release (≥ 1).
    pub rows: u64,
    /// Parquet part files (1 ..= rows); rows are split evenly, the first files never hold more.
    pub files: u32,
    /// Seed of every random draw; the same spec gives byte-identical files.
    pub seed: u64,
    /// 0 for a base release; `P` in (0, 66] for a changed release (see the module documentation).
    pub change_percent: f64,
    /// Rows per Arrow record batch handed to the writer (memory per thread ≈ one batch + one row group).
    pub batch_rows: usize,
    /// Maximum rows per Parquet row group.
    pub row_group_rows: usize,
    /// Threads writing files at once (≥ 1); each writes whole files.
    pub threads: usize,
}

impl GenSpec {
    /// A spec with the benchmark's defaults: dataset `bench_entity`, 8 files, seed 1, no change, batches of
    /// 8,192 rows, row groups of 131,072 rows, one thread per available core.
    pub fn new(out: impl Into<PathBuf>, release: impl Into<String>, rows: u64) -> GenSpec {
        GenSpec {
            out: out.into(),
            release: release.into(),
            dataset: "bench_entity".into(),
            rows,
            files: 8,
            seed: 1,
            change_percent: 0.0,
            batch_rows: 8192,
            row_group_rows: 131_072,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// The release folder, `<out>/<release>`.
    pub fn release_dir(&self) -> PathBuf {
        self.out.join(&self.release)
    }

    fn validate(&self) -> Result<(), GenError> {
        let invalid = |m: String| Err(GenError::InvalidSpec(m));
        for (what, v) in [("release", &self.release), ("dataset", &self.dataset)] {
            if v.is_empty() || v == "." || v == ".." || v.contains(['/', '\\']) {
                return invalid(format!("{what} `{v}` must be one path component"));
            }
        }
        if self.rows == 0 {
            return invalid("rows must be at least 1".into());
        }
        if self.files == 0 || u64::from(self.files) > self.rows {
            return invalid(format!(
                "files must be between 1 and the number of rows ({}), not {}",
                self.rows, self.files
            ));
        }
        if self.files > 99_999 {
            return invalid("at most 99999 files (part numbers have 5 digits)".into());
        }
        if !(0.0..=66.0).contains(&self.change_percent) || self.change_percent.is_nan() {
            return invalid(format!(
                "change percent must be in 0..=66 (P% changed + P/2% replaced ≤ 100%), not {}",
                self.change_percent
            ));
        }
        if self.batch_rows == 0 || self.row_group_rows == 0 || self.threads == 0 {
            return invalid("batch rows, row group rows and threads must be at least 1".into());
        }
        Ok(())
    }
}

/// One written part file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileSummary {
    /// The path relative to the release folder, `output/<dataset>/part-…parquet`.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// SHA-1 of the file, lower-case hex.
    pub sha1: String,
}

/// What [`write_release`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GenSummary {
    /// The release folder.
    pub release_dir: PathBuf,
    /// The part files, in part order (the order of the manifest).
    pub files: Vec<FileSummary>,
    /// Rows in all files.
    pub rows: u64,
    /// Rows whose entity kept its id but got a different score and name (0 for a base release).
    pub changed: u64,
    /// Base entities left out of a changed release; as many new entities took their places.
    pub replaced: u64,
    /// Bytes of all part files.
    pub bytes: u64,
    /// Wall time of the whole write, seconds.
    pub seconds: f64,
}

/// Why a release could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// The spec is unusable (message says which field and why).
    #[error("invalid release spec: {0}")]
    InvalidSpec(String),
    /// The release folder exists already; the generator never mixes its files with others.
    #[error("{0} exists already; remove it or choose another --out or --release")]
    Exists(PathBuf),
    /// Creating, writing or renaming a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The Parquet writer failed.
    #[error("{path}: writing Parquet: {source}")]
    Parquet {
        /// The part file.
        path: PathBuf,
        /// The writer's error.
        source: ParquetError,
    },
    /// Building a record batch failed (a bug of the generator).
    #[error("building a record batch: {0}")]
    Arrow(#[from] ArrowError),
}

/// The Arrow schema of every generated file (see the module documentation).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("description", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
        Field::new("location", DataType::Struct(location_fields()), true),
        Field::new(
            "synonyms",
            DataType::List(Arc::new(synonym_item_field())),
            true,
        ),
    ]))
}

fn location_fields() -> Fields {
    Fields::from(vec![
        Field::new("chromosome", DataType::Utf8, true),
        Field::new("start", DataType::Int64, true),
        Field::new("end", DataType::Int64, true),
    ])
}

fn synonym_item_field() -> Field {
    Field::new("element", DataType::Utf8, true)
}

/// The id of the entity with 0-based index `index`: `ENT_` and the 1-based number, at least 7 digits.
pub fn entity_id(index: u64) -> String {
    format!("ENT_{:07}", index + 1)
}

/// Writes the release described by `spec` and its `release_data_integrity` (+ `.sha1`).
///
/// Fails with [`GenError::Exists`] when `<out>/<release>` exists, [`GenError::InvalidSpec`] for an unusable
/// spec, [`GenError::Io`] / [`GenError::Parquet`] when writing fails (the partial release is left for
/// inspection; the manifest is written last, its `.sha1` after it, so a release without `.sha1` is
/// incomplete). Memory is bounded by `threads × (one batch + one row group)`, whatever `rows` is.
pub fn write_release(spec: &GenSpec) -> Result<GenSummary, GenError> {
    spec.validate()?;
    let started = Instant::now();
    let release_dir = spec.release_dir();
    if release_dir.exists() {
        return Err(GenError::Exists(release_dir));
    }
    let dataset_rel = format!("output/{}", spec.dataset);
    let dataset_dir = release_dir.join(&dataset_rel);
    fs::create_dir_all(&dataset_dir).map_err(|source| GenError::Io {
        path: dataset_dir.clone(),
        source,
    })?;
    let job_uuid = job_uuid(spec);

    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<PartResult>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..spec.threads.min(spec.files as usize) {
            scope.spawn(|| loop {
                let part = next.fetch_add(1, Ordering::Relaxed);
                if part >= spec.files as usize {
                    break;
                }
                let part = part as u32;
                let name = format!("part-{part:05}-{job_uuid}-c000.snappy.parquet");
                let rel = format!("{dataset_rel}/{name}");
                let r =
                    write_part(spec, part, &release_dir.join(&rel), rel).map(|(f, c)| (part, f, c));
                let failed = r.is_err();
                results.lock().expect("results lock").push(r);
                if failed {
                    // Stop handing out parts; the other threads finish their current file.
                    next.store(spec.files as usize, Ordering::Relaxed);
                    break;
                }
            });
        }
    });
    let mut parts = Vec::new();
    for r in results.into_inner().expect("results lock") {
        parts.push(r?);
    }
    parts.sort_by_key(|(part, _, _)| *part);

    let mut manifest = String::new();
    let mut summary = GenSummary {
        release_dir: release_dir.clone(),
        files: Vec::new(),
        rows: 0,
        changed: 0,
        replaced: 0,
        bytes: 0,
        seconds: 0.0,
    };
    for (_, file, counts) in parts {
        manifest.push_str(&format!("{}  ./{}\n", file.sha1, file.path));
        summary.rows += file.rows;
        summary.bytes += file.bytes;
        summary.changed += counts.changed;
        summary.replaced += counts.replaced;
        summary.files.push(file);
    }
    let manifest_path = release_dir.join(MANIFEST_NAME);
    fs::write(&manifest_path, &manifest).map_err(|source| GenError::Io {
        path: manifest_path,
        source,
    })?;
    let sha1_path = release_dir.join(MANIFEST_SHA1_NAME);
    let line = format!(
        "{}  {MANIFEST_NAME}\n",
        hex(&Sha1::digest(manifest.as_bytes()))
    );
    fs::write(&sha1_path, line).map_err(|source| GenError::Io {
        path: sha1_path,
        source,
    })?;
    summary.seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        release = %release_dir.display(),
        rows = summary.rows,
        files = summary.files.len(),
        seconds = summary.seconds,
        "release written"
    );
    Ok(summary)
}

/// One part's outcome: its number, its file and its counts.
type PartResult = Result<(u32, FileSummary, PartCounts), GenError>;

#[derive(Default)]
struct PartCounts {
    changed: u64,
    replaced: u64,
}

/// A `Write` that passes bytes through to a buffered file and hashes them on the way.
struct HashingWriter {
    inner: BufWriter<File>,
    sha1: Sha1,
    bytes: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha1.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn write_part(
    spec: &GenSpec,
    part: u32,
    path: &Path,
    rel: String,
) -> Result<(FileSummary, PartCounts), GenError> {
    let io_err = |source| GenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let pq_err = |source| GenError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(io_err)?;
    let sink = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        sha1: Sha1::new(),
        bytes: 0,
    };
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(spec.row_group_rows))
        .set_created_by("psystem-bench release-gen".into())
        .build();
    let schema = schema();
    let mut writer = ArrowWriter::try_new(sink, schema.clone(), Some(props)).map_err(pq_err)?;

    let files = u64::from(spec.files);
    let first = spec.rows * u64::from(part) / files;
    let end = spec.rows * (u64::from(part) + 1) / files;
    let mut counts = PartCounts::default();
    let mut position = first;
    let mut scratch = RowScratch::default();
    while position < end {
        let batch_end = (position + spec.batch_rows as u64).min(end);
        let mut b = BatchBuilders::new(schema.clone(), (batch_end - position) as usize);
        for pos in position..batch_end {
            let (index, revised) = match row_kind(spec, pos) {
                RowKind::Same => (pos, false),
                RowKind::Revised => {
                    counts.changed += 1;
                    (pos, true)
                }
                RowKind::Replaced => {
                    counts.replaced += 1;
                    (spec.rows + pos, false)
                }
            };
            b.append(spec.seed, index, revised, &mut scratch);
        }
        writer.write(&b.finish()?).map_err(pq_err)?;
        position = batch_end;
    }
    let mut sink = writer.into_inner().map_err(pq_err)?;
    sink.flush().map_err(io_err)?;
    sink.inner.get_ref().sync_all().map_err(io_err)?;
    Ok((
        FileSummary {
            path: rel,
            rows: end - first,
            bytes: sink.bytes,
            sha1: hex(&sink.sha1.finalize()),
        },
        counts,
    ))
}

enum RowKind {
    Same,
    Revised,
    Replaced,
}

fn row_kind(spec: &GenSpec, position: u64) -> RowKind {
    if spec.change_percent <= 0.0 {
        return RowKind::Same;
    }
    let u: f64 = rng(spec.seed, STREAM_CHANGE, position).random::<f64>() * 100.0;
    if u < spec.change_percent / 2.0 {
        RowKind::Replaced
    } else if u < spec.change_percent * 1.5 {
        RowKind::Revised
    } else {
        RowKind::Same
    }
}

/// The random stream of one `(seed, purpose, index)`; distinct for distinct purposes and indexes below 2⁵⁶.
fn rng(seed: u64, stream: u64, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (stream << 56) ^ index)
}

/// A Spark-like job UUID for the file names, from the seed, the release and the change.
fn job_uuid(spec: &GenSpec) -> String {
    let mut h = Sha1::new();
    h.update(spec.release.as_bytes());
    h.update(spec.change_percent.to_bits().to_be_bytes());
    let d = h.finalize();
    let salt = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    let mut bytes = [0u8; 16];
    rng(spec.seed ^ salt, STREAM_UUID, 0).fill(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4, as Spark's UUID.randomUUID
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h = hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

const NAME_HEADS: [&str; 12] = [
    "Kinase",
    "Receptor",
    "Transporter",
    "Channel",
    "Ligase",
    "Protease",
    "Factor",
    "Regulator",
    "Synthase",
    "Oxidase",
    "Antigen",
    "Adaptor",
];
const NAME_TAILS: [&str; 10] = [
    "ALPHA", "BETA", "GAMMA", "DELTA", "KAPPA", "OMEGA", "SIGMA", "THETA", "ZETA", "EPSILON",
];
const WORDS: [&str; 40] = [
    "protein",
    "binding",
    "involved",
    "in",
    "the",
    "regulation",
    "of",
    "cell",
    "cycle",
    "and",
    "apoptosis",
    "signalling",
    "pathway",
    "membrane",
    "associated",
    "nuclear",
    "transcription",
    "factor",
    "expressed",
    "liver",
    "kidney",
    "brain",
    "β-catenin",
    "naïve",
    "Sjögren",
    "α-helix",
    "domain",
    "mutation",
    "variant",
    "disease",
    "risk",
    "locus",
    "with",
    "high",
    "affinity",
    "for",
    "DNA",
    "RNA",
    "mitochondrial",
    "complex",
];
/// Characters a text COPY path must escape; binary COPY carries them unchanged.
const SPECIALS: [char; 4] = ['\t', '\n', '"', '\\'];
const CHROMOSOMES: [&str; 25] = [
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", "17",
    "18", "19", "20", "21", "22", "X", "Y", "MT",
];

#[derive(Default)]
struct RowScratch {
    text: String,
}

struct BatchBuilders {
    schema: SchemaRef,
    id: StringBuilder,
    name: StringBuilder,
    description: StringBuilder,
    score: Float64Builder,
    chromosome: StringBuilder,
    start: Int64Builder,
    end: Int64Builder,
    location_valid: Vec<bool>,
    synonyms: ListBuilder<StringBuilder>,
}

impl BatchBuilders {
    fn new(schema: SchemaRef, rows: usize) -> BatchBuilders {
        BatchBuilders {
            schema,
            id: StringBuilder::with_capacity(rows, rows * 12),
            name: StringBuilder::with_capacity(rows, rows * 24),
            description: StringBuilder::with_capacity(rows, rows * 90),
            score: Float64Builder::with_capacity(rows),
            chromosome: StringBuilder::with_capacity(rows, rows * 2),
            start: Int64Builder::with_capacity(rows),
            end: Int64Builder::with_capacity(rows),
            location_valid: Vec::with_capacity(rows),
            synonyms: ListBuilder::new(StringBuilder::new())
                .with_field(Arc::new(synonym_item_field())),
        }
    }

    /// Appends the entity with 0-based `index`; `revised` gives it a different score and name.
    fn append(&mut self, seed: u64, index: u64, revised: bool, scratch: &mut RowScratch) {
        use std::fmt::Write as _;
        let mut r = rng(seed, STREAM_ENTITY, index);
        let text = &mut scratch.text;

        text.clear();
        let _ = write!(text, "ENT_{:07}", index + 1);
        self.id.append_value(&*text);

        let head = NAME_HEADS[r.random_range(0..NAME_HEADS.len())];
        let tail = NAME_TAILS[r.random_range(0..NAME_TAILS.len())];
        let number: u32 = r.random_range(1..1000);
        let score: f64 = r.random();

        text.clear();
        let target = r.random_range(70..=90);
        let mut first = true;
        while text.chars().count() < target {
            if !first {
                if r.random_ratio(1, 40) {
                    text.push(SPECIALS[r.random_range(0..SPECIALS.len())]);
                } else {
                    text.push(' ');
                }
            }
            first = false;
            text.push_str(WORDS[r.random_range(0..WORDS.len())]);
        }
        if r.random_ratio(1, 100) {
            self.description.append_null();
        } else {
            self.description.append_value(&*text);
        }

        if r.random_ratio(1, 50) {
            self.location_valid.push(false);
            self.chromosome.append_null();
            self.start.append_null();
            self.end.append_null();
        } else {
            let start: i64 = r.random_range(1..250_000_000);
            self.location_valid.push(true);
            self.chromosome
                .append_value(CHROMOSOMES[r.random_range(0..CHROMOSOMES.len())]);
            self.start.append_value(start);
            self.end
                .append_value(start + r.random_range(100..2_000_000));
        }

        let synonyms = r.random_range(0..=4);
        for k in 0..synonyms {
            text.clear();
            let _ = write!(
                text,
                "{}{}-{}",
                &tail[..3],
                r.random_range(1..10_000u32),
                k + 1
            );
            self.synonyms.values().append_value(&*text);
        }
        self.synonyms.append(true);

        text.clear();
        if revised {
            let mut r2 = rng(seed, STREAM_REVISION, index);
            let head = NAME_HEADS[r2.random_range(0..NAME_HEADS.len())];
            let _ = write!(text, "{head} {tail}-{number} (rev)");
            self.name.append_value(&*text);
            // In [1, 2): never equal to a base score, which is in [0, 1).
            self.score.append_value(1.0 + r2.random::<f64>());
        } else {
            let _ = write!(text, "{head} {tail}-{number}");
            self.name.append_value(&*text);
            self.score.append_value(score);
        }
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let location = StructArray::try_new(
            location_fields(),
            vec![
                Arc::new(self.chromosome.finish()) as ArrayRef,
                Arc::new(self.start.finish()),
                Arc::new(self.end.finish()),
            ],
            Some(NullBuffer::from(self.location_valid)),
        )?;
        RecordBatch::try_new(
            self.schema,
            vec![
                Arc::new(self.id.finish()) as ArrayRef,
                Arc::new(self.name.finish()),
                Arc::new(self.description.finish()),
                Arc::new(self.score.finish()),
                Arc::new(location),
                Arc::new(self.synonyms.finish()),
            ],
        )
    }
}
