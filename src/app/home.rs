//! The front page: the header, the offline notice, the studio island and the
//! footer. Rendered on the server only; the studio gets what it needs as props.

use super::account::{AccountBar, SignInPrompt};
use super::form::ShapeChoice;
use super::studio::Studio;
use super::words::{describe_window, error_sentence};
use crate::api::{
    current_quota, recent_images, running_generations, site_info, who_is_visiting, DeleteImage,
    Generate,
};
use crate::wire::{making_path, ApiError, Viewer, GENERIC_FAILURE};
use leptos::prelude::*;
use leptos::server::ServerActionError;
use leptos::server_fn::error::ServerFnUrlError;
use leptos::server_fn::ServerFn;
use leptos_meta::{Meta, Title};
use leptos_router::hooks::use_query_map;

#[component]
pub fn HomePage() -> impl IntoView {
    // After a form post without JavaScript failed, the page URL carries the typed
    // prompt and the error (`?prompt=…&__err=…`); "Use this prompt again" links
    // carry the prompt.
    let typed_prompt = use_query_map()
        .with_untracked(|q| q.get("prompt"))
        .unwrap_or_default();
    // The shape chosen before that post stays chosen.
    let typed_aspect = use_query_map()
        .with_untracked(|q| q.get("aspect"))
        .and_then(|text| crate::shape::Aspect::parse(&text))
        .unwrap_or_default()
        .as_str()
        .to_owned();
    let first_error = use_context::<ServerActionError>()
        .filter(|posted| posted.path() == Generate::PATH || posted.path() == DeleteImage::PATH)
        .map(|posted| ServerFnUrlError::<ApiError>::decode_err(posted.err()));

    view! {
        <Title text="lofianime · lofi anime images from a prompt" />
        <Meta
            name="description"
            content="Type a scene and get a calm, lofi-anime picture of it."
        />
        <header class="masthead">
            <h1>"lofianime"</h1>
            <p class="tagline">"Type a scene. Get a calm, lofi-anime picture of it."</p>
            <Suspense>
                {Suspend::new(async move {
                    who_is_visiting()
                        .await
                        .ok()
                        .map(|viewer| view! { <AccountBar viewer return_to="/".to_owned() /> })
                })}
            </Suspense>
        </header>
        <main>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {Suspend::new(async move {
                    let (Ok(info), Ok(viewer)) = (site_info().await, who_is_visiting().await) else {
                        return view! { <p class="error">{GENERIC_FAILURE}</p> }.into_any();
                    };
                    let footer = footer(&viewer, info.limit, info.window_ms);
                    let notice = info.offline_generator.then(|| view! { <OfflineNotice /> });
                    if viewer.paused {
                        return view! {
                            {notice}
                            <p class="notice paused-notice" role="status">
                                "Generation is paused by the site's owner. Please try again later."
                            </p>
                            <footer>
                                <p>{footer}</p>
                            </footer>
                        }
                            .into_any();
                    }
                    if !viewer.may_generate {
                        let provider = viewer.sign_in_with.unwrap_or_default();
                        return view! {
                            {notice}
                            <SignInPrompt provider return_to="/".to_owned() />
                            <footer>
                                <p>{footer}</p>
                            </footer>
                        }
                            .into_any();
                    }
                    let Ok(reading) = current_quota().await else {
                        return view! { <p class="error">{GENERIC_FAILURE}</p> }.into_any();
                    };
                    // The page works without the list if it cannot be read.
                    let recent = recent_images().await.unwrap_or_default();
                    // A generation of theirs still running (a reload, another
                    // tab or device): the studio follows it once hydrated;
                    // without JavaScript, a link to its waiting page.
                    let following = running_generations()
                        .await
                        .ok()
                        .and_then(|running| running.into_iter().next());
                    let typed = following
                        .as_ref()
                        .map(|running| running.prompt.clone())
                        .unwrap_or_else(|| typed_prompt.clone());
                    let waiting_link = following.as_ref().map(|running| {
                        view! {
                            <noscript>
                                <p class="notice">
                                    "A picture of yours is being made. "
                                    <a href=making_path(&running.job)>"See how it is going"</a>
                                </p>
                            </noscript>
                        }
                    });
                    view! {
                        {notice}
                        {waiting_link}
                        <ShapeChoice chosen=typed_aspect.clone() />
                        <Studio
                            max_prompt_chars=info.max_prompt_chars
                            recent_images_kept=info.recent_images
                            reading
                            recent
                            following=following.map(|running| running.job)
                            typed_prompt=typed
                            first_error=first_error.as_ref().map(|error| error_sentence(error, reading.now_ms))
                            account=viewer.account.map(|account| account.email)
                        />
                        <footer>
                            <p>{footer}</p>
                        </footer>
                    }
                        .into_any()
                })}
            </Suspense>
        </main>
    }
}

/// "Each visitor gets 5 generations per day.", or with sign-in, who gets what.
fn footer(viewer: &Viewer, limit: u64, window_ms: u64) -> String {
    let window = describe_window(window_ms);
    let count = |n: u64| format!("{n} generation{}", if n == 1 { "" } else { "s" });
    match (&viewer.sign_in_with, viewer.signed_out_limit) {
        (None, _) => format!("Each visitor gets {} per {window}.", count(limit)),
        (Some(_), Some(signed_out)) => format!(
            "Each account gets {} per {window}; signed out, {}.",
            count(limit),
            count(signed_out)
        ),
        (Some(_), None) => format!("Each account gets {} per {window}.", count(limit)),
    }
}

/// Says that no AI model is called.
#[component]
fn OfflineNotice() -> impl IntoView {
    view! {
        <p class="notice">
            <strong>"Offline generator. "</strong>
            "Pictures are painted on this server and no AI model is called. "
            "The owner switches to the real model by setting "
            <code>"REPLICATE_API_TOKEN"</code>
            "."
        </p>
    }
}
