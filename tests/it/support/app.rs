//! Builds the app's router for tests and drives it without a socket.

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{header, Request, Response};
use axum::Router;
use http_body_util::BodyExt;
use leptos::config::LeptosOptions;
use lofianime::server::router::router;
use lofianime::server::settings::{Secrets, Settings};
use lofianime::server::state::AppState;
use lofianime_domain::Components;
use lofianime_domain::ObjectImageStore;
use lofianime_domain::SystemClock;
use lofianime_domain::{ImageGenerator, OfflineGenerator};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

pub const VISITOR: &str = "198.51.100.20:51000";

/// Believes the test client's `X-Forwarded-For` (it stands for a proxy), so
/// each request may name its own visitor.
pub fn trust_the_test_client(settings: &mut Settings) {
    settings.visitors.trusted_proxies = vec![VISITOR
        .parse::<std::net::SocketAddr>()
        .expect("a socket address")
        .ip()
        .into()];
}

pub struct TestApp {
    router: Router,
    /// The app's front door, for what a test does besides requests (the
    /// background passes the server runs on a timer).
    pub studio: Arc<lofianime_domain::Studio>,
}

/// One instance's components on `generator`: counts in memory, images in memory.
pub fn local_components(generator: Arc<dyn ImageGenerator>) -> Components {
    Components::local(
        generator,
        ObjectImageStore::in_memory(),
        Arc::new(SystemClock),
        lofianime_domain::DEFAULT_RECENT_KEEP,
    )
}

/// The app on the zero-configuration components (memory store, small offline images).
pub fn spawn_app_with(settings: Settings) -> TestApp {
    let components = local_components(Arc::new(OfflineGenerator::new(32, 32, Duration::ZERO)));
    spawn_app_on(settings, components)
}

/// The app on the given components, reached from [`VISITOR`].
pub fn spawn_app_on(settings: Settings, components: Components) -> TestApp {
    spawn_app_with_secrets(settings, &Secrets::default(), components)
}

/// The app with these secrets (sign-in's client and session key) in its
/// environment, reached from [`VISITOR`].
pub fn spawn_app_with_secrets(
    settings: Settings,
    secrets: &Secrets,
    components: Components,
) -> TestApp {
    let peer: SocketAddr = VISITOR.parse().unwrap();
    let state = app_state(&settings, secrets, components);
    TestApp {
        studio: state.studio.clone(),
        router: router(state).layer(MockConnectInfo(peer)),
    }
}

/// The app's state on `components`.
pub fn app_state(settings: &Settings, secrets: &Secrets, components: Components) -> AppState {
    let options = LeptosOptions::builder().output_name("lofianime").build();
    AppState::new(settings, secrets, components, options).expect("valid test settings")
}

/// The app's router on `components` (connections bring their own address).
pub fn app_router(settings: &Settings, components: Components) -> Router {
    router(app_state(settings, &Secrets::default(), components))
}

pub fn spawn_app() -> TestApp {
    spawn_app_with(Settings::default())
}

pub fn form_body(prompt: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("prompt", prompt)
        .finish()
}

impl TestApp {
    pub async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.router.clone().oneshot(request).await.unwrap()
    }

    /// What the page's hydrated form sends.
    pub async fn generate_body(&self, body: String, extra: &[(&str, &str)]) -> Response<Body> {
        let mut request = Request::post("/api/generate")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    pub async fn generate(&self, prompt: &str) -> Response<Body> {
        self.generate_body(form_body(prompt), &[]).await
    }

    /// What a browser without JavaScript sends when the form is submitted.
    pub async fn submit_form_without_js(&self, prompt: &str) -> Response<Body> {
        let request = Request::post("/api/generate")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
            .header(header::REFERER, "http://127.0.0.1:3000/")
            .body(Body::from(form_body(prompt)))
            .unwrap();
        self.send(request).await
    }

    /// A form POST as the page's script sends it (`accept: application/json`).
    pub async fn post_form(&self, path: &str, body: String) -> Response<Body> {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(Body::from(body))
            .unwrap();
        self.send(request).await
    }

    pub async fn get(&self, uri: &str) -> Response<Body> {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }
}

pub async fn body_bytes(response: Response<Body>) -> Vec<u8> {
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

pub async fn body_text(response: Response<Body>) -> String {
    String::from_utf8(body_bytes(response).await).unwrap()
}

pub fn header_str<'a>(response: &'a Response<Body>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
}

pub fn header_u64(response: &Response<Body>, name: &str) -> u64 {
    header_str(response, name).parse().unwrap()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
