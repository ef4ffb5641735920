//! What happens when the limiter's Redis goes away while the app runs: by default
//! visitors get 503 and no model call is made; when Redis returns, the app
//! recovers by itself. The owner can choose fail-open instead.

use crate::support::app::*;
use crate::support::redis_server::RedisServer;
use crate::support::upstash_bridge::Bridge;
use axum::http::StatusCode;
use lofianime::server::settings::Settings;
use lofianime::wire::ApiError;
use lofianime_domain::testing::FakeModel;
use lofianime_domain::FailurePolicy;
use lofianime_domain::LimiterStore;
use lofianime_domain::{RedisStore, UpstashRestStore, UpstashSettings};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_millis(500);

fn app_on(store: Arc<dyn LimiterStore>, settings: Settings) -> (TestApp, Arc<FakeModel>) {
    let generator = Arc::new(FakeModel::default());
    let components =
        crate::support::app::local_components(generator.clone()).with_limiter_store(store);
    (spawn_app_on(settings, components), generator)
}

/// Asks until the app answers 200 (Redis is back), for at most 15 s.
async fn until_ok(app: &TestApp) -> Duration {
    let started = Instant::now();
    loop {
        let response = app.generate("are you back?").await;
        if response.status() == StatusCode::OK {
            return started.elapsed();
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the app did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fails_closed_and_recovers(redis: &mut RedisServer, app: &TestApp, generator: &FakeModel) {
    assert_eq!(app.generate("before").await.status(), StatusCode::OK);
    assert_eq!(generator.calls(), 1);

    redis.stop();
    for _ in 0..3 {
        let response = app.generate("during").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let error: ApiError = serde_json::from_slice(&body_bytes(response).await).unwrap();
        assert_eq!(error, ApiError::LimiterUnavailable);
        assert_eq!(
            error.to_string(),
            "Rate limiter unavailable, please try again shortly."
        );
    }
    assert_eq!(
        generator.calls(),
        1,
        "no model call while the limiter is down"
    );

    redis.restart();
    until_ok(app).await;
    assert_eq!(generator.calls(), 2);
}

#[tokio::test]
async fn redis_going_away_means_503_and_no_generation_until_it_returns() {
    let mut redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), TIMEOUT).await.unwrap();
    let (app, generator) = app_on(Arc::new(store), Settings::default());
    fails_closed_and_recovers(&mut redis, &app, &generator).await;
}

#[tokio::test]
async fn the_upstash_store_fails_closed_and_recovers_too() {
    let mut redis = RedisServer::start();
    let bridge = Bridge::start(&redis.url(), "t").await;
    let store = UpstashRestStore::connect(UpstashSettings {
        url: bridge.url.clone(),
        token: SecretString::from("t"),
        timeout: TIMEOUT,
        key_locking: false,
    })
    .await
    .unwrap();
    let (app, generator) = app_on(Arc::new(store), Settings::default());
    fails_closed_and_recovers(&mut redis, &app, &generator).await;
}

#[tokio::test]
async fn fail_open_generates_uncounted_while_the_store_is_down() {
    let mut redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), TIMEOUT).await.unwrap();
    let mut settings = Settings::default();
    settings.ratelimit.on_store_failure = FailurePolicy::Allow;
    let (app, generator) = app_on(Arc::new(store), settings);
    redis.stop();
    let response = app.generate("anyway").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers().get("x-ratelimit-remaining").is_none(),
        "nothing was counted"
    );
    assert_eq!(generator.calls(), 1);
}

#[tokio::test]
async fn counts_survive_an_app_restart_when_redis_keeps_them() {
    let redis = RedisServer::start();
    let mut settings = Settings::default();
    settings.ratelimit.limit = 2;
    for expected in [1, 0] {
        // A new app (new connection, empty block cache) each time, as after a restart.
        let store = RedisStore::connect(&redis.url(), TIMEOUT).await.unwrap();
        let (app, _) = app_on(Arc::new(store), settings.clone());
        let response = app.generate("hello").await;
        assert_eq!(header_u64(&response, "x-ratelimit-remaining"), expected);
    }
    let store = RedisStore::connect(&redis.url(), TIMEOUT).await.unwrap();
    let (app, generator) = app_on(Arc::new(store), settings);
    assert_eq!(
        app.generate("hello").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(generator.calls(), 0);
}

#[tokio::test]
async fn progress_cancel_and_recent_images_say_what_failed_when_the_store_is_down() {
    let mut redis = RedisServer::start();
    let store = Arc::new(RedisStore::connect(&redis.url(), TIMEOUT).await.unwrap());
    let settings = Settings::default();
    let components = crate::support::app::local_components(Arc::new(FakeModel::default()))
        .on_remote_store(store, settings.recent.keep);
    let app = spawn_app_on(settings, components);
    redis.stop();
    let job = "0123456789abcdef0123456789abcdef";
    let cancel = axum::http::Request::post("/api/cancel")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(axum::body::Body::from(format!("job={job}")))
        .unwrap();
    for (response, kind, sentence) in [
        (
            app.get(&format!("/api/progress?job={job}")).await,
            "JobBoardUnavailable",
            "The generation's progress cannot be reached right now",
        ),
        (
            app.send(cancel).await,
            "JobBoardUnavailable",
            "The generation's progress cannot be reached right now",
        ),
        (
            app.get("/api/recent").await,
            "RecentImagesUnavailable",
            "Your recent images cannot be loaded right now",
        ),
    ] {
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{kind}");
        let json: serde_json::Value = serde_json::from_slice(&body_bytes(response).await).unwrap();
        assert_eq!(json["kind"], kind, "{json}");
        let message = json["message"].as_str().unwrap();
        assert!(message.starts_with(sentence), "{message}");
        assert!(!message.contains("Rate limiter"), "{message}");
    }
}

#[tokio::test]
async fn requests_that_timed_out_on_a_frozen_redis_are_not_counted_when_it_resumes() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), TIMEOUT).await.unwrap();
    let (app, generator) = app_on(Arc::new(store), Settings::default());
    assert_eq!(app.generate("before").await.status(), StatusCode::OK);

    redis.freeze();
    for _ in 0..4 {
        assert_eq!(
            app.generate("while frozen").await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    redis.thaw();
    // Redis now runs the spends it had queued; the app gives them back as soon
    // as it sees the store answer again.
    let recovered = until_ok(&app).await;
    assert!(recovered < Duration::from_secs(15));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let response = app.get("/api/remaining").await;
    let json: serde_json::Value = serde_json::from_slice(&body_bytes(response).await).unwrap();
    assert_eq!(
        json["remainingGenerations"], 3,
        "two generations made; the four refused during the freeze cost nothing"
    );
    assert_eq!(generator.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_store_that_cannot_be_written_stops_the_spending() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let model = Arc::new(FakeModel::default());
    let components = lofianime_domain::Components::local(
        model.clone(),
        lofianime_domain::ObjectImageStore::local_dir(&images).unwrap(),
        Arc::new(lofianime_domain::SystemClock),
        12,
    );
    let app = spawn_app_on(Settings::default(), components);
    assert_eq!(app.generate("a harbour").await.status(), StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    // Its thumbnail is written right after the answer: once it is there,
    // nothing writes to the directory.
    let started = Instant::now();
    while !std::fs::read_dir(&images)
        .unwrap()
        .flatten()
        .any(|file| file.file_name().to_string_lossy().ends_with("-thumb.webp"))
        && started.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The disk goes away under the app: where the directory was, a file.
    std::fs::remove_dir_all(&images).unwrap();
    std::fs::write(&images, b"not a directory").unwrap();
    // Within the probe's few seconds readiness knows, and so do generations
    // (one admitted in between, its run paid for, tries to save its image for
    // a while before it is refunded: `storage.rs`'s tests).
    let started = Instant::now();
    while app.get("/readyz").await.status() == StatusCode::OK
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let response = app.generate("a lighthouse").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header_str(&response, "retry-after"), "5");
    let error: ApiError = serde_json::from_slice(&body_bytes(response).await).unwrap();
    assert_eq!(error, ApiError::ImagesUnavailable);
    let remaining = async || {
        let body: serde_json::Value =
            serde_json::from_slice(&body_bytes(app.get("/api/remaining").await).await).unwrap();
        body["remainingGenerations"].as_u64()
    };
    let left = remaining().await;
    let calls = model.calls();
    for _ in 0..3 {
        assert_eq!(
            app.generate("a field").await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(
        model.calls(),
        calls,
        "no model run is paid for while images cannot be kept"
    );
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(body_text(ready).await.contains("image store"));
    assert_eq!(
        remaining().await,
        left,
        "a refused generation takes nothing"
    );
}

#[tokio::test]
async fn an_image_delivered_while_the_store_is_down_reaches_the_recent_list_when_it_returns() {
    // Fail-open, everything in one real Redis: while it is stopped an image
    // is still made and delivered; its entry in the visitor's recent images
    // waits in the process and is added once Redis answers again.
    let mut redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), TIMEOUT).await.unwrap();
    let mut settings = Settings::default();
    settings.ratelimit.on_store_failure = FailurePolicy::Allow;
    let generator = Arc::new(FakeModel::default());
    let components = crate::support::app::local_components(generator.clone())
        .on_remote_store(Arc::new(store), 12);
    let app = spawn_app_on(settings, components);
    redis.stop();
    let response = app.generate("a harbour in the rain").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        app.get("/api/recent").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    redis.restart();
    let started = Instant::now();
    let listed = loop {
        let response = app.get("/api/recent").await;
        if response.status() == StatusCode::OK {
            break body_text(response).await;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(listed.contains("a harbour in the rain"), "{listed}");
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (the CI runs as root)"
        );
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_turns_readiness_off_and_stops_the_spending() {
    let disk = Tmpfs::mount("4m");
    let images = disk.0.path().join("images");
    let model = Arc::new(FakeModel::default());
    let components = lofianime_domain::Components::local(
        model.clone(),
        lofianime_domain::ObjectImageStore::local_dir(&images).unwrap(),
        Arc::new(lofianime_domain::SystemClock),
        12,
    );
    let app = spawn_app_on(Settings::default(), components);
    assert_eq!(app.generate("a harbour").await.status(), StatusCode::OK);
    // The disk fills up (another program's file).
    let mut filler = std::fs::File::create(disk.0.path().join("filler")).unwrap();
    let block = vec![7u8; 64 * 1024];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    drop(filler);
    let started = Instant::now();
    while app.get("/readyz").await.status() == StatusCode::OK
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(body_text(ready).await.contains("image store"));
    let calls = model.calls();
    for _ in 0..3 {
        let response = app.generate("a lighthouse").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let error: ApiError = serde_json::from_slice(&body_bytes(response).await).unwrap();
        assert_eq!(error, ApiError::ImagesUnavailable);
    }
    assert_eq!(model.calls(), calls, "no model run while the disk is full");
    // Room again: generations resume.
    std::fs::remove_file(disk.0.path().join("filler")).unwrap();
    tokio::time::sleep(Duration::from_millis(3_500)).await; // past the last probe
    assert_eq!(app.generate("a field").await.status(), StatusCode::OK);
}
