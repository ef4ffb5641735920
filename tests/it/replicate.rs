//! The Replicate client against a local server speaking Replicate's HTTP API
//! (wiremock): every status a prediction can reach, every error the API sends,
//! the retry rules, cancellation and output handling.

use base64::Engine;
use lofianime::prompt::Prompt;
use lofianime_domain::{
    GeneratedImage, ImageFormat, ImageGenerator, ModelError, OfflineGenerator, ReplicateGenerator,
    ReplicateSettings,
};
use secrecy::SecretString;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "r8_test_token_never_logged";
const VERSION: &str = "563a66acc0b39e5308e8372bed42504731b7fec3bc21f2fcbea413398690f3ec";

fn settings(base: &str) -> ReplicateSettings {
    let Value::Object(input) =
        json!({ "width": 1024, "height": 1024, "scheduler": "K_EULER", "lora_scale": 0.6 })
    else {
        unreachable!()
    };
    ReplicateSettings {
        base_url: base.parse().unwrap(),
        token: SecretString::from(TOKEN),
        model: "doriandarko/sdxl-hiroshinagai".into(),
        version: VERSION.into(),
        prompt_prefix: "In the style of HISGH. ".into(),
        input,
        deadline: Duration::from_secs(5),
        cancel_after: Duration::from_secs(3),
        wait: Duration::from_secs(1),
        poll_interval: Duration::from_millis(50),
        max_image_bytes: 1_000_000,
        backoff: Duration::from_millis(10),
        limits: lofianime_domain::CallLimits::default(),
        webhooks: None,
    }
}

fn generator(server: &MockServer) -> ReplicateGenerator {
    ReplicateGenerator::new(settings(&server.uri())).unwrap()
}

fn prompt() -> Prompt {
    Prompt::parse("a quiet train station at dusk", 500).unwrap()
}

async fn png() -> Vec<u8> {
    OfflineGenerator::new(8, 8, Duration::ZERO)
        .generate(&prompt())
        .await
        .unwrap()
        .bytes
        .to_vec()
}

async fn data_uri() -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png().await)
    )
}

fn prediction(status: &str, output: Value) -> Value {
    json!({
        "id": "p1",
        "version": VERSION,
        "status": status,
        "output": output,
        "error": null,
        "urls": { "get": "https://api.replicate.com/v1/predictions/p1", "cancel": "https://api.replicate.com/v1/predictions/p1/cancel" }
    })
}

fn failed(error: &str) -> Value {
    let mut p = prediction("failed", Value::Null);
    p["error"] = json!(error);
    p
}

async fn on_create(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/v1/predictions"))
        .respond_with(response)
        .mount(server)
        .await;
}

async fn on_get(server: &MockServer, response: ResponseTemplate, times: Option<u64>) {
    let mock = Mock::given(method("GET"))
        .and(path("/v1/predictions/p1"))
        .respond_with(response);
    match times {
        Some(n) => mock.up_to_n_times(n).mount(server).await,
        None => mock.mount(server).await,
    }
}

async fn cancels(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/v1/predictions/p1/cancel")
        .count()
}

async fn requests_to(server: &MockServer, verb: &str, route: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == route)
        .collect()
}

fn problem(status: u16, title: &str, detail: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(
        json!({ "title": title, "detail": detail, "status": status }).to_string(),
        "application/problem+json",
    )
}

async fn mount_cancel(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/predictions/p1/cancel"))
        .respond_with(ResponseTemplate::new(200).set_body_json(prediction("canceled", Value::Null)))
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_synchronous_success_with_a_data_uri_gives_the_image() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/predictions"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("prefer", "wait=1"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(prediction("succeeded", json!([data_uri().await]))),
        )
        .expect(1)
        .mount(&server)
        .await;
    let image = generator(&server).generate(&prompt()).await.unwrap();
    assert_eq!(image.format, ImageFormat::Png);
    assert_eq!(image.bytes.to_vec(), png().await);

    let create = &requests_to(&server, "POST", "/v1/predictions").await[0];
    let body: Value = serde_json::from_slice(&create.body).unwrap();
    assert_eq!(body["version"], VERSION);
    assert_eq!(
        body["input"]["prompt"],
        "In the style of HISGH. a quiet train station at dusk"
    );
    assert_eq!(body["input"]["width"], 1024);
    assert_eq!(body["input"]["lora_scale"], 0.6);
    assert_eq!(
        create
            .headers
            .get("cancel-after")
            .map(|v| v.to_str().unwrap()),
        Some("3s"),
        "a server-side deadline is set: Cancel-After, not the whole deadline (5 s)"
    );
}

#[tokio::test]
async fn a_starting_prediction_is_polled_until_it_succeeds_and_its_url_is_fetched() {
    let server = MockServer::start().await;
    let output_url = format!("{}/files/out.png", server.uri());
    on_create(
        &server,
        ResponseTemplate::new(201).set_body_json(prediction("starting", Value::Null)),
    )
    .await;
    on_get(
        &server,
        ResponseTemplate::new(200).set_body_json(prediction("processing", json!([]))),
        Some(2),
    )
    .await;
    on_get(
        &server,
        ResponseTemplate::new(200).set_body_json(prediction("succeeded", json!([output_url]))),
        None,
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/files/out.png"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(png().await, "image/png"))
        .mount(&server)
        .await;
    let image = generator(&server).generate(&prompt()).await.unwrap();
    assert_eq!(image.bytes.to_vec(), png().await);
    assert_eq!(
        requests_to(&server, "GET", "/v1/predictions/p1")
            .await
            .len(),
        3
    );
    let file = &requests_to(&server, "GET", "/files/out.png").await[0];
    assert!(
        file.headers.get("authorization").is_none(),
        "the API token is not sent to file hosts"
    );
}

#[tokio::test]
async fn a_synchronous_answer_still_processing_without_output_falls_back_to_polling() {
    let server = MockServer::start().await;
    on_create(
        &server,
        ResponseTemplate::new(201).set_body_json(prediction("processing", json!([]))),
    )
    .await;
    on_get(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(prediction("succeeded", json!([data_uri().await]))),
        None,
    )
    .await;
    generator(&server).generate(&prompt()).await.unwrap();
    assert_eq!(
        requests_to(&server, "GET", "/v1/predictions/p1")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn processing_with_output_already_counts_as_done() {
    let server = MockServer::start().await;
    on_create(
        &server,
        ResponseTemplate::new(201)
            .set_body_json(prediction("processing", json!([data_uri().await]))),
    )
    .await;
    generator(&server).generate(&prompt()).await.unwrap();
    assert!(requests_to(&server, "GET", "/v1/predictions/p1")
        .await
        .is_empty());
}

#[tokio::test]
async fn terminal_failures_are_told_apart() {
    for (answer, check) in [
        (
            failed("CUDA out of memory. Tried to allocate 2.00 GiB"),
            (|e: &ModelError| matches!(e, ModelError::Failed(m) if m.contains("out of memory")))
                as fn(&ModelError) -> bool,
        ),
        (
            failed("NSFW content detected. Try running it again, or try a different prompt."),
            |e| matches!(e, ModelError::Unsafe(_)),
        ),
        (prediction("canceled", Value::Null), |e| {
            matches!(e, ModelError::Canceled)
        }),
        (prediction("aborted", Value::Null), |e| {
            matches!(e, ModelError::TimedOut)
        }),
        (prediction("succeeded", Value::Null), |e| {
            matches!(e, ModelError::BadOutput(_))
        }),
    ] {
        let server = MockServer::start().await;
        on_create(
            &server,
            ResponseTemplate::new(201).set_body_json(prediction("starting", Value::Null)),
        )
        .await;
        on_get(
            &server,
            ResponseTemplate::new(200).set_body_json(answer.clone()),
            None,
        )
        .await;
        let error = generator(&server).generate(&prompt()).await.unwrap_err();
        assert!(check(&error), "{answer} gave {error:?}");
        assert_eq!(
            cancels(&server).await,
            0,
            "nothing to cancel after a terminal state"
        );
    }
}

#[tokio::test]
async fn an_unknown_status_is_waited_out_not_a_crash() {
    let server = MockServer::start().await;
    on_create(
        &server,
        ResponseTemplate::new(201).set_body_json(prediction("warming-up", Value::Null)),
    )
    .await;
    on_get(
        &server,
        ResponseTemplate::new(200).set_body_json(prediction("queued-somewhere", Value::Null)),
        Some(2),
    )
    .await;
    on_get(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(prediction("succeeded", json!([data_uri().await]))),
        None,
    )
    .await;
    generator(&server).generate(&prompt()).await.unwrap();
}

#[tokio::test]
async fn past_the_deadline_the_prediction_is_cancelled() {
    let server = MockServer::start().await;
    on_create(
        &server,
        ResponseTemplate::new(201).set_body_json(prediction("starting", Value::Null)),
    )
    .await;
    on_get(
        &server,
        ResponseTemplate::new(200).set_body_json(prediction("processing", json!([]))),
        None,
    )
    .await;
    mount_cancel(&server).await;
    let mut short = settings(&server.uri());
    short.deadline = Duration::from_millis(800);
    let started = Instant::now();
    let error = ReplicateGenerator::new(short)
        .unwrap()
        .generate(&prompt())
        .await
        .unwrap_err();
    assert!(matches!(error, ModelError::TimedOut), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(cancels(&server).await, 1);
}

#[tokio::test]
async fn owner_problems_name_what_to_fix_and_never_the_token() {
    for (status, title, expected) in [
        (401, "Unauthenticated", "REPLICATE_API_TOKEN"),
        (402, "Insufficient credit", "billing"),
        (422, "Invalid version or not permitted", "model.version"),
    ] {
        let server = MockServer::start().await;
        on_create(&server, problem(status, title, "detail from Replicate")).await;
        let error = generator(&server).generate(&prompt()).await.unwrap_err();
        let ModelError::Owner(message) = &error else {
            panic!("{status}: {error:?}")
        };
        assert!(message.contains(expected), "{status}: {message}");
        assert!(message.contains(title), "{status}: {message}");
        assert!(!message.contains(TOKEN), "{status}: {message}");
        assert_eq!(
            requests_to(&server, "POST", "/v1/predictions").await.len(),
            1,
            "{status}: not retried"
        );
    }
}

#[tokio::test]
async fn throttling_honours_retry_after_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/predictions"))
        .respond_with(
            problem(
                429,
                "Request was throttled",
                "Expected available in 1 second.",
            )
            .insert_header("retry-after", "1"),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    on_create(
        &server,
        ResponseTemplate::new(201)
            .set_body_json(prediction("succeeded", json!([data_uri().await]))),
    )
    .await;
    let started = Instant::now();
    generator(&server).generate(&prompt()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(
        requests_to(&server, "POST", "/v1/predictions").await.len(),
        2
    );
}

#[tokio::test]
async fn persistent_throttling_says_when_to_come_back() {
    let server = MockServer::start().await;
    on_create(
        &server,
        ResponseTemplate::new(429).set_body_raw(
            r#"{"detail":"Request was throttled.","retry_after":30}"#,
            "application/json",
        ),
    )
    .await;
    let error = generator(&server).generate(&prompt()).await.unwrap_err();
    match error {
        ModelError::Busy { retry_after } => {
            assert_eq!(retry_after, Some(Duration::from_secs(30)))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        requests_to(&server, "POST", "/v1/predictions").await.len(),
        1,
        "30 s is past the deadline"
    );
}

#[tokio::test]
async fn server_errors_on_reads_are_retried() {
    let server = MockServer::start().await;
    on_create(
        &server,
        ResponseTemplate::new(201).set_body_json(prediction("starting", Value::Null)),
    )
    .await;
    on_get(&server, ResponseTemplate::new(500), Some(2)).await;
    on_get(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(prediction("succeeded", json!([data_uri().await]))),
        None,
    )
    .await;
    generator(&server).generate(&prompt()).await.unwrap();
    assert_eq!(
        requests_to(&server, "GET", "/v1/predictions/p1")
            .await
            .len(),
        3
    );
}

#[tokio::test]
async fn a_create_whose_connection_breaks_is_never_sent_twice() {
    // A server that reads the request and hangs up without answering: the
    // prediction may have started, so a retry could pay for a second one.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buffer = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buffer).await;
            drop(socket);
        }
    });
    let generator = ReplicateGenerator::new(settings(&format!("http://{address}"))).unwrap();
    let error = generator.generate(&prompt()).await.unwrap_err();
    assert!(
        matches!(error, ModelError::Unavailable(ref m) if m.contains("not retried")),
        "{error:?}"
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_create_refused_with_a_problem_body_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/predictions"))
        .respond_with(problem(503, "Service Unavailable", "try again"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    on_create(
        &server,
        ResponseTemplate::new(201)
            .set_body_json(prediction("succeeded", json!([data_uri().await]))),
    )
    .await;
    generator(&server).generate(&prompt()).await.unwrap();
    assert_eq!(
        requests_to(&server, "POST", "/v1/predictions").await.len(),
        2
    );
}

#[tokio::test]
async fn bad_outputs_are_rejected() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/files/expired.png"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/page.png"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("<html>not an image</html>", "text/html"),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/huge.png"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(vec![0x89u8; 2_000_000], "image/png"))
        .mount(&server)
        .await;
    let big_data_uri = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(vec![0u8; 2_000_000])
    );
    for output in [
        format!("{}/files/expired.png", server.uri()),
        format!("{}/files/page.png", server.uri()),
        format!("{}/files/huge.png", server.uri()),
        big_data_uri,
        "data:text/plain;base64,aGVsbG8=".to_owned(),
        "ftp://example.invalid/x.png".to_owned(),
    ] {
        let stand_in = MockServer::start().await;
        on_create(
            &stand_in,
            ResponseTemplate::new(201).set_body_json(prediction("succeeded", json!([output]))),
        )
        .await;
        let error = generator(&stand_in).generate(&prompt()).await.unwrap_err();
        assert!(
            matches!(error, ModelError::BadOutput(_)),
            "{}: {error:?}",
            &output[..output.len().min(60)]
        );
        if output.ends_with("expired.png") {
            // The file's host, not Replicate's API: nothing about the model version.
            let message = error.to_string();
            assert!(message.contains("expired"), "{message}");
            assert!(!message.contains("model.version"), "{message}");
        }
    }
}

#[tokio::test]
async fn a_visitor_who_leaves_gets_the_prediction_cancelled() {
    let server = MockServer::start().await;
    on_create(
        &server,
        ResponseTemplate::new(201).set_body_json(prediction("starting", Value::Null)),
    )
    .await;
    on_get(
        &server,
        ResponseTemplate::new(200).set_body_json(prediction("processing", json!([]))),
        None,
    )
    .await;
    mount_cancel(&server).await;
    let generator = Arc::new(generator(&server));
    let running = {
        let generator = generator.clone();
        tokio::spawn(async move {
            generator
                .generate(&prompt())
                .await
                .map(|_: GeneratedImage| ())
        })
    };
    // Let it create the prediction and poll a little, then drop it as a closed
    // connection would.
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.abort();
    let _ = running.await;
    let started = Instant::now();
    while cancels(&server).await == 0 && started.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cancels(&server).await, 1);
}

#[tokio::test]
async fn a_visitor_who_leaves_while_the_create_is_held_open_still_gets_it_cancelled() {
    let server = MockServer::start().await;
    // Prefer: wait holds the create for a while; the visitor is gone before it answers.
    on_create(
        &server,
        ResponseTemplate::new(201)
            .set_body_json(prediction("processing", json!([])))
            .set_delay(Duration::from_millis(600)),
    )
    .await;
    mount_cancel(&server).await;
    let generator = Arc::new(generator(&server));
    let running = {
        let generator = generator.clone();
        tokio::spawn(async move { generator.generate(&prompt()).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    running.abort();
    let _ = running.await;
    assert_eq!(cancels(&server).await, 0, "no id to cancel yet");
    let started = Instant::now();
    while cancels(&server).await == 0 && started.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        cancels(&server).await,
        1,
        "cancelled once the create answered"
    );
    assert_eq!(
        requests_to(&server, "GET", "/v1/predictions/p1")
            .await
            .len(),
        0
    );
}

#[tokio::test]
async fn the_phases_follow_the_prediction_and_its_progress_bar() {
    use lofianime::progress::Phase;
    use lofianime_domain::ProgressReporter;
    let server = MockServer::start().await;
    on_create(
        &server,
        ResponseTemplate::new(201).set_body_json(prediction("starting", Value::Null)),
    )
    .await;
    let mut drawing = prediction("processing", json!([]));
    drawing["logs"] = json!("Using seed: 1\n  4%|▍         | 2/50\n 62%|██████▏   | 31/50");
    on_get(
        &server,
        ResponseTemplate::new(200).set_body_json(prediction("starting", Value::Null)),
        Some(1),
    )
    .await;
    on_get(
        &server,
        ResponseTemplate::new(200).set_body_json(drawing),
        Some(1),
    )
    .await;
    on_get(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(prediction("succeeded", json!([data_uri().await]))),
        None,
    )
    .await;
    let (reporter, mut phases) = ProgressReporter::channel();
    let seen = tokio::spawn(async move {
        let mut seen = vec![*phases.borrow_and_update()];
        while phases.changed().await.is_ok() {
            seen.push(*phases.borrow_and_update());
        }
        seen
    });
    let image = generator(&server)
        .generate_with_progress(&prompt(), &reporter)
        .await
        .unwrap();
    assert_eq!(image.format, ImageFormat::Png);
    drop(reporter);
    let seen = seen.await.unwrap();
    for expected in [
        Phase::Starting,
        Phase::Generating { percent: Some(62) },
        Phase::Saving,
    ] {
        assert!(seen.contains(&expected), "{expected:?} in {seen:?}");
    }
    let at = |p: Phase| seen.iter().position(|s| *s == p).unwrap();
    assert!(at(Phase::Starting) < at(Phase::Generating { percent: Some(62) }));
    assert!(at(Phase::Generating { percent: Some(62) }) < at(Phase::Saving));
}

mod through_the_app {
    //! The same stand-in behind the whole app: what visitors see and pay.

    use super::*;
    use crate::support::app::*;
    use axum::http::StatusCode;

    use lofianime::server::settings::Settings;
    use lofianime::wire::{ApiError, CreatedImage};

    fn app_with(settings: ReplicateSettings) -> TestApp {
        let components = local_components(Arc::new(ReplicateGenerator::new(settings).unwrap()));
        spawn_app_on(Settings::default(), components)
    }

    async fn error_of(response: axum::http::Response<axum::body::Body>) -> ApiError {
        serde_json::from_slice(&body_bytes(response).await).unwrap()
    }

    #[tokio::test]
    async fn refunds_the_credit_when_the_model_fails() {
        let server = MockServer::start().await;
        on_create(
            &server,
            ResponseTemplate::new(201).set_body_json(failed("CUDA out of memory")),
        )
        .await;
        let app = app_with(settings(&server.uri()));
        let response = app.generate("a cat").await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            header_u64(&response, "x-ratelimit-remaining"),
            5,
            "the credit came back"
        );
        assert_eq!(
            error_of(response).await.to_string(),
            "An error occurred. Please try again later."
        );
    }

    #[tokio::test]
    async fn an_unsafe_image_is_explained_and_counts() {
        let server = MockServer::start().await;
        on_create(
            &server,
            ResponseTemplate::new(201).set_body_json(failed(
                "NSFW content detected. Try running it again, or try a different prompt.",
            )),
        )
        .await;
        let app = app_with(settings(&server.uri()));
        let response = app.generate("something").await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        // The model ran (and was billed) to find it unsafe: the generation counts.
        assert_eq!(header_u64(&response, "x-ratelimit-remaining"), 4);
        assert_eq!(
            error_of(response).await.to_string(),
            "The model flagged this image as unsafe. Try a different prompt."
        );
    }

    #[tokio::test]
    async fn a_slow_model_is_cancelled_at_the_deadline_and_refunded() {
        let server = MockServer::start().await;
        on_create(
            &server,
            ResponseTemplate::new(201).set_body_json(prediction("starting", Value::Null)),
        )
        .await;
        on_get(
            &server,
            ResponseTemplate::new(200).set_body_json(prediction("processing", json!([]))),
            None,
        )
        .await;
        mount_cancel(&server).await;
        let mut short = settings(&server.uri());
        short.deadline = Duration::from_millis(700);
        let app = app_with(short);
        let response = app.generate("a very slow picture").await;
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(header_u64(&response, "x-ratelimit-remaining"), 5);
        assert_eq!(error_of(response).await, ApiError::ModelTimedOut);
        assert_eq!(cancels(&server).await, 1);
    }

    #[tokio::test]
    async fn a_throttled_model_says_when_to_come_back() {
        let server = MockServer::start().await;
        on_create(
            &server,
            ResponseTemplate::new(429)
                .insert_header("retry-after", "30")
                .set_body_raw("{}", "application/json"),
        )
        .await;
        let app = app_with(settings(&server.uri()));
        let response = app.generate("busy").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header_str(&response, "retry-after"), "30");
        assert_eq!(
            error_of(response).await.to_string(),
            "The model is busy right now; try again in 30 s."
        );
    }

    #[tokio::test]
    async fn images_are_served_by_the_app_after_the_model_deletes_its_files() {
        let server = MockServer::start().await;
        let output_url = format!("{}/files/out.png", server.uri());
        on_create(
            &server,
            ResponseTemplate::new(201).set_body_json(prediction("succeeded", json!([output_url]))),
        )
        .await;
        Mock::given(method("GET"))
            .and(path("/files/out.png"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(png().await, "image/png"))
            .mount(&server)
            .await;
        let app = app_with(settings(&server.uri()));
        let response = app.generate("keep me").await;
        assert_eq!(response.status(), StatusCode::OK);
        let created: CreatedImage = serde_json::from_slice(&body_bytes(response).await).unwrap();
        assert!(
            created.image.url.starts_with("/images/"),
            "{}",
            created.image.url
        );

        // Replicate deletes API outputs after about an hour.
        server.reset().await;
        let gone = reqwest::get(format!("{}/files/out.png", server.uri()))
            .await
            .unwrap();
        assert_eq!(gone.status(), 404);

        let image = app.get(&created.image.url).await;
        assert_eq!(image.status(), StatusCode::OK);
        assert_eq!(body_bytes(image).await, png().await);
    }
}

#[test]
fn a_base_url_with_credentials_is_never_described_in_clear() {
    let generator =
        ReplicateGenerator::new(settings("https://owner:hunter2@replicate.internal:8443/"))
            .unwrap();
    let described = generator.describe();
    assert!(!described.contains("hunter2"), "{described}");
    assert!(!described.contains("owner"), "{described}");
    assert!(
        described.contains("https://replicate.internal:8443"),
        "{described}"
    );
}

#[tokio::test]
async fn a_shape_and_a_seed_go_to_the_model_as_its_inputs() {
    let server = MockServer::start().await;
    on_create(
        &server,
        ResponseTemplate::new(201)
            .set_body_json(prediction("succeeded", json!([data_uri().await]))),
    )
    .await;
    let look = lofianime_domain::Look {
        aspect: lofianime::shape::Aspect::Portrait,
        seed: 4_294_967_295,
    };
    let image = generator(&server)
        .generate_look(
            &prompt(),
            look,
            &lofianime_domain::ProgressReporter::unwatched(),
        )
        .await
        .unwrap();
    assert_eq!(image.seed, Some(4_294_967_295));
    let creates = requests_to(&server, "POST", "/v1/predictions").await;
    let body: Value = serde_json::from_slice(&creates[0].body).unwrap();
    let input = &body["input"];
    assert_eq!(input["width"], 896);
    assert_eq!(input["height"], 1152);
    assert_eq!(input["seed"], 4_294_967_295u32);
    // The owner's other inputs are kept.
    assert_eq!(input["lora_scale"], 0.6);
    assert_eq!(
        input["prompt"],
        "In the style of HISGH. a quiet train station at dusk"
    );
}
