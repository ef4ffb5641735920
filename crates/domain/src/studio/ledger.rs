//! The front door to what the runs cost: the ledger's days, totals and rows
//! (for the owner's page), and reconciliation with the provider's own list of
//! runs, one instance at a time.

use super::{Studio, StudioError};
use crate::spend::{utc_day, DayTotals, SpendRow};
use std::time::Duration;

impl Studio {
    /// The totals of the UTC day `day` (`YYYY-MM-DD`), with what is reserved.
    async fn spend_day(&self, day: &str) -> Result<DayTotals, StudioError> {
        let now_ms = self.now_ms();
        self.parts
            .ledger
            .day(day, now_ms)
            .await
            .map_err(StudioError::Ledger)
    }

    /// The totals of the last `days` UTC days, today first, with this
    /// instance's refusals of the last seconds added first (a store that
    /// cannot take them now gets them with the next flush).
    pub async fn spend_days(&self, days: u32) -> Result<Vec<DayTotals>, StudioError> {
        if let Err(error) = self.flush_refusals().await {
            tracing::warn!(%error, "could not add this instance's latest refusals before reading the days");
        }
        let today = self.now_ms();
        let mut totals = Vec::new();
        for back in 0..u64::from(days) {
            let day = utc_day(today.saturating_sub(back * 86_400_000));
            totals.push(self.spend_day(&day).await?);
        }
        Ok(totals)
    }

    /// Adds this instance's refusals to the day's totals now (the owner's page
    /// does before it reads them; every instance does every few seconds).
    pub async fn flush_refusals(&self) -> Result<(), StudioError> {
        self.refusals
            .flush(self.parts.ledger.as_ref(), self.parts.spend.keep_ms())
            .await
            .map_err(StudioError::Ledger)
    }

    /// Flushes the refusals every few seconds until the process ends (the
    /// server spawns it).
    pub async fn count_refusals_forever(&self) {
        let mut tick = tokio::time::interval(crate::spend::REFUSALS_FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = self.flush_refusals().await {
                tracing::warn!(%error, "could not add the refusals to the day's totals; the next flush tries again");
            }
        }
    }

    /// The latest rows, newest first.
    pub async fn spend_rows(&self, count: usize) -> Result<Vec<SpendRow>, StudioError> {
        self.parts
            .ledger
            .latest(count)
            .await
            .map_err(StudioError::Ledger)
    }

    /// The daily dollar budget, if the owner set one, and the price per second.
    pub fn spend_policy(&self) -> &super::SpendPolicy {
        &self.parts.spend
    }

    /// One reconciliation pass now: the rows it wrote (`None`: another
    /// instance holds the pass, or there is nothing to reconcile with).
    pub async fn reconcile(&self) -> Result<Option<Vec<SpendRow>>, String> {
        match &self.reconciler {
            Some(reconciler) => reconciler.pass(self.now_ms()).await,
            None => Ok(None),
        }
    }

    /// One sweep for model runs nobody watches now: the rows of those it
    /// stopped (`None`: another instance holds the sweep, or there is no
    /// provider to ask).
    pub async fn stop_orphaned_runs(&self) -> Result<Option<Vec<SpendRow>>, String> {
        match &self.orphans {
            Some(sweep) => sweep.pass(self.now_ms()).await,
            None => Ok(None),
        }
    }

    /// Sweeps for orphaned runs at once (a crash before this start may have
    /// left some) and every few seconds after, until the process ends (the
    /// server spawns it; each sweep is taken by one instance).
    pub async fn stop_orphaned_runs_forever(&self) {
        if self.orphans.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(crate::spend::SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = self.stop_orphaned_runs().await {
                tracing::warn!(%error, "a sweep for orphaned model runs failed; the next one tries again");
            }
        }
    }

    /// Reconciles every `spend.reconcile_every` until the process ends (the
    /// server spawns it; each pass is taken by one instance).
    pub async fn reconcile_forever(&self) {
        if self.reconciler.is_none() {
            return;
        }
        let every = self.parts.spend.reconcile_every.max(Duration::from_secs(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = self.reconcile().await {
                tracing::warn!(%error, "a reconciliation pass failed; the next one tries again");
            }
        }
    }
}
