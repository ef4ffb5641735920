//! Sign-in against a real OpenID provider (oauth2-mock-server, started per
//! test): the whole code flow, per-account quotas, the modes, and every attack
//! on the flow or the session refused with a clear status and nothing spent.

use crate::support::app::{body_text, local_components, now_ms, spawn_app_with_secrets, TestApp};
use crate::support::oidc_provider::OidcProvider;
use crate::support::redis_server::RedisServer;
use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use lofianime::server::auth::session::{Account, Sessions, SESSION_COOKIE};
use lofianime::server::settings::{AccountKey, AuthMode, Secrets, Settings};
use lofianime_domain::testing::FakeModel;
use lofianime_domain::RedisStore;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const SESSION_SECRET: &str =
    "a test session secret that is long enough: sixty-four bytes or more, easily";
const CLIENT_ID: &str = "lofianime-tests";
const SITE: &str = "http://lofianime.test";

fn settings(mode: AuthMode) -> Settings {
    let mut settings = Settings::default();
    settings.auth.mode = mode;
    settings.site.public_url = Some(SITE.into());
    settings.ratelimit.limit = 3;
    settings.ratelimit.anonymous_limit = 1;
    settings
}

fn secrets(provider: &OidcProvider) -> Secrets {
    Secrets {
        oidc_issuer_url: Some(provider.url.clone()),
        oidc_client_id: Some(CLIENT_ID.into()),
        oidc_client_secret: Some(SecretString::from("client-secret")),
        session_secret: Some(SecretString::from(SESSION_SECRET)),
        ..Default::default()
    }
}

/// The app (with a model that counts its calls: the owner's bill) and a provider.
struct Site {
    app: TestApp,
    model: Arc<FakeModel>,
    provider: Arc<OidcProvider>,
}

fn site_with(settings: Settings) -> Site {
    let provider = Arc::new(OidcProvider::start());
    let model = Arc::new(FakeModel::default());
    let app = spawn_app_with_secrets(
        settings,
        &secrets(&provider),
        local_components(model.clone()),
    );
    Site {
        app,
        model,
        provider,
    }
}

/// One browser's cookies for the app (paths ignored: the app sets two).
#[derive(Default, Clone)]
struct Browser {
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn absorb(&mut self, response: &Response<Body>) {
        for set in response.headers().get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn request(&self, method: &str, uri: &str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::COOKIE, self.cookie_header())
    }

    async fn get(&mut self, site: &Site, uri: &str) -> Response<Body> {
        let response = site
            .app
            .send(self.request("GET", uri).body(Body::empty()).unwrap())
            .await;
        self.absorb(&response);
        response
    }

    /// `POST /api/ai` as the original front end sends it.
    async fn generate(&mut self, site: &Site, prompt: &str) -> Response<Body> {
        let body = json!({ "prompt": prompt }).to_string();
        let response = site
            .app
            .send(
                self.request("POST", "/api/ai")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        self.absorb(&response);
        response
    }

    async fn remaining(&mut self, site: &Site) -> (StatusCode, Value) {
        let response = self.get(site, "/api/remaining").await;
        let status = response.status();
        (
            status,
            serde_json::from_str(&body_text(response).await).unwrap(),
        )
    }

    /// Starts a sign-in and lets the provider approve it as `who`; returns the
    /// code and state the provider sent back.
    async fn at_provider(&mut self, site: &Site, who: Value) -> (String, String) {
        let login = self.get(site, "/auth/login?return_to=/i/0123").await;
        assert_eq!(login.status(), StatusCode::SEE_OTHER);
        let authorize = location(&login);
        assert!(authorize.starts_with(&site.provider.url), "{authorize}");
        for part in [
            "code_challenge_method=S256",
            "state=",
            "nonce=",
            "scope=openid",
        ] {
            assert!(authorize.contains(part), "{part} missing from {authorize}");
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let who =
            url::form_urlencoded::byte_serialize(who.to_string().as_bytes()).collect::<String>();
        let approved = http
            .get(&authorize)
            .header(header::COOKIE, format!("who={who}"))
            .send()
            .await
            .unwrap();
        assert_eq!(approved.status(), reqwest::StatusCode::FOUND);
        let back = url::Url::parse(approved.headers()["location"].to_str().unwrap()).unwrap();
        assert_eq!(back.path(), "/auth/callback");
        assert!(back.as_str().starts_with(SITE));
        let query: BTreeMap<_, _> = back.query_pairs().into_owned().collect();
        (query["code"].clone(), query["state"].clone())
    }

    async fn callback(&mut self, site: &Site, code: &str, state: &str) -> Response<Body> {
        self.get(site, &format!("/auth/callback?code={code}&state={state}"))
            .await
    }

    /// The whole sign-in as `who`; the callback's answer.
    async fn sign_in(&mut self, site: &Site, who: Value) -> Response<Body> {
        let (code, state) = self.at_provider(site, who).await;
        self.callback(site, &code, &state).await
    }

    fn signed_in(&self) -> bool {
        self.cookies.contains_key(SESSION_COOKIE)
    }
}

fn location(response: &Response<Body>) -> String {
    response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned()
}

fn ana() -> Value {
    json!({ "email": "ana@example.com", "name": "Ana" })
}

/// A refused sign-in: its status, its sentence, no session, and nothing spent.
async fn assert_refused(
    site: &Site,
    browser: &mut Browser,
    response: Response<Body>,
    status: StatusCode,
    sentence: &str,
) {
    assert_eq!(response.status(), status);
    assert!(
        response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .all(|v| {
                let v = v.to_str().unwrap();
                !v.starts_with(&format!("{SESSION_COOKIE}=")) || v.contains("Max-Age=0")
            }),
        "a refused sign-in sets no session"
    );
    let text = body_text(response).await;
    assert!(text.contains(sentence), "{sentence:?} not in {text}");
    assert!(!browser.signed_in());
    // Still signed out: the required mode refuses, and no model ran.
    let refused = browser.generate(site, "a quiet street").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(site.model.calls(), 0);
}

#[tokio::test]
async fn signing_in_gives_a_session_that_returns_to_the_page_and_names_the_account() {
    let site = site_with(settings(AuthMode::Required));
    let mut browser = Browser::default();
    let page = body_text(browser.get(&site, "/").await).await;
    assert!(page.contains("Sign in to generate images"), "{page}");
    assert!(page.contains("Sign in with Google"));
    assert!(
        !page.contains("prompt-form"),
        "no form for a signed-out visitor"
    );

    let back = browser.sign_in(&site, ana()).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&back), "/i/0123", "back where the visitor was");
    let set: Vec<_> = back
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = set
        .iter()
        .find(|v| v.starts_with(SESSION_COOKIE))
        .expect("a session cookie");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"));
    assert!(!session.contains("Secure"), "the test site is http");
    assert!(session.contains(&format!("Max-Age={}", 30 * 24 * 3600)));
    assert!(!session.contains("ana@example.com"), "sealed, not readable");
    assert!(
        set.iter()
            .any(|v| v.starts_with("lofianime_sign_in=") && v.contains("Max-Age=0")),
        "the sign-in attempt is used once: {set:?}"
    );

    let page = body_text(browser.get(&site, "/").await).await;
    assert!(page.contains("ana@example.com") && page.contains("Sign out"));
    assert!(page.contains("prompt-form"));
    assert!(
        page.contains("3 of 3 generations left on ana@example.com."),
        "{page}"
    );

    let made = browser.generate(&site, "a quiet street").await;
    assert_eq!(made.status(), StatusCode::OK);
    assert_eq!(site.model.calls(), 1);
    let (status, remaining) = browser.remaining(&site).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(remaining["remainingGenerations"], 2);
}

#[tokio::test]
async fn the_quota_and_recent_images_follow_the_account_not_the_browser() {
    let site = site_with(settings(AuthMode::Optional));
    let mut laptop = Browser::default();
    let mut phone = Browser::default();
    laptop.sign_in(&site, ana()).await;
    for prompt in ["one", "two"] {
        assert_eq!(
            laptop.generate(&site, prompt).await.status(),
            StatusCode::OK
        );
    }
    phone.sign_in(&site, ana()).await;
    assert_eq!(phone.remaining(&site).await.1["remainingGenerations"], 1);
    let recent = body_text(phone.get(&site, "/api/recent").await).await;
    assert!(
        recent.contains("\"one\"") && recent.contains("\"two\""),
        "{recent}"
    );
    assert_eq!(
        phone.generate(&site, "three").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        laptop.generate(&site, "four").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another account has its own quota.
    let mut ben = Browser::default();
    ben.sign_in(&site, json!({ "email": "ben@example.com" }))
        .await;
    assert_eq!(ben.remaining(&site).await.1["remainingGenerations"], 3);
    assert_eq!(site.model.calls(), 3);
}

#[tokio::test]
async fn optional_mode_gives_signed_out_visitors_the_anonymous_quota() {
    let site = site_with(settings(AuthMode::Optional));
    let mut visitor = Browser::default();
    let page = body_text(visitor.get(&site, "/").await).await;
    assert!(page.contains("Sign in with Google") && page.contains("prompt-form"));
    assert!(page.contains("1 of 1 generations left."), "{page}");
    assert!(page.contains("Each account gets 3 generations per day; signed out, 1 generation."));
    assert_eq!(visitor.remaining(&site).await.1["limit"], 1);
    assert_eq!(
        visitor.generate(&site, "one").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        visitor.generate(&site, "two").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Signing in gives the account's own quota, not the address's.
    visitor.sign_in(&site, ana()).await;
    assert_eq!(visitor.remaining(&site).await.1["remainingGenerations"], 3);
    assert_eq!(site.model.calls(), 1);
}

#[tokio::test]
async fn an_anonymous_limit_of_zero_means_signed_out_visitors_must_sign_in() {
    let mut zero = settings(AuthMode::Optional);
    zero.ratelimit.anonymous_limit = 0;
    let site = site_with(zero);
    let mut visitor = Browser::default();
    let refused = visitor.generate(&site, "one").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body_text(refused).await, "\"Sign in to generate images.\"");
    assert_eq!(site.model.calls(), 0);
}

#[tokio::test]
async fn required_mode_answers_401_with_the_sentence_and_spends_nothing() {
    let site = site_with(settings(AuthMode::Required));
    let mut visitor = Browser::default();
    let refused = visitor.generate(&site, "one").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body_text(refused).await, "\"Sign in to generate images.\"");
    let (status, body) = visitor.remaining(&site).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!("Sign in to generate images."));
    // The page's own server function too.
    let form = site
        .app
        .send(
            Request::post("/api/generate")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::ACCEPT, "application/json")
                .body(Body::from(
                    "prompt=one&job=0123456789abcdef0123456789abcdef",
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(form.status(), StatusCode::UNAUTHORIZED);
    assert!(body_text(form)
        .await
        .contains("Sign in to generate images."));
    assert_eq!(site.model.calls(), 0);
}

#[tokio::test]
async fn sign_out_ends_the_session_and_is_refused_from_another_site() {
    let site = site_with(settings(AuthMode::Required));
    let mut browser = Browser::default();
    browser.sign_in(&site, ana()).await;
    assert!(browser.signed_in());
    // A copy of the session cookie, kept by someone else before sign-out.
    let mut kept = browser.clone();
    let forged = site
        .app
        .send(
            browser
                .request("POST", "/auth/logout")
                .header(header::ORIGIN, "https://evil.example")
                .header("sec-fetch-site", "cross-site")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.headers().get(header::SET_COOKIE).is_none());
    assert_eq!(
        browser.remaining(&site).await.0,
        StatusCode::OK,
        "still signed in"
    );

    let out = site
        .app
        .send(
            browser
                .request("POST", "/auth/logout")
                .header(header::ORIGIN, SITE)
                .header("sec-fetch-site", "same-origin")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&out), "/");
    browser.absorb(&out);
    assert!(!browser.signed_in());
    assert_eq!(browser.remaining(&site).await.0, StatusCode::UNAUTHORIZED);
    // Signed out for good: the kept copy of the cookie is signed out too.
    assert!(kept.signed_in(), "the copy still holds the cookie");
    assert_eq!(kept.remaining(&site).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        kept.generate(&site, "free images?").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(site.model.calls(), 0);
}

#[tokio::test]
async fn a_callback_with_a_wrong_or_missing_state_is_refused() {
    let site = site_with(settings(AuthMode::Required));
    let mut browser = Browser::default();
    let (code, _) = browser.at_provider(&site, ana()).await;
    let mut attacker_link = browser.clone();
    let refused = attacker_link.callback(&site, &code, "not-the-state").await;
    assert_refused(
        &site,
        &mut attacker_link,
        refused,
        StatusCode::BAD_REQUEST,
        "does not belong to the sign-in this browser started",
    )
    .await;
    // A browser that never started a sign-in (login CSRF).
    let mut stranger = Browser::default();
    let refused = stranger.callback(&site, &code, "whatever").await;
    assert_refused(
        &site,
        &mut stranger,
        refused,
        StatusCode::BAD_REQUEST,
        "has expired or was started in another browser",
    )
    .await;
}

#[tokio::test]
async fn a_replayed_authorization_code_is_refused() {
    let site = site_with(settings(AuthMode::Required));
    let mut browser = Browser::default();
    let (code, state) = browser.at_provider(&site, ana()).await;
    let saved = browser.clone();
    assert_eq!(
        browser.callback(&site, &code, &state).await.status(),
        StatusCode::SEE_OTHER
    );
    // The same callback again, with the attempt's cookie as it was: refused
    // by this app (an attempt is used once, on every instance) before the
    // provider is even asked.
    let mut replay = saved;
    let refused = replay.callback(&site, &code, &state).await;
    assert_refused(
        &site,
        &mut replay,
        refused,
        StatusCode::BAD_REQUEST,
        "did not accept this sign-in",
    )
    .await;
}

#[tokio::test]
async fn a_sign_in_attempt_is_used_once_even_with_a_fresh_code() {
    // The provider answers the same authorization request twice (two codes
    // for one state, one PKCE challenge); a copy of the attempt's cookie must
    // not turn the second into a second session.
    let site = site_with(settings(AuthMode::Required));
    let mut browser = Browser::default();
    let login = browser.get(&site, "/auth/login?return_to=/").await;
    let authorize = location(&login);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let who =
        url::form_urlencoded::byte_serialize(ana().to_string().as_bytes()).collect::<String>();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let approved = http
            .get(&authorize)
            .header(header::COOKIE, format!("who={who}"))
            .send()
            .await
            .unwrap();
        let back = url::Url::parse(approved.headers()["location"].to_str().unwrap()).unwrap();
        let query: BTreeMap<_, _> = back.query_pairs().into_owned().collect();
        answers.push((query["code"].clone(), query["state"].clone()));
    }
    assert_ne!(answers[0].0, answers[1].0, "two codes");
    let mut copy = browser.clone();
    let first = browser.callback(&site, &answers[0].0, &answers[0].1).await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let second = copy.callback(&site, &answers[1].0, &answers[1].1).await;
    assert_refused(
        &site,
        &mut copy,
        second,
        StatusCode::BAD_REQUEST,
        "did not accept this sign-in",
    )
    .await;
}

#[tokio::test]
async fn id_tokens_that_fail_a_check_are_refused() {
    let site = site_with(settings(AuthMode::Required));
    let cases = [
        (
            json!({"nonce": "another-sign-in"}),
            StatusCode::BAD_REQUEST,
            "belongs to another sign-in",
        ),
        (
            json!({"aud": "another-app"}),
            StatusCode::BAD_REQUEST,
            "for another application",
        ),
        (
            json!({"expired": true}),
            StatusCode::BAD_REQUEST,
            "has expired",
        ),
        (
            json!({"foreign_key": "unknown-kid"}),
            StatusCode::BAD_REQUEST,
            "signed by a key the provider does not publish",
        ),
        (
            json!({"foreign_key": "same-kid"}),
            StatusCode::BAD_REQUEST,
            "signature is not valid",
        ),
        (
            json!({"email_verified": false}),
            StatusCode::FORBIDDEN,
            "not verified",
        ),
    ];
    for (mut who, status, sentence) in cases {
        who["email"] = json!("mallory@example.com");
        let mut browser = Browser::default();
        let refused = browser.sign_in(&site, who.clone()).await;
        assert_eq!(refused.status(), status, "{who}");
        assert_refused(&site, &mut browser, refused, status, sentence).await;
    }
}

#[tokio::test]
async fn a_rotated_provider_key_is_fetched_when_a_token_names_it() {
    let site = site_with(settings(AuthMode::Required));
    let mut first = Browser::default();
    assert_eq!(
        first.sign_in(&site, ana()).await.status(),
        StatusCode::SEE_OTHER
    );
    // The provider adds a key after the app read its key set; tokens now
    // alternate between the two, so one of the next two uses the new key.
    let rotated = reqwest::Client::new()
        .post(format!("{}/__rotate", site.provider.url))
        .send()
        .await
        .unwrap();
    assert!(rotated.status().is_success());
    for _ in 0..2 {
        let mut browser = Browser::default();
        assert_eq!(
            browser.sign_in(&site, ana()).await.status(),
            StatusCode::SEE_OTHER
        );
    }
}

#[tokio::test]
async fn tampered_expired_or_foreign_session_cookies_mean_signed_out() {
    let site = site_with(settings(AuthMode::Required));
    let mut browser = Browser::default();
    browser.sign_in(&site, ana()).await;
    let genuine = browser.cookies[SESSION_COOKIE].clone();

    let mut tampered = browser.clone();
    let mut bytes = genuine.clone().into_bytes();
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    tampered
        .cookies
        .insert(SESSION_COOKIE.into(), String::from_utf8(bytes).unwrap());

    // Sealed with the app's own key, but past its expiry.
    let sessions = Sessions::new(&SecretString::from(SESSION_SECRET), false, 60).unwrap();
    let account = Account {
        subject: "sub-ana@example.com".into(),
        email: "ana@example.com".into(),
        name: None,
        expires: 0,
        session: String::new(),
    };
    let long_ago = now_ms() / 1000 - 3600;
    let (_, jar) = sessions.start(account.clone(), long_ago);
    let mut expired = Browser::default();
    expired.absorb(&axum::response::IntoResponse::into_response(jar));

    // Sealed with another app's key.
    let other = Sessions::new(
        &SecretString::from(SESSION_SECRET.replace('a', "b")),
        false,
        3600,
    )
    .unwrap();
    let (_, jar) = other.start(account, now_ms() / 1000);
    let mut foreign = Browser::default();
    foreign.absorb(&axum::response::IntoResponse::into_response(jar));

    for mut forged in [tampered, expired, foreign] {
        let refused = forged.generate(&site, "free images?").await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(forged.remaining(&site).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(site.model.calls(), 0);
    assert_eq!(browser.remaining(&site).await.1["remainingGenerations"], 3);
}

#[tokio::test]
async fn return_to_must_be_a_path_on_this_site() {
    let site = site_with(settings(AuthMode::Required));
    for off_site in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let mut browser = Browser::default();
        let uri = format!(
            "/auth/login?return_to={}",
            url::form_urlencoded::byte_serialize(off_site.as_bytes()).collect::<String>()
        );
        let refused = browser.get(&site, &uri).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{off_site}");
        assert!(refused.headers().get(header::LOCATION).is_none());
        assert!(body_text(refused)
            .await
            .contains("must be a path on this site"));
    }
}

#[tokio::test]
async fn with_sign_in_off_the_routes_do_not_exist_and_cookies_are_ignored() {
    let site = site_with(Settings::default());
    let mut browser = Browser::default();
    assert_eq!(
        browser.get(&site, "/auth/login").await.status(),
        StatusCode::NOT_FOUND
    );
    let page = body_text(browser.get(&site, "/").await).await;
    assert!(!page.contains("Sign in"));
    assert!(page.contains("Each visitor gets 5 generations per day."));
}

/// Sign-in required, accounts named by `key_by`, the counts in `redis`.
async fn site_counting_in(
    redis: &RedisServer,
    provider: &Arc<OidcProvider>,
    key_by: AccountKey,
) -> Site {
    let mut settings = settings(AuthMode::Required);
    settings.auth.identify_accounts_by = key_by;
    let store = RedisStore::connect(&redis.url(), Duration::from_secs(2))
        .await
        .unwrap();
    let model = Arc::new(FakeModel::default());
    let components = local_components(model.clone()).with_limiter_store(Arc::new(store));
    Site {
        app: spawn_app_with_secrets(settings, &secrets(provider), components),
        model,
        provider: provider.clone(),
    }
}

#[tokio::test]
async fn account_counts_are_lofianime_coms_redis_keys() {
    let redis = RedisServer::start();
    let provider = Arc::new(OidcProvider::start());
    for (key_by, identifier) in [
        (AccountKey::Email, "ana@example.com"),
        (AccountKey::Subject, "sub:sub-ana@example.com"),
    ] {
        let site = site_counting_in(&redis, &provider, key_by).await;
        let mut browser = Browser::default();
        browser.sign_in(&site, ana()).await;
        assert_eq!(
            browser.generate(&site, "one").await.status(),
            StatusCode::OK
        );
        // As lofianime.com's /api/remaining read it: prefix, identifier, day.
        let day = now_ms() / 86_400_000;
        let key = format!("@upstash/ratelimit:{identifier}:{day}");
        assert_eq!(redis.get(&key).as_deref(), Some("1"), "{key}");
    }
}

#[tokio::test]
async fn subjects_named_like_reserved_identifiers_get_quotas_of_their_own() {
    let redis = RedisServer::start();
    let provider = Arc::new(OidcProvider::start());
    let site = site_counting_in(&redis, &provider, AccountKey::Subject).await;
    let day = now_ms() / 86_400_000;
    for (n, sub) in ["global", "unknown-client", "api-route"].iter().enumerate() {
        let mut browser = Browser::default();
        let email = format!("reserved{n}@example.com");
        browser
            .sign_in(&site, json!({ "email": email, "sub": sub }))
            .await;
        assert_eq!(
            browser.generate(&site, "one").await.status(),
            StatusCode::OK
        );
        let own = format!("@upstash/ratelimit:sub:{sub}:{day}");
        assert_eq!(redis.get(&own).as_deref(), Some("1"), "{own}");
    }
    // The shared budget counted three generations, once each: no account
    // spent from it as if it were its own quota.
    let budget = format!("@upstash/ratelimit:global:{day}");
    assert_eq!(redis.get(&budget).as_deref(), Some("3"), "{budget}");
    assert_eq!(
        redis.get(&format!("@upstash/ratelimit:unknown-client:{day}")),
        None
    );
}
