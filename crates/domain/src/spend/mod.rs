//! What the model runs cost the owner, from the provider's own record of each
//! run: a ledger of one row per run (idempotent: the same run written by two
//! instances counts once), daily totals per UTC day by outcome, and the
//! reservations that keep a daily dollar budget from being overrun by runs in
//! flight. It lives in the limiter's store (Redis or Upstash when configured,
//! memory otherwise), so every instance sees one ledger.
//!
//! Money is kept in whole micro-dollars and time in milliseconds: integers add
//! up exactly in Redis (`HINCRBY`) and in memory alike.

#[cfg(any(test, feature = "testing"))]
pub mod contract;
mod memory;
mod orphans;
mod reconcile;
mod refusals;
mod scripted;

pub(crate) use orphans::{LeaseInfo, OrphanRows, OrphanSweep, RunLeases, SWEEP_EVERY};
pub(crate) use reconcile::Reconciler;
pub use reconcile::{micros, parse_rfc3339, ListedRun, RunHistory};
pub use refusals::{RefusalTally, FLUSH_EVERY as REFUSALS_FLUSH_EVERY};

use crate::store::StoreError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many of the latest rows the ledger keeps in order (the owner's page
/// shows the latest 50).
pub const LATEST_KEPT: usize = 200;
/// How many billed durations the expected cost of a run is estimated from.
pub const RECENT_KEPT: usize = 100;

/// One run, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendRow {
    /// The provider's id of the run (the prediction id); a fresh id for a run
    /// of the offline painter.
    pub run_id: String,
    /// Its UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// When it was settled, epoch milliseconds.
    pub time_ms: u64,
    /// `delivered`, `failed`, `unsafe`, `stopped` (the visitor cancelled or
    /// left), `shutdown`, or `reconciled` (found by a reconciliation pass).
    pub outcome: String,
    /// Billed model time (`metrics.predict_time`), in milliseconds.
    pub billed_ms: u64,
    /// What it cost, in micro-dollars.
    pub usd_micros: u64,
    /// Whose it was: the visitor's tag (a hash) or the account's e-mail.
    pub who: String,
    /// The prompt it was asked for (absent for runs found by a sweep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The stored image's file name, when it delivered one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl SpendRow {
    pub fn usd(&self) -> f64 {
        self.usd_micros as f64 / 1e6
    }
}

/// One UTC day's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayTotals {
    pub day: String,
    pub runs: u64,
    pub billed_ms: u64,
    pub usd_micros: u64,
    /// The same three, by outcome.
    pub by_outcome: BTreeMap<String, OutcomeTotals>,
    /// Held for runs in flight, not yet settled.
    pub reserved_micros: u64,
    /// Generations refused before anything was spent, by what refused them
    /// (`limit`, `budget`, `daily_usd`, `paused`, `blocked`,
    /// `sign_in_required`).
    pub refused: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutcomeTotals {
    pub runs: u64,
    pub billed_ms: u64,
    pub usd_micros: u64,
}

impl DayTotals {
    pub fn usd(&self) -> f64 {
        self.usd_micros as f64 / 1e6
    }

    /// All the day's refusals.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }

    /// Reads the totals from a day's hash (`runs`, `runs:{outcome}`, …).
    pub(crate) fn from_fields(
        day: &str,
        fields: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        let mut totals = Self {
            day: day.to_owned(),
            ..Self::default()
        };
        for (name, value) in fields {
            let value: u64 = value.parse().unwrap_or(0);
            match name.split_once(':') {
                None => match name.as_str() {
                    "runs" => totals.runs = value,
                    "billed_ms" => totals.billed_ms = value,
                    "usd_micros" => totals.usd_micros = value,
                    _ => {}
                },
                Some(("refused", scope)) => {
                    totals.refused.insert(scope.to_owned(), value);
                }
                Some((total, outcome)) => {
                    let entry = totals.by_outcome.entry(outcome.to_owned()).or_default();
                    match total {
                        "runs" => entry.runs = value,
                        "billed_ms" => entry.billed_ms = value,
                        "usd_micros" => entry.usd_micros = value,
                        _ => {}
                    }
                }
            }
        }
        totals
    }
}

/// A run's expected cost, held against a day's dollar budget until the run is
/// settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub day: String,
    pub id: String,
    pub micros: u64,
    pub budget_micros: u64,
    pub now_ms: u64,
    /// When it lapses if nobody settles it (an instance that died).
    pub expires_ms: u64,
    /// How long the day's reservations are kept at all.
    pub keep_ms: u64,
}

/// A reservation's answer: admitted, or refused; with what the day holds
/// (spent plus reserved) after it, in micro-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    pub admitted: bool,
    pub committed_micros: u64,
}

/// The ledger's store operations, each one round trip (a Lua script on Redis
/// and Upstash, one lock of the keyspace in memory).
#[async_trait]
pub trait SpendLedger: Send + Sync + 'static {
    /// Writes `row` unless its run has a row already (false then), adds it to
    /// its day's totals, and in the same step releases `reservation` (a
    /// reservation id on the row's day), whether or not the row was new.
    async fn record(
        &self,
        row: &SpendRow,
        reservation: Option<&str>,
        keep_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Takes `reservation` unless what its day has spent and holds, plus the
    /// reservation, would pass its budget.
    async fn reserve(&self, reservation: &Reservation) -> Result<Reserved, StoreError>;

    /// Releases reservation `id` on `day` (the run was refused, or never
    /// started a billed request).
    async fn release(&self, day: &str, id: &str) -> Result<(), StoreError>;

    /// Adds refusals (scope, count) to `day`'s totals (fields `refused:{scope}`).
    async fn add_refusals(
        &self,
        day: &str,
        counts: &[(String, u64)],
        keep_ms: u64,
    ) -> Result<(), StoreError>;

    /// `day`'s totals, with what is reserved at `now_ms`.
    async fn day(&self, day: &str, now_ms: u64) -> Result<DayTotals, StoreError>;

    /// The latest rows, newest first (at most [`LATEST_KEPT`]).
    async fn latest(&self, count: usize) -> Result<Vec<SpendRow>, StoreError>;

    /// The billed milliseconds of the latest billed runs, newest first (at
    /// most [`RECENT_KEPT`]).
    async fn recent_billed_ms(&self) -> Result<Vec<u64>, StoreError>;

    /// Takes the lock `name` for `ttl_ms` unless someone holds it.
    async fn try_lock(&self, name: &str, ttl_ms: u64) -> Result<bool, StoreError>;

    /// A small value the ledger keeps for its own bookkeeping (the time the
    /// last reconciliation pass covered).
    async fn read_mark(&self, name: &str) -> Result<Option<u64>, StoreError>;
    async fn write_mark(&self, name: &str, value: u64) -> Result<(), StoreError>;
}

/// Keys under the ledger's prefix.
pub(crate) mod keys {
    pub const PREFIX: &str = "lofianime:spend";

    pub fn run(run_id: &str) -> String {
        format!("{PREFIX}:run:{run_id}")
    }
    pub fn day(day: &str) -> String {
        format!("{PREFIX}:day:{day}")
    }
    pub fn reservations(day: &str) -> String {
        format!("{PREFIX}:reserved:{day}")
    }
    pub fn latest() -> String {
        format!("{PREFIX}:latest")
    }
    pub fn recent() -> String {
        format!("{PREFIX}:recent")
    }
    pub fn lock(name: &str) -> String {
        format!("{PREFIX}:lock:{name}")
    }
    pub fn mark(name: &str) -> String {
        format!("{PREFIX}:mark:{name}")
    }
}

/// The UTC day of `ms` (epoch milliseconds), `YYYY-MM-DD`.
pub fn utc_day(ms: u64) -> String {
    let (year, month, day) = civil(ms / 86_400_000);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `ms` as RFC 3339 in UTC (`2026-12-06T18:03:00.000Z`), as the provider's
/// list takes it.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let rest = secs % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        utc_day(ms),
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        ms % 1000
    )
}

/// The next UTC midnight after `ms`.
pub fn next_midnight_ms(ms: u64) -> u64 {
    (ms / 86_400_000 + 1) * 86_400_000
}

/// The civil date of `days` since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// The 90th percentile of `values` (none: `None`).
pub fn p90(values: &[u64]) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (sorted.len() * 9).div_ceil(10).max(1) - 1;
    Some(sorted[rank])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_times_are_utc() {
        assert_eq!(utc_day(0), "1970-01-01");
        // 2026-12-06T18:03:04.005Z
        let ms = 1_796_580_184_005;
        assert_eq!(utc_day(ms), "2026-12-06");
        assert_eq!(rfc3339(ms), "2026-12-06T18:03:04.005Z");
        assert_eq!(utc_day(951_782_400_000), "2000-02-29", "a leap day");
        assert_eq!(rfc3339(next_midnight_ms(ms)), "2026-12-07T00:00:00.000Z");
    }

    #[test]
    fn the_90th_percentile_is_a_value_seen() {
        assert_eq!(p90(&[]), None);
        assert_eq!(p90(&[7]), Some(7));
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(p90(&values), Some(90));
        assert_eq!(p90(&[1, 1, 1, 1, 1, 1, 1, 1, 1, 50]), Some(1));
        assert_eq!(p90(&[1, 1, 1, 1, 1, 1, 1, 1, 50, 50]), Some(50));
    }

    #[test]
    fn day_totals_are_read_by_outcome() {
        let totals = DayTotals::from_fields(
            "2026-12-06",
            [
                ("runs", "3"),
                ("usd_micros", "29250"),
                ("billed_ms", "30000"),
                ("runs:delivered", "2"),
                ("usd_micros:delivered", "19500"),
                ("runs:stopped", "1"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        assert_eq!(totals.runs, 3);
        assert_eq!(totals.usd(), 0.02925);
        assert_eq!(totals.by_outcome["delivered"].runs, 2);
        assert_eq!(totals.by_outcome["stopped"].runs, 1);
    }
}
