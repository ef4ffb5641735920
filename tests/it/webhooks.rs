//! Past the provider's API limits: Replicate's signed webhooks into the shared
//! record of each run, and one budget of provider calls for the whole account.
//! Real server processes on one `redis-server` and the Replicate stand-in,
//! which signs its webhooks as Replicate does, sends them where a load
//! balancer would (to the other instance), enforces an account-wide call
//! limit and counts every call. Assertions are on the stand-in's counts and
//! records, never on what the app believes.

use crate::support::process::AppProcess;
use crate::support::redis_server::RedisServer;
use crate::support::replicate_stand_in::{Model, ReplicateStandIn};
use std::time::{Duration, Instant, SystemTime};

/// The addresses the instances give Replicate (their `site.public_url`); the
/// stand-in routes each to the other instance.
const A: &str = "http://a.lofianime.test";
const B: &str = "http://b.lofianime.test";

fn env(stand_in: &ReplicateStandIn, redis: &RedisServer) -> Vec<(&'static str, String)> {
    vec![
        ("REPLICATE_API_TOKEN", "r8_test_token".into()),
        ("REPLICATE_BASE_URL", stand_in.base_url.clone()),
        ("REDIS_URL", redis.url()),
        ("LOFIANIME_RATELIMIT__LIMIT", "1000".into()),
        ("LOFIANIME_RATELIMIT__GLOBAL_LIMIT", "0".into()),
        (
            "LOFIANIME_SERVER__MAX_CONNECTIONS_PER_ADDRESS",
            "512".into(),
        ),
    ]
}

fn with(
    mut env: Vec<(&'static str, String)>,
    more: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    env.extend(more.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

/// `count` generations at once, alternating between the instances; their statuses.
async fn generate_at_once(instances: &[&AppProcess], count: usize) -> Vec<u16> {
    let client = reqwest::Client::new();
    let mut running = Vec::new();
    for n in 0..count {
        let url = instances[n % instances.len()].url("/api/ai");
        let client = client.clone();
        running.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .body(format!(r#"{{"prompt": "harbour scene {n}"}}"#))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            if status == 200 {
                assert!(body.contains("/images/"), "an image: {body}");
            }
            status
        }));
    }
    let mut statuses = Vec::new();
    for generation in running {
        statuses.push(generation.await.unwrap());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_generations_on_two_instances_ride_on_webhooks_within_the_account_limit() {
    let redis = RedisServer::start();
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(300),
        run: Duration::from_secs(2),
    })
    .await;
    // Replicate's account limit scaled down: 60 non-create calls a minute.
    stand_in.limit_calls(60, Duration::from_secs(60));
    let common = with(
        env(&stand_in, &redis),
        &[
            ("LOFIANIME_MODEL__WEBHOOKS", "on"),
            ("LOFIANIME_MODEL__BUDGET_CALLS", "60"),
        ],
    );
    // A fetches the signing secret with the API token; B is given it.
    let a = AppProcess::start(&with(common.clone(), &[("LOFIANIME_SITE__PUBLIC_URL", A)])).await;
    let b = AppProcess::start(&with(
        common,
        &[
            ("LOFIANIME_SITE__PUBLIC_URL", B),
            ("REPLICATE_WEBHOOK_SECRET", &stand_in.webhook_secret),
        ],
    ))
    .await;
    stand_in.route_webhooks(vec![(A.into(), b.url("")), (B.into(), a.url(""))]);
    assert!(
        a.output()
            .contains("webhooks to http://a.lofianime.test/webhooks/replicate"),
        "the start-up log says where events go: {}",
        a.output()
    );

    let statuses = generate_at_once(&[&a, &b], 40).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every visitor got an image: {statuses:?}\n{}",
        a.output()
    );
    let record = stand_in.record();
    assert_eq!(record.len(), 40, "one prediction per generation");
    assert!(
        record.iter().all(|run| run.status == "succeeded"),
        "{record:?}"
    );
    let calls = stand_in.calls();
    eprintln!("calls: {calls:?}");
    assert_eq!(
        calls.throttled, 0,
        "no call past the account's limit: {calls:?}"
    );
    assert!(
        calls.total() <= 3 * 40,
        "at most 3 API calls per generation: {calls:?}"
    );
    assert_eq!(
        calls.secrets, 1,
        "A fetched the secret once, B never: {calls:?}"
    );
    // Every completed event went to the other instance and was taken.
    let completed: Vec<_> = stand_in
        .deliveries()
        .into_iter()
        .filter(|d| d.event == "completed")
        .collect();
    assert_eq!(completed.len(), 40, "{completed:?}");
    for delivery in &completed {
        assert_eq!(delivery.answered, 200, "{delivery:?}");
        assert!(
            delivery.to.starts_with(&a.url("/webhooks/replicate?run="))
                || delivery.to.starts_with(&b.url("/webhooks/replicate?run=")),
            "{delivery:?}"
        );
    }
    // Both instances received events made by the other.
    for instance in [&a, &b] {
        assert!(
            completed
                .iter()
                .any(|d| d.to.starts_with(&instance.url("/"))),
            "{} received webhooks",
            instance.url("")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_webhooks_the_call_budget_holds_forty_polling_generations_on_two_instances() {
    let redis = RedisServer::start();
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(100),
        run: Duration::from_secs(1),
    })
    .await;
    // Scaled down: 20 non-create calls in any 5 s. Polling 40 runs every
    // 200 ms would ask for 200 reads a second.
    stand_in.limit_calls(20, Duration::from_secs(5));
    let common = with(
        env(&stand_in, &redis),
        &[
            ("LOFIANIME_MODEL__BUDGET_CALLS", "20"),
            ("LOFIANIME_MODEL__BUDGET_WINDOW_SECS", "5"),
            ("LOFIANIME_MODEL__POLL_INTERVAL_MS", "200"),
        ],
    );
    let a = AppProcess::start(&common).await;
    let b = AppProcess::start(&common).await;
    let statuses = generate_at_once(&[&a, &b], 40).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every visitor got an image: {statuses:?}\n{}",
        a.output()
    );
    let calls = stand_in.calls();
    eprintln!("calls: {calls:?}");
    assert!(
        calls.reads >= 40,
        "each run was read at least once: {calls:?}"
    );
    assert_eq!(
        calls.throttled, 0,
        "the two instances together never passed the account's limit: {calls:?}"
    );
    let record = stand_in.record();
    assert!(
        record.iter().all(|run| run.status == "succeeded"),
        "{record:?}"
    );
}

/// A webhook signed with `secret` at `timestamp` with `id`.
fn signed(secret: &str, id: &str, timestamp: i64, body: &str) -> Vec<(&'static str, String)> {
    let signature = standardwebhooks::Webhook::new(secret)
        .unwrap()
        .sign(id, timestamp, body.as_bytes())
        .unwrap();
    vec![
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
        ("content-type", "application/json".to_owned()),
    ]
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn post(url: &str, headers: &[(&'static str, String)], body: String) -> u16 {
    let mut request = reqwest::Client::new().post(url).body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_replayed_foreign_and_oversized_webhooks_change_nothing() {
    let redis = RedisServer::start();
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(100),
        run: Duration::from_secs(4),
    })
    .await;
    let app = AppProcess::start(&with(
        env(&stand_in, &redis),
        &[
            ("LOFIANIME_MODEL__WEBHOOKS", "on"),
            ("LOFIANIME_SITE__PUBLIC_URL", A),
            ("LOFIANIME_RATELIMIT__LIMIT", "5"),
            ("REPLICATE_WEBHOOK_SECRET", &stand_in.webhook_secret),
        ],
    ))
    .await;
    stand_in.route_webhooks(vec![(A.into(), app.url(""))]);
    let client = reqwest::Client::new();
    let generation = {
        let client = client.clone();
        let url = app.url("/api/ai");
        tokio::spawn(async move {
            let response = client
                .post(url)
                .body(r#"{"prompt": "a lighthouse at dusk"}"#)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    // The run's webhook address, from the stand-in's first delivery.
    let until = Instant::now() + Duration::from_secs(5);
    let start = loop {
        if let Some(first) = stand_in.deliveries().into_iter().next() {
            break first;
        }
        assert!(Instant::now() < until, "no webhook was sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let to = start.to.clone();
    // What a forger would like the app to believe: the run failed (a refund)
    // or succeeded with an image of their choosing.
    let lie = |status: &str| {
        serde_json::json!({
            "id": start.prediction, "status": status,
            "output": if status == "succeeded" { serde_json::json!(["https://evil.example/x.png"]) } else { serde_json::Value::Null },
            "error": if status == "failed" { serde_json::json!("boom") } else { serde_json::Value::Null },
            "logs": "", "started_at": null, "metrics": {"predict_time": 0.0},
        })
        .to_string()
    };
    let other_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let secret = stand_in.webhook_secret.clone();
    // A forged signature.
    let mut forged = signed(&secret, "msg_forged", now_secs(), &lie("failed"));
    forged[2].1 = "v1,bm90IGEgc2lnbmF0dXJlIGF0IGFsbCwgbm90IG9uZSBiaXQ=".into();
    assert_eq!(
        post(&to, &forged, lie("failed")).await,
        401,
        "forged signature"
    );
    // No signature at all.
    assert_eq!(post(&to, &[], lie("failed")).await, 401, "unsigned");
    // Signed by another account.
    let foreign = signed(other_secret, "msg_foreign", now_secs(), &lie("succeeded"));
    assert_eq!(
        post(&to, &foreign, lie("succeeded")).await,
        401,
        "another secret"
    );
    // A good signature on a body that was changed after signing.
    let tampered = signed(&secret, "msg_tampered", now_secs(), &lie("canceled"));
    assert_eq!(
        post(&to, &tampered, lie("failed")).await,
        401,
        "tampered body"
    );
    // Stale: signed ten minutes ago.
    let stale = signed(&secret, "msg_stale", now_secs() - 600, &lie("failed"));
    assert_eq!(
        post(&to, &stale, lie("failed")).await,
        401,
        "stale timestamp"
    );
    // Oversized: 2 MB.
    let big = format!(
        r#"{{"id": "{}", "status": "failed", "logs": "{}"}}"#,
        start.prediction,
        "x".repeat(2_000_000)
    );
    let oversized = signed(&secret, "msg_big", now_secs(), &big);
    assert_eq!(post(&to, &oversized, big).await, 413, "oversized body");
    // A genuine progress event is taken once; its replay is refused.
    let progress = serde_json::json!({
        "id": start.prediction, "status": "processing", "output": null, "error": null,
        "logs": " 10%|#", "started_at": null, "metrics": {},
    })
    .to_string();
    let genuine = signed(&secret, "msg_genuine", now_secs(), &progress);
    assert_eq!(post(&to, &genuine, progress.clone()).await, 200, "genuine");
    assert_eq!(
        post(&to, &genuine, progress).await,
        401,
        "replayed webhook-id"
    );
    // An event for a run this app never opened is acknowledged and ignored.
    let unknown_to = app.url("/webhooks/replicate?run=0123456789abcdef0123456789abcdef");
    let unknown = signed(&secret, "msg_unknown", now_secs(), &lie("failed"));
    assert_eq!(
        post(&unknown_to, &unknown, lie("failed")).await,
        200,
        "unknown run"
    );

    // The generation went on untouched: the provider's run succeeded and the
    // visitor got its image, for one credit.
    let (status, body) = generation.await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", app.output());
    assert!(
        body.contains("/images/") && !body.contains("evil"),
        "{body}"
    );
    let record = stand_in.record();
    assert_eq!(record.len(), 1);
    assert_eq!(record[0].status, "succeeded");
    let remaining = app.get_json("/api/remaining").await;
    assert_eq!(remaining["remainingGenerations"], 4, "{remaining}");
    assert!(
        !app.output().contains(&secret),
        "the secret is never logged"
    );
}

#[tokio::test]
async fn a_webhook_secret_that_is_not_one_stops_start_up_without_being_repeated() {
    let redis = RedisServer::start();
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::ZERO,
        run: Duration::from_millis(10),
    })
    .await;
    let (status, output) = AppProcess::run_to_exit(
        &with(
            env(&stand_in, &redis),
            &[
                ("LOFIANIME_MODEL__WEBHOOKS", "on"),
                ("LOFIANIME_SITE__PUBLIC_URL", A),
                ("REPLICATE_WEBHOOK_SECRET", "not-a-secret-abc123"),
            ],
        ),
        Duration::from_secs(20),
    )
    .await;
    assert!(!status.success());
    assert!(
        output.contains("REPLICATE_WEBHOOK_SECRET is not a webhook signing secret"),
        "{output}"
    );
    assert!(!output.contains("not-a-secret-abc123"), "{output}");
    // "on" needs an address to give Replicate.
    let (status, output) = AppProcess::run_to_exit(
        &with(
            env(&stand_in, &redis),
            &[("LOFIANIME_MODEL__WEBHOOKS", "on")],
        ),
        Duration::from_secs(20),
    )
    .await;
    assert!(!status.success());
    assert!(output.contains("model.webhooks"), "{output}");
    assert!(output.contains("site.public_url"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_completed_webhook_of_a_run_whose_instance_was_killed_fills_the_ledger() {
    use lofianime_domain::{RedisStore, SpendLedger};
    let redis = RedisServer::start();
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(30),
        run: Duration::from_secs(3),
    })
    .await;
    let common = with(
        env(&stand_in, &redis),
        &[
            ("LOFIANIME_MODEL__WEBHOOKS", "on"),
            ("REPLICATE_WEBHOOK_SECRET", &stand_in.webhook_secret),
            // No reconciliation pass during the test: the webhook must do it.
            ("LOFIANIME_SPEND__RECONCILE_SECS", "86400"),
        ],
    );
    let doomed =
        AppProcess::start(&with(common.clone(), &[("LOFIANIME_SITE__PUBLIC_URL", A)])).await;
    let survivor = AppProcess::start(&with(common, &[("LOFIANIME_SITE__PUBLIC_URL", B)])).await;
    stand_in.route_webhooks(vec![
        (A.into(), survivor.url("")),
        (B.into(), doomed.url("")),
    ]);
    let url = doomed.url("/api/ai");
    tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(url)
            .body(r#"{"prompt": "a lighthouse"}"#)
            .send()
            .await;
    });
    let until = Instant::now() + Duration::from_secs(10);
    while stand_in.processed() == 0 {
        assert!(Instant::now() < until, "the model started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(doomed); // SIGKILL, mid-run: nobody settles it
    stand_in.settle(Duration::from_secs(10)).await;
    let record = stand_in.record();
    assert_eq!(record.len(), 1);
    assert_eq!(record[0].status, "succeeded", "{record:?}");
    let ledger = RedisStore::connect(&redis.url(), Duration::from_secs(2))
        .await
        .unwrap();
    // The lease lapses 15 s after its last renewal; then the survivor writes it.
    let until = Instant::now() + Duration::from_secs(30);
    let row = loop {
        let rows = ledger.latest(10).await.unwrap();
        if let Some(row) = rows.into_iter().find(|row| row.run_id == record[0].id) {
            break row;
        }
        assert!(Instant::now() < until, "no row: {}", survivor.output());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(row.outcome, "orphaned");
    assert_eq!(row.billed_ms, (record[0].seconds * 1000.0).round() as u64);
    let calls = stand_in.calls();
    assert_eq!(calls.cancels, 0, "nothing was cancelled: {calls:?}");
    assert_eq!(
        calls.reads, 0,
        "nothing was read: the webhook said it all: {calls:?}"
    );
}
