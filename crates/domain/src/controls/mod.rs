//! The owner's live controls, in the limiter's store so every instance (and a
//! Node app using `@upstash/ratelimit` on the same Redis) obeys them without a
//! redeploy:
//! - **a dynamic limit** at `{prefix}:dynamic:global` (a plain string holding
//!   the per-visitor limit), where `@upstash/ratelimit`'s `setDynamicLimit`
//!   writes it; read by the per-visitor limiter at most once a second;
//! - **a deny list** at `{prefix}:denyList:all` (a plain set of identifiers and
//!   addresses), where the Upstash console and `@upstash/ratelimit`'s
//!   protection keep it; a member is refused every generation;
//! - **a pause switch** at `lofianime:control:paused`: while it is set, no
//!   generation starts.
//!
//! Answers are cached briefly per process (a second for the limit and the
//! pause, a blocked member for 60 s as `@upstash/ratelimit` does, a member
//! found not blocked for 2 s), so a change made anywhere is obeyed everywhere
//! within a couple of seconds at the cost of about one read per second.

mod memory;
mod scripted;

use crate::store::StoreError;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Plain values and sets in the limiter's store.
#[async_trait]
pub trait ControlStore: Send + Sync + 'static {
    /// The string at `key`, if any.
    async fn get_text(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets the string at `key`, or deletes it (`None`).
    async fn set_text(&self, key: &str, value: Option<&str>) -> Result<(), StoreError>;
    /// Whether any of `members` is in the set at `key`.
    async fn any_member(&self, key: &str, members: &[&str]) -> Result<bool, StoreError>;
    /// Adds `member` to the set at `key`; false when it was there.
    async fn add_member(&self, key: &str, member: &str) -> Result<bool, StoreError>;
    /// Removes `member` from the set at `key`; false when it was not there.
    async fn remove_member(&self, key: &str, member: &str) -> Result<bool, StoreError>;
    /// The set at `key`, sorted.
    async fn members(&self, key: &str) -> Result<Vec<String>, StoreError>;
    /// Sets (or, `None`, removes) `field` of the hash at `key`.
    async fn set_field(
        &self,
        key: &str,
        field: &str,
        value: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Every field of the hash at `key`.
    async fn fields(&self, key: &str) -> Result<HashMap<String, String>, StoreError>;
}

/// How long a read of the limit or the pause is believed.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How long a blocked member is believed blocked (as `@upstash/ratelimit`).
const BLOCKED_FOR: Duration = Duration::from_secs(60);
/// How long a member found not blocked is believed so.
const NOT_BLOCKED_FOR: Duration = Duration::from_secs(2);
/// The most deny-list answers kept per process.
const DENY_CACHE_MAX: usize = 10_000;

/// `{prefix}:dynamic:global`.
pub fn dynamic_limit_key(prefix: &str) -> String {
    format!("{prefix}:dynamic:global")
}

/// `{prefix}:denyList:all`.
pub fn deny_list_key(prefix: &str) -> String {
    format!("{prefix}:denyList:all")
}

const PAUSED_KEY: &str = "lofianime:control:paused";

/// A value read from the store at most once per [`REFRESH`]; on a failed read
/// the last answer (or none) stands.
struct Refreshed<T> {
    last: Mutex<Option<(Instant, T)>>,
}

impl<T: Clone> Refreshed<T> {
    fn new() -> Self {
        Self {
            last: Mutex::new(None),
        }
    }

    fn fresh(&self) -> Option<T> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < REFRESH)
            .map(|(_, value)| value.clone())
    }

    fn stale(&self) -> Option<T> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref().map(|(_, value)| value.clone())
    }

    fn keep(&self, value: T) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), value));
    }

    fn forget(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// A number the owner sets live, kept as text at a key of the store (`None`:
/// the settings' value), read at most once per [`REFRESH`].
pub struct LiveValue<T> {
    store: Arc<dyn ControlStore>,
    key: String,
    value: Refreshed<Option<T>>,
    parse: fn(&str) -> Option<T>,
    write: fn(T) -> String,
}

/// The per-visitor limit as the store says it, where `@upstash/ratelimit`'s
/// `setDynamicLimit` writes it.
pub type DynamicLimit = LiveValue<u64>;

impl LiveValue<u64> {
    /// The per-visitor limit at `{prefix}:dynamic:global`.
    pub fn new(store: Arc<dyn ControlStore>, prefix: &str) -> Self {
        Self::count_at(store, dynamic_limit_key(prefix))
    }

    /// A count at `key`.
    pub fn count_at(store: Arc<dyn ControlStore>, key: String) -> Self {
        Self {
            store,
            key,
            value: Refreshed::new(),
            parse: parse_limit,
            write: |limit| limit.to_string(),
        }
    }

    /// An amount of dollars at `key`, kept in micro-dollars (written as a
    /// decimal number of dollars, as a person would).
    pub fn dollars_at(store: Arc<dyn ControlStore>, key: String) -> Self {
        Self {
            store,
            key,
            value: Refreshed::new(),
            parse: |text| {
                let usd: f64 = text.trim().trim_matches('"').parse().ok()?;
                (usd.is_finite() && usd >= 0.0).then(|| (usd * 1e6).round() as u64)
            },
            write: |micros| format!("{}", micros as f64 / 1e6),
        }
    }
}

impl<T: Copy + Send + Sync + 'static> LiveValue<T> {
    /// The value in force, read at most once per [`REFRESH`]. A store that
    /// cannot be read leaves the last known value (the limiter's own call
    /// then meets the outage and decides).
    pub async fn current(&self) -> Option<T> {
        if let Some(known) = self.value.fresh() {
            return known;
        }
        match self.store.get_text(&self.key).await {
            Ok(text) => {
                let value = text.as_deref().and_then(self.parse);
                if let (Some(text), None) = (&text, &value) {
                    tracing::warn!(key = %self.key, value = %text, "a live setting is not a number; the settings' value applies");
                }
                self.value.keep(value);
                value
            }
            Err(_) => self.value.stale().flatten(),
        }
    }

    /// Sets the value (`None`: back to the settings' value).
    pub async fn set(&self, value: Option<T>) -> Result<(), StoreError> {
        let text = value.map(self.write);
        self.store.set_text(&self.key, text.as_deref()).await?;
        self.value.forget();
        Ok(())
    }
}

/// A limit as the store holds it: digits, maybe JSON-quoted (`"5"`), as
/// `@upstash/redis` may write it.
fn parse_limit(text: &str) -> Option<u64> {
    text.trim().trim_matches('"').parse().ok()
}

/// The deny list, with a short per-process memory of its answers.
pub struct DenyList {
    store: Arc<dyn ControlStore>,
    key: String,
    answers: Mutex<HashMap<String, (Instant, bool)>>,
}

impl DenyList {
    pub fn new(store: Arc<dyn ControlStore>, prefix: &str) -> Self {
        Self {
            store,
            key: deny_list_key(prefix),
            answers: Mutex::default(),
        }
    }

    fn remembered(&self, member: &str) -> Option<bool> {
        let answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        let (at, blocked) = answers.get(member)?;
        let lasts = if *blocked {
            BLOCKED_FOR
        } else {
            NOT_BLOCKED_FOR
        };
        (at.elapsed() < lasts).then_some(*blocked)
    }

    fn remember(&self, members: &[&str], blocked: bool) {
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        if answers.len() >= DENY_CACHE_MAX {
            answers.retain(|_, (at, blocked)| {
                at.elapsed()
                    < if *blocked {
                        BLOCKED_FOR
                    } else {
                        NOT_BLOCKED_FOR
                    }
            });
        }
        if answers.len() < DENY_CACHE_MAX {
            for member in members {
                answers.insert((*member).to_owned(), (Instant::now(), blocked));
            }
        }
    }

    /// Whether any of `members` (a visitor's identifier and address) is
    /// blocked.
    pub async fn blocks(&self, members: &[&str]) -> Result<bool, StoreError> {
        let mut unknown = Vec::new();
        for member in members {
            match self.remembered(member) {
                Some(true) => return Ok(true),
                Some(false) => {}
                None => unknown.push(*member),
            }
        }
        if unknown.is_empty() {
            return Ok(false);
        }
        let blocked = self.store.any_member(&self.key, &unknown).await?;
        // A hit is not told apart member by member: all of them are
        // remembered as blocked, as the visitor is.
        self.remember(&unknown, blocked);
        Ok(blocked)
    }

    /// Adds `block` (its target in the deny list, its details beside it).
    pub async fn add(&self, block: &Block) -> Result<bool, StoreError> {
        let details = serde_json::to_string(block)
            .map_err(|e| StoreError::Protocol(format!("could not encode a block: {e}")))?;
        let added = self.store.add_member(&self.key, &block.target).await?;
        self.store
            .set_field(BLOCK_DETAILS, &block.target, Some(&details))
            .await?;
        self.remember(&[block.target.as_str()], true);
        Ok(added)
    }

    pub async fn remove(&self, member: &str) -> Result<bool, StoreError> {
        let removed = self.store.remove_member(&self.key, member).await?;
        self.store.set_field(BLOCK_DETAILS, member, None).await?;
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(member);
        Ok(removed)
    }

    /// Every block, with its details when this app made it (a block added
    /// in the Upstash console or by a Node app has none).
    pub async fn list(&self) -> Result<Vec<Block>, StoreError> {
        let members = self.store.members(&self.key).await?;
        let details = self.store.fields(BLOCK_DETAILS).await?;
        Ok(members
            .into_iter()
            .map(|target| {
                details
                    .get(&target)
                    .and_then(|json| serde_json::from_str::<Block>(json).ok())
                    .filter(|block| block.target == target)
                    .unwrap_or(Block {
                        target,
                        note: None,
                        by: None,
                        at_ms: None,
                        expires_ms: None,
                    })
            })
            .collect())
    }

    /// Lifts the blocks whose time is up at `now_ms`; how many.
    pub async fn lift_expired(&self, now_ms: u64) -> Result<usize, StoreError> {
        let details = self.store.fields(BLOCK_DETAILS).await?;
        let mut lifted = 0;
        for (target, json) in details {
            let expired = serde_json::from_str::<Block>(&json)
                .ok()
                .and_then(|block| block.expires_ms)
                .is_some_and(|at| at <= now_ms);
            if expired {
                self.remove(&target).await?;
                lifted += 1;
            }
        }
        Ok(lifted)
    }
}

/// The details of the blocks this app made: `target` → JSON.
const BLOCK_DETAILS: &str = "lofianime:blocks";

/// One block on the deny list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Block {
    /// An address, an IPv6 /64, an e-mail, `sub:{subject}` or a visitor's tag.
    pub target: String,
    pub note: Option<String>,
    /// Who made it (an e-mail, or "admin token").
    pub by: Option<String>,
    /// When, epoch milliseconds.
    pub at_ms: Option<u64>,
    /// When it is lifted by itself (`None`: never).
    pub expires_ms: Option<u64>,
}

/// Images the owner removed, kept as a set every instance reads (at most
/// every [`REMOVED_REFRESH`]): their pages and files answer "removed" and
/// they leave the recent-images lists, even where another instance still has
/// a copy on its own disk.
pub struct RemovedImages {
    store: Arc<dyn ControlStore>,
    key: &'static str,
    value: Refreshed<Arc<std::collections::BTreeSet<String>>>,
}

/// How long the set of removed images is believed.
pub const REMOVED_REFRESH: Duration = Duration::from_secs(1);
const REMOVED_KEY: &str = "lofianime:images:removed";
const DELETED_KEY: &str = "lofianime:images:deleted";

impl RemovedImages {
    /// The images the owner removed.
    pub fn new(store: Arc<dyn ControlStore>) -> Self {
        Self {
            store,
            key: REMOVED_KEY,
            value: Refreshed::new(),
        }
    }

    /// The images their makers deleted.
    pub fn deleted(store: Arc<dyn ControlStore>) -> Self {
        Self {
            store,
            key: DELETED_KEY,
            value: Refreshed::new(),
        }
    }

    /// The removed images' ids (a store that cannot be read: the last set).
    pub async fn ids(&self) -> Arc<std::collections::BTreeSet<String>> {
        if let Some(known) = self
            .value
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < REMOVED_REFRESH)
            .map(|(_, ids)| ids.clone())
        {
            return known;
        }
        match self.store.members(self.key).await {
            Ok(ids) => {
                let ids = Arc::new(ids.into_iter().collect());
                self.value.keep(Arc::clone(&ids));
                ids
            }
            Err(_) => self.value.stale().unwrap_or_default(),
        }
    }

    pub async fn contains(&self, id: &str) -> bool {
        self.ids().await.contains(id)
    }

    /// Marks image `id` removed on every instance.
    pub async fn add(&self, id: &str) -> Result<(), StoreError> {
        self.store.add_member(self.key, id).await?;
        self.value.forget();
        Ok(())
    }
}

/// The pause switch.
pub struct PauseSwitch {
    store: Arc<dyn ControlStore>,
    value: Refreshed<bool>,
}

impl PauseSwitch {
    pub fn new(store: Arc<dyn ControlStore>) -> Self {
        Self {
            store,
            value: Refreshed::new(),
        }
    }

    /// Whether generation is paused (read at most once per [`REFRESH`]; a
    /// store that cannot be read leaves the last answer).
    pub async fn is_paused(&self) -> bool {
        if let Some(known) = self.value.fresh() {
            return known;
        }
        match self.store.get_text(PAUSED_KEY).await {
            Ok(value) => {
                let paused = value.is_some();
                self.value.keep(paused);
                paused
            }
            Err(_) => self.value.stale().unwrap_or(false),
        }
    }

    /// Pauses (with who did it, for the record) or resumes.
    pub async fn set(&self, paused_by: Option<&str>) -> Result<(), StoreError> {
        self.store
            .set_text(
                PAUSED_KEY,
                paused_by.map(|who| if who.is_empty() { "owner" } else { who }),
            )
            .await?;
        self.value.forget();
        Ok(())
    }
}

#[cfg(any(test, feature = "testing"))]
pub mod contract {
    //! What every [`ControlStore`] must do; run on memory here and on a real
    //! Redis and the Upstash REST bridge in `tests/`.
    use super::ControlStore;

    pub async fn texts_and_sets_are_kept(store: &dyn ControlStore, prefix: &str) {
        let key = format!("{prefix}:text");
        assert_eq!(store.get_text(&key).await.unwrap(), None);
        store.set_text(&key, Some("5")).await.unwrap();
        assert_eq!(store.get_text(&key).await.unwrap().as_deref(), Some("5"));
        store.set_text(&key, None).await.unwrap();
        assert_eq!(store.get_text(&key).await.unwrap(), None);
        let set = format!("{prefix}:set");
        assert!(!store.any_member(&set, &["a", "b"]).await.unwrap());
        assert!(store.add_member(&set, "b").await.unwrap());
        assert!(!store.add_member(&set, "b").await.unwrap());
        assert!(store.add_member(&set, "a@example.com").await.unwrap());
        assert!(store.any_member(&set, &["x", "b"]).await.unwrap());
        assert!(!store.any_member(&set, &["x", "y"]).await.unwrap());
        assert_eq!(store.members(&set).await.unwrap(), ["a@example.com", "b"]);
        assert!(store.remove_member(&set, "b").await.unwrap());
        assert!(!store.remove_member(&set, "b").await.unwrap());
        assert!(!store.any_member(&set, &["b"]).await.unwrap());
        let hash = format!("{prefix}:hash");
        assert!(store.fields(&hash).await.unwrap().is_empty());
        store.set_field(&hash, "a", Some("1")).await.unwrap();
        store.set_field(&hash, "b", Some("2")).await.unwrap();
        store.set_field(&hash, "a", None).await.unwrap();
        let fields = store.fields(&hash).await.unwrap();
        assert_eq!(fields.len(), 1);
        assert_eq!(fields["b"], "2");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::MemoryStore;

    fn memory() -> Arc<MemoryStore> {
        Arc::new(MemoryStore::new(Arc::new(ManualClock::at(1))))
    }

    #[tokio::test]
    async fn the_memory_store_keeps_texts_and_sets() {
        contract::texts_and_sets_are_kept(&*memory(), "p").await;
    }

    #[tokio::test]
    async fn a_dynamic_limit_is_read_as_the_npm_package_writes_it() {
        let store = memory();
        let limit = DynamicLimit::new(store.clone(), "@upstash/ratelimit");
        assert_eq!(limit.current().await, None);
        store
            .set_text("@upstash/ratelimit:dynamic:global", Some("\"3\""))
            .await
            .unwrap();
        assert_eq!(limit.current().await, None, "believed for a second");
        limit.value.forget();
        assert_eq!(limit.current().await, Some(3));
        limit.set(Some(7)).await.unwrap();
        assert_eq!(limit.current().await, Some(7));
        limit.set(None).await.unwrap();
        assert_eq!(limit.current().await, None);
        store
            .set_text("@upstash/ratelimit:dynamic:global", Some("lots"))
            .await
            .unwrap();
        limit.value.forget();
        assert_eq!(
            limit.current().await,
            None,
            "not a number: the settings rule"
        );
    }

    #[tokio::test]
    async fn the_deny_list_matches_exact_members_and_remembers_blocks() {
        let store = memory();
        let deny = DenyList::new(store.clone(), "p");
        assert!(!deny.blocks(&["203.0.113.7"]).await.unwrap());
        store
            .add_member("p:denyList:all", "203.0.113.7")
            .await
            .unwrap();
        assert!(
            !deny.blocks(&["203.0.113.7"]).await.unwrap(),
            "a miss is believed for two seconds"
        );
        deny.answers.lock().unwrap().clear();
        assert!(deny
            .blocks(&["ada@example.com", "203.0.113.7"])
            .await
            .unwrap());
        assert!(!deny.blocks(&["203.0.113.70"]).await.unwrap(), "exact only");
        // Removed elsewhere: a block is believed up to 60 s here, as
        // @upstash/ratelimit does; removed here, at once.
        store
            .remove_member("p:denyList:all", "203.0.113.7")
            .await
            .unwrap();
        assert!(deny.blocks(&["203.0.113.7"]).await.unwrap());
        deny.remove("203.0.113.7").await.unwrap();
        assert!(!deny.blocks(&["203.0.113.7"]).await.unwrap());
        let block = |target: &str, expires_ms| Block {
            target: target.into(),
            note: Some("spam".into()),
            by: Some("owner@example.com".into()),
            at_ms: Some(1_000),
            expires_ms,
        };
        deny.add(&block("sub:42", None)).await.unwrap();
        deny.add(&block("203.0.113.9", Some(5_000))).await.unwrap();
        store
            .add_member("p:denyList:all", "from-the-console")
            .await
            .unwrap();
        let listed = deny.list().await.unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0], block("203.0.113.9", Some(5_000)));
        assert_eq!(listed[1].target, "from-the-console");
        assert_eq!(listed[1].note, None);
        assert_eq!(deny.lift_expired(4_999).await.unwrap(), 0);
        assert_eq!(deny.lift_expired(5_000).await.unwrap(), 1);
        assert!(!deny.blocks(&["203.0.113.9"]).await.unwrap(), "lifted");
        assert_eq!(
            store.members("p:denyList:all").await.unwrap(),
            ["from-the-console", "sub:42"]
        );
    }

    #[tokio::test]
    async fn the_pause_is_seen_within_a_second() {
        let store = memory();
        let here = PauseSwitch::new(store.clone());
        let elsewhere = PauseSwitch::new(store.clone());
        assert!(!here.is_paused().await);
        elsewhere.set(Some("owner@example.com")).await.unwrap();
        assert!(elsewhere.is_paused().await);
        here.value.forget(); // a second later
        assert!(here.is_paused().await);
        elsewhere.set(None).await.unwrap();
        here.value.forget();
        assert!(!here.is_paused().await);
    }
}
