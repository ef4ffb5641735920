//! Adversarial spend benchmark: what the owner is billed when visitors try to
//! game the limit. The real app (router, limiter, Replicate client) runs against
//! an in-process stand-in speaking Replicate's HTTP API, which records when each
//! prediction started `processing` (when Replicate starts billing) and when it
//! ended. 1,000 requests from 100 addresses arrive in bursts; a fifth cancel at
//! a random moment, a fifth send prompts the model flags unsafe, a fifth leave
//! (close the connection) at a random moment. Prints predictions created and
//! billed, model-seconds, and the limits; asserts nothing.
//!
//!     cargo bench --features ssr --bench spend

#[path = "../tests/it/support/mod.rs"]
mod support;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use lofianime::prompt::Prompt;
use lofianime::server::settings::Settings;
use lofianime_domain::{ImageGenerator, OfflineGenerator, ReplicateGenerator, ReplicateSettings};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::app::{app_router, local_components};
use tower::ServiceExt;

const VISITORS: usize = 100;
const REQUESTS_PER_VISITOR: usize = 10;
const LIMIT: u64 = 5;
/// One budget that binds before the visitors' limits do, one that does not.
const BUDGETS: [u64; 2] = [300, 5_000];
/// The stand-in model: boots, then draws.
const BOOT: Duration = Duration::from_millis(150);
const DRAW: Duration = Duration::from_millis(600);

struct Prediction {
    created: Instant,
    unsafe_prompt: bool,
    /// When it stopped (cancelled), if it did before finishing.
    canceled_at: Option<Instant>,
}

impl Prediction {
    fn processing_at(&self) -> Instant {
        self.created + BOOT
    }
    fn finishes_at(&self) -> Instant {
        self.created + BOOT + DRAW
    }
    fn status(&self, now: Instant) -> &'static str {
        match self.canceled_at {
            Some(at) if at < self.finishes_at() => "canceled",
            _ if now < self.processing_at() => "starting",
            _ if now < self.finishes_at() => "processing",
            _ if self.unsafe_prompt => "failed",
            _ => "succeeded",
        }
    }
    /// Billed model time: from `processing` to the end (finish or cancel).
    fn billed(&self, now: Instant) -> Option<Duration> {
        let end = self.canceled_at.unwrap_or(now).min(self.finishes_at());
        (end > self.processing_at()).then(|| end - self.processing_at())
    }
}

#[derive(Clone)]
struct StandIn {
    predictions: Arc<Mutex<HashMap<String, Prediction>>>,
    image: Arc<String>,
}

impl StandIn {
    fn view(&self, id: &str) -> Value {
        let now = Instant::now();
        let predictions = self.predictions.lock().unwrap();
        let p = &predictions[id];
        let status = p.status(now);
        let done = now
            .saturating_duration_since(p.processing_at())
            .as_secs_f64()
            / DRAW.as_secs_f64();
        json!({
            "id": id,
            "status": status,
            "output": if status == "succeeded" { json!([*self.image]) } else { Value::Null },
            "error": if status == "failed" { json!("NSFW content detected. Try a different prompt.") } else { Value::Null },
            "logs": if status == "processing" { format!("{:>3}%|", (done.min(1.0) * 100.0) as u32) } else { String::new() },
        })
    }
}

async fn create(State(s): State<StandIn>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let prompt = body["input"]["prompt"].as_str().unwrap_or_default();
    let id = uuid::Uuid::new_v4().simple().to_string();
    s.predictions.lock().unwrap().insert(
        id.clone(),
        Prediction {
            created: Instant::now(),
            unsafe_prompt: prompt.contains("[unsafe]"),
            canceled_at: None,
        },
    );
    (StatusCode::CREATED, Json(s.view(&id)))
}

async fn read(State(s): State<StandIn>, Path(id): Path<String>) -> Json<Value> {
    Json(s.view(&id))
}

async fn cancel(State(s): State<StandIn>, Path(id): Path<String>) -> Json<Value> {
    if let Some(p) = s.predictions.lock().unwrap().get_mut(&id) {
        p.canceled_at.get_or_insert_with(Instant::now);
    }
    Json(s.view(&id))
}

async fn start_stand_in() -> (String, StandIn) {
    let png = OfflineGenerator::new(16, 16, Duration::ZERO)
        .generate(&Prompt::parse("a tiny dusk", 100).unwrap())
        .await
        .unwrap();
    let image = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png.bytes)
    );
    let stand_in = StandIn {
        predictions: Arc::default(),
        image: Arc::new(image),
    };
    let app = Router::new()
        .route("/v1/predictions", post(create))
        .route("/v1/predictions/{id}", get(read))
        .route("/v1/predictions/{id}/cancel", post(cancel))
        .with_state(stand_in.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, stand_in)
}

fn app(replicate_url: &str, budget: u64) -> Router {
    let mut settings = Settings::default();
    settings.ratelimit.limit = LIMIT;
    settings.ratelimit.global_limit = budget;
    settings.visitors.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    settings.progress.cancel_check_ms = 50;
    let generator = ReplicateGenerator::new(ReplicateSettings {
        base_url: replicate_url.parse().unwrap(),
        token: secrecy::SecretString::from("bench-token"),
        model: settings.model.id.clone(),
        version: settings.model.version.clone(),
        prompt_prefix: settings.model.prompt_prefix.clone(),
        input: settings.model.input.clone(),
        deadline: Duration::from_secs(30),
        wait: Duration::from_secs(1),
        poll_interval: Duration::from_millis(50),
        max_image_bytes: 1_000_000,
        backoff: Duration::from_millis(20),
    })
    .unwrap();
    let proxy: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    app_router(&settings, local_components(Arc::new(generator))).layer(MockConnectInfo(proxy))
}

#[derive(Clone, Copy, Debug)]
enum Play {
    Honest,
    Cancel,
    Unsafe,
    Leave,
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        body.append_pair(k, v);
    }
    body.finish()
}

async fn visit(app: Router, visitor: usize, play: Play, n: usize) -> Option<StatusCode> {
    let address = format!("198.51.{}.{}", 100 + visitor / 250, visitor % 250 + 1);
    let job = format!("{:032x}", (visitor as u128) << 64 | n as u128);
    let prompt = match play {
        Play::Unsafe => format!("scene {n} [unsafe]"),
        _ => format!("scene {n}"),
    };
    let post = |path: &str, body: String| {
        Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .header("x-forwarded-for", &address)
            .body(Body::from(body))
            .unwrap()
    };
    let generate = app.clone().oneshot(post(
        "/api/generate",
        form(&[("prompt", &prompt), ("job", &job)]),
    ));
    let wait = Duration::from_millis(rand::rng().random_range(20..900));
    match play {
        Play::Honest | Play::Unsafe => Some(generate.await.unwrap().status()),
        Play::Leave => tokio::time::timeout(wait, generate)
            .await
            .ok()
            .map(|r| r.unwrap().status()),
        Play::Cancel => {
            let running = tokio::spawn(generate);
            tokio::time::sleep(wait).await;
            let _ = app
                .oneshot(post("/api/cancel", form(&[("job", &job)])))
                .await;
            Some(running.await.unwrap().unwrap().status())
        }
    }
}

#[tokio::main]
async fn main() {
    for budget in BUDGETS {
        scenario(budget).await;
    }
}

async fn scenario(budget: u64) {
    let (url, stand_in) = start_stand_in().await;
    let app = app(&url, budget);
    let started = Instant::now();
    let mut visitors = Vec::new();
    for visitor in 0..VISITORS {
        let app = app.clone();
        visitors.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            // Bursts of five requests at once, then a short pause.
            for burst in 0..REQUESTS_PER_VISITOR / 5 {
                let plays: Vec<_> = (0..5)
                    .map(|i| {
                        let play = match rand::rng().random_range(0..5) {
                            0 => Play::Cancel,
                            1 => Play::Unsafe,
                            2 => Play::Leave,
                            _ => Play::Honest,
                        };
                        tokio::spawn(visit(app.clone(), visitor, play, burst * 5 + i))
                    })
                    .collect();
                for play in plays {
                    statuses.push(play.await.unwrap());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            statuses
        }));
    }
    let mut by_status: HashMap<String, usize> = HashMap::new();
    for visitor in visitors {
        for status in visitor.await.unwrap() {
            let key = status.map_or("left".to_owned(), |s| s.as_u16().to_string());
            *by_status.entry(key).or_default() += 1;
        }
    }
    // Let cancels of abandoned predictions land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = Instant::now();
    let predictions = stand_in.predictions.lock().unwrap();
    let billed: Vec<Duration> = predictions.values().filter_map(|p| p.billed(now)).collect();
    let model_seconds: f64 = billed.iter().map(Duration::as_secs_f64).sum();
    let mut statuses: Vec<_> = by_status.into_iter().collect();
    statuses.sort();
    println!(
        "adversarial spend: {VISITORS} visitors x {REQUESTS_PER_VISITOR} requests in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("  answers by status:      {statuses:?}");
    println!(
        "  visitors' limits:       {} ({LIMIT} each)",
        VISITORS as u64 * LIMIT
    );
    println!("  shared budget:          {budget}");
    println!("  predictions created:    {}", predictions.len());
    println!(
        "  predictions billed:     {} (reached processing)",
        billed.len()
    );
    println!(
        "  model-seconds billed:   {model_seconds:.1} ({:.2} s per billed run at most)",
        DRAW.as_secs_f64()
    );
    let ceiling = budget.min(VISITORS as u64 * LIMIT * 2);
    println!(
        "  billed <= budget:       {}",
        if billed.len() as u64 <= budget {
            "yes"
        } else {
            "NO"
        }
    );
    println!(
        "  billed <= limits + refund allowances ({}): {}",
        VISITORS as u64 * LIMIT * 2,
        if billed.len() as u64 <= ceiling {
            "yes"
        } else {
            "NO"
        }
    );
}
