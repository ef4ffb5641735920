//! Sessions without a session table: an encrypted, authenticated cookie
//! (AES-256-GCM through axum-extra's private cookie jar) that every instance
//! with the same `SESSION_SECRET` can read. It holds the account's subject,
//! e-mail, display name and expiry, never a token. A cookie that does not
//! decrypt, does not parse or has expired means "signed out".
//!
//! A second, short-lived cookie carries one sign-in attempt (state, nonce,
//! PKCE verifier, where to return) from `/auth/login` to `/auth/callback`.

use axum::http::HeaderMap;
use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar, SameSite};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

/// The session cookie's name (over https: `__Host-lofianime_session`, which a
/// browser accepts only from this very host, Secure, for `/`: no sibling
/// subdomain can plant a session of its own).
pub const SESSION_COOKIE: &str = "lofianime_session";
/// The sign-in attempt's cookie (only sent to `/auth/callback`; over https:
/// `__Secure-lofianime_sign_in`).
pub const SIGN_IN_COOKIE: &str = "lofianime_sign_in";
/// Where the sign-in attempt's cookie is sent.
pub const CALLBACK_PATH: &str = "/auth/callback";
/// Shortest `SESSION_SECRET` accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 64;
/// How long a sign-in attempt may take at the provider.
pub const SIGN_IN_TTL_SECS: u64 = 600;

/// A signed-in account, as the session cookie holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The provider's stable subject (`sub`).
    pub subject: String,
    /// The verified e-mail address.
    pub email: String,
    /// The display name, if the provider gave one.
    pub name: Option<String>,
    /// When the session ends, in Unix seconds.
    pub expires: u64,
    /// This session's own random id, so that signing out ends it for good
    /// (a cookie without one, from before ids were given, is signed out).
    #[serde(default)]
    pub session: String,
}

/// One sign-in attempt, from `/auth/login` to `/auth/callback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInAttempt {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// A path on this site to go back to.
    pub return_to: String,
    /// Unix seconds after which the attempt is void.
    pub expires: u64,
}

/// Reads and writes the two cookies.
#[derive(Clone)]
pub struct Sessions {
    key: Key,
    /// `Secure` on every cookie (the site is served over https).
    secure: bool,
    /// How long a session lasts, in seconds.
    lifetime_secs: u64,
    /// The two cookies' names (prefixed over https).
    session_name: &'static str,
    attempt_name: &'static str,
}

/// Why `SESSION_SECRET` was refused.
#[derive(Debug, thiserror::Error)]
#[error("SESSION_SECRET must be at least {MIN_SECRET_BYTES} bytes when sign-in is on (auth.mode); it is {0} bytes. Make one with: openssl rand -base64 64")]
pub struct ShortSecret(pub usize);

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Sessions {
    /// Cookies keyed from `secret` (at least [`MIN_SECRET_BYTES`]; all of it is
    /// used, through SHA-512, for the 64 bytes of key).
    pub fn new(
        secret: &SecretString,
        secure: bool,
        lifetime_secs: u64,
    ) -> Result<Self, ShortSecret> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(ShortSecret(bytes.len()));
        }
        let key = Key::from(Sha512::digest(bytes).as_slice());
        let (session_name, attempt_name) = if secure {
            ("__Host-lofianime_session", "__Secure-lofianime_sign_in")
        } else {
            (SESSION_COOKIE, SIGN_IN_COOKIE)
        };
        Ok(Self {
            key,
            secure,
            lifetime_secs,
            session_name,
            attempt_name,
        })
    }

    fn jar(&self, headers: &HeaderMap) -> PrivateCookieJar {
        PrivateCookieJar::from_headers(headers, self.key.clone())
    }

    /// An answer's jar holding `cookie`.
    fn setting(&self, cookie: Cookie<'static>) -> PrivateCookieJar {
        PrivateCookieJar::new(self.key.clone()).add(cookie)
    }

    /// The request's account, if its session cookie is genuine and current.
    pub fn account(&self, headers: &HeaderMap, now: u64) -> Option<Account> {
        let cookie = self.jar(headers).get(self.session_name)?;
        let account: Account = serde_json::from_str(cookie.value()).ok()?;
        (account.expires > now && !account.session.is_empty()).then_some(account)
    }

    /// A session for `account` (its `expires` set from the lifetime), which
    /// ends the sign-in attempt that led to it.
    pub fn start(&self, mut account: Account, now: u64) -> (Account, PrivateCookieJar) {
        account.expires = now + self.lifetime_secs;
        account.session = uuid::Uuid::new_v4().simple().to_string();
        let value = serde_json::to_string(&account).unwrap_or_default();
        let cookie = self.cookie(self.session_name, value, "/", self.lifetime_secs);
        let jar = self.setting(cookie).add(self.attempt_cleared());
        (account, jar)
    }

    /// Ends the session.
    pub fn end(&self) -> PrivateCookieJar {
        self.setting(self.cookie(self.session_name, String::new(), "/", 0))
    }

    /// Remembers a sign-in attempt until the provider sends the visitor back.
    pub fn remember_attempt(&self, attempt: &SignInAttempt) -> PrivateCookieJar {
        let value = serde_json::to_string(attempt).unwrap_or_default();
        self.setting(self.cookie(self.attempt_name, value, CALLBACK_PATH, SIGN_IN_TTL_SECS))
    }

    /// The request's sign-in attempt, if genuine and current.
    pub fn attempt(&self, headers: &HeaderMap, now: u64) -> Option<SignInAttempt> {
        let cookie = self.jar(headers).get(self.attempt_name)?;
        let attempt: SignInAttempt = serde_json::from_str(cookie.value()).ok()?;
        (attempt.expires > now).then_some(attempt)
    }

    /// Forgets the sign-in attempt (it is used once, whatever its outcome).
    pub fn forget_attempt(&self) -> PrivateCookieJar {
        self.setting(self.attempt_cleared())
    }

    fn attempt_cleared(&self) -> Cookie<'static> {
        self.cookie(self.attempt_name, String::new(), CALLBACK_PATH, 0)
    }

    fn cookie(
        &self,
        name: &'static str,
        value: String,
        path: &'static str,
        max_age_secs: u64,
    ) -> Cookie<'static> {
        Cookie::build((name, value))
            .path(path)
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .max_age(cookie_duration(max_age_secs))
            .build()
    }
}

fn cookie_duration(secs: u64) -> cookie::time::Duration {
    cookie::time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;
    use axum::response::IntoResponse;

    fn sessions(secret: &str) -> Sessions {
        Sessions::new(&SecretString::from(secret.to_owned()), true, 3600).unwrap()
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn account() -> Account {
        Account {
            subject: "sub-1".into(),
            email: "ana@example.com".into(),
            name: Some("Ana".into()),
            expires: 0,
            session: String::new(),
        }
    }

    /// The `Cookie` header a browser would send back after `jar` was set.
    fn sent_back(jar: PrivateCookieJar) -> HeaderMap {
        let response = jar.into_response();
        let pairs: Vec<String> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            // A browser drops a cookie whose lifetime is 0 (a cleared one).
            .filter(|v| !v.contains("Max-Age=0"))
            .map(|v| v.split(';').next().unwrap().to_owned())
            .collect();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, pairs.join("; ").parse().unwrap());
        headers
    }

    #[test]
    fn a_short_secret_is_refused() {
        let short = SecretString::from("x".repeat(63));
        assert_eq!(
            Sessions::new(&short, false, 60).err().map(|e| e.0),
            Some(63)
        );
        assert!(Sessions::new(&SecretString::from("x".repeat(64)), false, 60).is_ok());
    }

    #[test]
    fn a_session_reads_back_until_it_expires() {
        let sessions = sessions(SECRET);
        let (started, jar) = sessions.start(account(), 1_000);
        assert_eq!(started.expires, 4_600);
        let headers = sent_back(jar);
        assert_eq!(sessions.account(&headers, 1_001), Some(started));
        assert_eq!(sessions.account(&headers, 4_600), None, "expired");
    }

    #[test]
    fn the_cookie_is_http_only_lax_secure_and_holds_no_plain_text() {
        let (_, jar) = sessions(SECRET).start(account(), 1_000);
        let response = jar.into_response();
        let set = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .find(|v| v.starts_with("__Host-lofianime_session="))
            .expect("the session cookie, under its __Host- name");
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Secure"));
        assert!(!set.contains("Domain="), "a __Host- cookie names no domain");
        assert!(set.contains("Max-Age=3600") && set.contains("Path=/"));
        assert!(!set.contains("ana") && !set.contains("sub-1"), "{set}");
    }

    #[test]
    fn tampered_or_foreign_cookies_mean_signed_out() {
        let sessions = sessions(SECRET);
        let (_, jar) = sessions.start(account(), 1_000);
        let headers = sent_back(jar);
        let cookie = headers[header::COOKIE].to_str().unwrap().to_owned();
        // One character changed in the sealed value.
        let mut tampered = cookie.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let mut bad = HeaderMap::new();
        bad.insert(
            header::COOKIE,
            String::from_utf8(tampered).unwrap().parse().unwrap(),
        );
        assert_eq!(sessions.account(&bad, 1_001), None);
        // Sealed with another secret.
        let other = self::sessions(&SECRET.replace('0', "1"));
        assert_eq!(other.account(&headers, 1_001), None);
        // Plain JSON under the right name.
        let mut plain = HeaderMap::new();
        let json = serde_json::to_string(&account()).unwrap();
        plain.insert(
            header::COOKIE,
            format!("__Host-lofianime_session={json}").parse().unwrap(),
        );
        assert_eq!(sessions.account(&plain, 1_001), None);
        // The sign-in attempt's cookie is not a session, even sealed by us.
        let attempt = SignInAttempt {
            state: "s".into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            return_to: "/".into(),
            expires: 2_000,
        };
        let renamed = sent_back(sessions.remember_attempt(&attempt))[header::COOKIE]
            .to_str()
            .unwrap()
            .replace("__Secure-lofianime_sign_in", "__Host-lofianime_session");
        let mut swapped = HeaderMap::new();
        swapped.insert(header::COOKIE, renamed.parse().unwrap());
        assert_eq!(sessions.account(&swapped, 1_001), None);
    }
}
