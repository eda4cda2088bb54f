//! The PostgreSQL destination of psystem.
//!
//! - [`types`]: the mapping from Arrow types to PostgreSQL column types (also in `docs/TYPES.md`).
//! - [`copy_binary`]: our encoder of Arrow record batches into the binary `COPY` format.
//! - [`ledger`]: psystem's own tables (schema `psystem`: loads, checkpoints), created and migrated by
//!   [`migrate`].
//! - [`destination`]: [`Destination`] — open, resume, page-by-page commit (rows + checkpoint in one
//!   transaction) and finish of loads in the modes `append`, `replace` and `merge`; job locks.
//! - [`ident`]: quoting of identifiers; [`redact_url`] (from `psystem-core`): hiding passwords in URLs.
//! - [`idcache`]: the ID cache — stable target IDs per entity and unique key (`docs/ID_CACHE.md`).
//! - [`metrics`]: run metrics — rows, bytes, phase times and column statistics per load.
//! - [`release_load`]: dataset loads of a release — work units, binary COPY into a staging table, replace keeping
//!   the user's objects, merge with deletes, schema evolution, the files ledger (`docs/LOAD_MODES.md`).
//! - [`work_units`]: the work-unit queue of a load — claim (`FOR UPDATE SKIP LOCKED`), heartbeat, reclaim, retry.
//! - [`protein`]: UniProtKB entries into the `protein` table and its child tables, unit by unit, rewriting only
//!   entries whose content MD5 changed; FASTA and JSON export (`docs/UNIPROT.md`).
#![deny(missing_docs)]

/// The managed local PostgreSQL cluster that psystem runs for the user.
pub mod cluster;
pub mod copy_binary;
pub mod destination;
pub mod dryrun;
pub mod entities;
pub mod error;
pub mod idcache;
pub mod ident;
pub mod ledger;
pub mod locks;
pub mod metrics;
pub mod protein;
pub mod release_load;
pub mod types;
pub mod work_units;

pub use copy_binary::{encode_copy_binary, CopyEncoder};
pub use destination::{Destination, JobLock, LoadHandle, LoadSpec, PageExtras, TablePreview};
pub use entities::{IdPlan, IdReport, ReferencePlan};
pub use error::DestinationError;
pub use idcache::{CacheTarget, EntitySpec, IdStrategy};
pub use ident::{check_ident, quote_ident, quote_table};
pub use ledger::{migrate, LoadRecord, LEDGER_VERSION};
pub use metrics::PageMetrics;
pub use psystem_core::redact::redact_url;
pub use types::{pg_type, pg_type_of};
