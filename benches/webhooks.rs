//! What webhooks change, on the real binary with the Replicate stand-in
//! (tests/it/support), whose model boots for 200 ms and runs for 2 s:
//!
//! 1. **One at a time**, 12 generations through `/api/ai` each followed by
//!    the download of the image it answers with: the provider API calls per
//!    generation (creates, reads, cancels; the account's background calls,
//!    the ledger's lists of runs and the webhook secret, counted apart: the
//!    stand-in's pages hold 2 runs where Replicate's hold 100), and the time from the provider's end of the
//!    run (the stand-in's own instant) to the image downloaded, p50 and p95.
//! 2. **40 at once** under Replicate's account limit (3,000 other calls a
//!    minute, enforced by the stand-in): how long until all 40 are answered,
//!    API calls per generation, and the 429s the provider answered.
//!
//! Each with the app polling (`model.webhooks = "off"`, every 500 ms, the
//! default) and with webhooks (`"on"`, events delivered to the app). Prints
//! figures; asserts nothing.
//!
//!     cargo bench --features ssr --bench webhooks

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::process::AppProcess;
use support::replicate_stand_in::{Model, ReplicateStandIn};

const SITE: &str = "http://lofianime.bench";

async fn setup(webhooks: bool) -> (ReplicateStandIn, AppProcess) {
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(200),
        run: Duration::from_secs(2),
    })
    .await;
    stand_in.limit_calls(3_000, Duration::from_secs(60));
    let mut env = vec![
        ("REPLICATE_API_TOKEN", "r8_bench_token".to_owned()),
        ("REPLICATE_BASE_URL", stand_in.base_url.clone()),
        ("LOFIANIME_RATELIMIT__LIMIT", "1000000".to_owned()),
        ("LOFIANIME_RATELIMIT__GLOBAL_LIMIT", "0".to_owned()),
        (
            "LOFIANIME_SERVER__MAX_CONNECTIONS_PER_ADDRESS",
            "1000".to_owned(),
        ),
        ("LOFIANIME_SITE__PUBLIC_URL", SITE.to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    env.push((
        "LOFIANIME_MODEL__WEBHOOKS",
        if webhooks { "on" } else { "off" }.to_owned(),
    ));
    let app = AppProcess::start(&env).await;
    stand_in.route_webhooks(vec![(SITE.into(), app.url(""))]);
    (stand_in, app)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

async fn one_at_a_time(webhooks: bool) {
    let (stand_in, app) = setup(webhooks).await;
    let client = reqwest::Client::new();
    const RUNS: usize = 12;
    let mut after_end = Vec::new();
    for i in 0..RUNS {
        let answer: Vec<String> = client
            .post(app.url("/api/ai"))
            .json(&serde_json::json!({ "prompt": format!("a harbour {i}") }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let image = client.get(app.url(&answer[0])).send().await.unwrap();
        assert!(image.status().is_success());
        image.bytes().await.unwrap();
        let seen = Instant::now();
        let record = stand_in.record();
        let ended = stand_in.ended_at(&record[i].id).expect("the run ended");
        after_end.push(seen.duration_since(ended).as_secs_f64() * 1000.0);
    }
    after_end.sort_by(f64::total_cmp);
    let calls = stand_in.calls();
    println!(
        "| {} | one at a time | {:.2} | {:.2} | {} | {:.0} ms | {:.0} ms |",
        if webhooks { "webhooks" } else { "polling" },
        (calls.creates + calls.reads + calls.cancels) as f64 / RUNS as f64,
        calls.reads as f64 / RUNS as f64,
        calls.lists + calls.secrets,
        percentile(&after_end, 0.5),
        percentile(&after_end, 0.95),
    );
}

async fn forty_at_once(webhooks: bool) {
    let (stand_in, app) = setup(webhooks).await;
    let client = reqwest::Client::new();
    const RUNS: usize = 40;
    let started = Instant::now();
    let mut running = Vec::new();
    for i in 0..RUNS {
        let (client, url) = (client.clone(), app.url("/api/ai"));
        running.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&serde_json::json!({ "prompt": format!("a harbour {i}") }))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    for generation in running {
        ok += usize::from(generation.await.unwrap() == 200);
    }
    let elapsed = started.elapsed();
    let calls = stand_in.calls();
    println!(
        "| {} | 40 at once | {:.2} | {:.2} | {} | all {ok}/{RUNS} answered in {:.1} s | {} × 429 |",
        if webhooks { "webhooks" } else { "polling" },
        (calls.creates + calls.reads + calls.cancels) as f64 / RUNS as f64,
        calls.reads as f64 / RUNS as f64,
        calls.lists + calls.secrets,
        elapsed.as_secs_f64(),
        calls.throttled,
    );
}

#[tokio::main]
async fn main() {
    println!("| mode | load | API calls per generation | of which reads | background calls | run end → image p50 | p95 |");
    println!("|---|---|---|---|---|---|---|");
    for webhooks in [false, true] {
        one_at_a_time(webhooks).await;
    }
    for webhooks in [false, true] {
        forty_at_once(webhooks).await;
    }
}
