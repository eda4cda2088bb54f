//! Releases of public data sources: what a source offers, how a release is laid out, and reading it.
//!
//! - [`model`]: a [`model::Release`] with its datasets and data files (relative paths and sizes).
//! - [`opentargets`]: Open Targets Platform releases (`YY.MM` folders) in both layouts — up to 24.09
//!   `output/etl/parquet/<camelCase>/`, from 25.03 `output/<snake_case>/` — with Spark side files skipped and Hive
//!   partition folders (`key=value/`) turned into columns.
//! - [`uniprot`]: UniProtKB releases — `current_release/` (named by `reldate.txt`) and
//!   `previous_releases/release-YYYY_MM/`, one file per dataset (`uniprot_sprot.dat.gz`, …), `RELEASE.metalink`.
//! - [`provider`]: [`provider::Provider`], the plugin's `source.provider` (`opentargets` | `uniprot`), dispatching
//!   listing, resolving and discovery to the module of that provider.
//! - [`verify`]: the release's checksum manifest (`release_data_integrity` + `.sha1`, or a Metalink) checked first, then each file
//!   hashed while it downloads into the cache.
//! - [`footer`]: a Parquet file's Arrow schema from range reads of its footer, without downloading the file.
//! - [`reader`]: a downloaded Parquet file as a stream of flattened record batches with its partition columns.
//! - [`keys`]: primary-key suggestions from uniqueness in the data.
//!
//! Everything remote goes through [`psystem_transport::Transport`] (file, HTTP(S), FTP, GCS).

pub mod error;
pub mod footer;
pub mod keys;
pub mod model;
pub mod opentargets;
pub mod provider;
pub mod reader;
pub mod uniprot;
pub mod verify;

pub use error::ReleaseError;
