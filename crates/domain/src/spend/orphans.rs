//! Runs a dead process left behind. While a generation's model run is in
//! flight, its process keeps a lease on it in the shared store (the run's id,
//! whose it is, its reservation, and a time it is alive until, renewed every
//! few seconds). A sweep, one instance at a time, reads the provider's list of
//! the account's runs that are still going and stops those nobody watches: a
//! lapsed lease (its process died, or gave up on it), or, without a lease, a
//! run older than any generation waits, or (with the store in this process's
//! memory, which a crash empties) one created before this process started.
//! Each is cancelled at the provider and written in the ledger by the
//! provider's record of it.

use super::{micros, utc_day, ListedRun, RunHistory, SpendLedger, SpendRow};
use crate::clock::Clock;
use crate::generator::Meter;
use crate::shared::SharedState;
use crate::store::StoreError;
use std::sync::Arc;
use std::time::Duration;

/// How often a process renews the leases of its runs.
pub const LEASE_RENEW: Duration = Duration::from_secs(5);
/// How long a lease holds without renewal.
pub const LEASE_LAPSE_MS: u64 = 15_000;
/// How long a lease's hash is kept at all.
const LEASE_KEEP_MS: u64 = 3_600_000;
/// How often the sweep runs (one instance at a time).
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// A run without a lease is left alone this long past the longest a
/// generation waits for it (its process may still be writing the lease).
const UNLEASED_SLACK_MS: u64 = 30_000;
const LOCK: &str = "orphans";

/// What a lease says besides the run's id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseInfo {
    /// Whose run it is (the ledger row's `who`).
    pub who: String,
    /// The UTC day its reservation was taken on.
    pub day: String,
    /// Its reservation against the daily dollar budget, if any.
    pub reservation: Option<String>,
}

/// A lease as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub info: LeaseInfo,
    pub alive_until_ms: u64,
    /// Its instance saw the run end (it settles it, or reconciliation does).
    pub done: bool,
}

/// The leases on runs in flight, in the shared store.
pub struct RunLeases {
    state: Arc<dyn SharedState>,
    clock: Arc<dyn Clock>,
}

fn key(run_id: &str) -> String {
    format!("lofianime:run:{run_id}")
}

impl RunLeases {
    pub fn new(state: Arc<dyn SharedState>, clock: Arc<dyn Clock>) -> Self {
        Self { state, clock }
    }

    /// Writes or renews the lease on run `run_id`.
    pub async fn renew(&self, run_id: &str, info: &LeaseInfo) -> Result<(), StoreError> {
        let until = (self.clock.now_ms() + LEASE_LAPSE_MS).to_string();
        if self
            .state
            .update_hash(&key(run_id), &[("alive_until", until.clone())])
            .await?
        {
            return Ok(());
        }
        let fields = [
            ("alive_until", until),
            ("who", info.who.clone()),
            ("day", info.day.clone()),
            ("reservation", info.reservation.clone().unwrap_or_default()),
        ];
        // Created by another call in between: renewed next time.
        self.state
            .create_hash(&key(run_id), &fields, LEASE_KEEP_MS)
            .await?;
        Ok(())
    }

    /// The lease on `run_id`, if there is one.
    pub async fn read(&self, run_id: &str) -> Result<Option<Lease>, StoreError> {
        let mut hash = self.state.read_hash(&key(run_id)).await?;
        if hash.is_empty() {
            return Ok(None);
        }
        let mut take = |name: &str| hash.remove(name).unwrap_or_default();
        let alive_until_ms = take("alive_until").parse().unwrap_or(0);
        let done = take("done") == "1";
        let reservation = Some(take("reservation")).filter(|r| !r.is_empty());
        Ok(Some(Lease {
            info: LeaseInfo {
                who: take("who"),
                day: take("day"),
                reservation,
            },
            alive_until_ms,
            done,
        }))
    }

    /// Marks the lease on `run_id` as over: its instance saw the run end.
    pub async fn finish(&self, run_id: &str) -> Result<(), StoreError> {
        self.state
            .update_hash(&key(run_id), &[("done", "1".to_owned())])
            .await?;
        Ok(())
    }

    /// Holds a lease on the run `meter` reports, from its creation until its
    /// record is published, at most `bound`: in a task of its own, so the
    /// lease stays while this process still stops a run its visitor left.
    pub fn hold(self: &Arc<Self>, meter: Arc<Meter>, info: LeaseInfo, bound: Duration) {
        let leases = self.clone();
        tokio::spawn(async move {
            let until = tokio::time::Instant::now() + bound;
            let Ok(Some(run_id)) = tokio::time::timeout(bound, meter.created_run()).await else {
                return;
            };
            let mut warned = false;
            loop {
                if let Err(error) = leases.renew(&run_id, &info).await {
                    if !std::mem::replace(&mut warned, true) {
                        tracing::warn!(run = %run_id, %error, "could not lease the run in the shared store; a crash now would leave it to the provider's Cancel-After");
                    }
                }
                tokio::select! {
                    () = meter.ended() => {
                        if let Err(error) = leases.finish(&run_id).await {
                            tracing::debug!(run = %run_id, %error, "could not mark the run's lease as over");
                        }
                        return;
                    }
                    () = tokio::time::sleep(LEASE_RENEW) => {}
                }
                if tokio::time::Instant::now() >= until {
                    return;
                }
            }
        });
    }
}

/// Stops the runs nobody watches; one instance at a time.
pub struct OrphanSweep {
    pub ledger: Arc<dyn SpendLedger>,
    pub history: Arc<dyn RunHistory>,
    pub leases: Arc<RunLeases>,
    pub usd_per_second: f64,
    pub keep_ms: u64,
    /// The longest a generation waits for its run.
    pub run_deadline_ms: u64,
    /// When this process started.
    pub started_ms: u64,
    /// With leases in memory: how long after this start a run created before
    /// it still belongs to a process this one replaces (draining, in a
    /// rolling deploy), and is left alone.
    pub takeover_after_ms: u64,
    /// Whether the leases outlive this process (a shared store), or went with
    /// the last one (memory).
    pub leases_outlive_process: bool,
}

impl OrphanSweep {
    /// Whether `run`, still going at `now_ms`, is watched by nobody.
    fn is_orphan(&self, run: &ListedRun, lease: Option<&Lease>, now_ms: u64) -> bool {
        match lease {
            Some(lease) => lease.alive_until_ms < now_ms,
            None => {
                let older_than_any_wait =
                    run.created_ms + self.run_deadline_ms + UNLEASED_SLACK_MS < now_ms;
                let from_before_memory_was_lost = !self.leases_outlive_process
                    && run.created_ms < self.started_ms
                    && now_ms >= self.started_ms + self.takeover_after_ms;
                older_than_any_wait || from_before_memory_was_lost
            }
        }
    }

    /// One sweep at `now_ms`: the rows of the runs it stopped, or `None` when
    /// another instance holds the sweep.
    pub async fn pass(&self, now_ms: u64) -> Result<Option<Vec<SpendRow>>, String> {
        let store = |e: StoreError| e.to_string();
        // Held a little less than a period, so the holder's next tick finds
        // it free.
        if !self
            .ledger
            .try_lock(LOCK, SWEEP_EVERY.as_millis() as u64 * 9 / 10)
            .await
            .map_err(store)?
        {
            return Ok(None);
        }
        let since = now_ms.saturating_sub(self.run_deadline_ms + 10 * 60_000);
        let runs = self
            .history
            .runs_since(since)
            .await
            .map_err(|e| e.to_string())?;
        let going = runs
            .into_iter()
            .filter(|run| run.version == self.history.version() && run.from_api && !run.terminal);
        let mut orphans = Vec::new();
        for run in going {
            let lease = self.leases.read(&run.id).await.map_err(store)?;
            if self.is_orphan(&run, lease.as_ref(), now_ms) {
                orphans.push((run, lease.map(|lease| lease.info)));
            }
        }
        let stopped = futures_util::future::join_all(
            orphans
                .into_iter()
                .map(|(run, info)| self.stop(run, info, now_ms)),
        )
        .await;
        Ok(Some(stopped.into_iter().flatten().collect()))
    }

    /// Cancels `run` at the provider and writes its row by the provider's record.
    async fn stop(&self, run: ListedRun, info: Option<LeaseInfo>, now_ms: u64) -> Option<SpendRow> {
        tracing::warn!(run = %run.id, "a model run nobody watches (its process is gone) is being cancelled");
        let record = self.history.stop(&run.id).await;
        let info = info.unwrap_or_else(|| LeaseInfo {
            who: "unknown".into(),
            day: utc_day(run.created_ms),
            reservation: None,
        });
        let writer = OrphanRows {
            ledger: self.ledger.clone(),
            usd_per_second: self.usd_per_second,
            keep_ms: self.keep_ms,
        };
        let row = writer
            .write(&run.id, info, record.billed_secs, now_ms)
            .await?;
        tracing::warn!(run = %row.run_id, billed_secs = row.billed_ms as f64 / 1000.0, usd = row.usd(), "an orphaned run was cancelled and written in the ledger");
        Some(row)
    }
}

/// Writes the rows of runs whose instance is gone, by the provider's record.
#[derive(Clone)]
pub struct OrphanRows {
    pub ledger: Arc<dyn SpendLedger>,
    pub usd_per_second: f64,
    pub keep_ms: u64,
}

impl OrphanRows {
    /// Writes run `run_id`'s row (`orphaned`, for `billed_secs`) and frees its
    /// reservation; `None` when it was written before (rows count once).
    pub async fn write(
        &self,
        run_id: &str,
        info: LeaseInfo,
        billed_secs: f64,
        now_ms: u64,
    ) -> Option<SpendRow> {
        let billed_ms = (billed_secs.max(0.0) * 1000.0).round() as u64;
        let row = SpendRow {
            run_id: run_id.to_owned(),
            day: info.day.clone(),
            time_ms: now_ms,
            outcome: "orphaned".into(),
            billed_ms,
            usd_micros: micros(billed_ms, self.usd_per_second),
            who: info.who,
            prompt: None,
            image: None,
        };
        match self
            .ledger
            .record(&row, info.reservation.as_deref(), self.keep_ms)
            .await
        {
            Ok(true) => {
                metrics::gauge!("lofianime_model_billed_seconds_total")
                    .increment(billed_ms as f64 / 1000.0);
                metrics::gauge!("lofianime_spend_usd_total").increment(row.usd());
                Some(row)
            }
            Ok(false) => None,
            Err(error) => {
                tracing::error!(run = %row.run_id, %error, "could not write an orphaned run's row (reconciliation writes it later)");
                None
            }
        }
    }

    /// Run `run_id` is over at the provider, which billed `billed_secs` (its
    /// `completed` webhook said so): if its instance is gone without seeing
    /// it end (its lease lapses unfinished), writes its row. Waits for the
    /// lease to lapse (at most [`LEASE_LAPSE_MS`] and a little).
    pub async fn settle_if_abandoned(
        &self,
        leases: &RunLeases,
        run_id: &str,
        billed_secs: f64,
    ) -> Option<SpendRow> {
        loop {
            let lease = match leases.read(run_id).await {
                Ok(Some(lease)) if !lease.done => lease,
                // Seen to its end by its instance, or never this app's.
                Ok(_) => return None,
                Err(error) => {
                    tracing::debug!(run = %run_id, %error, "could not read a run's lease (reconciliation settles it if need be)");
                    return None;
                }
            };
            let now_ms = leases.clock.now_ms();
            if lease.alive_until_ms < now_ms {
                let row = self.write(run_id, lease.info, billed_secs, now_ms).await?;
                tracing::warn!(run = %row.run_id, billed_secs = row.billed_ms as f64 / 1000.0, usd = row.usd(), "a run whose process died before it ended was written in the ledger from its completed webhook");
                return Some(row);
            }
            let wait = lease.alive_until_ms - now_ms + 500;
            tokio::time::sleep(std::time::Duration::from_millis(
                wait.min(LEASE_LAPSE_MS + 1_000),
            ))
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::generator::{ModelError, RunRecord};
    use crate::store::MemoryStore;
    use async_trait::async_trait;
    use std::sync::Mutex;

    /// A provider's list, and the runs stopped through it.
    struct Listed {
        runs: Vec<ListedRun>,
        stopped: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl RunHistory for Listed {
        async fn runs_since(&self, since_ms: u64) -> Result<Vec<ListedRun>, ModelError> {
            Ok(self
                .runs
                .iter()
                .filter(|run| run.created_ms >= since_ms)
                .cloned()
                .collect())
        }

        fn version(&self) -> &str {
            "v1"
        }

        async fn stop(&self, run_id: &str) -> RunRecord {
            self.stopped.lock().unwrap().push(run_id.to_owned());
            RunRecord {
                run_id: Some(run_id.to_owned()),
                processed: true,
                billed_secs: 4.0,
            }
        }
    }

    fn run(id: &str, created_ms: u64, terminal: bool) -> ListedRun {
        ListedRun {
            id: id.into(),
            version: "v1".into(),
            from_api: true,
            terminal,
            billed_secs: 0.0,
            created_ms,
        }
    }

    const START: u64 = 1_796_580_000_000;

    struct Setup {
        sweep: OrphanSweep,
        history: Arc<Listed>,
        store: Arc<MemoryStore>,
        clock: Arc<ManualClock>,
    }

    fn setup(runs: Vec<ListedRun>, outlive: bool) -> Setup {
        let clock = Arc::new(ManualClock::at(START));
        let store = Arc::new(MemoryStore::new(clock.clone()));
        let history = Arc::new(Listed {
            runs,
            stopped: Mutex::default(),
        });
        Setup {
            sweep: sweep_on(&store, &history, &clock, outlive),
            history,
            store,
            clock,
        }
    }

    fn sweep_on(
        store: &Arc<MemoryStore>,
        history: &Arc<Listed>,
        clock: &Arc<ManualClock>,
        outlive: bool,
    ) -> OrphanSweep {
        OrphanSweep {
            ledger: store.clone(),
            history: history.clone(),
            leases: Arc::new(RunLeases::new(store.clone(), clock.clone())),
            usd_per_second: 0.001,
            keep_ms: 86_400_000,
            run_deadline_ms: 120_000,
            started_ms: START,
            takeover_after_ms: 35_000,
            leases_outlive_process: outlive,
        }
    }

    fn stopped(setup: &Setup) -> Vec<String> {
        setup.history.stopped.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn lapsed_leases_are_stopped_and_live_ones_left_alone() {
        let s = setup(
            vec![
                run("lapsed", START - 20_000, false),
                run("alive", START - 20_000, false),
                run("over", START - 20_000, true),
            ],
            true,
        );
        let info = LeaseInfo {
            who: "v-1".into(),
            day: "2026-12-06".into(),
            reservation: None,
        };
        s.sweep.leases.renew("lapsed", &info).await.unwrap();
        s.sweep.leases.renew("alive", &info).await.unwrap();
        s.clock.advance(LEASE_LAPSE_MS + 1_000);
        // Renewed by its process; the other one's process is gone.
        s.sweep.leases.renew("alive", &info).await.unwrap();
        let rows = s.sweep.pass(s.clock.now_ms()).await.unwrap().unwrap();
        assert_eq!(stopped(&s), ["lapsed"]);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (
                rows[0].outcome.as_str(),
                rows[0].who.as_str(),
                rows[0].day.as_str()
            ),
            ("orphaned", "v-1", "2026-12-06")
        );
        assert_eq!((rows[0].billed_ms, rows[0].usd_micros), (4_000, 4_000));
        assert_eq!(s.store.latest(10).await.unwrap(), rows);
    }

    #[tokio::test]
    async fn without_a_lease_only_what_nobody_can_be_waiting_for_is_stopped() {
        let young = || vec![run("young", START - 2_000, false)];
        // A shared store: a young run without a lease may be a live process's
        // whose lease is being written.
        let s = setup(young(), true);
        assert_eq!(s.sweep.pass(START + 5_000).await.unwrap().unwrap(), []);
        assert!(stopped(&s).is_empty());
        // Past any generation's deadline, nobody waits for it.
        let s = setup(young(), true);
        let rows = s.sweep.pass(START + 160_000).await.unwrap().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].who, "unknown");
        assert_eq!(stopped(&s), ["young"]);
        // Leases in memory went with the last process: a run from before this
        // one started is nobody's, once a process this one replaced would
        // have drained and stopped its own runs.
        let s = setup(young(), false);
        assert_eq!(s.sweep.pass(START + 30_000).await.unwrap().unwrap(), []);
        assert!(stopped(&s).is_empty(), "a predecessor may be draining");
        let s = setup(young(), false);
        assert_eq!(
            s.sweep.pass(START + 35_000).await.unwrap().unwrap().len(),
            1
        );
        assert_eq!(stopped(&s), ["young"]);
        // One created since, without a lease yet, is this process's.
        let s = setup(vec![run("mine", START + 500, false)], false);
        assert_eq!(s.sweep.pass(START + 1_000).await.unwrap().unwrap(), []);
    }

    #[tokio::test]
    async fn one_instance_sweeps_at_a_time() {
        let s = setup(vec![run("before", START - 2_000, false)], false);
        let other = sweep_on(&s.store, &s.history, &s.clock, false);
        let later = START + 40_000;
        assert!(other.pass(later).await.unwrap().is_some());
        assert!(
            s.sweep.pass(later).await.unwrap().is_none(),
            "the lock is taken"
        );
        assert_eq!(stopped(&s), ["before"]);
    }
}
