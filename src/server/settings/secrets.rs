//! Secrets, read only from the environment (never from a file, never with a
//! default) and wrapped so they cannot be printed by mistake.

use secrecy::SecretString;

/// Secrets, only from the environment. Wrapped so they cannot be printed by mistake.
#[derive(Debug, Default)]
pub struct Secrets {
    pub replicate_api_token: Option<SecretString>,
    /// Replicate's webhook signing secret (`whsec_…`); unset: fetched with the
    /// API token when webhooks are on.
    pub replicate_webhook_secret: Option<SecretString>,
    /// Native Redis (`redis://…`); may carry a password.
    pub redis_url: Option<SecretString>,
    pub upstash_redis_rest_url: Option<SecretString>,
    pub upstash_redis_rest_token: Option<SecretString>,
    /// The owner's Cog model servers, comma-separated base URLs (may carry
    /// credentials, so never logged whole).
    pub cog_urls: Option<SecretString>,
    /// A bearer token for a proxy in front of the model servers.
    pub cog_token: Option<SecretString>,
    /// The token the model servers send with their webhooks (their
    /// `WEBHOOK_AUTH_TOKEN`); without it, runs are requests held open.
    pub cog_webhook_token: Option<SecretString>,
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
    /// The owner's token for `/admin/api/` (32 bytes or more; without it the
    /// owner's API is a 404).
    pub admin_token: Option<SecretString>,
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
            replicate_webhook_secret: non_empty("REPLICATE_WEBHOOK_SECRET"),
            redis_url: non_empty("REDIS_URL"),
            upstash_redis_rest_url: non_empty("UPSTASH_REDIS_REST_URL"),
            upstash_redis_rest_token: non_empty("UPSTASH_REDIS_REST_TOKEN"),
            metrics_token: non_empty("METRICS_TOKEN"),
            cog_urls: non_empty("COG_URLS"),
            cog_token: non_empty("COG_TOKEN"),
            cog_webhook_token: non_empty("COG_WEBHOOK_TOKEN"),
            replicate_base_url: plain("REPLICATE_BASE_URL"),
            oidc_issuer_url: plain("OIDC_ISSUER_URL"),
            oidc_client_id: plain("OIDC_CLIENT_ID"),
            oidc_client_secret: non_empty("OIDC_CLIENT_SECRET"),
            session_secret: non_empty("SESSION_SECRET"),
            admin_token: non_empty("ADMIN_TOKEN"),
        }
    }
}
