//! The release-load benchmark of psystem (`docs/BENCHMARKS.md`, section "Release loads").
//!
//! - [`generate`]: a synthetic, Open Targets-shaped Parquet release (≥ 25.03 layout, snappy, with its
//!   `release_data_integrity`), deterministic from a seed, and a *changed* release for the merge benchmark.
//!   Binary: `release-gen`.
//! - [`floor`]: the floor psystem's loads are measured against — the server's own
//!   `COPY … FROM '<file>' (FORMAT binary)` of the same rows, flattened and encoded exactly as psystem does.
//!   Binary: `copy-floor`.
//!
//! `scripts/bench-release.sh` runs both and psystem's loads under `/usr/bin/time -v`.

pub mod floor;
pub mod generate;
