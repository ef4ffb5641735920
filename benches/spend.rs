//! Adversarial spend benchmark: what the owner is billed when visitors try to
//! game the limit. The real app (router, limiter, Replicate client, spend
//! ledger) runs against the Replicate stand-in of the tests
//! (`tests/it/support/replicate_stand_in.rs`), which records, as Replicate
//! does, when each prediction started `processing` and its billed seconds
//! (`metrics.predict_time`). 1,000 requests from 100 addresses arrive in
//! bursts; a fifth cancel at a random moment, a fifth send prompts the model
//! flags unsafe, a fifth leave (close the connection) at a random moment.
//! Prints predictions created and billed, model-seconds and dollars as the
//! stand-in billed them and as the ledger has them, and the limits and
//! budgets; asserts nothing.
//!
//!     cargo bench --features ssr --bench spend

#[path = "../tests/it/support/mod.rs"]
mod support;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use lofianime::server::settings::Settings;
use lofianime_domain::{
    utc_day, MemoryStore, ReplicateGenerator, ReplicateSettings, SpendLedger, SystemClock,
};
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::app::{app_router, local_components};
use support::replicate_stand_in::{Model, ReplicateStandIn};
use tower::ServiceExt;

const VISITORS: usize = 100;
const REQUESTS_PER_VISITOR: usize = 10;
const LIMIT: u64 = 5;
/// The stand-in model: boots, then draws (billed while drawing).
const MODEL: Model = Model {
    boot: Duration::from_millis(150),
    run: Duration::from_millis(600),
};
const PRICE: f64 = 0.000975;

/// A count budget that binds before the visitors' limits do, one that does
/// not, and the latter with a dollar budget worth 100 full runs.
const SCENARIOS: [(u64, Option<f64>); 3] = [
    (300, None),
    (5_000, None),
    (5_000, Some(100.0 * 0.6 * PRICE)),
];

fn app(
    stand_in: &ReplicateStandIn,
    budget: u64,
    dollars: Option<f64>,
    ledger: Arc<MemoryStore>,
) -> Router {
    let mut settings = Settings::default();
    settings.ratelimit.limit = LIMIT;
    settings.ratelimit.global_limit = budget;
    settings.spend.daily_usd = dollars;
    settings.spend.expected_seconds = MODEL.run.as_secs_f64();
    settings.visitors.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    settings.progress.cancel_check_ms = 50;
    let generator = ReplicateGenerator::new(ReplicateSettings {
        base_url: stand_in.base_url.parse().unwrap(),
        token: secrecy::SecretString::from("bench-token"),
        model: settings.model.id.clone(),
        version: settings.model.version.clone(),
        prompt_prefix: settings.model.prompt_prefix.clone(),
        input: settings.model.input.clone(),
        deadline: Duration::from_secs(30),
        cancel_after: Duration::from_secs(30),
        wait: Duration::from_secs(settings.model.wait_secs),
        poll_interval: Duration::from_millis(50),
        max_image_bytes: 1_000_000,
        backoff: Duration::from_millis(20),
        limits: lofianime_domain::CallLimits::default(),
        webhooks: None,
    })
    .unwrap();
    let mut components = local_components(Arc::new(generator));
    components.ledger = ledger;
    let proxy: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    app_router(&settings, components).layer(MockConnectInfo(proxy))
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
    for (budget, dollars) in SCENARIOS {
        scenario(budget, dollars).await;
    }
}

async fn scenario(budget: u64, dollars: Option<f64>) {
    let stand_in = ReplicateStandIn::start(MODEL).await;
    let ledger = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
    let app = app(&stand_in, budget, dollars, ledger.clone());
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
    // Let cancels of abandoned predictions land, and their rows be written.
    stand_in.settle(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let record = stand_in.record();
    let billed: Vec<_> = record.iter().filter(|run| run.processed).collect();
    let model_seconds: f64 = billed.iter().map(|run| run.seconds).sum();
    let billed_usd = model_seconds * PRICE;
    let day = ledger
        .day(&utc_day(support::app::now_ms()), 0)
        .await
        .unwrap();
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
    println!("  count budget:           {budget}");
    println!("  predictions created:    {}", record.len());
    println!(
        "  predictions billed:     {} (reached processing)",
        billed.len()
    );
    println!(
        "  model-seconds billed:   {model_seconds:.1} ({:.2} s per billed run at most)",
        MODEL.run.as_secs_f64()
    );
    println!(
        "  dollars billed:         ${billed_usd:.4} (stand-in's seconds x ${PRICE}/s); ledger: ${:.4} in {} rows",
        day.usd(),
        day.runs
    );
    match dollars {
        Some(limit) => println!(
            "  dollar budget:          ${limit:.4} (+ one run ${:.4}): billed {}",
            MODEL.run.as_secs_f64() * PRICE,
            if billed_usd <= limit + MODEL.run.as_secs_f64() * PRICE {
                "within"
            } else {
                "OVER"
            }
        ),
        None => println!("  dollar budget:          none"),
    }
    let ceiling = budget.min(VISITORS as u64 * LIMIT * 2);
    println!(
        "  billed <= count budget: {}",
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
