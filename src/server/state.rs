//! What every handler and server function shares: the domain's front door, the
//! proxies whose forwarding header is believed, and what the page may know.

use crate::server::client_ip::TrustedProxies;
use crate::wire::AppInfo;
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use lofianime_domain::ImageKey;
use lofianime_domain::Studio;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    /// Leptos' own options (site root, output name), for rendering and static files.
    pub leptos_options: LeptosOptions,
    /// The domain's use cases.
    pub studio: Arc<Studio>,
    /// Proxies whose forwarding header is believed.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// The configuration the page may know about.
    pub info: AppInfo,
    /// The site's public address for absolute links (`site.public_url`), if set.
    pub public_origin: Option<String>,
    /// Where visitors fetch images from (`storage.public_base_url`, ending in
    /// `/`); `None`: the app's own `/images/`.
    pub images_base: Option<String>,
    /// `/metrics`, when `METRICS_TOKEN` is set.
    pub metrics: Option<Arc<crate::server::metrics::MetricsEndpoint>>,
    /// Sign-in (off unless `auth.mode` says otherwise).
    pub auth: Arc<crate::server::auth::Auth>,
    /// The owner's API, when `ADMIN_TOKEN` is set.
    pub admin: Option<Arc<crate::server::admin_access::AdminAccess>>,
    /// Page generations running apart from their requests
    /// ([`crate::server::returning`]): a shutdown waits for them as for
    /// requests in flight.
    pub generations: tokio_util::task::TaskTracker,
}

impl AppState {
    /// The URL visitors fetch the stored image `key` from.
    pub fn image_url(&self, key: &ImageKey) -> String {
        match &self.images_base {
            Some(base) => format!("{base}{key}"),
            None => key.url(),
        }
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

impl FromRef<AppState> for Arc<TrustedProxies> {
    fn from_ref(state: &AppState) -> Self {
        state.trusted_proxies.clone()
    }
}
