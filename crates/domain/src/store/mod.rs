//! The key-value stores the app keeps what instances share in: Redis over its
//! own protocol (`REDIS_URL`), Redis over Upstash's REST API, or this process's
//! memory. Nothing here knows about rate limits, jobs or galleries: the limiter
//! (`ratelimit/`) and the shared state (`shared/`) each bring their own Lua
//! scripts or memory operations and run them through this layer.

mod memory;
mod redis;
mod scripted;
mod upstash;

pub use memory::{Entries, MemoryStore, Value};
pub use redis::RedisStore;
pub use scripted::{Reply, Script, ScriptError, ScriptRunner, ScriptedStore};
pub use upstash::{UpstashRestStore, UpstashSettings};

/// Why a store could not answer. The limiter guards a paid API, so callers treat
/// this as "do not spend" unless the owner chose otherwise.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unreachable: {0}")]
    Unavailable(String),
    /// The request was sent but no answer came in time: the store may still
    /// run it (a frozen Redis runs what was queued once it resumes).
    #[error("the store did not answer in time: {0}")]
    TimedOut(String),
    #[error("the store refused the credentials: {0}")]
    Unauthorized(String),
    #[error("the store answered with an error: {0}")]
    Command(String),
    #[error("the store answered something unexpected: {0}")]
    Protocol(String),
}
