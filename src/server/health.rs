//! What a load balancer or an orchestrator polls: `GET /healthz` (the process
//! answers; nothing else is asked) and `GET /readyz` (the limiter's store and
//! the image store each answer one read within a short bound; otherwise 503
//! naming what fails). Both are cheap enough to poll every second, are not
//! rate-limited and are not logged per request; a change of readiness is.

use crate::server::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long each dependency may take to answer a readiness check.
const READY_BOUND: Duration = Duration::from_millis(1500);

/// `/healthz`, `/readyz`, and `/metrics` when `METRICS_TOKEN` is set.
pub fn routes(state: AppState) -> Router {
    let probes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state.clone());
    match state.metrics {
        Some(endpoint) => probes.merge(
            Router::new()
                .route("/metrics", get(crate::server::metrics::metrics))
                .with_state(endpoint),
        ),
        None => probes,
    }
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Response {
    (StatusCode::OK, Json(serde_json::json!({ "status": "ok" }))).into_response()
}

/// `GET /readyz`: 200 when the limiter store and the image store answer, else
/// 503 with `{"status": "unavailable", "failing": ["limiter store"]}`.
pub async fn readyz(State(state): State<AppState>) -> Response {
    static WAS_READY: AtomicBool = AtomicBool::new(true);
    let checks = state.studio.readiness(READY_BOUND).await;
    let failing: Vec<&str> = checks
        .iter()
        .filter(|check| check.problem.is_some())
        .map(|check| check.dependency)
        .collect();
    let ready = failing.is_empty();
    if WAS_READY.swap(ready, Ordering::Relaxed) != ready {
        if ready {
            tracing::info!("ready again: the limiter store and the image store answer");
        } else {
            for check in &checks {
                if let Some(problem) = &check.problem {
                    tracing::warn!(dependency = check.dependency, %problem, "not ready");
                }
            }
        }
    }
    if ready {
        (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "unavailable", "failing": failing })),
        )
            .into_response()
    }
}
