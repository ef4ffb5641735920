//! The server functions the page calls, and the types they exchange. These compile
//! for the browser too (as HTTP calls); their bodies run only on the server and
//! delegate to `server::handlers`.

use crate::progress::JobProgress;
use crate::prompt::PromptError;
use leptos::prelude::*;
use leptos::server_fn::codec::{GetUrl, JsonEncoding};
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// The sentence a visitor sees when their generations are used up.
pub const NO_GENERATIONS_REMAINING: &str = "No generations remaining.";
/// The sentence for every failure whose detail belongs in the server log only.
pub const GENERIC_FAILURE: &str = "An error occurred. Please try again later.";

/// A visitor's generations: how many the policy allows, how many are left, and
/// when more become available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub limit: u64,
    pub remaining: u64,
    /// When the visitor gets more (window end or next refill), epoch milliseconds.
    pub reset_ms: u64,
}

/// A finished generation as the page sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedImage {
    /// The app's own URL for the image (`/images/….png`).
    pub url: String,
    /// The prompt as validated (trimmed); also the image's alt text.
    pub prompt: String,
    /// The visitor's quota after this generation; `None` when the limiter's store
    /// was down and the owner chose to generate uncounted.
    pub quota: Option<Quota>,
}

/// Why a generation failed, as the visitor may know it. `Display` is the sentence
/// shown on the page; `status` is the HTTP status the server answers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum GenerateError {
    #[error("{0}")]
    InvalidPrompt(PromptError),
    #[error("No generations remaining.")]
    RateLimited(Quota),
    #[error("No generations remaining: the budget shared by all visitors is used up for now.")]
    BudgetSpent(Quota),
    #[error("Rate limiter unavailable, please try again shortly.")]
    LimiterUnavailable,
    #[error("The model flagged this image as unsafe. Try a different prompt.")]
    Unsafe,
    #[error(
        "The model took too long to answer. Your generation was not counted; please try again."
    )]
    ModelTimedOut,
    #[error("The model is busy right now; try again in {retry_after_secs} s.")]
    ModelBusy { retry_after_secs: u64 },
    #[error("Generation cancelled. It was not counted.")]
    Canceled,
    #[error("The request could not be read: {0}")]
    MalformedRequest(String),
    #[error("Could not reach the server. Check your connection and try again.")]
    Network,
    #[error("An error occurred. Please try again later.")]
    Internal,
}

impl GenerateError {
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidPrompt(_) | Self::MalformedRequest(_) => 400,
            Self::RateLimited(_) | Self::BudgetSpent(_) => 429,
            Self::LimiterUnavailable | Self::ModelBusy { .. } => 503,
            Self::Unsafe => 422,
            // The request lost to the visitor's own cancel request.
            Self::Canceled => 409,
            Self::ModelTimedOut => 504,
            Self::Network | Self::Internal => 500,
        }
    }
}

impl FromServerFnError for GenerateError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Args(detail) | ServerFnErrorErr::MissingArg(detail) => {
                Self::MalformedRequest(detail)
            }
            ServerFnErrorErr::Request(_) => Self::Network,
            _ => Self::Internal,
        }
    }
}

/// Generates an image for `prompt` if the visitor has a generation left.
///
/// Served at the stable path `POST /api/generate` with a form-encoded body
/// (`prompt=…&job=…`), so the page's form works without JavaScript too. `prompt`
/// is optional at the protocol level so that a missing field gets the same clear
/// "Please enter a prompt." as an empty one. `job` is the id the page chose for
/// this generation (32 hex digits) so it can follow its progress and cancel it
/// while this request runs; empty or absent without JavaScript.
#[server(prefix = "/api", endpoint = "generate")]
pub async fn generate(
    prompt: Option<String>,
    job: Option<String>,
) -> Result<CreatedImage, GenerateError> {
    crate::server::handlers::generate(prompt.unwrap_or_default(), job).await
}

/// Where the calling visitor's generation `job` is; `None` when there is no such
/// generation of theirs (not started yet, expired, or someone else's).
#[server(prefix = "/api", endpoint = "progress", input = GetUrl)]
pub async fn progress(job: String) -> Result<Option<JobProgress>, GenerateError> {
    crate::server::handlers::progress(&job).await
}

/// Asks the server to stop the calling visitor's generation `job` (whichever
/// instance runs it): the model run is cancelled and the credit given back.
/// True when it was running and will stop.
#[server(prefix = "/api", endpoint = "cancel")]
pub async fn cancel(job: String) -> Result<bool, GenerateError> {
    crate::server::handlers::cancel(&job).await
}

/// One of the visitor's recent images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentImage {
    /// The app's own URL for the image.
    pub url: String,
    pub prompt: String,
    /// When it was made, epoch milliseconds.
    pub created_ms: u64,
}

/// The calling visitor's last generations, newest first.
#[server(prefix = "/api", endpoint = "recent", input = GetUrl)]
pub async fn recent_images() -> Result<Vec<RecentImage>, GenerateError> {
    crate::server::handlers::recent_images().await
}

/// A visitor's quota as read by the server, with the server's clock at that
/// moment (so the page's first countdown renders the same on server and client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaReading {
    /// `None` when the limiter's store could not be read.
    pub quota: Option<Quota>,
    pub now_ms: u64,
}

/// The calling visitor's quota, read without consuming anything.
#[server(prefix = "/api", endpoint = "quota", input = GetUrl)]
pub async fn current_quota() -> Result<QuotaReading, ServerFnError> {
    crate::server::handlers::current_quota().await
}

/// What the page needs to know about the server's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    /// True when images come from the offline generator, not a hosted model.
    pub offline_generator: bool,
    pub max_prompt_chars: usize,
    pub limit: u64,
    /// The window as written in the settings, e.g. "1440 m".
    pub window: String,
    /// The same window in milliseconds.
    pub window_ms: u64,
}

/// The app's URL for a stored image named in a page URL (`?image=…`), if the name
/// has the shape the server gives images. The server checks it again when serving.
pub fn image_url_from_key(key: &str) -> Option<String> {
    let (id, extension) = key.split_once('.')?;
    let id_ok = id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let extension_ok = matches!(extension, "png" | "jpg" | "webp");
    (id_ok && extension_ok).then(|| format!("/images/{key}"))
}

/// The server's public configuration, for the page.
#[server(prefix = "/api", endpoint = "site_info", input = GetUrl)]
pub async fn site_info() -> Result<AppInfo, ServerFnError> {
    crate::server::handlers::app_info()
}
