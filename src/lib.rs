//! lofianime: a prompt goes in, a lofi-anime image comes out, and every visitor is
//! rate-limited so the owner's model bill stays bounded.
//!
//! Layout: `app` (UI components) and `api` (server-function signatures and the
//! types they exchange) compile for both the server and the browser. `prompt` is
//! plain validation shared by both. Everything that only runs on the server is
//! gated once, here: `domain` (limiter, generator, storage; no Leptos inside) and
//! `server` (settings, router, the glue between Axum, Leptos and the domain).

pub mod api;
pub mod app;
pub mod progress;
pub mod prompt;

#[cfg(feature = "ssr")]
pub mod domain;
#[cfg(feature = "ssr")]
pub mod server;

/// Entry point of the WASM bundle: hydrates the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
