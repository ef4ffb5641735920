//! Composition: the settings and secrets decide which store, generator and image
//! storage the studio runs on, and with which policy. Nothing here serves HTTP.

use crate::server::settings::Backend;
use lofianime_domain::{CallLimits, MemoryStore, WebhookSettings};
use lofianime_domain::{Clock, SystemClock};
use lofianime_domain::{
    CogGenerator, CogServer, CogSettings, CogWebhook, ImageGenerator, OfflineGenerator,
    ReplicateGenerator, ReplicateSettings,
};

use crate::server::auth::Auth;
use crate::server::client_ip::TrustedProxies;
use crate::server::settings::StorageUrl;
use crate::server::settings::{AuthMode, IdentifyBy, KeyLocking, Secrets, Settings, SettingsError};
use crate::server::state::AppState;
use crate::wire::AppInfo;
use leptos::config::LeptosOptions;
use lofianime_domain::WhoPays;
use lofianime_domain::{Components, Policy, RemoteStore, Studio};
use lofianime_domain::{ObjectImageStore, StorageError};
use lofianime_domain::{RedisStore, StoreError, UpstashRestStore, UpstashSettings};
use lofianime_domain::{RunHistory, SignedOut, SpendPolicy};
use std::sync::Arc;
use std::time::Duration;

/// Why the app could not be put together; each message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("{0}")]
    Config(String),
    #[error("rate-limit store ({variable}): {source}")]
    LimiterStore {
        variable: &'static str,
        source: StoreError,
    },
    #[error("image storage (storage.url / LOFIANIME_STORAGE__URL): {0}")]
    Storage(#[from] StorageError),
    #[error("image storage {store} (storage.url / LOFIANIME_STORAGE__URL): {problem}")]
    StorageCheck { store: String, problem: String },
}

/// Picks the store from the environment: Upstash REST when its URL and token are
/// set, native Redis when `REDIS_URL` is, `None` (memory) otherwise. A store that
/// is configured but unreachable, or refuses the credentials, stops start-up.
pub async fn remote_store(
    settings: &Settings,
    secrets: &Secrets,
) -> Result<Option<Arc<dyn RemoteStore>>, ComposeError> {
    use secrecy::ExposeSecret;
    let timeout = Duration::from_millis(settings.ratelimit.store_timeout_ms);
    let upstash = (
        &secrets.upstash_redis_rest_url,
        &secrets.upstash_redis_rest_token,
    );
    match (upstash, &secrets.redis_url) {
        ((Some(_), Some(_)), Some(_)) => Err(ComposeError::Config(
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
            .map_err(|source| ComposeError::LimiterStore {
                variable: "UPSTASH_REDIS_REST_URL",
                source,
            })?;
            Ok(Some(Arc::new(store)))
        }
        ((Some(_), None), _) => Err(ComposeError::Config(
            "UPSTASH_REDIS_REST_URL is set but UPSTASH_REDIS_REST_TOKEN is not".into(),
        )),
        ((None, Some(_)), _) => Err(ComposeError::Config(
            "UPSTASH_REDIS_REST_TOKEN is set but UPSTASH_REDIS_REST_URL is not".into(),
        )),
        ((None, None), Some(url)) => {
            let store = RedisStore::connect(url.expose_secret(), timeout)
                .await
                .map_err(|source| ComposeError::LimiterStore {
                    variable: "REDIS_URL",
                    source,
                })?;
            warn_if_evicting(&store).await;
            Ok(Some(Arc::new(store)))
        }
        ((None, None), None) => Ok(None),
    }
}

/// The limiter's counters must never be evicted: an evicted counter is a fresh
/// quota. Warns when Redis says it may evict keys (managed services that refuse
/// `CONFIG` are left alone).
async fn warn_if_evicting(store: &RedisStore) {
    let command = ["CONFIG", "GET", "maxmemory-policy"]
        .map(String::from)
        .to_vec();
    let Ok(lofianime_domain::Reply::List(items)) = store.send(command).await else {
        return;
    };
    if let Some(lofianime_domain::Reply::Text(policy)) = items.get(1) {
        if policy != "noeviction" {
            tracing::warn!(
                %policy,
                "Redis may evict keys (maxmemory-policy): an evicted rate-limit counter is a fresh quota; set maxmemory-policy noeviction or give the app a Redis of its own"
            );
        }
    }
}

/// The image model and, for a hosted one, its provider's list of runs.
pub struct Model {
    pub generator: Arc<dyn ImageGenerator>,
    pub history: Option<Arc<dyn RunHistory>>,
}

/// The Replicate model when `REPLICATE_API_TOKEN` is set, the offline painter
/// otherwise; its call budget and webhook records in `store` (shared by the
/// instances), or in memory.
pub fn model(
    settings: &Settings,
    secrets: &Secrets,
    store: Option<Arc<dyn RemoteStore>>,
) -> Result<Model, ComposeError> {
    let offline = || Model {
        generator: Arc::new(OfflineGenerator::new(
            settings.image.width,
            settings.image.height,
            Duration::from_millis(settings.offline.delay_ms),
        )),
        history: None,
    };
    let token = match (settings.model.backend, &secrets.replicate_api_token) {
        (Backend::Offline, _) | (Backend::Auto, None) => return Ok(offline()),
        (Backend::Cog, _) => return cog_model(settings, secrets, store),
        (Backend::Replicate, None) => {
            return Err(ComposeError::Config(
                "model.backend = \"replicate\" needs REPLICATE_API_TOKEN".into(),
            ))
        }
        (Backend::Replicate | Backend::Auto, Some(token)) => token,
    };
    let base = secrets
        .replicate_base_url
        .as_deref()
        .unwrap_or("https://api.replicate.com");
    let base_url = url::Url::parse(base)
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http"))
        .ok_or_else(|| {
            // The value is not repeated: it may carry credentials.
            ComposeError::Config("REPLICATE_BASE_URL is not an http(s) URL".into())
        })?;
    let model = &settings.model;
    let store =
        store.unwrap_or_else(|| Arc::new(MemoryStore::new(Arc::new(SystemClock))) as Arc<_>);
    let generator = ReplicateGenerator::on_store(
        ReplicateSettings {
            base_url,
            token: token.clone(),
            model: model.id.clone(),
            version: model.version.clone(),
            prompt_prefix: model.prompt_prefix.clone(),
            input: model.input.clone(),
            deadline: Duration::from_secs(model.deadline_secs),
            cancel_after: Duration::from_secs(model.cancel_after_secs()),
            wait: Duration::from_secs(model.wait_secs),
            poll_interval: Duration::from_millis(model.poll_interval_ms),
            max_image_bytes: model.max_image_bytes,
            backoff: Duration::from_millis(250),
            limits: CallLimits {
                creates: model.budget_creates,
                others: model.budget_calls,
                window: Duration::from_secs(model.budget_window_secs),
            },
            webhooks: webhooks(settings, secrets)?,
        },
        store,
    )
    .map_err(|e| ComposeError::Config(e.to_string()))?;
    let replicate = Arc::new(generator);
    Ok(Model {
        generator: replicate.clone(),
        history: Some(replicate),
    })
}

/// The owner's Cog model servers (`COG_URLS`), their pool and run records in
/// `store` (shared by the instances) or in memory.
fn cog_model(
    settings: &Settings,
    secrets: &Secrets,
    store: Option<Arc<dyn RemoteStore>>,
) -> Result<Model, ComposeError> {
    use secrecy::ExposeSecret;
    let Some(urls) = &secrets.cog_urls else {
        return Err(ComposeError::Config(
            "model.backend = \"cog\" needs COG_URLS (the model servers' addresses, comma-separated)"
                .into(),
        ));
    };
    let mut servers = Vec::new();
    for (n, text) in urls.expose_secret().split(',').enumerate() {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        // The value is not repeated: it may carry credentials.
        let url = url::Url::parse(text)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
            .ok_or_else(|| {
                ComposeError::Config(format!("COG_URLS: address {} is not an http(s) URL", n + 1))
            })?;
        servers.push(CogServer {
            url,
            token: secrets.cog_token.clone(),
        });
    }
    if servers.is_empty() {
        return Err(ComposeError::Config(
            "COG_URLS names no model server".into(),
        ));
    }
    let base = settings
        .cog
        .webhook_base_url
        .clone()
        .or_else(|| settings.site.public_origin());
    let webhook = match (&secrets.cog_webhook_token, base) {
        (Some(token), Some(base)) => {
            let url = url::Url::parse(&format!("{}/webhooks/cog", base.trim_end_matches('/')))
                .map_err(|_| {
                    ComposeError::Config("cog.webhook_base_url is not a usable address".into())
                })?;
            Some(CogWebhook {
                url,
                token: token.clone(),
            })
        }
        (Some(_), None) => {
            return Err(ComposeError::Config(
                "COG_WEBHOOK_TOKEN is set but neither cog.webhook_base_url nor site.public_url says where the model servers reach the app".into(),
            ))
        }
        (None, _) => None,
    };
    let model = &settings.model;
    let state =
        store.unwrap_or_else(|| Arc::new(MemoryStore::new(Arc::new(SystemClock))) as Arc<_>);
    let generator = CogGenerator::new(
        CogSettings {
            servers,
            prompt_prefix: model.prompt_prefix.clone(),
            input: model.input.clone(),
            deadline: Duration::from_secs(model.deadline_secs),
            max_image_bytes: model.max_image_bytes,
            webhook,
        },
        state,
        Arc::new(SystemClock),
    )
    .map_err(|e| ComposeError::Config(e.to_string()))?;
    Ok(Model {
        generator: Arc::new(generator),
        history: None,
    })
}

/// Where Replicate sends its events, when webhooks are on.
fn webhooks(
    settings: &Settings,
    secrets: &Secrets,
) -> Result<Option<WebhookSettings>, ComposeError> {
    use secrecy::ExposeSecret;
    let origin = settings.site.public_origin();
    if !settings.model.webhooks_on(origin.as_deref()) {
        return Ok(None);
    }
    let Some(origin) = origin else {
        return Ok(None);
    };
    let url = url::Url::parse(&format!("{origin}/webhooks/replicate"))
        .map_err(|_| ComposeError::Config("site.public_url is not a usable address".into()))?;
    if let Some(secret) = &secrets.replicate_webhook_secret {
        // Checked at start-up, never repeated: it is a secret.
        let key = secret.expose_secret();
        let usable = key.strip_prefix("whsec_").is_some_and(|key| {
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key)
                .is_ok_and(|bytes| !bytes.is_empty())
        });
        if !usable {
            return Err(ComposeError::Config(
                "REPLICATE_WEBHOOK_SECRET is not a webhook signing secret: it must be whsec_ followed by base64 (GET /v1/webhooks/default/secret gives it)".into(),
            ));
        }
    }
    Ok(Some(WebhookSettings {
        url,
        secret: secrets.replicate_webhook_secret.clone(),
        fallback_poll: Duration::from_secs(settings.model.fallback_poll_secs),
    }))
}

/// How long the start-up check of the image store may take.
const STORAGE_CHECK: Duration = Duration::from_secs(10);

/// The image store `storage.url` names, checked: it must answer and take a write.
pub async fn image_store(settings: &Settings) -> Result<ObjectImageStore, ComposeError> {
    let store = match settings.storage.location() {
        StorageUrl::Dir(dir) => ObjectImageStore::local_dir(&dir)?,
        StorageUrl::Memory => ObjectImageStore::in_memory(),
        StorageUrl::S3 { bucket, prefix } => ObjectImageStore::s3(&bucket, prefix.as_deref())?,
    }
    .with_timeout(Duration::from_secs(settings.storage.timeout_secs))
    // Served from another address, a missing variant cannot be made on its
    // first request: every variant is made before the answer.
    .with_all_variants_first(settings.storage.public_base().is_some());
    store
        .check_writable(STORAGE_CHECK)
        .await
        .map_err(|problem| ComposeError::StorageCheck {
            store: store.description().to_owned(),
            problem,
        })?;
    Ok(store)
}

/// The components the settings and secrets ask for.
pub async fn components(
    settings: &Settings,
    secrets: &Secrets,
) -> Result<Components, ComposeError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let keep = settings.recent.keep;
    let store = remote_store(settings, secrets).await?;
    let model = model(settings, secrets, store.clone())?;
    let mut local = Components::local(model.generator, image_store(settings).await?, clock, keep);
    if let Some(history) = model.history {
        local = local.with_history(history);
    }
    Ok(match store {
        Some(store) => local.on_remote_store(store, keep),
        None => local,
    })
}

/// The studio's policy, from the settings.
pub fn policy(settings: &Settings) -> Policy {
    let limits = &settings.ratelimit;
    Policy {
        algorithm: settings.algorithm(),
        prefix: limits.prefix.clone(),
        ephemeral_cache: limits.ephemeral_cache,
        budget: limits.budget(),
        who_pays: match limits.identify_by {
            IdentifyBy::Visitor => WhoPays::EachVisitor,
            IdentifyBy::Shared => WhoPays::Everyone,
        },
        signed_out: match settings.auth.mode {
            AuthMode::Off => SignedOut::SameQuota,
            AuthMode::Required => SignedOut::MustSignIn,
            AuthMode::Optional if limits.anonymous_limit == 0 => SignedOut::MustSignIn,
            AuthMode::Optional => {
                SignedOut::OwnQuota(settings.algorithm_with_limit(limits.anonymous_limit))
            }
        },
        on_store_failure: limits.on_store_failure,
        max_prompt_chars: settings.prompt.max_chars,
        // Longer than any generation may take.
        job_ttl_ms: (settings.model.deadline_secs + 600) * 1000,
        cancel_check: Duration::from_millis(settings.progress.cancel_check_ms),
        return_grace: Duration::from_secs(settings.progress.return_grace_secs),
        max_refunds_per_window: Some(limits.max_refunds_per_window.unwrap_or(limits.limit)),
        spend: SpendPolicy {
            usd_per_second: settings.spend.usd_per_second,
            daily_usd: settings.spend.daily_usd,
            expected_seconds: settings.spend.expected_seconds,
            keep_days: settings.spend.keep_days,
            reconcile_every: Duration::from_secs(settings.spend.reconcile_secs),
            run_deadline: Duration::from_secs(settings.model.deadline_secs),
            // A process this one replaces drains this long, then stops its runs.
            takeover_after: Duration::from_secs(settings.shutdown.grace_secs + 5),
        },
    }
}

impl AppState {
    /// The app on `components`, with the settings' policies.
    pub fn new(
        settings: &Settings,
        secrets: &Secrets,
        components: Components,
        leptos_options: LeptosOptions,
    ) -> Result<Self, SettingsError> {
        let auth = Auth::new(settings, secrets)?;
        let admin = crate::server::admin_access::AdminAccess::from_settings(settings, secrets)?;
        let policy = policy(settings);
        let studio = Studio::new(policy.clone(), components);
        let info = AppInfo {
            offline_generator: studio.is_offline(),
            max_prompt_chars: settings.prompt.max_chars,
            limit: settings.ratelimit.limit,
            window: settings.ratelimit.window.to_string(),
            window_ms: policy.algorithm.window_ms(),
            recent_images: settings.recent.keep,
        };
        Ok(Self {
            leptos_options,
            studio: Arc::new(studio),
            trusted_proxies: Arc::new(TrustedProxies::new(
                settings.visitors.trusted_proxies.clone(),
                settings.visitors.client_ip_header,
            )),
            info,
            public_origin: settings.site.public_origin(),
            images_base: settings.storage.public_base(),
            metrics: None,
            auth: Arc::new(auth),
            admin,
            generations: tokio_util::task::TaskTracker::new(),
        })
    }
}
