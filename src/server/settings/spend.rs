//! `[spend]`: what a second of the model costs, the daily dollar budget, and
//! the spend ledger's upkeep.

use super::{invalid, within, SettingsError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpendSettings {
    /// Dollars per second of the model's hardware. The default is Replicate's
    /// public price of an Nvidia L40S, where SDXL fine-tunes run today: an
    /// estimate until the owner checks the model's page.
    pub usd_per_second: f64,
    /// Dollars all runs of a UTC day may cost; unset: no dollar budget.
    pub daily_usd: Option<f64>,
    /// A run's expected seconds, until the ledger has seen 20 billed runs
    /// (then the 90th percentile of the last 100).
    pub expected_seconds: f64,
    /// How long rows and daily totals are kept, in days.
    pub keep_days: u32,
    /// How often one instance reconciles the ledger with the provider's list
    /// of runs, in seconds.
    pub reconcile_secs: u64,
}

impl Default for SpendSettings {
    fn default() -> Self {
        Self {
            usd_per_second: 0.000975,
            daily_usd: None,
            expected_seconds: 10.0,
            keep_days: 400,
            reconcile_secs: 600,
        }
    }
}

impl SpendSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        if !(self.usd_per_second.is_finite()
            && self.usd_per_second >= 0.0
            && self.usd_per_second < 1.0)
        {
            return invalid(
                "spend.usd_per_second",
                "must be a price per second between 0 and 1 dollar, e.g. 0.000975",
            );
        }
        if let Some(daily) = self.daily_usd {
            if !(daily.is_finite() && daily > 0.0 && daily <= 1_000_000.0) {
                return invalid(
                    "spend.daily_usd",
                    "must be a number of dollars above 0 (at most 1000000), or unset for no dollar budget",
                );
            }
        }
        if !(self.expected_seconds.is_finite() && (0.1..=3600.0).contains(&self.expected_seconds)) {
            return invalid(
                "spend.expected_seconds",
                "must be between 0.1 and 3600 seconds",
            );
        }
        within("spend.keep_days", self.keep_days, 1..=3650)?;
        within("spend.reconcile_secs", self.reconcile_secs, 1..=86_400)
    }
}
