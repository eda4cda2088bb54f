//! Releases: list what a release source offers, show a release (datasets, files, sizes, Parquet schemas from the
//! footers), verify it against its manifest, suggest primary keys, and plan a release load.

use std::sync::Arc;

use psystem_core::flatten::FlattenOptions;
use psystem_core::plugin::{Plugin, SourceKind};
use psystem_core::{LoadMode, TableRef};
use psystem_jobs::release::{DatasetJob, ReleaseJobSpec, UniprotOptions};
use psystem_releases::footer::{self, FooterSummary};
use psystem_releases::keys::{self, KeyReport};
use psystem_releases::model::{Dataset, Release, ReleaseName};
use psystem_releases::provider::Provider;
use psystem_releases::reader::DatasetSchema;
use psystem_releases::verify::{self, FileCheck, FileStatus};
use psystem_releases::{uniprot, ReleaseError};
use psystem_transport::{Cache, Transport, TransportOptions};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use crate::request::ReleaseRunRequest;
use crate::runs::DestinationOrigin;
use crate::{Api, ApiError};

/// A dataset as `releases show` presents it.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetDetail {
    /// The dataset (folder) name.
    pub name: String,
    /// The plugin entry that loads it, if any.
    pub entry: Option<String>,
    /// Data files.
    pub files: usize,
    /// Bytes of the data files.
    pub bytes: u64,
    /// Hive partition keys.
    pub partition_keys: Vec<String>,
    /// The files (path, size), when asked for.
    pub file_list: Vec<(String, u64)>,
    /// Columns as loaded (flattened): (name, Arrow type, PostgreSQL type), when the schema was asked for.
    pub columns: Vec<(String, String, String)>,
    /// Rows per the footers, when the schema was asked for.
    pub rows: Option<u64>,
    /// Suggested primary keys, when asked for.
    pub keys: Option<KeyReport>,
}

/// A release as `releases show` presents it.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseDetail {
    /// The source (plugin) name.
    pub source: String,
    /// The source URL (without credentials).
    pub url: String,
    /// The release name.
    pub release: String,
    /// The layout.
    pub layout: String,
    /// The manifest: name, files, whether it matched its `.sha1`; `None` when the release has none.
    pub manifest: Option<String>,
    /// Datasets, by name.
    pub datasets: Vec<DatasetDetail>,
}

/// What `releases show` should include.
#[derive(Debug, Clone, Default)]
pub struct ShowOptions {
    /// Only these datasets (all when empty).
    pub datasets: Vec<String>,
    /// List every file.
    pub files: bool,
    /// Read the schema from the Parquet footers (range reads, no download).
    pub schema: bool,
    /// Download the dataset (into the cache) and propose primary keys from uniqueness.
    pub suggest_keys: bool,
}

/// The verdict of `releases verify` on a release.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The release.
    pub release: String,
    /// The manifest, described.
    pub manifest: Option<String>,
    /// One per file checked.
    pub files: Vec<FileCheck>,
    /// Whether the verdicts were recorded in the database's `psystem.files`.
    pub recorded: bool,
}

impl VerifyReport {
    /// Files that did not match.
    pub fn mismatches(&self) -> usize {
        self.count(FileStatus::Mismatch)
    }

    /// Files the manifest lists under the chosen datasets that the release does not have.
    pub fn missing(&self) -> usize {
        self.count(FileStatus::Missing)
    }

    /// Files the manifest does not list (a load needs `--allow-unverified`).
    pub fn unverified(&self) -> usize {
        self.count(FileStatus::Unverified)
    }

    /// True when every file was verified: none mismatched, missing or unlisted (what `run` needs to load the
    /// datasets without `--allow-unverified`).
    pub fn all_verified(&self) -> bool {
        self.files.iter().all(|f| f.status == FileStatus::Verified)
    }

    fn count(&self, status: FileStatus) -> usize {
        self.files.iter().filter(|f| f.status == status).count()
    }
}

/// A planned release load.
#[derive(Debug, Clone)]
pub struct PlannedRelease {
    /// The job.
    pub spec: ReleaseJobSpec,
    /// Where the destination came from.
    pub destination_origin: DestinationOrigin,
    /// Notes for the user.
    pub notes: Vec<String>,
}

impl Api {
    /// The release plugin named `name` and the URL of its releases (`source_url` overrides the manifest's).
    fn release_source(
        &self,
        name: &str,
        source_url: Option<&str>,
    ) -> Result<(Plugin, String), ApiError> {
        let catalog = self.catalog();
        let plugin = catalog.get(name)?.clone();
        if plugin.source_kind() != SourceKind::Release {
            return Err(ApiError::Config(format!(
                "plugin {} reads {} data, not releases; `psystem releases` works with release plugins such as opentargets",
                plugin.name(),
                plugin.source_kind().as_str()
            )));
        }
        let url = source_url
            .map(str::to_string)
            .or_else(|| plugin.manifest.source.as_ref().and_then(|s| s.url.clone()))
            .ok_or_else(|| {
                ApiError::Config(format!(
                    "{}: `source.url` is not set",
                    plugin.path.display()
                ))
            })?;
        Ok((plugin, url))
    }

    fn transport(&self, url: &str) -> Result<Transport, ApiError> {
        Transport::new(url, TransportOptions::default()).map_err(|e| ApiError::Release(e.into()))
    }

    /// The download cache root: `$PSYSTEM_HOME/cache`.
    pub fn cache(&self) -> Cache {
        Cache::new(self.home().root().join("cache"))
    }

    /// `psystem releases list PLUGIN`: the releases the source offers, newest first.
    ///
    /// # Errors
    /// [`ApiError::Plugin`], [`ApiError::Config`] (not a release plugin), [`ApiError::Release`].
    pub async fn releases_list(
        &self,
        plugin: &str,
        source_url: Option<&str>,
    ) -> Result<Vec<ReleaseName>, ApiError> {
        let (plugin, url) = self.release_source(plugin, source_url)?;
        let provider = provider_of(&plugin)?;
        Ok(provider.list_releases(&self.transport(&url)?).await?)
    }

    /// `psystem releases show PLUGIN [RELEASE]`: datasets with file counts and sizes; with `options.schema` the
    /// columns from the Parquet footers; with `options.suggest_keys` primary-key proposals (downloads the
    /// dataset into the cache).
    ///
    /// # Errors
    /// As [`Api::releases_list`]; [`ReleaseError::DatasetNotFound`] for an unknown dataset.
    pub async fn release_show(
        &self,
        plugin: &str,
        release: Option<&str>,
        source_url: Option<&str>,
        options: &ShowOptions,
    ) -> Result<ReleaseDetail, ApiError> {
        let (plugin, url) = self.release_source(plugin, source_url)?;
        let provider = provider_of(&plugin)?;
        if provider == Provider::UniProt && (options.schema || options.suggest_keys) {
            return Err(ApiError::Config(format!(
                "--schema and --suggest-keys read Parquet files; {} releases are UniProtKB flat files (their columns are fixed by the UniProt load)",
                plugin.name()
            )));
        }
        let transport = self.transport(&url)?;
        let name = provider
            .resolve_release(&transport, plugin.name(), release)
            .await?;
        let rel = provider.discover(&transport, plugin.name(), &name).await?;
        let manifest = verify::fetch_manifest(&transport, &rel).await?;
        let mut layout = rel.layout.describe().to_string();
        if provider == Provider::UniProt {
            layout.push_str(&format!(" in {}", rel.root));
            if let Some(dates) = uniprot::fetch_reldate(&transport, &rel).await? {
                layout.push_str(&format!("; {}", dates.describe()));
            }
        }
        let chosen = choose_datasets(&rel, &plugin, &options.datasets)?;
        let mut datasets = Vec::new();
        for d in chosen {
            let entry = entry_for(&plugin, &d.name);
            let flatten = entry
                .as_ref()
                .and_then(|(_, f)| f.clone())
                .unwrap_or_default();
            let mut detail = DatasetDetail {
                name: d.name.clone(),
                entry: entry.map(|(k, _)| k),
                files: d.files.len(),
                bytes: d.bytes(),
                partition_keys: d.partition_keys.clone(),
                file_list: if options.files || provider == Provider::UniProt {
                    d.files.iter().map(|f| (f.path.clone(), f.size)).collect()
                } else {
                    Vec::new()
                },
                columns: Vec::new(),
                rows: None,
                keys: None,
            };
            if options.schema || options.suggest_keys {
                let mut rows = 0u64;
                let mut first: Option<FooterSummary> = None;
                for f in &d.files {
                    let s =
                        footer::read_footer(&transport, &rel.source_path(&f.path), f.size).await?;
                    rows += s.rows;
                    first.get_or_insert(s);
                }
                if let Some(first) = first {
                    let schema =
                        DatasetSchema::new(&d.name, &first.schema, &d.partition_keys, &flatten)?;
                    detail.columns = schema
                        .flat
                        .fields()
                        .iter()
                        .map(|f| {
                            (
                                f.name().clone(),
                                f.data_type().to_string(),
                                psystem_postgres::types::pg_type_of(f.data_type())
                                    .unwrap_or("(unsupported)")
                                    .to_string(),
                            )
                        })
                        .collect();
                    detail.rows = Some(rows);
                    if options.suggest_keys {
                        detail.keys = Some(
                            self.suggest_keys(&transport, &rel, d, manifest.as_ref(), &schema)
                                .await?,
                        );
                    }
                }
            }
            datasets.push(detail);
        }
        Ok(ReleaseDetail {
            source: plugin.name().to_string(),
            url: psystem_core::redact::redact_url(&url),
            release: rel.name.clone(),
            layout,
            manifest: manifest.map(|m| m.describe()),
            datasets,
        })
    }

    async fn suggest_keys(
        &self,
        transport: &Transport,
        rel: &Release,
        dataset: &Dataset,
        manifest: Option<&verify::ReleaseManifest>,
        schema: &DatasetSchema,
    ) -> Result<KeyReport, ApiError> {
        let cache = self.cache();
        let cancel = CancellationToken::new();
        let mut files = Vec::new();
        for f in &dataset.files {
            let entry = manifest.and_then(|m| m.entry(&f.path));
            let fetched =
                verify::fetch_file(transport, &cache, rel, f, entry, &cancel, &mut |_| {}).await?;
            if fetched.check.status == FileStatus::Mismatch {
                return Err(ApiError::Config(fetched.check.detail.unwrap_or_default()));
            }
            files.push((fetched.local, f.path.clone(), f.partitions.clone()));
        }
        let schema = schema.clone();
        tokio::task::spawn_blocking(move || keys::suggest_keys(&files, &schema))
            .await
            .map_err(|e| ApiError::Config(format!("key suggestion failed: {e}")))?
            .map_err(ApiError::from)
    }

    /// `psystem releases verify PLUGIN [RELEASE]`: checks the manifest against its `.sha1`, then downloads (into
    /// the cache, resuming partial files) and hashes every data file of the chosen datasets (named by folder, by
    /// a plugin entry, or by an entry's `dataset` or `aliases`, as `run` finds them). Files the manifest lists
    /// under a chosen dataset but the release lacks are reported [`FileStatus::Missing`]; files it does not list
    /// are hashed and reported [`FileStatus::Unverified`] (detail `not listed in …`). With a database (`db_url`),
    /// each verdict is recorded in `psystem.files`. `on_file` sees each verdict as it comes.
    ///
    /// # Errors
    /// As [`Api::release_show`]; [`ReleaseError::NoManifest`] when the release has none.
    pub async fn release_verify(
        &self,
        plugin: &str,
        release: Option<&str>,
        source_url: Option<&str>,
        datasets: &[String],
        db_url: Option<&str>,
        on_file: &mut (dyn FnMut(&FileCheck) + Send),
    ) -> Result<VerifyReport, ApiError> {
        let (plugin, url) = self.release_source(plugin, source_url)?;
        let provider = provider_of(&plugin)?;
        let transport = self.transport(&url)?;
        let name = provider
            .resolve_release(&transport, plugin.name(), release)
            .await?;
        let rel = provider.discover(&transport, plugin.name(), &name).await?;
        let manifest = verify::fetch_manifest(&transport, &rel)
            .await?
            .ok_or_else(|| ReleaseError::NoManifest {
                release: rel.name.clone(),
            })?;
        let dest = match db_url {
            Some(u) => Some(psystem_postgres::Destination::connect(u).await?),
            None => None,
        };
        let cache = self.cache();
        let cancel = CancellationToken::new();
        let mut files = Vec::new();
        for d in choose_datasets(&rel, &plugin, datasets)? {
            let mut checks = manifest.missing_files(d);
            for f in &d.files {
                let entry = manifest.entry(&f.path);
                let mut fetched =
                    verify::fetch_file(&transport, &cache, &rel, f, entry, &cancel, &mut |_| {})
                        .await?;
                if entry.is_none() {
                    fetched.check.detail = Some(manifest.unlisted_detail());
                }
                checks.push(fetched.check);
            }
            for check in checks {
                if let Some(dest) = &dest {
                    psystem_jobs::release::record_check(dest, plugin.name(), &rel.name, &check)
                        .await?;
                }
                on_file(&check);
                files.push(check);
            }
        }
        Ok(VerifyReport {
            release: rel.name.clone(),
            manifest: Some(manifest.describe()),
            files,
            recorded: dest.is_some(),
        })
    }

    /// Builds a release load: the entries' datasets, tables (schema from `destination.postgres.schema`, default
    /// the plugin name; table default the entry key), modes and keys; the destination in the usual order.
    ///
    /// # Errors
    /// [`ApiError::Plugin`], [`ApiError::Config`], [`ApiError::LocalDatabase`].
    pub async fn plan_release(&self, req: &ReleaseRunRequest) -> Result<PlannedRelease, ApiError> {
        let (plugin, url) = self.release_source(&req.plugin, req.source_url.as_deref())?;
        plugin.ensure_enabled()?;
        let provider = provider_of(&plugin)?;
        let flat_files = provider == Provider::UniProt;
        let keys: Vec<String> = if req.all {
            plugin.manifest.etl.keys().cloned().collect()
        } else if req.entries.is_empty() {
            vec![plugin.entry(None)?.0.to_string()]
        } else {
            req.entries
                .iter()
                .map(|e| plugin.entry(Some(e)).map(|(k, _)| k.to_string()))
                .collect::<Result<_, _>>()?
        };
        let mut notes = Vec::new();
        let mut datasets = Vec::new();
        let mut manifest_url = None;
        for key in &keys {
            let (_, entry) = plugin.entry(Some(key))?;
            let pg = entry
                .destination
                .as_ref()
                .and_then(|d| d.postgres.clone())
                .unwrap_or_default();
            if manifest_url.is_none() {
                manifest_url = pg.url.clone();
            }
            let primary_key = pg.primary_key.clone().unwrap_or_default();
            let mode = req.mode.or(pg.mode).unwrap_or(LoadMode::Replace);
            if mode == LoadMode::Merge && primary_key.is_empty() && !flat_files {
                return Err(ApiError::Config(format!(
                    "{} (entry `{key}`): mode `merge` needs destination.postgres.primary_key",
                    plugin.path.display()
                )));
            }
            datasets.push(DatasetJob {
                entry: key.clone(),
                dataset: entry.dataset.clone().unwrap_or_else(|| key.clone()),
                aliases: entry.aliases.clone().unwrap_or_default(),
                table: TableRef::new(
                    pg.schema
                        .clone()
                        .unwrap_or_else(|| plugin.name().to_string()),
                    pg.table
                        .clone()
                        .unwrap_or_else(|| crate::runs::default_table_name(key)),
                ),
                mode,
                primary_key,
                flatten: entry.flatten.clone().unwrap_or_default(),
            });
        }
        let (destination_url, destination_origin) = self
            .resolve_destination_for(req.db_url.clone(), manifest_url.as_ref(), &mut notes)
            .await?;
        Ok(PlannedRelease {
            spec: ReleaseJobSpec {
                plugin: plugin.name().to_string(),
                source_url: url,
                release: req.release.clone(),
                datasets,
                destination_url,
                cache_root: self.cache().root().to_path_buf(),
                parallel: req.parallel.unwrap_or(2),
                workers: req.workers.unwrap_or(2),
                fail_fast: req.fail_fast,
                force: req.force,
                restart: req.restart,
                allow_unverified: req.allow_unverified,
                allow_casts: req.allow_casts,
                transport: TransportOptions::default(),
                provider,
                uniprot: UniprotOptions {
                    unit_bytes: req
                        .unit_bytes
                        .unwrap_or(psystem_jobs::uniprot::DEFAULT_UNIT_BYTES),
                    error_policy: if req.skip_bad_entries {
                        psystem_uniprot::ErrorPolicy::Skip
                    } else {
                        psystem_uniprot::ErrorPolicy::Fail
                    },
                },
                heartbeat_timeout: req
                    .heartbeat_timeout
                    .unwrap_or(psystem_postgres::release_load::DEFAULT_HEARTBEAT_TIMEOUT),
            },
            destination_origin,
            notes,
        })
    }
}

impl Api {
    /// `psystem run PLUGIN --dry-run` for a planned release load ([`Api::plan_release`]): the release is
    /// resolved, its files downloaded into the cache and checked against the manifest, and each dataset compared
    /// with its table, without writing anything to the database (not even the ledger). `output` (a folder)
    /// receives what each Open Targets dataset would load, as `<table>.parquet` or `.csv`.
    ///
    /// # Errors
    /// [`ApiError::Config`] for `output` with a UniProt release (its entries go into six protein tables, not one
    /// table of rows); [`ApiError::Job`] for what would make the real run fail (file mismatches, repeated keys,
    /// …), transport and database errors.
    pub async fn dry_run_release(
        &self,
        planned: &PlannedRelease,
        output: Option<(&std::path::Path, psystem_jobs::dryrun::OutputFormat)>,
    ) -> Result<psystem_jobs::release_dryrun::ReleaseDryRunOutcome, ApiError> {
        if output.is_some() && planned.spec.provider == Provider::UniProt {
            return Err(ApiError::Config(format!(
                "--output writes the rows a dataset would load into its table; plugin {} loads UniProt entries \
                 into six protein tables, which a dry run does not write out: leave --output out (the dry run \
                 still reports what would change), or load the release and use `psystem export {}`",
                planned.spec.plugin, planned.spec.plugin
            )));
        }
        Ok(psystem_jobs::release_dryrun::dry_run_release(&planned.spec, output).await?)
    }
}

/// The datasets named, or all. A name is a dataset folder of the release, or a plugin entry key, an entry's
/// `dataset` or one of its `aliases`: then the first of the entry's `dataset` and `aliases` the release has (as a
/// run finds it: `target` is `targets` in a ≤ 24.09 release).
fn choose_datasets<'a>(
    rel: &'a Release,
    plugin: &Plugin,
    names: &[String],
) -> Result<Vec<&'a Dataset>, ApiError> {
    if names.is_empty() {
        return Ok(rel.datasets.iter().collect());
    }
    let by_entry = |n: &str| {
        plugin.manifest.etl.iter().find_map(|(k, e)| {
            let dataset = e.dataset.clone().unwrap_or_else(|| k.clone());
            let aliases = e.aliases.clone().unwrap_or_default();
            if k != n && dataset != n && !aliases.iter().any(|a| a == n) {
                return None;
            }
            std::iter::once(&dataset)
                .chain(aliases.iter())
                .find_map(|d| rel.dataset(d))
        })
    };
    names
        .iter()
        .map(|n| {
            rel.dataset(n).or_else(|| by_entry(n)).ok_or_else(|| {
                ApiError::Release(ReleaseError::DatasetNotFound {
                    release: rel.name.clone(),
                    dataset: n.clone(),
                    available: rel
                        .datasets
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            })
        })
        .collect()
}

/// The plugin entry loading dataset `name` (by `dataset` or an alias), with its flatten options.
fn entry_for(plugin: &Plugin, name: &str) -> Option<(String, Option<FlattenOptions>)> {
    plugin.manifest.etl.iter().find_map(|(k, e)| {
        let matches = e.dataset.as_deref() == Some(name)
            || e.aliases
                .as_ref()
                .is_some_and(|a| a.iter().any(|x| x == name))
            || (e.dataset.is_none() && k == name);
        matches.then(|| (k.clone(), e.flatten.clone()))
    })
}

#[allow(dead_code)]
fn _arc(_: Arc<()>) {}

/// The provider whose layout a release plugin's releases follow (`source.provider`; Open Targets when absent).
fn provider_of(plugin: &Plugin) -> Result<Provider, ReleaseError> {
    Provider::from_plugin(
        plugin
            .manifest
            .source
            .as_ref()
            .and_then(|s| s.provider.as_deref()),
    )
}
