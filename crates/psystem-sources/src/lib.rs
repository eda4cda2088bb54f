//! psystem-sources
