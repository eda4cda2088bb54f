//! psystem-api
