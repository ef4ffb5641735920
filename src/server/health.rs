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

/// `GET /readyz`: 200 when the limiter store and the image store answer (and,
/// with the owner's model servers, at least one of them), else 503 with
/// `{"status": "unavailable", "failing": ["limiter store"]}`; with model
/// servers, `"model_servers": {"ready": 1, "total": 2}` besides.
pub async fn readyz(State(state): State<AppState>) -> Response {
    static WAS_READY: AtomicBool = AtomicBool::new(true);
    let (checks, servers) = tokio::join!(
        state.studio.readiness(READY_BOUND),
        tokio::time::timeout(READY_BOUND, state.studio.model_servers())
    );
    let mut failing: Vec<&str> = checks
        .iter()
        .filter(|check| check.problem.is_some())
        .map(|check| check.dependency)
        .collect();
    // The owner's model servers (Cog): how many answer READY or BUSY.
    let servers = match servers {
        Ok(Some((up, total))) => Some((up, total)),
        Ok(None) => None,
        Err(_) => state.studio.model_servers_known().map(|total| (0, total)),
    };
    if servers.is_some_and(|(up, _)| up == 0) {
        failing.push("model servers");
    }
    let servers_json =
        servers.map(|(up, total)| serde_json::json!({ "ready": up, "total": total }));
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
            Json(match servers_json {
                Some(servers) => serde_json::json!({ "status": "ready", "model_servers": servers }),
                None => serde_json::json!({ "status": "ready" }),
            }),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(match servers_json {
                Some(servers) => serde_json::json!({ "status": "unavailable", "failing": failing, "model_servers": servers }),
                None => serde_json::json!({ "status": "unavailable", "failing": failing }),
            }),
        )
            .into_response()
    }
}
