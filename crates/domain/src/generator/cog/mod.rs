//! The same model on the owner's own GPUs: Cog model servers
//! (`docker run -p 5000:5000 --gpus all r8.im/…`), which speak Cog's HTTP API
//! rather than Replicate's: no status reads (a prediction is followed through
//! its webhooks, or through a request held open), one prediction at a time per
//! server (a second gets 409), progress only in `logs` events, outputs as
//! `data:` URIs. Every instance shares the servers through the store
//! ([`pool`]); each run is created with an id the app chose
//! (`PUT /predictions/{id}`, never sent twice: after a run finished the same
//! PUT would start a new one), cancelled with `POST /predictions/{id}/cancel`
//! when nobody will use it, and settled by what the server reports of it
//! (`metrics.predict_time`: a run that started is billed).

mod pool;

use super::replicate::prediction::{decode_data_uri, last_percent, sniff, without_url, Prediction};
use super::{
    GeneratedImage, ImageGenerator, Look, Meter, ModelError, ProgressReporter, RunRecord,
    WebhookRefusal,
};
use crate::clock::Clock;
use crate::on_drop::SpawnOnDrop;
use crate::shared::SharedState;
use async_trait::async_trait;
use lofianime_wire::progress::Phase;
use lofianime_wire::prompt::Prompt;
use pool::{Held, NoServer, Pool};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a run's record outlives its deadline.
const RECORD_KEPT: Duration = Duration::from_secs(600);
/// How long after its deadline a run's final event is waited for.
const RECORD_SEARCH: Duration = Duration::from_secs(25);
/// How often a run's record is looked at when no event woke us.
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// The longest tail of a run's logs kept in its record.
const LOGS_KEPT: usize = 400;
/// How long a server that could not be reached is skipped.
const UNREACHABLE_FOR: Duration = Duration::from_secs(30);
/// How long a health check may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

fn run_key(id: &str) -> String {
    format!("lofianime:cog:run:{id}")
}

/// One model server: its base URL and, for a proxy in front of it, a bearer token.
#[derive(Clone)]
pub struct CogServer {
    pub url: url::Url,
    pub token: Option<SecretString>,
}

/// Where the model servers call back, and the token they send.
#[derive(Clone)]
pub struct CogWebhook {
    /// The app's endpoint (`{base}/webhooks/cog`).
    pub url: url::Url,
    /// The servers' `WEBHOOK_AUTH_TOKEN`, checked as the bearer token.
    pub token: SecretString,
}

#[derive(Clone)]
pub struct CogSettings {
    pub servers: Vec<CogServer>,
    pub prompt_prefix: String,
    /// The model's other inputs; `prompt` (and `width`, `height`, `seed`) are
    /// set per call.
    pub input: Map<String, Value>,
    /// Overall bound from the first wait in line to a usable result.
    pub deadline: Duration,
    pub max_image_bytes: usize,
    /// Progress and outputs through webhooks (`None`: each run is a request
    /// held open until it ends, and the page shows no percentage).
    pub webhook: Option<CogWebhook>,
}

pub struct CogGenerator {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    settings: CogSettings,
    pool: Pool,
    state: Arc<dyn SharedState>,
    /// Runs this process waits on, woken when their event lands here.
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
    /// Servers this process could not reach, and when: skipped for
    /// [`UNREACHABLE_FOR`] so a dead machine does not cost every generation
    /// a connection attempt.
    unreachable: Mutex<HashMap<usize, Instant>>,
}

/// How one try on one server ended without an image.
enum Attempt {
    /// The server did not take the run (busy, down): nothing ran; try another.
    Skip(String),
    /// The server could not be reached: nothing ran; try another, and skip it
    /// for a while.
    Unreachable(String),
    /// The run happened (or may have) and failed.
    Failed(ModelError),
}

/// The app's side of the servers' webhooks.
#[derive(Clone)]
pub struct CogWebhooks {
    inner: Arc<Inner>,
}

impl CogGenerator {
    /// The generator with its pool and run records on `state` (shared by
    /// every instance using it, or this process's memory).
    pub fn new(
        settings: CogSettings,
        store: Arc<dyn crate::studio::RemoteStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ModelError> {
        let state: Arc<dyn SharedState> = store;
        if settings.servers.is_empty() {
            return Err(ModelError::Owner("no model server in COG_URLS".into()));
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("lofianime/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ModelError::Owner(format!("could not build the HTTP client: {e}")))?;
        let pool = Pool::new(state.clone(), clock, settings.servers.len());
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                settings,
                pool,
                state,
                waiting: Mutex::default(),
                unreachable: Mutex::default(),
            }),
        })
    }

    /// The webhook endpoint's handle, when the servers call back.
    pub fn webhooks(&self) -> Option<CogWebhooks> {
        self.inner.settings.webhook.as_ref().map(|_| CogWebhooks {
            inner: self.inner.clone(),
        })
    }

    /// Each server's origin and what its `GET /health-check` says
    /// (`READY`, `BUSY`, `STARTING`, `SETUP_FAILED`…, or why it could not be
    /// asked).
    pub async fn health(&self) -> Vec<(String, String)> {
        let checks = self.inner.settings.servers.iter().map(|server| async move {
            let origin = server.url.origin().ascii_serialization();
            let status = self.inner.health_of(server).await;
            (origin, status)
        });
        futures_util::future::join_all(checks).await
    }
}

impl Inner {
    fn endpoint(&self, server: &CogServer, path: &str) -> url::Url {
        let mut url = server.url.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{path}"));
        url
    }

    fn request(
        &self,
        method: reqwest::Method,
        server: &CogServer,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.endpoint(server, path));
        match &server.token {
            Some(token) => request.bearer_auth(token.expose_secret()),
            None => request,
        }
    }

    async fn health_of(&self, server: &CogServer) -> String {
        let answer = self
            .request(reqwest::Method::GET, server, "/health-check")
            .timeout(HEALTH_TIMEOUT)
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => response
                .json::<Value>()
                .await
                .ok()
                .and_then(|body| body["status"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "UNREADABLE".into()),
            Ok(response) => format!("HTTP {}", response.status().as_u16()),
            Err(error) => format!("unreachable ({})", without_url(&error)),
        }
    }

    fn input(&self, prompt: &Prompt, look: Option<Look>) -> Value {
        Value::Object(super::model_input(
            &self.settings.input,
            &self.settings.prompt_prefix,
            prompt,
            look,
        ))
    }

    /// The run's record in the store, once it holds its final event.
    async fn final_event(&self, id: &str) -> Option<Prediction> {
        let record = self.state.read_hash(&run_key(id)).await.ok()?;
        serde_json::from_str(record.get("final")?).ok()
    }

    /// The phase the run's latest event says.
    async fn latest_phase(&self, id: &str) -> Option<Phase> {
        let record = self.state.read_hash(&run_key(id)).await.ok()?;
        let latest: Prediction = serde_json::from_str(record.get("latest")?).ok()?;
        Some(match latest.status.as_str() {
            "starting" => Phase::Starting,
            _ => Phase::Generating {
                percent: latest.logs.as_deref().and_then(last_percent),
            },
        })
    }

    fn notify_of(&self, id: &str) -> Arc<Notify> {
        self.waiting
            .lock()
            .expect("the waiting list is never poisoned")
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    fn forget(&self, id: &str) {
        self.waiting
            .lock()
            .expect("the waiting list is never poisoned")
            .remove(id);
    }

    /// Sends run `id` to the held server and learns how it ended: from the
    /// answer of the request held open, or from its final event. Lets the
    /// server go at the end, whoever still waits for the answer.
    async fn drive(
        &self,
        held: Held,
        id: &str,
        body: Value,
        until: Instant,
    ) -> Result<Prediction, Attempt> {
        let server = &self.settings.servers[held.server];
        let mut request = self
            .request(reqwest::Method::PUT, server, &format!("/predictions/{id}"))
            .json(&body);
        let webhooks = self.settings.webhook.is_some();
        if webhooks {
            request = request.header("Prefer", "respond-async");
        }
        let sent = tokio::time::timeout_at(until.into(), request.send()).await;
        let response = match sent {
            Err(_) => return Err(Attempt::Failed(ModelError::TimedOut)),
            Ok(Err(error)) if error.is_connect() => {
                return Err(Attempt::Unreachable(format!(
                    "unreachable ({})",
                    without_url(&error)
                )))
            }
            Ok(Err(error)) => {
                return Err(Attempt::Failed(ModelError::Unavailable(without_url(
                    &error,
                ))))
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status == reqwest::StatusCode::CONFLICT {
            return Err(Attempt::Skip("busy (409)".into()));
        }
        if status.is_server_error() && status != reqwest::StatusCode::INTERNAL_SERVER_ERROR {
            return Err(Attempt::Skip(format!("HTTP {}", status.as_u16())));
        }
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(Attempt::Failed(ModelError::Failed(format!(
                "the model server answered {}: {}",
                status.as_u16(),
                text.chars().take(200).collect::<String>()
            ))));
        }
        if !webhooks {
            let read = tokio::time::timeout_at(until.into(), response.json::<Prediction>()).await;
            drop(held);
            return match read {
                Ok(Ok(prediction)) => Ok(prediction),
                Ok(Err(error)) => Err(Attempt::Failed(ModelError::Unavailable(without_url(
                    &error,
                )))),
                Err(_) => Err(Attempt::Failed(ModelError::TimedOut)),
            };
        }
        // Accepted (202): its events tell the rest.
        let woken = self.notify_of(id);
        let outcome = loop {
            if let Some(prediction) = self.final_event(id).await {
                break Ok(prediction);
            }
            if Instant::now() >= until {
                break Err(Attempt::Failed(ModelError::TimedOut));
            }
            let _ = tokio::time::timeout(LOOK_EVERY, woken.notified()).await;
        };
        self.forget(id);
        drop(held);
        outcome
    }

    async fn cancel(&self, server: usize, id: &str) {
        let server = &self.settings.servers[server];
        let sent = self
            .request(
                reqwest::Method::POST,
                server,
                &format!("/predictions/{id}/cancel"),
            )
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                tracing::info!(prediction = %id, "cancelled the run on its model server")
            }
            Ok(response) => {
                tracing::warn!(prediction = %id, status = response.status().as_u16(), "the model server refused the cancel")
            }
            Err(error) => {
                tracing::warn!(prediction = %id, error = %without_url(&error), "could not cancel the run on its model server")
            }
        }
    }

    async fn output(
        &self,
        prediction: &Prediction,
        progress: &ProgressReporter,
    ) -> Result<GeneratedImage, ModelError> {
        match prediction.status.as_str() {
            "succeeded" => {}
            "failed" => {
                let error = prediction.error_text();
                return Err(if error.to_ascii_lowercase().contains("nsfw") {
                    ModelError::Unsafe(error)
                } else {
                    ModelError::Failed(error)
                });
            }
            "canceled" => return Err(ModelError::Canceled),
            other => return Err(ModelError::Failed(format!("the run ended as {other}"))),
        }
        let output = prediction
            .first_output()
            .ok_or_else(|| ModelError::BadOutput("the run succeeded with no output".into()))?;
        progress.report(Phase::Saving);
        let bytes =
            match output.strip_prefix("data:") {
                Some(rest) => decode_data_uri(rest, self.settings.max_image_bytes)?,
                None => return Err(ModelError::BadOutput(
                    "an output that is not a data: URI (start the servers without --upload-url)"
                        .into(),
                )),
            };
        if bytes.len() > self.settings.max_image_bytes {
            return Err(ModelError::BadOutput(format!(
                "output larger than {} bytes",
                self.settings.max_image_bytes
            )));
        }
        let format = sniff(&bytes).ok_or_else(|| {
            ModelError::BadOutput("the output is not a PNG, JPEG or WebP image".into())
        })?;
        Ok(GeneratedImage::encoded(bytes, format))
    }
}

/// What the server's answer says the run cost: it ran (was billed) when it
/// reported any predict time.
fn record_of(prediction: &Prediction) -> RunRecord {
    let billed_secs = prediction
        .metrics
        .as_ref()
        .and_then(|metrics| metrics.predict_time)
        .unwrap_or(0.0)
        .max(0.0);
    RunRecord {
        run_id: Some(prediction.id.clone()),
        processed: billed_secs > 0.0 || prediction.status == "succeeded",
        billed_secs,
    }
}

fn nothing_ran() -> RunRecord {
    RunRecord {
        run_id: None,
        processed: false,
        billed_secs: 0.0,
    }
}

#[async_trait]
impl ImageGenerator for CogGenerator {
    fn describe(&self) -> String {
        let settings = &self.inner.settings;
        let origins: Vec<String> = settings
            .servers
            .iter()
            .map(|server| server.url.origin().ascii_serialization())
            .collect();
        let progress = match &settings.webhook {
            Some(webhook) => format!("webhooks to {}", webhook.url),
            None => "requests held open (no progress percentage)".into(),
        };
        format!(
            "Cog model servers ({}): {}, {progress}",
            origins.len(),
            origins.join(", ")
        )
    }

    fn is_offline(&self) -> bool {
        false
    }

    async fn generate_with_progress(
        &self,
        prompt: &Prompt,
        progress: &ProgressReporter,
    ) -> Result<GeneratedImage, ModelError> {
        self.run(prompt, None, progress).await
    }

    async fn generate_look(
        &self,
        prompt: &Prompt,
        look: Look,
        progress: &ProgressReporter,
    ) -> Result<GeneratedImage, ModelError> {
        let mut image = self.run(prompt, Some(look), progress).await?;
        image.seed = Some(look.seed);
        Ok(image)
    }

    fn cog_webhooks(&self) -> Option<CogWebhooks> {
        self.webhooks()
    }

    async fn server_health(&self) -> Vec<(String, String)> {
        self.health().await
    }

    fn model_servers_count(&self) -> Option<usize> {
        Some(self.inner.settings.servers.len())
    }

    async fn model_servers(&self) -> Option<(usize, usize)> {
        let health = self.health().await;
        let up = health
            .iter()
            .filter(|(_, status)| status == "READY" || status == "BUSY")
            .count();
        Some((up, health.len()))
    }
}

impl CogGenerator {
    async fn run(
        &self,
        prompt: &Prompt,
        look: Option<Look>,
        progress: &ProgressReporter,
    ) -> Result<GeneratedImage, ModelError> {
        let inner = &self.inner;
        let deadline = Instant::now() + inner.settings.deadline;
        progress.report(Phase::Waiting);
        let meter = progress.meter();
        // Servers found unreachable lately are left out, unless that is all of them.
        let mut down: HashSet<usize> = {
            let mut recent = inner.unreachable.lock().expect("never poisoned");
            recent.retain(|_, at| at.elapsed() < UNREACHABLE_FOR);
            recent.keys().copied().collect()
        };
        if down.len() >= inner.settings.servers.len() {
            down.clear();
        }
        // After a server refused a run, the run is settled as "nothing ran"
        // if the generation ends before another run is sent.
        let mut nothing_yet: Option<SpawnOnDrop> = None;
        loop {
            let taken =
                tokio::time::timeout_at(deadline.into(), inner.pool.take(progress, &down)).await;
            let held = match taken {
                Ok(Ok(held)) => held,
                Ok(Err(NoServer::AllDown)) => {
                    if let Some(mut guard) = nothing_yet.take() {
                        guard.disarm();
                    }
                    meter.publish(nothing_ran());
                    return Err(ModelError::NoServer(
                        "every model server is down or refusing runs".into(),
                    ));
                }
                Err(_) => {
                    if let Some(mut guard) = nothing_yet.take() {
                        guard.disarm();
                    }
                    meter.publish(nothing_ran());
                    return Err(ModelError::Busy {
                        retry_after: Some(Duration::from_secs(30)),
                    });
                }
            };
            if let Some(mut guard) = nothing_yet.take() {
                guard.disarm();
            }
            let server = held.server;
            let why = match self
                .run_on(held, prompt, look, deadline, progress, &meter)
                .await
            {
                Ok(image) => return Ok(image),
                Err(Attempt::Failed(error)) => return Err(error),
                Err(Attempt::Skip(why)) => why,
                Err(Attempt::Unreachable(why)) => {
                    inner
                        .unreachable
                        .lock()
                        .expect("never poisoned")
                        .insert(server, Instant::now());
                    why
                }
            };
            tracing::warn!(server = %inner.settings.servers[server].url.origin().ascii_serialization(), %why, "a model server did not take the run; trying the next");
            down.insert(server);
            let meter = meter.clone();
            nothing_yet = Some(SpawnOnDrop::new(
                async move { meter.publish(nothing_ran()) },
            ));
        }
    }

    async fn run_on(
        &self,
        held: Held,
        prompt: &Prompt,
        look: Option<Look>,
        deadline: Instant,
        progress: &ProgressReporter,
        meter: &Arc<Meter>,
    ) -> Result<GeneratedImage, Attempt> {
        let inner = self.inner.clone();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let server = held.server;
        let mut body = json!({ "id": id, "input": inner.input(prompt, look) });
        if let Some(webhook) = &inner.settings.webhook {
            body["webhook"] = json!(webhook.url.as_str());
            body["webhook_events_filter"] = json!(["start", "output", "logs", "completed"]);
            let opened = inner
                .state
                .create_hash(
                    &run_key(&id),
                    &[("server", server.to_string())],
                    (inner.settings.deadline + RECORD_KEPT).as_millis() as u64,
                )
                .await;
            if let Err(error) = opened {
                return Err(Attempt::Failed(ModelError::Unavailable(format!(
                    "the run's record could not be opened: {error}"
                ))));
            }
        }
        // From here a run may start, and the server's report of it settles it.
        progress.settled_by_record();
        let (answer, answered) = tokio::sync::oneshot::channel();
        {
            let (inner, id, meter) = (inner.clone(), id.clone(), meter.clone());
            let until = deadline + RECORD_SEARCH;
            crate::on_drop::spawn_cleanup(async move {
                let outcome = inner.drive(held, &id, body, until).await;
                match &outcome {
                    Ok(prediction) => meter.publish(record_of(prediction)),
                    // Refused: the caller tries another server.
                    Err(Attempt::Skip(_) | Attempt::Unreachable(_)) => {}
                    Err(Attempt::Failed(_)) => meter.publish(RunRecord::assumed_billed(
                        Some(id.clone()),
                        inner.settings.deadline,
                    )),
                }
                let _ = answer.send(outcome);
            });
        }
        tracing::info!(prediction = %id, server = %inner.settings.servers[server].url.origin().ascii_serialization(), "sent a run to a Cog model server");
        // If the visitor goes away or cancels (this future is dropped), or the
        // deadline passes, the run is cancelled on its server.
        let mut guard = {
            let (inner, id) = (inner.clone(), id.clone());
            SpawnOnDrop::new(async move {
                tracing::warn!(prediction = %id, "the generation was abandoned before the run finished; cancelling it");
                inner.cancel(server, &id).await;
            })
        };
        let follow = async {
            loop {
                tokio::time::sleep(LOOK_EVERY).await;
                if let Some(phase) = inner.latest_phase(&id).await {
                    progress.report(phase);
                }
            }
        };
        let watch_progress = inner.settings.webhook.is_some();
        let outcome = tokio::select! {
            outcome = answered => outcome.unwrap_or_else(|_| Err(Attempt::Failed(ModelError::Unavailable("the run's task stopped unexpectedly".into())))),
            () = follow, if watch_progress => unreachable!("following never ends"),
            () = tokio::time::sleep_until(deadline.into()) => {
                guard.disarm();
                inner.cancel(server, &id).await;
                return Err(Attempt::Failed(ModelError::TimedOut));
            }
        };
        guard.disarm();
        let prediction = outcome?;
        tracing::info!(prediction = %id, status = %prediction.status, "the run ended");
        inner
            .output(&prediction, progress)
            .await
            .map_err(Attempt::Failed)
    }
}

impl CogWebhooks {
    /// Whether a delivery carries the servers' bearer token (compared in
    /// constant time); checked before its body is read.
    pub fn authorized(&self, authorization: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        let Some(webhook) = &self.inner.settings.webhook else {
            return false;
        };
        let expected = format!("Bearer {}", webhook.token.expose_secret());
        let given = authorization.unwrap_or_default();
        given.as_bytes().ct_eq(expected.as_bytes()).into()
    }

    /// Writes what an authorized delivery says to its run's record: `Ok(true)`
    /// when applied, `Ok(false)` for a run this app did not open (or already
    /// over): acknowledged and ignored.
    pub async fn receive(&self, body: &[u8]) -> Result<bool, WebhookRefusal> {
        let mut prediction: Prediction = serde_json::from_slice(body)
            .map_err(|e| WebhookRefusal::Unreadable(format!("not a prediction: {e}")))?;
        if prediction.id.len() != 32 || !prediction.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        let key = run_key(&prediction.id);
        let state = &self.inner.state;
        let record = state
            .read_hash(&key)
            .await
            .map_err(|e| WebhookRefusal::Unavailable(e.to_string()))?;
        if record.is_empty() || record.contains_key("final") {
            return Ok(false);
        }
        let terminal = matches!(
            prediction.status.as_str(),
            "succeeded" | "failed" | "canceled"
        );
        let field = if terminal {
            "final"
        } else {
            // Progress needs only the last bar of the logs, never the output.
            prediction.keep_logs_tail(LOGS_KEPT);
            prediction.output = Value::Null;
            "latest"
        };
        let text = serde_json::to_string(&prediction)
            .map_err(|e| WebhookRefusal::Unreadable(e.to_string()))?;
        state
            .update_hash(&key, &[(field, text)])
            .await
            .map_err(|e| WebhookRefusal::Unavailable(e.to_string()))?;
        if terminal {
            if let Some(woken) = self
                .inner
                .waiting
                .lock()
                .expect("never poisoned")
                .get(&prediction.id)
            {
                woken.notify_one();
            }
        }
        Ok(true)
    }
}
