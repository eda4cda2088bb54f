//! Open Targets Platform releases.
//!
//! Releases are folders named `YY.MM` under the platform root — `https://ftp.ebi.ac.uk/pub/databases/opentargets/platform/`
//! (HTTPS, Apache index pages), `ftp://ftp.ebi.ac.uk/pub/databases/opentargets/platform/` and
//! `gs://open-targets/platform/` — with `latest` pointing at the newest. Two layouts exist (see
//! `../shared/fixtures/README.md`, taken from Open Targets' own scripts):
//! - up to 24.09: `<release>/output/etl/parquet/<camelCase>/part-NNNNN-<uuid>-c000.snappy.parquet`
//!   (`targets`, `diseases`, `evidence/sourceId=<source>/`, …);
//! - from 25.03: `<release>/output/<snake_case>/…` (`target`, `disease`, `association_by_datasource_direct`, …).
//!
//! Each release has `release_data_integrity` (GNU `sha1sum` output over every file) and
//! `release_data_integrity.sha1` at its root.

use futures::stream::{self, StreamExt, TryStreamExt};
use psystem_transport::Transport;
use tracing::debug;

use crate::model::{
    hive_partition, is_side_file, sidecar_algorithm, DataFile, Dataset, Layout, Release,
    ReleaseName,
};
use crate::ReleaseError;

/// The manifest file at a release's root.
pub const MANIFEST: &str = "release_data_integrity";

/// Concurrent listing / size requests while discovering a release.
const LISTING_CONCURRENCY: usize = 8;

/// Parses a release folder name `YY.MM` into a sortable `(year, month)`; `None` for anything else.
pub fn parse_release_name(name: &str) -> Option<(u32, u32)> {
    let name = name.trim_end_matches('/');
    let (y, m) = name.split_once('.')?;
    if y.len() != 2
        || m.len() != 2
        || !y.bytes().all(|b| b.is_ascii_digit())
        || !m.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let (y, m) = (y.parse().ok()?, m.parse().ok()?);
    (1..=12).contains(&m).then_some((y, m))
}

/// The releases at the platform root, newest first; the first is marked `latest`.
///
/// Errors: [`ReleaseError::NoReleases`] when no folder is named `YY.MM`; transport errors as they come.
pub async fn list_releases(transport: &Transport) -> Result<Vec<ReleaseName>, ReleaseError> {
    let entries = transport.list("").await?;
    let mut names: Vec<((u32, u32), String)> = entries
        .into_iter()
        .filter(|e| e.is_dir)
        .filter_map(|e| {
            let name = e.name.trim_end_matches('/').to_string();
            parse_release_name(&name).map(|key| (key, name))
        })
        .collect();
    if names.is_empty() {
        return Err(ReleaseError::NoReleases {
            url: transport.base_url().to_string(),
        });
    }
    names.sort_by_key(|n| std::cmp::Reverse(n.0));
    names.dedup_by(|a, b| a.0 == b.0);
    Ok(names
        .into_iter()
        .enumerate()
        .map(|(i, (_, name))| ReleaseName {
            name,
            latest: i == 0,
        })
        .collect())
}

/// Resolves a release argument: `None` or `latest` → the newest release; otherwise the name must exist.
pub async fn resolve_release(
    transport: &Transport,
    source: &str,
    wanted: Option<&str>,
) -> Result<String, ReleaseError> {
    let releases = list_releases(transport).await?;
    match wanted {
        None | Some("latest") => Ok(releases[0].name.clone()),
        Some(name) => {
            let name = name.trim_end_matches('/');
            if releases.iter().any(|r| r.name == name) {
                Ok(name.to_string())
            } else {
                Err(ReleaseError::ReleaseNotFound {
                    source_name: source.to_string(),
                    release: name.to_string(),
                    available: shorten(releases.iter().map(|r| r.name.as_str())),
                })
            }
        }
    }
}

/// Discovers a release: its layout, its datasets and every data file with its size.
///
/// `source` names the source (the cache key). Listings recurse into every folder of a dataset; `key=value`
/// folders become partitions; Spark side files are skipped. Sizes missing from a listing (HTML index pages)
/// are asked for one by one (HEAD), a few at a time.
pub async fn discover(
    transport: &Transport,
    source: &str,
    release: &str,
) -> Result<Release, ReleaseError> {
    let root = format!("{}/", release.trim_end_matches('/'));
    let top = transport.list(&root).await?;
    let manifest = top
        .iter()
        .find(|e| !e.is_dir && e.name == MANIFEST)
        .map(|e| e.name.clone())
        .or_else(|| {
            top.iter()
                .find(|e| {
                    !e.is_dir && matches!(e.name.as_str(), "MD5SUMS" | "SHA256SUMS" | "SHA1SUMS")
                })
                .map(|e| e.name.clone())
        });
    if !top
        .iter()
        .any(|e| e.is_dir && e.name.trim_end_matches('/') == "output")
    {
        return Err(ReleaseError::UnknownLayout {
            release: release.to_string(),
            detail: format!(
                "no output/ folder; the release folder has: {}",
                shorten(top.iter().map(|e| e.name.as_str()))
            ),
        });
    }
    let output = transport.list(&format!("{root}output/")).await?;
    let has_etl = output
        .iter()
        .any(|e| e.is_dir && e.name.trim_end_matches('/') == "etl");
    let layout = if has_etl {
        let etl = transport.list(&format!("{root}output/etl/")).await?;
        if etl
            .iter()
            .any(|e| e.is_dir && e.name.trim_end_matches('/') == "parquet")
        {
            Layout::EtlParquet
        } else {
            return Err(ReleaseError::UnknownLayout {
                release: release.to_string(),
                detail: "output/etl/ has no parquet/ folder".into(),
            });
        }
    } else {
        Layout::Output
    };
    let data_root = layout.data_root();
    let dataset_dirs: Vec<String> = transport
        .list(&format!("{root}{data_root}"))
        .await?
        .into_iter()
        .filter(|e| e.is_dir)
        .map(|e| e.name.trim_end_matches('/').to_string())
        .filter(|n| !n.starts_with('.') && !n.starts_with('_'))
        .collect();

    let listed: Vec<(Dataset, Vec<String>)> = stream::iter(dataset_dirs)
        .map(|name| {
            let path = format!("{data_root}{name}/");
            let root = &root;
            async move {
                let (files, partition_keys, sidecars) =
                    list_dataset_files(transport, root, &path).await?;
                Ok::<_, ReleaseError>((
                    Dataset {
                        name,
                        path,
                        files,
                        partition_keys,
                    },
                    sidecars,
                ))
            }
        })
        .buffer_unordered(LISTING_CONCURRENCY)
        .try_collect()
        .await?;
    let mut sidecars: Vec<String> = Vec::new();
    let mut datasets: Vec<Dataset> = Vec::with_capacity(listed.len());
    for (dataset, found) in listed {
        sidecars.extend(found);
        datasets.push(dataset);
    }
    sidecars.sort();
    datasets.retain(|d| !d.files.is_empty());
    datasets.sort_by(|a, b| a.name.cmp(&b.name));
    debug!(release, layout = ?layout, datasets = datasets.len(), "Release discovered.");
    Ok(Release {
        source: source.to_string(),
        name: release.trim_end_matches('/').to_string(),
        root,
        layout,
        datasets,
        manifest,
        sidecars,
    })
}

/// Lists a dataset folder recursively: data files (sorted by path, sizes filled in), partition keys, and the
/// per-file checksum files (`*.md5`, `*.sha1`, `*.sha256`) beside them.
async fn list_dataset_files(
    transport: &Transport,
    root: &str,
    dataset_path: &str,
) -> Result<(Vec<DataFile>, Vec<String>, Vec<String>), ReleaseError> {
    let mut files: Vec<(DataFile, Option<u64>)> = Vec::new();
    let mut sidecars: Vec<String> = Vec::new();
    let mut partition_keys: Vec<String> = Vec::new();
    // (folder relative to the release root, partitions so far)
    let mut pending: Vec<(String, Vec<(String, String)>)> =
        vec![(dataset_path.to_string(), Vec::new())];
    while let Some((dir, partitions)) = pending.pop() {
        for entry in transport.list(&format!("{root}{dir}")).await? {
            let name = entry.name.trim_end_matches('/');
            if entry.is_dir {
                if name.starts_with('.') || name.starts_with('_') {
                    continue;
                }
                let mut parts = partitions.clone();
                if let Some((k, v)) = hive_partition(name) {
                    if !partition_keys.contains(&k) {
                        partition_keys.push(k.clone());
                    }
                    parts.push((k, v));
                }
                pending.push((format!("{dir}{name}/"), parts));
            } else if sidecar_algorithm(name).is_some() && !name.starts_with('.') {
                sidecars.push(format!("{dir}{name}"));
            } else if !is_side_file(name) {
                files.push((
                    DataFile {
                        path: format!("{dir}{name}"),
                        size: entry.size.unwrap_or(0),
                        partitions: partitions.clone(),
                    },
                    entry.size,
                ));
            }
        }
    }
    let files: Vec<DataFile> = stream::iter(files)
        .map(|(mut file, size)| async move {
            if size.is_none() {
                file.size = transport.size(&format!("{root}{}", file.path)).await?;
            }
            Ok::<_, ReleaseError>(file)
        })
        .buffer_unordered(LISTING_CONCURRENCY)
        .try_collect()
        .await?;
    let mut files = files;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((files, partition_keys, sidecars))
}

/// Joins names for an error message, at most 12 of them.
pub(crate) fn shorten<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        return "(none)".into();
    }
    let mut s = names
        .iter()
        .take(12)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 12 {
        s.push_str(&format!(", … ({} in all)", names.len()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_names() {
        assert_eq!(parse_release_name("25.03"), Some((25, 3)));
        assert_eq!(parse_release_name("24.09/"), Some((24, 9)));
        assert_eq!(parse_release_name("latest"), None);
        assert_eq!(parse_release_name("25.13"), None);
        assert_eq!(parse_release_name("2503"), None);
        assert_eq!(parse_release_name("25.3"), None);
    }
}
