//! A release's checksum manifest, and its files downloaded into the cache and checked against it.
//!
//! The manifest is verified first: Open Targets' `release_data_integrity` against `release_data_integrity.sha1`
//! (formats: `../shared/fixtures/README.md`; parsing: [`psystem_sources::manifest`]); `MD5SUMS`, `SHA1SUMS` and
//! `SHA256SUMS` (GNU checksum lists) and Metalink documents (UniProt's `RELEASE.metalink`: Metalink 3.0, or RFC 5854)
//! are read when a release has one of those instead, and per-file checksum files
//! (`part-0.parquet.md5`, `.sha1`, `.sha256` beside the data) when it has none of them. Then each file is hashed
//! while its bytes stream past: during the download, or — for a file already complete in the cache, or a `file://`
//! source read in place — in one read of the local file. A mismatch removes the cached copy (the next run
//! downloads it again) and is reported with both digests.

use std::io::Read;
use std::path::{Path, PathBuf};

use psystem_sources::manifest::{
    parse_checksum_list, parse_metalink, verify_manifest_sha1, Algorithm, Hasher, Manifest,
    ManifestEntry, ManifestError, ManifestKind,
};
use psystem_transport::{Cache, Transport, TransportError};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::model::{is_side_file, DataFile, Dataset, Release};
use crate::ReleaseError;

/// Bytes hashed per read of a local file.
const CHUNK: usize = 1 << 20;

/// A release's manifest, read and (when it has a `.sha1`) verified.
#[derive(Debug, Clone)]
pub struct ReleaseManifest {
    /// The manifest's file name at the release root (`release_data_integrity`).
    pub name: String,
    /// The entries.
    pub manifest: Manifest,
    /// True when the manifest matched its `.sha1`; false when the release has no `.sha1` (a warning is logged).
    pub sha1_checked: bool,
    /// True when the entries come from per-file checksum files (`*.md5` …) rather than one manifest.
    pub per_file: bool,
}

impl ReleaseManifest {
    /// The entry for a release path (`output/target/part-….parquet`).
    pub fn entry(&self, path: &str) -> Option<&ManifestEntry> {
        self.manifest.entries.iter().find(|e| e.path == path)
    }

    /// The manifest's entries under `dataset`'s folder that name data files (not Spark side files, not in `_…` or
    /// `.…` folders, as discovery skips them) absent from the dataset's files: files the release says it has but
    /// the source does not serve. Each comes back as a [`FileStatus::Missing`] check (size and digest from the
    /// manifest, no computed digest). Empty for a UniProt dataset, which is one file named by the release itself.
    pub fn missing_files(&self, dataset: &Dataset) -> Vec<FileCheck> {
        if dataset.path.is_empty() {
            return Vec::new();
        }
        self.manifest
            .entries
            .iter()
            .filter(|e| {
                e.path
                    .strip_prefix(dataset.path.as_str())
                    .is_some_and(is_data_path)
                    && !dataset.files.iter().any(|f| f.path == e.path)
            })
            .map(|e| FileCheck {
                path: e.path.clone(),
                size: e.size.unwrap_or(0),
                algorithm: Some(e.algorithm.to_string()),
                expected: Some(e.digest.clone()),
                computed: None,
                status: FileStatus::Missing,
                detail: Some(format!(
                    "listed in {} but not in the release folder",
                    self.name
                )),
            })
            .collect()
    }

    /// The dataset's files this manifest has no entry for: they cannot be verified, so they load only with
    /// `--allow-unverified`.
    pub fn unlisted_files<'a>(&self, dataset: &'a Dataset) -> Vec<&'a DataFile> {
        dataset
            .files
            .iter()
            .filter(|f| self.entry(&f.path).is_none())
            .collect()
    }

    /// The [`FileStatus::Unverified`] check of a file this manifest does not list (not downloaded, so no
    /// digest), with a detail saying so.
    pub fn unlisted_check(&self, file: &DataFile) -> FileCheck {
        FileCheck {
            path: file.path.clone(),
            size: file.size,
            algorithm: None,
            expected: None,
            computed: None,
            status: FileStatus::Unverified,
            detail: Some(self.unlisted_detail()),
        }
    }

    /// `not listed in release_data_integrity`: the detail of a file this manifest has no entry for.
    pub fn unlisted_detail(&self) -> String {
        format!("not listed in {}", self.name)
    }

    /// `release_data_integrity (412 files, sha1; matches its .sha1)` for people; `RELEASE.metalink (6 files, md5)`
    /// for a Metalink, which has no `.sha1`.
    pub fn describe(&self) -> String {
        let algorithm = self
            .manifest
            .entries
            .first()
            .map(|e| e.algorithm.to_string())
            .unwrap_or_default();
        if self.per_file
            || matches!(
                self.manifest.kind,
                ManifestKind::Metalink3 | ManifestKind::Metalink4
            )
        {
            return format!(
                "{} ({} files, {algorithm})",
                self.name,
                self.manifest.entries.len()
            );
        }
        format!(
            "{} ({} files, {algorithm}; {})",
            self.name,
            self.manifest.entries.len(),
            if self.sha1_checked {
                "matches its .sha1"
            } else {
                "no .sha1 to check it against"
            }
        )
    }
}

/// Reads the release's manifest. `Ok(None)` when the release has none.
///
/// A manifest named `*.metalink` / `*.meta4` (UniProt's `RELEASE.metalink`) is read as Metalink 3.0 or RFC 5854
/// (auto-detected), with the strongest whole-file hash of each file (MD5 for UniProt).
///
/// Errors: [`ReleaseError::Manifest`] when the manifest does not match its `.sha1` or cannot be parsed (including
/// unsafe paths such as `../x` or `/etc/passwd`); transport errors.
pub async fn fetch_manifest(
    transport: &Transport,
    release: &Release,
) -> Result<Option<ReleaseManifest>, ReleaseError> {
    let Some(name) = release.manifest.clone() else {
        if release.sidecars.is_empty() {
            return Ok(None);
        }
        return sidecar_manifest(transport, release).await.map(Some);
    };
    let bytes = transport.read_all(&release.source_path(&name)).await?;
    let shown = format!("{}/{name}", release.name);
    if is_metalink(&name) {
        return read_metalink(&bytes, name, &shown).map(Some);
    }
    let (algorithm, with_sha1) = match name.as_str() {
        "MD5SUMS" => (Algorithm::Md5, false),
        "SHA256SUMS" => (Algorithm::Sha256, false),
        "SHA1SUMS" => (Algorithm::Sha1, false),
        _ => (Algorithm::Sha1, true),
    };
    let mut sha1_checked = false;
    if with_sha1 {
        match transport
            .read_all(&release.source_path(&format!("{name}.sha1")))
            .await
        {
            Ok(sha1) => {
                let text = String::from_utf8_lossy(&sha1);
                verify_manifest_sha1(&bytes, &text, &shown)?;
                sha1_checked = true;
            }
            Err(TransportError::NotFound { .. }) => {
                warn!(manifest = %shown, "The release has no {name}.sha1; the manifest itself cannot be checked.");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| ManifestError::Parse {
        manifest: shown.clone(),
        line: None,
        detail: format!("not UTF-8 text: {e}"),
    })?;
    let manifest = parse_checksum_list(text, algorithm, &shown)?;
    debug!(manifest = %shown, files = manifest.entries.len(), "Manifest read.");
    Ok(Some(ReleaseManifest {
        name,
        manifest,
        sha1_checked,
        per_file: false,
    }))
}

/// Whether a manifest file name is a Metalink document (`RELEASE.metalink`, `*.metalink`, `*.meta4`).
pub fn is_metalink(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".metalink") || lower.ends_with(".meta4")
}

/// A Metalink manifest (UniProt's `RELEASE.metalink`): Metalink 3.0 or RFC 5854, told apart by the root element's
/// namespace ([`psystem_sources::manifest::parse_metalink`]). Its entries name files by their bare name in the
/// release folder, which is their release-relative path. A document that is not a Metalink, or lists no file, is
/// an error — never "0 files".
fn read_metalink(bytes: &[u8], name: String, shown: &str) -> Result<ReleaseManifest, ReleaseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ManifestError::Parse {
        manifest: shown.to_string(),
        line: None,
        detail: format!("not UTF-8 text: {e}"),
    })?;
    let manifest = parse_metalink(text, shown)?;
    debug!(manifest = %shown, kind = ?manifest.kind, files = manifest.entries.len(), "Metalink read.");
    Ok(ReleaseManifest {
        name,
        manifest,
        sha1_checked: false,
        per_file: false,
    })
}

/// A manifest made of the release's per-file checksum files: `<file>.md5` (or `.sha1`, `.sha256`) beside each
/// `<file>`, holding `<digest>  <name>` (GNU `md5sum` output) or just the digest. Each becomes the entry of
/// `<file>`, validated like a manifest line (digest length, safe path).
async fn sidecar_manifest(
    transport: &Transport,
    release: &Release,
) -> Result<ReleaseManifest, ReleaseError> {
    let mut entries: Vec<ManifestEntry> = Vec::with_capacity(release.sidecars.len());
    for sidecar in &release.sidecars {
        let Some(algorithm) = crate::model::sidecar_algorithm(sidecar) else {
            continue;
        };
        let data_path = &sidecar[..sidecar.rfind('.').unwrap_or(sidecar.len())];
        let shown = format!("{}/{sidecar}", release.name);
        let bytes = transport.read_all(&release.source_path(sidecar)).await?;
        let text = String::from_utf8_lossy(&bytes);
        let digest = text.split_whitespace().next().unwrap_or("");
        let parsed = parse_checksum_list(&format!("{digest}  {data_path}\n"), algorithm, &shown)?;
        entries.extend(parsed.entries);
    }
    let kind = match entries.first().map(|e| e.algorithm) {
        Some(Algorithm::Md5) | None => ManifestKind::Md5Sums,
        Some(Algorithm::Sha1) => ManifestKind::ReleaseDataIntegrity,
        Some(Algorithm::Sha256) => ManifestKind::Sha256Sums,
    };
    debug!(release = %release.name, files = entries.len(), "Per-file checksums read.");
    Ok(ReleaseManifest {
        name: "per-file checksum files".into(),
        manifest: Manifest { kind, entries },
        sha1_checked: false,
        per_file: true,
    })
}

/// The verdict on one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// The digest matches the manifest.
    Verified,
    /// The digest (or size) differs from the manifest.
    Mismatch,
    /// No manifest entry to check it against (loaded only with `--allow-unverified`).
    Unverified,
    /// The manifest lists the file but the release folder does not have it (the dataset is refused).
    Missing,
}

impl FileStatus {
    /// `verified`, `mismatch`, `unverified`, `missing`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Verified => "verified",
            FileStatus::Mismatch => "mismatch",
            FileStatus::Unverified => "unverified",
            FileStatus::Missing => "missing",
        }
    }
}

/// What was checked for one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    /// The file, relative to the release root.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// The manifest's algorithm (`sha1`, `md5`, `sha256`), when there is an entry.
    pub algorithm: Option<String>,
    /// The manifest's digest.
    pub expected: Option<String>,
    /// The digest of the bytes read.
    pub computed: Option<String>,
    /// The verdict.
    pub status: FileStatus,
    /// Why the file is not verified: for a mismatch the message naming both digests; for a missing or unlisted
    /// file what the manifest says. `None` for a verified file.
    pub detail: Option<String>,
}

/// A data file ready to load: where it is on disk and its verdict.
#[derive(Debug, Clone)]
pub struct FetchedFile {
    /// The local file: in the cache, or the source file itself for `file://`.
    pub local: PathBuf,
    /// The verdict.
    pub check: FileCheck,
    /// The file's Hive partition values.
    pub partitions: Vec<(String, String)>,
}

/// Downloads `file` of `release` into `cache` (resuming a partial download) — or, for a `file://` source, reads
/// it in place — hashing the bytes as they pass, and checks them against `entry`.
///
/// `on_bytes(n)` is called as bytes are hashed (for progress). A mismatch removes the cached copy and returns a
/// [`FileStatus::Mismatch`] check (not an error): the caller records it and refuses to load.
///
/// Errors: [`ReleaseError::Cancelled`] when `cancel` fires (the partial download is kept); transport and I/O
/// errors.
pub async fn fetch_file(
    transport: &Transport,
    cache: &Cache,
    release: &Release,
    file: &DataFile,
    entry: Option<&ManifestEntry>,
    cancel: &CancellationToken,
    on_bytes: &mut (dyn FnMut(u64) + Send),
) -> Result<FetchedFile, ReleaseError> {
    let source_path = release.source_path(&file.path);
    let algorithm = entry.map(|e| e.algorithm).unwrap_or(Algorithm::Sha1);
    let mut hasher = algorithm.hasher();
    let (local, in_cache) = match local_path(transport, &source_path) {
        Some(path) => {
            hash_local(&path, &mut hasher, cancel, on_bytes).await?;
            (path, false)
        }
        None => {
            let target = cache.path_for(&release.source, &release.name, &file.path)?;
            if complete(&target, file.size) {
                hash_local(&target, &mut hasher, cancel, on_bytes).await?;
            } else {
                let mut observer = |_p: psystem_transport::DownloadProgress, bytes: &[u8]| {
                    hasher.update(bytes);
                    on_bytes(bytes.len() as u64);
                };
                transport
                    .download(&source_path, &target, cancel, &mut observer)
                    .await
                    .map_err(|e| match e {
                        TransportError::Cancelled { .. } => ReleaseError::Cancelled,
                        e => e.into(),
                    })?;
            }
            (target, true)
        }
    };
    let size = std::fs::metadata(&local)
        .map_err(|source| ReleaseError::Io {
            path: local.display().to_string(),
            source,
        })?
        .len();
    let computed = hasher.finish();
    let mut check = FileCheck {
        path: file.path.clone(),
        size,
        algorithm: entry.map(|e| e.algorithm.to_string()),
        expected: entry.map(|e| e.digest.clone()),
        computed: Some(computed.clone()),
        status: FileStatus::Unverified,
        detail: None,
    };
    if let Some(entry) = entry {
        let size_ok = entry.size.is_none_or(|s| s == size);
        if entry.digest == computed && size_ok {
            check.status = FileStatus::Verified;
        } else {
            check.status = FileStatus::Mismatch;
            check.detail = Some(
                ManifestError::Mismatch {
                    path: file.path.clone(),
                    algorithm: entry.algorithm,
                    expected: entry.digest.clone(),
                    computed,
                }
                .to_string(),
            );
            if in_cache {
                let _ = std::fs::remove_file(&local);
            }
        }
    }
    Ok(FetchedFile {
        local,
        check,
        partitions: file.partitions.clone(),
    })
}

/// Whether a path below a dataset folder names a data file as discovery sees it: no folder or file name starting
/// with `_` or `.`, not a Spark side file or checksum file.
fn is_data_path(rest: &str) -> bool {
    let mut parts = rest.split('/').peekable();
    while let Some(part) = parts.next() {
        if part.is_empty() || part.starts_with('_') || part.starts_with('.') {
            return false;
        }
        if parts.peek().is_none() {
            return !is_side_file(part);
        }
    }
    false
}

/// The local path of `path` when the transport reads a `file://` folder: such files are hashed and loaded in
/// place, not copied into the cache.
pub fn local_path(transport: &Transport, path: &str) -> Option<PathBuf> {
    let base = transport.base_url();
    if !base.starts_with("file:") {
        return None;
    }
    let root = url::Url::parse(base).ok()?.to_file_path().ok()?;
    Some(root.join(path))
}

fn complete(path: &Path, size: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == size)
}

/// Hashes a local file in one read (on a blocking thread).
async fn hash_local(
    path: &Path,
    hasher: &mut Hasher,
    cancel: &CancellationToken,
    on_bytes: &mut (dyn FnMut(u64) + Send),
) -> Result<(), ReleaseError> {
    let io = |source| ReleaseError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        if cancel.is_cancelled() {
            return Err(ReleaseError::Cancelled);
        }
        let (n, b, f) = tokio::task::spawn_blocking(move || {
            let n = file.read(&mut buf);
            (n, buf, file)
        })
        .await
        .map_err(|e| io(std::io::Error::other(e)))?;
        buf = b;
        file = f;
        let n = n.map_err(io)?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
        on_bytes(n as u64);
    }
}
