//! The ephemeral block cache of `@upstash/ratelimit`: once an identifier is
//! refused, this process answers "no" without asking the store until the
//! identifier's reset time. A refund clears the entry.

use std::collections::HashMap;
use std::sync::Mutex;

/// Entries beyond this count trigger a sweep of the expired ones.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Default)]
pub struct BlockCache {
    blocked_until: Mutex<HashMap<String, u64>>,
}

impl BlockCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        // Entries are plain numbers; a panic elsewhere cannot leave one half-written.
        self.blocked_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The reset time if `key` is blocked at `now_ms` (blocked through its reset
    /// millisecond, as in the JS library).
    pub fn blocked(&self, key: &str, now_ms: u64) -> Option<u64> {
        let mut entries = self.lock();
        match entries.get(key) {
            Some(&reset) if reset >= now_ms => Some(reset),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn block_until(&self, key: &str, reset_ms: u64, now_ms: u64) {
        let mut entries = self.lock();
        if entries.len() >= SWEEP_ABOVE {
            entries.retain(|_, &mut reset| reset >= now_ms);
        }
        entries.insert(key.to_owned(), reset_ms);
    }

    /// Forgets every block (the limit changed).
    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn unblock(&self, key: &str) {
        self.lock().remove(key);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_lasts_through_its_reset_millisecond() {
        let cache = BlockCache::default();
        cache.block_until("k", 1000, 0);
        assert_eq!(cache.blocked("k", 999), Some(1000));
        assert_eq!(cache.blocked("k", 1000), Some(1000));
        assert_eq!(cache.blocked("k", 1001), None);
        assert!(cache.is_empty(), "an expired entry is dropped when seen");
    }

    #[test]
    fn unblocking_clears_the_entry() {
        let cache = BlockCache::default();
        cache.block_until("k", 1000, 0);
        cache.unblock("k");
        assert_eq!(cache.blocked("k", 10), None);
    }

    #[test]
    fn expired_entries_are_swept_when_the_cache_grows() {
        let cache = BlockCache::default();
        for i in 0..SWEEP_ABOVE {
            cache.block_until(&format!("old{i}"), 10, 0);
        }
        cache.block_until("new", 5000, 100);
        assert_eq!(cache.len(), 1);
    }
}
