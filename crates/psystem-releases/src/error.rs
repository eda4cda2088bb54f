//! Errors of release discovery, verification and reading.

use psystem_sources::manifest::ManifestError;
use psystem_transport::TransportError;

/// What went wrong with a release. Every variant names the release, file or URL it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// Listing, reading or downloading failed.
    #[error(transparent)]
    Transport(#[from] TransportError),

    /// The checksum manifest could not be read, or a file does not match it.
    #[error(transparent)]
    Manifest(#[from] ManifestError),

    /// The source offers no release of that name.
    #[error("release `{release}` not found at {source_name}; available: {available}")]
    ReleaseNotFound {
        /// The source (plugin) name.
        source_name: String,
        /// The release asked for.
        release: String,
        /// The releases the source offers, newest first (shortened).
        available: String,
    },

    /// The source offers no releases at all (no `YY.MM` folder).
    #[error("no releases found at {url}: expected folders named YY.MM (e.g. 25.03)")]
    NoReleases {
        /// The listed URL (without credentials).
        url: String,
    },

    /// A UniProt source has neither a current release (`current_release/knowledgebase/complete/reldate.txt`) nor a
    /// previous one (`previous_releases/release-YYYY_MM/`).
    #[error("no UniProt release found at {url}: expected current_release/knowledgebase/complete/reldate.txt or previous_releases/release-YYYY_MM/ folders there (the source URL is the folder holding them, e.g. https://ftp.uniprot.org/pub/databases/uniprot/)")]
    NoUniProtRelease {
        /// The source's base URL (without credentials).
        url: String,
    },

    /// A UniProt `reldate.txt` could not be read (format: `uniprot::parse_reldate`).
    #[error("reldate.txt: {detail}")]
    Reldate {
        /// What is wrong, with the line number and, when known, the URL.
        detail: String,
    },

    /// A plugin's `source.provider` names no provider psystem knows.
    #[error("unknown release provider `{provider}` (source.provider); psystem knows: {known}")]
    UnknownProvider {
        /// The provider asked for.
        provider: String,
        /// The providers there are, comma-separated.
        known: String,
    },

    /// The release folder has neither `output/etl/parquet/` nor Parquet dataset folders under `output/`.
    #[error("release {release}: unknown layout ({detail})")]
    UnknownLayout {
        /// The release name.
        release: String,
        /// What was found instead.
        detail: String,
    },

    /// A dataset asked for is not in the release.
    #[error("release {release} has no dataset `{dataset}`; it has: {available}")]
    DatasetNotFound {
        /// The release name.
        release: String,
        /// The dataset asked for.
        dataset: String,
        /// The datasets the release has (shortened).
        available: String,
    },

    /// The release has no checksum manifest and the caller did not allow unverified loads.
    #[error("release {release} has no checksum manifest (release_data_integrity, MD5SUMS, SHA256SUMS); pass --allow-unverified to load it anyway (the ledger records it as unverified)")]
    NoManifest {
        /// The release name.
        release: String,
    },

    /// Files of a dataset are not listed in the release's manifest (refused without `--allow-unverified`).
    #[error("dataset {dataset}: {paths}: not listed in the release's checksum manifest {manifest}, so it cannot be verified; nothing was loaded. Pass --allow-unverified to load it anyway (the ledger records the load as unverified)")]
    NotInManifest {
        /// The dataset.
        dataset: String,
        /// The files, relative to the release root, joined with `, `.
        paths: String,
        /// The manifest's name.
        manifest: String,
    },

    /// Files the manifest lists under a dataset's folder are not in the release (an incomplete mirror or upload).
    #[error("dataset {dataset}: {paths}: listed in {manifest} but not in the release folder; nothing was loaded. The source is incomplete: run again once it has every file the manifest lists, or load from a complete mirror (--source-url)")]
    MissingFiles {
        /// The dataset.
        dataset: String,
        /// The missing files, relative to the release root, joined with `, `.
        paths: String,
        /// The manifest's name.
        manifest: String,
    },

    /// A Parquet file (or its footer) could not be read.
    #[error("Parquet file {path}: {detail}")]
    Parquet {
        /// The file (local path or URL, without credentials).
        path: String,
        /// What the Parquet reader said.
        detail: String,
    },

    /// Files of one dataset disagree on their schema.
    #[error(
        "dataset {dataset}: {path} and {first} have different schemas: {detail}. All files of a dataset load into one table, so nothing was loaded; the release is inconsistent (report it to its publisher, or load another release)"
    )]
    SchemaConflict {
        /// The dataset.
        dataset: String,
        /// The file that differs.
        path: String,
        /// The file the dataset's schema was read from (its first file), or `the dataset's first file`.
        first: String,
        /// Which columns differ and how, naming both types.
        detail: String,
    },

    /// Flattening the schema failed (a name collision).
    #[error("flattening {path}: {detail}")]
    Flatten {
        /// The file.
        path: String,
        /// The flattening error.
        detail: String,
    },

    /// The work was cancelled (pause); partial downloads are kept for a resume.
    #[error("cancelled")]
    Cancelled,

    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}
