//! [`SharedState`] in this process's memory: right for a single instance.

use super::SharedState;
use crate::domain::clock::Clock;
use crate::domain::ratelimit::StoreError;
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

enum Value {
    Hash(HashMap<String, String>),
    List(VecDeque<String>),
}

struct Entry {
    value: Value,
    expires_at_ms: u64,
}

/// Hashes and lists behind one mutex; expired entries are swept on each write.
pub struct MemoryState {
    entries: Mutex<HashMap<String, Entry>>,
    clock: Arc<dyn Clock>,
}

impl MemoryState {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            clock,
        }
    }

    /// The live entries (expired ones removed), locked.
    fn live(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        let now = self.clock.now_ms();
        // Every change is one insert or one field update; a panic elsewhere
        // cannot leave one half-done.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, entry| entry.expires_at_ms > now);
        entries
    }
}

#[async_trait]
impl SharedState for MemoryState {
    fn describe(&self) -> String {
        "this process's memory".into()
    }

    async fn create_hash(
        &self,
        key: &str,
        fields: &[(&str, String)],
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let expires_at_ms = self.clock.now_ms() + ttl_ms;
        let mut entries = self.live();
        if entries.contains_key(key) {
            return Ok(false);
        }
        let hash = fields
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect();
        entries.insert(
            key.to_owned(),
            Entry {
                value: Value::Hash(hash),
                expires_at_ms,
            },
        );
        Ok(true)
    }

    async fn update_hash(&self, key: &str, fields: &[(&str, String)]) -> Result<bool, StoreError> {
        let mut entries = self.live();
        let Some(Entry {
            value: Value::Hash(hash),
            ..
        }) = entries.get_mut(key)
        else {
            return Ok(false);
        };
        for (name, value) in fields {
            hash.insert((*name).to_owned(), value.clone());
        }
        Ok(true)
    }

    async fn read_hash(&self, key: &str) -> Result<HashMap<String, String>, StoreError> {
        Ok(match self.live().get(key) {
            Some(Entry {
                value: Value::Hash(hash),
                ..
            }) => hash.clone(),
            _ => HashMap::new(),
        })
    }

    async fn push_capped(
        &self,
        key: &str,
        value: &str,
        keep: usize,
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        let expires_at_ms = self.clock.now_ms() + ttl_ms;
        let mut entries = self.live();
        let entry = entries.entry(key.to_owned()).or_insert_with(|| Entry {
            value: Value::List(VecDeque::new()),
            expires_at_ms,
        });
        entry.expires_at_ms = expires_at_ms;
        if !matches!(entry.value, Value::List(_)) {
            entry.value = Value::List(VecDeque::new());
        }
        if let Value::List(list) = &mut entry.value {
            list.push_front(value.to_owned());
            list.truncate(keep);
        }
        Ok(())
    }

    async fn read_list(&self, key: &str) -> Result<Vec<String>, StoreError> {
        Ok(match self.live().get(key) {
            Some(Entry {
                value: Value::List(list),
                ..
            }) => list.iter().cloned().collect(),
            _ => Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::ManualClock;
    use crate::domain::shared::contract;

    #[tokio::test]
    async fn memory_state_keeps_the_shared_state_contract() {
        let state = MemoryState::new(Arc::new(ManualClock::at(1_000)));
        contract::hashes_are_created_once_updated_and_read(&state, "h").await;
        contract::lists_keep_the_newest_entries(&state, "l").await;
    }

    #[tokio::test]
    async fn entries_expire() {
        let clock = Arc::new(ManualClock::at(1_000));
        let state = MemoryState::new(clock.clone());
        assert!(state
            .create_hash("h", &[("a", "1".into())], 500)
            .await
            .unwrap());
        state.push_capped("l", "x", 5, 500).await.unwrap();
        clock.advance(499);
        assert!(!state.read_hash("h").await.unwrap().is_empty());
        clock.advance(1);
        assert!(state.read_hash("h").await.unwrap().is_empty());
        assert!(state.read_list("l").await.unwrap().is_empty());
        assert!(state
            .create_hash("h", &[("a", "2".into())], 500)
            .await
            .unwrap());
    }
}
