//! Sign-in with an OpenID Connect provider (Google by default), and who the
//! caller of each request is: a signed-in account, or a signed-out visitor
//! known by their address.
//!
//! `auth.mode = "off"` (the default) changes nothing: no routes, no cookies,
//! every visitor known by their address.

pub mod provider;
pub mod routes;
pub mod session;

use crate::server::client_ip::ClientIp;
use crate::server::settings::{AccountKey, AuthMode, Secrets, Setting, Settings, SettingsError};

use axum::response::Response;
use lofianime_domain::Visitor;
use provider::{Provider, GOOGLE_ISSUER};
use session::{now_secs, Account, Sessions};

/// Sign-in as the settings describe it.
pub struct Auth {
    pub mode: AuthMode,
    identify_accounts_by: AccountKey,
    /// "Google": the page's "Sign in with Google".
    pub provider_name: String,
    /// Present whenever `mode` is not `Off`.
    signed_in: Option<SignIn>,
}

struct SignIn {
    sessions: Sessions,
    provider: Provider,
}

/// Who is calling: the visitor the domain sees, and their account if signed in.
#[derive(Debug, Clone)]
pub struct Caller {
    pub visitor: Visitor,
    pub account: Option<Account>,
}

/// A sign-in variable (a secret or the provider's address) that stops start-up.
fn invalid(variable: &'static str, problem: impl Into<String>) -> SettingsError {
    SettingsError::Variable {
        variable,
        problem: problem.into(),
    }
}

impl Auth {
    /// No sign-in.
    pub fn off() -> Self {
        Self {
            mode: AuthMode::Off,
            identify_accounts_by: AccountKey::Email,
            provider_name: String::new(),
            signed_in: None,
        }
    }

    /// Sign-in from the settings and the environment; with sign-in on, a
    /// missing client or a short `SESSION_SECRET` stops start-up, named.
    pub fn new(settings: &Settings, secrets: &Secrets) -> Result<Self, SettingsError> {
        let auth = &settings.auth;
        if auth.mode == AuthMode::Off {
            return Ok(Self::off());
        }
        let origin = settings
            .site
            .public_origin()
            .ok_or_else(|| SettingsError::Invalid {
                setting: Setting::new("site.public_url"),
                problem: "must be set when sign-in is on".into(),
            })?;
        let client_id = secrets.oidc_client_id.clone().ok_or_else(|| {
            invalid(
                "OIDC_CLIENT_ID",
                "must be set when sign-in is on (auth.mode): the client id of this app at the provider",
            )
        })?;
        let client_secret = secrets.oidc_client_secret.clone().ok_or_else(|| {
            invalid(
                "OIDC_CLIENT_SECRET",
                "must be set when sign-in is on (auth.mode): the client secret of this app at the provider",
            )
        })?;
        let secret = secrets.session_secret.as_ref().ok_or_else(|| {
            invalid(
                "SESSION_SECRET",
                "must be set when sign-in is on (auth.mode): 64 random bytes or more (openssl rand -base64 64)",
            )
        })?;
        let secure = origin.starts_with("https://");
        let lifetime = u64::from(auth.session_days) * 24 * 3600;
        let sessions = Sessions::new(secret, secure, lifetime)
            .map_err(|short| invalid("SESSION_SECRET", short.to_string()))?;
        let issuer = secrets.oidc_issuer_url.as_deref().unwrap_or(GOOGLE_ISSUER);
        let provider = Provider::new(
            issuer,
            client_id,
            client_secret,
            format!("{origin}{}", session::CALLBACK_PATH),
        )
        .map_err(|problem| invalid("OIDC_ISSUER_URL", problem))?;
        Ok(Self {
            mode: auth.mode,
            identify_accounts_by: auth.identify_accounts_by,
            provider_name: auth.provider_name.trim().to_owned(),
            signed_in: Some(SignIn { sessions, provider }),
        })
    }

    /// The session cookies and the provider, when sign-in is on.
    pub fn parts(&self) -> Option<(&Sessions, &Provider)> {
        self.signed_in
            .as_ref()
            .map(|on| (&on.sessions, &on.provider))
    }

    pub fn is_on(&self) -> bool {
        self.signed_in.is_some()
    }

    /// The provider's issuer, when sign-in is on (for the start-up log).
    pub fn issuer(&self) -> Option<&str> {
        self.signed_in.as_ref().map(|s| s.provider.issuer())
    }

    /// The limiter identifier of an account: its e-mail (lofianime.com's keys;
    /// an e-mail has an `@`, so it never equals a reserved identifier) or its
    /// subject under `sub:`, so that no subject reaches the shared budget's
    /// counter (`global`), the visitors without an address (`unknown-client`),
    /// the one shared quota (`api-route`) or an address.
    pub fn identifier(&self, account: &Account) -> String {
        match self.identify_accounts_by {
            AccountKey::Email => account.email.clone(),
            AccountKey::Subject => format!("sub:{}", account.subject),
        }
    }

    /// A signed-out caller from `client`.
    pub fn signed_out(&self, client: ClientIp) -> Caller {
        Caller {
            visitor: Visitor::new(client.to_string()),
            account: None,
        }
    }

    /// The caller of a request with these headers from `client`.
    pub fn caller(&self, headers: &axum::http::HeaderMap, client: ClientIp) -> Caller {
        // A session whose identifier could be an address (none is ever
        // issued) counts as signed out.
        let signed_in = self
            .signed_in
            .as_ref()
            .and_then(|on| on.sessions.account(headers, now_secs()))
            .and_then(|account| {
                let visitor = Visitor::account(self.identifier(&account))?;
                Some((visitor.from_address(client.to_string()), account))
            });
        match signed_in {
            Some((visitor, account)) => Caller {
                visitor,
                account: Some(account),
            },
            None => self.signed_out(client),
        }
    }
}

/// The name of the mark that ends session `id` for good.
pub fn ended_mark(id: &str) -> String {
    format!("session-ended:{id}")
}

/// A request that did not pass through [`identify_caller`](crate::server::middleware::identify_caller) (a wiring mistake).
#[derive(Debug)]
pub struct MissingCaller;

impl axum::response::IntoResponse for MissingCaller {
    fn into_response(self) -> Response {
        tracing::error!("a request reached a handler without its caller; is the identify_caller layer installed?");
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            crate::wire::GENERIC_FAILURE,
        )
            .into_response()
    }
}

/// The caller, as [`identify_caller`](crate::server::middleware::identify_caller) worked it out: an extractor for Axum
/// handlers, and for server functions through `leptos_axum::extract`.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = MissingCaller;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(MissingCaller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn settings(mode: AuthMode) -> Settings {
        let mut settings = Settings::default();
        settings.auth.mode = mode;
        settings.site.public_url = Some("https://lofianime.example".into());
        settings
    }

    fn secrets(session_secret: Option<&str>) -> Secrets {
        Secrets {
            oidc_client_id: Some("id".into()),
            oidc_client_secret: Some(SecretString::from("secret")),
            session_secret: session_secret.map(|s| SecretString::from(s.to_owned())),
            ..Default::default()
        }
    }

    fn refusal(settings: &Settings, secrets: &Secrets) -> String {
        match Auth::new(settings, secrets) {
            Ok(_) => panic!("start-up should have been refused"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn off_needs_nothing_and_identifies_by_address() {
        let auth = Auth::new(&Settings::default(), &Secrets::default()).unwrap();
        assert!(!auth.is_on());
        let caller = auth.caller(
            &axum::http::HeaderMap::new(),
            ClientIp::new("203.0.113.7".parse().unwrap()),
        );
        assert_eq!(caller.visitor, Visitor::new("203.0.113.7"));
        assert!(caller.account.is_none());
    }

    #[test]
    fn sign_in_refuses_to_start_without_its_secrets_naming_them() {
        let optional = settings(AuthMode::Optional);
        assert!(refusal(&optional, &secrets(None)).starts_with("SESSION_SECRET: must be set"));
        let short = refusal(&optional, &secrets(Some("too short")));
        assert!(
            short.contains("at least 64 bytes") && short.contains("it is 9 bytes"),
            "{short}"
        );
        assert!(!short.contains("too short"), "the secret is never repeated");
        let mut no_client = secrets(Some(&"k".repeat(64)));
        no_client.oidc_client_id = None;
        assert!(refusal(&optional, &no_client).starts_with("OIDC_CLIENT_ID"));
        let mut no_secret = secrets(Some(&"k".repeat(64)));
        no_secret.oidc_client_secret = None;
        assert!(refusal(&optional, &no_secret).starts_with("OIDC_CLIENT_SECRET"));
        let mut bad_issuer = secrets(Some(&"k".repeat(64)));
        bad_issuer.oidc_issuer_url = Some("not a url".into());
        assert!(refusal(&optional, &bad_issuer).starts_with("OIDC_ISSUER_URL"));
        let auth = Auth::new(
            &settings(AuthMode::Required),
            &secrets(Some(&"k".repeat(64))),
        )
        .unwrap();
        assert_eq!(
            auth.issuer(),
            Some(GOOGLE_ISSUER),
            "Google unless told otherwise"
        );
    }
}
