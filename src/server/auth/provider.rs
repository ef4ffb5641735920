//! The OpenID Connect provider, through the `openidconnect` crate: discovery
//! (cached), the authorization request (code flow, PKCE S256, state, nonce) and
//! the code exchange with every check on the ID token (signature against the
//! provider's JWKS, refetched once when a token names a key it does not know;
//! issuer, audience, expiry, nonce; a verified e-mail).

use crate::server::auth::session::{now_secs, Account, SignInAttempt, SIGN_IN_TTL_SECS};
use lofianime_domain::Visitor;
use openidconnect::core::{
    CoreClient, CoreIdToken, CoreIdTokenClaims, CoreProviderMetadata, CoreResponseType,
};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, IssuerUrl, JsonWebKeySet, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, SignatureVerificationError, TokenResponse,
};
use secrecy::{ExposeSecret, SecretString};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Google's issuer: the provider when `OIDC_ISSUER_URL` is not set.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";
/// How long discovered metadata is used before it is read again.
const METADATA_TTL: Duration = Duration::from_secs(24 * 3600);
/// Least time between two JWKS refetches caused by unknown key ids (tokens
/// naming made-up keys must not make the app hammer the provider).
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Bound on each request to the provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a sign-in failed. `Display` is the sentence the visitor reads.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("This sign-in has expired or was started in another browser. Please sign in again.")]
    NoAttempt,
    #[error("This sign-in answer does not belong to the sign-in this browser started. Please sign in again.")]
    WrongState,
    #[error("The provider did not complete the sign-in ({0}). Please sign in again.")]
    ProviderSaidNo(String),
    #[error("The sign-in provider cannot be reached right now; please try again shortly.")]
    ProviderUnreachable(String),
    #[error("The provider did not accept this sign-in (the link may have been used already). Please sign in again.")]
    CodeRefused(String),
    #[error("The sign-in could not be verified ({0}). Please sign in again.")]
    TokenRefused(&'static str),
    #[error("Your e-mail address is not verified with the provider. Verify it there, then sign in again.")]
    EmailNotVerified,
    #[error(
        "The provider did not share an e-mail address; this app needs one to keep your quota."
    )]
    NoEmail,
}

impl SignInError {
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Self::ProviderUnreachable(_) => StatusCode::BAD_GATEWAY,
            Self::EmailNotVerified | Self::NoEmail => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

struct Discovered {
    metadata: CoreProviderMetadata,
    read_at: Instant,
}

/// The app's client at one OpenID provider.
pub struct Provider {
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: SecretString,
    redirect: RedirectUrl,
    http: reqwest::Client,
    discovered: Mutex<Option<Discovered>>,
    last_refetch: Mutex<Option<Instant>>,
}

/// Where to send the visitor, and what to remember until they come back.
pub struct Authorization {
    pub url: String,
    pub attempt: SignInAttempt,
}

impl Provider {
    pub fn new(
        issuer: &str,
        client_id: String,
        client_secret: SecretString,
        redirect_uri: String,
    ) -> Result<Self, String> {
        let issuer = IssuerUrl::new(issuer.to_owned())
            .map_err(|e| format!("OIDC_ISSUER_URL is not a URL: {e}"))?;
        let redirect = RedirectUrl::new(redirect_uri)
            .map_err(|e| format!("the redirect URI is not a URL: {e}"))?;
        // Redirects off: a provider's answer is never followed elsewhere (SSRF).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .map_err(|e| format!("could not build the HTTP client: {e}"))?;
        Ok(Self {
            issuer,
            client_id: ClientId::new(client_id),
            client_secret,
            redirect,
            http,
            discovered: Mutex::new(None),
            last_refetch: Mutex::new(None),
        })
    }

    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// The provider's metadata and keys: discovered once, then kept for a day.
    async fn metadata(&self) -> Result<CoreProviderMetadata, SignInError> {
        let mut discovered = self.discovered.lock().await;
        if let Some(found) = discovered.as_ref() {
            if found.read_at.elapsed() < METADATA_TTL {
                return Ok(found.metadata.clone());
            }
        }
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| {
                tracing::warn!(issuer = %self.issuer.as_str(), error = %error_chain(&e), "OpenID discovery failed");
                SignInError::ProviderUnreachable(e.to_string())
            })?;
        tracing::info!(issuer = %self.issuer.as_str(), keys = metadata.jwks().keys().len(), "read the OpenID provider's metadata and keys");
        *discovered = Some(Discovered {
            metadata: metadata.clone(),
            read_at: Instant::now(),
        });
        Ok(metadata)
    }

    /// Reads the provider's keys again (a token named a key not in the cached
    /// set: the provider may have rotated its keys), at most once per interval.
    async fn refetch_keys(&self) -> Option<CoreProviderMetadata> {
        {
            let mut last = self.last_refetch.lock().await;
            if last.is_some_and(|at| at.elapsed() < JWKS_REFETCH_INTERVAL) {
                return None;
            }
            *last = Some(Instant::now());
        }
        let mut discovered = self.discovered.lock().await;
        let found = discovered.as_mut()?;
        match JsonWebKeySet::fetch_async(found.metadata.jwks_uri(), &self.http).await {
            Ok(keys) => {
                tracing::info!(
                    keys = keys.keys().len(),
                    "refetched the OpenID provider's keys"
                );
                found.metadata = found.metadata.clone().set_jwks(keys);
                Some(found.metadata.clone())
            }
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "could not refetch the OpenID provider's keys");
                None
            }
        }
    }

    fn client(
        &self,
        metadata: CoreProviderMetadata,
    ) -> CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(
            metadata,
            self.client_id.clone(),
            Some(ClientSecret::new(
                self.client_secret.expose_secret().to_owned(),
            )),
        )
        .set_redirect_uri(self.redirect.clone())
    }

    /// Starts a sign-in: the provider's authorization URL, and the attempt to
    /// remember (state, nonce, PKCE verifier) until the visitor comes back.
    pub async fn authorize(&self, return_to: String) -> Result<Authorization, SignInError> {
        let client = self.client(self.metadata().await?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".to_owned()))
            .add_scope(Scope::new("profile".to_owned()))
            .set_pkce_challenge(challenge)
            .url();
        Ok(Authorization {
            url: url.to_string(),
            attempt: SignInAttempt {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
                return_to,
                expires: now_secs() + SIGN_IN_TTL_SECS,
            },
        })
    }

    /// Finishes a sign-in: exchanges `code` (with the attempt's PKCE verifier)
    /// and checks the ID token. The caller has already matched the state.
    pub async fn finish(
        &self,
        attempt: &SignInAttempt,
        code: &str,
    ) -> Result<Account, SignInError> {
        let metadata = self.metadata().await?;
        let client = self.client(metadata);
        let exchange = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| SignInError::ProviderUnreachable(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(attempt.pkce_verifier.clone()));
        let tokens = exchange.request_async(&self.http).await.map_err(|error| {
            match &error {
                RequestTokenError::ServerResponse(answer) => {
                    tracing::info!(error = %answer, "the provider refused the authorization code");
                    SignInError::CodeRefused(answer.to_string())
                }
                other => {
                    tracing::warn!(error = %error_chain(other), "the provider's token endpoint failed");
                    SignInError::ProviderUnreachable(other.to_string())
                }
            }
        })?;
        let id_token = tokens
            .id_token()
            .ok_or(SignInError::TokenRefused("no ID token"))?;
        let nonce = Nonce::new(attempt.nonce.clone());
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => self.with_fresh_keys(id_token, &nonce).await,
            checked => checked.cloned(),
        }
        .map_err(|error| {
            tracing::info!(%error, "refused an ID token");
            SignInError::TokenRefused(reason(&error))
        })?;
        account_from(&claims)
    }

    /// Checks `id_token` again after refetching the provider's keys (a key id
    /// it did not know: the provider may have rotated its keys).
    async fn with_fresh_keys(
        &self,
        id_token: &CoreIdToken,
        nonce: &Nonce,
    ) -> Result<CoreIdTokenClaims, ClaimsVerificationError> {
        match self.refetch_keys().await {
            Some(fresh) => {
                let client = self.client(fresh);
                let verifier = client.id_token_verifier();
                let claims = id_token.claims(&verifier, nonce).cloned();
                claims
            }
            None => Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )),
        }
    }
}

/// Which check an ID token failed, in words.
fn reason(error: &ClaimsVerificationError) -> &'static str {
    match error {
        ClaimsVerificationError::Expired(_) => "the token has expired",
        ClaimsVerificationError::InvalidAudience(_) => "the token is for another application",
        ClaimsVerificationError::InvalidIssuer(_) => "the token is from another issuer",
        ClaimsVerificationError::InvalidNonce(_) => "the token belongs to another sign-in",
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        ) => "the token is signed by a key the provider does not publish",
        ClaimsVerificationError::SignatureVerification(_) => "the token's signature is not valid",
        _ => "the token is not valid",
    }
}

/// An error with its sources, for logs.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The account a checked ID token names: a verified e-mail is required, and a
/// subject must be able to name an account (never an address: it could share a
/// signed-out visitor's count).
fn account_from(claims: &CoreIdTokenClaims) -> Result<Account, SignInError> {
    // An address has no `@`: an account's e-mail never names a signed-out count.
    let email = claims
        .email()
        .map(|email| email.as_str().to_owned())
        .filter(|email| email.contains('@'))
        .ok_or(SignInError::NoEmail)?;
    if claims.email_verified() != Some(true) {
        return Err(SignInError::EmailNotVerified);
    }
    let subject = claims.subject().as_str().to_owned();
    if !Visitor::may_name_an_account(&subject) {
        return Err(SignInError::TokenRefused("unusable subject"));
    }
    let name = claims
        .name()
        .and_then(|names| names.get(None))
        .map(|name| name.as_str().to_owned());
    Ok(Account {
        subject,
        email,
        name,
        expires: 0,
        session: String::new(),
    })
}
