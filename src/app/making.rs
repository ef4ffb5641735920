//! `/making/{job}`: the page a browser without JavaScript waits on while its
//! generation runs, instead of a form post held open for the whole run. It
//! says where the generation is, refreshes itself every two seconds (each
//! look tells the server someone is still waiting), offers Cancel as a plain
//! form, and goes to the image's page once there is one. Another visitor's (or
//! an unknown) generation is a 404.

use super::not_found::NotFound;
use crate::api::{making, Cancel};
use crate::wire::GENERIC_FAILURE;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::{Meta, Title};
use leptos_router::hooks::use_params_map;

/// Seconds between the waiting page's refreshes (each look promises the
/// next: the generation is watched until then, and the grace period after).
pub const REFRESH_SECS: u32 = 2;

#[component]
pub fn MakingPage() -> impl IntoView {
    let job = use_params_map()
        .with_untracked(|params| params.get("job"))
        .unwrap_or_default();
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {Suspend::new(async move {
                match making(job).await {
                    Ok(Some(view)) => view! { <Waiting view /> }.into_any(),
                    Ok(None) => view! { <NotFound message="No such generation." /> }.into_any(),
                    Err(_) => view! { <p class="error">{GENERIC_FAILURE}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Waiting(view: crate::progress::MakingView) -> impl IntoView {
    // Made: on to its page (a 303 the browser follows).
    #[cfg(feature = "ssr")]
    if let (Some(image), Some(response)) =
        (&view.image, use_context::<leptos_axum::ResponseOptions>())
    {
        if let Ok(location) =
            axum::http::HeaderValue::from_str(&crate::wire::image_page_path(image))
        {
            response.insert_header(axum::http::header::LOCATION, location);
            response.set_status(axum::http::StatusCode::SEE_OTHER);
        }
    }
    let running = view.image.is_none() && view.error.is_none();
    let again = again_link(&view.prompt);
    let refresh =
        running.then(|| view! { <Meta http_equiv="refresh" content=REFRESH_SECS.to_string() /> });
    let status = match (&view.error, running) {
        (Some(error), _) => view! {
            <p class="error">{error.clone()}</p>
            <p>
                <a class="button" href=again>"Try again"</a>
            </p>
        }
        .into_any(),
        (None, true) => view! {
            <p class="generating">
                <span class="phase">{view.label.clone()}</span>
                " "
                <span class="elapsed">{format!("{} s", view.elapsed_secs)}</span>
            </p>
            <p class="hint">"This page refreshes itself; the picture shows here when it is ready."</p>
            <form method="post" action=Cancel::PATH>
                <input type="hidden" name="job" value=view.job.clone() />
                <button type="submit" class="secondary cancel">"Cancel"</button>
            </form>
        }
        .into_any(),
        (None, false) => view! { <p>"Done: opening your picture…"</p> }.into_any(),
    };
    view! {
        <Title text="Making your picture · lofianime" />
        {refresh}
        <header class="masthead">
            <p class="site-name">
                <a href="/">"lofianime"</a>
            </p>
        </header>
        <main class="making-page">
            <h1>"Making your picture"</h1>
            <p class="making-prompt">{view.prompt.clone()}</p>
            <div id="status" class="status" role="status">{status}</div>
        </main>
    }
}

/// The home page with `prompt` typed in again.
fn again_link(prompt: &str) -> String {
    #[cfg(feature = "ssr")]
    {
        let encoded: String = url::form_urlencoded::byte_serialize(prompt.as_bytes()).collect();
        format!("/?prompt={encoded}")
    }
    #[cfg(not(feature = "ssr"))]
    {
        let _ = prompt;
        "/".to_owned()
    }
}
