//! Test support for psystem: a local WHO GHO OData server with fault injection ([`gho_server`]) and
//! throwaway databases on a real PostgreSQL ([`db`]).

pub mod db;
pub mod ftp;
pub mod gho_server;
pub mod mirror;
pub mod opentargets;
pub mod uniprot;
