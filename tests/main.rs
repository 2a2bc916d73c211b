//! Integration tests: the real `ora` binary and the real library on real SQLite files in temp
//! directories, real child processes, real HTTP over loopback. One test binary, so the build
//! is shared.

mod util;

mod adopt;
mod audit;
mod bad_input;
mod chain;
mod cli_domain;
mod concurrency;
mod config;
mod crash;
mod deploy;
mod encrypted;
mod housekeeping;
mod http_hostile;
mod lineage;
mod locks;
mod manuals;
mod monitoring;
mod operator;
mod ops_backup;
mod ops_health;
mod ops_recover;
mod page;
mod pg;
mod qdrant_standin;
mod remote_pg;
mod remote_pg_tls;
mod remote_qdrant;
mod remote_rebuild;
mod replica;
mod replica_sealed;
mod search;
mod serve;
mod standby;
mod systemd;
mod tls;
mod vectors;
mod warehouse;
mod web;
