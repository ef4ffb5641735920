//! The image's own page (`/i/{id}`) and the image variants, through the router:
//! what a chat app's link preview reads, what a stranger holding the link sees,
//! and what a malformed or unknown id gets.

use crate::support::app::{body_bytes, body_text, spawn_app, spawn_app_on, spawn_app_with};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use lofianime::server::settings::Settings;
use lofianime_domain::OfflineGenerator;
use std::sync::Arc;
use std::time::Duration;

/// The id of the image a form post without JavaScript made (through its
/// waiting page when it took more than a moment).
async fn made_image(app: &crate::support::app::TestApp, prompt: &str) -> String {
    let response = app.submit_form_without_js(prompt).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let mut location = response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    for _ in 0..600 {
        if !location.starts_with("/making/") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let page = app.get(&location).await;
        if page.status() == StatusCode::SEE_OTHER {
            location = page.headers()[header::LOCATION]
                .to_str()
                .unwrap()
                .to_owned();
        }
    }
    location.strip_prefix("/i/").unwrap().to_owned()
}

fn meta<'a>(page: &'a str, property: &str) -> &'a str {
    let marker = format!(r#"property="{property}" content=""#);
    let marker_by_name = format!(r#"name="{property}" content=""#);
    let start = page
        .find(&marker)
        .map(|i| i + marker.len())
        .or_else(|| page.find(&marker_by_name).map(|i| i + marker_by_name.len()))
        .unwrap_or_else(|| panic!("no {property} in {page}"));
    &page[start..start + page[start..].find('"').unwrap()]
}

#[tokio::test]
async fn an_image_page_carries_link_preview_tags_with_absolute_urls() {
    let mut settings = Settings::default();
    settings.site.public_url = Some("https://lofi.example/".into());
    let app = spawn_app_with(settings);
    let id = made_image(&app, "rain on a tram window").await;
    let response = app.get(&format!("/i/{id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = body_text(response).await;
    assert_eq!(meta(&page, "og:title"), "rain on a tram window");
    assert_eq!(
        meta(&page, "og:url"),
        format!("https://lofi.example/i/{id}")
    );
    assert_eq!(
        meta(&page, "og:image"),
        format!("https://lofi.example/images/{id}.png")
    );
    assert_eq!(meta(&page, "twitter:card"), "summary_large_image");
    assert_eq!(meta(&page, "og:image:width"), "32");
    assert!(
        page.contains("<title>rain on a tram window · lofianime</title>"),
        "{page}"
    );
    // What anyone holding the link may see, and nothing about the visitor.
    assert!(!page.contains("generations left"), "{page}");
    assert!(!page.contains("Your recent images"), "{page}");
}

#[tokio::test]
async fn without_a_public_url_links_are_built_from_the_host() {
    let app = spawn_app();
    let id = made_image(&app, "a lighthouse").await;
    let request = Request::get(format!("/i/{id}"))
        .header(header::HOST, "pictures.test:8080")
        .body(Body::empty())
        .unwrap();
    let page = body_text(app.send(request).await).await;
    assert_eq!(
        meta(&page, "og:image"),
        format!("http://pictures.test:8080/images/{id}.png")
    );
    let forged = Request::get(format!("/i/{id}"))
        .header(header::HOST, "evil.test/\"><script>")
        .body(Body::empty())
        .unwrap();
    let page = body_text(app.send(forged).await).await;
    assert!(
        meta(&page, "og:image").starts_with("http://localhost/images/"),
        "{page}"
    );
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_a_404_page() {
    let app = spawn_app();
    for path in [
        "/i/0123456789abcdef0123456789abcdef",
        "/i/nope",
        "/i/0123456789ABCDEF0123456789ABCDEF",
        "/i/..%2F..%2Fetc",
        "/i/%2e%2e",
        "/i/%2E%2E/",
        "/i/",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let page = body_text(response).await;
        assert!(page.contains("Page not found"), "{path}: {page}");
    }
}

#[tokio::test]
async fn variants_are_webp_and_much_smaller_than_the_original() {
    // The offline painter at its real size (768 px), as a visitor gets it.
    let generator = Arc::new(OfflineGenerator::new(768, 768, Duration::ZERO));
    let app = spawn_app_on(
        Settings::default(),
        crate::support::app::local_components(generator),
    );
    let id = made_image(&app, "a ramen stall in the snow").await;
    let original = app.get(&format!("/images/{id}.png")).await;
    assert_eq!(original.headers()[header::CONTENT_TYPE], "image/png");
    let original = body_bytes(original).await.len();
    let mut sizes = Vec::new();
    for variant in ["medium", "display", "thumb"] {
        let response = app.get(&format!("/images/{id}-{variant}.webp")).await;
        assert_eq!(response.status(), StatusCode::OK, "{variant}");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "image/webp");
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        sizes.push(body_bytes(response).await.len());
    }
    assert!(
        sizes[0] * 5 <= original,
        "display {} B vs PNG {original} B",
        sizes[0]
    );
    assert!(sizes[2] <= 25_000, "thumbnail {} B", sizes[2]);
    assert_eq!(
        app.get(&format!("/images/{id}-large.webp")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/images/0123456789abcdef0123456789abcdef-thumb.webp")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_original_too_big_for_chat_apps_previews_as_its_display_variant() {
    // A noisy 2048 px PNG is well over 5 MB.
    let generator = Arc::new(OfflineGenerator::new(2048, 2048, Duration::ZERO));
    let mut settings = Settings::default();
    settings.site.public_url = Some("https://lofi.example".into());
    let app = spawn_app_on(settings, crate::support::app::local_components(generator));
    let id = made_image(&app, "a very large harbour").await;
    let original = body_bytes(app.get(&format!("/images/{id}.png")).await).await;
    assert!(original.len() > 5_000_000, "{} B", original.len());
    let page = body_text(app.get(&format!("/i/{id}")).await).await;
    assert_eq!(
        meta(&page, "og:image"),
        format!("https://lofi.example/images/{id}-display.webp")
    );
    // Download still gives the original.
    assert!(
        page.contains(&format!(r#"href="/images/{id}.png""#)),
        "{page}"
    );
}

#[tokio::test]
async fn with_a_public_base_url_pages_and_the_json_api_point_at_it() {
    let mut settings = Settings::default();
    settings.storage.public_base_url = Some("https://images.example/lofi".into());
    let app = spawn_app_with(settings);
    // The JSON API answers with the public URL.
    let response = app
        .send(
            Request::post("/api/ai")
                .body(Body::from(r#"{"prompt": "a tram under a bridge"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let urls: Vec<String> = serde_json::from_slice(&body_bytes(response).await).unwrap();
    let id = urls[0]
        .strip_prefix("https://images.example/lofi/")
        .and_then(|file| file.strip_suffix(".png"))
        .unwrap_or_else(|| panic!("{urls:?}"));
    // The image page shows the variants from there, and lets the browser load them.
    let response = app.get(&format!("/i/{id}")).await;
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("img-src 'self' data: https://images.example;"),
        "{policy}"
    );
    let page = body_text(response).await;
    assert!(
        page.contains(&format!(
            r#"src="https://images.example/lofi/{id}-medium.webp""#
        )),
        "{page}"
    );
    // A 32 px picture: one size, once (no thumbnail stretched to the column).
    assert!(
        page.contains(&format!(
            r#"srcset="https://images.example/lofi/{id}-medium.webp 32w""#
        )),
        "{page}"
    );
    assert_eq!(
        meta(&page, "og:image"),
        format!("https://images.example/lofi/{id}.png")
    );
    // The app's own URLs keep working.
    assert_eq!(
        app.get(&format!("/images/{id}.png")).await.status(),
        StatusCode::OK
    );
    // The home page's recent list uses it too.
    let home = body_text(app.get("/").await).await;
    assert!(
        home.contains(&format!("https://images.example/lofi/{id}-thumb.webp")),
        "{home}"
    );
}

#[tokio::test]
async fn the_json_api_answers_before_any_variant_is_made_and_a_page_gets_its_variant_first() {
    // The painter at its real size, storing in a directory the test reads.
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let components = lofianime_domain::Components::local(
        Arc::new(OfflineGenerator::new(768, 768, Duration::ZERO)),
        lofianime_domain::ObjectImageStore::local_dir(&images).unwrap(),
        Arc::new(lofianime_domain::SystemClock),
        lofianime_domain::DEFAULT_RECENT_KEEP,
    );
    let app = spawn_app_on(Settings::default(), components);
    let files_of = |id: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&images)
            .unwrap()
            .flatten()
            .map(|file| file.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(id))
            .collect();
        names.sort();
        names
    };

    // The JSON API: its answer is the original's URL, and only the original
    // and its record are stored (a moment later still).
    let response = app
        .send(
            Request::post("/api/ai")
                .body(Body::from(r#"{"prompt": "a tram at night"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let urls: Vec<String> = serde_json::from_slice(&body_bytes(response).await).unwrap();
    let id = urls[0]
        .trim_start_matches("/images/")
        .trim_end_matches(".png")
        .to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(files_of(&id), [format!("{id}.json"), format!("{id}.png")]);
    // Its page offers the medium variant, made on its first request at the
    // column's width, the thumbnail with it.
    let page = body_text(app.get(&format!("/i/{id}")).await).await;
    assert!(
        page.contains(&format!("/images/{id}-medium.webp 704w")),
        "{page}"
    );
    let medium = app.get(&format!("/images/{id}-medium.webp")).await;
    assert_eq!(medium.status(), StatusCode::OK);
    let medium = image::load_from_memory(&body_bytes(medium).await).unwrap();
    assert_eq!((medium.width(), medium.height()), (704, 704));
    assert_eq!(
        files_of(&id),
        [
            format!("{id}-medium.webp"),
            format!("{id}-thumb.webp"),
            format!("{id}.json"),
            format!("{id}.png")
        ]
    );

    // A page's generation: the variant it shows is there when it answers.
    let shown = made_image(&app, "a tram at dawn").await;
    assert!(
        files_of(&shown).contains(&format!("{shown}-medium.webp")),
        "{:?}",
        files_of(&shown)
    );
}
