//! Test support shared by the integration tests and the benchmark: a real
//! `redis-server` on a loopback port, and an Upstash-REST-compatible bridge in
//! front of it.
#![allow(dead_code)]

pub mod app;
pub mod cog_server;
pub mod oidc_provider;
pub mod process;
pub mod redis_server;
pub mod replicate_stand_in;
pub mod s3_server;
pub mod upstash_bridge;
