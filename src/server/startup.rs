//! Builds the app from its settings and serves it. The router is built by a
//! function tests call directly, on a listener they choose.

use crate::api::AppInfo;
use crate::app::{shell, App};
use crate::domain::clock::{Clock, SystemClock};
use crate::domain::gallery::{Gallery, SharedGallery};
use crate::domain::generation::Generation;
use crate::domain::generator::{
    ImageGenerator, OfflineGenerator, ReplicateGenerator, ReplicateSettings,
};
use crate::domain::jobs::JobBoard;
use crate::domain::ratelimit::{
    parse_window, Algorithm, LimiterStore, MemoryStore, RateLimiter, RedisStore, StoreError,
    UpstashRestStore, UpstashSettings,
};
use crate::domain::shared::{MemoryState, SharedState};
use crate::domain::storage::{ImageStore, ObjectImageStore, StorageError};
use crate::server::client_ip::{identify_visitor, ClientIp, TrustedProxies};
use crate::server::handlers::{generate_json, remaining_json, serve_image};
use crate::server::settings::{IdentifyBy, KeyLocking, Secrets, Settings, SettingsError};
use axum::extract::FromRef;
use axum::http::{header, HeaderValue};
use axum::routing::get;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Leptos' own options (site root, output name), for rendering and static files.
    pub leptos_options: LeptosOptions,
    /// The generation flow: limiter, generator and image storage.
    pub generation: Arc<Generation>,
    /// Where images are served from (the same store the generation writes to).
    pub images: Arc<dyn ImageStore>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// The configuration the page may know about.
    pub info: AppInfo,
    /// One quota for everyone (the seed's "api-route") instead of one per visitor.
    pub shared_identity: bool,
}

impl AppState {
    /// The limiter identifier for a visitor.
    pub fn identity(&self, visitor: ClientIp) -> String {
        if self.shared_identity {
            "api-route".to_owned()
        } else {
            visitor.to_string()
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

/// Why the app could not start; each message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("Leptos configuration: {0}")]
    Leptos(String),
    #[error("{0}")]
    Config(String),
    #[error("rate-limit store ({variable}): {source}")]
    LimiterStore {
        variable: &'static str,
        source: StoreError,
    },
    #[error("image storage (storage.dir / LOFIANIME_STORAGE__DIR): {0}")]
    Storage(#[from] StorageError),
    #[error("could not listen on {addr}: {source} (set LEPTOS_SITE_ADDR to another address)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
}

/// The pieces the app is built from; tests substitute any of them.
pub struct Components {
    pub limiter_store: Arc<dyn LimiterStore>,
    /// Generations in flight, seen by every instance.
    pub shared: Arc<dyn SharedState>,
    /// Each visitor's recent images.
    pub gallery: Arc<dyn Gallery>,
    pub generator: Arc<dyn ImageGenerator>,
    pub images: Arc<dyn ImageStore>,
    pub clock: Arc<dyn Clock>,
}

/// A Redis-compatible store: the limiter's counters and the shared state.
pub trait RemoteStore: LimiterStore + SharedState {}
impl<T: LimiterStore + SharedState> RemoteStore for T {}

impl Components {
    /// One instance's components: in-flight generations in memory, recent images
    /// beside the images.
    pub fn local(
        limiter_store: Arc<dyn LimiterStore>,
        generator: Arc<dyn ImageGenerator>,
        images: ObjectImageStore,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            limiter_store,
            shared: Arc::new(MemoryState::new(clock.clone())),
            gallery: Arc::new(images.gallery()),
            generator,
            images: Arc::new(images),
            clock,
        }
    }

    /// Keeps the limiter's counters, in-flight generations and recent images in
    /// `store`, shared with every other instance that uses it.
    pub fn on_remote_store(mut self, store: Arc<dyn RemoteStore>) -> Self {
        self.shared = store.clone();
        self.gallery = Arc::new(SharedGallery::new(store.clone()));
        self.limiter_store = store;
        self
    }
}

/// Picks the store from the environment: Upstash REST when its URL and token are
/// set, native Redis when `REDIS_URL` is, `None` (memory) otherwise. A store that
/// is configured but unreachable, or refuses the credentials, stops start-up.
pub async fn remote_store(
    settings: &Settings,
    secrets: &Secrets,
) -> Result<Option<Arc<dyn RemoteStore>>, StartupError> {
    use secrecy::ExposeSecret;
    let timeout = Duration::from_millis(settings.ratelimit.store_timeout_ms);
    let upstash = (
        &secrets.upstash_redis_rest_url,
        &secrets.upstash_redis_rest_token,
    );
    match (upstash, &secrets.redis_url) {
        ((Some(_), Some(_)), Some(_)) => Err(StartupError::Config(
            "both REDIS_URL and UPSTASH_REDIS_REST_URL are set: set one of them".into(),
        )),
        ((Some(url), Some(token)), None) => {
            let url = url.expose_secret().to_owned();
            let key_locking = match settings.ratelimit.upstash_key_locking {
                KeyLocking::On => true,
                KeyLocking::Off => false,
                KeyLocking::Auto => UpstashSettings::key_locking_by_host(&url),
            };
            let store = UpstashRestStore::connect(UpstashSettings {
                url,
                token: token.clone(),
                timeout,
                key_locking,
            })
            .await
            .map_err(|source| StartupError::LimiterStore {
                variable: "UPSTASH_REDIS_REST_URL",
                source,
            })?;
            Ok(Some(Arc::new(store)))
        }
        ((Some(_), None), _) => Err(StartupError::Config(
            "UPSTASH_REDIS_REST_URL is set but UPSTASH_REDIS_REST_TOKEN is not".into(),
        )),
        ((None, Some(_)), _) => Err(StartupError::Config(
            "UPSTASH_REDIS_REST_TOKEN is set but UPSTASH_REDIS_REST_URL is not".into(),
        )),
        ((None, None), Some(url)) => {
            let store = RedisStore::connect(url.expose_secret(), timeout)
                .await
                .map_err(|source| StartupError::LimiterStore {
                    variable: "REDIS_URL",
                    source,
                })?;
            Ok(Some(Arc::new(store)))
        }
        ((None, None), None) => Ok(None),
    }
}

/// The Replicate model when `REPLICATE_API_TOKEN` is set, the offline painter otherwise.
pub fn generator(
    settings: &Settings,
    secrets: &Secrets,
) -> Result<Arc<dyn ImageGenerator>, StartupError> {
    let Some(token) = &secrets.replicate_api_token else {
        return Ok(Arc::new(OfflineGenerator::new(
            settings.image.width,
            settings.image.height,
            Duration::from_millis(settings.offline.delay_ms),
        )));
    };
    let base = secrets
        .replicate_base_url
        .as_deref()
        .unwrap_or("https://api.replicate.com");
    let base_url = url::Url::parse(base)
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http"))
        .ok_or_else(|| {
            StartupError::Config(format!(
                "REPLICATE_BASE_URL is not an http(s) URL: {base:?}"
            ))
        })?;
    let model = &settings.model;
    let generator = ReplicateGenerator::new(ReplicateSettings {
        base_url,
        token: token.clone(),
        model: model.id.clone(),
        version: model.version.clone(),
        prompt_prefix: model.prompt_prefix.clone(),
        input: model.input.clone(),
        deadline: Duration::from_secs(model.deadline_secs),
        wait: Duration::from_secs(model.wait_secs),
        poll_interval: Duration::from_millis(model.poll_interval_ms),
        max_image_bytes: model.max_image_bytes,
        backoff: Duration::from_millis(250),
    })
    .map_err(|e| StartupError::Config(e.to_string()))?;
    Ok(Arc::new(generator))
}

impl Components {
    /// The components the settings and secrets ask for.
    pub async fn from_settings(
        settings: &Settings,
        secrets: &Secrets,
    ) -> Result<Self, StartupError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let local = Self::local(
            Arc::new(MemoryStore::new(clock.clone())),
            generator(settings, secrets)?,
            ObjectImageStore::local_dir(&settings.storage.dir)?,
            clock,
        );
        Ok(match remote_store(settings, secrets).await? {
            Some(store) => local.on_remote_store(store),
            None => local,
        })
    }
}

impl AppState {
    pub fn new(
        settings: &Settings,
        components: Components,
        leptos_options: LeptosOptions,
    ) -> Result<Self, StartupError> {
        let algorithm = settings.algorithm().map_err(SettingsError::from)?;
        let everyone = if settings.ratelimit.global_limit > 0 {
            let budget = Algorithm::FixedWindow {
                limit: settings.ratelimit.global_limit,
                window_ms: parse_window(&settings.ratelimit.global_window)
                    .map_err(SettingsError::from)?,
            };
            Some(Arc::new(RateLimiter::new(
                components.limiter_store.clone(),
                budget,
                settings.ratelimit.prefix.clone(),
                components.clock.clone(),
            )))
        } else {
            None
        };
        let mut limiter = RateLimiter::new(
            components.limiter_store,
            algorithm,
            settings.ratelimit.prefix.clone(),
            components.clock.clone(),
        );
        if !settings.ratelimit.ephemeral_cache {
            limiter = limiter.without_cache();
        }
        let info = AppInfo {
            offline_generator: components.generator.is_offline(),
            max_prompt_chars: settings.prompt.max_chars,
            limit: settings.ratelimit.limit,
            window: settings.ratelimit.window.clone(),
            window_ms: algorithm.window_ms(),
        };
        Ok(Self {
            leptos_options,
            generation: Arc::new(Generation {
                limiter: Arc::new(limiter),
                generator: components.generator,
                images: components.images.clone(),
                max_prompt_chars: settings.prompt.max_chars,
                on_store_failure: settings.ratelimit.on_store_failure,
                everyone,
                jobs: Arc::new(JobBoard::new(
                    components.shared,
                    components.clock,
                    // Longer than any generation may take.
                    (settings.model.deadline_secs + 600) * 1000,
                )),
                gallery: components.gallery,
                cancel_check: Duration::from_millis(settings.progress.cancel_check_ms),
            }),
            images: components.images,
            trusted_proxies: Arc::new(TrustedProxies::new(
                settings.visitors.trusted_proxies.clone(),
                settings.visitors.client_ip_header,
            )),
            info,
            shared_identity: settings.ratelimit.identify_by == IdentifyBy::Shared,
        })
    }
}

/// The app's routes, worked out once per process. Leptos renders the whole app to
/// find them, with a process-wide flag set that freezes any resource first polled
/// meanwhile (leptos-rs/leptos#4773); generating them once, before anything is
/// served, keeps every real render out of that window, even when tests build many
/// routers side by side.
fn route_list() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// The whole app as an Axum router (without connection info; `serve` adds it).
pub fn router(state: AppState) -> Router {
    let routes = route_list();
    Router::new()
        .route("/images/{file}", get(serve_image))
        .route("/api/ai", axum::routing::post(generate_json))
        .route("/api/remaining", get(remaining_json))
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
        .leptos_routes_with_context(&state, routes, || {}, {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(axum::middleware::from_fn_with_state(
            state.leptos_options.hash_files,
            cache_static_files,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.trusted_proxies.clone(),
            identify_visitor,
        ))
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
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .with_state(state)
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

/// Reads the settings and the environment, builds the app and serves it until
/// Ctrl-C or SIGTERM.
pub async fn run() -> Result<(), StartupError> {
    // A missing .env is normal; a broken one is worth a warning.
    if let Err(error) = dotenvy::dotenv() {
        if !error.not_found() {
            tracing::warn!(%error, "could not read .env");
        }
    }
    let settings = Settings::load()?;
    let secrets = Secrets::from_env();
    let leptos_options = leptos::config::get_configuration(None)
        .map_err(|e| StartupError::Leptos(e.to_string()))?
        .leptos_options;
    let addr = leptos_options.site_addr;
    let components = Components::from_settings(&settings, &secrets).await?;

    tracing::info!(
        store = %components.limiter_store.describe(),
        algorithm = %settings.algorithm().map_err(SettingsError::from)?,
        window = %settings.ratelimit.window,
        on_store_failure = ?settings.ratelimit.on_store_failure,
        "rate limiter"
    );
    tracing::info!(generator = %components.generator.describe(), "image generator");
    tracing::info!(storage = %components.images.describe(), "image storage");
    tracing::info!(generations = %components.shared.describe(), recent_images = %components.gallery.describe(), "progress and recent images");
    if !settings.visitors.trusted_proxies.is_empty() {
        tracing::info!(proxies = ?settings.visitors.trusted_proxies, "X-Forwarded-For is believed from these proxies");
    }

    let state = AppState::new(&settings, components, leptos_options)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })?;
    tracing::info!("lofianime is listening on http://{addr}");
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .map_err(StartupError::Serve)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "could not listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "could not listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
