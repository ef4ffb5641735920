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

    /// Takes one of `limit` slots of the sliding window of `window_ms` that
    /// ends at `now_ms`, logged at `key` (every instance takes from the same
    /// log): `None` when one was taken, else the milliseconds until the oldest
    /// taken slot leaves the window.
    async fn take_slot(
        &self,
        key: &str,
        limit: u32,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError>;
    /// Takes `key` for `holder` for `ttl_ms` when nobody holds it (or it
    /// lapsed), or renews it when `holder` already does. False: someone
    /// else holds it.
    async fn hold(&self, key: &str, holder: &str, ttl_ms: u64) -> Result<bool, StoreError>;

    /// Lets `key` go if `holder` holds it (someone else's hold is left alone).
    async fn let_go(&self, key: &str, holder: &str) -> Result<(), StoreError>;

    /// Puts `ticket` in the line at `key` (keeping its place when it is in it
    /// already: each call says it is still waiting), drops tickets not seen for
    /// `stale_ms`, and returns how many are ahead of it.
    async fn wait_in_line(
        &self,
        key: &str,
        ticket: &str,
        now_ms: u64,
        stale_ms: u64,
    ) -> Result<u64, StoreError>;

    /// Takes `ticket` out of the line at `key`.
    async fn leave_line(&self, key: &str, ticket: &str) -> Result<(), StoreError>;
}

#[cfg(any(test, feature = "testing"))]
pub mod contract {
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

    pub async fn slots_are_limited_over_a_sliding_window(state: &dyn SharedState, key: &str) {
        let start = 1_000_000;
        for n in 0..3 {
            assert_eq!(
                state
                    .take_slot(key, 3, 1_000, start + n * 100)
                    .await
                    .unwrap(),
                None,
                "slot {n} of 3"
            );
        }
        // Full: the oldest (taken at start) leaves the window at start + 1000.
        assert_eq!(
            state.take_slot(key, 3, 1_000, start + 400).await.unwrap(),
            Some(600)
        );
        assert_eq!(
            state.take_slot(key, 3, 1_000, start + 999).await.unwrap(),
            Some(1)
        );
        // A refusal takes nothing: once the first slot has left, one is free.
        assert_eq!(
            state.take_slot(key, 3, 1_000, start + 1_001).await.unwrap(),
            None
        );
        assert_eq!(
            state.take_slot(key, 3, 1_000, start + 1_050).await.unwrap(),
            Some(50),
            "the oldest left, taken at start + 100, leaves at start + 1100"
        );
        // Another key has its own window.
        let other = format!("{key}:other");
        assert_eq!(
            state
                .take_slot(&other, 1, 1_000, start + 1_050)
                .await
                .unwrap(),
            None
        );
    }

    pub async fn holds_go_to_one_holder_at_a_time(state: &dyn SharedState, key: &str) {
        assert!(state.hold(key, "a", 60_000).await.unwrap());
        assert!(!state.hold(key, "b", 60_000).await.unwrap(), "a holds it");
        assert!(state.hold(key, "a", 60_000).await.unwrap(), "a renews");
        state.let_go(key, "b").await.unwrap();
        assert!(
            !state.hold(key, "b", 60_000).await.unwrap(),
            "b cannot let a's go"
        );
        state.let_go(key, "a").await.unwrap();
        assert!(state.hold(key, "b", 60_000).await.unwrap(), "free again");
    }

    pub async fn a_line_keeps_its_order_and_forgets_who_left(state: &dyn SharedState, key: &str) {
        let start = 5_000_000;
        assert_eq!(
            state
                .wait_in_line(key, "first", start, 1_000)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            state
                .wait_in_line(key, "second", start + 10, 1_000)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            state
                .wait_in_line(key, "third", start + 20, 1_000)
                .await
                .unwrap(),
            2
        );
        // Still waiting: each keeps its place.
        assert_eq!(
            state
                .wait_in_line(key, "second", start + 500, 1_000)
                .await
                .unwrap(),
            1
        );
        state.leave_line(key, "first").await.unwrap();
        assert_eq!(
            state
                .wait_in_line(key, "third", start + 600, 1_000)
                .await
                .unwrap(),
            1
        );
        // "second" was last seen at +500: gone from the line past +1500.
        assert_eq!(
            state
                .wait_in_line(key, "third", start + 1_550, 1_000)
                .await
                .unwrap(),
            0
        );
    }
}
