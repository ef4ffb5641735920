//! What the front door answers: a finished generation, and why a use case did
//! not deliver (with whether a credit was spent); and the owner's choice for a
//! limiter store that does not answer.

use crate::gallery::GalleryError;
use crate::generator::ModelError;
use crate::ratelimit::Decision;
use crate::storage::{ImageKey, ImageRecord, StorageError};
use crate::store::StoreError;
use lofianime_wire::prompt::{Prompt, PromptError};

/// What to do when the limiter's store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Refuse to generate (the default: nothing is spent that was not counted).
    #[default]
    Deny,
    /// Generate without counting (the owner prefers availability to cost control).
    Allow,
}

/// A finished generation.
#[derive(Debug, Clone)]
pub struct Generated {
    pub prompt: Prompt,
    pub image: ImageKey,
    /// What its page shows (prompt, size).
    pub record: ImageRecord,
    /// The limiter's answer when the credit was spent; `None` when the store was
    /// down and the failure policy let the generation through uncounted.
    pub decision: Option<Decision>,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    /// The visitor's own quota.
    Visitor,
    /// The budget shared by all visitors.
    Everyone,
    /// The daily dollar budget (the decision's numbers are in cents).
    Dollars,
}

/// Why a use case of the studio did not deliver. The generation variants say
/// whether a credit was spent (and carry the payer's quota after any refund).
#[derive(Debug, thiserror::Error)]
pub enum StudioError {
    #[error("invalid prompt: {0}")]
    InvalidPrompt(#[from] PromptError),
    #[error("rate limit reached")]
    Denied {
        /// The refusing limiter's answer.
        decision: Decision,
        scope: LimitScope,
    },
    #[error("rate limiter unavailable: {0}")]
    LimiterUnavailable(#[source] StoreError),
    #[error("the model failed: {source}")]
    Model {
        #[source]
        source: ModelError,
        /// The payer's quota after the refund.
        decision: Option<Decision>,
    },
    #[error("storing the image failed: {source}")]
    Storage {
        #[source]
        source: StorageError,
        decision: Option<Decision>,
    },
    /// The visitor cancelled it; `counted` when its credit stayed spent (the
    /// model had started processing, or the refund allowance was used up).
    #[error("cancelled by the visitor")]
    Canceled {
        decision: Option<Decision>,
        counted: bool,
        model_started: bool,
    },
    /// The page sent a generation id that is already in use.
    #[error("the generation id is already in use")]
    JobIdTaken,
    /// The record of generations in flight could not be read or written.
    #[error("the generation records are unavailable: {0}")]
    JobBoard(#[source] StoreError),
    /// The visitor's recent images could not be read.
    #[error("the recent images are unavailable: {0}")]
    Gallery(#[source] GalleryError),
    /// A stored image could not be read.
    #[error("reading a stored image failed: {0}")]
    ImageStore(#[source] StorageError),
    /// The server is shutting down: a new generation is refused before it
    /// takes anything; a running one past the grace period is stopped, its model
    /// run cancelled and the visitor's credit given back.
    #[error("the server is shutting down")]
    ShuttingDown { decision: Option<Decision> },
    /// The image store does not take writes: refused before anything was
    /// taken or run.
    #[error("the image store does not take writes: {0}")]
    ImagesUnwritable(String),
    /// The spend ledger could not be read.
    #[error("the spend ledger is unavailable: {0}")]
    Ledger(#[source] StoreError),
    /// Signed-out visitors may not generate: nothing was taken.
    #[error("the visitor must sign in to generate")]
    SignInRequired,
    /// The owner paused generation: nothing was taken.
    #[error("generation is paused by the owner")]
    Paused,
    /// The visitor is on the owner's deny list: nothing was taken.
    #[error("the visitor is blocked")]
    Blocked,
    /// The owner removed this image.
    #[error("the image was removed by the owner")]
    ImageRemoved,
    /// The visitor who made this image deleted it.
    #[error("the image was deleted by its maker")]
    ImageDeleted,
    /// There is no such image.
    #[error("no such image")]
    NoSuchImage,
    /// Only the visitor who made an image may delete it.
    #[error("the image is another visitor's")]
    NotYourImage,
}

impl StudioError {
    /// What refused a generation before anything was spent, as the day's
    /// totals count it (`None`: not a refusal by a limit or a control).
    pub fn refused_by(&self) -> Option<&'static str> {
        match self {
            Self::Denied { scope, .. } => Some(match scope {
                LimitScope::Visitor => "limit",
                LimitScope::Everyone => "budget",
                LimitScope::Dollars => "daily_usd",
            }),
            Self::Paused => Some("paused"),
            Self::Blocked => Some("blocked"),
            Self::SignInRequired => Some("sign_in_required"),
            _ => None,
        }
    }

    /// The payer's quota to report with this failure, when the limiter answered.
    pub fn decision(&self) -> Option<Decision> {
        match self {
            Self::Denied { decision, .. } => Some(*decision),
            Self::Model { decision, .. }
            | Self::Storage { decision, .. }
            | Self::Canceled { decision, .. }
            | Self::ShuttingDown { decision } => *decision,
            _ => None,
        }
    }
}
