//! Generations in flight across app instances: two instances on one real
//! `redis-server` (and on the Upstash REST bridge in front of it); a generation
//! started through one is watched and cancelled through the other, and the
//! visitor's recent images are the same on both, and after a restart.

use crate::support::app::{body_bytes, body_text, form_body, spawn_app_on, TestApp};
use crate::support::redis_server::RedisServer;
use crate::support::upstash_bridge::Bridge;

use axum::http::StatusCode;
use lofianime::progress::{JobId, JobProgress, JobState, Phase};
use lofianime::server::settings::Settings;
use lofianime_domain::RemoteStore;
use lofianime_domain::{testing::FakeModel, testing::FAKE_PERCENT};
use lofianime_domain::{RedisStore, UpstashRestStore, UpstashSettings};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "test-token-for-the-bridge";

/// Succeeds, except for prompts containing "endless", which run until dropped.
fn endless_model() -> Arc<FakeModel> {
    Arc::new(FakeModel::slow_when_prompt_contains("endless"))
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Redis,
    Upstash,
}

async fn open_store(kind: Kind, redis: &RedisServer, bridge: &Bridge) -> Arc<dyn RemoteStore> {
    match kind {
        Kind::Redis => Arc::new(
            RedisStore::connect(&redis.url(), Duration::from_secs(2))
                .await
                .unwrap(),
        ),
        Kind::Upstash => Arc::new(
            UpstashRestStore::connect(UpstashSettings {
                url: bridge.url.clone(),
                token: SecretString::from(TOKEN),
                timeout: Duration::from_secs(2),
                key_locking: false,
            })
            .await
            .unwrap(),
        ),
    }
}

async fn instance(store: Arc<dyn RemoteStore>, model: Arc<FakeModel>, prefix: &str) -> TestApp {
    let mut settings = Settings::default();
    settings.ratelimit.prefix = prefix.to_owned();
    settings.progress.cancel_check_ms = 100;
    let components =
        crate::support::app::local_components(model).on_remote_store(store, settings.recent.keep);
    spawn_app_on(settings, components)
}

async fn progress_of(app: &TestApp, job: &JobId) -> Option<JobProgress> {
    let response = app.get(&format!("/api/progress?job={job}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    serde_json::from_slice(&body_bytes(response).await).unwrap()
}

async fn remaining(app: &TestApp) -> u64 {
    let body: serde_json::Value =
        serde_json::from_slice(&body_bytes(app.get("/api/remaining").await).await).unwrap();
    body["remainingGenerations"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_started_on_one_instance_is_watched_and_cancelled_through_another() {
    let redis = RedisServer::start();
    let bridge = Bridge::start(&redis.url(), TOKEN).await;
    for kind in [Kind::Redis, Kind::Upstash] {
        let prefix = format!("progress-{kind:?}");
        let model = endless_model();
        let first = Arc::new(
            instance(
                open_store(kind, &redis, &bridge).await,
                model.clone(),
                &prefix,
            )
            .await,
        );
        let second = instance(
            open_store(kind, &redis, &bridge).await,
            model.clone(),
            &prefix,
        )
        .await;
        assert_eq!(remaining(&second).await, 5);

        let job = JobId::from_bytes(uuid::Uuid::new_v4().into_bytes());
        let running = {
            let (first, job) = (first.clone(), job.clone());
            tokio::spawn(async move {
                let body = format!("{}&job={job}", form_body("an endless night train"));
                let response = first.post_form("/api/generate", body).await;
                (response.status(), body_text(response).await)
            })
        };

        // The other instance sees the phases the first one reports.
        let mut seen = None;
        for _ in 0..200 {
            seen = progress_of(&second, &job).await;
            if seen.is_some_and(|p| {
                p.state
                    == JobState::Running(Phase::Generating {
                        percent: Some(FAKE_PERCENT),
                    })
            }) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let seen = seen.unwrap_or_else(|| panic!("{kind:?}: the job never showed up"));
        assert_eq!(
            seen.state,
            JobState::Running(Phase::Generating {
                percent: Some(FAKE_PERCENT)
            }),
            "{kind:?}"
        );
        assert_eq!(
            remaining(&second).await,
            4,
            "{kind:?}: the credit is spent while it runs"
        );

        // ...and cancels it.
        let cancelled = second.post_form("/api/cancel", format!("job={job}")).await;
        assert_eq!(cancelled.status(), StatusCode::OK, "{kind:?}");
        assert_eq!(body_text(cancelled).await, "true", "{kind:?}");

        let (status, body) = tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .unwrap_or_else(|_| panic!("{kind:?}: the cancel did not stop the generation"))
            .unwrap();
        assert_eq!(status, StatusCode::CONFLICT, "{kind:?}: {body}");
        assert!(body.contains("Canceled"), "{kind:?}: {body}");
        assert!(
            body.contains("the model had already started, so this one counted"),
            "{kind:?}: {body}"
        );
        assert!(model.stopped(), "{kind:?}: the model run was stopped");
        assert_eq!(
            remaining(&second).await,
            4,
            "{kind:?}: the model was processing (billed), so the credit stays spent"
        );
        assert_eq!(
            progress_of(&first, &job).await.map(|p| p.state),
            Some(JobState::Canceled),
            "{kind:?}"
        );
        // Cancelling again finds nothing running.
        let again = second.post_form("/api/cancel", format!("job={job}")).await;
        assert_eq!(body_text(again).await, "false", "{kind:?}");
        assert_eq!(model.calls(), 1, "{kind:?}");
    }
}

#[tokio::test]
async fn recent_images_are_shared_by_instances_and_survive_a_restart() {
    let redis = RedisServer::start();
    let bridge = Bridge::start(&redis.url(), TOKEN).await;
    let model = endless_model();
    let prefix = "recent-shared";
    let first = instance(
        open_store(Kind::Redis, &redis, &bridge).await,
        model.clone(),
        prefix,
    )
    .await;
    for n in 0..6 {
        let response = first.generate(&format!("harbour number {n}")).await;
        // The sixth is past the visitor's limit of 5: refused, and not listed.
        let expected = if n < 5 {
            StatusCode::OK
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(response.status(), expected, "{}", body_text(response).await);
    }
    // A new instance (a restart, or a second server behind the balancer), over REST.
    let second = instance(
        open_store(Kind::Upstash, &redis, &bridge).await,
        model,
        prefix,
    )
    .await;
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&body_bytes(second.get("/api/recent").await).await).unwrap();
    let prompts: Vec<&str> = listed
        .iter()
        .map(|i| i["prompt"].as_str().unwrap())
        .collect();
    assert_eq!(
        prompts,
        [
            "harbour number 4",
            "harbour number 3",
            "harbour number 2",
            "harbour number 1",
            "harbour number 0"
        ]
    );
    assert!(lofianime::wire::is_hex_id(
        listed[0]["id"].as_str().unwrap()
    ));
}

#[tokio::test]
async fn bad_generation_ids_get_a_clear_400_and_cost_nothing() {
    let model = endless_model();
    let app = spawn_app_on(
        Settings::default(),
        crate::support::app::local_components(model.clone()),
    );
    for bad in [
        "123",
        "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ",
        "../../../etc/passwd",
    ] {
        let encoded: String = url::form_urlencoded::byte_serialize(bad.as_bytes()).collect();
        let generate = app
            .post_form(
                "/api/generate",
                format!("{}&job={encoded}", form_body("a cat")),
            )
            .await;
        assert_eq!(generate.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            body_text(generate)
                .await
                .contains("32 lowercase hexadecimal digits"),
            "{bad}"
        );
        let progress = app.get(&format!("/api/progress?job={encoded}")).await;
        assert_eq!(progress.status(), StatusCode::BAD_REQUEST, "{bad}");
        let cancel = app.post_form("/api/cancel", format!("job={encoded}")).await;
        assert_eq!(cancel.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(model.calls(), 0);
    assert_eq!(remaining(&app).await, 5);
    // An id nobody used reads as nothing, and cancels nothing.
    let unknown = JobId::from_bytes([9; 16]);
    assert_eq!(progress_of(&app, &unknown).await, None);
    let cancel = app.post_form("/api/cancel", format!("job={unknown}")).await;
    assert_eq!(body_text(cancel).await, "false");
    // A reused id is refused before anything is spent.
    let body = format!("{}&job={unknown}", form_body("a cat"));
    assert_eq!(
        app.post_form("/api/generate", body.clone()).await.status(),
        StatusCode::OK
    );
    let reused = app.post_form("/api/generate", body).await;
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    assert!(body_text(reused).await.contains("already in use"));
    assert_eq!(remaining(&app).await, 4);
}

#[tokio::test]
async fn refused_requests_with_fresh_generation_ids_write_nothing_to_redis() {
    let redis = RedisServer::start();
    let bridge = Bridge::start(&redis.url(), TOKEN).await;
    let store = open_store(Kind::Redis, &redis, &bridge).await;
    let app = instance(store, endless_model(), "refused").await;
    for n in 0..5 {
        let body = format!("{}&job={:032x}", form_body("a cat"), n);
        assert_eq!(
            app.post_form("/api/generate", body).await.status(),
            StatusCode::OK
        );
    }
    let keys = redis.dbsize();
    let control_reads = || redis.calls_of("get") + redis.calls_of("smismember");
    let (commands, controls) = (redis.total_calls(), control_reads());
    let started = std::time::Instant::now();
    for n in 0..10_000u64 {
        let body = format!("{}&job={:032x}", form_body("a cat"), 1_000_000 + n);
        let response = app.post_form("/api/generate", body).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    let seconds = started.elapsed().as_secs() + 1;
    // The first refusal reaches Redis (one EVALSHA, and the INCRBY inside it,
    // which INFO counts too) and fills the block cache; every later one is
    // answered from memory. The owner's pause switch and deny list are read
    // by time, not by request (at most once a second, and every 2 s).
    let controls = control_reads() - controls;
    let spent = redis.total_calls() - commands - controls;
    assert!(spent <= 2, "{spent} Redis commands for 10,000 refusals");
    assert!(
        controls <= 2 * seconds + 2,
        "{controls} reads of the owner's controls in {seconds} s"
    );
    assert_eq!(redis.dbsize(), keys, "no job record for a refused request");
}
