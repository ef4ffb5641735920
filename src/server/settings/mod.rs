//! The app's settings, read once at start-up: built-in defaults, then `Leptos.toml`
//! (the owner's non-secret choices), then `LOFIANIME_*` environment variables.
//! Secrets come only from the environment (or a `.env` file) and have no defaults.
//!
//! One file per concern; each section checks itself. A bad value's message names
//! the setting and the variable that sets it, both derived from the setting's
//! path ([`Setting`]), so no message can name the wrong one.

mod auth;
mod model;
mod ratelimit;
mod secrets;
mod server;
mod spend;
mod storage;
#[cfg(test)]
mod tests;
mod visitors;

pub use auth::{AccountKey, AuthMode, AuthSettings};
pub use model::{
    Backend, CogFileSettings, ImageSettings, ModelSettings, OfflineSettings, ProgressSettings,
    PromptSettings, WebhookMode,
};
pub use ratelimit::{AlgorithmName, IdentifyBy, KeyLocking, RateLimitSettings, Window};
pub use secrets::Secrets;
pub use server::{ServerSettings, ShutdownSettings, SiteSettings, WorkerSettings};
pub use spend::SpendSettings;
pub use storage::{RecentSettings, StorageAddress, StorageSettings, StorageUrl};
pub use visitors::VisitorSettings;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::fmt;
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
    pub cog: CogFileSettings,
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
    pub spend: SpendSettings,
}

/// A setting, by its path in the settings file (`ratelimit.window`); the
/// environment variable that sets it follows from the path
/// (`LOFIANIME_RATELIMIT__WINDOW`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting(String);

impl Setting {
    pub fn new(path: impl Into<String>) -> Self {
        Self(path.into())
    }

    /// The environment variable that sets this setting.
    pub fn variable(&self) -> String {
        format!("LOFIANIME_{}", self.0.to_uppercase().replace('.', "__"))
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.variable())
    }
}

/// A setting that stops start-up; the message names the setting and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("could not read the settings: {0}")]
    Read(#[from] Box<figment::Error>),
    #[error("{setting}: {problem}")]
    Invalid { setting: Setting, problem: String },
    /// An environment variable outside the settings file (a secret, or
    /// `LOFIANIME_CONFIG`) that is missing or wrong.
    #[error("{variable}: {problem}")]
    Variable {
        variable: &'static str,
        problem: String,
    },
}

impl SettingsError {
    /// A value that could not be read: named by its setting when figment says
    /// which one (a type, an unknown variant, a window), as figment said it.
    fn unreadable(error: figment::Error) -> Self {
        if error.path.is_empty() {
            return Self::Read(Box::new(error));
        }
        Self::Invalid {
            setting: Setting::new(error.path.join(".").to_lowercase()),
            problem: error.to_string(),
        }
    }
}

/// Refuses the setting at `path` with `problem`.
pub(crate) fn invalid<T>(path: &str, problem: &str) -> Result<T, SettingsError> {
    Err(SettingsError::Invalid {
        setting: Setting::new(path),
        problem: problem.to_owned(),
    })
}

/// Refuses the setting at `path` unless `value` is in `range`.
pub(crate) fn within<T: PartialOrd + fmt::Display>(
    path: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), SettingsError> {
    if range.contains(&value) {
        return Ok(());
    }
    invalid(
        path,
        &format!("must be between {} and {}", range.start(), range.end()),
    )
}

/// An http(s) URL with a host and no query or fragment: a site's or a CDN's
/// public address.
pub(crate) fn is_plain_http_address(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https")
            && url.host().is_some()
            && url.query().is_none()
            && url.fragment().is_none()
    })
}

impl Settings {
    /// Reads the settings: defaults, then the file named by `LOFIANIME_CONFIG` (or
    /// `Leptos.toml` in the working directory, if present), then `LOFIANIME_*`
    /// variables (`LOFIANIME_RATELIMIT__LIMIT=10` sets `ratelimit.limit`).
    pub fn load() -> Result<Self, SettingsError> {
        let named = std::env::var_os("LOFIANIME_CONFIG").map(PathBuf::from);
        if let Some(file) = named.as_ref().filter(|file| !file.exists()) {
            return Err(SettingsError::Variable {
                variable: "LOFIANIME_CONFIG",
                problem: format!("the settings file {} does not exist", file.display()),
            });
        }
        let file = named.unwrap_or_else(|| PathBuf::from(DEFAULT_SETTINGS_FILE));
        Self::from_figment(Self::figment(&file))
    }

    fn figment(file: &Path) -> Figment {
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(file))
            .merge(Env::prefixed("LOFIANIME_").ignore(&["config"]).split("__"))
    }

    fn from_figment(figment: Figment) -> Result<Self, SettingsError> {
        let settings: Settings = figment.extract().map_err(SettingsError::unreadable)?;
        settings.check()?;
        Ok(settings)
    }

    /// Each section's own checks, then the rules that span sections.
    fn check(&self) -> Result<(), SettingsError> {
        self.ratelimit.check()?;
        self.model.check()?;
        self.cog.check()?;
        self.prompt.check()?;
        self.progress.check()?;
        self.image.check()?;
        self.server.check()?;
        self.recent.check()?;
        self.storage.check()?;
        self.workers.check()?;
        self.shutdown.check()?;
        self.site.check()?;
        if self.model.webhooks == WebhookMode::On && self.site.public_origin().is_none() {
            return invalid(
                "model.webhooks",
                "\"on\" needs site.public_url: Replicate sends its events to {site.public_url}/webhooks/replicate",
            );
        }
        self.auth.check()?;
        self.spend.check()?;
        if self.auth.mode != AuthMode::Off && self.site.public_origin().is_none() {
            return invalid(
                "site.public_url",
                "must be set when sign-in is on (auth.mode): the provider sends visitors back to {public_url}/auth/callback",
            );
        }
        Ok(())
    }

    /// The limiter policy these settings describe.
    pub fn algorithm(&self) -> lofianime_domain::Algorithm {
        self.ratelimit.algorithm_with_limit(self.ratelimit.limit)
    }

    /// The same policy with another limit (signed-out visitors' quota).
    pub fn algorithm_with_limit(&self, limit: u64) -> lofianime_domain::Algorithm {
        self.ratelimit.algorithm_with_limit(limit)
    }
}
