//! The ledger in this process's memory (the store layer's [`MemoryStore`], the
//! same keyspace the limiter counts in): right for a single instance.

use super::{
    keys, DayTotals, Reservation, Reserved, SpendLedger, SpendRow, LATEST_KEPT, RECENT_KEPT,
};
use crate::store::{Entries, MemoryStore, StoreError, Value};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};

/// Adds `by` to the field `name` of the hash at `key` (created when absent).
fn add(entries: &mut Entries, key: &str, name: &str, by: u64, expires_at: u64) {
    let mut hash = match entries.get(key) {
        Some(Value::Hash(hash)) => hash.clone(),
        _ => HashMap::new(),
    };
    let before: u64 = hash.get(name).and_then(|v| v.parse().ok()).unwrap_or(0);
    hash.insert(name.to_owned(), (before + by).to_string());
    entries.set(key, Value::Hash(hash), Some(expires_at));
}

/// Puts `value` at the head of the list at `key`, keeping `keep` entries.
fn push(entries: &mut Entries, key: &str, value: String, keep: usize, expires_at: u64) {
    let mut list = match entries.get(key) {
        Some(Value::List(list)) => list.clone(),
        _ => VecDeque::new(),
    };
    list.push_front(value);
    list.truncate(keep);
    entries.set(key, Value::List(list), Some(expires_at));
}

/// The live reservations of a day (amount, expiry), expired ones dropped.
fn reservations(entries: &mut Entries, day: &str) -> HashMap<String, String> {
    let key = keys::reservations(day);
    let now = entries.now_ms();
    let Some(Value::Hash(held)) = entries.get_mut(&key) else {
        return HashMap::new();
    };
    held.retain(|_, value| expiry(value).is_some_and(|at| at > now));
    held.clone()
}

fn amount(value: &str) -> u64 {
    value
        .split_once(':')
        .and_then(|(amount, _)| amount.parse().ok())
        .unwrap_or(0)
}

fn expiry(value: &str) -> Option<u64> {
    value.split_once(':').and_then(|(_, at)| at.parse().ok())
}

fn release(entries: &mut Entries, day: &str, id: &str) {
    if let Some(Value::Hash(held)) = entries.get_mut(&keys::reservations(day)) {
        held.remove(id);
    }
}

fn list(entries: &Entries, key: &str) -> Vec<String> {
    match entries.get(key) {
        Some(Value::List(list)) => list.iter().cloned().collect(),
        _ => Vec::new(),
    }
}

#[async_trait]
impl SpendLedger for MemoryStore {
    async fn record(
        &self,
        row: &SpendRow,
        reservation: Option<&str>,
        keep_ms: u64,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(row).map_err(|e| StoreError::Protocol(e.to_string()))?;
        Ok(self.with(|entries| {
            if let Some(id) = reservation {
                release(entries, &row.day, id);
            }
            let run = keys::run(&row.run_id);
            if entries.get(&run).is_some() {
                return false;
            }
            let until = entries.now_ms() + keep_ms;
            entries.set(&run, Value::Counter(1), Some(until));
            let day = keys::day(&row.day);
            for (suffix, by) in [
                ("runs", 1),
                ("billed_ms", row.billed_ms),
                ("usd_micros", row.usd_micros),
            ] {
                add(entries, &day, suffix, by, until);
                add(
                    entries,
                    &day,
                    &format!("{suffix}:{}", row.outcome),
                    by,
                    until,
                );
            }
            push(entries, &keys::latest(), json, LATEST_KEPT, until);
            if row.billed_ms > 0 {
                let billed = row.billed_ms.to_string();
                push(entries, &keys::recent(), billed, RECENT_KEPT, until);
            }
            true
        }))
    }

    async fn reserve(&self, reservation: &Reservation) -> Result<Reserved, StoreError> {
        let Reservation {
            day,
            id,
            micros,
            budget_micros,
            expires_ms,
            keep_ms,
            ..
        } = reservation;
        let (micros, budget_micros) = (*micros, *budget_micros);
        Ok(self.with(|entries| {
            let held: u64 = reservations(entries, day).values().map(|v| amount(v)).sum();
            let spent = match entries.get(&keys::day(day)) {
                Some(Value::Hash(totals)) => totals
                    .get("usd_micros")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                _ => 0,
            };
            let committed = spent + held;
            if committed + micros > budget_micros {
                return Reserved {
                    admitted: false,
                    committed_micros: committed,
                };
            }
            let key = keys::reservations(day);
            let mut all = match entries.get(&key) {
                Some(Value::Hash(hash)) => hash.clone(),
                _ => HashMap::new(),
            };
            all.insert(id.clone(), format!("{micros}:{expires_ms}"));
            let until = entries.now_ms() + keep_ms;
            entries.set(&key, Value::Hash(all), Some(until));
            Reserved {
                admitted: true,
                committed_micros: committed + micros,
            }
        }))
    }

    async fn release(&self, day: &str, id: &str) -> Result<(), StoreError> {
        self.with(|entries| release(entries, day, id));
        Ok(())
    }

    async fn add_refusals(
        &self,
        day: &str,
        counts: &[(String, u64)],
        keep_ms: u64,
    ) -> Result<(), StoreError> {
        self.with(|entries| {
            let expires_at = entries.now_ms() + keep_ms.max(1);
            for (scope, count) in counts {
                add(
                    entries,
                    &keys::day(day),
                    &format!("refused:{scope}"),
                    *count,
                    expires_at,
                );
            }
        });
        Ok(())
    }

    async fn day(&self, day: &str, _now_ms: u64) -> Result<DayTotals, StoreError> {
        Ok(self.with(|entries| {
            let fields = match entries.get(&keys::day(day)) {
                Some(Value::Hash(hash)) => hash.clone(),
                _ => HashMap::new(),
            };
            let mut totals = DayTotals::from_fields(day, fields);
            totals.reserved_micros = reservations(entries, day).values().map(|v| amount(v)).sum();
            totals
        }))
    }

    async fn latest(&self, count: usize) -> Result<Vec<SpendRow>, StoreError> {
        Ok(self.with(|entries| {
            list(entries, &keys::latest())
                .iter()
                .filter_map(|json| serde_json::from_str(json).ok())
                .take(count)
                .collect()
        }))
    }

    async fn recent_billed_ms(&self) -> Result<Vec<u64>, StoreError> {
        Ok(self.with(|entries| {
            list(entries, &keys::recent())
                .iter()
                .filter_map(|ms| ms.parse().ok())
                .collect()
        }))
    }

    async fn try_lock(&self, name: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        Ok(self.with(|entries| {
            let key = keys::lock(name);
            if entries.get(&key).is_some() {
                return false;
            }
            let until = entries.now_ms() + ttl_ms;
            entries.set(&key, Value::Counter(1), Some(until));
            true
        }))
    }

    async fn read_mark(&self, name: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.with(|entries| match entries.get(&keys::mark(name)) {
            Some(Value::Counter(n)) => u64::try_from(*n).ok(),
            _ => None,
        }))
    }

    async fn write_mark(&self, name: &str, value: u64) -> Result<(), StoreError> {
        let value = i64::try_from(value).map_err(|e| StoreError::Protocol(e.to_string()))?;
        self.with(|entries| entries.set(&keys::mark(name), Value::Counter(value), None));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract;
    use crate::clock::ManualClock;
    use crate::store::MemoryStore;
    use std::sync::Arc;

    #[tokio::test]
    async fn the_memory_ledger_keeps_its_promises() {
        let store = MemoryStore::new(Arc::new(ManualClock::at(1_000)));
        contract::rows_count_once_and_add_up_by_outcome(&store).await;
        contract::reservations_hold_the_budget_until_settled_or_lapsed(&store, 1_000).await;
        contract::locks_are_held_until_they_expire(&store).await;
        contract::refusals_add_up_beside_the_runs(&store).await;
    }
}
