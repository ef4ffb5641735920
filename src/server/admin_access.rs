//! Who may use the owner's page and API: `ADMIN_TOKEN` (a bearer token, or
//! once at `/admin/login` for an encrypted session cookie keyed by
//! `SESSION_SECRET`) and the signed-in accounts listed in `auth.admins`.

use crate::server::auth::session::now_secs;
use crate::server::auth::Caller;
use crate::server::metrics::same_secret;
use crate::server::settings::{AuthMode, Secrets, Settings, SettingsError};
use axum::http::{header, HeaderMap};
use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar, SameSite};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha512};
use std::sync::Arc;

/// The shortest `ADMIN_TOKEN` accepted, in bytes.
pub const MIN_TOKEN_BYTES: usize = 32;
/// The owner's session cookie (over https: `__Host-lofianime_admin`).
pub const ADMIN_COOKIE: &str = "lofianime_admin";

/// An owner's session, as its encrypted cookie holds it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct AdminSession {
    who: String,
    /// Unix seconds.
    expires: u64,
}

/// Who may use the owner's page and API: whoever presents `ADMIN_TOKEN`
/// (as a bearer token, or once at `/admin/login` for a session cookie), and
/// signed-in accounts listed in `auth.admins`.
pub struct AdminAccess {
    token: Option<SecretString>,
    /// The session cookie's key (from `SESSION_SECRET`), name and lifetime.
    key: Option<Key>,
    cookie_name: &'static str,
    secure: bool,
    lifetime_secs: u64,
    /// Lowercase e-mails.
    admins: Vec<String>,
}

fn refused(variable: &'static str, problem: impl Into<String>) -> SettingsError {
    SettingsError::Variable {
        variable,
        problem: problem.into(),
    }
}

impl AdminAccess {
    /// Access as the settings and secrets give it; `None` when neither
    /// `ADMIN_TOKEN` nor `auth.admins` (with sign-in on) opens it. A short
    /// token, or a token without a `SESSION_SECRET`, stops start-up.
    pub fn from_settings(
        settings: &Settings,
        secrets: &Secrets,
    ) -> Result<Option<Arc<Self>>, SettingsError> {
        let admins: Vec<String> = if settings.auth.mode == AuthMode::Off {
            Vec::new()
        } else {
            settings
                .auth
                .admins
                .iter()
                .map(|email| email.trim().to_lowercase())
                .collect()
        };
        let token = secrets.admin_token.clone();
        if token.is_none() && admins.is_empty() {
            return Ok(None);
        }
        let mut key = None;
        if let Some(token) = &token {
            let length = token.expose_secret().len();
            if length < MIN_TOKEN_BYTES {
                return Err(refused(
                    "ADMIN_TOKEN",
                    format!("must be at least {MIN_TOKEN_BYTES} bytes (it is {length} bytes): openssl rand -base64 32"),
                ));
            }
            let secret = secrets.session_secret.as_ref().ok_or_else(|| {
                refused(
                    "SESSION_SECRET",
                    "must be set when ADMIN_TOKEN is: the owner's session cookie is encrypted with it (openssl rand -base64 64)",
                )
            })?;
            let bytes = secret.expose_secret().as_bytes();
            if bytes.len() < crate::server::auth::session::MIN_SECRET_BYTES {
                return Err(refused(
                    "SESSION_SECRET",
                    format!(
                        "must be at least {} bytes; it is {} bytes",
                        crate::server::auth::session::MIN_SECRET_BYTES,
                        bytes.len()
                    ),
                ));
            }
            key = Some(Key::from(Sha512::digest(bytes).as_slice()));
        }
        let secure = settings
            .site
            .public_origin()
            .is_some_and(|origin| origin.starts_with("https://"));
        Ok(Some(Arc::new(Self {
            token,
            key,
            cookie_name: if secure {
                "__Host-lofianime_admin"
            } else {
                ADMIN_COOKIE
            },
            secure,
            lifetime_secs: u64::from(settings.auth.admin_session_hours) * 3600,
            admins,
        })))
    }

    /// Whether `presented` is the token (compared through digests).
    pub fn is_token(&self, presented: &str) -> bool {
        match &self.token {
            Some(token) => !presented.is_empty() && same_secret(presented, token.expose_secret()),
            None => false,
        }
    }

    /// Who the request is, if an owner: a bearer token, an owner's session
    /// cookie, or a signed-in account listed in `auth.admins`.
    pub fn who(&self, headers: &HeaderMap, caller: Option<&Caller>) -> Option<String> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        if bearer.is_some_and(|token| self.is_token(token)) {
            return Some("admin token".into());
        }
        if let Some(key) = &self.key {
            let jar = PrivateCookieJar::from_headers(headers, key.clone());
            let session = jar
                .get(self.cookie_name)
                .and_then(|cookie| serde_json::from_str::<AdminSession>(cookie.value()).ok())
                .filter(|session| session.expires > now_secs());
            if let Some(session) = session {
                return Some(session.who);
            }
        }
        let email = caller?.account.as_ref()?.email.to_lowercase();
        self.admins.contains(&email).then_some(email)
    }

    /// Whether `/admin/login` can start a session (a token is set).
    pub fn takes_token(&self) -> bool {
        self.key.is_some()
    }

    fn cookie(&self, value: String, max_age_secs: u64) -> Cookie<'static> {
        Cookie::build((self.cookie_name, value))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Strict)
            .max_age(cookie::time::Duration::seconds(max_age_secs as i64))
            .build()
    }

    /// A session cookie for `who`.
    pub fn start(&self, who: &str) -> Option<PrivateCookieJar> {
        let key = self.key.clone()?;
        let session = AdminSession {
            who: who.to_owned(),
            expires: now_secs() + self.lifetime_secs,
        };
        let value = serde_json::to_string(&session).ok()?;
        Some(PrivateCookieJar::new(key).add(self.cookie(value, self.lifetime_secs)))
    }

    /// The cookie that ends a session.
    pub fn end(&self) -> Option<PrivateCookieJar> {
        let key = self.key.clone()?;
        Some(PrivateCookieJar::new(key).add(self.cookie(String::new(), 0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::auth::session::Account;
    use axum::response::IntoResponse;
    use lofianime_domain::Visitor;

    const TOKEN: &str = "an-admin-token-of-thirty-two-bytes-or-more";
    const SECRET: &str =
        "a-session-secret-of-sixty-four-bytes-or-more-for-the-owners-cookie-0123456789";

    fn access(mode: AuthMode, admins: &[&str], token: bool) -> Option<Arc<AdminAccess>> {
        let mut settings = Settings::default();
        settings.auth.mode = mode;
        settings.auth.admins = admins.iter().map(|a| (*a).to_owned()).collect();
        let secrets = Secrets {
            admin_token: token.then(|| SecretString::from(TOKEN)),
            session_secret: token.then(|| SecretString::from(SECRET)),
            ..Secrets::default()
        };
        AdminAccess::from_settings(&settings, &secrets).unwrap()
    }

    fn caller(email: &str) -> Caller {
        Caller {
            visitor: Visitor::account(email).unwrap(),
            account: Some(Account {
                subject: "s".into(),
                email: email.into(),
                name: None,
                expires: u64::MAX,
                session: "x".into(),
            }),
        }
    }

    /// The `Cookie` header a browser sends back after `jar` was set.
    fn sent_back(jar: PrivateCookieJar) -> HeaderMap {
        let response = jar.into_response();
        let value = response.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, value.parse().unwrap());
        headers
    }

    #[test]
    fn listed_accounts_are_owners_when_sign_in_is_on_and_others_are_not() {
        assert!(access(AuthMode::Off, &["owner@example.com"], false).is_none());
        let access = access(AuthMode::Optional, &["Owner@Example.com"], false).unwrap();
        let none = HeaderMap::new();
        assert_eq!(
            access
                .who(&none, Some(&caller("owner@example.com")))
                .as_deref(),
            Some("owner@example.com")
        );
        assert_eq!(
            access.who(&none, Some(&caller("visitor@example.com"))),
            None
        );
        assert!(!access.takes_token(), "no token: no token form");
    }

    #[test]
    fn an_expired_session_is_nobody_and_a_current_one_is_the_owner() {
        let access = access(AuthMode::Off, &[], true).unwrap();
        let current = sent_back(access.start("admin token").unwrap());
        assert_eq!(access.who(&current, None).as_deref(), Some("admin token"));
        let key = access.key.clone().unwrap();
        let expired = AdminSession {
            who: "admin token".into(),
            expires: now_secs() - 1,
        };
        let jar = PrivateCookieJar::new(key)
            .add(access.cookie(serde_json::to_string(&expired).unwrap(), 60));
        assert_eq!(access.who(&sent_back(jar), None), None);
        let mut bearer = HeaderMap::new();
        bearer.insert(
            header::AUTHORIZATION,
            format!("Bearer {TOKEN}").parse().unwrap(),
        );
        assert_eq!(access.who(&bearer, None).as_deref(), Some("admin token"));
    }
}
