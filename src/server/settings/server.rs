//! `[server]`, `[site]`, `[shutdown]`, `[workers]`: how the process serves,
//! where it is reached from, how it stops, and how much CPU work runs at once.

use super::{invalid, is_plain_http_address, within, SettingsError};
use serde::{Deserialize, Serialize};

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
    /// Longest a client may take to send a request's body, from its headers
    /// on, in seconds: a body that stalls or trickles frees its connection.
    pub body_read_timeout_secs: u64,
    /// Most connections one client address (an IPv6 client by its /64) holds
    /// at once; trusted proxies are exempt. Further ones are closed at once.
    pub max_connections_per_address: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 10,
            max_connections: 1024,
            body_read_timeout_secs: 10,
            max_connections_per_address: 64,
        }
    }
}

impl ServerSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        within(
            "server.header_read_timeout_secs",
            self.header_read_timeout_secs,
            1..=300,
        )?;
        within(
            "server.max_connections",
            self.max_connections,
            1..=1_000_000,
        )
    }
}

impl SiteSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        match self.public_origin() {
            Some(origin) if !is_plain_http_address(&origin) => invalid(
                "site.public_url",
                "must be an http(s) address such as https://lofianime.example",
            ),
            _ => Ok(()),
        }
    }
}

impl ShutdownSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        if self.grace_secs > 3600 {
            return invalid("shutdown.grace_secs", "must be at most 3600");
        }
        Ok(())
    }
}

impl WorkerSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        match self.cpu {
            Some(cpu) => within("workers.cpu", cpu, 1..=256),
            None => Ok(()),
        }
    }
}
