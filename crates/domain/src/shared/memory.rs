//! [`SharedState`] in this process's memory (the store layer's [`MemoryStore`],
//! the same one the limiter counts in): right for a single instance.

use super::SharedState;
use crate::store::{MemoryStore, StoreError, Value};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};

#[async_trait]
impl SharedState for MemoryStore {
    fn describe(&self) -> String {
        MemoryStore::describe(self)
    }

    fn outlives_process(&self) -> bool {
        false
    }

    async fn create_hash(
        &self,
        key: &str,
        fields: &[(&str, String)],
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|entries| {
            if entries.get(key).is_some() {
                return false;
            }
            let hash = fields
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect();
            let expires_at = entries.now_ms() + ttl_ms;
            entries.set(key, Value::Hash(hash), Some(expires_at));
            true
        }))
    }

    async fn update_hash(&self, key: &str, fields: &[(&str, String)]) -> Result<bool, StoreError> {
        Ok(self.with(|entries| {
            let Some(Value::Hash(hash)) = entries.get_mut(key) else {
                return false;
            };
            for (name, value) in fields {
                hash.insert((*name).to_owned(), value.clone());
            }
            true
        }))
    }

    async fn read_hash(&self, key: &str) -> Result<HashMap<String, String>, StoreError> {
        Ok(self.with(|entries| match entries.get(key) {
            Some(Value::Hash(hash)) => hash.clone(),
            _ => HashMap::new(),
        }))
    }

    async fn push_capped(
        &self,
        key: &str,
        value: &str,
        keep: usize,
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        self.with(|entries| {
            let expires_at = entries.now_ms() + ttl_ms;
            if let Some(Value::List(list)) = entries.get_mut(key) {
                list.push_front(value.to_owned());
                list.truncate(keep.max(1));
                entries.expire_at(key, expires_at);
            } else {
                let list = VecDeque::from([value.to_owned()]);
                entries.set(key, Value::List(list), Some(expires_at));
            }
        });
        Ok(())
    }

    async fn read_list(&self, key: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.with(|entries| match entries.get(key) {
            Some(Value::List(list)) => list.iter().cloned().collect(),
            _ => Vec::new(),
        }))
    }

    async fn hold(&self, key: &str, holder: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        Ok(self.with(|entries| {
            let free = match entries.get(key) {
                None => true,
                Some(Value::Text(current)) => current == holder,
                Some(_) => false,
            };
            if free {
                let expires_at = entries.now_ms() + ttl_ms.max(1);
                entries.set(key, Value::Text(holder.to_owned()), Some(expires_at));
            }
            free
        }))
    }

    async fn let_go(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        self.with(|entries| {
            if matches!(entries.get(key), Some(Value::Text(current)) if current == holder) {
                entries.delete(key);
            }
        });
        Ok(())
    }

    async fn wait_in_line(
        &self,
        key: &str,
        ticket: &str,
        now_ms: u64,
        stale_ms: u64,
    ) -> Result<u64, StoreError> {
        Ok(self.with(|entries| {
            let expires_at = entries.now_ms() + stale_ms.max(1) * 4;
            if !matches!(entries.get(key), Some(Value::Hash(_))) {
                entries.set(key, Value::Hash(HashMap::new()), Some(expires_at));
            }
            let Some(Value::Hash(line)) = entries.get_mut(key) else {
                return 0;
            };
            let parse = |text: &str| -> Option<(u64, u64)> {
                let (joined, seen) = text.split_once(':')?;
                Some((joined.parse().ok()?, seen.parse().ok()?))
            };
            let joined = line
                .get(ticket)
                .and_then(|text| parse(text))
                .map_or(now_ms, |(joined, _)| joined);
            line.insert(ticket.to_owned(), format!("{joined}:{now_ms}"));
            line.retain(|_, text| parse(text).is_some_and(|(_, seen)| seen + stale_ms >= now_ms));
            let ahead = line
                .iter()
                .filter(|(other, text)| {
                    parse(text).is_some_and(|(j, _)| {
                        j < joined || (j == joined && other.as_str() < ticket)
                    })
                })
                .count() as u64;
            entries.expire_at(key, expires_at);
            ahead
        }))
    }

    async fn leave_line(&self, key: &str, ticket: &str) -> Result<(), StoreError> {
        self.with(|entries| {
            if let Some(Value::Hash(line)) = entries.get_mut(key) {
                line.remove(ticket);
            }
        });
        Ok(())
    }

    async fn take_slot(
        &self,
        key: &str,
        limit: u32,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        // The log, oldest first: the instants the slots in the window were
        // taken (changed in place: it holds up to `limit` entries).
        Ok(self.with(|entries| {
            let expires_at = entries.now_ms() + window_ms;
            if !matches!(entries.get(key), Some(Value::List(_))) {
                entries.set(key, Value::List(VecDeque::new()), Some(expires_at));
            }
            let Some(Value::List(log)) = entries.get_mut(key) else {
                return None;
            };
            let since = now_ms.saturating_sub(window_ms);
            while log
                .front()
                .and_then(|at| at.parse::<u64>().ok())
                .is_some_and(|at| at <= since)
            {
                log.pop_front();
            }
            let wait = if log.len() < limit as usize {
                log.push_back(now_ms.to_string());
                None
            } else {
                let oldest = log.front().and_then(|at| at.parse::<u64>().ok());
                Some(
                    (oldest.unwrap_or(now_ms) + window_ms)
                        .saturating_sub(now_ms)
                        .max(1),
                )
            };
            entries.expire_at(key, expires_at);
            wait
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::shared::contract;
    use std::sync::Arc;

    #[tokio::test]
    async fn memory_keeps_the_shared_state_contract() {
        let state = MemoryStore::new(Arc::new(ManualClock::at(1_000)));
        contract::hashes_are_created_once_updated_and_read(&state, "h").await;
        contract::lists_keep_the_newest_entries(&state, "l").await;
        contract::slots_are_limited_over_a_sliding_window(&state, "s").await;
        contract::holds_go_to_one_holder_at_a_time(&state, "hold").await;
        contract::a_line_keeps_its_order_and_forgets_who_left(&state, "line").await;
    }

    #[tokio::test]
    async fn entries_expire() {
        let clock = Arc::new(ManualClock::at(1_000));
        let state = MemoryStore::new(clock.clone());
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
