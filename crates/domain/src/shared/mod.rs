//! State that every app instance must see alike: generations in flight (their
//! phase, and whether someone asked to cancel them) and each visitor's recent
//! images. It lives in the limiter's store when that is Redis or Upstash, so a
//! generation started through one instance can be watched and cancelled through
//! another; in this process's memory otherwise.
//!
//! The operations are the few the app needs, each one round trip (a Lua script
//! where two commands must happen together).

mod memory;
mod scripted;

use crate::store::StoreError;
use async_trait::async_trait;
use std::collections::HashMap;

/// Hashes and capped lists with expiry, in a store shared by the app's instances.
#[async_trait]
pub trait SharedState: Send + Sync + 'static {
    fn describe(&self) -> String;

    /// Whether what is kept here outlives this process (a shared store), or
    /// goes with it (memory).
    fn outlives_process(&self) -> bool {
        true
    }

    /// Creates the hash at `key` with `fields`, expiring in `ttl_ms`. Returns
    /// false, writing nothing, when the key exists already.
    async fn create_hash(
        &self,
        key: &str,
        fields: &[(&str, String)],
        ttl_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Sets `fields` on the hash at `key` if it exists (false when it does not:
    /// it expired, or never was).
    async fn update_hash(&self, key: &str, fields: &[(&str, String)]) -> Result<bool, StoreError>;

    /// The hash at `key`, empty when absent.
    async fn read_hash(&self, key: &str) -> Result<HashMap<String, String>, StoreError>;

    /// Puts `value` at the head of the list at `key`, keeps the first `keep`
    /// entries and sets the list to expire in `ttl_ms`.
    async fn push_capped(
        &self,
        key: &str,
        value: &str,
        keep: usize,
        ttl_ms: u64,
    ) -> Result<(), StoreError>;

    /// The list at `key`, newest first; empty when absent.
    async fn read_list(&self, key: &str) -> Result<Vec<String>, StoreError>;
}

#[cfg(test)]
pub(crate) mod contract {
    //! Behaviour every [`SharedState`] must have; run against memory here and
    //! against a real Redis and the Upstash REST bridge in `tests/`.
    use super::SharedState;

    pub async fn hashes_are_created_once_updated_and_read(state: &dyn SharedState, key: &str) {
        assert!(state.read_hash(key).await.unwrap().is_empty());
        assert!(
            !state.update_hash(key, &[("a", "1".into())]).await.unwrap(),
            "no update of an absent hash"
        );
        assert!(state.read_hash(key).await.unwrap().is_empty());
        assert!(state
            .create_hash(key, &[("a", "1".into()), ("b", "2".into())], 60_000)
            .await
            .unwrap());
        assert!(!state
            .create_hash(key, &[("a", "9".into())], 60_000)
            .await
            .unwrap());
        assert!(state.update_hash(key, &[("b", "3".into())]).await.unwrap());
        let hash = state.read_hash(key).await.unwrap();
        assert_eq!(hash.get("a").map(String::as_str), Some("1"));
        assert_eq!(hash.get("b").map(String::as_str), Some("3"));
    }

    pub async fn lists_keep_the_newest_entries(state: &dyn SharedState, key: &str) {
        assert!(state.read_list(key).await.unwrap().is_empty());
        for n in 1..=5 {
            state
                .push_capped(key, &n.to_string(), 3, 60_000)
                .await
                .unwrap();
        }
        assert_eq!(state.read_list(key).await.unwrap(), ["5", "4", "3"]);
    }
}
