//! The server functions the page calls. These compile for the browser too (as
//! HTTP calls); on the server each body hands its arguments to the [`Backend`]
//! the router provides, so this shared file depends on no server-only module.

use crate::progress::{JobProgress, MakingView, RunningGeneration};
use crate::wire::{
    ApiError, AppInfo, CreatedImage, ImagePage, JsonAnswer, QuotaReading, RecentImage, Viewer,
};
use leptos::prelude::*;
use leptos::server_fn::codec::GetUrl;

/// What the server functions do on the server, implemented by the server's app
/// state and provided to them as context (`Arc<dyn Backend>`).
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    async fn generate(
        &self,
        prompt: Option<String>,
        job: Option<String>,
        aspect: Option<String>,
        seed: Option<String>,
    ) -> Result<CreatedImage, ApiError>;
    async fn progress(&self, job: String) -> Result<Option<JobProgress>, ApiError>;
    async fn cancel(&self, job: String) -> Result<bool, ApiError>;
    async fn recent_images(&self) -> Result<Vec<RecentImage>, ApiError>;
    async fn quota(&self) -> Result<QuotaReading, ApiError>;
    async fn image_page(&self, id: String) -> Result<Option<ImagePage>, ApiError>;
    async fn delete_image(&self, id: String) -> Result<bool, ApiError>;
    async fn running(&self) -> Result<Vec<RunningGeneration>, ApiError>;
    async fn making(&self, job: String) -> Result<Option<MakingView>, ApiError>;
    fn site_info(&self) -> AppInfo;
    async fn viewer(&self) -> Result<Viewer, ApiError>;
}

/// The backend the router provided.
#[cfg(feature = "ssr")]
fn backend() -> Result<std::sync::Arc<dyn Backend>, ApiError> {
    use_context::<std::sync::Arc<dyn Backend>>().ok_or_else(|| {
        leptos::logging::error!("a server function ran without the backend in context");
        ApiError::Internal
    })
}

/// Generates an image for `prompt` if the visitor has a generation left.
///
/// Served at the stable path `POST /api/generate` with a form-encoded body
/// (`prompt=…&job=…`), so the page's form works without JavaScript too. `prompt`
/// is optional at the protocol level so that a missing field gets the same clear
/// "Please enter a prompt." as an empty one. `job` is the id the page chose for
/// this generation (32 hex digits) so it can follow its progress and cancel it
/// while this request runs; empty or absent without JavaScript. `aspect`
/// (`square`, `portrait`, `landscape`) and `seed` (0 to 4294967295) are
/// optional: a square picture from a new seed unless they say otherwise; a
/// bad value is a 400 naming the field, and nothing is spent. A `job` of the
/// caller's already running (or over) sent without a prompt follows that
/// generation to its answer instead (a reloaded page): nothing new starts.
#[server(prefix = "/api", endpoint = "generate", output = JsonAnswer)]
pub async fn generate(
    prompt: Option<String>,
    job: Option<String>,
    aspect: Option<String>,
    seed: Option<String>,
) -> Result<CreatedImage, ApiError> {
    backend()?.generate(prompt, job, aspect, seed).await
}

/// Where the calling visitor's generation `job` is; `None` when there is no such
/// generation of theirs (not started yet, expired, or someone else's).
#[server(prefix = "/api", endpoint = "progress", input = GetUrl, output = JsonAnswer)]
pub async fn progress(job: String) -> Result<Option<JobProgress>, ApiError> {
    backend()?.progress(job).await
}

/// Asks the server to stop the calling visitor's generation `job` (whichever
/// instance runs it): the model run is cancelled and the credit given back.
/// True when it was running and will stop.
#[server(prefix = "/api", endpoint = "cancel", output = JsonAnswer)]
pub async fn cancel(job: String) -> Result<bool, ApiError> {
    backend()?.cancel(job).await
}

/// The calling visitor's last generations, newest first.
#[server(prefix = "/api", endpoint = "recent", input = GetUrl, output = JsonAnswer)]
pub async fn recent_images() -> Result<Vec<RecentImage>, ApiError> {
    backend()?.recent_images().await
}

/// The calling visitor's quota, read without consuming anything.
#[server(prefix = "/api", endpoint = "quota", input = GetUrl, output = JsonAnswer)]
pub async fn current_quota() -> Result<QuotaReading, ApiError> {
    backend()?.quota().await
}

/// The server's public configuration, for the page.
#[server(prefix = "/api", endpoint = "site_info", input = GetUrl, output = JsonAnswer)]
pub async fn site_info() -> Result<AppInfo, ApiError> {
    Ok(backend()?.site_info())
}

/// Whether the caller is signed in, and what that allows (read by the server
/// while it renders the page).
#[server(prefix = "/api", endpoint = "viewer", input = GetUrl, output = JsonAnswer)]
pub async fn who_is_visiting() -> Result<Viewer, ApiError> {
    backend()?.viewer().await
}

/// What the page of image `id` shows (its prompt, size and absolute links);
/// `None` when there is no such image. Public: nothing in it is about whoever
/// made the image.
#[server(prefix = "/api", endpoint = "image", input = GetUrl, output = JsonAnswer)]
pub async fn image_details(id: String) -> Result<Option<ImagePage>, ApiError> {
    backend()?.image_page(id).await
}

/// Deletes image `id` for the visitor who made it (the same address, or the
/// same account when signed in): its files and record leave the storage and
/// the recent lists, on every instance, and its link answers 404 "This image
/// was deleted.". Another visitor's request is a 403 that changes nothing.
/// Served at `POST /api/delete-image` (form field `id`), so it works as a
/// plain form without JavaScript too (which then lands on the home page).
#[server(prefix = "/api", endpoint = "delete-image", output = JsonAnswer)]
pub async fn delete_image(id: String) -> Result<bool, ApiError> {
    backend()?.delete_image(id).await
}

/// The calling visitor's generations still running (same address, or same
/// account when signed in), newest first: `GET /api/running`, a JSON list of
/// `{"job", "prompt", "phase", "started_ms"}` (and `percent` when the model
/// says). A page that lists one follows it by sending its `job` to
/// `POST /api/generate` again. Listing them counts as watching them: a
/// generation whose page went away goes on while someone comes back to it.
#[server(prefix = "/api", endpoint = "running", input = GetUrl, output = JsonAnswer)]
pub async fn running_generations() -> Result<Vec<RunningGeneration>, ApiError> {
    backend()?.running().await
}

/// What the waiting page of generation `job` shows (`None`: no such
/// generation of the caller's); reading it counts as watching it.
#[server(prefix = "/api", endpoint = "making", input = GetUrl, output = JsonAnswer)]
pub async fn making(job: String) -> Result<Option<MakingView>, ApiError> {
    backend()?.making(job).await
}
