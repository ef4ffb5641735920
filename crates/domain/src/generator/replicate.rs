//! The hosted model: Replicate's HTTP API. Creates a prediction (by default
//! without `Prefer: wait`, so its id is known at once), polls it to a terminal
//! state within an overall deadline, cancels it when nobody will use the
//! result, and copies the output bytes at once (Replicate deletes API outputs
//! after about an hour). However a run ends, Replicate's own record of it
//! (`started_at`, `metrics.predict_time`) is published on the generation's
//! meter: that record, not what this client happened to see, settles it.
//!
//! Retries follow what the API allows: a create that was throttled (429) or
//! refused with a problem body was not accepted and may be sent again; a create
//! whose connection broke or timed out may have started a paid prediction and is
//! never repeated. Reads and cancels are safe to repeat.

use super::{
    GeneratedImage, ImageFormat, ImageGenerator, Meter, ModelError, ProgressReporter, RunRecord,
};
use crate::on_drop::SpawnOnDrop;
use async_trait::async_trait;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use lofianime_wire::progress::Phase;
use lofianime_wire::prompt::Prompt;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How many times one request is tried before giving up.
const ATTEMPTS: u32 = 4;
/// The longest `Prefer: wait` the API accepts.
const MAX_WAIT_SECS: u64 = 60;
/// How long a stopped run's final record is looked for (well within
/// [`super::RECORD_WAIT`]).
const RECORD_SEARCH: Duration = Duration::from_secs(25);

/// Everything the Replicate generator needs; the token only from the environment.
#[derive(Clone)]
pub struct ReplicateSettings {
    /// `https://api.replicate.com` unless `REPLICATE_BASE_URL` says otherwise.
    pub base_url: url::Url,
    pub token: SecretString,
    /// `owner/name`, for logs.
    pub model: String,
    /// The 64-hex version id (community models are addressed by version).
    pub version: String,
    pub prompt_prefix: String,
    /// The model's other inputs (size, scheduler, steps…); `prompt` is set per call.
    pub input: Map<String, Value>,
    /// Overall bound from create to a usable result.
    pub deadline: Duration,
    /// Seconds the create request is held open (`Prefer: wait`), at most 60;
    /// zero: none (the create answers at once with the prediction's id).
    pub wait: Duration,
    pub poll_interval: Duration,
    /// The largest output accepted, in bytes.
    pub max_image_bytes: usize,
    /// First delay of the exponential back-off between retries.
    pub backoff: Duration,
}

pub struct ReplicateGenerator {
    api: Arc<Api>,
}

/// The HTTP side, shared with the tasks a generation spawns.
struct Api {
    client: reqwest::Client,
    settings: ReplicateSettings,
}

/// A create that did not give us a prediction, and whether it may have started
/// one all the same (then it counts as billed: its id is unknown, so it can be
/// neither stopped nor read).
struct CreateFailed {
    error: ModelError,
    may_have_started: bool,
}

impl CreateFailed {
    /// Refused by the provider: no prediction was started.
    fn refused(error: ModelError) -> Self {
        Self {
            error,
            may_have_started: false,
        }
    }

    /// What the owner is billed for a create that failed like this.
    fn record(&self, deadline: Duration) -> RunRecord {
        if self.may_have_started {
            RunRecord::assumed_billed(None, deadline)
        } else {
            RunRecord {
                run_id: None,
                processed: false,
                billed_secs: 0.0,
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct Prediction {
    id: String,
    status: String,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    error: Value,
    #[serde(default)]
    logs: Option<String>,
    /// When it started processing (and billing); null while it has not.
    #[serde(default)]
    started_at: Option<String>,
    #[serde(default)]
    metrics: Option<PredictionMetrics>,
}

#[derive(Debug, Default, Deserialize)]
struct PredictionMetrics {
    /// Billed seconds of a public time-billed model, once the run ended.
    #[serde(default)]
    predict_time: Option<f64>,
}

impl Prediction {
    fn first_output(&self) -> Option<&str> {
        match &self.output {
            Value::String(s) if !s.is_empty() => Some(s),
            Value::Array(items) => items
                .iter()
                .find_map(|v| v.as_str().filter(|s| !s.is_empty())),
            _ => None,
        }
    }

    fn is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "succeeded" | "failed" | "canceled" | "aborted"
        )
    }

    /// What the provider billed for this run, once it is over.
    fn record(&self) -> Option<RunRecord> {
        if !self.is_terminal() {
            return None;
        }
        let billed_secs = self
            .metrics
            .as_ref()
            .and_then(|metrics| metrics.predict_time)
            .unwrap_or(0.0)
            .max(0.0);
        Some(RunRecord {
            run_id: Some(self.id.clone()),
            processed: self.started_at.is_some() || billed_secs > 0.0,
            billed_secs,
        })
    }

    /// Terminal, or still `processing` but already holding its output (SDXL
    /// models answer like that when `Prefer: wait` runs out at the last moment).
    fn is_done(&self) -> bool {
        self.is_terminal() || (self.status == "processing" && self.first_output().is_some())
    }

    /// The phase to show: `starting`, then `processing` with the last progress
    /// bar percentage in the logs (diffusers print `45%|████▌     | 23/50`).
    fn phase(&self) -> Phase {
        match self.status.as_str() {
            "starting" => Phase::Starting,
            _ => Phase::Generating {
                percent: self.logs.as_deref().and_then(last_percent),
            },
        }
    }

    fn error_text(&self) -> String {
        match &self.error {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
}

/// The parts of an RFC 7807 problem body worth logging.
fn problem(body: &str) -> String {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return body.chars().take(300).collect();
    };
    let field = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut text = format!("{} {}", field("title"), field("detail"))
        .trim()
        .to_owned();
    if let Some(fields) = value.get("invalid_fields") {
        text.push_str(&format!(" invalid_fields: {fields}"));
    }
    text
}

/// `Retry-After` in seconds or as an HTTP date, or a `retry_after` in the body.
fn retry_after(headers: &HeaderMap, body: &str) -> Option<Duration> {
    let from_header = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.trim()
                .parse::<u64>()
                .map(Duration::from_secs)
                .ok()
                .or_else(|| {
                    httpdate::parse_http_date(v)
                        .ok()
                        .map(|at| at.duration_since(SystemTime::now()).unwrap_or_default())
                })
        });
    from_header.or_else(|| {
        serde_json::from_str::<Value>(body)
            .ok()?
            .get("retry_after")?
            .as_f64()
            .map(|s| Duration::from_secs_f64(s.max(0.0)))
    })
}

/// The last `NN%|` in a model's logs.
fn last_percent(logs: &str) -> Option<u8> {
    logs.rmatch_indices("%|").find_map(|(at, _)| {
        let digits: String = logs[..at]
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        digits.parse::<u8>().ok().filter(|p| *p <= 100)
    })
}

/// Exponential back-off with full jitter: a random delay up to base * 2^attempt.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let ceiling = base.saturating_mul(1 << attempt.min(6));
    ceiling.mul_f64(rand::random_range(0.5..1.0))
}

/// Identifies a known image format from its first bytes.
fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(ImageFormat::Webp)
    } else {
        None
    }
}

/// The bytes of a `data:` URI's payload (`rest` follows `data:`), refused
/// unread when it would decode to more than `max` bytes.
fn decode_data_uri(rest: &str, max: usize) -> Result<Bytes, ModelError> {
    let (_, encoded) = rest
        .split_once(";base64,")
        .ok_or_else(|| ModelError::BadOutput("a data URI that is not base64".into()))?;
    if encoded.len() / 4 * 3 > max + 3 {
        return Err(ModelError::BadOutput(format!(
            "output larger than {max} bytes"
        )));
    }
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map(Bytes::from)
        .map_err(|e| ModelError::BadOutput(format!("bad base64 in the data URI: {e}")))
}

fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "(url)");
    }
    text
}

/// Whom a read request goes to: its 4xx answers mean different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Replicate's API (predictions, cancels): a 4xx is the owner's to fix.
    Api,
    /// A prediction's output file: a 4xx means it expired or is missing.
    OutputFile,
}

impl ReplicateGenerator {
    pub fn new(settings: ReplicateSettings) -> Result<Self, ModelError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("lofianime/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ModelError::Owner(format!("could not build the HTTP client: {e}")))?;
        Ok(Self {
            api: Arc::new(Api { client, settings }),
        })
    }

    /// Sends the create request from a task of its own: if the visitor goes away
    /// (or cancels) while it is held open, the task still learns the prediction's
    /// id and cancels it, so nothing runs on, billed, for nobody.
    async fn create_detached(
        &self,
        prompt: &Prompt,
        deadline: Instant,
        meter: Arc<Meter>,
    ) -> Result<Prediction, ModelError> {
        let (answer, created) = tokio::sync::oneshot::channel();
        let api = self.api.clone();
        let prompt = prompt.clone();
        crate::on_drop::spawn_cleanup(async move {
            let result = api.create(&prompt, deadline).await.map_err(|failed| {
                meter.publish(failed.record(api.settings.deadline));
                failed.error
            });
            if let Err(Ok(prediction)) = answer.send(result) {
                tracing::warn!(prediction = %prediction.id, "the generation was abandoned while the prediction was being created; stopping it");
                match prediction.record() {
                    Some(record) => meter.publish(record),
                    None => api.stop_and_record(&prediction.id, &meter).await,
                }
            }
        });
        created.await.map_err(|_| {
            ModelError::Unavailable("the create request's task stopped unexpectedly".into())
        })?
    }
}

impl Api {
    fn endpoint(&self, path: &str) -> url::Url {
        let mut url = self.settings.base_url.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}/v1/{path}"));
        url
    }

    fn remaining(deadline: Instant) -> Duration {
        deadline.saturating_duration_since(Instant::now())
    }

    /// The create request: the model version, its inputs with the prefixed
    /// prompt, `Prefer: wait` and `Cancel-After`.
    fn create_request(&self, prompt: &Prompt, deadline: Instant) -> reqwest::RequestBuilder {
        let mut input = self.settings.input.clone();
        input.insert(
            "prompt".into(),
            Value::String(format!(
                "{}{}",
                self.settings.prompt_prefix,
                prompt.as_str()
            )),
        );
        let body = json!({ "version": self.settings.version, "input": input });
        // The server cancels the prediction on its own past our deadline, even if
        // this process is gone by then.
        let cancel_after = self.settings.deadline.as_secs().max(1);
        let request = self
            .client
            .post(self.endpoint("predictions"))
            .bearer_auth(self.settings.token.expose_secret())
            .header("Cancel-After", format!("{cancel_after}s"));
        // Without a wait the create answers at once with the prediction's id, so
        // a visitor who leaves or cancels can have it stopped before it bills.
        let wait = self.settings.wait.min(Self::remaining(deadline)).as_secs();
        let request = match wait {
            0 => request,
            wait => request.header("Prefer", format!("wait={}", wait.min(MAX_WAIT_SECS))),
        };
        request
            .timeout(
                Duration::from_secs(wait.min(MAX_WAIT_SECS) + 15)
                    .min(Self::remaining(deadline).max(Duration::from_secs(1))),
            )
            .json(&body)
    }

    /// `POST /v1/predictions`, retried only when the API says it did not accept it.
    async fn create(&self, prompt: &Prompt, deadline: Instant) -> Result<Prediction, CreateFailed> {
        for attempt in 0..ATTEMPTS {
            let sent = self.create_request(prompt, deadline).send().await;
            let response = match sent {
                Ok(response) => response,
                // Nothing reached Replicate: trying again cannot start a second prediction.
                Err(error) if error.is_connect() && attempt + 1 < ATTEMPTS => {
                    tokio::time::sleep(backoff(self.settings.backoff, attempt)).await;
                    continue;
                }
                Err(error) => {
                    return Err(CreateFailed {
                        may_have_started: !error.is_connect(),
                        error: ModelError::Unavailable(format!(
                            "create request failed and was not retried (it may have started a prediction): {}",
                            without_url(&error)
                        )),
                    })
                }
            };
            if response.status().is_success() {
                return response
                    .json::<Prediction>()
                    .await
                    .map_err(|e| CreateFailed {
                        may_have_started: true,
                        error: ModelError::Unavailable(format!("unreadable prediction: {e}")),
                    });
            }
            let delay = self.create_refused(response, attempt, deadline).await?;
            tokio::time::sleep(delay).await;
        }
        Err(CreateFailed {
            may_have_started: false,
            error: ModelError::Unavailable("create failed after retries".into()),
        })
    }

    /// After a create Replicate refused: how long to wait before trying again,
    /// or why not to (throttled past the deadline, a failure it says is final,
    /// a problem only the owner can fix).
    async fn create_refused(
        &self,
        response: reqwest::Response,
        attempt: u32,
        deadline: Instant,
    ) -> Result<Duration, CreateFailed> {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let problem_body = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let last = attempt + 1 == ATTEMPTS;
        match status {
            StatusCode::TOO_MANY_REQUESTS => {
                let wait_for = retry_after(&headers, &text);
                let delay = wait_for.unwrap_or_else(|| backoff(self.settings.backoff, attempt));
                if last || delay >= Self::remaining(deadline) {
                    return Err(CreateFailed::refused(ModelError::Busy {
                        retry_after: wait_for,
                    }));
                }
                tracing::warn!(
                    delay_ms = delay.as_millis() as u64,
                    "Replicate is throttling; waiting before trying again"
                );
                Ok(delay)
            }
            s if s.is_server_error() && problem_body && !last => {
                Ok(backoff(self.settings.backoff, attempt))
            }
            // A problem body says the create was refused; without one it may
            // have been accepted.
            s if s.is_server_error() => Err(CreateFailed {
                may_have_started: !problem_body,
                error: ModelError::Unavailable(format!("HTTP {s}: {}", problem(&text))),
            }),
            other => Err(CreateFailed::refused(self.owner_problem(other, &text))),
        }
    }

    /// A 4xx from Replicate's API, which the owner must fix, with what to do.
    fn owner_problem(&self, status: StatusCode, body: &str) -> ModelError {
        let detail = problem(body);
        let advice = match status {
            StatusCode::UNAUTHORIZED => "Replicate rejected REPLICATE_API_TOKEN: set a valid API token".to_owned(),
            StatusCode::PAYMENT_REQUIRED => {
                "Replicate needs billing: add credit or a payment method to the account that owns REPLICATE_API_TOKEN".to_owned()
            }
            StatusCode::UNPROCESSABLE_ENTITY => format!(
                "Replicate refused the model version or inputs: check model.version and [model.input] in Leptos.toml (model {})",
                self.settings.model
            ),
            StatusCode::NOT_FOUND => format!(
                "Replicate does not know model version {}: check model.version in Leptos.toml",
                self.settings.version
            ),
            other => format!("Replicate refused the request with HTTP {other}"),
        };
        // The flow's caller logs it, advice first.
        ModelError::Owner(format!("{advice} (HTTP {}: {detail})", status.as_u16()))
    }

    /// A `GET` or cancel `POST`, retried on throttling, server errors and transport
    /// failures with back-off, within the deadline. A 4xx from Replicate's API is
    /// an owner problem; from an output file's host it is an expired or missing file.
    async fn request_safely(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        deadline: Instant,
        target: Target,
    ) -> Result<Response, ModelError> {
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            let left = Self::remaining(deadline);
            if left.is_zero() {
                return Err(ModelError::TimedOut);
            }
            match build()
                .timeout(left.min(Duration::from_secs(30)))
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => {
                    let headers = response.headers().clone();
                    let text = response.text().await.unwrap_or_default();
                    let delay = retry_after(&headers, &text)
                        .unwrap_or_else(|| backoff(self.settings.backoff, attempt));
                    last = "HTTP 429".into();
                    tokio::time::sleep(delay.min(Self::remaining(deadline))).await;
                }
                Ok(response) if response.status().is_server_error() => {
                    last = format!("HTTP {}", response.status());
                    tokio::time::sleep(
                        backoff(self.settings.backoff, attempt).min(Self::remaining(deadline)),
                    )
                    .await;
                }
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    return Err(match target {
                        Target::Api => self.owner_problem(status, &text),
                        Target::OutputFile => ModelError::BadOutput(format!(
                            "the output file answered HTTP {status}: it expired or was never there"
                        )),
                    });
                }
                Err(error) => {
                    last = without_url(&error);
                    tokio::time::sleep(
                        backoff(self.settings.backoff, attempt).min(Self::remaining(deadline)),
                    )
                    .await;
                }
            }
        }
        Err(ModelError::Unavailable(format!(
            "gave up after {ATTEMPTS} attempts: {last}"
        )))
    }

    async fn read(&self, id: &str, deadline: Instant) -> Result<Prediction, ModelError> {
        let url = self.endpoint(&format!("predictions/{id}"));
        let response = self
            .request_safely(
                || {
                    self.client
                        .get(url.clone())
                        .bearer_auth(self.settings.token.expose_secret())
                },
                deadline,
                Target::Api,
            )
            .await?;
        response
            .json::<Prediction>()
            .await
            .map_err(|e| ModelError::Unavailable(format!("unreadable prediction: {e}")))
    }

    /// Cancels a prediction; bounded by a few seconds of its own. The answer
    /// is the prediction as the provider has it then, when it could be read.
    async fn cancel(&self, id: &str) -> Option<Prediction> {
        let url = self.endpoint(&format!("predictions/{id}/cancel"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let result = self
            .request_safely(
                || {
                    self.client
                        .post(url.clone())
                        .bearer_auth(self.settings.token.expose_secret())
                },
                deadline,
                Target::Api,
            )
            .await;
        match result {
            Ok(response) => {
                tracing::info!(prediction = %id, "cancelled the prediction");
                response.json::<Prediction>().await.ok()
            }
            Err(error) => {
                tracing::error!(prediction = %id, %error, "could not cancel the prediction");
                None
            }
        }
    }

    /// Stops prediction `id` (nobody will use it) and publishes on `meter` what
    /// the provider billed for it.
    async fn stop_and_record(&self, id: &str, meter: &Meter) {
        let answer = self.cancel(id).await;
        let record = self.final_record(id, answer).await;
        tracing::info!(
            prediction = %id,
            processed = record.processed,
            billed_secs = record.billed_secs,
            "the provider's record of a stopped run"
        );
        meter.publish(record);
    }

    /// The provider's record of prediction `id` once it is over: the cancel's
    /// `answer` when that is terminal, else reads with back-off until it is
    /// (bounded); a record that cannot be had is taken as billed for the
    /// whole deadline.
    async fn final_record(&self, id: &str, answer: Option<Prediction>) -> RunRecord {
        if let Some(record) = answer.as_ref().and_then(Prediction::record) {
            return record;
        }
        let until = Instant::now() + RECORD_SEARCH;
        let mut delay = Duration::from_millis(200);
        while Instant::now() + delay < until {
            tokio::time::sleep(delay).await;
            if let Some(record) = self.read(id, until).await.ok().and_then(|p| p.record()) {
                return record;
            }
            delay = (delay * 2).min(Duration::from_secs(3));
        }
        tracing::error!(prediction = %id, "no final record of the prediction could be read: it counts as billed for its whole deadline");
        RunRecord::assumed_billed(Some(id.to_owned()), self.settings.deadline)
    }

    /// Copies the output bytes: a `data:` URI is decoded, a URL is fetched (without
    /// the API token, which only api.replicate.com may see).
    async fn fetch_output(
        &self,
        output: &str,
        deadline: Instant,
    ) -> Result<GeneratedImage, ModelError> {
        let max = self.settings.max_image_bytes;
        let too_large = || ModelError::BadOutput(format!("output larger than {max} bytes"));
        let bytes = match output.strip_prefix("data:") {
            Some(rest) => decode_data_uri(rest, max)?,
            None => self.download(output, deadline).await?,
        };
        if bytes.len() > max {
            return Err(too_large());
        }
        let format = sniff(&bytes).ok_or_else(|| {
            ModelError::BadOutput("output is not a PNG, JPEG or WebP image".into())
        })?;
        Ok(GeneratedImage { bytes, format })
    }

    /// The output file at `output` (an http(s) URL), never more than
    /// `max_image_bytes` of it held.
    async fn download(&self, output: &str, deadline: Instant) -> Result<Bytes, ModelError> {
        let max = self.settings.max_image_bytes;
        let too_large = || ModelError::BadOutput(format!("output larger than {max} bytes"));
        let url = url::Url::parse(output)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .ok_or_else(|| {
                ModelError::BadOutput("output is neither a data URI nor a URL".into())
            })?;
        let mut response = self
            .request_safely(
                || self.client.get(url.clone()),
                deadline,
                Target::OutputFile,
            )
            .await?;
        if response.content_length().is_some_and(|n| n as usize > max) {
            return Err(too_large());
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            ModelError::Unavailable(format!("reading the output failed: {}", without_url(&e)))
        })? {
            if body.len() + chunk.len() > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Polls until the prediction is done or the deadline passes.
    async fn wait_until_done(
        &self,
        mut prediction: Prediction,
        deadline: Instant,
        progress: &ProgressReporter,
    ) -> Result<Prediction, ModelError> {
        while !prediction.is_done() {
            let left = Self::remaining(deadline);
            if left.is_zero() {
                return Err(ModelError::TimedOut);
            }
            tokio::time::sleep(self.settings.poll_interval.min(left)).await;
            prediction = self.read(&prediction.id, deadline).await?;
            progress.report(prediction.phase());
            if !prediction.is_done()
                && !matches!(prediction.status.as_str(), "starting" | "processing")
            {
                tracing::warn!(status = %prediction.status, "Replicate reported an unknown status; still waiting");
            }
        }
        Ok(prediction)
    }
}

#[async_trait]
impl ImageGenerator for ReplicateGenerator {
    fn describe(&self) -> String {
        let settings = &self.api.settings;
        // Only the origin: a base URL may carry credentials (user:password@).
        format!(
            "Replicate model {} (version {}…) at {}",
            settings.model,
            &settings.version[..settings.version.len().min(12)],
            settings.base_url.origin().ascii_serialization()
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
        let api = &self.api;
        let started = Instant::now();
        let deadline = started + api.settings.deadline;
        progress.report(Phase::Waiting);
        // From the create on, a prediction may run (and bill) even if its answer
        // never reaches us; however it ends, Replicate's record of it settles it.
        progress.settled_by_record();
        let meter = progress.meter();
        let created = self
            .create_detached(prompt, deadline, meter.clone())
            .await?;
        progress.report(created.phase());
        let id = created.id.clone();
        tracing::info!(prediction = %id, status = %created.status, "created a Replicate prediction");
        // If the visitor goes away or cancels (this future is dropped) while the
        // model runs, cancel the prediction: nobody will use the result.
        let mut guard = {
            let (api, id, meter) = (api.clone(), id.clone(), meter.clone());
            SpawnOnDrop::new(async move {
                tracing::warn!(prediction = %id, "the generation was abandoned before the prediction finished; cancelling it");
                api.stop_and_record(&id, &meter).await;
            })
        };
        let finished = api.wait_until_done(created, deadline, progress).await;
        let prediction = match finished {
            Ok(prediction) => prediction,
            Err(error) => {
                guard.disarm();
                api.stop_and_record(&id, &meter).await;
                return Err(error);
            }
        };
        guard.disarm();
        match prediction.record() {
            Some(record) => meter.publish(record),
            // Done while still `processing`: its final record comes a moment later.
            None => {
                let (api, id, meter) = (api.clone(), id.clone(), meter.clone());
                crate::on_drop::spawn_cleanup(async move {
                    meter.publish(api.final_record(&id, None).await);
                });
            }
        }
        tracing::info!(prediction = %id, status = %prediction.status, elapsed_ms = started.elapsed().as_millis() as u64, "prediction finished");
        match prediction.status.as_str() {
            "failed" => {
                let error = prediction.error_text();
                if error.to_ascii_lowercase().contains("nsfw") {
                    Err(ModelError::Unsafe(error))
                } else {
                    Err(ModelError::Failed(error))
                }
            }
            "canceled" => Err(ModelError::Canceled),
            // Cancel-After ran out before the prediction started.
            "aborted" => Err(ModelError::TimedOut),
            _ => {
                let output = prediction.first_output().ok_or_else(|| {
                    ModelError::BadOutput("the prediction succeeded with no output".into())
                })?;
                progress.report(Phase::Saving);
                api.fetch_output(output, deadline).await
            }
        }
    }
}

/// One page of `GET /v1/predictions`.
#[derive(Debug, Deserialize)]
struct PredictionPage {
    #[serde(default)]
    results: Vec<ListedPrediction>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ListedPrediction {
    id: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    source: Option<String>,
    status: String,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    metrics: Option<PredictionMetrics>,
}

/// The most pages one listing reads (100 runs a page).
const MAX_PAGES: usize = 200;

#[async_trait]
impl crate::spend::RunHistory for ReplicateGenerator {
    async fn runs_since(&self, since_ms: u64) -> Result<Vec<crate::spend::ListedRun>, ModelError> {
        let api = &self.api;
        let mut url = api.endpoint("predictions");
        url.query_pairs_mut()
            .append_pair("created_after", &crate::spend::rfc3339(since_ms));
        let mut runs = Vec::new();
        for _ in 0..MAX_PAGES {
            let deadline = Instant::now() + Duration::from_secs(30);
            let page = api
                .request_safely(
                    || {
                        api.client
                            .get(url.clone())
                            .bearer_auth(api.settings.token.expose_secret())
                    },
                    deadline,
                    Target::Api,
                )
                .await?
                .json::<PredictionPage>()
                .await
                .map_err(|e| {
                    ModelError::Unavailable(format!("unreadable list of predictions: {e}"))
                })?;
            runs.extend(page.results.into_iter().map(listed));
            // The next page, only on the API's own origin (the token goes with it).
            match page.next.and_then(|next| url::Url::parse(&next).ok()) {
                Some(next) if next.origin() == api.settings.base_url.origin() => url = next,
                _ => return Ok(runs),
            }
        }
        Ok(runs)
    }

    fn version(&self) -> &str {
        &self.api.settings.version
    }
}

fn listed(prediction: ListedPrediction) -> crate::spend::ListedRun {
    crate::spend::ListedRun {
        terminal: matches!(
            prediction.status.as_str(),
            "succeeded" | "failed" | "canceled" | "aborted"
        ),
        billed_secs: prediction
            .metrics
            .and_then(|metrics| metrics.predict_time)
            .unwrap_or(0.0),
        created_ms: prediction
            .created_at
            .as_deref()
            .and_then(crate::spend::parse_rfc3339)
            .unwrap_or(0),
        from_api: prediction
            .source
            .as_deref()
            .is_none_or(|source| source == "api"),
        version: prediction.version,
        id: prediction.id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_dates_and_bodies() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers, ""), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        headers.insert(RETRY_AFTER, later.parse().unwrap());
        let parsed = retry_after(&headers, "").unwrap();
        assert!(
            parsed > Duration::from_secs(27) && parsed <= Duration::from_secs(30),
            "{parsed:?}"
        );
        assert_eq!(
            retry_after(
                &HeaderMap::new(),
                r#"{"detail":"slow down","retry_after":2.5}"#
            ),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(retry_after(&HeaderMap::new(), "{}"), None);
    }

    #[test]
    fn images_are_recognised_by_their_first_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some(ImageFormat::Png));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(ImageFormat::Jpeg));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(ImageFormat::Webp));
        assert_eq!(sniff(b"<html>not an image</html>"), None);
    }

    #[test]
    fn predictions_are_done_when_terminal_or_holding_output() {
        let p = |status: &str, output: Value| Prediction {
            id: "x".into(),
            status: status.into(),
            output,
            error: Value::Null,
            logs: None,
            started_at: None,
            metrics: None,
        };
        assert!(!p("starting", Value::Null).is_done());
        assert!(!p("processing", json!([])).is_done());
        assert!(p("processing", json!(["data:image/png;base64,AA"])).is_done());
        assert!(p("aborted", Value::Null).is_done());
        assert!(
            !p("queued-in-the-future", Value::Null).is_done(),
            "unknown is not terminal"
        );
    }

    #[test]
    fn the_record_of_a_run_is_read_from_started_at_and_predict_time() {
        let read = |json: &str| serde_json::from_str::<Prediction>(json).unwrap().record();
        assert_eq!(
            read(r#"{"id":"a","status":"processing","started_at":"2026-12-06T10:00:00Z"}"#),
            None,
            "not over yet"
        );
        assert_eq!(
            read(r#"{"id":"a","status":"canceled","started_at":null,"metrics":{}}"#),
            Some(RunRecord {
                run_id: Some("a".into()),
                processed: false,
                billed_secs: 0.0
            }),
            "stopped before it processed: not billed"
        );
        assert_eq!(
            read(
                r#"{"id":"a","status":"canceled","started_at":"2026-12-06T10:00:00Z","metrics":{"predict_time":2.5}}"#
            ),
            Some(RunRecord {
                run_id: Some("a".into()),
                processed: true,
                billed_secs: 2.5
            })
        );
        assert_eq!(
            read(r#"{"id":"a","status":"failed","metrics":{"predict_time":7.25}}"#)
                .map(|record| record.processed),
            Some(true),
            "billed seconds mean it processed"
        );
        assert_eq!(
            read(r#"{"id":"a","status":"aborted","started_at":null}"#),
            Some(RunRecord {
                run_id: Some("a".into()),
                processed: false,
                billed_secs: 0.0
            })
        );
    }

    #[test]
    fn progress_is_read_from_the_last_bar_in_the_logs() {
        let logs = "Using seed: 7\n  0%|          | 0/50 [00:00<?, ?it/s]\n 46%|████▌     | 23/50 [00:04<00:05]";
        assert_eq!(last_percent(logs), Some(46));
        assert_eq!(last_percent("loading weights"), None);
        assert_eq!(last_percent("100%|██████████| 50/50"), Some(100));
        assert_eq!(last_percent("999%|"), None);
    }

    #[test]
    fn problem_bodies_are_summarised() {
        let body = r#"{"title":"Invalid version or not permitted","detail":"The specified version does not exist","status":422,"invalid_fields":[{"field":"version"}]}"#;
        let text = problem(body);
        assert!(
            text.starts_with(
                "Invalid version or not permitted The specified version does not exist"
            ),
            "{text}"
        );
        assert!(text.contains("invalid_fields"), "{text}");
    }
}
