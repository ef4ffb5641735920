//! Coming back to a generation in progress: a page's generation goes on for
//! `progress.return_grace_secs` once its request is gone (a reload, a closed
//! tab), and for as long as a page follows it; a browser without JavaScript
//! waits on `/making/{job}`. Every assertion about money is on the Replicate
//! stand-in's own record of the run (did it process, for how many seconds,
//! how it ended).

use crate::support::app::{
    body_bytes, body_text, form_body, header_str, local_components, spawn_app_on, TestApp,
};
use crate::support::replicate_stand_in::{Model, ReplicateStandIn};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use lofianime::server::settings::Settings;
use lofianime::wire::{ApiError, CreatedImage};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LIMIT: u64 = 5;
const STRANGER: (&str, &str) = ("x-forwarded-for", "198.51.100.9");

fn app(stand_in: &ReplicateStandIn, grace_secs: u64) -> TestApp {
    let generator = stand_in.generator(Duration::ZERO);
    let mut settings = Settings::default();
    settings.ratelimit.limit = LIMIT;
    settings.progress.cancel_check_ms = 50;
    settings.progress.return_grace_secs = grace_secs;
    // The test client is a proxy whose X-Forwarded-For names the visitor.
    crate::support::app::trust_the_test_client(&mut settings);
    spawn_app_on(settings, local_components(Arc::new(generator)))
}

async fn remaining(app: &TestApp) -> u64 {
    let body: serde_json::Value =
        serde_json::from_slice(&body_bytes(app.get("/api/remaining").await).await).unwrap();
    body["remainingGenerations"].as_u64().unwrap()
}

fn with_job(prompt: &str, job: &str) -> String {
    format!("{}&job={job}", form_body(prompt))
}

/// Sends the page's generation `job` and leaves after `after` (a reload).
async fn send_and_leave(app: &TestApp, prompt: &str, job: &str, after: Duration) {
    let answered = tokio::time::timeout(after, app.generate_body(with_job(prompt, job), &[])).await;
    assert!(answered.is_err(), "answered before the page left");
}

async fn get_as(app: &TestApp, uri: &str, extra: &[(&str, &str)]) -> axum::http::Response<Body> {
    let mut request = Request::get(uri);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    app.send(request.body(Body::empty()).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_page_comes_back_to_its_generation_and_gets_the_image() {
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(200),
        run: Duration::from_secs(2),
    })
    .await;
    let app = app(&stand_in, 5);
    let job = "00112233445566778899aabbccddeeff";
    send_and_leave(&app, "a harbour at dusk", job, Duration::from_millis(600)).await;

    // The reloaded page asks what is still running: this one, and only for
    // this visitor.
    let listed: serde_json::Value =
        serde_json::from_slice(&body_bytes(app.get("/api/running").await).await).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["job"], job);
    assert_eq!(listed[0]["prompt"], "a harbour at dusk");
    let phase = listed[0]["phase"].as_str().unwrap();
    assert!(
        ["waiting", "starting", "generating"].contains(&phase),
        "{listed}"
    );
    let theirs = get_as(&app, "/api/running", &[STRANGER]).await;
    assert_eq!(theirs.status(), StatusCode::OK);
    assert_eq!(body_text(theirs).await, "[]");
    // Another visitor sending the same id follows nothing and spends nothing.
    let forged = app
        .generate_body(with_job("a harbour at dusk", job), &[STRANGER])
        .await;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    let error: ApiError = serde_json::from_slice(&body_bytes(forged).await).unwrap();
    assert_eq!(error, ApiError::JobIdTaken);

    // The page follows it by sending the same id: the run goes on to its image.
    let followed = app.generate_body(format!("job={job}"), &[]).await;
    assert_eq!(followed.status(), StatusCode::OK);
    let created: CreatedImage = serde_json::from_slice(&body_bytes(followed).await).unwrap();
    assert_eq!(created.image.prompt, "a harbour at dusk");
    assert_eq!(created.quota.unwrap().remaining, LIMIT - 1);
    assert_eq!(created.recent[0].id, created.image.id);

    stand_in.settle(Duration::from_secs(10)).await;
    let record = stand_in.record();
    assert_eq!(record.len(), 1, "one run, not two: {record:?}");
    assert_eq!(record[0].status, "succeeded", "{record:?}");
    assert!(record[0].seconds >= 1.9, "it ran to its end: {record:?}");
    assert_eq!(remaining(&app).await, LIMIT - 1, "counted once");
    assert_eq!(remaining(&app).await, LIMIT - 1);
    assert_eq!(body_text(app.get("/api/running").await).await, "[]");
    // Following it again later answers the same image, for nothing.
    let again = app.generate_body(format!("job={job}"), &[]).await;
    let again: CreatedImage = serde_json::from_slice(&body_bytes(again).await).unwrap();
    assert_eq!(again.image.id, created.image.id);
    assert_eq!(stand_in.record().len(), 1);
    assert_eq!(remaining(&app).await, LIMIT - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_does_not_come_back_gets_its_run_stopped_after_the_grace_period() {
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(100),
        run: Duration::from_secs(6),
    })
    .await;
    let app = app(&stand_in, 1);
    let left = Instant::now();
    send_and_leave(
        &app,
        "a lighthouse",
        "ffeeddccbbaa99887766554433221100",
        Duration::from_millis(500),
    )
    .await;
    stand_in.settle(Duration::from_secs(10)).await;
    let stopped_after = left.elapsed();
    let record = stand_in.record();
    assert_eq!(record.len(), 1, "{record:?}");
    assert_eq!(record[0].status, "canceled", "{record:?}");
    // Billed from its start to the cancel: the page's half second, the
    // one-second grace and a check, far from the run's six seconds.
    assert!(
        record[0].seconds > 1.0 && record[0].seconds < 3.0,
        "{record:?}"
    );
    assert!(stopped_after < Duration::from_secs(4), "{stopped_after:?}");
    // It started, so it was billed: the credit stays spent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(remaining(&app).await, LIMIT - 1);
}

/// A form post without JavaScript.
async fn post_without_js(app: &TestApp, path: &str, body: String) -> axum::http::Response<Body> {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
        .body(Body::from(body))
        .unwrap();
    app.send(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_javascript_the_form_lands_on_a_waiting_page_that_ends_on_the_image() {
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(100),
        run: Duration::from_secs(3),
    })
    .await;
    let app = app(&stand_in, 5);
    let started = Instant::now();
    let response = post_without_js(&app, "/api/generate", form_body("a tram in the rain")).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = header_str(&response, "location").to_owned();
    let job = location
        .strip_prefix("/making/")
        .unwrap_or_else(|| panic!("the waiting page, not {location}"))
        .to_owned();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "not held for the run"
    );

    // The waiting page: the prompt, the phase, Cancel, and a refresh.
    let page = app.get(&location).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(header_str(&page, "cache-control"), "private, no-store");
    let html = body_text(page).await;
    assert!(html.contains("a tram in the rain"), "{html}");
    assert!(
        html.contains(r#"http-equiv="refresh" content="2""#),
        "{html}"
    );
    assert!(html.contains(r#"action="/api/cancel""#), "{html}");
    assert!(html.contains(&job), "{html}");
    // Someone else's browser sees no such page.
    assert_eq!(
        get_as(&app, &location, &[STRANGER]).await.status(),
        StatusCode::NOT_FOUND
    );

    // Refreshed as the browser does, until it goes to the image.
    let image_page = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let page = app.get(&location).await;
        if page.status() == StatusCode::SEE_OTHER {
            break header_str(&page, "location").to_owned();
        }
        assert_eq!(page.status(), StatusCode::OK);
        if started.elapsed() > Duration::from_secs(15) {
            panic!("never ended: {}", body_text(app.get(&location).await).await);
        }
    };
    let id = image_page.strip_prefix("/i/").expect("the image's page");
    assert!(lofianime::wire::is_hex_id(id), "{image_page}");
    assert_eq!(app.get(&image_page).await.status(), StatusCode::OK);
    let record = stand_in.record();
    assert_eq!(record.len(), 1, "{record:?}");
    assert_eq!(record[0].status, "succeeded", "{record:?}");
    assert_eq!(remaining(&app).await, LIMIT - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiting_pages_cancel_stops_the_run_and_says_how_it_counted() {
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_secs(30),
        run: Duration::from_secs(1),
    })
    .await;
    let app = app(&stand_in, 5);
    let response = post_without_js(&app, "/api/generate", form_body("a snowy shrine")).await;
    let location = header_str(&response, "location").to_owned();
    let job = location.strip_prefix("/making/").unwrap().to_owned();
    let cancelled = post_without_js(&app, "/api/cancel", format!("job={job}")).await;
    assert_eq!(cancelled.status(), StatusCode::FOUND);
    assert_eq!(header_str(&cancelled, "location"), location);
    stand_in.settle(Duration::from_secs(10)).await;
    let html = loop {
        let html = body_text(app.get(&location).await).await;
        if !html.contains("http-equiv=\"refresh\"") {
            break html;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        html.contains("Cancelled before the model started: not counted."),
        "{html}"
    );
    assert!(html.contains("Try again"), "{html}");
    let record = stand_in.record();
    assert_eq!(record.len(), 1, "{record:?}");
    assert_eq!(record[0].status, "canceled");
    assert!(!record[0].processed, "never billed: {record:?}");
    assert_eq!(remaining(&app).await, LIMIT, "the credit came back");
}

#[tokio::test]
async fn waiting_pages_of_bad_or_unknown_generations_are_404s() {
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(10),
        run: Duration::from_millis(10),
    })
    .await;
    let app = app(&stand_in, 5);
    for path in [
        "/making/0123456789abcdef0123456789abcdef",
        "/making/not-a-job",
        "/making/..%2F..%2Fetc",
    ] {
        let page = app.get(path).await;
        assert_eq!(page.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(
            body_text(page).await.contains("No such generation."),
            "{path}"
        );
    }
    assert!(stand_in.record().is_empty());
    assert_eq!(remaining(&app).await, LIMIT);
}
