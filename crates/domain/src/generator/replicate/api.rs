//! The HTTP side: create, read, cancel and the final record of a prediction,
//! output downloads, with the retries the API allows.

use super::super::{GeneratedImage, Look, Meter, ModelError, ProgressReporter, RunRecord};
use super::budget::Call;
use super::prediction::{
    backoff, decode_data_uri, problem, retry_after, sniff, without_url, CreateFailed, Prediction,
};
use super::webhooks::{Inbox, Mailbox};
use super::{
    Api, Target, ATTEMPTS, CANCEL_PATIENCE, MAX_PAUSE, MAX_WAIT_SECS, READS_PER_SECOND,
    RECORD_SEARCH,
};
use bytes::{Bytes, BytesMut};
use lofianime_wire::progress::Phase;
use lofianime_wire::prompt::Prompt;
use reqwest::{Response, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

impl Api {
    pub(super) fn endpoint(&self, path: &str) -> url::Url {
        let mut url = self.settings.base_url.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}/v1/{path}"));
        url
    }

    pub(super) fn remaining(deadline: Instant) -> Duration {
        deadline.saturating_duration_since(Instant::now())
    }

    /// The create request: the model version, its inputs with the prefixed
    /// prompt, `Prefer: wait` and `Cancel-After`.
    pub(super) fn create_request(
        &self,
        prompt: &Prompt,
        deadline: Instant,
        run: Option<&str>,
        look: Option<Look>,
    ) -> reqwest::RequestBuilder {
        let input = crate::generator::model_input(
            &self.settings.input,
            &self.settings.prompt_prefix,
            prompt,
            look,
        );
        let mut body = json!({ "version": self.settings.version, "input": input });
        if let (Some(inbox), Some(run)) = (&self.inbox, run) {
            body["webhook"] = Value::String(inbox.address(run));
            body["webhook_events_filter"] = json!(["start", "logs", "completed"]);
        }
        // The server stops the prediction on its own about when a run should
        // be over, even if this process (and any that could sweep it) is gone.
        let cancel_after = self
            .settings
            .cancel_after
            .min(self.settings.deadline)
            .as_secs()
            .max(1);
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
    pub(super) async fn create(
        &self,
        prompt: &Prompt,
        deadline: Instant,
        run: Option<&str>,
        look: Option<Look>,
    ) -> Result<Prediction, CreateFailed> {
        for attempt in 0..ATTEMPTS {
            // Waits in line for the account's create budget: nothing is sent,
            // nothing started, when the deadline comes first.
            if !self.budget.take(Call::Create, deadline).await {
                return Err(CreateFailed::refused(ModelError::Busy {
                    retry_after: None,
                }));
            }
            let sent = self
                .create_request(prompt, deadline, run, look)
                .send()
                .await;
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
    pub(super) async fn create_refused(
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
    pub(super) fn owner_problem(&self, status: StatusCode, body: &str) -> ModelError {
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
    pub(super) async fn request_safely(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        deadline: Instant,
        target: Target,
    ) -> Result<Response, ModelError> {
        // Where money is at stake (a running prediction's reads, its cancel,
        // its output) throttling and outages are waited out until the
        // deadline; a run that may still deliver is never given up early.
        let patient = !matches!(target, Target::RunList);
        let mut last = String::new();
        let mut attempt = 0;
        while patient || attempt < ATTEMPTS {
            let left = Self::remaining(deadline);
            if left.is_zero() {
                break;
            }
            let pause = backoff(self.settings.backoff, attempt).min(MAX_PAUSE);
            attempt += 1;
            if target != Target::OutputFile && !self.budget.take(Call::Other, deadline).await {
                last = "the account's call budget stayed spent".into();
                break;
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
                    let delay = retry_after(&headers, &text).unwrap_or(pause);
                    last = "HTTP 429".into();
                    tokio::time::sleep(delay.min(Self::remaining(deadline))).await;
                }
                Ok(response) if response.status().is_server_error() => {
                    last = format!("HTTP {}", response.status());
                    tokio::time::sleep(pause.min(Self::remaining(deadline))).await;
                }
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    return Err(match target {
                        Target::Api => self.owner_problem(status, &text),
                        Target::OutputFile => ModelError::BadOutput(format!(
                            "the output file answered HTTP {status}: it expired or was never there"
                        )),
                        Target::RunList => ModelError::Unavailable(format!(
                            "the list of predictions was refused with HTTP {status}: {}",
                            problem(&text)
                        )),
                    });
                }
                Err(error) => {
                    last = without_url(&error);
                    tokio::time::sleep(pause.min(Self::remaining(deadline))).await;
                }
            }
        }
        if patient {
            return Err(ModelError::TimedOut);
        }
        Err(ModelError::Unavailable(format!(
            "gave up after {ATTEMPTS} attempts: {last}"
        )))
    }

    /// An API call with the token (`method` on `url`), as
    /// [`Api::request_safely`] sends it.
    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        url: &url::Url,
        deadline: Instant,
        target: Target,
    ) -> Result<Response, ModelError> {
        self.request_safely(
            || {
                self.client
                    .request(method.clone(), url.clone())
                    .bearer_auth(self.settings.token.expose_secret())
            },
            deadline,
            target,
        )
        .await
    }

    pub(super) async fn read(&self, id: &str, deadline: Instant) -> Result<Prediction, ModelError> {
        let url = self.endpoint(&format!("predictions/{id}"));
        let response = self
            .call(reqwest::Method::GET, &url, deadline, Target::Api)
            .await?;
        response
            .json::<Prediction>()
            .await
            .map_err(|e| ModelError::Unavailable(format!("unreadable prediction: {e}")))
    }

    /// Cancels a prediction; bounded by a few seconds of its own. The answer
    /// is the prediction as the provider has it then, when it could be read.
    pub(super) async fn cancel(&self, id: &str) -> Option<Prediction> {
        let url = self.endpoint(&format!("predictions/{id}/cancel"));
        // Retried until acknowledged (bounded): a dropped cancel is a run billed
        // for nobody.
        let deadline = Instant::now() + CANCEL_PATIENCE;
        let result = self
            .call(reqwest::Method::POST, &url, deadline, Target::Api)
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
    pub(super) async fn stop_and_record(&self, id: &str, meter: &Meter) {
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
    pub(super) async fn final_record(&self, id: &str, answer: Option<Prediction>) -> RunRecord {
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
    pub(super) async fn fetch_output(
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
        Ok(GeneratedImage::encoded(bytes, format))
    }

    /// The output file at `output` (an http(s) URL), never more than
    /// `max_image_bytes` of it held.
    pub(super) async fn download(
        &self,
        output: &str,
        deadline: Instant,
    ) -> Result<Bytes, ModelError> {
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
        let announced = response.content_length().unwrap_or(0);
        if announced > max as u64 {
            return Err(too_large());
        }
        // Sized once when the length is announced: growing a 2.5 MB buffer
        // by doubling copies it a dozen times over fresh pages.
        let mut body = BytesMut::with_capacity(announced as usize);
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
    pub(super) async fn wait_until_done(
        &self,
        mut prediction: Prediction,
        deadline: Instant,
        progress: &ProgressReporter,
    ) -> Result<Prediction, ModelError> {
        let _polling = Polling::start(&self.polling);
        while !prediction.is_done() {
            let left = Self::remaining(deadline);
            if left.is_zero() {
                return Err(ModelError::TimedOut);
            }
            tokio::time::sleep(self.poll_pause().min(left)).await;
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

    /// The account's webhook signing secret (`GET /v1/webhooks/default/secret`).
    pub(super) async fn webhook_secret(&self) -> Result<secrecy::SecretString, ModelError> {
        #[derive(serde::Deserialize)]
        struct Secret {
            key: String,
        }
        let url = self.endpoint("webhooks/default/secret");
        let deadline = Instant::now() + Duration::from_secs(20);
        let response = self
            .call(reqwest::Method::GET, &url, deadline, Target::RunList)
            .await?;
        let secret: Secret = response
            .json()
            .await
            .map_err(|e| ModelError::Unavailable(format!("unreadable webhook secret: {e}")))?;
        tracing::info!("fetched the account's webhook signing secret");
        Ok(secret.key.into())
    }

    /// Waits until the prediction is done from its webhook events, read from
    /// its record at once when one lands on this instance, else every poll
    /// interval; the prediction itself is read only every fallback interval
    /// (events may be lost) and once more at the deadline.
    pub(super) async fn wait_for_events(
        &self,
        inbox: &Inbox,
        mailbox: &Mailbox<'_>,
        mut prediction: Prediction,
        deadline: Instant,
        progress: &ProgressReporter,
    ) -> Result<Prediction, ModelError> {
        let fallback = inbox.settings.fallback_poll;
        let mut next_read = Instant::now() + fallback;
        while !prediction.is_done() {
            let left = Self::remaining(deadline);
            if left.is_zero() {
                // One last look before giving up.
                let last = self
                    .read(&prediction.id, Instant::now() + Duration::from_secs(5))
                    .await?;
                return if last.is_done() {
                    Ok(last)
                } else {
                    Err(ModelError::TimedOut)
                };
            }
            let pause = self.settings.poll_interval.min(left);
            tokio::select! {
                _ = mailbox.woken.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
            if let Some(reported) = inbox.latest(&mailbox.run).await {
                if reported.id == prediction.id {
                    prediction = reported;
                }
            }
            if !prediction.is_done() && Instant::now() >= next_read {
                prediction = self.read(&prediction.id, deadline).await?;
                next_read = Instant::now() + fallback;
            }
            progress.report(prediction.phase());
        }
        Ok(prediction)
    }

    /// Publishes what `prediction`, done, cost; done while still
    /// `processing`, its final record is read a moment later, in the background.
    pub(super) fn publish_record(
        self: &std::sync::Arc<Self>,
        prediction: &Prediction,
        meter: std::sync::Arc<Meter>,
    ) {
        match prediction.record() {
            Some(record) => meter.publish(record),
            None => {
                let (api, id) = (self.clone(), prediction.id.clone());
                crate::on_drop::spawn_cleanup(async move {
                    meter.publish(api.final_record(&id, None).await);
                });
            }
        }
    }

    /// What a done prediction gives: the image, or why not.
    pub(super) async fn outcome(
        &self,
        prediction: &Prediction,
        deadline: Instant,
        progress: &ProgressReporter,
    ) -> Result<GeneratedImage, ModelError> {
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
                self.fetch_output(output, deadline).await
            }
        }
    }

    /// The pause between two polls of one prediction: the setting, or longer
    /// when so many are polled at once that the reads would pass
    /// [`READS_PER_SECOND`].
    fn poll_pause(&self) -> Duration {
        let polled = self.polling.load(Ordering::Relaxed) as f64;
        self.settings
            .poll_interval
            .max(Duration::from_secs_f64(polled / READS_PER_SECOND))
    }
}

/// One prediction being polled, counted while it lasts.
struct Polling<'a>(&'a AtomicUsize);

impl<'a> Polling<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
