//! The finished image: shown as its WebP variants (sized for the screen, with
//! its size reserved so nothing jumps), with Download (the original), Copy link
//! (the image's own page), "Create new image" and "Use this prompt again".

use super::words::again_url;
use crate::api::Generate;
use crate::wire::{ShownImage, Variant};
use leptos::prelude::*;
use leptos::server_fn::ServerFn;

/// How wide the result is laid out: the page's column (44rem), or the screen.
const RESULT_SIZES: &str = "(max-width: 44rem) 100vw, 44rem";

/// `copy_link` is the Copy link button: [`CopyButton`] inside an island that
/// already hydrates, the [`CopyLink`] island on a page that has none.
#[component]
pub fn ResultFigure<C: IntoView + 'static>(
    image: ShownImage,
    #[prop(optional)] node_ref: NodeRef<leptos::html::Figure>,
    copy_link: C,
) -> impl IntoView {
    let ShownImage {
        url,
        shown_url,
        srcset,
        prompt,
        width,
        height,
        download_name,
        aspect,
        seed,
        about,
        ..
    } = image;
    // One plain form, two submit buttons: the one pressed sends its `seed`
    // (empty for "More like this": a new one). A form post with or without
    // JavaScript; it lands on the new image's page.
    let same_again = seed.map(|seed| {
        view! {
            <button type="submit" name="seed" value=seed class="button secondary">
                "Same again"
            </button>
        }
    });
    // The server chose the variants (`srcset`); the size reserves the shape.
    let (shown_width, shown_height) = Variant::Medium.size_of(width, height);
    view! {
        <figure class="result" tabindex="-1" node_ref=node_ref>
            <img
                src=shown_url
                srcset=srcset
                sizes=RESULT_SIZES
                width=shown_width
                height=shown_height
                alt=prompt.clone()
            />
            <figcaption>
                {prompt.clone()} <span class="about">{about}</span>
            </figcaption>
            <div class="result-actions">
                <a class="button" href=url.clone() download=download_name>
                    "Download"
                </a>
                {copy_link}
                <a class="button secondary" href="/">
                    "Create new image"
                </a>
                <a class="button secondary" href=again_url(&prompt)>
                    "Use this prompt again"
                </a>
            </div>
            <form method="post" action=Generate::PATH class="result-actions again">
                <input type="hidden" name="prompt" value=prompt.clone() />
                <input type="hidden" name="aspect" value=aspect />
                <button type="submit" name="seed" value="" class="button secondary">
                    "More like this"
                </button>
                {same_again}
            </form>
        </figure>
    }
}

/// [`CopyButton`] as an island of its own, for a page without one.
#[island]
pub fn CopyLink(path: String) -> impl IntoView {
    view! { <CopyButton path /> }
}

/// Copies the absolute URL of `path` (an image's page). Hidden until hydrated:
/// without JavaScript there is nothing to click, and the page's address is the link.
#[component]
pub fn CopyButton(path: String) -> impl IntoView {
    let live = RwSignal::new(false);
    let said = RwSignal::new("Copy link");
    Effect::new(move |_| live.set(true));
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        copy_to_clipboard(&path, said);
        #[cfg(not(feature = "hydrate"))]
        let _ = &path;
    };
    view! {
        <button
            type="button"
            class="button secondary copy-link"
            hidden=move || !live.get()
            on:click=copy
        >
            {move || said.get()}
        </button>
    }
}

/// Writes this site's URL of `path` to the clipboard and says how that went.
#[cfg(feature = "hydrate")]
fn copy_to_clipboard(path: &str, said: RwSignal<&'static str>) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let origin = window.location().origin().unwrap_or_default();
    let promise = window
        .navigator()
        .clipboard()
        .write_text(&format!("{origin}{path}"));
    leptos::task::spawn_local(async move {
        let copied = wasm_bindgen_futures::JsFuture::from(promise).await.is_ok();
        said.set(if copied {
            "Link copied"
        } else {
            "Copy failed: use the address bar"
        });
    });
}
