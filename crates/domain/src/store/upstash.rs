//! The Upstash Redis REST store (`UPSTASH_REDIS_REST_URL` + `_TOKEN`): each
//! command is an HTTPS `POST` of a JSON array with a Bearer token, over one
//! pooled reqwest client.

use super::{Reply, ScriptError, ScriptRunner, ScriptedStore, StoreError};
use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::time::Duration;

/// Attempts for a command whose connection could not be made at all. Nothing was
/// sent, so trying again cannot count a request twice; any other failure (a
/// timeout after sending, an HTTP error) is not retried.
const CONNECT_ATTEMPTS: u32 = 3;

/// An Upstash-compatible REST endpoint, for the limiter and the shared state.
pub type UpstashRestStore = ScriptedStore<UpstashRest>;

pub struct UpstashSettings {
    /// The REST endpoint, e.g. `https://eu1-xyz.upstash.io`.
    pub url: String,
    pub token: SecretString,
    /// Bound on each HTTP request.
    pub timeout: Duration,
    /// Put `#!lua flags=allow-key-locking` on the scripts (real Upstash only).
    pub key_locking: bool,
}

impl UpstashSettings {
    /// Key locking is an Upstash feature: on for `*.upstash.io`, off for other
    /// REST servers (local bridges in front of plain Redis reject the shebang).
    pub fn key_locking_by_host(url: &str) -> bool {
        url::Url::parse(url)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| h == "upstash.io" || h.ends_with(".upstash.io"))
            })
            .unwrap_or(false)
    }
}

impl UpstashRestStore {
    /// Builds the client and checks, with a `PING`, that the endpoint answers and
    /// accepts the token.
    pub async fn connect(settings: UpstashSettings) -> Result<Self, StoreError> {
        let url = url::Url::parse(&settings.url).map_err(|e| {
            StoreError::Protocol(format!("UPSTASH_REDIS_REST_URL is not a URL: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(StoreError::Protocol(
                "UPSTASH_REDIS_REST_URL must start with https:// (or http:// for a local server)"
                    .into(),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("lofianime/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StoreError::Protocol(format!("could not build the HTTP client: {e}")))?;
        let description = format!(
            "Upstash REST at {}{}",
            url.origin().ascii_serialization(),
            if settings.key_locking {
                " (key-locking scripts)"
            } else {
                ""
            }
        );
        let runner = UpstashRest {
            client,
            url,
            token: settings.token,
            description,
        };
        let store = ScriptedStore::new(runner, settings.key_locking);
        store.ping().await?;
        Ok(store)
    }
}

pub struct UpstashRest {
    client: reqwest::Client,
    url: url::Url,
    token: SecretString,
    description: String,
}

impl UpstashRest {
    async fn command(&self, command: Vec<Value>) -> Result<Reply, ScriptError> {
        let body = Value::Array(command);
        let mut attempt = 0;
        let response = loop {
            let sent = self
                .client
                .post(self.url.clone())
                .bearer_auth(self.token.expose_secret())
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(response) => break response,
                Err(error) if error.is_connect() && attempt + 1 < CONNECT_ATTEMPTS => {
                    // The same back-off as @upstash/redis: e^attempt * 50 ms.
                    let delay = (attempt as f64).exp() * 50.0;
                    tokio::time::sleep(Duration::from_millis(delay as u64)).await;
                    attempt += 1;
                }
                Err(error) => return Err(transport_error(&error).into()),
            }
        };
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            StoreError::Unavailable(format!("reading the answer failed: {}", without_url(&e)))
        })?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let error_text = answer.get("error").and_then(Value::as_str);
        match (status, error_text) {
            (StatusCode::OK, None) => match answer.get("result") {
                Some(result) => Ok(reply(result)?),
                None => Err(
                    StoreError::Protocol(format!("no result in answer: {}", clip(&text))).into(),
                ),
            },
            (StatusCode::UNAUTHORIZED, _) => Err(StoreError::Unauthorized(
                "Upstash rejected the token (check UPSTASH_REDIS_REST_TOKEN)".into(),
            )
            .into()),
            (_, Some(message)) if message.contains("NOSCRIPT") => Err(ScriptError::NoScript),
            (status, Some(message)) if status.is_client_error() || status == StatusCode::OK => {
                Err(StoreError::Command(message.to_owned()).into())
            }
            (status, _) if status.is_server_error() => {
                Err(StoreError::Unavailable(format!("Upstash answered HTTP {status}")).into())
            }
            (status, _) => {
                Err(StoreError::Protocol(format!("HTTP {status}: {}", clip(&text))).into())
            }
        }
    }
}

/// Describes a transport failure without the request URL (it can carry secrets
/// in some set-ups).
fn transport_error(error: &reqwest::Error) -> StoreError {
    if error.is_timeout() {
        StoreError::TimedOut("Upstash did not answer in time".into())
    } else if error.is_connect() {
        StoreError::Unavailable(format!(
            "cannot connect to UPSTASH_REDIS_REST_URL: {}",
            without_url(error)
        ))
    } else {
        StoreError::Unavailable(format!("request to Upstash failed: {}", without_url(error)))
    }
}

fn without_url(error: &reqwest::Error) -> String {
    let mut error_text = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    while let Some(cause) = source {
        error_text = cause.to_string();
        source = cause.source();
    }
    if error_text.is_empty() {
        "no detail".into()
    } else {
        error_text
    }
}

fn clip(text: &str) -> String {
    text.chars().take(200).collect()
}

fn reply(value: &Value) -> Result<Reply, StoreError> {
    Ok(match value {
        Value::Null => Reply::Nil,
        Value::Number(n) => match n.as_i64() {
            Some(i) => Reply::Int(i),
            None => Reply::Int(n.as_f64().unwrap_or_default() as i64),
        },
        Value::String(s) => Reply::Text(s.clone()),
        Value::Array(items) => Reply::List(items.iter().map(reply).collect::<Result<_, _>>()?),
        Value::Bool(b) => Reply::Int(i64::from(*b)),
        Value::Object(_) => return Err(StoreError::Protocol(format!("unexpected object {value}"))),
    })
}

#[async_trait]
impl ScriptRunner for UpstashRest {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn send(&self, command: Vec<String>) -> Result<Reply, ScriptError> {
        self.command(command.into_iter().map(Value::String).collect())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_locking_defaults_on_for_upstash_hosts_only() {
        assert!(UpstashSettings::key_locking_by_host(
            "https://eu1-cool-cat-12345.upstash.io"
        ));
        assert!(!UpstashSettings::key_locking_by_host(
            "http://127.0.0.1:8079"
        ));
        assert!(!UpstashSettings::key_locking_by_host(
            "https://upstash.io.evil.example"
        ));
        assert!(!UpstashSettings::key_locking_by_host("not a url"));
    }
}
