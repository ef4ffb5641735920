//! Refused generations per UTC day, by what refused them (the visitor's limit,
//! the shared budget, the daily dollar budget, the pause switch, the deny list,
//! a required sign-in), for the owner's page. A flood of refusals must not
//! cost the store a write each: they are tallied in this process and added to
//! the day's totals in one step every few seconds (and whenever the owner's
//! page reads them).

use super::SpendLedger;
use crate::store::StoreError;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// How often each instance adds its tally to the shared totals.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// Refusals not yet added to the ledger: day → scope → count.
#[derive(Default)]
pub struct RefusalTally(Mutex<BTreeMap<String, BTreeMap<&'static str, u64>>>);

impl RefusalTally {
    pub fn add(&self, day: String, scope: &'static str) {
        let mut pending = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *pending.entry(day).or_default().entry(scope).or_default() += 1;
    }

    /// Adds what is pending to the ledger; what could not be written stays
    /// pending for the next flush.
    pub async fn flush(&self, ledger: &dyn SpendLedger, keep_ms: u64) -> Result<(), StoreError> {
        let taken = std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let mut failed = None;
        let mut unwritten = BTreeMap::new();
        for (day, counts) in taken {
            let list: Vec<(String, u64)> = counts
                .iter()
                .map(|(scope, count)| ((*scope).to_owned(), *count))
                .collect();
            if let Err(error) = ledger.add_refusals(&day, &list, keep_ms).await {
                failed = Some(error);
                unwritten.insert(day, counts);
            }
        }
        if !unwritten.is_empty() {
            let mut pending = self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for (day, counts) in unwritten {
                let entry = pending.entry(day).or_default();
                for (scope, count) in counts {
                    *entry.entry(scope).or_default() += count;
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::MemoryStore;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_tally_reaches_the_days_totals_once() {
        let store = MemoryStore::new(Arc::new(ManualClock::at(1_000)));
        let tally = RefusalTally::default();
        tally.add("2026-12-07".into(), "limit");
        tally.add("2026-12-07".into(), "limit");
        tally.add("2026-12-07".into(), "paused");
        tally.add("2026-12-06".into(), "blocked");
        tally.flush(&store, 86_400_000).await.unwrap();
        tally.flush(&store, 86_400_000).await.unwrap();
        let today = store.day("2026-12-07", 1_000).await.unwrap();
        assert_eq!(today.refused.get("limit"), Some(&2));
        assert_eq!(today.refused.get("paused"), Some(&1));
        assert_eq!(today.refused_total(), 3);
        assert!(today.by_outcome.is_empty(), "refusals are not runs");
        let yesterday = store.day("2026-12-06", 1_000).await.unwrap();
        assert_eq!(yesterday.refused.get("blocked"), Some(&1));
    }
}
