//! `--dry-run` of a release plugin (Open Targets, UniProt): the whole release pipeline — resolve the release,
//! discover its datasets, verify the manifest, download each file into the cache and check it, read it — without
//! writing to the destination database.
//!
//! Nothing is written there, not even the ledger: no table, no staging table, no `psystem.loads`, `psystem.files`,
//! `psystem.work_units` or `psystem.checkpoints` row, and status.yaml is not touched. The rows are compared with the
//! existing table in a transaction that is rolled back ([`psystem_postgres::dryrun::ReleaseDryRun`],
//! [`psystem_postgres::dryrun::ProteinDryRun`]). Files do land in the local download cache (`~/.psystem/cache`),
//! verified against the manifest, so the real run does not download them again. With an output folder, what an
//! Open Targets dataset would load (its flattened rows) is written to `DIR/<table>.parquet` (or `.csv`).

use std::path::{Path, PathBuf};

use psystem_postgres::dryrun::{self as pg_dry, DryRunReport, ProteinDryRun, ReleaseDryRun};
use psystem_releases::model::{Dataset, Layout};
use psystem_releases::reader::{stream_file, DatasetSchema};
use psystem_releases::verify::{self, FetchedFile, FileStatus};
use psystem_releases::{footer, ReleaseError};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::dryrun::{close_writer, open_writer, write_batch, OutputFormat};
use crate::release::{resolve_release, DatasetJob, ReleaseJobSpec, ResolvedRelease, SOURCE_KIND};
use crate::runner::{job_key, JobError};

/// What a dry run found for one dataset.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetDryRun {
    /// The job key (`<plugin>/<entry>`).
    pub job: String,
    /// The dataset as found in the release.
    pub dataset: String,
    /// What the load would change (rows read, inserted, updated, deleted). Zero counts when `skipped_by` is set.
    pub report: DryRunReport,
    /// The file `--output` wrote, when asked.
    pub output: Option<PathBuf>,
    /// Whether every file of the dataset matched the manifest.
    pub verified: bool,
    /// The completed load of the same release a real run would skip the dataset for (unless `force`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_by: Option<i64>,
    /// UniProt: entries that failed to parse and would be skipped (`--skip-bad-entries`), `accession (line N):
    /// message`, at most 100.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_entries: Vec<String>,
}

/// What a dry run of a release found: one [`DatasetDryRun`] per dataset, in the order asked.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseDryRunOutcome {
    /// The release.
    pub release: String,
    /// The manifest, described (`None`: the release has none, allowed with `allow_unverified`).
    pub manifest: Option<String>,
    /// One per dataset.
    pub datasets: Vec<DatasetDryRun>,
}

/// Runs `spec` as a dry run; `output` (a folder, created if missing) receives what each Open Targets dataset
/// would load. Datasets are done one after the other; the first failure ends the dry run.
///
/// # Errors
/// As a real run: release or dataset not found, no manifest (without `allow_unverified`), a file that does not
/// match the manifest, repeated or NULL keys, a merge the server cannot run; transport, database and output
/// I/O errors. The database is left as it was in every case.
pub async fn dry_run_release(
    spec: &ReleaseJobSpec,
    output: Option<(&Path, OutputFormat)>,
) -> Result<ReleaseDryRunOutcome, JobError> {
    let ResolvedRelease {
        transport,
        release,
        chosen,
        manifest,
    } = resolve_release(spec).await?;
    let uniprot = release.layout == Layout::UniProt;
    let cache = psystem_transport::Cache::new(spec.cache_root.clone());
    let cancel = CancellationToken::new();
    let mut datasets = Vec::new();
    let setup = |e: ReleaseError| JobError::Setup(e.to_string());
    for (job, dataset) in &chosen {
        let key = job_key(&spec.plugin, &job.entry);
        let fail = |e: JobError| JobError::Setup(format!("dry run of {key}: {e}"));
        let mut found = DatasetDryRun {
            job: key.clone(),
            dataset: dataset.name.clone(),
            report: DryRunReport {
                table: job.table.to_string(),
                mode: job.mode.to_string(),
                ..DryRunReport::default()
            },
            output: None,
            verified: false,
            skipped_by: None,
            skipped_entries: Vec::new(),
        };
        if !spec.force && !spec.restart {
            let kind = if uniprot {
                psystem_postgres::protein::SOURCE_KIND
            } else {
                SOURCE_KIND
            };
            found.skipped_by = pg_dry::last_completed_load(
                &spec.destination_url,
                kind,
                &release.name,
                &dataset.name,
                &job.table,
            )
            .await
            .map_err(|e| fail(e.into()))?;
            if found.skipped_by.is_some() {
                found.report.table_exists = true;
                found.verified = true;
                datasets.push(found);
                continue;
            }
        }
        // Every file, downloaded into the cache (or read in place) and checked against the manifest.
        let mut fetched: Vec<FetchedFile> = Vec::new();
        for file in &dataset.files {
            let entry = manifest.as_ref().and_then(|m| m.entry(&file.path));
            let f = verify::fetch_file(
                &transport,
                &cache,
                &release,
                file,
                entry,
                &cancel,
                &mut |_| {},
            )
            .await
            .map_err(|e| fail(setup(e)))?;
            fetched.push(f);
        }
        let mismatches: Vec<String> = fetched
            .iter()
            .filter(|f| f.check.status == FileStatus::Mismatch)
            .map(|f| {
                f.check
                    .detail
                    .clone()
                    .unwrap_or_else(|| f.check.path.clone())
            })
            .collect();
        if !mismatches.is_empty() {
            return Err(fail(JobError::Setup(format!(
                "{} of {} files of dataset {} do not match the manifest (a load would load nothing): {}",
                mismatches.len(),
                fetched.len(),
                dataset.name,
                mismatches.join("; ")
            ))));
        }
        found.verified = fetched
            .iter()
            .all(|f| f.check.status == FileStatus::Verified);
        if uniprot {
            dry_run_flat_file(spec, job, dataset, &fetched, &mut found)
                .await
                .map_err(fail)?;
        } else {
            dry_run_parquet(spec, job, dataset, &fetched, output, &mut found)
                .await
                .map_err(fail)?;
        }
        info!(job = %key, rows = found.report.rows, inserted = found.report.inserted,
            updated = found.report.updated, deleted = found.report.deleted, "Dry run of a dataset done.");
        datasets.push(found);
    }
    Ok(ReleaseDryRunOutcome {
        release: release.name.clone(),
        manifest: manifest.as_ref().map(|m| m.describe()),
        datasets,
    })
}

/// An Open Targets dataset: every file's batches, flattened as the load reads them, into the dry run (and the
/// output file).
async fn dry_run_parquet(
    spec: &ReleaseJobSpec,
    job: &DatasetJob,
    dataset: &Dataset,
    fetched: &[FetchedFile],
    output: Option<(&Path, OutputFormat)>,
    found: &mut DatasetDryRun,
) -> Result<(), JobError> {
    let Some(first) = fetched.first() else {
        return Err(JobError::Setup(format!(
            "dataset {} has no data files",
            dataset.name
        )));
    };
    let summary =
        footer::read_local_footer(&first.local).map_err(|e| JobError::Setup(e.to_string()))?;
    let schema = DatasetSchema::new(
        &dataset.name,
        &summary.schema,
        &dataset.partition_keys,
        &job.flatten,
    )
    .map_err(|e| JobError::Setup(e.to_string()))?;
    let mut dry = ReleaseDryRun::start(
        &spec.destination_url,
        job.table.clone(),
        job.mode,
        job.primary_key.clone(),
        schema.flat.clone(),
    )
    .await?;
    let mut writer = None;
    for file in fetched {
        let mut batches = stream_file(
            file.local.clone(),
            file.check.path.clone(),
            file.partitions.clone(),
            schema.clone(),
        );
        while let Some(batch) = batches.recv().await {
            let batch = batch.map_err(|e| JobError::Setup(format!("{}: {e}", file.check.path)))?;
            dry.add_batch(&batch).await?;
            if let Some((dir, format)) = output {
                if writer.is_none() {
                    writer = Some(open_writer(dir, format, &job.table.name, &batch)?);
                }
                if let Some((w, path)) = writer.as_mut() {
                    write_batch(w, path, &batch)?;
                }
            }
        }
    }
    found.report = dry.finish().await?;
    found.output = match writer {
        Some(w) => Some(close_writer(w)?),
        None => None,
    };
    Ok(())
}

/// A UniProt flat file: every entry parsed (as the load's workers parse it) and compared with the stored ones.
async fn dry_run_flat_file(
    spec: &ReleaseJobSpec,
    job: &DatasetJob,
    dataset: &Dataset,
    fetched: &[FetchedFile],
    found: &mut DatasetDryRun,
) -> Result<(), JobError> {
    let [file] = fetched else {
        return Err(JobError::Setup(format!(
            "dataset {} has {} files; a UniProt dataset is one flat file",
            dataset.name,
            fetched.len()
        )));
    };
    let policy = spec.uniprot.error_policy;
    let local = file.local.clone();
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<Result<psystem_postgres::protein::EntryBatch, String>>(2);
    let parser = tokio::task::spawn_blocking(move || {
        let input = match crate::uniprot::open_decompressed(&local) {
            Ok(i) => i,
            Err(e) => {
                let _ = tx.blocking_send(Err(format!("{}: {e}", local.display())));
                return;
            }
        };
        let reader = psystem_uniprot::EntryReader::new(input).with_source_name(local.clone());
        let mut batch = psystem_postgres::protein::EntryBatch::default();
        for item in reader {
            match item {
                Ok(entry) => batch.entries.push(entry),
                Err(e) if e.is_io() || policy == psystem_uniprot::ErrorPolicy::Fail => {
                    let _ = tx.blocking_send(Err(e.to_string()));
                    return;
                }
                Err(e) => batch.skipped.push(format!(
                    "{} (line {}): {}",
                    e.accession.as_deref().unwrap_or("?"),
                    e.line,
                    e.kind
                )),
            }
            if batch.entries.len() >= crate::uniprot::BATCH_ENTRIES
                && tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err()
            {
                return;
            }
        }
        let _ = tx.blocking_send(Ok(batch));
    });
    let mut dry =
        ProteinDryRun::start(&spec.destination_url, job.table.clone(), &dataset.name).await?;
    while let Some(batch) = rx.recv().await {
        let batch = batch.map_err(JobError::Setup)?;
        for s in batch.skipped {
            if found.skipped_entries.len() < 100 {
                found.skipped_entries.push(s);
            }
        }
        dry.add_entries(&batch.entries).await?;
    }
    let _ = parser.await;
    found.report = dry.finish().await?;
    Ok(())
}
