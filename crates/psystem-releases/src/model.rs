//! What a release is made of: datasets, data files, sizes and Hive partitions.
//!
//! Paths are relative to the release root (the `YY.MM/` folder for Open Targets), `/`-separated, exactly as the
//! release's checksum manifest names them (`release_data_integrity` writes `./output/target/part-….parquet`, which
//! [`psystem_sources::manifest::check_path`] normalises to `output/target/part-….parquet`).

use serde::Serialize;

/// How a release's folders are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Open Targets up to 24.09: `<release>/output/etl/parquet/<camelCaseDataset>/`.
    EtlParquet,
    /// Open Targets from 25.03: `<release>/output/<snake_case_dataset>/`, Parquet only.
    Output,
    /// UniProtKB: one folder per release (`current_release/knowledgebase/complete/`,
    /// `previous_releases/release-YYYY_MM/knowledgebase[/complete]/`) holding one file per dataset
    /// (`uniprot_sprot.dat.gz`, …, or the tarballs of an old release); see [`crate::uniprot`].
    UniProt,
}

impl Layout {
    /// The folder holding the datasets, relative to the release root (ends with `/`; empty for UniProt, whose
    /// files are in the release folder itself).
    pub fn data_root(self) -> &'static str {
        match self {
            Layout::EtlParquet => "output/etl/parquet/",
            Layout::Output => "output/",
            Layout::UniProt => "",
        }
    }

    /// A short name for people: `etl/parquet (≤24.09)`, `output (≥25.03)` or `UniProtKB flat files`.
    pub fn describe(self) -> &'static str {
        match self {
            Layout::EtlParquet => "output/etl/parquet (≤ 24.09)",
            Layout::Output => "output (≥ 25.03)",
            Layout::UniProt => "UniProtKB flat files",
        }
    }
}

/// One release a source offers, as listed (before its datasets are discovered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseName {
    /// The release name, e.g. `25.03`.
    pub name: String,
    /// True for the newest release (what `latest` resolves to).
    pub latest: bool,
}

/// A discovered release: its layout and datasets.
#[derive(Debug, Clone, Serialize)]
pub struct Release {
    /// The source (plugin) name, e.g. `opentargets`; the download cache is keyed by it.
    pub source: String,
    /// The release name, e.g. `25.03`.
    pub name: String,
    /// The release folder relative to the source's base URL, ending in `/` (e.g. `25.03/`).
    pub root: String,
    /// The folder layout.
    pub layout: Layout,
    /// The datasets, sorted by name.
    pub datasets: Vec<Dataset>,
    /// The checksum manifest's path relative to the release root (`release_data_integrity`), if the release has one.
    pub manifest: Option<String>,
    /// Per-file checksum files found beside the data files (`part-0.parquet.md5`, `.sha1`, `.sha256`: GNU
    /// `md5sum`-style `<digest>  <name>` or a bare digest), release-relative; used when there is no `manifest`.
    pub sidecars: Vec<String>,
}

impl Release {
    /// The dataset named `name` (exact match).
    pub fn dataset(&self, name: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.name == name)
    }

    /// The path of a release-relative path from the source's base URL (`25.03/` + `output/…`).
    pub fn source_path(&self, release_path: &str) -> String {
        format!("{}{}", self.root, release_path)
    }

    /// Total bytes of all data files.
    pub fn bytes(&self) -> u64 {
        self.datasets.iter().map(Dataset::bytes).sum()
    }
}

/// One dataset: a folder of Parquet part files that loads into one table.
#[derive(Debug, Clone, Serialize)]
pub struct Dataset {
    /// The dataset name: the folder name (`target`, `associationByOverallDirect`).
    pub name: String,
    /// The folder relative to the release root, ending in `/`.
    pub path: String,
    /// The data files, sorted by path. Spark side files (`_SUCCESS`, `*.crc`, `_committed_*`) are not listed.
    pub files: Vec<DataFile>,
    /// The Hive partition keys of the files (`key=value/` folders), in folder order.
    pub partition_keys: Vec<String>,
}

impl Dataset {
    /// Total bytes of the data files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// One data file of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataFile {
    /// The path relative to the release root.
    pub path: String,
    /// The size in bytes.
    pub size: u64,
    /// The Hive partition values of the folders above the file, e.g. `[("sourceId", "chembl")]`.
    pub partitions: Vec<(String, String)>,
}

/// Whether a file name is a Spark or Hadoop side file rather than data: `_SUCCESS`, `_committed_…`,
/// `_started_…`, `.crc` checksums, hidden files.
pub fn is_side_file(name: &str) -> bool {
    name.starts_with('_')
        || name.starts_with('.')
        || name.ends_with(".crc")
        || sidecar_algorithm(name).is_some()
}

/// The algorithm of a per-file checksum file by its extension (`.md5`, `.sha1`, `.sha256`), `None` for other names.
pub fn sidecar_algorithm(name: &str) -> Option<psystem_sources::manifest::Algorithm> {
    use psystem_sources::manifest::Algorithm;
    let (_, ext) = name.rsplit_once('.')?;
    match ext.to_ascii_lowercase().as_str() {
        "md5" => Some(Algorithm::Md5),
        "sha1" => Some(Algorithm::Sha1),
        "sha256" => Some(Algorithm::Sha256),
        _ => None,
    }
}

/// Splits a Hive partition folder name `key=value` (with `%XX` escapes in the value, as Spark writes them).
pub fn hive_partition(folder: &str) -> Option<(String, String)> {
    let (key, value) = folder.split_once('=')?;
    if key.is_empty() {
        return None;
    }
    Some((key.to_string(), percent_decode(value)))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_files_and_partitions() {
        assert!(is_side_file("_SUCCESS"));
        assert!(is_side_file(".part-00000.snappy.parquet.crc"));
        assert!(!is_side_file("part-00000-x.snappy.parquet"));
        assert_eq!(
            hive_partition("sourceId=chembl"),
            Some(("sourceId".into(), "chembl".into()))
        );
        assert_eq!(
            hive_partition("d=2024-01-01%2012%3A00"),
            Some(("d".into(), "2024-01-01 12:00".into()))
        );
        assert_eq!(hive_partition("target"), None);
        assert_eq!(hive_partition("=x"), None);
    }

    #[test]
    fn checksum_sidecars_are_not_data() {
        use psystem_sources::manifest::Algorithm;
        assert_eq!(
            sidecar_algorithm("part-0.parquet.md5"),
            Some(Algorithm::Md5)
        );
        assert_eq!(
            sidecar_algorithm("part-0.parquet.SHA256"),
            Some(Algorithm::Sha256)
        );
        assert_eq!(sidecar_algorithm("x.sha1"), Some(Algorithm::Sha1));
        assert_eq!(sidecar_algorithm("part-0.parquet"), None);
        assert_eq!(sidecar_algorithm("md5"), None);
        assert!(is_side_file("part-0.parquet.md5"));
        assert!(!is_side_file("part-0.md5.parquet"));
    }
}
