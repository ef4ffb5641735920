//! The Cog backend against real Cog model servers (cog/coglet from PyPI
//! serving `tests/cog/predict.py`, no Docker) and the real server binary:
//! progress through webhooks and the server's own picture; a pool of two
//! servers shared by three generations (two run, one waits in line); busy and
//! stopped servers skipped; every server down; cancel and leaving stop the run
//! on its server (the predictor records it); forged webhooks change nothing.

use crate::support::cog_server::{CogServer, Predictor};
use crate::support::process::{free_port, AppProcess};
use std::time::{Duration, Instant};

const HOOK_TOKEN: &str = "cog-webhook-token-for-the-tests-0123456789";

/// The app on `servers`, with webhooks when `webhooks` (the servers then
/// call back at its address).
async fn app_on(
    servers: &[&CogServer],
    webhooks: bool,
    extra: &[(&'static str, String)],
) -> AppProcess {
    let port = free_port();
    let urls: Vec<String> = servers.iter().map(|server| server.url()).collect();
    let mut env = vec![
        ("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}")),
        ("LOFIANIME_MODEL__BACKEND", "cog".to_owned()),
        ("COG_URLS", urls.join(",")),
        ("LOFIANIME_RATELIMIT__LIMIT", "20".to_owned()),
        ("LOFIANIME_PROGRESS__CANCEL_CHECK_MS", "100".to_owned()),
    ];
    if webhooks {
        env.push(("COG_WEBHOOK_TOKEN", HOOK_TOKEN.to_owned()));
        env.push((
            "LOFIANIME_COG__WEBHOOK_BASE_URL",
            format!("http://127.0.0.1:{port}"),
        ));
    }
    env.extend(extra.iter().cloned());
    AppProcess::start(&env).await
}

fn job(n: u32) -> String {
    format!("{:032x}", 0xc0c0_0000u64 + u64::from(n))
}

/// Sends the page's generation `job` and polls its progress until it ends;
/// the answer's status and body, and every phase seen.
async fn generate_following(
    app: &AppProcess,
    prompt: &str,
    job: &str,
) -> (u16, serde_json::Value, Vec<serde_json::Value>) {
    let client = reqwest::Client::new();
    let sent = client
        .post(app.url("/api/generate"))
        .header("accept", "application/json")
        .form(&[("prompt", prompt), ("job", job)])
        .send();
    tokio::pin!(sent);
    let mut phases = Vec::new();
    let response = loop {
        tokio::select! {
            response = &mut sent => break response.unwrap(),
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                let reading = app.get_json(&format!("/api/progress?job={job}")).await;
                if let Some(state) = reading.get("state") {
                    phases.push(state.clone());
                }
            }
        }
    };
    let status = response.status().as_u16();
    (status, response.json().await.unwrap(), phases)
}

fn prompt_sent(prompt: &str) -> String {
    format!("In the style of HISGH. {prompt}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_webhooks_a_generation_shows_its_progress_and_gets_the_servers_picture() {
    let server = CogServer::start(
        Predictor {
            steps: 10,
            step: Duration::from_millis(150),
        },
        Some(HOOK_TOKEN),
    )
    .await;
    let app = app_on(&[&server], true, &[]).await;
    assert!(
        app.output().contains("Cog model servers (1)") && app.output().contains("READY"),
        "the start-up log names the servers and their health: {}",
        app.output()
    );
    let ready = app.get_json("/readyz").await;
    assert_eq!(
        ready["model_servers"],
        serde_json::json!({"ready": 1, "total": 1}),
        "{ready}"
    );

    let (status, created, phases) = generate_following(&app, "a ferry at dawn", &job(1)).await;
    assert_eq!(status, 200, "{created} {}", app.output());
    let percents: Vec<u64> = phases
        .iter()
        .filter_map(|phase| phase["Running"]["Generating"]["percent"].as_u64())
        .collect();
    assert!(
        !percents.is_empty(),
        "progress from the server's logs: {phases:?}"
    );
    assert!(percents.iter().all(|p| *p <= 100));
    // The server's own picture: the predictor paints 1/16 of the asked size.
    let file = reqwest::get(app.url(created["image"]["url"].as_str().unwrap()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let picture = image::load_from_memory(&file).unwrap();
    assert_eq!((picture.width(), picture.height()), (64, 64));
    assert_eq!(
        server.events(),
        [
            ("started".to_owned(), prompt_sent("a ferry at dawn")),
            ("finished".to_owned(), prompt_sent("a ferry at dawn")),
        ]
    );
    // A prompt the model flags: 422, as with Replicate; the model ran, so it
    // counts (the refund rules' "unsafe" row).
    let before = app.get_json("/api/remaining").await["remainingGenerations"]
        .as_u64()
        .unwrap();
    let (status, error, _) = generate_following(&app, "a harbour [unsafe]", &job(2)).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["kind"], "Unsafe");
    let after = app.get_json("/api/remaining").await["remainingGenerations"]
        .as_u64()
        .unwrap();
    assert_eq!(
        after,
        before - 1,
        "an unsafe prompt ran the model: it counts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_and_three_generations_two_run_and_one_waits_in_line() {
    let predictor = Predictor {
        steps: 10,
        step: Duration::from_millis(200),
    };
    let (a, b) = tokio::join!(
        CogServer::start(predictor, None),
        CogServer::start(predictor, None)
    );
    // Without webhooks: each run is a request held open.
    let app = app_on(&[&a, &b], false, &[]).await;
    let runs = (1..=3).map(|n| {
        let app = &app;
        async move { generate_following(app, &format!("a lantern {n}"), &job(10 + n)).await }
    });
    let answers = futures_util::future::join_all(runs).await;
    for (status, body, _) in &answers {
        assert_eq!(*status, 200, "{body} {}", app.output());
    }
    let waited: Vec<&serde_json::Value> = answers
        .iter()
        .flat_map(|(_, _, phases)| phases)
        .filter(|phase| phase["Running"].get("InLine").is_some())
        .collect();
    assert!(!waited.is_empty(), "one waited in line: {answers:?}");
    // Each server ran one run at a time: started, finished, started, finished.
    let mut total = 0;
    for server in [&a, &b] {
        let events = server.events();
        for pair in events.chunks(2) {
            assert_eq!(pair[0].0, "started", "{events:?}");
            assert_eq!(
                pair.get(1).map(|e| e.0.as_str()),
                Some("finished"),
                "{events:?}"
            );
            assert_eq!(pair[0].1, pair[1].1, "{events:?}");
        }
        total += events.len() / 2;
    }
    assert_eq!(total, 3, "three runs in all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_or_stopped_server_is_skipped_and_every_server_down_is_a_503() {
    // The busy server's runs take 20 s (someone else's run outlasts the
    // test's); the free one's a second.
    let slow = Predictor {
        steps: 100,
        step: Duration::from_millis(200),
    };
    let quick = Predictor {
        steps: 10,
        step: Duration::from_millis(100),
    };
    let (busy, free) = tokio::join!(CogServer::start(slow, None), CogServer::start(quick, None));
    // Someone else keeps the first server busy (the app's hold says it is free:
    // its 409 sends the run to the other).
    let client = reqwest::Client::new();
    let outside = client
        .put(format!("{}/predictions/outside", busy.url()))
        .header("Prefer", "respond-async")
        .json(&serde_json::json!({"input": {"prompt": "someone else's run"}}))
        .send()
        .await
        .unwrap();
    assert!(outside.status().is_success());
    let app = app_on(&[&busy, &free], false, &[]).await;
    for n in 0..2 {
        let (status, body, _) =
            generate_following(&app, &format!("a quiet pier {n}"), &job(20 + n)).await;
        assert_eq!(status, 200, "{body} {}", app.output());
    }
    let on_busy = busy.events();
    assert!(
        on_busy
            .iter()
            .all(|(_, prompt)| prompt == "someone else's run"),
        "{on_busy:?} {}",
        app.output()
    );
    assert_eq!(
        free.events()
            .iter()
            .filter(|(event, _)| event == "finished")
            .count(),
        2
    );
    drop(app);

    // A stopped server is skipped too.
    let mut stopped = busy;
    stopped.stop();
    let app = app_on(&[&stopped, &free], false, &[]).await;
    for n in 0..4 {
        let (status, body, _) =
            generate_following(&app, &format!("a pier after the storm {n}"), &job(30 + n)).await;
        assert_eq!(status, 200, "{body} {}", app.output());
    }
    // Once found unreachable it is left out for a while: at most one
    // generation paid a connection attempt to it.
    assert!(
        app.output()
            .matches("did not take the run; trying the next")
            .count()
            <= 1,
        "{}",
        app.output()
    );
    let ready = app.get_json("/readyz").await;
    assert_eq!(
        ready["model_servers"],
        serde_json::json!({"ready": 1, "total": 2}),
        "{ready}"
    );
    drop(app);

    // Every server down: a clear 503 and the credit back.
    let mut free = free;
    free.stop();
    let app = app_on(&[&stopped, &free], false, &[]).await;
    let before = app.get_json("/api/remaining").await["remainingGenerations"]
        .as_u64()
        .unwrap();
    let answer = client
        .post(app.url("/api/ai"))
        .body(r#"{"prompt": "a pier nobody paints"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
    assert_eq!(
        answer.json::<String>().await.unwrap(),
        "The model is not available right now. Please try again shortly."
    );
    let after = app.get_json("/api/remaining").await["remainingGenerations"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before, "nothing ran: the credit came back");
    let ready = client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_leaving_stop_the_run_on_its_server() {
    let server = CogServer::start(
        Predictor {
            steps: 60,
            step: Duration::from_millis(100),
        },
        Some(HOOK_TOKEN),
    )
    .await;
    let app = app_on(&[&server], true, &[]).await;
    let client = reqwest::Client::new();
    // Cancel after the model started drawing: it counted, and the server
    // stopped the run.
    let running = {
        let app_url = app.url("/api/generate");
        let client = client.clone();
        tokio::spawn(async move {
            client
                .post(app_url)
                .header("accept", "application/json")
                .form(&[("prompt", "a long night train"), ("job", job(40).as_str())])
                .send()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cancelled = client
        .post(app.url("/api/cancel"))
        .header("accept", "application/json")
        .form(&[("job", job(40))])
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.text().await.unwrap(), "true");
    let answer = running.await.unwrap();
    assert_eq!(answer.status(), 409);
    let error: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(
        error["data"],
        serde_json::json!({"counted": true, "model_started": true}),
        "{error}"
    );
    let cancelled_on_server = |server: &CogServer, prompt: &str| {
        server
            .events()
            .contains(&("cancelled".to_owned(), prompt_sent(prompt)))
    };
    assert!(
        cancelled_on_server(&server, "a long night train"),
        "{:?}",
        server.events()
    );

    // A script that leaves (its request dropped): the run is stopped on the
    // server at once.
    let left = client
        .post(app.url("/api/ai"))
        .body(r#"{"prompt": "a train nobody waits for"}"#)
        .timeout(Duration::from_millis(1500))
        .send()
        .await;
    assert!(left.is_err());
    let started = Instant::now();
    while !cancelled_on_server(&server, "a train nobody waits for") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            server.events()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !server.events().iter().any(|(event, _)| event == "finished"),
        "{:?}",
        server.events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_webhooks_change_nothing() {
    let server = CogServer::start(
        Predictor {
            steps: 20,
            step: Duration::from_millis(100),
        },
        Some(HOOK_TOKEN),
    )
    .await;
    let app = app_on(&[&server], true, &[]).await;
    let client = reqwest::Client::new();
    let running = {
        let app_url = app.url("/api/ai");
        let client = client.clone();
        tokio::spawn(async move {
            client
                .post(app_url)
                .body(r#"{"prompt": "a real lighthouse"}"#)
                .send()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Forged completions for every run id pattern this app could use are
    // refused before their body is read.
    let forged = serde_json::json!({
        "id": "0123456789abcdef0123456789abcdef",
        "status": "succeeded",
        "output": ["data:image/png;base64,iVBORw0KGgo="],
    });
    for authorization in [None, Some("Bearer wrong-token"), Some(HOOK_TOKEN)] {
        let mut request = client.post(app.url("/webhooks/cog")).json(&forged);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let status = request.send().await.unwrap().status();
        assert_eq!(status, 401, "{authorization:?}");
    }
    // The right token for a run this app never opened: acknowledged, ignored.
    let ignored = client
        .post(app.url("/webhooks/cog"))
        .header("authorization", format!("Bearer {HOOK_TOKEN}"))
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(ignored.status(), 200);
    // The generation goes on to the server's real picture.
    let answer = running.await.unwrap();
    assert_eq!(answer.status(), 200, "{}", app.output());
    let urls: Vec<String> = answer.json().await.unwrap();
    let file = reqwest::get(app.url(&urls[0]))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(image::load_from_memory(&file).unwrap().width(), 64);
    assert!(
        !app.output().contains(HOOK_TOKEN),
        "the token is never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_instances_share_the_servers_through_redis_and_never_send_to_a_busy_one() {
    let redis = crate::support::redis_server::RedisServer::start();
    let predictor = Predictor {
        steps: 10,
        step: Duration::from_millis(150),
    };
    let (a, b) = tokio::join!(
        CogServer::start(predictor, None),
        CogServer::start(predictor, None)
    );
    let store = [("REDIS_URL", redis.url())];
    let servers = [&a, &b];
    let (first, second) = tokio::join!(
        app_on(&servers, false, &store),
        app_on(&servers, false, &store)
    );
    // Six generations at once, three through each instance.
    let runs = (0..6u32).map(|n| {
        let app = if n % 2 == 0 { &first } else { &second };
        async move { generate_following(app, &format!("a canal {n}"), &job(50 + n)).await }
    });
    let answers = futures_util::future::join_all(runs).await;
    for (status, body, _) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    // The holds in Redis kept every run off a busy server: no 409 was met.
    for app in [&first, &second] {
        assert!(
            !app.output().contains("did not take the run"),
            "{}",
            app.output()
        );
    }
    let mut total = 0;
    for server in [&a, &b] {
        let events = server.events();
        for pair in events.chunks(2) {
            assert_eq!(
                (pair[0].0.as_str(), pair.get(1).map(|e| e.0.as_str())),
                ("started", Some("finished")),
                "one run at a time: {events:?}"
            );
        }
        total += events.len() / 2;
    }
    assert_eq!(total, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_while_waiting_in_line_costs_nothing() {
    let server = CogServer::start(
        Predictor {
            steps: 20,
            step: Duration::from_millis(150),
        },
        None,
    )
    .await;
    let app = app_on(&[&server], false, &[]).await;
    let before = app.get_json("/api/remaining").await["remainingGenerations"]
        .as_u64()
        .unwrap();
    let first_job = job(60);
    let first = generate_following(&app, "the first in line", &first_job);
    let second = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let client = reqwest::Client::new();
        let waiting = client
            .post(app.url("/api/generate"))
            .header("accept", "application/json")
            .form(&[("prompt", "the second in line"), ("job", job(61).as_str())])
            .send();
        tokio::pin!(waiting);
        // Cancelled once the page says it waits for a free GPU.
        loop {
            tokio::select! {
                answer = &mut waiting => panic!("answered while it should wait: {:?}", answer.map(|a| a.status())),
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    let reading = app.get_json(&format!("/api/progress?job={}", job(61))).await;
                    if reading["state"]["Running"].get("InLine").is_some() {
                        break;
                    }
                }
            }
        }
        let cancelled = client
            .post(app.url("/api/cancel"))
            .header("accept", "application/json")
            .form(&[("job", job(61))])
            .send()
            .await
            .unwrap();
        assert_eq!(cancelled.text().await.unwrap(), "true");
        let answer = waiting.await.unwrap();
        assert_eq!(answer.status(), 409);
        answer.json::<serde_json::Value>().await.unwrap()
    };
    let ((status, _, _), error) = tokio::join!(first, second);
    assert_eq!(status, 200);
    assert_eq!(
        error["data"],
        serde_json::json!({"counted": false, "model_started": false}),
        "{error}"
    );
    let after = app.get_json("/api/remaining").await["remainingGenerations"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before - 1, "only the run that happened counted");
    assert_eq!(
        server.events(),
        [
            ("started".to_owned(), prompt_sent("the first in line")),
            ("finished".to_owned(), prompt_sent("the first in line")),
        ],
        "the one that waited never reached the server"
    );
}
