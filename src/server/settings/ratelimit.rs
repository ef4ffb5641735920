//! `[ratelimit]`: the visitor's quota and the budget all visitors share, as
//! `@upstash/ratelimit` writes them, and the store they are counted in.

use super::{invalid, SettingsError};
use lofianime_domain::{parse_window, Algorithm, FailurePolicy, DEFAULT_PREFIX};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub algorithm: AlgorithmName,
    /// Generations per visitor per window (token bucket: the bucket's size).
    pub limit: u64,
    /// Window length, written as `@upstash/ratelimit` writes it ("1440 m").
    /// Token bucket: the refill interval.
    pub window: Window,
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
    pub global_window: Window,
    /// `visitor`: each visitor has their own quota (by address); `shared`: one
    /// quota for everyone, as in the seed article (identifier "api-route").
    pub identify_by: IdentifyBy,
    /// How many failures per window give the visitor's credit back (default: `limit`).
    pub max_refunds_per_window: Option<u64>,
    /// With `auth.mode = "optional"`: generations per window for a signed-out
    /// visitor (by address); 0: signed-out visitors must sign in to generate.
    pub anonymous_limit: u64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            algorithm: AlgorithmName::FixedWindow,
            limit: 5,
            window: Window::day(),
            refill_rate: None,
            prefix: DEFAULT_PREFIX.into(),
            ephemeral_cache: true,
            on_store_failure: FailurePolicy::Deny,
            store_timeout_ms: 2_000,
            upstash_key_locking: KeyLocking::Auto,
            global_limit: 500,
            global_window: Window::day(),
            identify_by: IdentifyBy::Visitor,
            max_refunds_per_window: None,
            anonymous_limit: 1,
        }
    }
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

impl RateLimitSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        if self.limit == 0 {
            return invalid("ratelimit.limit", "must be at least 1");
        }
        if self.refill_rate == Some(0) {
            return invalid("ratelimit.refill_rate", "must be at least 1");
        }
        if self.store_timeout_ms == 0 {
            return invalid("ratelimit.store_timeout_ms", "must be at least 1");
        }
        if self.prefix.is_empty() {
            return invalid("ratelimit.prefix", "must not be empty");
        }
        Ok(())
    }

    /// The visitor's policy with `limit` (the signed-out quota uses its own).
    pub fn algorithm_with_limit(&self, limit: u64) -> Algorithm {
        let window_ms = self.window.ms();
        match self.algorithm {
            AlgorithmName::FixedWindow => Algorithm::FixedWindow { limit, window_ms },
            AlgorithmName::SlidingWindow => Algorithm::SlidingWindow { limit, window_ms },
            AlgorithmName::TokenBucket => Algorithm::TokenBucket {
                refill_rate: self.refill_rate.unwrap_or(limit),
                interval_ms: window_ms,
                max_tokens: limit,
            },
        }
    }

    /// The budget all visitors share, if there is one.
    pub fn budget(&self) -> Option<Algorithm> {
        (self.global_limit > 0).then(|| Algorithm::FixedWindow {
            limit: self.global_limit,
            window_ms: self.global_window.ms(),
        })
    }
}

/// A window length as `@upstash/ratelimit` writes it ("1440 m"), read once at
/// load: a bad one stops start-up, named, and nothing parses it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Window {
    text: String,
    ms: u64,
}

impl Window {
    /// A day, the original app's window.
    pub fn day() -> Self {
        Self {
            text: "1440 m".to_owned(),
            ms: 86_400_000,
        }
    }

    pub fn ms(&self) -> u64 {
        self.ms
    }

    /// As the owner wrote it ("1440 m").
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl TryFrom<String> for Window {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let ms = parse_window(&text).map_err(|error| error.to_string())?;
        Ok(Self { text, ms })
    }
}

impl From<Window> for String {
    fn from(window: Window) -> Self {
        window.text
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Window {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}
