//! psystem-postgres
