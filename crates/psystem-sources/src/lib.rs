//! psystem sources: readers that fetch public scientific data and yield Arrow record batches.
//!
//! * [`gho`] — WHO Global Health Observatory indicators over the GHO OData API
//!   (<https://www.who.int/data/gho/info/gho-odata-api>), one page per request.
//!
//! Every failure is a [`SourceError`] that says what failed, where (URL, page, row, field) and what to do.
#![deny(missing_docs)]

mod error;
pub mod files;
pub mod gho;
pub mod manifest;
pub mod parquet_read;

pub use error::SourceError;
