//! The spend ledger and the daily dollar budget, against the Replicate
//! stand-in that records, as Replicate does, each run's billed seconds: the
//! ledger's totals equal what the stand-in billed, a budget in dollars holds
//! across two instances sharing one real `redis-server`, and a run whose
//! instance was killed is found by another instance's reconciliation. The
//! ledger itself is checked against a real Redis and the Upstash REST bridge.

use crate::support::app::{app_router, body_bytes, form_body, local_components};
use crate::support::process::AppProcess;
use crate::support::redis_server::RedisServer;
use crate::support::replicate_stand_in::{Model, ReplicateStandIn};
use crate::support::upstash_bridge::Bridge;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use lofianime::server::settings::Settings;
use lofianime::wire::ApiError;
use lofianime_domain::testing::spend_ledger_contract as contract;
use lofianime_domain::{
    utc_day, Components, MemoryStore, RedisStore, RemoteStore, ReplicateGenerator, SpendLedger,
    SystemClock, UpstashRestStore, UpstashSettings,
};
use secrecy::SecretString;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const PRICE: f64 = 0.000975;

fn generator(stand_in: &ReplicateStandIn) -> Arc<ReplicateGenerator> {
    Arc::new(stand_in.generator(Duration::ZERO))
}

async fn send(router: &Router, from: &str, request: Request<Body>) -> axum::http::Response<Body> {
    let peer: SocketAddr = from.parse().unwrap();
    router
        .clone()
        .layer(MockConnectInfo(peer))
        .oneshot(request)
        .await
        .unwrap()
}

fn generate_request(prompt: &str, job: Option<&str>) -> Request<Body> {
    let body = match job {
        Some(job) => format!("{}&job={job}", form_body(prompt)),
        None => form_body(prompt),
    };
    Request::post("/api/generate")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(Body::from(body))
        .unwrap()
}

fn cancel_request(job: &str) -> Request<Body> {
    Request::post("/api/cancel")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(Body::from(format!("job={job}")))
        .unwrap()
}

/// What the stand-in billed, in micro-dollars, run by run.
fn billed_micros(stand_in: &ReplicateStandIn) -> u64 {
    stand_in
        .record()
        .iter()
        .map(|run| (run.seconds * 1000.0).round() as u64)
        .map(|ms| lofianime_domain::micros(ms, PRICE))
        .sum()
}

async fn wait_until(mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..200 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_adds_up_to_what_the_provider_billed_including_stopped_runs() {
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(30),
        run: Duration::from_millis(400),
    })
    .await;
    let ledger = Arc::new(MemoryStore::new(Arc::new(SystemClock)));
    let mut components = local_components(generator(&stand_in));
    components.ledger = ledger.clone();
    let mut settings = Settings::default();
    settings.ratelimit.limit = 20;
    settings.progress.cancel_check_ms = 50;
    let router = app_router(&settings, components);
    let visitor = "198.51.100.7:4000";
    // Three delivered, one flagged unsafe, two cancelled after the model started.
    for prompt in ["a harbour", "a train", "a field", "[unsafe] a thing"] {
        send(&router, visitor, generate_request(prompt, None)).await;
    }
    for n in 0..2 {
        let job = format!("{:032x}", 0x5000 + n);
        let running = {
            let (router, job) = (router.clone(), job.clone());
            tokio::spawn(async move {
                send(
                    &router,
                    visitor,
                    generate_request("a long night", Some(&job)),
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(250)).await;
        send(&router, visitor, cancel_request(&job)).await;
        assert_eq!(running.await.unwrap().status(), StatusCode::CONFLICT);
    }
    stand_in.settle(Duration::from_secs(5)).await;
    let day = utc_day(crate::support::app::now_ms());
    assert!(
        wait_until(async || { ledger.day(&day, 0).await.unwrap().runs == 6 }).await,
        "every run has its row: {:?}",
        ledger.day(&day, 0).await
    );
    let totals = ledger.day(&day, 0).await.unwrap();
    let billed = billed_micros(&stand_in);
    assert!(billed > 0);
    assert_eq!(
        totals.usd_micros.div_ceil(10_000),
        billed.div_ceil(10_000),
        "to the cent"
    );
    assert!(
        totals.usd_micros.abs_diff(billed) <= 6,
        "within rounding of each row: ledger {} vs stand-in {billed}",
        totals.usd_micros
    );
    assert_eq!(totals.by_outcome["delivered"].runs, 3);
    assert_eq!(totals.by_outcome["unsafe"].runs, 1);
    assert_eq!(totals.by_outcome["stopped"].runs, 2);
    let stopped: u64 = stand_in
        .record()
        .iter()
        .filter(|run| run.status == "canceled")
        .map(|run| lofianime_domain::micros((run.seconds * 1000.0).round() as u64, PRICE))
        .sum();
    assert!(stopped > 0, "the cancelled runs were billed something");
    assert_eq!(totals.by_outcome["stopped"].usd_micros, stopped);
    let rows = ledger.latest(10).await.unwrap();
    let ids: std::collections::HashSet<_> = rows.iter().map(|row| row.run_id.clone()).collect();
    let billed_ids: std::collections::HashSet<_> =
        stand_in.record().into_iter().map(|run| run.id).collect();
    assert_eq!(ids, billed_ids, "one row per prediction, under its id");
}

async fn on_redis(redis: &RedisServer) -> Arc<dyn RemoteStore> {
    Arc::new(
        RedisStore::connect(&redis.url(), Duration::from_secs(2))
            .await
            .unwrap(),
    )
}

async fn on_upstash(bridge: &Bridge) -> Arc<dyn RemoteStore> {
    Arc::new(
        UpstashRestStore::connect(UpstashSettings {
            url: bridge.url.clone(),
            token: SecretString::from("bridge-token"),
            timeout: Duration::from_secs(2),
            key_locking: false,
        })
        .await
        .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_keeps_its_promises_on_redis_and_upstash() {
    for kind in ["redis", "upstash"] {
        // Each kind on a Redis of its own.
        let redis = RedisServer::start();
        let bridge = Bridge::start(&redis.url(), "bridge-token").await;
        let connect = async || match kind {
            "redis" => on_redis(&redis).await,
            _ => on_upstash(&bridge).await,
        };
        let store = connect().await;
        contract::rows_count_once_and_add_up_by_outcome(store.as_ref()).await;
        contract::reservations_hold_the_budget_until_settled_or_lapsed(store.as_ref(), 1_000).await;
        contract::locks_are_held_until_they_expire(store.as_ref()).await;
        contract::refusals_add_up_beside_the_runs(store.as_ref()).await;
        // The provider call budget's log, on the same stores.
        lofianime_domain::testing::shared_state_contract::slots_are_limited_over_a_sliding_window(
            store.as_ref(),
            &format!("slots:{kind}"),
        )
        .await;
        // The model servers' holds and line (the Cog pool), on the same stores.
        let shared =
            lofianime_domain::testing::shared_state_contract::holds_go_to_one_holder_at_a_time;
        shared(store.as_ref(), &format!("hold:{kind}")).await;
        lofianime_domain::testing::shared_state_contract::a_line_keeps_its_order_and_forgets_who_left(
            store.as_ref(),
            &format!("line:{kind}"),
        )
        .await;
        // The same run settled by two instances (two connections) counts once.
        let other = connect().await;
        let row = contract::row("shared-run", "delivered", 1_000, 975);
        let (a, b) = tokio::join!(
            store.record(&row, None, 60_000),
            other.record(&row, None, 60_000)
        );
        assert!(a.unwrap() ^ b.unwrap(), "{kind}: exactly one write counts");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dollar_budget_holds_across_two_instances_sharing_redis() {
    let redis = RedisServer::start();
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(30),
        run: Duration::from_secs(1),
    })
    .await;
    let one_run = PRICE; // a second of the model
    let mut settings = Settings::default();
    settings.spend.daily_usd = Some(5.0 * one_run);
    settings.spend.expected_seconds = 1.0;
    settings.ratelimit.limit = 5;
    let instance = |store: Arc<dyn RemoteStore>| {
        let components: Components =
            local_components(generator(&stand_in)).on_remote_store(store, 12);
        app_router(&settings, components)
    };
    let first = instance(on_redis(&redis).await);
    let second = instance(on_redis(&redis).await);
    let mut requests = Vec::new();
    for n in 0..30u8 {
        let router = if n % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        requests.push(tokio::spawn(async move {
            let from = format!("203.0.113.{}:5000", n + 1);
            let response = send(&router, &from, generate_request("a quiet harbour", None)).await;
            let status = response.status();
            (status, body_bytes(response).await)
        }));
    }
    let mut refused = 0;
    for request in requests {
        let (status, body) = request.await.unwrap();
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
            let error: ApiError = serde_json::from_slice(&body).unwrap();
            assert!(matches!(error, ApiError::DailyBudgetSpent(_)), "{error:?}");
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["message"], "Today's image budget is used up.");
        } else {
            assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        }
    }
    stand_in.settle(Duration::from_secs(10)).await;
    let billed = billed_micros(&stand_in) as f64 / 1e6;
    let budget = 5.0 * one_run;
    assert!(
        billed <= budget + one_run,
        "billed ${billed:.6} against a budget of ${budget:.6} (+ one run ${one_run:.6}): {:?}",
        stand_in.record()
    );
    assert!(stand_in.record().len() <= 6, "{:?}", stand_in.record());
    assert!(refused >= 24, "{refused} refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_instance_was_killed_is_reconciled_by_another() {
    let redis = RedisServer::start();
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(30),
        run: Duration::from_millis(1500),
    })
    .await;
    let env = |reconcile_secs: &str| {
        vec![
            ("REDIS_URL", redis.url()),
            ("REPLICATE_API_TOKEN", "r8_test_token".to_owned()),
            ("REPLICATE_BASE_URL", stand_in.base_url.clone()),
            ("LOFIANIME_SPEND__RECONCILE_SECS", reconcile_secs.to_owned()),
            ("METRICS_TOKEN", "metrics-token".to_owned()),
        ]
    };
    // Both reconcile every second; whichever takes a pass holds it for that
    // second, so the survivor takes over once the other is gone.
    let doomed = AppProcess::start(&env("1")).await;
    let survivor = AppProcess::start(&env("1")).await;
    let url = doomed.url("/api/ai");
    tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(url)
            .json(&serde_json::json!({"prompt": "a lighthouse"}))
            .send()
            .await;
    });
    assert!(
        wait_until(async || { stand_in.processed() == 1 }).await,
        "the model started"
    );
    drop(doomed); // SIGKILL, mid-run: nobody settles it
    stand_in.settle(Duration::from_secs(5)).await;
    let record = stand_in.record();
    assert_eq!(record.len(), 1);
    assert_eq!(record[0].status, "succeeded", "{record:?}");
    let ledger = RedisStore::connect(&redis.url(), Duration::from_secs(2))
        .await
        .unwrap();
    let found = wait_until(async || {
        ledger
            .latest(10)
            .await
            .unwrap()
            .iter()
            .any(|row| row.run_id == record[0].id)
    })
    .await;
    assert!(found, "reconciled: {}", survivor.output());
    let row = ledger.latest(10).await.unwrap().remove(0);
    assert_eq!(row.outcome, "reconciled");
    let billed_ms = (record[0].seconds * 1000.0).round() as u64;
    assert_eq!(row.billed_ms, billed_ms);
    assert_eq!(row.usd_micros, lofianime_domain::micros(billed_ms, PRICE));
    let metrics = reqwest::Client::new()
        .get(survivor.url("/metrics"))
        .bearer_auth("metrics-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("lofianime_spend_usd_total")
            && metrics.contains("lofianime_model_billed_seconds_total"),
        "{metrics}"
    );
}

/// Starts a generation on `app` and returns once the stand-in's model is
/// processing it (the visitor's request is left hanging).
async fn start_a_run(app: &AppProcess, stand_in: &ReplicateStandIn) {
    let url = app.url("/api/ai");
    tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(url)
            .json(&serde_json::json!({"prompt": "a lighthouse"}))
            .send()
            .await;
    });
    assert!(
        wait_until(async || stand_in.processed() == 1).await,
        "the model started: {}",
        app.output()
    );
}

/// Waits (at most `bound`) until the stand-in's only run is over; how long that took.
async fn until_over(stand_in: &ReplicateStandIn, bound: Duration) -> Option<Duration> {
    let started = std::time::Instant::now();
    while started.elapsed() < bound {
        if stand_in.record()[0].status != "processing" {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_left_by_a_killed_process_is_cancelled_after_the_restart_with_memory_only() {
    // No Redis: the restarted process knows of the run only from the
    // provider's list. The run would go on for a minute, billed for nobody.
    // (It waits out the shutdown grace a replaced process drains for: 1 s here.)
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(30),
        run: Duration::from_secs(60),
    })
    .await;
    let env = vec![
        ("REPLICATE_API_TOKEN", "r8_test_token".to_owned()),
        ("REPLICATE_BASE_URL", stand_in.base_url.clone()),
        ("LOFIANIME_SHUTDOWN__GRACE_SECS", "1".to_owned()),
    ];
    let doomed = AppProcess::start(&env).await;
    start_a_run(&doomed, &stand_in).await;
    drop(doomed); // SIGKILL, mid-run
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        stand_in.record()[0].status,
        "processing",
        "nobody stopped it"
    );
    let restarted = AppProcess::start(&env).await;
    let took = until_over(&stand_in, Duration::from_secs(30)).await;
    let record = stand_in.record();
    assert!(took.is_some(), "{record:?}: {}", restarted.output());
    eprintln!("the orphaned run ended {took:?} after the restart");
    assert_eq!(record[0].status, "canceled", "{record:?}");
    assert!(
        record[0].seconds < 35.0,
        "billed {} s of a 60 s run",
        record[0].seconds
    );
    assert!(restarted.output().contains("orphaned run was cancelled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_left_by_a_killed_process_is_cancelled_and_settled_by_the_restarted_one() {
    // With Redis the dead process's lease on its run outlives it; once it
    // lapses, the restarted process (or any other) stops the run and writes
    // its row by the provider's record, for the visitor who started it.
    let redis = RedisServer::start();
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(30),
        run: Duration::from_secs(60),
    })
    .await;
    let env = vec![
        ("REDIS_URL", redis.url()),
        ("REPLICATE_API_TOKEN", "r8_test_token".to_owned()),
        ("REPLICATE_BASE_URL", stand_in.base_url.clone()),
    ];
    let doomed = AppProcess::start(&env).await;
    start_a_run(&doomed, &stand_in).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the lease is written
    drop(doomed);
    let restarted = AppProcess::start(&env).await;
    let took = until_over(&stand_in, Duration::from_secs(30)).await;
    let record = stand_in.record();
    assert!(took.is_some(), "{record:?}: {}", restarted.output());
    eprintln!("the orphaned run ended {took:?} after the restart");
    assert_eq!(record[0].status, "canceled", "{record:?}");
    let ledger = RedisStore::connect(&redis.url(), Duration::from_secs(2))
        .await
        .unwrap();
    let settled = wait_until(async || !ledger.latest(10).await.unwrap().is_empty()).await;
    assert!(settled, "{}", restarted.output());
    let row = ledger.latest(10).await.unwrap().remove(0);
    assert_eq!(row.run_id, record[0].id);
    assert_eq!(row.outcome, "orphaned");
    assert_eq!(
        row.who,
        lofianime_domain::tag("127.0.0.1"),
        "the visitor's run"
    );
    let billed_ms = (stand_in.record()[0].seconds * 1000.0).round() as u64;
    assert_eq!(row.billed_ms, billed_ms, "by the provider's record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_leaves_the_runs_of_the_one_it_replaces_alone() {
    // A rolling deploy with memory only: the new process starts while the old
    // one still runs a generation; the new one cannot see the old one's
    // lease, and waits out the old one's grace period before calling any run
    // orphaned. The run finishes and is delivered.
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(30),
        run: Duration::from_secs(4),
    })
    .await;
    let env = vec![
        ("REPLICATE_API_TOKEN", "r8_test_token".to_owned()),
        ("REPLICATE_BASE_URL", stand_in.base_url.clone()),
    ];
    let old = AppProcess::start(&env).await;
    let url = old.url("/api/ai");
    let visitor = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&serde_json::json!({"prompt": "a lighthouse"}))
            .send()
            .await
            .map(|response| response.status())
    });
    assert!(wait_until(async || stand_in.processed() == 1).await);
    let new = AppProcess::start(&env).await;
    let status = visitor.await.unwrap().unwrap();
    let record = stand_in.record();
    assert_eq!(
        record[0].status,
        "succeeded",
        "{record:?}: {}",
        new.output()
    );
    assert_eq!(status, reqwest::StatusCode::OK, "{}", old.output());
}
