//! The product's core, free of any web framework (no Leptos, `server_fn`, Axum
//! or tower-http in this crate's dependency tree). The web side talks to one
//! front door, [`Studio`], whose use cases (generate, quota, progress, cancel,
//! recent images, image) run on the parts below: the rate limiter that guards the
//! owner's bill, the image generators, image storage, generations in flight and
//! recent images, over a neutral store layer (memory, Redis, Upstash).
//!
//! What a composer needs is re-exported here: the studio and the values it takes
//! and returns, the ports it plugs in (stores, generators, image storage, clock)
//! and the adapters that implement them. Everything else stays private.

mod charge;
mod clock;
mod controls;
mod cpu;
mod gallery;
mod generator;
mod jobs;
mod on_drop;
mod ratelimit;
mod shared;
mod spend;
mod storage;
mod store;
mod studio;
mod variants;
mod visitor;

// The front door and its vocabulary.
pub use gallery::RecentEntry;
pub use jobs::{CancelOutcome, JobSnapshot, Presence, RunningJob};
pub use ratelimit::{Decision, Reason};
pub use spend::{
    micros, next_midnight_ms, parse_rfc3339, rfc3339, utc_day, DayTotals, ListedRun, OutcomeTotals,
    RunHistory, SpendLedger, SpendRow,
};
pub use storage::{ImageKey, ImageRecord, ImageStream, Variants};
pub use studio::{
    Components, FailurePolicy, Generated, LimitScope, Limits, Live, LiveLimit, Policy, Readiness,
    RemoteStore, Shutdown, SignedOut, SpendPolicy, Studio, StudioError,
};
pub use visitor::{tag, Visitor, WhoPays};

// Ports a composer plugs in, and their adapters.
pub use clock::{Clock, ManualClock, SystemClock};
pub use controls::{Block, ControlStore};
pub use generator::render_offline;
pub use generator::{
    CallLimits, CogGenerator, CogServer, CogSettings, CogWebhook, CogWebhooks, GeneratedImage,
    ImageFormat, ImageGenerator, Look, ModelError, OfflineGenerator, ProgressReporter,
    ReplicateGenerator, ReplicateSettings, ReplicateWebhooks, WebhookOutcome, WebhookRefusal,
    WebhookSettings,
};
pub use lofianime_wire::Variant;
pub use ratelimit::{
    parse_window, Algorithm, LimiterStore, RateLimiter, WindowError, DEFAULT_PREFIX,
};
pub use storage::{ObjectImageStore, StorageError};
pub use store::{MemoryStore, RedisStore, Reply, StoreError, UpstashRestStore, UpstashSettings};

/// The image work behind the variants, for measurements (`benches/images.rs`).
pub mod image_work {
    pub use crate::variants::{
        decode, encode, encode_with, encoding, first_variants, make, resize, shrink, Encoding,
        FirstVariants,
    };
}

/// How many recent images each visitor keeps unless the settings say otherwise.
pub use gallery::DEFAULT_KEEP as DEFAULT_RECENT_KEEP;

/// Process-wide start-up and shutdown hooks: the CPU pool for image work, and
/// the background clean-ups a shutdown waits for.
pub mod runtime {
    pub use crate::cpu::{configure as configure_cpu_pool, default_workers};
    pub use crate::on_drop::cleanups_done;
}

/// Test doubles for the app's own tests and benchmarks: a scripted model.
pub mod testing {
    /// What every store of the owner's controls must do.
    #[cfg(feature = "testing")]
    pub use crate::controls::contract as control_store_contract;
    pub use crate::generator::fake::{FakeModel, FAKE_PERCENT};
    /// What every store of the state instances share must do.
    #[cfg(feature = "testing")]
    pub use crate::shared::contract as shared_state_contract;
    /// What every spend ledger must do, to run against real stores.
    #[cfg(feature = "testing")]
    pub use crate::spend::contract as spend_ledger_contract;
}
