//! Replicate's webhooks: with a public address, each create asks Replicate to
//! call the app when the prediction starts, logs progress and completes. The
//! event lands on any instance: once verified (Standard Webhooks signature,
//! timestamp within 5 minutes, `webhook-id` never seen before), it is written
//! to the run's record in the store the instances share, where the instance
//! running the generation reads it (at once when the event landed on it, else
//! within a poll interval). That instance then reads the prediction from the
//! API only as a fallback.
//!
//! Each run's record is opened before its create, under a random key sent in
//! the webhook address (`?run=`): an event may arrive before the create's
//! answer, and an event for a run nobody opened is acknowledged and ignored.

use super::prediction::Prediction;
use super::Api;
use crate::generator::RunRecord;
use crate::shared::SharedState;
use crate::store::StoreError;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Where Replicate sends events, and how they are checked.
#[derive(Clone)]
pub struct WebhookSettings {
    /// The app's webhook endpoint (`{site.public_url}/webhooks/replicate`).
    pub url: url::Url,
    /// The account's signing secret (`whsec_…`); `None`: fetched once from
    /// `GET /v1/webhooks/default/secret` with the API token.
    pub secret: Option<SecretString>,
    /// How often the running instance reads the prediction itself, in case
    /// events are lost (and once more at the deadline).
    pub fallback_poll: Duration,
}

/// Why an event was refused; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookRefusal {
    /// Not from Replicate as far as this app can tell: 401.
    #[error("{0}")]
    Unverified(String),
    /// Verified but not a prediction: 400.
    #[error("{0}")]
    Unreadable(String),
    /// The signing secret or the store could not be reached: 503 (Replicate
    /// tries again).
    #[error("{0}")]
    Unavailable(String),
}

/// What became of a verified event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Written to its run's record.
    Applied,
    /// For no run this app opened (or no longer keeps): acknowledged, ignored.
    Ignored,
}

/// How long a `webhook-id` is remembered (replays are refused meanwhile;
/// older events fail the timestamp check anyway).
const SEEN_TTL_MS: u64 = 10 * 60 * 1000;
/// How long after a failed fetch of the signing secret it is fetched again.
const SECRET_RETRY: Duration = Duration::from_secs(30);
/// The headers every signed delivery carries.
const SIGNED_HEADERS: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];
/// The longest `webhook-id` accepted (Replicate's are ~30 characters).
const MAX_ID_LEN: usize = 128;
/// The longest tail of a prediction's logs kept in its record (the last
/// progress bar is all the app reads from them).
const LOGS_KEPT: usize = 400;

fn run_key(run: &str) -> String {
    format!("lofianime:replicate:run:{run}")
}

/// A run key as this app makes them (32 hex digits), or nothing.
fn valid_run(run: &str) -> bool {
    run.len() == 32 && run.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(super) struct Inbox {
    pub(super) settings: WebhookSettings,
    state: Arc<dyn SharedState>,
    secret: tokio::sync::OnceCell<standardwebhooks::Webhook>,
    /// When fetching the secret last failed: not tried again for
    /// [`SECRET_RETRY`], so unverified deliveries cannot spend the account's
    /// API calls.
    secret_failed: Mutex<Option<std::time::Instant>>,
    /// Runs this process waits for, woken when their event lands here.
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
}

/// One run's place in the inbox: its key, and the wake-up of the instance
/// that runs it. Dropped when the generation ends.
pub(super) struct Mailbox<'a> {
    inbox: &'a Inbox,
    pub(super) run: String,
    pub(super) woken: Arc<Notify>,
}

impl Drop for Mailbox<'_> {
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.inbox.waiting.lock() {
            waiting.remove(&self.run);
        }
    }
}

impl Inbox {
    pub(super) fn new(settings: WebhookSettings, state: Arc<dyn SharedState>) -> Self {
        Self {
            settings,
            state,
            secret: Default::default(),
            secret_failed: Default::default(),
            waiting: Default::default(),
        }
    }

    /// Opens the record of a new run (kept `ttl`), or `None` when the store
    /// cannot (the run is then polled as without webhooks).
    pub(super) async fn open(&self, ttl: Duration) -> Option<Mailbox<'_>> {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let opened = self
            .state
            .create_hash(
                &run_key(&run),
                &[("prediction", String::new())],
                ttl.as_millis() as u64,
            )
            .await;
        match opened {
            Ok(true) => {}
            Ok(false) => return None,
            Err(error) => {
                tracing::warn!(%error, "could not open a run's record for webhooks; polling it instead");
                return None;
            }
        }
        let woken = Arc::new(Notify::new());
        self.waiting.lock().ok()?.insert(run.clone(), woken.clone());
        Some(Mailbox {
            inbox: self,
            run,
            woken,
        })
    }

    /// The address a run's events go to.
    pub(super) fn address(&self, run: &str) -> String {
        let mut url = self.settings.url.clone();
        url.query_pairs_mut().append_pair("run", run);
        url.to_string()
    }

    /// Notes the prediction a run's create started.
    pub(super) async fn started(&self, run: &str, prediction: &str) {
        let noted = self
            .state
            .update_hash(&run_key(run), &[("prediction", prediction.to_owned())])
            .await;
        if let Err(error) = noted {
            tracing::warn!(%error, %prediction, "could not note the prediction in its run's record");
        }
    }

    /// The latest state of a run its events reported: the terminal one when
    /// it came, else the newest. `None` when none came (or the store failed).
    pub(super) async fn latest(&self, run: &str) -> Option<Prediction> {
        let record = self.state.read_hash(&run_key(run)).await.ok()?;
        let text = record
            .get("final")
            .filter(|t| !t.is_empty())
            .or_else(|| record.get("latest").filter(|t| !t.is_empty()))?;
        serde_json::from_str(text).ok()
    }

    async fn verifier(&self, api: &Api) -> Result<&standardwebhooks::Webhook, WebhookRefusal> {
        if let Some(verifier) = self.secret.get() {
            return Ok(verifier);
        }
        let recently_failed = self
            .secret_failed
            .lock()
            .ok()
            .and_then(|failed| *failed)
            .is_some_and(|at| at.elapsed() < SECRET_RETRY);
        if recently_failed {
            return Err(WebhookRefusal::Unavailable(
                "the webhook signing secret could not be fetched a moment ago".into(),
            ));
        }
        let made = self
            .secret
            .get_or_try_init(|| async {
                let secret = match &self.settings.secret {
                    Some(secret) => secret.clone(),
                    None => api.webhook_secret().await.map_err(|error| {
                        WebhookRefusal::Unavailable(format!(
                            "the webhook signing secret could not be fetched: {error}"
                        ))
                    })?,
                };
                standardwebhooks::Webhook::new(secret.expose_secret()).map_err(|_| {
                    WebhookRefusal::Unavailable(
                        "the webhook signing secret is not a whsec_ base64 key".into(),
                    )
                })
            })
            .await;
        if made.is_err() {
            if let Ok(mut failed) = self.secret_failed.lock() {
                *failed = Some(std::time::Instant::now());
            }
        }
        made
    }

    /// Checks one delivery and writes what it says to its run's record; the
    /// provider's record of the run when the event says it is over.
    pub(super) async fn receive(
        &self,
        api: &Api,
        run: Option<&str>,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Result<(WebhookOutcome, Option<RunRecord>), WebhookRefusal> {
        // Unsigned deliveries are refused before anything else is done.
        if let Some(missing) = SIGNED_HEADERS.iter().find(|h| !headers.contains_key(**h)) {
            return Err(WebhookRefusal::Unverified(format!(
                "the webhook is not signed: no {missing} header"
            )));
        }
        let verifier = self.verifier(api).await?;
        verifier.verify(body, headers).map_err(|error| {
            WebhookRefusal::Unverified(format!("the webhook is not verified: {error}"))
        })?;
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .filter(|id| !id.is_empty() && id.len() <= MAX_ID_LEN)
            .ok_or_else(|| WebhookRefusal::Unverified("the webhook-id is not usable".into()))?;
        let mut event: Prediction = serde_json::from_slice(body).map_err(|error| {
            WebhookRefusal::Unreadable(format!("the webhook body is not a prediction: {error}"))
        })?;
        let first_time = self
            .state
            .create_hash(
                &format!("lofianime:webhook:seen:{id}"),
                &[("seen", "1".into())],
                SEEN_TTL_MS,
            )
            .await
            .map_err(unavailable)?;
        if !first_time {
            return Err(WebhookRefusal::Unverified(
                "this webhook-id was delivered before (a replay)".into(),
            ));
        }
        let Some(run) = run.filter(|run| valid_run(run)) else {
            return Ok((WebhookOutcome::Ignored, None));
        };
        let record = self
            .state
            .read_hash(&run_key(run))
            .await
            .map_err(unavailable)?;
        let ours = record
            .get("prediction")
            .is_some_and(|known| known.is_empty() || *known == event.id);
        let settled = record.get("final").is_some_and(|t| !t.is_empty());
        if !ours || settled {
            return Ok((WebhookOutcome::Ignored, None));
        }
        event.keep_logs_tail(LOGS_KEPT);
        let text = serde_json::to_string(&event)
            .map_err(|e| WebhookRefusal::Unreadable(format!("unwritable prediction: {e}")))?;
        let field = if event.is_terminal() {
            "final"
        } else {
            "latest"
        };
        let written = self
            .state
            .update_hash(
                &run_key(run),
                &[(field, text), ("prediction", event.id.clone())],
            )
            .await
            .map_err(unavailable)?;
        if !written {
            return Ok((WebhookOutcome::Ignored, None));
        }
        if let Some(woken) = self.waiting.lock().ok().and_then(|w| w.get(run).cloned()) {
            woken.notify_one();
        }
        tracing::debug!(prediction = %event.id, status = %event.status, "a webhook event was recorded");
        Ok((WebhookOutcome::Applied, event.record()))
    }
}

fn unavailable(error: StoreError) -> WebhookRefusal {
    WebhookRefusal::Unavailable(format!("the store could not record the event: {error}"))
}
