//! Drives the whole router (server functions, pages, images) without a socket.

use crate::support::app::*;
use axum::http::{header, StatusCode};
use lofianime::prompt::PromptError;
use lofianime::server::settings::Settings;
use lofianime::wire::{ApiError, CreatedImage, Quota};
use std::sync::Arc;

#[tokio::test]
async fn the_home_page_renders_the_prompt_form() {
    let app = spawn_app();
    let response = app.get("/").await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = body_text(response).await;
    assert!(html.contains("<title>lofianime"), "{html}");
    assert!(
        html.contains(r#"<label for="prompt">Enter your prompt</label>"#),
        "{html}"
    );
    assert!(html.contains(r#"name="prompt""#), "{html}");
    assert!(html.contains(r#"action="/api/generate""#), "{html}");
    assert!(html.contains("Submit</button>"), "{html}");
    assert!(html.contains("Offline generator"), "{html}");
    assert!(html.contains("REPLICATE_API_TOKEN"), "{html}");
    assert!(
        html.contains("Each visitor gets 5 generations per day."),
        "{html}"
    );
    assert!(html.contains("5 of 5 generations left."), "{html}");
    assert!(html.contains("Renews in "), "{html}");
}

#[tokio::test]
async fn generating_returns_an_image_the_app_serves_itself() {
    let app = spawn_app();
    let response = app.generate("  a cat on a rooftop at night ").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header_u64(&response, "x-ratelimit-limit"), 5);
    assert_eq!(header_u64(&response, "x-ratelimit-remaining"), 4);
    let reset = header_u64(&response, "x-ratelimit-reset");
    assert_eq!(reset % 86_400_000, 0, "a day window resets at midnight UTC");
    assert!(reset > now_ms() && reset <= now_ms() + 86_400_000);
    assert!(response.headers().get(header::RETRY_AFTER).is_none());

    let created: CreatedImage = serde_json::from_slice(&body_bytes(response).await).unwrap();
    assert_eq!(created.image.prompt, "a cat on a rooftop at night");
    assert_eq!(
        created.quota,
        Some(Quota {
            limit: 5,
            remaining: 4,
            reset_ms: reset
        })
    );
    assert!(created.image.url.starts_with("/images/") && created.image.url.ends_with(".png"));

    let image = app.get(&created.image.url).await;
    assert_eq!(image.status(), StatusCode::OK);
    assert_eq!(header_str(&image, "content-type"), "image/png");
    assert!(header_str(&image, "cache-control").contains("immutable"));
    let decoded = image::load_from_memory(&body_bytes(image).await).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (32, 32));
}

#[tokio::test]
async fn the_sixth_generation_is_denied_with_429_and_rate_limit_headers() {
    let app = spawn_app();
    for expected_remaining in (0..5).rev() {
        let response = app.generate("sunset").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_u64(&response, "x-ratelimit-remaining"),
            expected_remaining
        );
    }
    let denied = app.generate("sunset").await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header_u64(&denied, "x-ratelimit-limit"), 5);
    assert_eq!(header_u64(&denied, "x-ratelimit-remaining"), 0);
    let reset = header_u64(&denied, "x-ratelimit-reset");
    let retry_after = header_u64(&denied, "retry-after");
    let seconds_to_reset = (reset - now_ms()).div_ceil(1000);
    assert!(
        retry_after.abs_diff(seconds_to_reset) <= 1,
        "Retry-After {retry_after} vs {seconds_to_reset}"
    );
    let body = body_bytes(denied).await;
    let error: ApiError = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        error,
        ApiError::RateLimited(Quota {
            limit: 5,
            remaining: 0,
            reset_ms: reset
        })
    );
    assert_eq!(error.to_string(), "No generations remaining.");
    // A caller that is not the page reads the sentence beside the kind and data.
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["kind"], "RateLimited");
    assert_eq!(json["message"], "No generations remaining.");
    assert_eq!(json["data"]["remaining"], 0);
}

#[tokio::test]
async fn a_body_that_is_not_form_data_is_a_400_with_a_message_and_spends_nothing() {
    let app = spawn_app();
    let garbage: &[u8] = b"\x00\xff\xfe garbage";
    for content_type in [Some("application/x-www-form-urlencoded"), None] {
        let mut request =
            axum::http::Request::post("/api/generate").header(header::ACCEPT, "application/json");
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let response = app
            .send(request.body(axum::body::Body::from(garbage)).unwrap())
            .await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{content_type:?}"
        );
        assert!(response.headers().get("x-ratelimit-remaining").is_none());
        let json: serde_json::Value = serde_json::from_slice(&body_bytes(response).await).unwrap();
        assert_eq!(json["kind"], "MalformedRequest", "{json}");
        assert!(
            json["message"]
                .as_str()
                .unwrap()
                .starts_with("The request could not be read"),
            "{json}"
        );
    }
    // The same field twice is not what the page sends either.
    let twice = app.generate_body("prompt=a&prompt=b".into(), &[]).await;
    assert_eq!(twice.status(), StatusCode::BAD_REQUEST);
    let quota = app.get("/api/remaining").await;
    let json: serde_json::Value = serde_json::from_slice(&body_bytes(quota).await).unwrap();
    assert_eq!(json["remainingGenerations"], 5, "nothing was spent");
}

#[tokio::test]
async fn bad_prompts_are_refused_with_400_and_spend_nothing() {
    let app = spawn_app();
    let too_long = "x".repeat(501);
    let cases = [
        (form_body(""), ApiError::InvalidPrompt(PromptError::Empty)),
        (
            form_body(" \n\t "),
            ApiError::InvalidPrompt(PromptError::Empty),
        ),
        (
            form_body(&too_long),
            ApiError::InvalidPrompt(PromptError::TooLong {
                chars: 501,
                max: 500,
            }),
        ),
        (
            form_body("bell\u{7}"),
            ApiError::InvalidPrompt(PromptError::ControlCharacters),
        ),
        // No prompt field at all, or a body that is not a form.
        (String::new(), ApiError::InvalidPrompt(PromptError::Empty)),
        (
            r#"{"prompt": 5}"#.into(),
            ApiError::InvalidPrompt(PromptError::Empty),
        ),
    ];
    for (body, expected) in cases {
        let response = app.generate_body(body.clone(), &[]).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "body {body:?}");
        assert!(response.headers().get("x-ratelimit-remaining").is_none());
        let error: ApiError = serde_json::from_slice(&body_bytes(response).await).unwrap();
        assert_eq!(error, expected, "body {body:?}");
    }
    // All five generations are still there.
    for _ in 0..5 {
        assert_eq!(app.generate("still allowed").await.status(), StatusCode::OK);
    }
    assert_eq!(
        app.generate("one too many").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_form_post_without_javascript_lands_on_the_images_own_page() {
    let app = spawn_app();
    let response = app.submit_form_without_js("a quiet lake & a boat").await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(header_u64(&response, "x-ratelimit-remaining"), 4);
    let location = header_str(&response, "location").to_owned();
    let id = location.strip_prefix("/i/").expect("the image's page");
    assert!(lofianime::wire::is_hex_id(id), "{location}");

    let page = body_text(app.get(&location).await).await;
    assert!(
        page.contains(&format!(r#"src="/images/{id}-medium.webp""#)),
        "{page}"
    );
    assert!(
        page.contains(r#"alt="a quiet lake &amp; a boat""#),
        "{page}"
    );
    assert!(
        page.contains(&format!(r#"href="/images/{id}.png""#)),
        "Download: {page}"
    );
    assert_eq!(
        app.get(&format!("/images/{id}.png")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_failed_form_post_without_javascript_shows_the_error_and_keeps_the_prompt() {
    let app = spawn_app_with(Settings {
        ratelimit: lofianime::server::settings::RateLimitSettings {
            limit: 1,
            ..Default::default()
        },
        ..Default::default()
    });
    assert_eq!(
        app.submit_form_without_js("first").await.status(),
        StatusCode::FOUND
    );
    let response = app.submit_form_without_js("second try").await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert!(response.headers().get("retry-after").is_some());
    let location = header_str(&response, "location").to_owned();
    assert!(location.contains("__err="), "{location}");

    let page = body_text(app.get(&location).await).await;
    assert!(page.contains("No generations remaining."), "{page}");
    assert!(page.contains("The form reopens in "), "{page}");
    assert!(
        page.contains("disabled"),
        "the button is disabled at 0: {page}"
    );
    assert!(page.contains(r#"value="second try""#), "{page}");
    assert!(!page.contains("<figure"), "no result shown: {page}");
    assert!(
        page.contains(r#"alt="first""#),
        "the first image is in the recent list: {page}"
    );
}

#[tokio::test]
async fn unknown_or_malformed_image_names_are_404() {
    let app = spawn_app();
    for uri in [
        "/images/0123456789abcdef0123456789abcdef.png",
        "/images/..%2F..%2FCargo.toml",
        "/images/whatever.png",
    ] {
        assert_eq!(app.get(uri).await.status(), StatusCode::NOT_FOUND, "{uri}");
    }
}

#[tokio::test]
async fn a_spoofed_forwarded_for_does_not_buy_a_fresh_quota() {
    let app = spawn_app_with(Settings {
        ratelimit: lofianime::server::settings::RateLimitSettings {
            limit: 1,
            ..Default::default()
        },
        ..Default::default()
    });
    assert_eq!(app.generate("one").await.status(), StatusCode::OK);
    let spoofed = app
        .generate_body(form_body("two"), &[("x-forwarded-for", "203.0.113.77")])
        .await;
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_visitor_has_its_own_quota() {
    let mut settings = Settings::default();
    settings.ratelimit.limit = 1;
    settings.visitors.trusted_proxies = vec!["198.51.100.0/24".parse().unwrap()];
    let app = spawn_app_with(settings);
    for visitor in ["203.0.113.1", "203.0.113.2"] {
        let first = app
            .generate_body(form_body("hi"), &[("x-forwarded-for", visitor)])
            .await;
        assert_eq!(first.status(), StatusCode::OK, "{visitor}");
        let second = app
            .generate_body(form_body("hi"), &[("x-forwarded-for", visitor)])
            .await;
        assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS, "{visitor}");
    }
}

#[tokio::test]
async fn concurrent_requests_never_get_more_than_the_limit() {
    let app = Arc::new(spawn_app());
    let requests: Vec<_> = (0..100)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move { app.generate(&format!("crowd {i}")).await.status() })
        })
        .collect();
    let mut ok = 0;
    let mut denied = 0;
    for request in requests {
        match request.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => denied += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, denied), (5, 95));
}

#[tokio::test]
async fn pages_carry_a_content_security_policy_with_this_responses_nonce() {
    let app = spawn_app();
    let response = app.get("/").await;
    let policy = header_str(&response, "content-security-policy").to_owned();
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(policy.contains("img-src 'self' data:"), "{policy}");
    let nonce = policy
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a nonce in script-src")
        .to_owned();
    let html = body_text(response).await;
    assert!(
        html.contains(&format!(r#"nonce="{nonce}""#)),
        "the bootstrap script carries the nonce"
    );
    // Only in `nonce` attributes: never as the preload links' `crossorigin`
    // (which Leptos 0.8 writes), a bare `crossorigin` instead.
    assert_eq!(
        html.matches(nonce.as_str()).count(),
        html.matches(&format!(r#"nonce="{nonce}""#)).count(),
        "{html}"
    );
    assert!(html.contains(r#"rel="modulepreload""#), "{html}");
    assert_eq!(
        html.matches(" crossorigin>").count() + html.matches(" crossorigin ").count(),
        2,
        "{html}"
    );
    let second = app.get("/").await;
    assert!(
        !header_str(&second, "content-security-policy").contains(&nonce),
        "a fresh nonce per response"
    );
}

#[tokio::test]
async fn every_response_carries_basic_security_headers() {
    let app = spawn_app();
    let response = app.get("/").await;
    assert_eq!(header_str(&response, "x-content-type-options"), "nosniff");
    assert_eq!(header_str(&response, "x-frame-options"), "DENY");
    assert!(response.headers().contains_key("referrer-policy"));
}

#[tokio::test]
async fn an_unknown_page_is_a_404_page() {
    let app = spawn_app();
    let response = app.get("/no/such/page").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(body_text(response).await.contains("Page not found"));
}

mod json_api {
    //! `POST /api/ai` and `GET /api/remaining`: the original front end's API.

    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use serde_json::{json, Value};

    async fn post_ai(
        app: &TestApp,
        content_type: Option<&str>,
        body: &str,
    ) -> axum::http::Response<Body> {
        let mut request = Request::post("/api/ai");
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        app.send(request.body(Body::from(body.to_owned())).unwrap())
            .await
    }

    async fn json_of(response: axum::http::Response<Body>) -> Value {
        serde_json::from_slice(&body_bytes(response).await).unwrap()
    }

    async fn remaining(app: &TestApp) -> Value {
        let response = app.get("/api/remaining").await;
        assert_eq!(response.status(), StatusCode::OK);
        json_of(response).await
    }

    #[tokio::test]
    async fn the_original_fetch_body_gets_an_array_of_image_urls() {
        let app = spawn_app();
        // What the original page sent: fetch with a JSON body and no content type.
        let response = post_ai(
            &app,
            Some("text/plain;charset=UTF-8"),
            r#"{"prompt":"a cat on a rooftop"}"#,
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header_u64(&response, "x-ratelimit-limit"), 5);
        assert_eq!(header_u64(&response, "x-ratelimit-remaining"), 4);
        let urls = json_of(response).await;
        let url = urls[0].as_str().unwrap().to_owned();
        assert!(
            url.starts_with("/images/") && url.ends_with(".png"),
            "{urls}"
        );
        assert_eq!(urls.as_array().unwrap().len(), 1);
        assert_eq!(app.get(&url).await.status(), StatusCode::OK);
        // No content type at all works too.
        assert_eq!(
            post_ai(&app, None, r#"{"prompt":"again"}"#).await.status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn a_denial_is_429_with_the_json_string_and_headers() {
        let app = spawn_app();
        for _ in 0..5 {
            assert_eq!(
                post_ai(&app, None, r#"{"prompt":"x"}"#).await.status(),
                StatusCode::OK
            );
        }
        let denied = post_ai(&app, None, r#"{"prompt":"x"}"#).await;
        assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header_u64(&denied, "x-ratelimit-remaining"), 0);
        assert!(header_u64(&denied, "retry-after") >= 1);
        assert!(header_u64(&denied, "x-ratelimit-reset") > now_ms());
        assert_eq!(json_of(denied).await, json!("No generations remaining."));
    }

    #[tokio::test]
    async fn bad_json_and_bad_prompts_are_400_and_spend_nothing() {
        let app = spawn_app();
        for body in ["not json", r#"{"prompt": 5}"#, r#"{"text": "hi"}"#, ""] {
            let response = post_ai(&app, Some("application/json"), body).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body:?}");
            let message = json_of(response).await;
            assert!(
                message.as_str().unwrap().contains("must be JSON"),
                "{body:?}: {message}"
            );
        }
        let blank = post_ai(&app, None, r#"{"prompt":"   "}"#).await;
        assert_eq!(blank.status(), StatusCode::BAD_REQUEST);
        assert_eq!(json_of(blank).await, json!("Please enter a prompt."));
        assert_eq!(remaining(&app).await["remainingGenerations"], 5);
    }

    #[tokio::test]
    async fn remaining_reports_the_quota_without_consuming_it() {
        let app = spawn_app();
        let fresh = remaining(&app).await;
        assert_eq!(fresh["remainingGenerations"], 5);
        assert_eq!(fresh["limit"], 5);
        assert_eq!(fresh["reset"].as_u64().unwrap() % 86_400_000, 0);
        assert_eq!(
            remaining(&app).await["remainingGenerations"],
            5,
            "reading twice spends nothing"
        );
        app.generate("one").await;
        assert_eq!(remaining(&app).await["remainingGenerations"], 4);
    }
}

#[tokio::test]
async fn the_shared_budget_refuses_every_visitor_once_spent() {
    let mut settings = Settings::default();
    settings.ratelimit.global_limit = 2;
    settings.visitors.trusted_proxies = vec!["198.51.100.0/24".parse().unwrap()];
    let app = spawn_app_with(settings);
    for visitor in ["203.0.113.1", "203.0.113.2"] {
        let ok = app
            .generate_body(form_body("hi"), &[("x-forwarded-for", visitor)])
            .await;
        assert_eq!(ok.status(), StatusCode::OK, "{visitor}");
    }
    let third = app
        .generate_body(form_body("hi"), &[("x-forwarded-for", "203.0.113.3")])
        .await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header_u64(&third, "x-ratelimit-limit"),
        2,
        "the headers describe the budget that refused"
    );
    let error: ApiError = serde_json::from_slice(&body_bytes(third).await).unwrap();
    assert!(matches!(error, ApiError::BudgetSpent(_)), "{error:?}");
    assert!(error.to_string().contains("all visitors"), "{error}");
    // The refused visitor's own quota is untouched.
    let request = axum::http::Request::get("/api/remaining")
        .header("x-forwarded-for", "203.0.113.3")
        .body(axum::body::Body::empty())
        .unwrap();
    let quota: serde_json::Value =
        serde_json::from_slice(&body_bytes(app.send(request).await).await).unwrap();
    assert_eq!(quota["remainingGenerations"], 5);
}

#[tokio::test]
async fn the_seed_articles_single_shared_limit_is_a_setting() {
    let mut settings = Settings::default();
    settings.ratelimit.limit = 2;
    settings.ratelimit.identify_by = lofianime::server::settings::IdentifyBy::Shared;
    settings.visitors.trusted_proxies = vec!["198.51.100.0/24".parse().unwrap()];
    let app = spawn_app_with(settings);
    let statuses = [
        app.generate_body(form_body("a"), &[("x-forwarded-for", "203.0.113.1")])
            .await
            .status(),
        app.generate_body(form_body("b"), &[("x-forwarded-for", "203.0.113.2")])
            .await
            .status(),
        app.generate_body(form_body("c"), &[("x-forwarded-for", "203.0.113.3")])
            .await
            .status(),
    ];
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

async fn remaining_generations(app: &TestApp) -> u64 {
    let response = app.get("/api/remaining").await;
    let json: serde_json::Value = serde_json::from_slice(&body_bytes(response).await).unwrap();
    json["remainingGenerations"].as_u64().unwrap()
}

#[tokio::test]
async fn cross_site_posts_are_refused_with_403_and_spend_nothing() {
    let app = spawn_app();
    let forged = [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://attacker.example"),
    ];
    for (name, value) in forged {
        let response = app
            .generate_body(form_body("the attacker's prompt"), &[(name, value)])
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}");
        assert!(body_text(response).await.contains("other sites"));
        let ai = axum::http::Request::post("/api/ai")
            .header(name, value)
            .body(axum::body::Body::from(r#"{"prompt":"x"}"#))
            .unwrap();
        assert_eq!(app.send(ai).await.status(), StatusCode::FORBIDDEN, "{name}");
    }
    assert_eq!(remaining_generations(&app).await, 5, "nothing was spent");
    assert!(
        body_text(app.get("/api/recent").await).await == "[]",
        "nothing reached the visitor's recent images"
    );
    // The app's own page (same origin) and API clients (no browser headers) work.
    let own = app
        .generate_body(
            form_body("from the page"),
            &[
                ("host", "lofi.example"),
                ("origin", "https://lofi.example"),
                ("sec-fetch-site", "same-origin"),
            ],
        )
        .await;
    assert_eq!(own.status(), StatusCode::OK);
    assert_eq!(app.generate("from a script").await.status(), StatusCode::OK);
    assert_eq!(remaining_generations(&app).await, 3);
}

#[tokio::test]
async fn oversized_bodies_get_413_and_spend_nothing() {
    let app = spawn_app();
    let big = format!("prompt={}", "x".repeat(3 * 1024 * 1024));
    // As any HTTP client sends it, with its length.
    let length = big.len().to_string();
    let response = app
        .generate_body(big.clone(), &[("content-length", &length)])
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let ai = axum::http::Request::post("/api/ai")
        .header("content-length", &length)
        .body(axum::body::Body::from(big))
        .unwrap();
    assert_eq!(app.send(ai).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(remaining_generations(&app).await, 5);
}

#[tokio::test]
async fn answers_with_visitor_data_are_never_cached() {
    let app = spawn_app();
    let created = app.generate("a lantern").await;
    let created: CreatedImage = serde_json::from_slice(&body_bytes(created).await).unwrap();
    for path in ["/", "/api/remaining", "/api/recent", "/api/quota"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            header_str(&response, "cache-control"),
            "private, no-store",
            "{path}"
        );
    }
    let image = app.get(&created.image.url).await;
    assert!(header_str(&image, "cache-control").contains("immutable"));
}

#[tokio::test]
async fn form_posts_are_never_redirected_off_site() {
    let app = spawn_app();
    let request = axum::http::Request::post("/api/cancel")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "text/html")
        .header(header::REFERER, "https://attacker.example/phish?x=1")
        .body(axum::body::Body::from(
            "job=0123456789abcdef0123456789abcdef",
        ))
        .unwrap();
    let response = app.send(request).await;
    let location = header_str(&response, "location");
    assert!(
        location.starts_with('/') && !location.starts_with("//"),
        "{location}"
    );
    assert!(!location.contains("attacker"), "{location}");
}

mod shapes_and_seeds {
    //! The visitor's shape and seed: through the form's server function and
    //! the JSON API; bad values named, and nothing spent for them.

    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use serde_json::Value;

    fn form(pairs: &[(&str, &str)]) -> String {
        let mut body = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in pairs {
            body.append_pair(name, value);
        }
        body.finish()
    }

    async fn created(response: axum::http::Response<Body>) -> CreatedImage {
        assert_eq!(response.status(), StatusCode::OK);
        serde_json::from_slice(&body_bytes(response).await).unwrap()
    }

    fn png_size(png: &[u8]) -> (u32, u32) {
        let read = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
        (read(16), read(20))
    }

    async fn remaining(app: &TestApp) -> u64 {
        let response = app.get("/api/remaining").await;
        let body: Value = serde_json::from_slice(&body_bytes(response).await).unwrap();
        body["remainingGenerations"].as_u64().unwrap()
    }

    #[tokio::test]
    async fn a_portrait_picture_has_its_shape_and_seed_and_the_same_seed_paints_it_again() {
        let app = spawn_app();
        let first = created(
            app.generate_body(
                form(&[("prompt", "a lighthouse"), ("aspect", "portrait")]),
                &[],
            )
            .await,
        )
        .await;
        let image = &first.image;
        assert_eq!(image.aspect, "portrait");
        assert_eq!(
            image.about,
            format!("Portrait · seed {}", image.seed.as_deref().unwrap())
        );
        assert!(image.height > image.width, "{image:?}");
        let seed: u32 = image
            .seed
            .as_deref()
            .expect("every new picture has a seed")
            .parse()
            .unwrap();
        let original = body_bytes(app.get(&image.url).await).await;
        let (width, height) = png_size(&original);
        assert_eq!(
            (width, height),
            (image.width, image.height),
            "the file is portrait"
        );
        // Same again: the same prompt, shape and seed paint the same picture.
        let again = created(
            app.generate_body(
                form(&[
                    ("prompt", "a lighthouse"),
                    ("aspect", "portrait"),
                    ("seed", &seed.to_string()),
                ]),
                &[],
            )
            .await,
        )
        .await;
        assert_ne!(again.image.id, image.id, "a new image");
        assert_eq!(again.image.seed, Some(seed.to_string()));
        assert_eq!(body_bytes(app.get(&again.image.url).await).await, original);
        // More like this: a new seed, another picture of the same shape.
        let more = created(
            app.generate_body(
                form(&[("prompt", "a lighthouse"), ("aspect", "portrait")]),
                &[],
            )
            .await,
        )
        .await;
        assert_eq!(more.image.aspect, "portrait");
        assert_ne!(more.image.seed, Some(seed.to_string()));
        assert_ne!(body_bytes(app.get(&more.image.url).await).await, original);
        // The image's page says it too.
        let page = body_text(app.get(&format!("/i/{}", image.id)).await).await;
        assert!(page.contains(&format!("Portrait · seed {seed}")), "{page}");
        assert!(page.contains("More like this") && page.contains("Same again"));
        // And the recent list has the shape.
        let recent: Value =
            serde_json::from_slice(&body_bytes(app.get("/api/recent").await).await).unwrap();
        assert_eq!(
            recent[0]["height"].as_u64(),
            Some(u64::from(more.image.height))
        );
        assert!(
            recent[0]["height"].as_u64() > recent[0]["width"].as_u64(),
            "{recent}"
        );
    }

    #[tokio::test]
    async fn the_json_api_takes_a_shape_and_a_seed_as_number_or_text() {
        let app = spawn_app();
        for body in [
            r#"{"prompt": "a harbour", "aspect": "landscape", "seed": 42}"#,
            r#"{"prompt": "a harbour", "aspect": "landscape", "seed": "42"}"#,
        ] {
            let response = app
                .send(Request::post("/api/ai").body(Body::from(body)).unwrap())
                .await;
            assert_eq!(response.status(), StatusCode::OK);
            let urls: Value = serde_json::from_slice(&body_bytes(response).await).unwrap();
            let png = body_bytes(app.get(urls[0].as_str().unwrap()).await).await;
            let (width, height) = png_size(&png);
            assert!(width > height, "landscape: {width}x{height}");
        }
    }

    #[tokio::test]
    async fn bad_shapes_and_seeds_are_named_and_cost_nothing() {
        let app = spawn_app();
        let before = remaining(&app).await;
        for (pairs, expected) in [
            (&[("aspect", "round")][..], ApiError::BadAspect),
            (&[("aspect", "Portrait")][..], ApiError::BadAspect),
            (&[("seed", "4294967296")][..], ApiError::BadSeed),
            (&[("seed", "-1")][..], ApiError::BadSeed),
            (&[("seed", "twelve")][..], ApiError::BadSeed),
        ] {
            let mut fields = vec![("prompt", "a harbour")];
            fields.extend_from_slice(pairs);
            let response = app.generate_body(form(&fields), &[]).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{pairs:?}");
            let error: ApiError = serde_json::from_slice(&body_bytes(response).await).unwrap();
            assert_eq!(error, expected, "{pairs:?}");
        }
        for body in [
            r#"{"prompt": "a harbour", "aspect": "wide"}"#,
            r#"{"prompt": "a harbour", "seed": 1.5}"#,
            r#"{"prompt": "a harbour", "seed": [1]}"#,
            r#"{"prompt": "a harbour", "seed": 99999999999}"#,
        ] {
            let response = app
                .send(Request::post("/api/ai").body(Body::from(body)).unwrap())
                .await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
            let message: Value = serde_json::from_slice(&body_bytes(response).await).unwrap();
            let message = message.as_str().unwrap();
            assert!(
                message.contains("shape (aspect)") || message.contains("The seed"),
                "{body}: {message}"
            );
        }
        assert_eq!(remaining(&app).await, before, "nothing was spent");
    }
}

mod deleting {
    //! `POST /api/delete-image`: the visitor who made an image deletes it;
    //! anyone else gets a 403 that changes nothing.

    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use serde_json::Value;

    const MAKER: &str = "203.0.113.1";
    const STRANGER: &str = "203.0.113.2";

    fn app() -> TestApp {
        let mut settings = Settings::default();
        // The test client is a proxy whose X-Forwarded-For names the visitor.
        settings.visitors.trusted_proxies =
            vec![VISITOR.parse::<std::net::SocketAddr>().unwrap().ip().into()];
        spawn_app_with(settings)
    }

    async fn as_visitor(
        app: &TestApp,
        who: &str,
        request: axum::http::request::Builder,
        body: String,
    ) -> axum::http::Response<Body> {
        app.send(
            request
                .header("x-forwarded-for", who)
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    async fn delete(
        app: &TestApp,
        who: &str,
        id: &str,
        extra: &[(&str, &str)],
    ) -> axum::http::Response<Body> {
        let mut request = Request::post("/api/delete-image")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if !extra.iter().any(|(name, _)| *name == "accept") {
            request = request.header(header::ACCEPT, "application/json");
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("id", id)
            .finish();
        as_visitor(app, who, request, body).await
    }

    async fn get_as(app: &TestApp, who: &str, uri: &str) -> axum::http::Response<Body> {
        as_visitor(app, who, Request::get(uri), String::new()).await
    }

    async fn error_of(response: axum::http::Response<Body>) -> ApiError {
        serde_json::from_slice(&body_bytes(response).await).unwrap()
    }

    #[tokio::test]
    async fn only_the_maker_deletes_an_image_and_then_it_is_gone_everywhere() {
        let app = app();
        let response = as_visitor(
            &app,
            MAKER,
            Request::post("/api/generate")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::ACCEPT, "application/json"),
            form_body("a paper lantern"),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let created: CreatedImage = serde_json::from_slice(&body_bytes(response).await).unwrap();
        let id = created.image.id.clone();
        let page = format!("/i/{id}");
        // The maker sees Delete on the page; a stranger does not.
        assert!(body_text(get_as(&app, MAKER, &page).await)
            .await
            .contains("Delete this image"));
        let seen = body_text(get_as(&app, STRANGER, &page).await).await;
        assert!(seen.contains("a paper lantern") && !seen.contains("Delete this image"));
        // A stranger's request, and a cross-site one, change nothing.
        let refused = delete(&app, STRANGER, &id, &[]).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(error_of(refused).await, ApiError::NotYourImage);
        let cross_site = delete(
            &app,
            MAKER,
            &id,
            &[
                ("origin", "https://evil.example"),
                ("host", "127.0.0.1:3000"),
            ],
        )
        .await;
        assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            get_as(&app, STRANGER, &created.image.url).await.status(),
            StatusCode::OK
        );
        assert_eq!(get_as(&app, STRANGER, &page).await.status(), StatusCode::OK);
        // Bad and unknown ids.
        for bad in ["not-an-id", "0123456789abcdef0123456789abcdef"] {
            let response = delete(&app, MAKER, bad, &[]).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{bad}");
            assert_eq!(error_of(response).await, ApiError::NoSuchImage);
        }
        // The maker deletes it.
        let deleted = delete(&app, MAKER, &id, &[]).await;
        assert_eq!(deleted.status(), StatusCode::OK);
        assert_eq!(body_text(deleted).await, "true");
        for url in [
            created.image.url.clone(),
            created.image.shown_url.clone(),
            created.image.thumb_url.clone(),
        ] {
            let response = get_as(&app, STRANGER, &url).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{url}");
            assert_eq!(body_text(response).await, "This image was deleted.");
        }
        let gone = get_as(&app, STRANGER, &page).await;
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
        assert!(body_text(gone).await.contains("This image was deleted."));
        let recent: Value =
            serde_json::from_slice(&body_bytes(get_as(&app, MAKER, "/api/recent").await).await)
                .unwrap();
        assert_eq!(recent, serde_json::json!([]), "off the maker's list");
        // Deleting it again says so.
        let again = delete(&app, MAKER, &id, &[]).await;
        assert_eq!(again.status(), StatusCode::NOT_FOUND);
        assert_eq!(error_of(again).await, ApiError::ImageDeleted);
    }

    #[tokio::test]
    async fn without_javascript_delete_is_a_form_that_lands_on_the_studio() {
        let app = app();
        let response = as_visitor(
            &app,
            MAKER,
            Request::post("/api/ai"),
            r#"{"prompt": "a kite"}"#.to_owned(),
        )
        .await;
        let urls: Value = serde_json::from_slice(&body_bytes(response).await).unwrap();
        let id: String = urls[0]
            .as_str()
            .unwrap()
            .trim_start_matches("/images/")
            .chars()
            .take(32)
            .collect();
        let response = delete(&app, MAKER, &id, &[("accept", "text/html")]).await;
        assert!(response.status().is_redirection(), "{}", response.status());
        assert_eq!(header_str(&response, "location"), "/");
        assert_eq!(
            get_as(&app, MAKER, &format!("/i/{id}")).await.status(),
            StatusCode::NOT_FOUND
        );
    }
}
