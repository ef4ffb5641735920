//! Reconciliation: the provider's own list of the account's runs is read now
//! and then, and a run the ledger lacks (its instance died before settling it)
//! gets its row, at the price of its billed seconds. One instance at a time (a
//! lock with expiry in the store); rows are idempotent, so a run written by
//! its instance and by a pass counts once.

use super::{rfc3339, utc_day, SpendLedger, SpendRow};
use crate::generator::ModelError;
use async_trait::async_trait;
use std::sync::Arc;

/// One run as the provider lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedRun {
    pub id: String,
    /// The model version it ran.
    pub version: String,
    /// Created through the API (not the provider's website).
    pub from_api: bool,
    /// Over (succeeded, failed, canceled, aborted).
    pub terminal: bool,
    /// Billed seconds (`metrics.predict_time`).
    pub billed_secs: f64,
    /// When it was created, epoch milliseconds.
    pub created_ms: u64,
}

/// The provider's record of the account's runs.
#[async_trait]
pub trait RunHistory: Send + Sync + 'static {
    /// The runs created at or after `since_ms`, every page of them.
    async fn runs_since(&self, since_ms: u64) -> Result<Vec<ListedRun>, ModelError>;

    /// The model version whose runs are this app's.
    fn version(&self) -> &str;

    /// Cancels run `run_id` (nobody watches it) and returns the provider's
    /// record of it once it is over.
    async fn stop(&self, run_id: &str) -> crate::generator::RunRecord;
}

/// The lock and mark names in the ledger.
const LOCK: &str = "reconcile";
const MARK: &str = "reconciled";
/// The first pass looks back this far.
const FIRST_LOOKBACK_MS: u64 = 86_400_000;

pub(crate) struct Reconciler {
    pub ledger: Arc<dyn SpendLedger>,
    pub history: Arc<dyn RunHistory>,
    pub usd_per_second: f64,
    pub keep_ms: u64,
    /// How often passes run (a pass holds the lock nine tenths of that).
    pub every_ms: u64,
    /// How far before the last pass's time the next one looks again (runs
    /// still in flight at the last pass end after it).
    pub overlap_ms: u64,
}

impl Reconciler {
    pub fn new(
        ledger: Arc<dyn SpendLedger>,
        history: Arc<dyn RunHistory>,
        policy: &crate::studio::SpendPolicy,
    ) -> Self {
        Self {
            ledger,
            history,
            usd_per_second: policy.usd_per_second,
            keep_ms: policy.keep_ms(),
            every_ms: policy.reconcile_every.as_millis() as u64,
            // Runs in flight at the last pass end within their deadline.
            overlap_ms: policy.run_deadline.as_millis() as u64 + 600_000,
        }
    }

    /// One pass at `now_ms`: the rows it wrote, or `None` when another
    /// instance holds the lock.
    pub async fn pass(&self, now_ms: u64) -> Result<Option<Vec<SpendRow>>, String> {
        let store = |e: crate::store::StoreError| e.to_string();
        // Held a little less than a period, so the holder's next tick finds
        // it free.
        if !self
            .ledger
            .try_lock(LOCK, self.every_ms * 9 / 10)
            .await
            .map_err(store)?
        {
            return Ok(None);
        }
        let since = match self.ledger.read_mark(MARK).await.map_err(store)? {
            Some(last) => last.saturating_sub(self.overlap_ms),
            None => now_ms.saturating_sub(FIRST_LOOKBACK_MS),
        };
        let runs = self
            .history
            .runs_since(since)
            .await
            .map_err(|e| e.to_string())?;
        let mut written = Vec::new();
        let ours = runs
            .iter()
            .filter(|run| run.version == self.history.version() && run.from_api && run.terminal);
        for run in ours {
            let billed_ms = (run.billed_secs.max(0.0) * 1000.0).round() as u64;
            let row = SpendRow {
                run_id: run.id.clone(),
                day: utc_day(run.created_ms),
                time_ms: now_ms,
                outcome: "reconciled".into(),
                billed_ms,
                usd_micros: micros(billed_ms, self.usd_per_second),
                who: "unknown".into(),
                prompt: None,
                image: None,
            };
            if self
                .ledger
                .record(&row, None, self.keep_ms)
                .await
                .map_err(store)?
            {
                metrics::gauge!("lofianime_model_billed_seconds_total")
                    .increment(billed_ms as f64 / 1000.0);
                metrics::gauge!("lofianime_spend_usd_total").increment(row.usd());
                tracing::warn!(run = %row.run_id, usd = row.usd(), "a run nobody settled was found in the provider's list and written in the ledger");
                written.push(row);
            }
        }
        self.ledger.write_mark(MARK, now_ms).await.map_err(store)?;
        tracing::info!(
            since = %rfc3339(since),
            listed = runs.len(),
            written = written.len(),
            "reconciled the ledger with the provider's list of runs"
        );
        Ok(Some(written))
    }
}

/// What `billed_ms` of model time costs at `usd_per_second`, in micro-dollars.
pub fn micros(billed_ms: u64, usd_per_second: f64) -> u64 {
    (billed_ms as f64 * usd_per_second * 1000.0).round() as u64
}

/// Epoch milliseconds of an RFC 3339 time in UTC (`2026-12-06T18:03:04.005Z`,
/// any number of fraction digits, or `+00:00`).
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let (date, time) = text.split_once('T')?;
    let mut parts = date.split('-');
    let (year, month, day): (i64, i64, i64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    let time = time.trim_end_matches('Z').trim_end_matches("+00:00");
    let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = clock.split(':');
    let (h, m, s): (u64, u64, u64) = (
        hms.next()?.parse().ok()?,
        hms.next()?.parse().ok()?,
        hms.next()?.parse().ok()?,
    );
    let millis: u64 = format!("{:0<3}", &fraction[..fraction.len().min(3)])
        .parse()
        .ok()?;
    // Days since 1970-01-01 (Howard Hinnant's algorithm, inverted).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(((days * 86_400 + h * 3600 + m * 60 + s) * 1000) + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_back_as_they_were_written() {
        for ms in [0, 951_782_400_000, 1_796_580_184_005] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(
            parse_rfc3339("2026-12-06T18:03:04.005123Z"),
            Some(1_796_580_184_005)
        );
        assert_eq!(
            parse_rfc3339("2026-12-06T18:03:04+00:00"),
            Some(1_796_580_184_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn a_run_costs_its_billed_seconds_at_the_price() {
        assert_eq!(micros(8_000, 0.000975), 7_800);
        assert_eq!(
            micros(2_500, 0.000975),
            2_438,
            "rounded to the micro-dollar"
        );
        assert_eq!(micros(0, 0.000975), 0);
    }
}
