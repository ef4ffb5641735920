//! What the owner is billed when a visitor stops a generation, settled by the
//! provider's own record of the run. The app runs against the Replicate
//! stand-in (`support::replicate_stand_in`), which records when each prediction
//! started processing and for how many seconds it was billed; every assertion
//! is on that record, and on what the visitor may still do.

use crate::support::app::{body_bytes, form_body, local_components, spawn_app_on, TestApp};
use crate::support::replicate_stand_in::{Model, ReplicateStandIn};

use axum::http::StatusCode;
use lofianime::server::settings::Settings;
use lofianime::wire::ApiError;
use std::sync::Arc;
use std::time::Duration;

const LIMIT: u64 = 5;

/// The app on the stand-in; `wait` is the create's `Prefer: wait` (zero: the
/// create answers at once with the prediction's id).
fn app(stand_in: &ReplicateStandIn, wait: Duration) -> TestApp {
    let generator = stand_in.generator(wait);
    let mut settings = Settings::default();
    settings.ratelimit.limit = LIMIT;
    settings.progress.cancel_check_ms = 50;
    // The test client is a proxy whose X-Forwarded-For names the visitor.
    crate::support::app::trust_the_test_client(&mut settings);
    spawn_app_on(settings, local_components(Arc::new(generator)))
}

async fn remaining(app: &TestApp) -> u64 {
    let body: serde_json::Value =
        serde_json::from_slice(&body_bytes(app.get("/api/remaining").await).await).unwrap();
    body["remainingGenerations"].as_u64().unwrap()
}

/// Sends a generation and leaves (drops the request, as a closed connection
/// does) after `after`; `Some(status)` when it was answered before that.
async fn generate_and_leave(app: &TestApp, after: Duration) -> Option<StatusCode> {
    tokio::time::timeout(after, app.generate("a quiet harbour"))
        .await
        .ok()
        .map(|response| response.status())
}

/// Waits until the stand-in's runs are over and the app has settled what they cost.
async fn settled(stand_in: &ReplicateStandIn) {
    stand_in.settle(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_who_leaves_while_the_create_is_held_open_pays_for_a_run_that_started() {
    // The create is held open for a second (Prefer: wait=1); the model starts
    // at once and runs for two: the visitor leaves while the app does not yet
    // know the prediction's id, after the provider started billing.
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(50),
        run: Duration::from_secs(2),
    })
    .await;
    let app = app(&stand_in, Duration::from_secs(1));
    let mut refused = 0;
    for _ in 0..7 {
        match generate_and_leave(&app, Duration::from_millis(600)).await {
            Some(StatusCode::TOO_MANY_REQUESTS) => refused += 1,
            Some(other) => panic!("answered {other} before the visitor left"),
            None => settled(&stand_in).await,
        }
    }
    let record = stand_in.record();
    assert_eq!(
        stand_in.processed(),
        LIMIT as usize,
        "at most the limit's runs reached processing: {record:?}"
    );
    assert!(
        record
            .iter()
            .all(|run| run.status == "canceled" && run.seconds > 0.0),
        "each was stopped, after the provider billed some of it: {record:?}"
    );
    assert_eq!(refused, 2, "the visitor's credits were spent, not refunded");
    assert_eq!(remaining(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_after_the_model_started_counts_and_says_so() {
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(50),
        run: Duration::from_secs(2),
    })
    .await;
    let app = Arc::new(app(&stand_in, Duration::from_secs(1)));
    let mut answers = Vec::new();
    for n in 0..7u32 {
        let job = format!("{:032x}", 0xabc0 + n);
        let running = {
            let (app, job) = (app.clone(), job.clone());
            tokio::spawn(async move {
                let body = format!("{}&job={job}", form_body("a rainy street"));
                app.generate_body(body, &[]).await
            })
        };
        tokio::time::sleep(Duration::from_millis(600)).await;
        app.post_form("/api/cancel", format!("job={job}")).await;
        let response = running.await.unwrap();
        let status = response.status();
        let error: ApiError = serde_json::from_slice(&body_bytes(response).await).unwrap();
        answers.push((status, error));
        settled(&stand_in).await;
    }
    assert_eq!(
        stand_in.processed(),
        LIMIT as usize,
        "{:?}",
        stand_in.record()
    );
    let counted = ApiError::Canceled {
        counted: true,
        model_started: true,
    };
    assert!(
        answers[..LIMIT as usize]
            .iter()
            .all(|(status, error)| *status == StatusCode::CONFLICT && *error == counted),
        "each cancel said it counted: {answers:?}"
    );
    assert!(
        answers[LIMIT as usize..]
            .iter()
            .all(|(status, _)| *status == StatusCode::TOO_MANY_REQUESTS),
        "{answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_before_the_model_starts_bills_nothing_and_gives_the_credit_back() {
    // The model starts processing two seconds after the create; the visitor
    // leaves at 0.8 s. With the prediction's id known at once, the cancel lands
    // before the provider starts billing.
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_secs(2),
        run: Duration::from_secs(1),
    })
    .await;
    let app = app(&stand_in, Duration::ZERO);
    for _ in 0..3 {
        assert_eq!(
            generate_and_leave(&app, Duration::from_millis(800)).await,
            None
        );
        settled(&stand_in).await;
    }
    let record = stand_in.record();
    assert_eq!(record.len(), 3, "{record:?}");
    assert!(
        record
            .iter()
            .all(|run| !run.processed && run.seconds == 0.0 && run.status == "canceled"),
        "nothing was billed: {record:?}"
    );
    assert_eq!(remaining(&app).await, LIMIT, "every credit came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_before_the_model_starts_is_not_counted() {
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_secs(2),
        run: Duration::from_secs(1),
    })
    .await;
    let app = Arc::new(app(&stand_in, Duration::ZERO));
    let job = format!("{:032x}", 0xdef0);
    let running = {
        let (app, job) = (app.clone(), job.clone());
        tokio::spawn(async move {
            let body = format!("{}&job={job}", form_body("a field at dawn"));
            app.generate_body(body, &[]).await
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    app.post_form("/api/cancel", format!("job={job}")).await;
    let response = running.await.unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let error: ApiError = serde_json::from_slice(&body_bytes(response).await).unwrap();
    assert_eq!(
        error,
        ApiError::Canceled {
            counted: false,
            model_started: false
        }
    );
    settled(&stand_in).await;
    let record = stand_in.record();
    assert!(
        record.len() == 1 && !record[0].processed && record[0].seconds == 0.0,
        "{record:?}"
    );
    assert_eq!(remaining(&app).await, LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_throttles_then_fails_reads_for_six_seconds_loses_no_run() {
    // 30 generations at once from 30 addresses; the provider throttles reads
    // for 3 s, then answers them 503 for 3 s more. Every run it finished is
    // delivered, none is cancelled and billed for nobody.
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(50),
        run: Duration::from_secs(1),
    })
    .await;
    let router = Arc::new(app(&stand_in, Duration::ZERO));
    stand_in.fail_reads(Duration::from_secs(3), Duration::from_secs(3));
    let mut running = Vec::new();
    for n in 0..30u8 {
        let app = router.clone();
        running.push(tokio::spawn(async move {
            app.generate_body(
                form_body(&format!("scene {n}")),
                &[("x-forwarded-for", &format!("203.0.113.{}", n + 1))],
            )
            .await
            .status()
        }));
    }
    let mut statuses = Vec::new();
    for generation in running {
        statuses.push(generation.await.unwrap());
    }
    assert!(
        stand_in.refused_reads() > 30,
        "the faults happened: {}",
        stand_in.refused_reads()
    );
    let record = stand_in.record();
    assert!(
        record.iter().all(|run| run.status == "succeeded"),
        "no run was cancelled: {record:?}"
    );
    let delivered = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(
        delivered,
        record.len(),
        "every finished run was delivered: {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_own_deadline_stops_a_run_nobody_is_left_to_stop() {
    // Cancel-After is what stops a run when no process of the app is left:
    // the stand-in honours it as Replicate does, and the run is billed for
    // its few seconds, not for the generation's whole deadline (20 s here).
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(20),
        run: Duration::from_secs(60),
    })
    .await;
    let generator =
        lofianime_domain::ReplicateGenerator::new(lofianime_domain::ReplicateSettings {
            cancel_after: Duration::from_secs(2),
            ..stand_in.settings(Duration::ZERO)
        })
        .unwrap();
    let prompt = lofianime::wire::prompt::Prompt::parse("a lighthouse", 500).unwrap();
    let result = lofianime_domain::ImageGenerator::generate(&generator, &prompt).await;
    assert!(result.is_err(), "the run was stopped");
    let record = stand_in.record();
    assert_eq!(record[0].status, "canceled", "{record:?}");
    assert!(
        record[0].seconds < 3.0,
        "billed {} s, not the deadline",
        record[0].seconds
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_generations_under_a_limit_of_sixty_reads_a_minute_lose_no_run() {
    // The account's reads limited to one a second for 30 generations at once:
    // every read beyond it is a 429 with Retry-After. Progress slows down;
    // every run the provider finished is delivered, none cancelled, none
    // billed for nobody.
    let stand_in = ReplicateStandIn::start(Model {
        boot: Duration::from_millis(50),
        run: Duration::from_secs(1),
    })
    .await;
    let generator =
        lofianime_domain::ReplicateGenerator::new(lofianime_domain::ReplicateSettings {
            // The model's default deadline: a minute and more of patience.
            deadline: Duration::from_secs(120),
            cancel_after: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            ..stand_in.settings(Duration::ZERO)
        })
        .unwrap();
    let mut settings = Settings::default();
    crate::support::app::trust_the_test_client(&mut settings);
    let router = Arc::new(spawn_app_on(
        settings,
        local_components(Arc::new(generator)),
    ));
    stand_in.limit_reads(60);
    let mut running = Vec::new();
    for n in 0..30u8 {
        let app = router.clone();
        running.push(tokio::spawn(async move {
            app.generate_body(
                form_body(&format!("scene {n}")),
                &[("x-forwarded-for", &format!("203.0.113.{}", n + 1))],
            )
            .await
            .status()
        }));
    }
    let mut statuses = Vec::new();
    for generation in running {
        statuses.push(generation.await.unwrap());
    }
    assert!(
        stand_in.refused_reads() > 30,
        "the limit bit: {}",
        stand_in.refused_reads()
    );
    let record = stand_in.record();
    assert_eq!(record.len(), 30);
    assert!(
        record.iter().all(|run| run.status == "succeeded"),
        "no run was cancelled: {record:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "every finished run was delivered: {statuses:?}"
    );
}
