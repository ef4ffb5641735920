//! The HTML document around every page, its Content-Security-Policy, and the
//! routes (rendered on the server only: no router code reaches the browser).

use super::home::HomePage;
use super::image_page::ImagePage;
use super::making::MakingPage;
use super::not_found::NotFound;
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, MetaTags};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{ParamSegment, SsrMode, StaticSegment};

/// The Content-Security-Policy of every page: scripts only from the app itself
/// and the inline bootstrap carrying this response's nonce, WASM allowed to
/// compile, images from the app's own origin (and `images_origin`, where a CDN
/// serves them), everything else from the app's origin, no framing.
pub fn content_security_policy(nonce: &str, images_origin: Option<&str>) -> String {
    let images = images_origin
        .map(|origin| format!(" {origin}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'nonce-{nonce}'; img-src 'self' data:{images}; connect-src 'self'; font-src 'self'; \
         object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The site's stylesheet, put in the page itself by the router (a stylesheet
/// link blocks the bootstrap script until it arrives; 1.5 KB of brotli is
/// cheaper than that round trip).
#[derive(Debug, Clone)]
pub struct InlineCss(pub std::sync::Arc<str>);

/// The origin images are served from when it is not the app's
/// (`storage.public_base_url`), provided to the pages by the router.
#[derive(Debug, Clone)]
pub struct ImagesOrigin(pub String);

/// The HTML document around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let (Some(nonce), Some(response)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) {
        let images = use_context::<ImagesOrigin>().map(|origin| origin.0);
        let policy = content_security_policy(&nonce, images.as_deref());
        if let Ok(policy) = axum::http::HeaderValue::from_str(&policy) {
            response.insert_header(axum::http::header::CONTENT_SECURITY_POLICY, policy);
        }
    }
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <link rel="icon" type="image/svg+xml" href="/favicon.svg" />
                <AutoReload options=options.clone() />
                // In the page when the server has it; otherwise the hashed file
                // (cached for a year).
                {match use_context::<InlineCss>() {
                    Some(css) => {
                        view! { <style nonce=leptos::nonce::use_nonce() inner_html=css.0.to_string()></style> }
                            .into_any()
                    }
                    None => view! { <HashedStylesheet options=options.clone() id="leptos" /> }.into_any(),
                }}
                // Islands: the bundle loads when the browser is idle and
                // hydrates only the `#[island]` parts of the page.
                <HydrationScripts options islands=true />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Router>
            <Routes fallback=|| view! { <NotFound /> }>
                // Async: each page is complete before it is sent, so it works
                // without JavaScript.
                <Route path=StaticSegment("") view=HomePage ssr=SsrMode::Async />
                <Route
                    path=(StaticSegment("i"), ParamSegment("id"))
                    view=ImagePage
                    ssr=SsrMode::Async
                />
                <Route
                    path=(StaticSegment("making"), ParamSegment("job"))
                    view=MakingPage
                    ssr=SsrMode::Async
                />
            </Routes>
        </Router>
    }
}
