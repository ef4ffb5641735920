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

/// The largest event a model server of the owner's may send: its final
/// event carries the picture as a `data:` URI (base64 of up to
/// `model.max_image_bytes`). Read only once its bearer token checked out.
pub const MAX_COG_WEBHOOK_BYTES: usize = 40 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/webhooks/replicate",
            post(replicate).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES)),
        )
        .route(
            "/webhooks/cog",
            post(cog).layer(DefaultBodyLimit::max(MAX_COG_WEBHOOK_BYTES)),
        )
}

/// `POST /webhooks/cog`: the owner's model servers' events (start, logs,
/// output, completed), each with `Authorization: Bearer {COG_WEBHOOK_TOKEN}`.
/// The token is checked (in constant time) before the body is read; anything
/// else is a 401 that changes nothing.
async fn cog(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Some(webhooks) = state.studio.cog_webhooks() else {
        return answer(StatusCode::NOT_FOUND, "webhooks are off for this app");
    };
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if !webhooks.authorized(authorization) {
        metrics::counter!("lofianime_webhooks_total", "result" => "unverified").increment(1);
        tracing::warn!("refused a model server's webhook: no or the wrong bearer token");
        return answer(StatusCode::UNAUTHORIZED, "no or the wrong bearer token");
    }
    let body = match axum::body::to_bytes(body, MAX_COG_WEBHOOK_BYTES).await {
        Ok(body) => body,
        Err(_) => return answer(StatusCode::PAYLOAD_TOO_LARGE, "the event is too large"),
    };
    match webhooks.receive(&body).await {
        Ok(applied) => {
            let result = if applied { "applied" } else { "ignored" };
            metrics::counter!("lofianime_webhooks_total", "result" => result).increment(1);
            answer(StatusCode::OK, "received")
        }
        Err(refusal) => {
            let status = match &refusal {
                WebhookRefusal::Unverified(_) => StatusCode::UNAUTHORIZED,
                WebhookRefusal::Unreadable(_) => StatusCode::BAD_REQUEST,
                WebhookRefusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            tracing::warn!(status = status.as_u16(), reason = %refusal, "refused a model server's webhook");
            answer(status, &refusal.to_string())
        }
    }
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
