//! Several instances, one truth: real server processes on one `redis-server`
//! and one S3 bucket (`moto_server`), as an owner runs them behind a load
//! balancer; the start-up checks of the bucket; the health endpoints.

use crate::support::process::AppProcess;
use crate::support::redis_server::RedisServer;
use crate::support::s3_server::S3Server;
use std::time::Duration;

fn s3_env(s3: &S3Server, url: &str) -> Vec<(&'static str, String)> {
    let mut env = s3.env();
    env.push(("LOFIANIME_STORAGE__URL", url.to_owned()));
    env
}

#[tokio::test]
async fn an_image_made_by_one_instance_is_served_and_listed_by_another() {
    let redis = RedisServer::start();
    let s3 = S3Server::start();
    s3.create_bucket("pictures").await;
    let mut env = s3_env(&s3, "s3://pictures/lofianime");
    env.push(("REDIS_URL", redis.url()));
    let a = AppProcess::start(&env).await;
    let b = AppProcess::start(&env).await;
    assert!(
        a.output()
            .contains("S3 bucket s3://pictures/lofianime at http://127.0.0.1"),
        "the start-up log names the storage: {}",
        a.output()
    );

    let client = reqwest::Client::new();
    let made: Vec<String> = client
        .post(a.url("/api/ai"))
        .body(r#"{"prompt": "a harbour seen from two places"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let original = made[0].clone();
    let from_a = client.get(a.url(&original)).send().await.unwrap();
    let from_a = from_a.bytes().await.unwrap();
    let from_b = client.get(b.url(&original)).send().await.unwrap();
    assert_eq!(from_b.status(), 200);
    assert_eq!(from_b.bytes().await.unwrap(), from_a, "byte for byte");
    let id = original
        .trim_start_matches("/images/")
        .trim_end_matches(".png");
    for variant in ["display", "thumb"] {
        let response = client
            .get(b.url(&format!("/images/{id}-{variant}.webp")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{variant}");
    }
    // The same visitor (this loopback address) sees it in B's list.
    let listed = b.get_json("/api/recent").await;
    assert_eq!(listed[0]["id"], id, "{listed}");
    // B's image page knows it too.
    let page = client.get(b.url(&format!("/i/{id}"))).send().await.unwrap();
    assert_eq!(page.status(), 200);
    // Everything is in the bucket, under the prefix; nothing on A's disk.
    let keys = s3.keys("pictures").await;
    for name in [
        format!("lofianime/{id}.png"),
        format!("lofianime/{id}.json"),
        format!("lofianime/{id}-display.webp"),
        format!("lofianime/{id}-thumb.webp"),
    ] {
        assert!(keys.contains(&name), "{name} in {keys:?}");
    }
    assert!(!a.dir().join("data").exists(), "A kept nothing on its disk");
    // The secret never reaches the logs.
    assert!(!a.output().contains("test-secret-never-logged"));
}

#[tokio::test]
async fn without_redis_the_recent_lists_live_in_the_bucket_too() {
    let s3 = S3Server::start();
    s3.create_bucket("solo").await;
    let app = AppProcess::start(&s3_env(&s3, "s3://solo")).await;
    let client = reqwest::Client::new();
    let response = client
        .post(app.url("/api/ai"))
        .body(r#"{"prompt": "a lone lighthouse"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let keys = s3.keys("solo").await;
    assert!(
        keys.iter().any(|key| key.starts_with("recent/")),
        "{keys:?}"
    );
}

#[tokio::test]
async fn start_up_stops_with_a_clear_message_when_the_bucket_is_unusable() {
    let s3 = S3Server::start();
    let (status, output) =
        AppProcess::run_to_exit(&s3_env(&s3, "s3://no-such-bucket"), Duration::from_secs(30)).await;
    assert!(!status.success());
    assert!(output.contains("the bucket does not exist"), "{output}");
    assert!(output.contains("LOFIANIME_STORAGE__URL"), "{output}");

    let guarded = S3Server::with_auth();
    let (status, output) = AppProcess::run_to_exit(
        &s3_env(&guarded, "s3://any-bucket"),
        Duration::from_secs(30),
    )
    .await;
    assert!(!status.success());
    assert!(output.contains("the credentials were refused"), "{output}");
    assert!(!output.contains("test-secret-never-logged"), "{output}");

    let mut unreachable = s3_env(&s3, "s3://pictures");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    unreachable[0].1 = format!("http://127.0.0.1:{closed}");
    let (status, output) = AppProcess::run_to_exit(&unreachable, Duration::from_secs(60)).await;
    assert!(!status.success());
    assert!(
        output.contains("the endpoint cannot be reached"),
        "{output}"
    );

    let (status, output) = AppProcess::run_to_exit(
        &[(
            "LOFIANIME_STORAGE__URL",
            "ftp://files.example/images".into(),
        )],
        Duration::from_secs(30),
    )
    .await;
    assert!(!status.success());
    assert!(
        output.contains("must start with file://, s3:// or be memory://"),
        "{output}"
    );
}

#[tokio::test]
async fn readiness_follows_the_limiter_store_and_health_does_not() {
    let mut redis = RedisServer::start();
    let app = AppProcess::start(&[
        ("REDIS_URL", redis.url()),
        ("LOFIANIME_RATELIMIT__STORE_TIMEOUT_MS", "500".into()),
    ])
    .await;
    let get = |path: &'static str| {
        let url = app.url(path);
        async move { reqwest::get(url).await.unwrap() }
    };
    assert_eq!(get("/readyz").await.status(), 200);
    redis.stop();
    let response = get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["failing"],
        serde_json::json!(["limiter store"]),
        "{body}"
    );
    assert_eq!(get("/healthz").await.status(), 200);
    redis.restart();
    let mut ready = false;
    for _ in 0..50 {
        if get("/readyz").await.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "ready again once Redis is back: {}", app.output());
    assert_eq!(get("/healthz").await.status(), 200);
}

/// The value of `name{labels}` in a Prometheus text exposition (0 if absent).
fn sample(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_a_known_sequence_exactly_and_ask_for_the_token() {
    let app = AppProcess::start(&[
        ("METRICS_TOKEN", "scrape-secret".into()),
        ("LOFIANIME_RATELIMIT__LIMIT", "4".into()),
        // Drawing from 750 ms to 3 s: a cancel at 1.5 s lands while it draws.
        ("LOFIANIME_OFFLINE__DELAY_MS", "3000".into()),
    ])
    .await;
    let client = reqwest::Client::new();
    let generate = |job: Option<String>| {
        let client = client.clone();
        let url = app.url("/api/generate");
        async move {
            let mut form = vec![("prompt", "a counted harbour".to_owned())];
            if let Some(job) = job {
                form.push(("job", job));
            }
            client
                .post(url)
                .header("Accept", "application/json")
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let three = [generate(None), generate(None), generate(None)];
    for status in futures_util::future::join_all(three).await {
        assert_eq!(status, 200);
    }
    // The fourth is cancelled once the painter draws (so it counts).
    let job = "0123456789abcdef0123456789abcdef".to_owned();
    let running = tokio::spawn(generate(Some(job.clone())));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cancel = client
        .post(app.url("/api/cancel"))
        .form(&[("job", job)])
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    assert_eq!(running.await.unwrap(), 409);
    assert_eq!(generate(None).await, 429);

    let unauthorised = client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(unauthorised.status(), 401);
    let wrong = client
        .get(app.url("/metrics"))
        .bearer_auth("scrape-guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // The scheme is case-insensitive; the token is not.
    for (authorization, status) in [
        ("bearer scrape-secret", 200),
        ("BEARER scrape-secret", 200),
        ("Bearer SCRAPE-SECRET", 401),
        ("Basic scrape-secret", 401),
    ] {
        let answer = client
            .get(app.url("/metrics"))
            .header("authorization", authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{authorization}");
    }
    let scraped = client
        .get(app.url("/metrics"))
        .bearer_auth("scrape-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    let text = scraped.text().await.unwrap();
    for (series, expected) in [
        (r#"lofianime_generations_total{outcome="ok"}"#, 3.0),
        (r#"lofianime_generations_total{outcome="cancelled"}"#, 1.0),
        (r#"lofianime_generations_total{outcome="denied"}"#, 1.0),
        (r#"lofianime_generations_total{outcome="failed"}"#, 0.0),
        (r#"lofianime_refusals_total{scope="visitor_limit"}"#, 1.0),
        (r#"lofianime_model_calls_total{generator="offline"}"#, 4.0),
        (
            r#"lofianime_model_duration_seconds_count{generator="offline"}"#,
            4.0,
        ),
        ("lofianime_images_stored_total", 3.0),
        (r#"lofianime_refunds_total{to="visitor"}"#, 0.0),
    ] {
        assert_eq!(sample(&text, series), expected, "{series} in\n{text}");
    }
    // Each run took 1.5 s (the cancelled one) to about 3 s (the delay).
    for (bucket, runs) in [("1", 0), ("10", 4)] {
        let line = format!(
            "lofianime_model_duration_seconds_bucket{{generator=\"offline\",le=\"{bucket}\"}} {runs}"
        );
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    assert!(text.contains("lofianime_requests_in_flight"), "{text}");
    assert!(!app.output().contains("scrape-secret"));
}

#[tokio::test]
async fn without_a_token_there_is_no_metrics_endpoint() {
    let app = AppProcess::start(&[]).await;
    let response = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn with_every_painter_busy_a_generation_waits_in_line_and_leaving_the_line_costs_nothing() {
    let app = AppProcess::start(&[
        ("LOFIANIME_WORKERS__CPU", "1".into()),
        // The first holds the only painter from 1 s to 4 s.
        ("LOFIANIME_OFFLINE__DELAY_MS", "4000".into()),
    ])
    .await;
    assert!(app.output().contains("cpu_workers=1"), "{}", app.output());
    let client = reqwest::Client::new();
    let generate = |job: &'static str| {
        let client = client.clone();
        let url = app.url("/api/generate");
        tokio::spawn(async move {
            let response = client
                .post(url)
                .header("Accept", "application/json")
                .form(&[("prompt", "a queue at the bakery"), ("job", job)])
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    let first = generate("11111111111111111111111111111111");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = generate("22222222222222222222222222222222");
    // The second starts for 1 s, then waits for the painter.
    let mut queued = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let progress = client
            .get(app.url("/api/progress?job=22222222222222222222222222222222"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if progress.contains("Queued") {
            queued = true;
            break;
        }
    }
    assert!(queued, "the second generation is queued");
    let cancel = client
        .post(app.url("/api/cancel"))
        .form(&[("job", "22222222222222222222222222222222")])
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    let (status, body) = second.await.unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("Cancelled before the model started: not counted."),
        "{body}"
    );
    assert_eq!(first.await.unwrap().0, 200);
    let quota = app.get_json("/api/remaining").await;
    assert_eq!(
        quota["remainingGenerations"], 4,
        "only the first one counts"
    );
}

#[tokio::test]
async fn start_up_refuses_sign_in_without_a_long_enough_session_secret() {
    let sign_in = |secret: &str| {
        vec![
            ("LOFIANIME_AUTH__MODE", "required".to_owned()),
            (
                "LOFIANIME_SITE__PUBLIC_URL",
                "https://lofianime.example".into(),
            ),
            ("OIDC_CLIENT_ID", "client".into()),
            ("OIDC_CLIENT_SECRET", "client-secret-never-logged".into()),
            ("SESSION_SECRET", secret.to_owned()),
        ]
    };
    let (status, output) = AppProcess::run_to_exit(
        &sign_in("short-secret-never-logged"),
        Duration::from_secs(30),
    )
    .await;
    assert!(!status.success());
    assert!(
        output.contains("SESSION_SECRET must be at least 64 bytes"),
        "{output}"
    );
    assert!(!output.contains("short-secret-never-logged"), "{output}");
    assert!(!output.contains("client-secret-never-logged"), "{output}");

    let mut no_client = sign_in(&"k".repeat(64));
    no_client.retain(|(name, _)| *name != "OIDC_CLIENT_ID");
    let (status, output) = AppProcess::run_to_exit(&no_client, Duration::from_secs(30)).await;
    assert!(!status.success());
    assert!(output.contains("OIDC_CLIENT_ID: must be set"), "{output}");
}

#[tokio::test]
async fn a_frozen_bucket_answers_within_the_storage_time_limit_and_spends_nothing() {
    // A storage service that hangs (SIGSTOP) made visitors wait 47.6 s. Each
    // storage call now fails at `storage.timeout_secs`: an image request gets
    // a 503 to retry, and a generation is refused before any model run.
    let s3 = S3Server::start();
    s3.create_bucket("pictures").await;
    let mut env = s3_env(&s3, "s3://pictures/lofianime");
    env.push(("LOFIANIME_STORAGE__TIMEOUT_SECS", "2".to_owned()));
    env.push(("METRICS_TOKEN", "metrics-token".to_owned()));
    let app = AppProcess::start(&env).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let made: Vec<String> = client
        .post(app.url("/api/ai"))
        .body(r#"{"prompt": "a harbour"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let calls = async || {
        let text = client
            .get(app.url("/metrics"))
            .bearer_auth("metrics-token")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        sample(&text, "lofianime_model_calls_total{generator=\"offline\"}")
    };
    assert_eq!(calls().await, 1.0);
    s3.freeze();
    let image = client
        .get(app.url(&made[0]))
        .send()
        .await
        .expect("an answer, not a hang");
    assert_eq!(image.status(), 503);
    assert_eq!(image.headers()["retry-after"], "5");
    // Past the last write probe's few seconds, generations know.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let refused = client
        .post(app.url("/api/ai"))
        .body(r#"{"prompt": "a lighthouse"}"#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("an answer, not a hang: {e}: {}", app.output()));
    assert_eq!(refused.status(), 503);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("Images cannot be saved"));
    assert_eq!(
        calls().await,
        1.0,
        "no model run while images cannot be kept"
    );
    s3.thaw();
}

#[tokio::test]
async fn an_image_deleted_through_one_instance_is_gone_from_every_instance() {
    let redis = RedisServer::start();
    let s3 = S3Server::start();
    s3.create_bucket("pictures").await;
    let mut env = s3_env(&s3, "s3://pictures/lofianime");
    env.push(("REDIS_URL", redis.url()));
    let a = AppProcess::start(&env).await;
    let b = AppProcess::start(&env).await;
    let client = reqwest::Client::new();
    let made: Vec<String> = client
        .post(a.url("/api/ai"))
        .body(r#"{"prompt": "a lantern by the sea"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id: String = made[0]
        .trim_start_matches("/images/")
        .chars()
        .take(32)
        .collect();
    // A's own copy is warm: its page and file are served.
    assert_eq!(
        client.get(a.url(&made[0])).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        client
            .get(a.url(&format!("/i/{id}")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The same visitor (this loopback address) deletes it through B.
    let deleted = client
        .post(b.url("/api/delete-image"))
        .header("accept", "application/json")
        .form(&[("id", id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200, "{}", b.output());
    // Gone on A: its page, its file, its list; gone from the bucket.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let page = client.get(a.url(&format!("/i/{id}"))).send().await.unwrap();
    assert_eq!(page.status(), 404);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("This image was deleted."));
    assert_eq!(
        client.get(a.url(&made[0])).send().await.unwrap().status(),
        404
    );
    assert_eq!(a.get_json("/api/recent").await, serde_json::json!([]));
    let keys = s3.keys("pictures").await;
    assert!(!keys.iter().any(|key| key.contains(&id)), "{keys:?}");
}

#[tokio::test]
async fn a_generation_left_on_one_instance_is_followed_to_its_image_on_another() {
    let redis = RedisServer::start();
    let s3 = S3Server::start();
    s3.create_bucket("pictures").await;
    let mut env = s3_env(&s3, "s3://pictures/lofianime");
    env.push(("REDIS_URL", redis.url()));
    // A painter that takes 3 s, like a model; a reload has 5 s to come back.
    env.push(("LOFIANIME_OFFLINE__DELAY_MS", "3000".into()));
    let a = AppProcess::start(&env).await;
    let b = AppProcess::start(&env).await;
    let client = reqwest::Client::new();
    let job = "0123456789abcdef0123456789abcdef";
    let before = b.get_json("/api/remaining").await["remainingGenerations"]
        .as_u64()
        .unwrap();

    // The page sends its generation to A and is reloaded half a second later:
    // the request is gone, the generation goes on.
    let sent = client
        .post(a.url("/api/generate"))
        .header("accept", "application/json")
        .form(&[("prompt", "a harbour after a reload"), ("job", job)])
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(sent.is_err(), "the request was cut before its answer");

    // The reloaded page lands on B, which lists the generation...
    let running = b.get_json("/api/running").await;
    assert_eq!(running[0]["job"], job, "{running}");
    assert_eq!(running[0]["prompt"], "a harbour after a reload");
    assert!(running[0]["started_ms"].as_u64().unwrap() > 0);
    assert!(running[0]["phase"].is_string(), "{running}");
    // ...and follows it by sending its id again: the image A made.
    let followed = client
        .post(b.url("/api/generate"))
        .header("accept", "application/json")
        .form(&[("job", job)])
        .send()
        .await
        .unwrap();
    assert_eq!(followed.status(), 200, "{}", b.output());
    let created: serde_json::Value = followed.json().await.unwrap();
    let id = created["image"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["image"]["prompt"], "a harbour after a reload");
    let keys = s3.keys("pictures").await;
    assert!(keys.contains(&format!("lofianime/{id}.png")), "{keys:?}");
    // One generation made and counted; nothing left running.
    let after = b.get_json("/api/remaining").await["remainingGenerations"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before - 1);
    assert_eq!(b.get_json("/api/running").await, serde_json::json!([]));
    assert_eq!(b.get_json("/api/recent").await[0]["id"], id.as_str());
    assert!(
        a.output().contains("generated image"),
        "A made it: {}",
        a.output()
    );
}
