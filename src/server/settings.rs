//! The app's settings, read once at start-up: built-in defaults, then `Leptos.toml`
//! (the owner's non-secret choices), then `LOFIANIME_*` environment variables.
//! Secrets come only from the environment (or a `.env` file) and have no defaults.

use crate::domain::generation::FailurePolicy;
use crate::domain::ratelimit::{parse_window, Algorithm, WindowError, DEFAULT_PREFIX};
use crate::prompt::DEFAULT_MAX_CHARS;
use crate::server::client_ip::ClientIpHeader;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use ipnet::IpNet;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The settings file read when `LOFIANIME_CONFIG` does not name another.
pub const DEFAULT_SETTINGS_FILE: &str = "Leptos.toml";

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub ratelimit: RateLimitSettings,
    pub visitors: VisitorSettings,
    pub prompt: PromptSettings,
    pub model: ModelSettings,
    pub image: ImageSettings,
    pub offline: OfflineSettings,
    pub storage: StorageSettings,
    pub progress: ProgressSettings,
    pub recent: RecentSettings,
    pub server: ServerSettings,
    pub site: SiteSettings,
    pub shutdown: ShutdownSettings,
    pub workers: WorkerSettings,
    pub auth: AuthSettings,
}

/// Sign-in (OpenID Connect) and what it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// `off` (no sign-in), `optional` (accounts get `ratelimit.limit`, signed-out
    /// visitors `ratelimit.anonymous_limit`) or `required` (only accounts generate).
    pub mode: AuthMode,
    /// What names an account in the limiter's keys: its verified `email` (as
    /// lofianime.com wrote them) or the provider's `subject` (`sub`).
    pub identify_accounts_by: AccountKey,
    /// How long a sign-in lasts, in days.
    pub session_days: u32,
    /// The provider's name on the page: "Sign in with Google".
    pub provider_name: String,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mode: AuthMode::Off,
            identify_accounts_by: AccountKey::Email,
            session_days: 30,
            provider_name: "Google".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    Off,
    Optional,
    Required,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountKey {
    Email,
    Subject,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// CPU-bound tasks (offline painting, image variants) run at once; the
    /// rest wait in a queue. Unset: the number of cores.
    pub cpu: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownSettings {
    /// On SIGTERM / Ctrl-C, how long generations in flight may run on before
    /// they are stopped (model run cancelled, credit given back), in seconds.
    pub grace_secs: u64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self { grace_secs: 30 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteSettings {
    /// The site's public address (`https://lofianime.example`), for absolute
    /// links: an image page's `og:image` and `og:url`. Unset: the request's
    /// `Host` header, over http.
    pub public_url: Option<String>,
}

impl SiteSettings {
    /// The public address without a trailing slash, if set.
    pub fn public_origin(&self) -> Option<String> {
        self.public_url
            .as_deref()
            .map(|url| url.trim().trim_end_matches('/').to_owned())
            .filter(|url| !url.is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Longest a client may take to send a request's headers, in seconds (also
    /// how long an idle keep-alive connection stays open).
    pub header_read_timeout_secs: u64,
    /// Most connections served at once; more wait to be accepted.
    pub max_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 10,
            max_connections: 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub algorithm: AlgorithmName,
    /// Generations per visitor per window (token bucket: the bucket's size).
    pub limit: u64,
    /// Window length, written as `@upstash/ratelimit` writes it ("1440 m").
    /// Token bucket: the refill interval.
    pub window: String,
    /// Token bucket only: tokens added every `window` (default: `limit`).
    pub refill_rate: Option<u64>,
    /// Redis key prefix, shared with any Node app using `@upstash/ratelimit`.
    pub prefix: String,
    /// Remember refused visitors in this process until their reset, sparing the
    /// store a round trip (as `@upstash/ratelimit`'s ephemeral cache does).
    pub ephemeral_cache: bool,
    /// What to do when the store cannot answer: `deny` (refuse generations, the
    /// default: the limiter guards a paid API) or `allow` (generate unmetered).
    pub on_store_failure: FailurePolicy,
    /// Bound on each store request, in milliseconds.
    pub store_timeout_ms: u64,
    /// Scripts carry Upstash's `allow-key-locking` flag: `auto` (only for
    /// `*.upstash.io` hosts), `on` or `off`.
    pub upstash_key_locking: KeyLocking,
    /// Generations all visitors together may run per `global_window` (0: no
    /// shared budget). Checked after the visitor's own limit, before any model call.
    pub global_limit: u64,
    pub global_window: String,
    /// `visitor`: each visitor has their own quota (by address); `shared`: one
    /// quota for everyone, as in the seed article (identifier "api-route").
    pub identify_by: IdentifyBy,
    /// How many failures per window give the visitor's credit back (default: `limit`).
    pub max_refunds_per_window: Option<u64>,
    /// With `auth.mode = "optional"`: generations per window for a signed-out
    /// visitor (by address); 0: signed-out visitors must sign in to generate.
    pub anonymous_limit: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentifyBy {
    Visitor,
    Shared,
}

/// The algorithms of `@upstash/ratelimit`, as written in the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlgorithmName {
    FixedWindow,
    SlidingWindow,
    TokenBucket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyLocking {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VisitorSettings {
    /// Proxies whose forwarding header is believed: addresses (`127.0.0.1`) or
    /// CIDR ranges (`10.0.0.0/8`). Empty: the socket address identifies the
    /// visitor and the header is ignored.
    #[serde(deserialize_with = "addresses_or_networks")]
    pub trusted_proxies: Vec<IpNet>,
    /// Which header those proxies put the visitor's address in:
    /// `x-forwarded-for` (default), `x-real-ip` or `cf-connecting-ip`.
    pub client_ip_header: ClientIpHeader,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptSettings {
    pub max_chars: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSettings {
    /// `owner/name` of the Replicate model.
    pub id: String,
    /// The model version (64 hex digits).
    pub version: String,
    /// Put in front of every visitor prompt; the model was trained on this phrase.
    pub prompt_prefix: String,
    /// Overall bound on one generation, from create to stored image (seconds).
    pub deadline_secs: u64,
    /// How long the create request is held open for a synchronous answer (1–60 s).
    pub wait_secs: u64,
    /// Pause between polls once the prediction runs asynchronously (milliseconds).
    pub poll_interval_ms: u64,
    /// Largest output image accepted (bytes).
    pub max_image_bytes: usize,
    /// The model's inputs besides the prompt, passed as they are.
    pub input: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageSettings {
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineSettings {
    /// Extra latency for the offline generator, to imitate a model (milliseconds).
    pub delay_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Directory where generated images are kept (when `url` is not set).
    pub dir: PathBuf,
    /// Where images are kept, as a URL: `file://data/images`, `s3://bucket` or
    /// `s3://bucket/prefix` (credentials and endpoint from the standard AWS_*
    /// variables), `memory://` (tests). Unset: `file://` + `dir`.
    pub url: Option<String>,
    /// Where visitors fetch images from instead of the app's `/images/`: a CDN
    /// or the bucket's public domain (`https://images.example/lofianime/`),
    /// serving the same file names. Unset: the app serves them.
    pub public_base_url: Option<String>,
}

/// Where images are kept, as `storage.url` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    Dir(PathBuf),
    S3 {
        bucket: String,
        prefix: Option<String>,
    },
    Memory,
}

impl StorageSettings {
    /// `public_base_url`, ending in `/`, if set.
    pub fn public_base(&self) -> Option<String> {
        let url = self.public_base_url.as_deref()?.trim();
        (!url.is_empty()).then(|| format!("{}/", url.trim_end_matches('/')))
    }

    /// The storage `url` names (or `dir`, when it is unset).
    pub fn location(&self) -> Result<StorageUrl, SettingsError> {
        let Some(url) = self.url.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(StorageUrl::Dir(self.dir.clone()));
        };
        let problem = |problem: &str| invalid("storage.url (LOFIANIME_STORAGE__URL)", problem);
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return problem("file:// needs a directory, e.g. file://data/images");
            }
            return Ok(StorageUrl::Dir(PathBuf::from(path)));
        }
        if url == "memory://" {
            return Ok(StorageUrl::Memory);
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = match rest.split_once('/') {
                Some((bucket, prefix)) => (bucket, prefix.trim_matches('/')),
                None => (rest, ""),
            };
            // S3's bucket naming rules, the parts that matter for a URL.
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !valid_bucket {
                return problem(
                    "s3:// needs a bucket name of 3 to 63 lowercase letters, digits, dots or dashes, e.g. s3://my-bucket/images",
                );
            }
            if prefix.contains("..") || prefix.contains('?') || prefix.contains('#') {
                return problem(
                    "the prefix after the bucket must be a plain path, e.g. s3://my-bucket/images",
                );
            }
            return Ok(StorageUrl::S3 {
                bucket: bucket.to_owned(),
                prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
            });
        }
        problem("must start with file://, s3:// or be memory://")
    }
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            algorithm: AlgorithmName::FixedWindow,
            limit: 5,
            window: "1440 m".into(),
            refill_rate: None,
            prefix: DEFAULT_PREFIX.into(),
            ephemeral_cache: true,
            on_store_failure: FailurePolicy::Deny,
            store_timeout_ms: 2_000,
            upstash_key_locking: KeyLocking::Auto,
            global_limit: 500,
            global_window: "1440 m".into(),
            identify_by: IdentifyBy::Visitor,
            max_refunds_per_window: None,
            anonymous_limit: 1,
        }
    }
}

impl Default for PromptSettings {
    fn default() -> Self {
        Self {
            max_chars: DEFAULT_MAX_CHARS,
        }
    }
}

impl Default for ModelSettings {
    fn default() -> Self {
        let serde_json::Value::Object(input) = serde_json::json!({
            "negative_prompt": "ugly, deformed, noisy, blurry, distorted, out of focus, bad anatomy, extra limbs, poorly drawn face, poorly drawn hands, missing fingers, text, watermark, signature, low quality, jpeg artifacts",
            "width": 1024,
            "height": 1024,
            "num_outputs": 1,
            "scheduler": "K_EULER",
            "num_inference_steps": 50,
            "guidance_scale": 7.5,
            "prompt_strength": 0.8,
            "refine": "no_refiner",
            "high_noise_frac": 0.8,
            "apply_watermark": true,
            "lora_scale": 0.6,
        }) else {
            unreachable!("a JSON object literal")
        };
        Self {
            id: "doriandarko/sdxl-hiroshinagai".into(),
            version: "563a66acc0b39e5308e8372bed42504731b7fec3bc21f2fcbea413398690f3ec".into(),
            prompt_prefix: "In the style of HISGH. ".into(),
            deadline_secs: 120,
            wait_secs: 5,
            poll_interval_ms: 500,
            max_image_bytes: 20_000_000,
            input,
        }
    }
}

impl Default for ImageSettings {
    fn default() -> Self {
        Self {
            width: 768,
            height: 768,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProgressSettings {
    /// How often a running generation looks for a cancel request (milliseconds):
    /// the longest a cancel waits, and with Redis / Upstash one read per period
    /// per running generation.
    pub cancel_check_ms: u64,
}

impl Default for ProgressSettings {
    fn default() -> Self {
        Self {
            cancel_check_ms: 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecentSettings {
    /// How many recent images are kept per visitor (and shown on the page).
    pub keep: usize,
}

impl Default for RecentSettings {
    fn default() -> Self {
        Self {
            keep: crate::domain::gallery::DEFAULT_KEEP,
        }
    }
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data/images"),
            url: None,
            public_base_url: None,
        }
    }
}

/// A setting with a bad value.
/// An http(s) URL with a host and no query or fragment: a site's or a CDN's
/// public address.
fn is_plain_http_address(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https")
            && url.host().is_some()
            && url.query().is_none()
            && url.fragment().is_none()
    })
}

fn invalid<T>(name: &'static str, problem: &str) -> Result<T, SettingsError> {
    Err(SettingsError::Invalid {
        name,
        problem: problem.to_owned(),
    })
}

/// `trusted_proxies`: each entry an address (one host) or a CIDR range.
fn addresses_or_networks<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<IpNet>, D::Error> {
    let entries = Vec::<String>::deserialize(deserializer)?;
    entries
        .iter()
        .map(|entry| {
            let entry = entry.trim();
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{entry:?} is neither an address (127.0.0.1, ::1) nor a CIDR range (10.0.0.0/8)"
                    ))
                })
        })
        .collect()
}

/// A setting that stops start-up; the message names the setting and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("could not read the settings: {0}")]
    Read(#[from] Box<figment::Error>),
    #[error("ratelimit.window (LOFIANIME_RATELIMIT__WINDOW): {0}")]
    Window(#[from] WindowError),
    #[error("{name}: {problem}")]
    Invalid { name: &'static str, problem: String },
}

impl Settings {
    /// Reads the settings: defaults, then the file named by `LOFIANIME_CONFIG` (or
    /// `Leptos.toml` in the working directory, if present), then `LOFIANIME_*`
    /// variables (`LOFIANIME_RATELIMIT__LIMIT=10` sets `ratelimit.limit`).
    pub fn load() -> Result<Self, SettingsError> {
        let file = std::env::var_os("LOFIANIME_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SETTINGS_FILE));
        if std::env::var_os("LOFIANIME_CONFIG").is_some() && !file.exists() {
            return Err(SettingsError::Invalid {
                name: "LOFIANIME_CONFIG",
                problem: format!("the settings file {} does not exist", file.display()),
            });
        }
        Self::from_figment(Self::figment(&file))
    }

    fn figment(file: &Path) -> Figment {
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(file))
            .merge(Env::prefixed("LOFIANIME_").ignore(&["config"]).split("__"))
    }

    fn from_figment(figment: Figment) -> Result<Self, SettingsError> {
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        self.validate_limits()?;
        self.validate_model()?;
        self.validate_page_and_server()
    }

    fn validate_limits(&self) -> Result<(), SettingsError> {
        if self.ratelimit.limit == 0 {
            return invalid(
                "ratelimit.limit (LOFIANIME_RATELIMIT__LIMIT)",
                "must be at least 1",
            );
        }
        parse_window(&self.ratelimit.window)?;
        parse_window(&self.ratelimit.global_window)?;
        if self.ratelimit.refill_rate == Some(0) {
            return invalid(
                "ratelimit.refill_rate (LOFIANIME_RATELIMIT__REFILL_RATE)",
                "must be at least 1",
            );
        }
        if self.ratelimit.store_timeout_ms == 0 {
            return invalid(
                "ratelimit.store_timeout_ms (LOFIANIME_RATELIMIT__STORE_TIMEOUT_MS)",
                "must be at least 1",
            );
        }
        if self.ratelimit.prefix.is_empty() {
            return invalid(
                "ratelimit.prefix (LOFIANIME_RATELIMIT__PREFIX)",
                "must not be empty",
            );
        }
        Ok(())
    }

    fn validate_model(&self) -> Result<(), SettingsError> {
        if !(1..=60).contains(&self.model.wait_secs) {
            return invalid(
                "model.wait_secs (LOFIANIME_MODEL__WAIT_SECS)",
                "must be between 1 and 60",
            );
        }
        if self.model.deadline_secs == 0
            || self.model.poll_interval_ms == 0
            || self.model.max_image_bytes == 0
        {
            return invalid(
                "model.deadline_secs / poll_interval_ms / max_image_bytes",
                "must be greater than 0",
            );
        }
        if !(50..=10_000).contains(&self.progress.cancel_check_ms) {
            return invalid(
                "progress.cancel_check_ms (LOFIANIME_PROGRESS__CANCEL_CHECK_MS)",
                "must be between 50 and 10000",
            );
        }
        let version_ok = self.model.version.len() == 64
            && self.model.version.bytes().all(|b| b.is_ascii_hexdigit());
        if !version_ok {
            return invalid(
                "model.version (LOFIANIME_MODEL__VERSION)",
                "must be the 64-hex-digit version id",
            );
        }
        if !(1..=10_000).contains(&self.prompt.max_chars) {
            return invalid(
                "prompt.max_chars (LOFIANIME_PROMPT__MAX_CHARS)",
                "must be between 1 and 10000",
            );
        }
        Ok(())
    }

    fn validate_page_and_server(&self) -> Result<(), SettingsError> {
        if !(1..=300).contains(&self.server.header_read_timeout_secs) {
            return invalid(
                "server.header_read_timeout_secs (LOFIANIME_SERVER__HEADER_READ_TIMEOUT_SECS)",
                "must be between 1 and 300",
            );
        }
        if !(1..=1_000_000).contains(&self.server.max_connections) {
            return invalid(
                "server.max_connections (LOFIANIME_SERVER__MAX_CONNECTIONS)",
                "must be between 1 and 1000000",
            );
        }
        if !(1..=100).contains(&self.recent.keep) {
            return invalid(
                "recent.keep (LOFIANIME_RECENT__KEEP)",
                "must be between 1 and 100",
            );
        }
        self.storage.location()?;
        if let Some(base) = self.storage.public_base() {
            if !is_plain_http_address(&base) {
                return invalid(
                    "storage.public_base_url (LOFIANIME_STORAGE__PUBLIC_BASE_URL)",
                    "must be an http(s) address such as https://images.example/lofianime/",
                );
            }
        }
        if self.workers.cpu.is_some_and(|n| !(1..=256).contains(&n)) {
            return invalid(
                "workers.cpu (LOFIANIME_WORKERS__CPU)",
                "must be between 1 and 256",
            );
        }
        if self.shutdown.grace_secs > 3600 {
            return invalid(
                "shutdown.grace_secs (LOFIANIME_SHUTDOWN__GRACE_SECS)",
                "must be at most 3600",
            );
        }
        if let Some(origin) = self.site.public_origin() {
            if !is_plain_http_address(&origin) {
                return invalid(
                    "site.public_url (LOFIANIME_SITE__PUBLIC_URL)",
                    "must be an http(s) address such as https://lofianime.example",
                );
            }
        }
        if !(1..=400).contains(&self.auth.session_days) {
            return invalid(
                "auth.session_days (LOFIANIME_AUTH__SESSION_DAYS)",
                "must be between 1 and 400",
            );
        }
        if self.auth.provider_name.trim().is_empty() {
            return invalid(
                "auth.provider_name (LOFIANIME_AUTH__PROVIDER_NAME)",
                "must not be empty",
            );
        }
        if self.auth.mode != AuthMode::Off && self.site.public_origin().is_none() {
            return invalid(
                "site.public_url (LOFIANIME_SITE__PUBLIC_URL)",
                "must be set when sign-in is on (auth.mode): the provider sends visitors back to {public_url}/auth/callback",
            );
        }
        for (name, value) in [
            ("image.width (LOFIANIME_IMAGE__WIDTH)", self.image.width),
            ("image.height (LOFIANIME_IMAGE__HEIGHT)", self.image.height),
        ] {
            if !(16..=2048).contains(&value) {
                return invalid(name, "must be between 16 and 2048 pixels");
            }
        }
        Ok(())
    }

    /// The limiter policy these settings describe.
    pub fn algorithm(&self) -> Result<Algorithm, WindowError> {
        self.algorithm_with_limit(self.ratelimit.limit)
    }

    /// The same policy with another limit (signed-out visitors' quota).
    pub fn algorithm_with_limit(&self, limit: u64) -> Result<Algorithm, WindowError> {
        let window_ms = parse_window(&self.ratelimit.window)?;
        Ok(match self.ratelimit.algorithm {
            AlgorithmName::FixedWindow => Algorithm::FixedWindow { limit, window_ms },
            AlgorithmName::SlidingWindow => Algorithm::SlidingWindow { limit, window_ms },
            AlgorithmName::TokenBucket => Algorithm::TokenBucket {
                refill_rate: self.ratelimit.refill_rate.unwrap_or(limit),
                interval_ms: window_ms,
                max_tokens: limit,
            },
        })
    }
}

/// Secrets, only from the environment. Wrapped so they cannot be printed by mistake.
#[derive(Debug, Default)]
pub struct Secrets {
    pub replicate_api_token: Option<SecretString>,
    /// Native Redis (`redis://…`); may carry a password.
    pub redis_url: Option<SecretString>,
    pub upstash_redis_rest_url: Option<SecretString>,
    pub upstash_redis_rest_token: Option<SecretString>,
    /// The bearer token `/metrics` asks for (without it, `/metrics` is a 404).
    pub metrics_token: Option<SecretString>,
    /// Not a secret, but an environment matter: where the Replicate API lives
    /// (tests and proxies point it elsewhere).
    pub replicate_base_url: Option<String>,
    /// Sign-in: the OpenID provider (`OIDC_ISSUER_URL`, default Google's) and
    /// this app's client at it (`OIDC_CLIENT_ID`, `OIDC_CLIENT_SECRET`).
    pub oidc_issuer_url: Option<String>,
    pub oidc_client_id: Option<String>,
    pub oidc_client_secret: Option<SecretString>,
    /// The key that encrypts and authenticates session cookies (64 bytes or more).
    pub session_secret: Option<SecretString>,
}

impl Secrets {
    pub fn from_env() -> Self {
        let non_empty = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
                .map(SecretString::from)
        };
        let plain = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        Self {
            replicate_api_token: non_empty("REPLICATE_API_TOKEN"),
            redis_url: non_empty("REDIS_URL"),
            upstash_redis_rest_url: non_empty("UPSTASH_REDIS_REST_URL"),
            upstash_redis_rest_token: non_empty("UPSTASH_REDIS_REST_TOKEN"),
            metrics_token: non_empty("METRICS_TOKEN"),
            replicate_base_url: plain("REPLICATE_BASE_URL"),
            oidc_issuer_url: plain("OIDC_ISSUER_URL"),
            oidc_client_id: plain("OIDC_CLIENT_ID"),
            oidc_client_secret: non_empty("OIDC_CLIENT_SECRET"),
            session_secret: non_empty("SESSION_SECRET"),
        }
    }
}

#[cfg(test)]
// figment's Jail closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in(jail: &Jail) -> Result<Settings, SettingsError> {
        Settings::from_figment(Settings::figment(&jail.directory().join("Leptos.toml")))
    }

    #[test]
    fn the_defaults_are_the_original_apps_policy() {
        Jail::expect_with(|jail| {
            let settings = load_in(jail).expect("defaults load");
            assert_eq!(settings.ratelimit.limit, 5);
            assert_eq!(settings.ratelimit.window, "1440 m");
            assert_eq!(settings.ratelimit.prefix, "@upstash/ratelimit");
            assert_eq!(
                settings.algorithm().unwrap(),
                Algorithm::FixedWindow {
                    limit: 5,
                    window_ms: 86_400_000
                }
            );
            assert_eq!(settings.ratelimit.on_store_failure, FailurePolicy::Deny);
            assert!(settings.ratelimit.ephemeral_cache);
            assert_eq!(settings.prompt.max_chars, 500);
            assert!(settings.visitors.trusted_proxies.is_empty());
            Ok(())
        });
    }

    #[test]
    fn trusted_proxies_take_addresses_and_ranges_and_name_a_bad_entry() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "Leptos.toml",
                "[visitors]\ntrusted_proxies = [\"127.0.0.1\", \"::1\", \"10.0.0.0/8\"]\n",
            )?;
            let settings = load_in(jail).expect("addresses are fine");
            let proxies: Vec<String> = settings
                .visitors
                .trusted_proxies
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(proxies, ["127.0.0.1/32", "::1/128", "10.0.0.0/8"]);
            jail.create_file(
                "Leptos.toml",
                "[visitors]\ntrusted_proxies = [\"proxy.local\"]\n",
            )?;
            let error = load_in(jail).unwrap_err().to_string();
            assert!(
                error.contains("proxy.local") && error.contains("CIDR"),
                "{error}"
            );
            Ok(())
        });
    }

    #[test]
    fn the_file_overrides_defaults_and_the_environment_overrides_the_file() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "Leptos.toml",
                "[ratelimit]\nlimit = 3\nwindow = \"10 s\"\n[visitors]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
            )?;
            jail.set_env("LOFIANIME_RATELIMIT__LIMIT", "7");
            let settings = load_in(jail).expect("settings load");
            assert_eq!(settings.ratelimit.limit, 7);
            assert_eq!(settings.ratelimit.window, "10 s");
            assert_eq!(
                settings.visitors.trusted_proxies,
                vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]
            );
            Ok(())
        });
    }

    #[test]
    fn every_algorithm_can_be_chosen() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "Leptos.toml",
                "[ratelimit]\nalgorithm = \"token-bucket\"\nlimit = 10\nwindow = \"1 h\"\nrefill_rate = 2\n",
            )?;
            assert_eq!(
                load_in(jail).unwrap().algorithm().unwrap(),
                Algorithm::TokenBucket {
                    refill_rate: 2,
                    interval_ms: 3_600_000,
                    max_tokens: 10
                }
            );
            jail.set_env("LOFIANIME_RATELIMIT__ALGORITHM", "sliding-window");
            assert_eq!(
                load_in(jail).unwrap().algorithm().unwrap(),
                Algorithm::SlidingWindow {
                    limit: 10,
                    window_ms: 3_600_000
                }
            );
            jail.set_env("LOFIANIME_RATELIMIT__ALGORITHM", "leaky-bucket");
            let message = load_in(jail).unwrap_err().to_string();
            assert!(message.contains("leaky-bucket"), "{message}");
            Ok(())
        });
    }

    #[test]
    fn a_misspelt_setting_is_an_error_naming_it() {
        Jail::expect_with(|jail| {
            jail.create_file("Leptos.toml", "[ratelimit]\nlimt = 3\n")?;
            let message = load_in(jail).unwrap_err().to_string();
            assert!(message.contains("limt"), "{message}");
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_is_an_error_naming_the_setting_and_its_variable() {
        Jail::expect_with(|jail| {
            jail.set_env("LOFIANIME_RATELIMIT__WINDOW", "one day");
            let message = load_in(jail).unwrap_err().to_string();
            assert!(message.contains("LOFIANIME_RATELIMIT__WINDOW"), "{message}");
            assert!(message.contains("one day"), "{message}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("LOFIANIME_RATELIMIT__LIMIT", "0");
            let message = load_in(jail).unwrap_err().to_string();
            assert!(message.contains("ratelimit.limit"), "{message}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("LOFIANIME_RATELIMIT__LIMIT", "five");
            let message = load_in(jail).unwrap_err().to_string();
            assert!(message.contains("RATELIMIT.LIMIT"), "{message}");
            assert!(message.contains("LOFIANIME_"), "{message}");
            assert!(message.contains("\"five\""), "{message}");
            Ok(())
        });
    }

    #[test]
    fn addresses_and_counts_of_the_operations_settings_are_checked() {
        for (variable, value, named) in [
            (
                "LOFIANIME_STORAGE__URL",
                "ftp://files.example/x",
                "LOFIANIME_STORAGE__URL",
            ),
            (
                "LOFIANIME_STORAGE__URL",
                "s3://A_Bucket",
                "LOFIANIME_STORAGE__URL",
            ),
            (
                "LOFIANIME_STORAGE__PUBLIC_BASE_URL",
                "images.example",
                "LOFIANIME_STORAGE__PUBLIC_BASE_URL",
            ),
            (
                "LOFIANIME_STORAGE__PUBLIC_BASE_URL",
                "https://images.example/?v=1",
                "LOFIANIME_STORAGE__PUBLIC_BASE_URL",
            ),
            (
                "LOFIANIME_SITE__PUBLIC_URL",
                "lofianime.example",
                "LOFIANIME_SITE__PUBLIC_URL",
            ),
            ("LOFIANIME_WORKERS__CPU", "0", "LOFIANIME_WORKERS__CPU"),
            (
                "LOFIANIME_SHUTDOWN__GRACE_SECS",
                "7200",
                "LOFIANIME_SHUTDOWN__GRACE_SECS",
            ),
            ("LOFIANIME_AUTH__MODE", "sometimes", "AUTH.MODE"),
            (
                "LOFIANIME_AUTH__SESSION_DAYS",
                "0",
                "LOFIANIME_AUTH__SESSION_DAYS",
            ),
            // Sign-in on without the public address its redirect URI needs.
            (
                "LOFIANIME_AUTH__MODE",
                "required",
                "LOFIANIME_SITE__PUBLIC_URL",
            ),
        ] {
            Jail::expect_with(|jail| {
                jail.set_env(variable, value);
                let message = load_in(jail).unwrap_err().to_string();
                assert!(message.contains(named), "{value}: {message}");
                Ok(())
            });
        }
        Jail::expect_with(|jail| {
            jail.set_env("LOFIANIME_STORAGE__URL", "s3://my-bucket/images/");
            jail.set_env(
                "LOFIANIME_STORAGE__PUBLIC_BASE_URL",
                "https://cdn.example/x",
            );
            let settings = load_in(jail).unwrap();
            assert_eq!(
                settings.storage.location().unwrap(),
                StorageUrl::S3 {
                    bucket: "my-bucket".into(),
                    prefix: Some("images".into())
                }
            );
            assert_eq!(
                settings.storage.public_base().as_deref(),
                Some("https://cdn.example/x/")
            );
            Ok(())
        });
    }

    #[test]
    fn the_repository_settings_file_is_valid_and_matches_the_defaults() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_SETTINGS_FILE);
        let from_file = Settings::from_figment(
            Figment::from(Serialized::defaults(Settings::default())).merge(Toml::file(&file)),
        )
        .expect("Leptos.toml is valid");
        assert_eq!(from_file, Settings::default());
    }
}
