//! Handlers: the bodies of the server functions and the image route. Each reads
//! the app's state from context, calls the domain, and maps the result to HTTP.

use crate::api::{AppInfo, CreatedImage, GenerateError, Quota, RecentImage};
use crate::domain::generation::{Generated, GenerationError, LimitScope, Submission};
use crate::domain::generator::GeneratorError;
use crate::domain::jobs::CancelOutcome;
use crate::domain::ratelimit::Decision;
use crate::domain::storage::ImageKey;
use crate::progress::{JobId, JobProgress};
use crate::server::client_ip::ClientIp;
use crate::server::startup::AppState;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use leptos::prelude::*;
use leptos::server_fn::error::ServerFnUrlError;
use leptos::server_fn::ServerFn;
use leptos_axum::ResponseOptions;

/// One generation for `visitor`, as HTTP sees it: the outcome, and the headers
/// to send with it (`X-RateLimit-*` whenever the limiter answered, `Retry-After`
/// on a denial or when the model is busy). Shared by the page's server function
/// and the JSON API.
async fn run_generation(
    state: &AppState,
    visitor: ClientIp,
    raw_prompt: &str,
    job: Option<&JobId>,
) -> (
    Result<CreatedImage, GenerateError>,
    Vec<(HeaderName, HeaderValue)>,
) {
    let result = state
        .generation
        .run(Submission {
            payer: &state.identity(visitor),
            visitor: &visitor.to_string(),
            prompt: raw_prompt,
            job,
        })
        .await;
    let decision = match &result {
        Ok(generated) => generated.decision,
        Err(failure) => failure.decision(),
    };
    let mut headers = decision
        .map(|d| rate_limit_headers(&d, state.generation.limiter.now_ms()))
        .unwrap_or_default();
    let outcome = result
        .map(created_image)
        .map_err(|failure| visitor_error(&failure));
    if let Err(GenerateError::ModelBusy { retry_after_secs }) = &outcome {
        headers.push((header::RETRY_AFTER, HeaderValue::from(*retry_after_secs)));
    }
    (outcome, headers)
}

/// The body of `POST /api/generate`.
pub async fn generate(
    raw_prompt: String,
    job: Option<String>,
) -> Result<CreatedImage, GenerateError> {
    let (Some(state), Some(request), Some(response)) = (
        use_context::<AppState>(),
        use_context::<axum::http::request::Parts>(),
        use_context::<ResponseOptions>(),
    ) else {
        tracing::error!("generate ran without the app state or request in context");
        return Err(GenerateError::Internal);
    };
    let Some(visitor) = request.extensions.get::<ClientIp>().copied() else {
        tracing::error!(
            "generate ran without a visitor address; is the identify_visitor layer installed?"
        );
        return Err(GenerateError::Internal);
    };

    // An empty id is a page without JavaScript: nobody follows the progress.
    let job = match job.as_deref().map(str::trim).filter(|id| !id.is_empty()) {
        None => Ok(None),
        Some(id) => parse_job(id).map(Some),
    };
    let (outcome, headers) = match &job {
        Ok(job) => run_generation(&state, visitor, &raw_prompt, job.as_ref()).await,
        Err(error) => (Err(error.clone()), Vec::new()),
    };
    for (name, value) in headers {
        response.insert_header(name, value);
    }
    if plain_form_post(&request) {
        // Without JavaScript the browser follows a redirect back to the page; the
        // query carries the result (or the error and the typed prompt) so the page
        // can show it.
        response.insert_header(header::LOCATION, no_script_location(&outcome, &raw_prompt));
    } else if let Err(error) = &outcome {
        if let Ok(status) = StatusCode::from_u16(error.status()) {
            response.set_status(status);
        }
    }
    outcome
}

/// What the original front end posts to `/api/ai`.
#[derive(serde::Deserialize)]
struct AiRequest {
    prompt: String,
}

/// A JSON answer with a status and headers; errors are a JSON string, as the
/// original API answered them.
fn json_answer(
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: serde_json::Value,
) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().extend(headers);
    response
}

/// `POST /api/ai`: the original app's API, so its front end works unchanged.
/// The body is JSON whatever the `Content-Type` says (the original page sent it
/// with `fetch` and no content type, which browsers label `text/plain`).
/// 200 answers a JSON array of the app's image URLs.
pub async fn generate_json(
    State(state): State<AppState>,
    Extension(visitor): Extension<ClientIp>,
    body: Bytes,
) -> Response {
    let prompt = match serde_json::from_slice::<AiRequest>(&body) {
        Ok(request) => request.prompt,
        Err(error) => {
            let message = format!(
                "The request body must be JSON like {{\"prompt\": \"a quiet street at dusk\"}} ({error})."
            );
            return json_answer(
                StatusCode::BAD_REQUEST,
                Vec::new(),
                serde_json::Value::String(message),
            );
        }
    };
    let (outcome, headers) = run_generation(&state, visitor, &prompt, None).await;
    match outcome {
        Ok(created) => json_answer(StatusCode::OK, headers, serde_json::json!([created.url])),
        Err(error) => json_answer(
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers,
            serde_json::Value::String(error.to_string()),
        ),
    }
}

/// `GET /api/remaining`: the calling visitor's quota, read without consuming.
pub async fn remaining_json(
    State(state): State<AppState>,
    Extension(visitor): Extension<ClientIp>,
) -> Response {
    let limiter = &state.generation.limiter;
    match limiter.remaining(&state.identity(visitor)).await {
        Ok(decision) => {
            // A reading, not a refusal: no Retry-After.
            let headers = rate_limit_headers(
                &Decision {
                    success: true,
                    ..decision
                },
                limiter.now_ms(),
            );
            json_answer(
                StatusCode::OK,
                headers,
                serde_json::json!({
                    "remainingGenerations": decision.remaining,
                    "limit": decision.limit,
                    "reset": decision.reset_ms,
                }),
            )
        }
        Err(_) => json_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            Vec::new(),
            serde_json::Value::String(GenerateError::LimiterUnavailable.to_string()),
        ),
    }
}

fn quota(decision: &Decision) -> Quota {
    Quota {
        limit: decision.limit,
        remaining: decision.remaining,
        reset_ms: decision.reset_ms,
    }
}

fn created_image(generated: Generated) -> CreatedImage {
    CreatedImage {
        url: generated.image.url(),
        prompt: generated.prompt.to_string(),
        quota: generated.decision.as_ref().map(quota),
    }
}

/// What the visitor is told; the detail goes to the log.
fn visitor_error(failure: &GenerationError) -> GenerateError {
    match failure {
        GenerationError::InvalidPrompt(reason) => GenerateError::InvalidPrompt(reason.clone()),
        GenerationError::Denied {
            decision,
            scope: LimitScope::Visitor,
        } => GenerateError::RateLimited(quota(decision)),
        GenerationError::Denied {
            decision,
            scope: LimitScope::Everyone,
        } => GenerateError::BudgetSpent(quota(decision)),
        GenerationError::LimiterUnavailable(error) => {
            tracing::error!(%error, "rate limiter unavailable; refusing to generate");
            GenerateError::LimiterUnavailable
        }
        GenerationError::Generator { source, .. } => {
            tracing::error!(error = %source, "image generation failed");
            match source {
                GeneratorError::Unsafe(_) => GenerateError::Unsafe,
                GeneratorError::TimedOut => GenerateError::ModelTimedOut,
                GeneratorError::Busy { retry_after } => GenerateError::ModelBusy {
                    retry_after_secs: retry_after.map_or(30, |d| d.as_secs().max(1)),
                },
                _ => GenerateError::Internal,
            }
        }
        GenerationError::Storage { source, .. } => {
            tracing::error!(error = %source, "could not store a generated image");
            GenerateError::Internal
        }
        GenerationError::Canceled { .. } => GenerateError::Canceled,
        GenerationError::JobIdTaken => GenerateError::MalformedRequest(
            "this generation id is already in use; reload the page and try again.".into(),
        ),
    }
}

/// Reads a generation id sent by the page.
pub fn parse_job(text: &str) -> Result<JobId, GenerateError> {
    JobId::parse(text).map_err(|error| GenerateError::MalformedRequest(error.to_string()))
}

/// Sets the response's status to the error's and hands the error on.
fn failed(error: GenerateError) -> GenerateError {
    if let (Some(response), Ok(status)) = (
        use_context::<ResponseOptions>(),
        StatusCode::from_u16(error.status()),
    ) {
        response.set_status(status);
    }
    error
}

/// The app's state and the calling visitor, for the server functions.
fn caller() -> Result<(AppState, ClientIp), GenerateError> {
    let state = use_context::<AppState>();
    let visitor = use_context::<axum::http::request::Parts>()
        .and_then(|request| request.extensions.get::<ClientIp>().copied());
    match (state, visitor) {
        (Some(state), Some(visitor)) => Ok((state, visitor)),
        _ => {
            tracing::error!("a server function ran without the app state or the visitor's address");
            Err(GenerateError::Internal)
        }
    }
}

/// The body of `GET /api/progress`.
pub async fn progress(job: &str) -> Result<Option<JobProgress>, GenerateError> {
    let job = parse_job(job).map_err(failed)?;
    let (state, visitor) = caller().map_err(failed)?;
    state
        .generation
        .jobs
        .read(&job, &visitor.to_string())
        .await
        .map_err(|error| {
            tracing::warn!(%error, "could not read a generation's progress");
            failed(GenerateError::LimiterUnavailable)
        })
}

/// The body of `POST /api/cancel`.
pub async fn cancel(job: &str) -> Result<bool, GenerateError> {
    let job = parse_job(job).map_err(failed)?;
    let (state, visitor) = caller().map_err(failed)?;
    match state
        .generation
        .jobs
        .request_cancel(&job, &visitor.to_string())
        .await
    {
        Ok(CancelOutcome::Requested) => {
            tracing::info!(%job, "the visitor asked to cancel a generation");
            Ok(true)
        }
        Ok(CancelOutcome::AlreadyOver | CancelOutcome::Unknown) => Ok(false),
        Err(error) => {
            tracing::warn!(%error, "could not record a cancel request");
            Err(failed(GenerateError::LimiterUnavailable))
        }
    }
}

/// The body of `GET /api/recent`.
pub async fn recent_images() -> Result<Vec<RecentImage>, GenerateError> {
    let (state, visitor) = caller().map_err(failed)?;
    let kept = state
        .generation
        .gallery
        .list(&visitor.to_string())
        .await
        .map_err(|error| {
            tracing::warn!(%error, "could not read the visitor's recent images");
            failed(GenerateError::Internal)
        })?;
    Ok(kept
        .into_iter()
        .filter_map(|kept| {
            Some(RecentImage {
                url: kept.key()?.url(),
                prompt: kept.prompt,
                created_ms: kept.created_ms,
            })
        })
        .collect())
}

/// `X-RateLimit-*` on every limited answer, plus `Retry-After` on a denial.
pub fn rate_limit_headers(decision: &Decision, now_ms: u64) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = vec![
        (
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderValue::from(decision.limit),
        ),
        (
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderValue::from(decision.remaining),
        ),
        (
            HeaderName::from_static("x-ratelimit-reset"),
            HeaderValue::from(decision.reset_ms),
        ),
    ];
    if !decision.success {
        headers.push((
            header::RETRY_AFTER,
            HeaderValue::from(decision.retry_after_secs(now_ms)),
        ));
    }
    headers
}

/// A browser submitting the form without JavaScript asks for HTML; the page's own
/// calls ask for JSON.
fn plain_form_post(request: &axum::http::request::Parts) -> bool {
    request
        .headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// Where a form post without JavaScript lands: `/?image=…&prompt=…` on success,
/// `/?prompt=…&__path=…&__err=…` on failure (the error in the encoding Leptos'
/// `ServerAction` reads back).
fn no_script_location(
    outcome: &Result<CreatedImage, GenerateError>,
    raw_prompt: &str,
) -> HeaderValue {
    let mut url = url::Url::parse("http://app.invalid/").expect("a valid constant URL");
    match outcome {
        Ok(image) => {
            let key = image.url.trim_start_matches("/images/");
            url.query_pairs_mut()
                .append_pair("image", key)
                .append_pair("prompt", &image.prompt);
        }
        Err(error) => {
            url.query_pairs_mut().append_pair("prompt", raw_prompt);
            if let Ok(with_error) = ServerFnUrlError::new(crate::api::Generate::PATH, error.clone())
                .to_url(url.as_str())
            {
                url = with_error;
            }
        }
    }
    let location = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    HeaderValue::from_str(&location).unwrap_or_else(|_| HeaderValue::from_static("/"))
}

/// The body of `GET /api/quota`: the visitor's quota for the page.
pub async fn current_quota() -> Result<crate::api::QuotaReading, ServerFnError> {
    let (Some(state), Some(request)) = (
        use_context::<AppState>(),
        use_context::<axum::http::request::Parts>(),
    ) else {
        return Err(ServerFnError::new("the app state is missing"));
    };
    let limiter = &state.generation.limiter;
    let quota = match request.extensions.get::<ClientIp>() {
        Some(visitor) => limiter
            .remaining(&state.identity(*visitor))
            .await
            .ok()
            .map(|d| quota(&d)),
        None => None,
    };
    Ok(crate::api::QuotaReading {
        quota,
        now_ms: limiter.now_ms(),
    })
}

/// The body of `GET /api/info`.
pub fn app_info() -> Result<AppInfo, ServerFnError> {
    let state =
        use_context::<AppState>().ok_or_else(|| ServerFnError::new("the app state is missing"))?;
    Ok(state.info.clone())
}

/// `GET /images/{file}`: a stored image, cacheable for a year (keys are never reused).
pub async fn serve_image(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let Some(key) = ImageKey::parse(&file) else {
        return (StatusCode::NOT_FOUND, "No such image.").into_response();
    };
    match state.images.get(&key).await {
        Ok(Some(bytes)) => (
            [
                (header::CONTENT_TYPE, key.format().content_type()),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            Body::from(bytes),
        )
            .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "No such image.").into_response(),
        Err(error) => {
            tracing::error!(%error, image = %key, "could not read a stored image");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                crate::api::GENERIC_FAILURE,
            )
                .into_response()
        }
    }
}
