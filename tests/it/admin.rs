//! The owner's controls: the JSON API under `/admin/api/` (token, bad
//! bodies), and the controls themselves on two instances sharing one real
//! `redis-server`: a pause, a per-visitor limit and a block made through one
//! are obeyed by the other within 2 s; a limit set with the real
//! `@upstash/ratelimit`'s `setDynamicLimit`, and a block written into its deny
//! list as the Upstash console does, are obeyed here. The model's call count
//! is the bill.

use crate::support::app::{body_text, form_body, spawn_app_with_secrets, TestApp};
use crate::support::redis_server::RedisServer;
use crate::support::upstash_bridge::Bridge;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use lofianime::server::settings::{Secrets, Settings};
use lofianime_domain::testing::FakeModel;
use lofianime_domain::RedisStore;
use secrecy::SecretString;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "an-admin-token-of-thirty-two-bytes-or-more";

const SESSION_SECRET: &str =
    "a-session-secret-of-sixty-four-bytes-or-more-for-the-owners-cookie-0123456789";

fn secrets(admin: Option<&str>) -> Secrets {
    Secrets {
        admin_token: admin.map(SecretString::from),
        session_secret: admin.map(|_| SecretString::from(SESSION_SECRET)),
        ..Secrets::default()
    }
}

/// Two instances on one Redis under `prefix`, and the model they share.
async fn two_instances(redis: &RedisServer, prefix: &str) -> (TestApp, TestApp, Arc<FakeModel>) {
    let model = Arc::new(FakeModel::default());
    let mut apps = Vec::new();
    for _ in 0..2 {
        let store = RedisStore::connect(&redis.url(), Duration::from_secs(2))
            .await
            .unwrap();
        let mut settings = Settings::default();
        settings.ratelimit.prefix = prefix.to_owned();
        // The test client is a proxy whose X-Forwarded-For names the visitor.
        crate::support::app::trust_the_test_client(&mut settings);
        let components = crate::support::app::local_components(model.clone())
            .on_remote_store(Arc::new(store), settings.recent.keep);
        apps.push(spawn_app_with_secrets(
            settings,
            &secrets(Some(ADMIN_TOKEN)),
            components,
        ));
    }
    let b = apps.pop().unwrap();
    (apps.pop().unwrap(), b, model)
}

async fn admin(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (StatusCode, String) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned())),
        None => request.body(Body::empty()),
    };
    let response = app.send(request.unwrap()).await;
    let status = response.status();
    if path.starts_with("/admin/api/") && token == Some(ADMIN_TOKEN) {
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "private, no-store"
        );
    }
    (status, body_text(response).await)
}

async fn owner(app: &TestApp, method: &str, path: &str, body: Option<&str>) -> serde_json::Value {
    let (status, text) = admin(app, method, path, body, Some(ADMIN_TOKEN)).await;
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

/// A generation from `address` (the test client is a trusted proxy).
async fn generate_from(app: &TestApp, address: &str) -> (StatusCode, String) {
    let response = app
        .generate_body(form_body("a harbour"), &[("x-forwarded-for", address)])
        .await;
    let status = response.status();
    (status, body_text(response).await)
}

/// Polls `check` every 100 ms for up to 2 s; how long it took.
async fn within_two_seconds(check: impl AsyncFnMut() -> bool) -> Option<Duration> {
    within(Duration::from_secs(2), check).await
}

/// Polls `check` every 100 ms for up to `bound`; how long it took.
async fn within(bound: Duration, mut check: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < bound {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn without_an_admin_token_there_is_no_owners_api_and_a_wrong_one_changes_nothing() {
    let model = Arc::new(FakeModel::default());
    let app = spawn_app_with_secrets(
        Settings::default(),
        &secrets(None),
        crate::support::app::local_components(model.clone()),
    );
    let (status, _) = admin(&app, "GET", "/admin/api/summary", None, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let app = spawn_app_with_secrets(
        Settings::default(),
        &secrets(Some(ADMIN_TOKEN)),
        crate::support::app::local_components(model.clone()),
    );
    for token in [
        None,
        Some("wrong-token-of-thirty-two-bytes-or-more"),
        Some(""),
    ] {
        let (status, _) = admin(&app, "POST", "/admin/api/pause", None, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        let (status, _) = admin(
            &app,
            "PUT",
            "/admin/api/limits",
            Some(r#"{"limit": 0}"#),
            token,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
    }
    assert_eq!(
        app.generate("a harbour").await.status(),
        StatusCode::OK,
        "nothing changed"
    );
    let summary = owner(&app, "GET", "/admin/api/summary", None).await;
    assert_eq!(summary["paused"], false);
    assert_eq!(summary["limits"]["limit"]["in_force"], 5);
    // The run's row is written in the background.
    let counted = within_two_seconds(async || {
        owner(&app, "GET", "/admin/api/summary", None).await["today_runs"] == 1
    })
    .await;
    assert!(counted.is_some(), "the one generation is in today's runs");
    // The scheme in any case (RFC 9110).
    let request = Request::get("/admin/api/summary")
        .header(header::AUTHORIZATION, format!("bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(request).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_bodies_are_refused_naming_the_field() {
    let app = spawn_app_with_secrets(
        Settings::default(),
        &secrets(Some(ADMIN_TOKEN)),
        crate::support::app::local_components(Arc::new(FakeModel::default())),
    );
    for (method, path, body, named) in [
        ("PUT", "/admin/api/limits", "[1]", "JSON object"),
        ("PUT", "/admin/api/limits", r#"{"limit": -1}"#, "limit:"),
        ("PUT", "/admin/api/limits", r#"{"limit": "ten"}"#, "limit:"),
        ("PUT", "/admin/api/limits", r#"{}"#, "limit: missing"),
        ("PUT", "/admin/api/limits", r#"{"limits": 3}"#, "limits:"),
        (
            "PUT",
            "/admin/api/limits",
            r#"{"daily_usd": -2}"#,
            "daily_usd:",
        ),
        (
            "PUT",
            "/admin/api/limits",
            r#"{"limit": 3, "anonymous_limit": 1}"#,
            "anonymous_limit: this site has no such quota",
        ),
        (
            "PUT",
            "/admin/api/limits",
            r#"{"limit": 3, "global_limit": 1.5}"#,
            "global_limit:",
        ),
        ("GET", "/admin/api/days?days=0", "", "days:"),
        ("GET", "/admin/api/generations?limit=lots", "", "limit:"),
        (
            "POST",
            "/admin/api/blocks",
            r#"{"target": "10.0.0.0/8"}"#,
            "target:",
        ),
        ("POST", "/admin/api/blocks", r#"{"target": ""}"#, "target:"),
        (
            "POST",
            "/admin/api/blocks",
            r#"{"target": "203.0.113.7", "expires_in_secs": 0}"#,
            "expires_in_secs:",
        ),
    ] {
        let (status, text) = admin(&app, method, path, Some(body), Some(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        assert!(text.contains(named), "{body}: {text}");
    }
    let (status, _) = admin(
        &app,
        "DELETE",
        "/admin/api/blocks/203.0.113.9",
        None,
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        owner(&app, "GET", "/admin/api/summary", None).await["limits"]["limit"]["in_force"],
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_a_limit_and_a_block_made_on_one_instance_hold_on_the_other() {
    let redis = RedisServer::start();
    let (a, b, model) = two_instances(&redis, "admin-two").await;
    // Pause on A: B refuses within 2 s, nothing spent.
    owner(&a, "POST", "/admin/api/pause", None).await;
    let took = within_two_seconds(async || {
        generate_from(&b, "203.0.113.1").await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(took.is_some(), "B obeyed the pause");
    let (status, text) = generate_from(&b, "203.0.113.1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        text.contains("Generation is paused by the site's owner. Please try again later."),
        "{text}"
    );
    assert_eq!(model.calls(), 0, "no model run while paused");
    assert_eq!(
        owner(&b, "GET", "/admin/api/summary", None).await["paused"],
        true
    );
    owner(&a, "POST", "/admin/api/resume", None).await;
    assert!(
        within_two_seconds(async || generate_from(&b, "203.0.113.1").await.0 == StatusCode::OK)
            .await
            .is_some()
    );
    // A limit of 2 set on A: B holds a visitor to it (this one has used 1).
    let set = owner(&a, "PUT", "/admin/api/limits", Some(r#"{"limit": 2}"#)).await;
    assert_eq!(
        (
            set["limit"]["in_force"].as_u64(),
            set["limit"]["configured"].as_u64()
        ),
        (Some(2), Some(5))
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(generate_from(&b, "203.0.113.1").await.0, StatusCode::OK);
    let (status, text) = generate_from(&b, "203.0.113.1").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    let calls = model.calls();
    // Back to the settings' 5.
    owner(&a, "PUT", "/admin/api/limits", Some(r#"{"limit": null}"#)).await;
    assert!(
        within_two_seconds(async || generate_from(&b, "203.0.113.1").await.0 == StatusCode::OK)
            .await
            .is_some()
    );
    assert_eq!(model.calls(), calls + 1);
    // A block on A: B refuses that visitor (403, nothing spent) and no other.
    let blocked = owner(
        &a,
        "POST",
        "/admin/api/blocks",
        Some(r#"{"target": "203.0.113.2", "note": "spam"}"#),
    )
    .await;
    assert_eq!(blocked["blocked"], "203.0.113.2");
    let calls = model.calls();
    let (status, text) = generate_from(&b, "203.0.113.2").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(
        text.contains("Generating images is blocked for this visitor."),
        "{text}"
    );
    assert_eq!(model.calls(), calls);
    assert_eq!(generate_from(&b, "203.0.113.3").await.0, StatusCode::OK);
    let listed = owner(&b, "GET", "/admin/api/blocks", None).await;
    assert_eq!(listed["blocks"][0]["target"], "203.0.113.2");
    assert_eq!(listed["blocks"][0]["note"], "spam");
    assert_eq!(listed["blocks"][0]["by"], "admin token");
    // One for a second: lifted by itself.
    owner(
        &a,
        "POST",
        "/admin/api/blocks",
        Some(r#"{"target": "203.0.113.4", "expires_in_secs": 1}"#),
    )
    .await;
    assert_eq!(
        generate_from(&b, "203.0.113.4").await.0,
        StatusCode::FORBIDDEN
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(a.studio.lift_expired_blocks().await.unwrap(), 1);
    let listed = owner(&b, "GET", "/admin/api/blocks", None).await;
    assert_eq!(listed["blocks"].as_array().unwrap().len(), 1, "{listed}");
    owner(&a, "DELETE", "/admin/api/blocks/203.0.113.2", None).await;
    assert_eq!(generate_from(&a, "203.0.113.2").await.0, StatusCode::OK);
    // Every refusal B made is in the shared day's totals once B has added its
    // tally (reading its summary does; so does every 5 s): A reads them.
    owner(&b, "GET", "/admin/api/summary", None).await;
    let summary = owner(&a, "GET", "/admin/api/summary", None).await;
    let refused = &summary["today_refused_by"];
    // Exactly the two blocked attempts; the waits above retried through
    // pauses and limits, at least once each.
    assert_eq!(refused["blocked"], 2, "{summary}");
    let paused = refused["paused"].as_u64().unwrap_or(0);
    let limited = refused["limit"].as_u64().unwrap_or(0);
    assert!(paused >= 1 && limited >= 1, "{summary}");
    assert_eq!(
        summary["today_refused"].as_u64(),
        Some(2 + paused + limited),
        "{summary}"
    );
    let days = owner(&a, "GET", "/admin/api/days?days=1", None).await;
    assert_eq!(days["days"][0]["refused_by"], *refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_npm_packages_dynamic_limit_and_deny_list_are_obeyed_here() {
    let redis = RedisServer::start();
    let bridge = Bridge::start(&redis.url(), "compat-token").await;
    // The npm package's default prefix, as lofianime.com used it.
    let (app, _, model) = two_instances(&redis, lofianime_domain::DEFAULT_PREFIX).await;
    let node = |limit: &str| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
        let mut command = std::process::Command::new("node");
        command
            .current_dir(dir)
            .args(["ratelimit.mjs", "set-dynamic-limit", "fixed", "-", limit])
            .env("UPSTASH_REDIS_REST_URL", &bridge.url)
            .env("UPSTASH_REDIS_REST_TOKEN", "compat-token")
            .env("UPSTASH_DISABLE_TELEMETRY", "1");
        command
    };
    let mut set = node("1");
    let output = tokio::task::spawn_blocking(move || set.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        r#"{"dynamicLimit":1}"#
    );
    assert_eq!(generate_from(&app, "203.0.113.5").await.0, StatusCode::OK);
    let (status, text) = generate_from(&app, "203.0.113.5").await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the npm package's limit of 1: {text}"
    );
    assert_eq!(
        owner(&app, "GET", "/admin/api/summary", None).await["limits"]["limit"]["live"],
        1
    );
    let mut unset = node("false");
    assert!(tokio::task::spawn_blocking(move || unset.output())
        .await
        .unwrap()
        .unwrap()
        .status
        .success());
    assert!(within_two_seconds(
        async || generate_from(&app, "203.0.113.5").await.0 == StatusCode::OK
    )
    .await
    .is_some());
    // The Upstash console's deny list (a plain set).
    assert_eq!(
        redis.sadd("@upstash/ratelimit:denyList:all", "203.0.113.6"),
        1
    );
    let calls = model.calls();
    let took = within_two_seconds(async || {
        generate_from(&app, "203.0.113.6").await.0 == StatusCode::FORBIDDEN
    })
    .await;
    assert!(took.is_some(), "the deny list is obeyed");
    assert_eq!(model.calls(), calls, "nothing spent on a blocked visitor");
}

#[tokio::test]
async fn the_controls_keep_their_promises_on_redis_and_upstash() {
    let redis = RedisServer::start();
    let bridge = Bridge::start(&redis.url(), "bridge-token").await;
    let on_redis = RedisStore::connect(&redis.url(), Duration::from_secs(2))
        .await
        .unwrap();
    lofianime_domain::testing::control_store_contract::texts_and_sets_are_kept(&on_redis, "redis")
        .await;
    let on_upstash =
        lofianime_domain::UpstashRestStore::connect(lofianime_domain::UpstashSettings {
            url: bridge.url.clone(),
            token: SecretString::from("bridge-token"),
            timeout: Duration::from_secs(2),
            key_locking: false,
        })
        .await
        .unwrap();
    lofianime_domain::testing::control_store_contract::texts_and_sets_are_kept(
        &on_upstash,
        "upstash",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_image_is_gone_from_every_instance_and_from_recent_images() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut apps = Vec::new();
    for _ in 0..2 {
        let store = RedisStore::connect(&redis.url(), Duration::from_secs(2))
            .await
            .unwrap();
        let mut settings = Settings::default();
        settings.ratelimit.prefix = "admin-remove".into();
        let components = lofianime_domain::Components::local(
            Arc::new(FakeModel::default()),
            lofianime_domain::ObjectImageStore::local_dir(dir.path()).unwrap(),
            Arc::new(lofianime_domain::SystemClock),
            12,
        )
        .on_remote_store(Arc::new(store), 12);
        apps.push(spawn_app_with_secrets(
            settings,
            &secrets(Some(ADMIN_TOKEN)),
            components,
        ));
    }
    let (a, b) = (&apps[0], &apps[1]);
    let made: serde_json::Value =
        serde_json::from_str(&body_text(a.generate("a harbour").await).await).unwrap();
    let url = made["url"]
        .as_str()
        .or(made["image"]["url"].as_str())
        .map(str::to_owned);
    let recent: serde_json::Value =
        serde_json::from_str(&body_text(b.get("/api/recent").await).await).unwrap();
    let listed = recent.to_string();
    let id = listed
        .split("/images/")
        .nth(1)
        .map(|rest| rest[..32].to_owned())
        .unwrap_or_else(|| panic!("an image in the recent list: {listed} (made: {made} {url:?})"));
    assert_eq!(
        b.get(&format!("/images/{id}.png")).await.status(),
        StatusCode::OK
    );
    let removed = owner(a, "DELETE", &format!("/admin/api/images/{id}"), None).await;
    assert_eq!(removed["removed"], id.as_str());
    for app in [a, b] {
        // Each instance reads the removals at most every second.
        let gone = within_two_seconds(async || {
            body_text(app.get(&format!("/images/{id}-thumb.webp")).await).await
                == "This image was removed."
        })
        .await;
        let said = body_text(app.get(&format!("/images/{id}-thumb.webp")).await).await;
        assert!(gone.is_some(), "{said}");
        let response = app.get(&format!("/images/{id}.png")).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(body_text(response).await, "This image was removed.");
        let page = app.get(&format!("/i/{id}")).await;
        assert_eq!(page.status(), StatusCode::NOT_FOUND);
        assert!(body_text(page).await.contains("This image was removed."));
        let recent = body_text(app.get("/api/recent").await).await;
        assert!(!recent.contains(&id), "{recent}");
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|entry| !entry
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(&id)));
    let (status, _) = admin(
        a,
        "DELETE",
        "/admin/api/images/0123456789abcdef0123456789abcdef",
        None,
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The `Cookie` header a browser sends back after `response` set cookies.
fn cookies_from(response: &axum::http::Response<Body>) -> String {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ")
}

async fn form(
    app: &TestApp,
    path: &str,
    body: &str,
    cookie: Option<&str>,
    extra: &[(&str, &str)],
) -> axum::http::Response<Body> {
    let mut request =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    app.send(request.body(Body::from(body.to_owned())).unwrap())
        .await
}

async fn page(app: &TestApp, cookie: Option<&str>) -> axum::http::Response<Body> {
    let mut request = Request::get("/admin");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    app.send(request.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn the_owners_page_opens_with_the_token_and_its_forms_work_only_from_this_site() {
    let model = Arc::new(FakeModel::default());
    let app = spawn_app_with_secrets(
        Settings::default(),
        &secrets(Some(ADMIN_TOKEN)),
        crate::support::app::local_components(model.clone()),
    );
    assert_eq!(
        app.generate("a <b>bold</b> harbour").await.status(),
        StatusCode::OK
    );
    // Not signed in: to the form.
    let response = page(&app, None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/admin/login");
    assert!(body_text(app.get("/admin/login").await)
        .await
        .contains("name=\"token\""));
    // A wrong token: no session.
    let wrong = form(
        &app,
        "/admin/login",
        "token=not-the-token-at-all-but-long-enough",
        None,
        &[],
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    // The token: a session cookie, strict and HTTP-only.
    let signed_in = form(
        &app,
        "/admin/login",
        &format!("token={ADMIN_TOKEN}"),
        None,
        &[],
    )
    .await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let set = signed_in.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains(ADMIN_TOKEN), "the token is not in the cookie");
    let cookie = cookies_from(&signed_in);
    // The generation's row is written in the background.
    let listed = within_two_seconds(async || {
        body_text(page(&app, Some(&cookie)).await)
            .await
            .contains("Delete image")
    })
    .await;
    assert!(listed.is_some(), "the generation is listed");
    let shown = page(&app, Some(&cookie)).await;
    assert_eq!(shown.status(), StatusCode::OK);
    assert_eq!(shown.headers()[header::CACHE_CONTROL], "private, no-store");
    let csp = shown.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    let html = body_text(shown).await;
    for part in [
        "Spent today",
        "<svg",
        "The figures as a table",
        "Top payers today",
        "Latest generations",
        "Pause generation",
    ] {
        assert!(html.contains(part), "{part}");
    }
    assert!(!html.contains("<script"), "no script on the owner's page");
    assert!(
        html.contains("a &lt;b&gt;bold&lt;/b&gt; harbour"),
        "prompts are escaped"
    );
    assert!(!html.contains("<b>bold</b>"));
    // A pause posted from another site is refused, nothing changes.
    let cross = form(
        &app,
        "/admin/pause",
        "",
        Some(&cookie),
        &[("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.generate("a lighthouse").await.status(), StatusCode::OK);
    // From the page itself: paused.
    let paused = form(
        &app,
        "/admin/pause",
        "",
        Some(&cookie),
        &[("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(paused.status(), StatusCode::SEE_OTHER);
    assert_eq!(paused.headers()[header::LOCATION], "/admin?done=paused");
    let calls = model.calls();
    assert_eq!(
        app.generate("a field").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(model.calls(), calls);
    assert!(body_text(page(&app, Some(&cookie)).await)
        .await
        .contains("Resume generation"));
    // The visitor's page says so instead of showing the form.
    let home = body_text(app.get("/").await).await;
    assert!(
        home.contains("Generation is paused by the site&#x27;s owner")
            || home.contains("Generation is paused by the site's owner"),
        "{home}"
    );
    assert!(!home.contains("name=\"prompt\""), "no form while paused");
    // Limits from the form; a bad one is named and changes nothing.
    let bad = form(
        &app,
        "/admin/limits",
        "limit=lots&daily_usd=",
        Some(&cookie),
        &[],
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(body_text(bad)
        .await
        .contains("limit: must be a whole number"));
    let good = form(
        &app,
        "/admin/limits",
        "limit=2&daily_usd=1.5",
        Some(&cookie),
        &[],
    )
    .await;
    assert_eq!(good.status(), StatusCode::SEE_OTHER);
    let limits = app.studio.limits().await;
    assert_eq!(limits.limit.in_force(), Some(2));
    assert_eq!(limits.daily_usd_micros.in_force(), Some(1_500_000));
    // Signed out: the cookie is cleared and the page asks again.
    let out = form(&app, "/admin/logout", "", Some(&cookie), &[]).await;
    assert!(out.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    // A forged cookie (another key) is nobody.
    let forged = page(&app, Some("lofianime_admin=bm90IGEgc2Vzc2lvbg")).await;
    assert_eq!(forged.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn start_up_refuses_an_admin_token_that_is_short_or_has_no_session_secret() {
    let settings = Settings::default();
    let short = Secrets {
        admin_token: Some(SecretString::from("short")),
        session_secret: Some(SecretString::from(SESSION_SECRET)),
        ..Secrets::default()
    };
    let refusal = lofianime::server::admin_access::AdminAccess::from_settings(&settings, &short)
        .err()
        .unwrap()
        .to_string();
    assert!(
        refusal.contains("ADMIN_TOKEN") && refusal.contains("at least 32 bytes"),
        "{refusal}"
    );
    assert!(!refusal.contains("short\""), "{refusal}");
    let without_secret = Secrets {
        admin_token: Some(SecretString::from(ADMIN_TOKEN)),
        ..Secrets::default()
    };
    let refusal =
        lofianime::server::admin_access::AdminAccess::from_settings(&settings, &without_secret)
            .err()
            .unwrap()
            .to_string();
    assert!(refusal.contains("SESSION_SECRET"), "{refusal}");
    assert!(!refusal.contains(ADMIN_TOKEN));
}
