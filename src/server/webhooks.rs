//! `POST /webhooks/replicate`: Replicate's events about the account's runs
//! (start, logs, completed), signed with the account's webhook secret. Outside
//! the visitor-facing layers (no same-site check: the sender is Replicate, no
//! visitor identity, no quota); its own body cap. Anything not verified is a
//! 401 that changes nothing; a verified event goes to the run's shared record
//! ([`lofianime_domain::ReplicateWebhooks`]).

use crate::server::state::AppState;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use lofianime_domain::{WebhookOutcome, WebhookRefusal};
use serde::Deserialize;

/// The largest event accepted: a prediction with its logs and output URLs is
/// a few kilobytes; one carrying a `data:` image is refused (413) and read by
/// the running instance's fallback poll instead.
pub const MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhooks/replicate", post(replicate))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES))
}

#[derive(Debug, Deserialize)]
struct Address {
    run: Option<String>,
}

async fn replicate(
    State(state): State<AppState>,
    Query(address): Query<Address>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !state.studio.takes_model_webhooks() {
        return answer(StatusCode::NOT_FOUND, "webhooks are off for this app");
    }
    match state
        .studio
        .receive_model_webhook(address.run.as_deref(), &headers, &body)
        .await
    {
        Ok(outcome) => {
            metrics::counter!("lofianime_webhooks_total", "result" => match outcome {
                WebhookOutcome::Applied => "applied",
                WebhookOutcome::Ignored => "ignored",
            })
            .increment(1);
            answer(StatusCode::OK, "received")
        }
        Err(refusal) => {
            let (status, result) = match &refusal {
                WebhookRefusal::Unverified(_) => (StatusCode::UNAUTHORIZED, "unverified"),
                WebhookRefusal::Unreadable(_) => (StatusCode::BAD_REQUEST, "unreadable"),
                WebhookRefusal::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            };
            metrics::counter!("lofianime_webhooks_total", "result" => result).increment(1);
            tracing::warn!(status = status.as_u16(), reason = %refusal, "refused a webhook delivery");
            answer(status, &refusal.to_string())
        }
    }
}

fn answer(status: StatusCode, message: &str) -> Response {
    let key = if status.is_success() {
        "status"
    } else {
        "error"
    };
    (status, Json(serde_json::json!({ key: message }))).into_response()
}
