//! lofianime: a prompt goes in, a lofi-anime image comes out, and every visitor is
//! rate-limited so the owner's model bill stays bounded.
//!
//! Layout: `app` (UI components), `api` (server-function signatures) and `wire`
//! (the server-function error type and codec, over the `lofianime_wire` crate's
//! shared types, whose `progress` and `prompt` are re-exported here) compile for
//! both the server and the browser. Everything that only runs on the server is
//! gated once, here: `server` (settings, router, the glue between Axum, Leptos
//! and the `lofianime_domain` crate, which holds the limiter, generators and
//! storage and cannot reach Leptos).

// Leptos' typed views nest deeply; the WASM build lays them out past the default.
#![recursion_limit = "256"]

pub mod api;
pub mod app;
pub mod wire;

pub use lofianime_wire::{progress, prompt, shape};

#[cfg(feature = "ssr")]
pub mod server;

/// Entry point of the WASM bundle: hydrates the islands of the server-rendered
/// page (the rest of the page is plain HTML).
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    // Readable panics in the console while developing; release bundles go
    // without (570 B of brotli on every first load).
    #[cfg(debug_assertions)]
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_islands();
}
