//! The whole app as an Axum router: each HTTP feature contributes its own
//! routes (the pages and server functions, the JSON API, the images, sign-in),
//! wrapped in the app's layers ([`middleware`]); the probes and metrics sit
//! outside them. Tests drive it directly, without a socket.
//!
//! [`middleware`]: crate::server::middleware

use crate::server::state::AppState;
use crate::server::{
    admin, admin_page, auth, health, images, json_api, middleware, pages, webhooks,
};
use axum::Router;

/// The whole app (without connection info; `serve` adds it).
pub fn router(state: AppState) -> Router {
    let features = Router::new()
        .merge(images::routes())
        .merge(json_api::routes())
        .merge(auth::routes::routes())
        .merge(admin::routes())
        .merge(admin_page::routes())
        .merge(pages::routes(&state));
    middleware::around(features, &state)
        // From Replicate, not a visitor: outside the visitor-facing layers.
        .merge(webhooks::routes())
        .with_state(state.clone())
        // Polled by load balancers: outside the logging and other layers.
        .merge(health::routes(state))
}
