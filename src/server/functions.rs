//! The server functions' bodies: [`Backend`] for the app state. Each one gets the
//! caller, calls one use case of the studio, and maps a failure in one place
//! ([`errors::answer`]). Statuses come from the error itself (the router's
//! `server_fn_status` layer), not from each body.

use crate::api::Backend;
use crate::progress::{JobId, JobProgress, JobState, MakingView, Phase, RunningGeneration};
use crate::server::auth::Caller;
use crate::server::errors::{self, quota};
use crate::server::generations::{run_generation, shown_image};
use crate::server::returning;
use crate::server::state::AppState;
use crate::shape::{Aspect, Choices};
use crate::wire::{
    image_page_path, making_path, ApiError, AppInfo, CreatedImage, ImageId, ImagePage,
    QuotaReading, RecentImage, SignedInAs, Variant, Viewer,
};
use axum::http::{header, HeaderValue};
use leptos::prelude::*;
use leptos::server_fn::error::ServerFnUrlError;
use leptos::server_fn::ServerFn;
use leptos_axum::ResponseOptions;
use lofianime_domain::CancelOutcome;
use lofianime_domain::Visitor;
use std::time::Duration;

/// Who is calling the current server function (an account, or an address).
async fn calling() -> Result<Caller, ApiError> {
    leptos_axum::extract::<Caller>().await.map_err(|error| {
        tracing::error!(%error, "a server function ran without its caller");
        ApiError::Internal
    })
}

/// The visitor calling the current server function.
async fn caller() -> Result<Visitor, ApiError> {
    calling().await.map(|caller| caller.visitor)
}

/// Reads a generation id sent by the page.
fn parse_job(text: &str) -> Result<JobId, ApiError> {
    JobId::parse(text.trim()).map_err(|_| ApiError::BadJobId)
}

#[async_trait::async_trait]
impl Backend for AppState {
    async fn generate(
        &self,
        prompt: Option<String>,
        job: Option<String>,
        aspect: Option<String>,
        seed: Option<String>,
    ) -> Result<CreatedImage, ApiError> {
        let raw_prompt = prompt.unwrap_or_default();
        // An empty id is a page without JavaScript: nobody follows the progress.
        let job = match job.as_deref().map(str::trim).filter(|id| !id.is_empty()) {
            None => Ok(None),
            Some(id) => parse_job(id).map(Some),
        };
        let choices = Choices::parse(aspect.as_deref(), seed.as_deref()).map_err(ApiError::from);
        let without_script = plain_form_post();
        let mut waiting_page = None;
        let (outcome, headers) = match (job, choices, caller().await) {
            // A known id of this visitor's without a prompt: a page that came
            // back (a reload, another device) follows that generation; nothing
            // new starts. (Anything else without a prompt is refused below.)
            (Ok(Some(job)), _, Ok(visitor))
                if raw_prompt.trim().is_empty()
                    && matches!(
                        returning::look(self, &visitor, &job, Duration::ZERO).await,
                        Ok(Some(_))
                    ) =>
            {
                (returning::follow(self, &visitor, &job).await, Vec::new())
            }
            (Ok(Some(job)), Ok(choices), Ok(visitor)) => {
                returning::Started::spawn(self, visitor, raw_prompt.clone(), job, choices)
                    .answer()
                    .await
            }
            // A browser without JavaScript: the server names the generation,
            // waits a moment, then sends the browser to its waiting page.
            (Ok(None), Ok(choices), Ok(visitor)) if without_script => {
                let job = JobId::from_bytes(rand::random());
                let started = returning::Started::spawn(
                    self,
                    visitor,
                    raw_prompt.clone(),
                    job.clone(),
                    choices,
                );
                match started.answer_within(returning::NO_SCRIPT_HOLD).await {
                    Some(answer) => answer,
                    None => {
                        waiting_page = Some(job);
                        (Err(ApiError::Internal), Vec::new())
                    }
                }
            }
            (Ok(job), Ok(choices), Ok(visitor)) => {
                run_generation(self, &visitor, &raw_prompt, job.as_ref(), choices).await
            }
            (Err(error), _, _) | (_, Err(error), _) | (_, _, Err(error)) => {
                (Err(error), Vec::new())
            }
        };
        let mut outcome = outcome;
        if let Ok(created) = &mut outcome {
            // The page's list, new image included (empty if it cannot be read).
            created.recent = self.recent_images().await.unwrap_or_default();
        }
        if let Some(response) = use_context::<ResponseOptions>() {
            for (name, value) in headers {
                response.insert_header(name, value);
            }
            if let Some(job) = waiting_page {
                response.insert_header(
                    header::LOCATION,
                    HeaderValue::from_str(&making_path(job.as_str()))
                        .unwrap_or_else(|_| HeaderValue::from_static("/")),
                );
            } else if without_script {
                // Without JavaScript the browser follows a redirect back to the
                // page; the query carries the result (or the error and the typed
                // prompt) so the page can show it.
                response.insert_header(
                    header::LOCATION,
                    no_script_location(&outcome, &raw_prompt, aspect.as_deref()),
                );
            }
        }
        outcome
    }

    async fn progress(&self, job: String) -> Result<Option<JobProgress>, ApiError> {
        let job = parse_job(&job)?;
        let visitor = caller().await?;
        self.studio
            .progress(&visitor, &job)
            .await
            .map_err(|f| errors::answer(&f))
    }

    async fn cancel(&self, job: String) -> Result<bool, ApiError> {
        let job = parse_job(&job)?;
        let visitor = caller().await?;
        // Without JavaScript (the waiting page's Cancel): back to that page.
        if plain_form_post() {
            if let (Some(response), Ok(location)) = (
                use_context::<ResponseOptions>(),
                HeaderValue::from_str(&making_path(job.as_str())),
            ) {
                response.insert_header(header::LOCATION, location);
            }
        }
        match self.studio.cancel(&visitor, &job).await {
            Ok(outcome) => Ok(outcome == CancelOutcome::Requested),
            Err(failure) => Err(errors::answer(&failure)),
        }
    }

    async fn recent_images(&self) -> Result<Vec<RecentImage>, ApiError> {
        let visitor = caller().await?;
        let recent = self
            .studio
            .recent(&visitor)
            .await
            .map_err(|f| errors::answer(&f))?;
        Ok(recent
            .into_iter()
            .map(|entry| RecentImage {
                id: entry.image.id().to_string(),
                thumb_url: self.image_url(&entry.image.variant(Variant::Thumb)),
                prompt: entry.prompt,
                created_ms: entry.created_ms,
                width: entry.width,
                height: entry.height,
            })
            .collect())
    }

    async fn quota(&self) -> Result<QuotaReading, ApiError> {
        let visitor = caller().await?;
        // The page shows no quota (and still works) while the store is down.
        let quota = match self.studio.quota(&visitor).await {
            Ok(decision) => Some(quota(&decision)),
            Err(failure) => {
                errors::log(&failure);
                None
            }
        };
        Ok(QuotaReading {
            quota,
            now_ms: self.studio.now_ms(),
        })
    }

    async fn viewer(&self) -> Result<Viewer, ApiError> {
        let caller = calling().await?;
        let on = self.auth.is_on();
        Ok(Viewer {
            sign_in_with: on.then(|| self.auth.provider_name.clone()),
            may_generate: self.studio.may_generate(&caller.visitor),
            signed_out_limit: self.studio.signed_out_limit(),
            paused: self.studio.is_paused().await,
            account: caller.account.map(|account| SignedInAs {
                email: account.email,
                name: account.name,
            }),
        })
    }

    async fn image_page(&self, id: String) -> Result<Option<ImagePage>, ApiError> {
        // Anything but an image id names no image (and never reaches the store).
        let Some(id) = ImageId::parse(&id) else {
            return Ok(None);
        };
        let record = match self.studio.image_record(&id).await {
            Ok(found) => found,
            Err(failure) => return Err(errors::answer(&failure)),
        };
        let Some((key, record)) = record.and_then(|record| Some((record.key()?, record))) else {
            return Ok(None);
        };
        let origin = self.public_origin.clone().unwrap_or_else(request_origin);
        // Chat apps skip previews over ~5 MB: those get the display variant.
        let preview = if record.bytes > MAX_PREVIEW_BYTES {
            self.image_url(&key.variant(Variant::Display))
        } else {
            self.image_url(&key)
        };
        let absolute = |url: String| {
            if url.starts_with('/') {
                format!("{origin}{url}")
            } else {
                url
            }
        };
        // Whether the reader made it: the page is private to them (no-store).
        let yours = match caller().await {
            Ok(visitor) => self.studio.made_by(&record, &visitor),
            Err(_) => false,
        };
        Ok(Some(ImagePage {
            page_url: format!("{origin}{}", image_page_path(key.id().as_str())),
            preview_url: absolute(preview),
            image: shown_image(self, &key, record),
            yours,
        }))
    }

    async fn delete_image(&self, id: String) -> Result<bool, ApiError> {
        let id = ImageId::parse(id.trim()).ok_or(ApiError::NoSuchImage)?;
        let visitor = caller().await?;
        let outcome = self
            .studio
            .delete_image(&visitor, &id)
            .await
            .map(|()| true)
            .map_err(|failure| {
                errors::log(&failure);
                errors::answer(&failure)
            });
        if let Some(response) = use_context::<ResponseOptions>() {
            if plain_form_post() {
                // Without JavaScript: back to the studio (its list without the
                // image), or to the error's sentence on it.
                let location = match &outcome {
                    Ok(_) => HeaderValue::from_static("/"),
                    Err(error) => {
                        let url =
                            ServerFnUrlError::new(crate::api::DeleteImage::PATH, error.clone())
                                .to_url("http://app.invalid/")
                                .ok();
                        url.and_then(|url| {
                            let location = match url.query() {
                                Some(query) => format!("{}?{query}", url.path()),
                                None => url.path().to_owned(),
                            };
                            HeaderValue::from_str(&location).ok()
                        })
                        .unwrap_or_else(|| HeaderValue::from_static("/"))
                    }
                };
                response.insert_header(header::LOCATION, location);
            }
        }
        outcome
    }

    async fn running(&self) -> Result<Vec<RunningGeneration>, ApiError> {
        let visitor = caller().await?;
        let running = self
            .studio
            .running(&visitor)
            .await
            .map_err(|f| errors::answer(&f))?;
        Ok(running
            .into_iter()
            .map(|job| {
                let phase = match job.state {
                    JobState::Running(phase) => phase,
                    _ => Phase::Saving,
                };
                RunningGeneration {
                    job: job.job.to_string(),
                    prompt: job.prompt,
                    phase: phase.name().to_owned(),
                    percent: match phase {
                        Phase::Generating { percent } => percent,
                        _ => None,
                    },
                    started_ms: job.started_ms,
                }
            })
            .collect())
    }

    async fn making(&self, job: String) -> Result<Option<MakingView>, ApiError> {
        let Ok(job) = parse_job(&job) else {
            return Ok(None);
        };
        let visitor = caller().await?;
        // The waiting page comes back at its next refresh.
        let next_look = Duration::from_secs(crate::app::making::REFRESH_SECS.into());
        let Some(seen) = returning::look(self, &visitor, &job, next_look).await? else {
            return Ok(None);
        };
        let mut making = MakingView {
            job: job.to_string(),
            prompt: seen.prompt,
            label: match seen.progress.state {
                JobState::Running(phase) => phase.label(),
                _ => Phase::Saving.label(),
            },
            elapsed_secs: seen.progress.elapsed_ms / 1000,
            image: None,
            error: None,
        };
        match seen.answer {
            Some(kept) => match returning::decode(self, &visitor, &kept).await {
                Ok(created) => making.image = Some(created.image.id),
                Err(error) => making.error = Some(error.to_string()),
            },
            None if seen.progress.cancel_requested => {
                making.label = "Cancelling…".to_owned();
            }
            None => {}
        }
        Ok(Some(making))
    }

    fn site_info(&self) -> AppInfo {
        self.info.clone()
    }
}

/// The largest original a link preview is pointed at.
const MAX_PREVIEW_BYTES: u64 = 5_000_000;

/// `http://{Host}` of the current request, for absolute links when
/// `site.public_url` is not set (a Host that is not a plain host name or
/// address gives `http://localhost`).
fn request_origin() -> String {
    let host = use_context::<axum::http::request::Parts>()
        .and_then(|request| request.headers.get(header::HOST).cloned())
        .and_then(|host| host.to_str().ok().map(str::to_owned))
        .filter(|host| {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    format!("http://{}", host.as_deref().unwrap_or("localhost"))
}

/// A browser submitting the form without JavaScript asks for HTML; the page's own
/// calls ask for JSON.
pub(crate) fn plain_form_post() -> bool {
    use_context::<axum::http::request::Parts>().is_some_and(|request| {
        request
            .headers
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"))
    })
}

/// Where a form post without JavaScript lands: the image's page on success,
/// `/?prompt=…&__path=…&__err=…` on failure (the error in the encoding Leptos'
/// `ServerAction` reads back).
fn no_script_location(
    outcome: &Result<CreatedImage, ApiError>,
    raw_prompt: &str,
    aspect: Option<&str>,
) -> HeaderValue {
    let mut url = url::Url::parse("http://app.invalid/").expect("a valid constant URL");
    match outcome {
        Ok(created) => url.set_path(&image_page_path(&created.image.id)),
        Err(error) => {
            url.query_pairs_mut().append_pair("prompt", raw_prompt);
            // The shape chosen stays chosen.
            if let Some(aspect) = aspect.and_then(Aspect::parse) {
                url.query_pairs_mut().append_pair("aspect", aspect.as_str());
            }
            if let Ok(with_error) = ServerFnUrlError::new(crate::api::Generate::PATH, error.clone())
                .to_url(url.as_str())
            {
                url = with_error;
            }
        }
    }
    let location = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    HeaderValue::from_str(&location).unwrap_or_else(|_| HeaderValue::from_static("/"))
}
