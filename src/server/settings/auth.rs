//! `[auth]`: sign-in (OpenID Connect) and what it changes.

use super::{invalid, within, SettingsError};
use serde::{Deserialize, Serialize};

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
    /// Accounts (verified e-mails) that may use the owner's page `/admin`
    /// when signed in.
    pub admins: Vec<String>,
    /// How long an owner's session from `/admin/login` lasts, in hours.
    pub admin_session_hours: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mode: AuthMode::Off,
            identify_accounts_by: AccountKey::Email,
            session_days: 30,
            provider_name: "Google".to_owned(),
            admins: Vec::new(),
            admin_session_hours: 12,
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

impl AuthSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        within("auth.session_days", self.session_days, 1..=400)?;
        within(
            "auth.admin_session_hours",
            self.admin_session_hours,
            1..=720,
        )?;
        if let Some(bad) = self.admins.iter().find(|email| !email.contains('@')) {
            return invalid(
                "auth.admins",
                &format!("{bad:?} is not an e-mail address (list the owners' verified e-mails)"),
            );
        }
        if self.provider_name.trim().is_empty() {
            return invalid("auth.provider_name", "must not be empty");
        }
        Ok(())
    }
}
