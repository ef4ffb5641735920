//! What a studio is built from: the components a composer plugs in (stores,
//! generator, image storage, clock), the owner's policy, and the parts the
//! studio makes of them.

use super::answers::FailurePolicy;
use super::generation::Shutdown;
use crate::clock::Clock;
use crate::gallery::{FileGallery, Gallery, SharedGallery};
use crate::generator::ImageGenerator;
use crate::jobs::JobBoard;
use crate::ratelimit::{Algorithm, LimiterStore, RateLimiter};
use crate::shared::SharedState;
use crate::storage::{ImageStore, ObjectImageStore};
use crate::store::MemoryStore;
use crate::visitor::WhoPays;
use std::sync::Arc;
use std::time::Duration;

/// A Redis-compatible store: the limiter's counters and the shared state.
pub trait RemoteStore: LimiterStore + SharedState {}
impl<T: LimiterStore + SharedState> RemoteStore for T {}

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
            shared: memory,
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
        self.limiter_store = store;
        self
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
    /// How many failures per window give the payer's credit back (`None`: every one).
    pub max_refunds_per_window: Option<u64>,
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
}
