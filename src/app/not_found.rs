//! The 404 page.

use leptos::prelude::*;

/// Answers 404 with a page that leads back home (`message`: what happened,
/// when more is known than "not found").
#[component]
pub fn NotFound(#[prop(optional)] message: Option<&'static str>) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(axum::http::StatusCode::NOT_FOUND);
    }
    view! {
        <leptos_meta::Title text="Not found · lofianime" />
        <main class="not-found">
            <h1>{message.unwrap_or("Page not found")}</h1>
            <p>
                <a href="/">"Back to lofianime"</a>
            </p>
        </main>
    }
}
