//! The original app's JSON API (`POST /api/ai`, `GET /api/remaining`). Each
//! route gets the caller from the [`Caller`] extractor (the signed-in account,
//! else the address), calls one use case of the studio, and maps a failure in
//! one place.

use crate::server::auth::Caller;
use crate::server::errors;
use crate::server::generations::{rate_limit_headers, run_api_generation};
use crate::server::state::AppState;
use crate::shape::Choices;
use crate::wire::ApiError;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

/// The JSON API's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/ai", post(generate_json))
        .route("/api/remaining", get(remaining_json))
}

/// What the original front end posts to `/api/ai`, with this app's optional
/// shape (`"portrait"`) and seed (a number, or a number in a string).
#[derive(serde::Deserialize)]
struct AiRequest {
    prompt: String,
    #[serde(default)]
    aspect: Option<String>,
    #[serde(default)]
    seed: Option<serde_json::Value>,
}

impl AiRequest {
    fn choices(&self) -> Result<Choices, ApiError> {
        let seed = match &self.seed {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ApiError::BadSeed),
        };
        Ok(Choices::parse(self.aspect.as_deref(), seed.as_deref())?)
    }
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

fn json_error(error: &ApiError, headers: Vec<(HeaderName, HeaderValue)>) -> Response {
    json_answer(
        error.status(),
        headers,
        serde_json::Value::String(error.to_string()),
    )
}

/// `POST /api/ai`: the original app's API, so its front end works unchanged.
/// The body is JSON whatever the `Content-Type` says (the original page sent it
/// with `fetch` and no content type, which browsers label `text/plain`).
/// 200 answers a JSON array of the app's image URLs.
pub async fn generate_json(State(state): State<AppState>, caller: Caller, body: Bytes) -> Response {
    let (prompt, choices) = match serde_json::from_slice::<AiRequest>(&body) {
        Ok(request) => match request.choices() {
            Ok(choices) => (request.prompt, choices),
            Err(error) => return json_error(&error, Vec::new()),
        },
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
    match run_api_generation(&state, &caller.visitor, &prompt, choices).await {
        (Ok(created), headers) => json_answer(
            StatusCode::OK,
            headers,
            serde_json::json!([created.image.url]),
        ),
        (Err(error), headers) => json_error(&error, headers),
    }
}

/// `GET /api/remaining`: the calling visitor's quota, read without consuming.
pub async fn remaining_json(State(state): State<AppState>, caller: Caller) -> Response {
    match state.studio.quota(&caller.visitor).await {
        Ok(decision) => {
            // A reading, not a refusal: no Retry-After.
            let mut reading = decision;
            reading.success = true;
            let headers = rate_limit_headers(&reading, state.studio.now_ms());
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
        Err(failure) => json_error(&errors::answer(&failure), Vec::new()),
    }
}
