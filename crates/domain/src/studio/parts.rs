//! What a studio is built from: the components a composer plugs in (stores,
//! generator, image storage, clock), the owner's policy, and the parts the
//! studio makes of them.

use super::answers::FailurePolicy;
use super::generation::Shutdown;
use crate::clock::Clock;
use crate::controls::{ControlStore, DenyList, PauseSwitch, RemovedImages};
use crate::gallery::{FileGallery, Gallery, SharedGallery};
use crate::generator::ImageGenerator;
use crate::jobs::JobBoard;
use crate::ratelimit::{Algorithm, LimiterStore, RateLimiter};
use crate::shared::SharedState;
use crate::spend::{RunHistory, RunLeases, SpendLedger};
use crate::storage::{ImageStore, ObjectImageStore, Writability};
use crate::store::MemoryStore;
use crate::visitor::WhoPays;
use std::sync::Arc;
use std::time::Duration;

/// A Redis-compatible store: the limiter's counters, the shared state, the
/// ledger and the owner's controls.
pub trait RemoteStore: LimiterStore + SharedState + SpendLedger + ControlStore {}
impl<T: LimiterStore + SharedState + SpendLedger + ControlStore> RemoteStore for T {}

/// The pieces a studio is built from; tests substitute any of them.
pub struct Components {
    pub limiter_store: Arc<dyn LimiterStore>,
    /// Generations in flight, seen by every instance.
    pub shared: Arc<dyn SharedState>,
    /// Each visitor's recent images.
    pub gallery: Arc<dyn Gallery>,
    pub generator: Arc<dyn ImageGenerator>,
    pub images: Arc<dyn ImageStore>,
    pub clock: Arc<dyn Clock>,
    /// What the model runs cost: one row per run, daily totals, reservations.
    pub ledger: Arc<dyn SpendLedger>,
    /// The owner's live controls (a dynamic limit, a deny list, a pause).
    pub controls: Arc<dyn ControlStore>,
    /// The provider's list of runs, for reconciliation (`None`: nothing to
    /// reconcile with, as with the offline painter).
    pub history: Option<Arc<dyn RunHistory>>,
}

impl Components {
    /// One instance's components: counters and in-flight generations in memory,
    /// recent images beside the images.
    pub fn local(
        generator: Arc<dyn ImageGenerator>,
        images: ObjectImageStore,
        clock: Arc<dyn Clock>,
        recent_keep: usize,
    ) -> Self {
        let memory = Arc::new(MemoryStore::new(clock.clone()));
        Self {
            limiter_store: memory.clone(),
            shared: memory.clone(),
            controls: memory.clone(),
            ledger: memory,
            history: None,
            gallery: Arc::new(FileGallery::beside(&images, recent_keep)),
            generator,
            images: Arc::new(images),
            clock,
        }
    }

    /// Counts in `store` (only the limiter's counters; tests use it to put the
    /// limiter alone on a store that can fail).
    pub fn with_limiter_store(mut self, store: Arc<dyn LimiterStore>) -> Self {
        self.limiter_store = store;
        self
    }

    /// Keeps the limiter's counters, in-flight generations and recent images in
    /// `store`, shared with every other instance that uses it.
    pub fn on_remote_store(mut self, store: Arc<dyn RemoteStore>, recent_keep: usize) -> Self {
        self.shared = store.clone();
        self.gallery = Arc::new(SharedGallery::new(store.clone(), recent_keep));
        self.ledger = store.clone();
        self.controls = store.clone();
        self.limiter_store = store;
        self
    }

    /// Reconciles the ledger with `history` (the provider's list of runs).
    pub fn with_history(mut self, history: Arc<dyn RunHistory>) -> Self {
        self.history = Some(history);
        self
    }
}

/// What runs cost and the owner's ceiling in dollars.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendPolicy {
    /// The price of a second of the model's hardware (Replicate's L40S by
    /// default: an estimate until the owner checks the model's page).
    pub usd_per_second: f64,
    /// Dollars all runs of a UTC day may cost (`None`: no dollar budget).
    pub daily_usd: Option<f64>,
    /// A run's expected seconds until the ledger has seen 20 billed runs.
    pub expected_seconds: f64,
    /// How long rows and daily totals are kept.
    pub keep_days: u32,
    /// How often one instance reconciles the ledger with the provider's list.
    pub reconcile_every: Duration,
    /// The longest a run may take (a reservation lapses after it, and
    /// reconciliation looks back this far past its last pass).
    pub run_deadline: Duration,
    /// How long a process this one replaces may still be finishing its runs
    /// (its shutdown's grace period): with leases in memory, runs created
    /// before this start are left alone that long before they count as
    /// orphaned.
    pub takeover_after: Duration,
}

impl Default for SpendPolicy {
    fn default() -> Self {
        Self {
            usd_per_second: 0.000975,
            daily_usd: None,
            expected_seconds: 10.0,
            keep_days: 400,
            reconcile_every: Duration::from_secs(600),
            run_deadline: Duration::from_secs(120),
            takeover_after: Duration::from_secs(35),
        }
    }
}

impl SpendPolicy {
    pub fn keep_ms(&self) -> u64 {
        u64::from(self.keep_days) * 86_400_000
    }

    /// The daily budget in micro-dollars.
    pub fn budget_micros(&self) -> Option<u64> {
        self.daily_usd.map(|usd| (usd * 1e6).round() as u64)
    }
}

/// The studio's policies and numbers (the server reads them from its settings).
#[derive(Debug, Clone)]
pub struct Policy {
    /// Each visitor's quota.
    pub algorithm: Algorithm,
    /// Key prefix of the limiter (shared with `@upstash/ratelimit`).
    pub prefix: String,
    /// Answer refused visitors from memory until their reset.
    pub ephemeral_cache: bool,
    /// The budget shared by all visitors (`None`: no budget).
    pub budget: Option<Algorithm>,
    pub who_pays: WhoPays,
    /// What signed-out visitors may do when sign-in is on.
    pub signed_out: SignedOut,
    pub on_store_failure: FailurePolicy,
    pub max_prompt_chars: usize,
    /// How long a generation's record lives (longer than any generation runs).
    pub job_ttl_ms: u64,
    /// How often a running generation looks for a cancel request.
    pub cancel_check: Duration,
    /// How long a page's generation goes on once nobody watches it (the page
    /// was closed or reloaded): the time the visitor has to come back to it.
    pub return_grace: Duration,
    /// How many failures per window give the payer's credit back (`None`: every one).
    pub max_refunds_per_window: Option<u64>,
    /// What runs cost and the daily dollar budget.
    pub spend: SpendPolicy,
}

/// What signed-out visitors may do when sign-in is on.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum SignedOut {
    /// The same quota as everyone (no sign-in, or sign-in changes nothing).
    #[default]
    SameQuota,
    /// A quota of their own, by address (`auth.mode = "optional"`).
    OwnQuota(Algorithm),
    /// Nothing: they must sign in to generate.
    MustSignIn,
}

/// Key prefix of the refund allowance's counters.
pub const REFUNDS_PREFIX: &str = "lofianime:refunds";

/// What a studio is made of, private to it; each generation borrows what it
/// needs ([`Parts::run`](super::generation)).
pub(super) struct Parts {
    pub(super) limiter: Arc<RateLimiter>,
    /// The budget shared by all visitors, if the owner set one.
    pub(super) budget: Option<Arc<RateLimiter>>,
    pub(super) generator: Arc<dyn ImageGenerator>,
    pub(super) images: Arc<dyn ImageStore>,
    pub(super) max_prompt_chars: usize,
    pub(super) on_store_failure: FailurePolicy,
    /// Generations in flight: their phases and cancel requests.
    pub(super) jobs: Arc<JobBoard>,
    /// Each visitor's recent images.
    pub(super) gallery: Arc<dyn Gallery>,
    /// How often a running generation checks whether it was cancelled.
    pub(super) cancel_check: Duration,
    /// How many failures per window give the payer's credit back (`None`: all).
    pub(super) refund_allowance: Option<Arc<RateLimiter>>,
    /// The server's shutdown: draining refuses new generations, stopping ends
    /// the running ones.
    pub(super) shutdown: Shutdown,
    pub(super) ledger: Arc<dyn SpendLedger>,
    pub(super) spend: SpendPolicy,
    pub(super) clock: Arc<dyn Clock>,
    /// Whether images can be saved (probed, cached a few seconds).
    pub(super) writable: Arc<Writability>,
    /// What every instance sees (marks; the job board keeps its own handle).
    pub(super) shared: Arc<dyn SharedState>,
    /// The leases on model runs in flight (a crashed process's runs are
    /// found by their lapsed leases).
    pub(super) leases: Arc<RunLeases>,
    /// The owner's deny list and pause switch.
    pub(super) deny: Arc<DenyList>,
    pub(super) pause: Arc<PauseSwitch>,
    /// Images the owner removed.
    pub(super) removed: Arc<RemovedImages>,
    /// Images their makers deleted (gone on every instance).
    pub(super) deleted: Arc<RemovedImages>,
    /// The owner's live daily dollar budget, in micro-dollars.
    pub(super) daily_usd: Arc<crate::controls::LiveValue<u64>>,
}
