//! The whole app as an Axum router: the page and server functions (Leptos), the
//! JSON API and images, the site's static files, and the layers every response
//! goes through. Tests drive it directly, without a socket.

use crate::api::Backend;
use crate::app::{shell, App, ImagesOrigin, InlineCss};
use crate::server::auth;
use crate::server::client_ip::identify_visitor;
use crate::server::guard;
use crate::server::health::{healthz, readyz};
use crate::server::json_api::{generate_json, remaining_json, serve_image};
use crate::server::state::AppState;
use crate::wire::{ApiError, IMAGES_PATH};
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use leptos::prelude::provide_context;
use leptos::server_fn::error::{FromServerFnError, SERVER_FN_ERROR_HEADER};
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes};
use std::sync::{Arc, OnceLock};
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

/// The app's routes, worked out once per process. Leptos renders the whole app to
/// find them, with a process-wide flag set that freezes any resource first polled
/// meanwhile (leptos-rs/leptos#4773); generating them once, before anything is
/// served, keeps every real render out of that window, even when tests build many
/// routers side by side.
fn route_list() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// The site's stylesheet as the release build wrote it (`pkg/{name}.{hash}.css`,
/// the hash from `hash.txt` beside the binary, as Leptos finds it), read once;
/// `None` when there is none (tests, a build without the site).
fn site_css(options: &leptos::config::LeptosOptions) -> Option<Arc<str>> {
    static CSS: OnceLock<Option<Arc<str>>> = OnceLock::new();
    CSS.get_or_init(|| {
        let mut name = options.output_name.to_string();
        if options.hash_files {
            let hashes = std::env::current_exe()
                .ok()?
                .parent()?
                .join(options.hash_file.as_ref());
            let hashes = std::fs::read_to_string(hashes).ok()?;
            let hash = hashes
                .lines()
                .find_map(|line| line.trim().strip_prefix("css:"))?;
            name = format!("{name}.{}", hash.trim());
        }
        let path = std::path::Path::new(&*options.site_root)
            .join(&*options.site_pkg_dir)
            .join(format!("{name}.css"));
        let css = std::fs::read_to_string(path).ok()?;
        // Safe inside <style> only without a closing tag in it.
        (!css.contains("</")).then(|| Arc::from(css))
    })
    .clone()
}

/// The whole app (without connection info; `serve` adds it).
pub fn router(state: AppState) -> Router {
    // Polled by load balancers: outside the logging and other layers below.
    let mut probes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state.clone());
    if let Some(endpoint) = state.metrics.clone() {
        probes = probes.merge(
            Router::new()
                .route("/metrics", get(crate::server::metrics::metrics))
                .with_state(endpoint),
        );
    }
    app_routes(state).merge(probes)
}

/// The page, the server functions, the JSON API and the images, with their layers.
fn app_routes(state: AppState) -> Router {
    let routes = route_list();
    let backend: Arc<dyn Backend> = Arc::new(state.clone());
    let inline_css = site_css(&state.leptos_options);
    let images_origin = state
        .images_base
        .as_deref()
        .and_then(|base| url::Url::parse(base).ok())
        .map(|url| url.origin().ascii_serialization());
    Router::new()
        .route(&format!("{IMAGES_PATH}{{file}}"), get(serve_image))
        .route("/api/ai", post(generate_json))
        .route("/api/remaining", get(remaining_json))
        .route(guard::SIGN_IN_PATH, get(auth::routes::login))
        .route("/auth/callback", get(auth::routes::callback))
        .route("/auth/logout", post(auth::routes::logout))
        // The site's JS, WASM and CSS: the brotli file written at build time
        // (quality 11, `--precompress`) to browsers that take brotli; everyone
        // else gets the compression layer's gzip.
        .nest_service(
            &format!("/{}", state.leptos_options.site_pkg_dir),
            ServeDir::new(
                std::path::Path::new(&*state.leptos_options.site_root)
                    .join(&*state.leptos_options.site_pkg_dir),
            )
            .precompressed_br(),
        )
        .leptos_routes_with_context(
            &state,
            routes,
            move || {
                provide_context(backend.clone());
                if let Some(origin) = &images_origin {
                    provide_context(ImagesOrigin(origin.clone()));
                }
                if let Some(css) = &inline_css {
                    provide_context(InlineCss(css.clone()));
                }
            },
            {
                let options = state.leptos_options.clone();
                move || shell(options.clone())
            },
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(axum::middleware::from_fn(server_fn_status))
        .layer(axum::middleware::from_fn(
            crate::server::metrics::count_in_flight,
        ))
        .layer(axum::middleware::from_fn(guard::redirects_stay_on_site))
        .layer(axum::middleware::from_fn(guard::no_store_for_visitor_data))
        .layer(axum::middleware::from_fn_with_state(
            state.leptos_options.hash_files,
            cache_static_files,
        ))
        // Inside identify_visitor: the caller is the account, else the address.
        .layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            auth::identify_caller,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.trusted_proxies.clone(),
            identify_visitor,
        ))
        // Oversized bodies get 413 before any handler reads them; requests
        // from other sites get 403 before anything is spent.
        .layer(RequestBodyLimitLayer::new(guard::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(guard::same_site_only))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(CompressionLayer::new())
        .layer(
            TraceLayer::new_for_http()
                // The path only: query strings may carry prompts and ids.
                .make_span_with(|request: &axum::http::Request<Body>| {
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path()
                    )
                })
                .on_request(())
                // One line per answer, except refusals (429), which are counted
                // and summed up once a minute.
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
        .with_state(state)
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
