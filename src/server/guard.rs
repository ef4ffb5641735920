//! Layers that protect the visitor's quota and data on every route: requests
//! that change state must come from the app's own pages (or from API clients,
//! which send no browser headers), answers that carry visitor data are never
//! cached, and no answer redirects off-site.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The sentence a cross-site request gets.
pub const CROSS_SITE_REFUSED: &str =
    "Requests from other sites are not accepted: open the app itself to generate images.";

/// The route that redirects to the OpenID provider.
pub const SIGN_IN_PATH: &str = "/auth/login";

/// Largest request body any endpoint reads (a prompt is at most a few KB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// True when a browser says the request comes from another site: `Sec-Fetch-Site:
/// cross-site` (every current browser sends it), or, from browsers that do not,
/// an `Origin` that is not this host. API clients that send neither header are
/// not browsers acting for someone else, and pass.
fn from_another_site(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text("sec-fetch-site") {
        return site == "cross-site";
    }
    let Some(origin) = text(header::ORIGIN.as_str()) else {
        return false;
    };
    let origin_host = url::Url::parse(origin).ok().and_then(|url| {
        let host = url.host_str()?.to_owned();
        Some(match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        })
    });
    match (origin_host, text(header::HOST.as_str())) {
        (Some(origin), Some(host)) => !origin.eq_ignore_ascii_case(host),
        // "null" (sandboxed frames, files) or no Host to compare with.
        _ => true,
    }
}

/// Refuses state-changing requests from other sites with 403, before anything
/// (a credit, a cancel) is spent.
pub async fn same_site_only(request: Request, next: Next) -> Response {
    let changes_state = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if changes_state && from_another_site(request.headers()) {
        tracing::debug!(path = %request.uri().path(), "refused a cross-site request");
        return (StatusCode::FORBIDDEN, CROSS_SITE_REFUSED).into_response();
    }
    next.run(request).await
}

/// `Cache-Control: private, no-store` on every page and API answer (they carry
/// the visitor's quota, prompts and images), unless the route set its own
/// (images and the site's files are immutable and public).
pub async fn no_store_for_visitor_data(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if (api || html) && !response.headers().contains_key(header::CACHE_CONTROL) {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
    }
    response
}

/// A redirect never leaves the site: an absolute `Location` (Leptos sends form
/// posts back to whatever `Referer` came with them) keeps only its path and query.
/// The one exception is sign-in, which sends the visitor to the provider the
/// owner configured (its own `return_to` is checked to be a path on this site).
pub async fn redirects_stay_on_site(request: Request, next: Next) -> Response {
    let to_provider = request.uri().path() == SIGN_IN_PATH;
    let mut response = next.run(request).await;
    if to_provider {
        return response;
    }
    let off_site = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .filter(|location| !location.starts_with('/') || location.starts_with("//"))
        .map(|location| {
            url::Url::parse(location)
                .ok()
                .map(|url| match url.query() {
                    Some(query) => format!("{}?{query}", url.path()),
                    None => url.path().to_owned(),
                })
                .unwrap_or_else(|| "/".to_owned())
        });
    if let Some(path) = off_site {
        let value = HeaderValue::from_str(&path).unwrap_or_else(|_| HeaderValue::from_static("/"));
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn browsers_acting_for_another_site_are_recognised() {
        let host = ("host", "lofi.example:3000");
        assert!(from_another_site(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(from_another_site(&headers(&[
            host,
            ("origin", "https://evil.example")
        ])));
        assert!(from_another_site(&headers(&[host, ("origin", "null")])));
        assert!(from_another_site(&headers(&[
            host,
            ("origin", "http://lofi.example:3001")
        ])));
        assert!(!from_another_site(&headers(&[
            host,
            ("origin", "http://lofi.example:3000")
        ])));
        assert!(!from_another_site(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        // Behind a proxy that rewrites Host, the browser's own word decides.
        assert!(!from_another_site(&headers(&[
            ("host", "app-internal:3000"),
            ("origin", "https://lofi.example"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(
            !from_another_site(&headers(&[host])),
            "API clients send neither"
        );
    }
}
