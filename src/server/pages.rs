//! The page and its server functions (Leptos), and the site's own files
//! (`/pkg/`: JS, WASM, CSS), with the context every render gets.

use crate::api::Backend;
use crate::app::{shell, App, ImagesOrigin, InlineCss};
use crate::server::state::AppState;
use axum::response::IntoResponse;
use axum::Router;
use http_body_util::BodyExt;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes};
use std::sync::{Arc, OnceLock};
use tower_http::services::ServeDir;

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

/// The pages, the server functions and `/pkg/`; anything else is a file of
/// the site or the not-found page.
pub fn routes(state: &AppState) -> Router<AppState> {
    let backend: Arc<dyn Backend> = Arc::new(state.clone());
    let inline_css = site_css(&state.leptos_options);
    let images_origin = state
        .images_base
        .as_deref()
        .and_then(|base| url::Url::parse(base).ok())
        .map(|url| url.origin().ascii_serialization());
    let options = state.leptos_options.clone();
    Router::new()
        .nest_service(&format!("/{}", options.site_pkg_dir), site_files(&options))
        .leptos_routes_with_context(
            state,
            route_list(),
            move || {
                provide_context(backend.clone());
                if let Some(origin) = &images_origin {
                    provide_context(ImagesOrigin(origin.clone()));
                }
                if let Some(css) = &inline_css {
                    provide_context(InlineCss(css.clone()));
                }
            },
            move || shell(options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(axum::middleware::map_response(without_nonce_in_crossorigin))
}

/// The largest page the crossorigin fix reads whole (pages are ~10 KB).
const MAX_PAGE: usize = 1024 * 1024;

/// Leptos 0.8's `HydrationScripts` writes the response's CSP nonce as the
/// value of its preload links' `crossorigin` attribute (leptos-rs/leptos#4843;
/// fixed upstream after 0.8.23): not a CORS setting, and a secret meant only
/// for `nonce` attributes. The links name this site's own files, so each
/// becomes a bare `crossorigin` (anonymous: the credentials mode the loader's
/// own requests use). Only pages carrying a nonce are read.
async fn without_nonce_in_crossorigin(
    response: axum::response::Response,
) -> axum::response::Response {
    let nonce = response
        .headers()
        .get(axum::http::header::CONTENT_SECURITY_POLICY)
        .and_then(|policy| policy.to_str().ok())
        .and_then(|policy| policy.split("'nonce-").nth(1))
        .and_then(|rest| rest.split('\'').next())
        .map(str::to_owned);
    let Some(nonce) = nonce else {
        return response;
    };
    let (mut parts, body) = response.into_parts();
    let page = match http_body_util::Limited::new(body, MAX_PAGE).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be made.",
            )
                .into_response()
        }
    };
    let fixed = match std::str::from_utf8(&page) {
        Ok(text) => text.replace(&format!(" crossorigin=\"{nonce}\""), " crossorigin"),
        Err(_) => return axum::response::Response::from_parts(parts, axum::body::Body::from(page)),
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    axum::response::Response::from_parts(parts, axum::body::Body::from(fixed))
}

/// The site's JS, WASM and CSS: the brotli file written at build time (quality
/// 11, `--precompress`) to browsers that take brotli; everyone else gets the
/// compression layer's gzip.
fn site_files(options: &leptos::config::LeptosOptions) -> ServeDir {
    ServeDir::new(std::path::Path::new(&*options.site_root).join(&*options.site_pkg_dir))
        .precompressed_br()
}
