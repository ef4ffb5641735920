//! SIGTERM during a generation, on the real server binary against a local
//! server speaking Replicate's API (wiremock): with a grace period long enough
//! the image is delivered; with a short one the prediction is cancelled at the
//! stand-in, the visitor's credit is back in Redis and the process exits 0.

use crate::support::process::AppProcess;
use crate::support::redis_server::RedisServer;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "r8_shutdown_test_token";

fn prediction(status: &str, output: Value) -> Value {
    json!({
        "id": "p1",
        "status": status,
        "output": output,
        "error": null,
        "urls": { "get": "https://api.replicate.com/v1/predictions/p1" }
    })
}

/// A stand-in whose model draws for `model_time` after the create.
async fn stand_in(model_time: Duration) -> MockServer {
    let server = MockServer::start().await;
    let created = Arc::new(Mutex::new(None::<Instant>));
    let png = {
        let image = image::RgbImage::from_pixel(8, 8, image::Rgb([200, 120, 160]));
        let mut bytes = Vec::new();
        image
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .unwrap();
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    };
    let on_create = created.clone();
    Mock::given(method("POST"))
        .and(path("/v1/predictions"))
        .respond_with(move |_: &Request| {
            *on_create.lock().unwrap() = Some(Instant::now());
            ResponseTemplate::new(201).set_body_json(prediction("processing", json!(null)))
        })
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/predictions/p1"))
        .respond_with(move |_: &Request| {
            let since = created.lock().unwrap().map(|at| at.elapsed());
            match since {
                Some(elapsed) if elapsed >= model_time => ResponseTemplate::new(200)
                    .set_body_json(prediction("succeeded", json!([png.clone()]))),
                _ => {
                    ResponseTemplate::new(200).set_body_json(prediction("processing", json!(null)))
                }
            }
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/predictions/p1/cancel"))
        .respond_with(ResponseTemplate::new(200).set_body_json(prediction("canceled", json!(null))))
        .mount(&server)
        .await;
    server
}

async fn cancels(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/predictions/p1/cancel")
        .count()
}

fn env(server: &MockServer, redis: &RedisServer, grace_secs: u64) -> Vec<(&'static str, String)> {
    vec![
        ("REPLICATE_API_TOKEN", TOKEN.into()),
        ("REPLICATE_BASE_URL", server.uri()),
        ("REDIS_URL", redis.url()),
        ("LOFIANIME_MODEL__POLL_INTERVAL_MS", "100".into()),
        ("LOFIANIME_MODEL__WAIT_SECS", "1".into()),
        ("LOFIANIME_SHUTDOWN__GRACE_SECS", grace_secs.to_string()),
    ]
}

/// Starts one generation through the JSON API; its status, `Retry-After` and body.
fn generate(app: &AppProcess) -> tokio::task::JoinHandle<(u16, Option<String>, String)> {
    let url = app.url("/api/ai");
    tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(url)
            .body(r#"{"prompt": "a harbour at the end of a shift"}"#)
            .send()
            .await
            .unwrap();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().to_owned());
        (
            response.status().as_u16(),
            retry_after,
            response.text().await.unwrap(),
        )
    })
}

async fn remaining(redis: &RedisServer) -> u64 {
    let server = stand_in(Duration::from_secs(60)).await;
    let app = AppProcess::start(&env(&server, redis, 30)).await;
    app.get_json("/api/remaining").await["remainingGenerations"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn with_grace_enough_a_generation_in_flight_is_delivered_before_exit() {
    let redis = RedisServer::start();
    let server = stand_in(Duration::from_millis(1500)).await;
    let mut app = AppProcess::start(&env(&server, &redis, 20)).await;
    let running = generate(&app);
    tokio::time::sleep(Duration::from_millis(400)).await;
    app.terminate();
    let (status, _, body) = running.await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", app.output());
    assert!(body.contains("/images/"), "{body}");
    let exit = app.wait(Duration::from_secs(10)).await.expect("it exits");
    assert!(exit.success(), "{exit}: {}", app.output());
    assert_eq!(cancels(&server).await, 0);
    assert_eq!(remaining(&redis).await, 4, "the delivered image counts");
}

#[tokio::test]
async fn past_a_short_grace_the_run_is_cancelled_and_the_credit_given_back() {
    let redis = RedisServer::start();
    let server = stand_in(Duration::from_secs(60)).await;
    let mut app = AppProcess::start(&env(&server, &redis, 1)).await;
    let running = generate(&app);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let signalled = Instant::now();
    app.terminate();
    let (status, retry_after, body) = running.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("5"), "try again in a moment");
    assert!(body.contains("The server is restarting"), "{body}");
    let exit = app
        .wait(Duration::from_secs(1 + 5))
        .await
        .expect("exits within grace + 5 s");
    assert!(exit.success(), "{exit}: {}", app.output());
    assert!(signalled.elapsed() < Duration::from_secs(6));
    assert_eq!(cancels(&server).await, 1, "the stand-in saw the cancel");
    assert_eq!(remaining(&redis).await, 5, "the credit is back in Redis");
    assert!(!app.output().contains(TOKEN));
}

#[tokio::test]
async fn a_draining_server_accepts_no_new_connections_and_exits_when_idle() {
    let redis = RedisServer::start();
    let server = stand_in(Duration::from_secs(60)).await;
    let mut app = AppProcess::start(&env(&server, &redis, 30)).await;
    app.terminate();
    let exit = app
        .wait(Duration::from_secs(5))
        .await
        .expect("exits at once when idle");
    assert!(exit.success());
    assert!(
        reqwest::get(app.url("/healthz")).await.is_err(),
        "no longer listening"
    );
}
