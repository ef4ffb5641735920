//! `GET /metrics` in the Prometheus text format, for callers presenting
//! `Authorization: Bearer <METRICS_TOKEN>`; without `METRICS_TOKEN`, `/metrics`
//! is not served (404). The app records through the `metrics` facade (domain
//! and server alike); `metrics-exporter-prometheus` keeps and renders them.
//! Also counts the requests in flight.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};

/// Bucket bounds of `lofianime_model_duration_seconds`, in seconds.
const MODEL_SECONDS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// The exporter and the token it asks for.
pub struct MetricsEndpoint {
    handle: PrometheusHandle,
    token_digest: [u8; 32],
}

impl MetricsEndpoint {
    /// Installs the process's recorder (once; later calls share it) and returns
    /// the endpoint guarded by `token`.
    pub fn install(token: &SecretString) -> Result<Arc<Self>, String> {
        static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
        let handle = HANDLE
            .get_or_init(|| {
                let recorder = PrometheusBuilder::new()
                    .set_buckets_for_metric(
                        Matcher::Full("lofianime_model_duration_seconds".into()),
                        &MODEL_SECONDS,
                    )
                    .map_err(|e| e.to_string())?
                    .build_recorder();
                let handle = recorder.handle();
                metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
                Ok(handle)
            })
            .clone()?;
        Ok(Arc::new(Self {
            handle,
            token_digest: digest(token.expose_secret()),
        }))
    }

    /// True when `headers` present this endpoint's token.
    fn allows(&self, headers: &HeaderMap) -> bool {
        // The scheme is case-insensitive (RFC 9110): `bearer` is `Bearer`.
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .unwrap_or_default();
        same_digest(&digest(presented), &self.token_digest) && !presented.is_empty()
    }
}

/// The SHA-256 of `text` in hex (to key a secret in the store without it).
pub fn digest_hex(text: &str) -> String {
    digest(text).iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Digests of equal length, compared without an early exit.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |differ, (a, b)| differ | (a ^ b)) == 0
}

/// Whether two secrets (a token, a sign-in state) are equal, compared through
/// their digests so the time taken says nothing about where they differ.
pub fn same_secret(presented: &str, expected: &str) -> bool {
    same_digest(&digest(presented), &digest(expected))
}

/// `GET /metrics`.
pub async fn metrics(State(endpoint): State<Arc<MetricsEndpoint>>, headers: HeaderMap) -> Response {
    if !endpoint.allows(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "Send Authorization: Bearer <METRICS_TOKEN>.",
        )
            .into_response();
    }
    endpoint.handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        endpoint.handle.render(),
    )
        .into_response()
}

/// Counts the requests being answered (`lofianime_requests_in_flight`).
pub async fn count_in_flight(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    struct InFlight;
    impl Drop for InFlight {
        fn drop(&mut self) {
            metrics::gauge!("lofianime_requests_in_flight").decrement(1.0);
        }
    }
    metrics::gauge!("lofianime_requests_in_flight").increment(1.0);
    let _in_flight = InFlight;
    next.run(request).await
}
