//! Every integration test in one binary (one link step instead of one per file):
//! the router, the limiter on each store, the shared state across instances, the
//! Replicate client, compatibility with `@upstash/ratelimit`, store outages, and
//! the source tree's layering.

mod admin;
mod api;
mod auth;
mod billing;
mod cog;
mod instances;
mod layering;
mod limiter_stores;
mod pages;
mod progress;
mod replicate;
mod returning;
mod serve;
mod shutdown;
mod spend;
mod store_outage;
mod support;
mod upstash_compat;
mod webhooks;
