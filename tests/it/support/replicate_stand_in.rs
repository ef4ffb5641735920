//! A stand-in for Replicate's prediction API (Replicate's hosted API cannot run
//! here), speaking the protocol from `shared/specs/replicate-api.md`: `POST
//! /v1/predictions` (honouring `Prefer: wait=N`), `GET /v1/predictions/{id}`,
//! `POST /v1/predictions/{id}/cancel`, and `GET /v1/predictions` (newest
//! first, paginated by `next`). Its model boots, then processes for a while;
//! it records what Replicate records and bills: `started_at` once processing
//! began, and `metrics.predict_time`, the processing seconds until the run
//! finished or was cancelled, on `succeeded`, `failed` and `canceled` runs.
//! Tests assert on that record, never on what the app believes.
//!
//! A create that names a `webhook` gets Replicate's events there, signed with
//! the account's secret (Standard Webhooks; the secret at `GET
//! /v1/webhooks/default/secret`): `start` at once, `logs` at most every 500 ms
//! while processing, `completed` once terminal (retried on failure). The
//! account's call limits can be enforced as Replicate does (429 past N other
//! calls in any window), and every call is counted.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The model version the app asks for by default.
pub const VERSION: &str = "563a66acc0b39e5308e8372bed42504731b7fec3bc21f2fcbea413398690f3ec";

/// How the stand-in's model behaves.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// From the create to `processing` (queue and boot: not billed).
    pub boot: Duration,
    /// Processing time of a run nobody stops (billed).
    pub run: Duration,
}

/// One prediction as the stand-in keeps it.
#[derive(Debug, Clone)]
struct Run {
    created: Instant,
    created_wall: SystemTime,
    model: Model,
    unsafe_prompt: bool,
    canceled_at: Option<Instant>,
    /// The create's `Cancel-After`: the server stops the run on its own then.
    cancel_after: Option<Duration>,
    version: String,
}

impl Run {
    /// When the run is stopped early (a cancel, or its `Cancel-After`), if it is.
    fn stop_at(&self) -> Option<Instant> {
        let deadline = self.cancel_after.map(|after| self.created + after);
        match (self.canceled_at, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn processing_at(&self) -> Instant {
        self.created + self.model.boot
    }

    fn finishes_at(&self) -> Instant {
        self.processing_at() + self.model.run
    }

    fn status(&self, now: Instant) -> &'static str {
        match self.stop_at() {
            // Cancel-After before it started: aborted, never billed.
            Some(at) if at <= now && at < self.processing_at() && self.canceled_at != Some(at) => {
                "aborted"
            }
            Some(at) if at <= now && at < self.finishes_at() => "canceled",
            _ if now < self.processing_at() => "starting",
            _ if now < self.finishes_at() => "processing",
            _ if self.unsafe_prompt => "failed",
            _ => "succeeded",
        }
    }

    fn is_terminal(&self, now: Instant) -> bool {
        !matches!(self.status(now), "starting" | "processing")
    }

    /// When the run ended (finished or cancelled), if it has.
    fn ended_at(&self, now: Instant) -> Option<Instant> {
        let end = self
            .stop_at()
            .unwrap_or(self.finishes_at())
            .min(self.finishes_at());
        (end <= now).then_some(end)
    }

    /// Whether it reached `processing` (Replicate's `started_at`).
    fn started(&self, now: Instant) -> bool {
        let stop = self.stop_at().unwrap_or(now).min(now);
        stop >= self.processing_at()
    }

    /// Billed processing time so far.
    fn billed(&self, now: Instant) -> Duration {
        if !self.started(now) {
            return Duration::ZERO;
        }
        let end = self.ended_at(now).unwrap_or(now);
        end.saturating_duration_since(self.processing_at())
    }

    fn wall(&self, at: Instant) -> SystemTime {
        self.created_wall + at.saturating_duration_since(self.created)
    }
}

/// What the stand-in recorded of one prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Billed {
    pub id: String,
    /// It reached `processing`.
    pub processed: bool,
    /// Billed seconds (`metrics.predict_time` once terminal).
    pub seconds: f64,
    pub status: &'static str,
}

#[derive(Clone)]
pub struct ReplicateStandIn {
    runs: Arc<Mutex<HashMap<String, Run>>>,
    order: Arc<Mutex<Vec<String>>>,
    model: Arc<Mutex<Model>>,
    /// What a succeeded run's `output` holds: a `data:` URI of a tiny PNG, or
    /// the URL of the file served at `/files/output.png`.
    image: Arc<Mutex<String>>,
    file: Arc<Mutex<bytes::Bytes>>,
    /// Reads answer 429 (`Retry-After: 1`) until the first instant, then 503
    /// until the second (a provider's bad minute).
    read_faults: Arc<Mutex<Option<(Instant, Instant)>>>,
    refused_reads: Arc<std::sync::atomic::AtomicUsize>,
    /// The account's read limit, as Replicate's (3,000 non-create calls a
    /// minute): one read per interval, the next allowed at the instant kept.
    read_limit: Arc<Mutex<Option<(Duration, Instant)>>>,
    /// The account's limit of non-create calls in any window, and the
    /// instants of the calls it let through.
    call_limit: Arc<Mutex<Option<CallLimit>>>,
    calls: Arc<Mutex<Calls>>,
    /// The account's webhook signing secret (`whsec_…`).
    pub webhook_secret: String,
    /// Where webhooks naming an origin really go (a load balancer sending
    /// them to whichever instance it likes).
    webhook_routes: Arc<Mutex<Vec<(String, String)>>>,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    pub base_url: String,
}

struct CallLimit {
    others: usize,
    window: Duration,
    taken: std::collections::VecDeque<Instant>,
}

/// The API calls the stand-in answered (not output downloads).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calls {
    pub creates: usize,
    pub reads: usize,
    pub cancels: usize,
    pub lists: usize,
    pub secrets: usize,
    /// Other calls refused with 429 by [`ReplicateStandIn::limit_calls`].
    pub throttled: usize,
}

impl Calls {
    /// Every API call that was answered (creates and the others).
    pub fn total(&self) -> usize {
        self.creates + self.reads + self.cancels + self.lists + self.secrets
    }
}

/// One webhook sent.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub prediction: String,
    pub event: &'static str,
    pub status: String,
    /// Where it went, and the answer (0: no answer).
    pub to: String,
    pub answered: u16,
    /// When the run reached the status it reports (for terminal events, the
    /// end of the run) and when the delivery was sent.
    pub sent_at: Instant,
    pub state_at: Instant,
}

/// `SystemTime` as RFC 3339 in UTC, as Replicate writes it.
pub fn rfc3339(at: SystemTime) -> String {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    lofianime_domain::rfc3339(since.as_millis() as u64)
}

impl ReplicateStandIn {
    /// Starts the stand-in on a loopback port with `model`.
    pub async fn start(model: Model) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stand_in = Self {
            runs: Arc::default(),
            order: Arc::default(),
            model: Arc::new(Mutex::new(model)),
            read_faults: Arc::default(),
            refused_reads: Arc::default(),
            read_limit: Arc::default(),
            call_limit: Arc::default(),
            calls: Arc::default(),
            webhook_secret: format!(
                "whsec_{}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    uuid::Uuid::new_v4().as_bytes()
                )
            ),
            webhook_routes: Arc::default(),
            deliveries: Arc::default(),
            image: Arc::new(Mutex::new(format!(
                "data:image/png;base64,{}",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, tiny_png())
            ))),
            file: Arc::default(),
            base_url: format!("http://{addr}"),
        };
        let app = Router::new()
            .route("/v1/predictions", post(create).get(list))
            .route("/v1/predictions/{id}", get(read))
            .route("/v1/predictions/{id}/cancel", post(cancel))
            .route("/v1/webhooks/default/secret", get(secret))
            .route("/files/output.png", get(output_file))
            .with_state(stand_in.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        stand_in
    }

    /// From now on, every run's output is `png`, served as a file (as
    /// Replicate's outputs are, from replicate.delivery) instead of a tiny
    /// `data:` URI.
    pub fn serve_output(&self, png: Vec<u8>) {
        *self.file.lock().unwrap() = png.into();
        *self.image.lock().unwrap() = format!("{}/files/output.png", self.base_url);
    }

    /// From now on, reads are throttled (429) for `throttled`, then fail (503)
    /// for `failing`; creates and cancels still work.
    pub fn fail_reads(&self, throttled: Duration, failing: Duration) {
        let now = Instant::now();
        *self.read_faults.lock().unwrap() = Some((now + throttled, now + throttled + failing));
    }

    /// From now on, reads beyond `per_minute` a minute (all predictions
    /// together) are answered 429 with the `Retry-After` until the next one
    /// is allowed.
    pub fn limit_reads(&self, per_minute: u32) {
        let every = Duration::from_secs(60) / per_minute.max(1);
        *self.read_limit.lock().unwrap() = Some((every, Instant::now()));
    }

    /// From now on, at most `others` non-create calls (reads, cancels,
    /// lists, the secret) are answered in any `window`, all predictions
    /// together; past it, 429 with `Retry-After`, as Replicate's account limit.
    pub fn limit_calls(&self, others: usize, window: Duration) {
        *self.call_limit.lock().unwrap() = Some(CallLimit {
            others,
            window,
            taken: Default::default(),
        });
    }

    /// The API calls answered so far.
    pub fn calls(&self) -> Calls {
        self.calls.lock().unwrap().clone()
    }

    /// From now on, a webhook whose address has the origin of a pair's first
    /// member goes to its second one instead (same path and query).
    pub fn route_webhooks(&self, routes: Vec<(String, String)>) {
        *self.webhook_routes.lock().unwrap() = routes;
    }

    /// When prediction `id` ended (finished, failed or was stopped), if it has.
    pub fn ended_at(&self, id: &str) -> Option<Instant> {
        let now = Instant::now();
        self.runs.lock().unwrap().get(id)?.ended_at(now)
    }

    /// Every webhook sent so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    /// Counts one non-create call, or refuses it with the wait in seconds.
    fn other_call(&self, count: impl FnOnce(&mut Calls)) -> Result<(), u64> {
        let now = Instant::now();
        if let Some(limit) = self.call_limit.lock().unwrap().as_mut() {
            while limit
                .taken
                .front()
                .is_some_and(|at| now.duration_since(*at) >= limit.window)
            {
                limit.taken.pop_front();
            }
            if limit.taken.len() >= limit.others {
                self.calls.lock().unwrap().throttled += 1;
                let oldest = *limit.taken.front().unwrap();
                let wait = (oldest + limit.window).saturating_duration_since(now);
                return Err(wait.as_secs_f64().ceil().max(1.0) as u64);
            }
            limit.taken.push_back(now);
        }
        count(&mut self.calls.lock().unwrap());
        Ok(())
    }

    /// How many reads the faults and the read limit refused.
    pub fn refused_reads(&self) -> usize {
        self.refused_reads
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The app's Replicate client on this stand-in (the app's model version,
    /// a 20 s deadline, polls every 50 ms); `wait` is the create's
    /// `Prefer: wait` (zero: the create answers at once with the id).
    pub fn generator(&self, wait: Duration) -> lofianime_domain::ReplicateGenerator {
        lofianime_domain::ReplicateGenerator::new(self.settings(wait)).unwrap()
    }

    /// The settings [`ReplicateStandIn::generator`] uses.
    pub fn settings(&self, wait: Duration) -> lofianime_domain::ReplicateSettings {
        lofianime_domain::ReplicateSettings {
            base_url: self.base_url.parse().unwrap(),
            token: secrecy::SecretString::from("r8_test_token"),
            model: "doriandarko/sdxl-hiroshinagai".into(),
            version: VERSION.into(),
            prompt_prefix: "In the style of HISGH. ".into(),
            input: serde_json::Map::new(),
            deadline: Duration::from_secs(20),
            cancel_after: Duration::from_secs(20),
            wait,
            poll_interval: Duration::from_millis(50),
            max_image_bytes: 1_000_000,
            backoff: Duration::from_millis(10),
            limits: lofianime_domain::CallLimits::default(),
            webhooks: None,
        }
    }

    /// Later predictions run with `model`.
    pub fn set_model(&self, model: Model) {
        *self.model.lock().unwrap() = model;
    }

    /// Every prediction created so far, oldest first, as the stand-in bills it.
    pub fn record(&self) -> Vec<Billed> {
        let now = Instant::now();
        let runs = self.runs.lock().unwrap();
        self.order
            .lock()
            .unwrap()
            .iter()
            .map(|id| {
                let run = &runs[id];
                Billed {
                    id: id.clone(),
                    processed: run.started(now),
                    seconds: run.billed(now).as_secs_f64(),
                    status: run.status(now),
                }
            })
            .collect()
    }

    /// How many predictions reached `processing`.
    pub fn processed(&self) -> usize {
        self.record().iter().filter(|run| run.processed).count()
    }

    /// Waits until every prediction is terminal (at most `bound`).
    pub async fn settle(&self, bound: Duration) {
        let until = Instant::now() + bound;
        while Instant::now() < until {
            let now = Instant::now();
            if self
                .runs
                .lock()
                .unwrap()
                .values()
                .all(|run| run.is_terminal(now))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn view(&self, id: &str) -> Value {
        let now = Instant::now();
        let runs = self.runs.lock().unwrap();
        let run = &runs[id];
        let status = run.status(now);
        let terminal = run.is_terminal(now);
        let progress = now
            .saturating_duration_since(run.processing_at())
            .as_secs_f64()
            / run.model.run.as_secs_f64().max(0.001);
        json!({
            "id": id,
            "version": run.version,
            "source": "api",
            "status": status,
            "output": if status == "succeeded" { json!([self.image.lock().unwrap().clone()]) } else { Value::Null },
            "error": if status == "failed" { json!("NSFW content detected. Try running it again, or try a different prompt.") } else { Value::Null },
            "logs": if status == "processing" { format!("{:>3}%|", (progress.min(1.0) * 100.0) as u32) } else { String::new() },
            "created_at": rfc3339(run.created_wall),
            "started_at": if run.started(now) { json!(rfc3339(run.wall(run.processing_at()))) } else { Value::Null },
            "completed_at": match run.ended_at(now) { Some(end) if terminal => json!(rfc3339(run.wall(end))), _ => Value::Null },
            "metrics": if terminal && run.started(now) { json!({"predict_time": run.billed(now).as_secs_f64()}) } else { json!({}) },
            "urls": {"get": format!("{}/v1/predictions/{id}", self.base_url), "cancel": format!("{}/v1/predictions/{id}/cancel", self.base_url)},
        })
    }
}

async fn create(
    State(s): State<ReplicateStandIn>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let prompt = body["input"]["prompt"].as_str().unwrap_or_default();
    let id = uuid::Uuid::new_v4().simple().to_string();
    s.calls.lock().unwrap().creates += 1;
    let model = *s.model.lock().unwrap();
    s.runs.lock().unwrap().insert(
        id.clone(),
        Run {
            created: Instant::now(),
            created_wall: SystemTime::now(),
            model,
            unsafe_prompt: prompt.contains("[unsafe]"),
            canceled_at: None,
            cancel_after: headers
                .get("cancel-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_suffix('s'))
                .and_then(|n| n.parse().ok())
                .map(Duration::from_secs),
            version: body["version"].as_str().unwrap_or_default().to_owned(),
        },
    );
    s.order.lock().unwrap().push(id.clone());
    if let Some(webhook) = body["webhook"].as_str() {
        let events: Vec<String> = body["webhook_events_filter"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_else(|| {
                vec![
                    "start".into(),
                    "output".into(),
                    "logs".into(),
                    "completed".into(),
                ]
            });
        tokio::spawn(send_events(
            s.clone(),
            id.clone(),
            webhook.to_owned(),
            events,
        ));
    }
    // Prefer: wait=N holds the answer until the run ends or N s pass.
    let wait = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("wait="))
        .and_then(|n| n.parse::<u64>().ok())
        .map(Duration::from_secs);
    if let Some(wait) = wait {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if s.runs.lock().unwrap()[&id].is_terminal(Instant::now()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    (StatusCode::CREATED, Json(s.view(&id)))
}

async fn read(
    State(s): State<ReplicateStandIn>,
    Path(id): Path<String>,
) -> Result<Json<Value>, (StatusCode, HeaderMap)> {
    let now = Instant::now();
    let fault = *s.read_faults.lock().unwrap();
    if let Some((throttled_until, failing_until)) = fault {
        let mut headers = HeaderMap::new();
        if now < throttled_until {
            s.refused_reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            headers.insert("retry-after", "1".parse().unwrap());
            return Err((StatusCode::TOO_MANY_REQUESTS, headers));
        }
        if now < failing_until {
            s.refused_reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err((StatusCode::SERVICE_UNAVAILABLE, headers));
        }
    }
    if let Some((every, next)) = s.read_limit.lock().unwrap().as_mut() {
        if now < *next {
            s.refused_reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut headers = HeaderMap::new();
            let wait = (*next - now).as_secs_f64().ceil().max(1.0) as u64;
            headers.insert("retry-after", wait.to_string().parse().unwrap());
            return Err((StatusCode::TOO_MANY_REQUESTS, headers));
        }
        *next = now + *every;
    }
    if let Err(wait) = s.other_call(|calls| calls.reads += 1) {
        return Err(throttled(wait));
    }
    if !s.runs.lock().unwrap().contains_key(&id) {
        return Err((StatusCode::NOT_FOUND, HeaderMap::new()));
    }
    Ok(Json(s.view(&id)))
}

fn throttled(wait_secs: u64) -> (StatusCode, HeaderMap) {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", wait_secs.to_string().parse().unwrap());
    (StatusCode::TOO_MANY_REQUESTS, headers)
}

/// `GET /v1/webhooks/default/secret`.
async fn secret(State(s): State<ReplicateStandIn>) -> Result<Json<Value>, (StatusCode, HeaderMap)> {
    s.other_call(|calls| calls.secrets += 1)
        .map_err(throttled)?;
    Ok(Json(json!({ "key": s.webhook_secret })))
}

/// Sends a run's events to `webhook` as Replicate does, until its `completed`.
async fn send_events(s: ReplicateStandIn, id: String, webhook: String, events: Vec<String>) {
    let client = reqwest::Client::new();
    let wants = |event: &str| events.iter().any(|e| e == event);
    if wants("start") {
        s.deliver(&client, &id, &webhook, "start", Instant::now())
            .await;
    }
    let mut last_logs: Option<Instant> = None;
    let mut last_text = String::new();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        let (terminal, state_at) = {
            let runs = s.runs.lock().unwrap();
            let run = &runs[&id];
            (run.is_terminal(now), run.ended_at(now).unwrap_or(now))
        };
        if terminal {
            if wants("completed") {
                s.deliver(&client, &id, &webhook, "completed", state_at)
                    .await;
            }
            return;
        }
        let logs = s.view(&id)["logs"].as_str().unwrap_or_default().to_owned();
        let due = last_logs.is_none_or(|at| now.duration_since(at) >= Duration::from_millis(500));
        if wants("logs") && !logs.is_empty() && logs != last_text && due {
            s.deliver(&client, &id, &webhook, "logs", now).await;
            last_logs = Some(now);
            last_text = logs;
        }
    }
}

impl ReplicateStandIn {
    /// Signs and posts the prediction as it is now; a `completed` event is
    /// retried (a few times) until it is answered with a 2xx.
    async fn deliver(
        &self,
        client: &reqwest::Client,
        id: &str,
        webhook: &str,
        event: &'static str,
        state_at: Instant,
    ) {
        let to = self.webhook_target(webhook);
        let tries = if event == "completed" { 4 } else { 1 };
        for attempt in 0..tries {
            let body = serde_json::to_string(&self.view(id)).unwrap();
            let message = format!("msg_{}", uuid::Uuid::new_v4().simple());
            let timestamp = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let signature = standardwebhooks::Webhook::new(&self.webhook_secret)
                .unwrap()
                .sign(&message, timestamp, body.as_bytes())
                .unwrap();
            let sent_at = Instant::now();
            let answer = client
                .post(&to)
                .header("content-type", "application/json")
                .header("webhook-id", &message)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .body(body)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            self.deliveries.lock().unwrap().push(Delivery {
                prediction: id.to_owned(),
                event,
                status: self.view(id)["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                to: to.clone(),
                answered: answer,
                sent_at,
                state_at,
            });
            if (200..300).contains(&answer) || attempt + 1 == tries {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
    }

    /// Where a webhook naming `webhook` is sent.
    fn webhook_target(&self, webhook: &str) -> String {
        let Ok(mut url) = url::Url::parse(webhook) else {
            return webhook.to_owned();
        };
        let named = url.origin().ascii_serialization();
        let routes = self.webhook_routes.lock().unwrap().clone();
        let to = routes
            .iter()
            .find(|(from, _)| from.trim_end_matches('/') == named)
            .and_then(|(_, to)| url::Url::parse(to).ok());
        if let Some(to) = to {
            url.set_scheme(to.scheme()).unwrap();
            url.set_host(to.host_str()).unwrap();
            url.set_port(to.port()).unwrap();
        }
        url.to_string()
    }
}

async fn cancel(
    State(s): State<ReplicateStandIn>,
    Path(id): Path<String>,
) -> Result<Json<Value>, StatusCode> {
    if s.other_call(|calls| calls.cancels += 1).is_err() {
        return Err(StatusCode::TOO_MANY_REQUESTS);
    }
    match s.runs.lock().unwrap().get_mut(&id) {
        Some(run) => {
            run.canceled_at.get_or_insert_with(Instant::now);
        }
        None => return Err(StatusCode::NOT_FOUND),
    }
    Ok(Json(s.view(&id)))
}

/// `GET /v1/predictions[?created_after=T][&cursor=N]`: newest first, `PAGE`
/// a page, with `next`.
async fn list(
    State(s): State<ReplicateStandIn>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, (StatusCode, HeaderMap)> {
    const PAGE: usize = 2;
    s.other_call(|calls| calls.lists += 1).map_err(throttled)?;
    let after = query
        .get("created_after")
        .and_then(|t| lofianime_domain::parse_rfc3339(t))
        .unwrap_or(0);
    let created_ms = |run: &Run| {
        run.created_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64
    };
    let ids: Vec<String> = {
        let runs = s.runs.lock().unwrap();
        s.order
            .lock()
            .unwrap()
            .iter()
            .rev()
            .filter(|id| created_ms(&runs[*id]) >= after)
            .cloned()
            .collect()
    };
    let from: usize = query
        .get("cursor")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let page: Vec<Value> = ids
        .iter()
        .skip(from)
        .take(PAGE)
        .map(|id| s.view(id))
        .collect();
    let next = (from + PAGE < ids.len()).then(|| {
        let mut next = url::Url::parse(&format!("{}/v1/predictions", s.base_url)).unwrap();
        if let Some(after) = query.get("created_after") {
            next.query_pairs_mut().append_pair("created_after", after);
        }
        next.query_pairs_mut()
            .append_pair("cursor", &(from + PAGE).to_string());
        next.to_string()
    });
    Ok(Json(
        json!({ "results": page, "next": next, "previous": null }),
    ))
}

async fn output_file(
    State(stand_in): State<ReplicateStandIn>,
) -> impl axum::response::IntoResponse {
    let bytes = stand_in.file.lock().unwrap().clone();
    ([(axum::http::header::CONTENT_TYPE, "image/png")], bytes)
}

/// A 2x2 PNG.
fn tiny_png() -> Vec<u8> {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&[200u8; 12], 2, 2, image::ExtendedColorType::Rgb8)
        .unwrap();
    png
}

use image::ImageEncoder;
