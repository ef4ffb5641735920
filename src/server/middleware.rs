//! The layers every response of the app (not the probes) goes through: the
//! request log, compression, security headers, same-site and size checks, who
//! the caller is, cache rules, and server-function statuses. Outermost first in
//! [`around`].

use crate::server::auth;
use crate::server::client_ip::identify_visitor;
use crate::server::client_ip::ClientIp;
use crate::server::guard;
use crate::server::state::AppState;
use crate::wire::ApiError;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::IntoResponse;
use axum::Router;
use http_body_util::BodyExt;
use leptos::server_fn::error::{FromServerFnError, SERVER_FN_ERROR_HEADER};
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

/// `routes` inside the app's layers.
pub fn around(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    let routes = routes
        .layer(from_fn(image_pages_need_an_id))
        .layer(from_fn(server_fn_status))
        .layer(from_fn(crate::server::metrics::count_in_flight))
        .layer(from_fn(guard::redirects_stay_on_site))
        .layer(from_fn(guard::no_store_for_visitor_data))
        .layer(from_fn_with_state(
            state.leptos_options.hash_files,
            cache_static_files,
        ))
        // Inside identify_visitor: the caller is the account, else the address.
        .layer(from_fn_with_state(state.clone(), identify_caller))
        .layer(from_fn_with_state(
            state.trusted_proxies.clone(),
            identify_visitor,
        ))
        // Oversized bodies get 413 before any handler reads them; requests
        // from other sites get 403 before anything is spent.
        .layer(RequestBodyLimitLayer::new(guard::MAX_BODY_BYTES))
        .layer(from_fn(guard::same_site_only));
    logged(security_headers(routes).layer(CompressionLayer::new()))
}

/// Headers every answer carries unless it set its own.
fn security_headers(routes: Router<AppState>) -> Router<AppState> {
    let header_layer =
        |name, value| SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value));
    routes
        .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header_layer(
            header::REFERRER_POLICY,
            "strict-origin-when-cross-origin",
        ))
        .layer(header_layer(header::X_FRAME_OPTIONS, "DENY"))
}

/// One log line per answer, under a span with the method and the path (never
/// the query: it may carry prompts and ids), except refusals (429), which are
/// counted and summed up once a minute.
fn logged(routes: Router<AppState>) -> Router<AppState> {
    routes.layer(
        TraceLayer::new_for_http()
            .make_span_with(|request: &axum::http::Request<Body>| {
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path()
                )
            })
            .on_request(())
            .on_response(
                |response: &axum::response::Response,
                 latency: std::time::Duration,
                 _: &tracing::Span| {
                    let status = response.status().as_u16();
                    let latency_ms = latency.as_millis() as u64;
                    if status == 429 {
                        tracing::debug!(status, latency_ms, "answered");
                    } else {
                        tracing::info!(status, latency_ms, "answered");
                    }
                },
            ),
    )
}

/// The largest server-function error body read back to find its status.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Every failed server function answers with its error's own status
/// ([`ApiError::status`]): Leptos marks such answers with a header and a 500,
/// including failures to decode the arguments that happen before a body runs.
/// Redirects (forms without JavaScript) are left as they are.
async fn server_fn_status(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let response = next.run(request).await;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key(SERVER_FN_ERROR_HEADER)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_ERROR_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, Body::empty()).into_response(),
    };
    parts.status = ApiError::de(bytes.clone()).status();
    axum::response::Response::from_parts(parts, Body::from(bytes))
}

/// Cache lifetimes of the site's own files under `/pkg/`: a year when their
/// names carry a content hash (a new build has new names), otherwise revalidate
/// each time (the same name may hold a new build).
async fn cache_static_files(
    axum::extract::State(hashed): axum::extract::State<bool>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let is_pkg = request.uri().path().starts_with("/pkg/");
    let mut response = next.run(request).await;
    if is_pkg && response.status().is_success() {
        let policy = if hashed {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    }
    response
}

/// `/i/{id}` with anything but an image id is the image pages' "not found"
/// (a percent-encoded `..` would otherwise be decoded and normalised by the
/// page router into another page).
async fn image_pages_need_an_id(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(rest) = request.uri().path().strip_prefix("/i/") {
        if !rest.is_empty() && crate::wire::ImageId::parse(rest).is_none() {
            let mut parts = request.uri().clone().into_parts();
            parts.path_and_query = Some(axum::http::uri::PathAndQuery::from_static(
                "/i/not-an-image",
            ));
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    next.run(request).await
}

/// Middleware: works out the [`Caller`] (after `identify_visitor` found the
/// address) and puts it in the request's extensions.
pub async fn identify_caller(
    State(state): State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let client = request
        .extensions()
        .get::<ClientIp>()
        .copied()
        .unwrap_or_else(ClientIp::unknown);
    let mut caller = state.auth.caller(request.headers(), client);
    if let Some(account) = &caller.account {
        if ended(&state, &account.session).await {
            caller = state.auth.signed_out(client);
        }
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Whether session `id` was signed out. A store that cannot say leaves the
/// session as it is (the limiter decides what may be spent either way).
async fn ended(state: &AppState, id: &str) -> bool {
    match state.studio.is_marked(&auth::ended_mark(id)).await {
        Ok(ended) => ended,
        Err(error) => {
            tracing::warn!(%error, "could not read whether a session was signed out");
            false
        }
    }
}
