//! `/i/{id}`: one image's own page, the link a visitor shares. Rendered on the
//! server with Open Graph and Twitter card tags (absolute URLs), so chat apps
//! show the picture; it shows only what anyone holding the link may see (the
//! image and its prompt). An unknown or malformed id is a 404 page.

use super::account::AccountBar;
use super::not_found::NotFound;
use super::result::{CopyLink, ResultFigure};
use crate::api::{image_details, who_is_visiting, DeleteImage};
use crate::wire::{image_page_path, is_hex_id, Viewer, GENERIC_FAILURE};
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::{Meta, Title};
use leptos_router::hooks::use_params_map;

#[component]
pub fn ImagePage() -> impl IntoView {
    let id = use_params_map()
        .with_untracked(|params| params.get("id"))
        .unwrap_or_default();
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {Suspend::new(async move {
                // A malformed id never reaches the store.
                let found = if is_hex_id(&id) { image_details(id).await } else { Ok(None) };
                match found {
                    Ok(Some(page)) => {
                        let viewer = who_is_visiting().await.ok();
                        view! { <SharedImage page viewer /> }.into_any()
                    }
                    Ok(None) => view! { <NotFound /> }.into_any(),
                    Err(crate::wire::ApiError::ImageRemoved) => {
                        view! { <NotFound message="This image was removed." /> }.into_any()
                    }
                    Err(crate::wire::ApiError::ImageDeleted) => {
                        view! { <NotFound message="This image was deleted." /> }.into_any()
                    }
                    Err(_) => view! { <p class="error">{GENERIC_FAILURE}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn SharedImage(page: crate::wire::ImagePage, viewer: Option<Viewer>) -> impl IntoView {
    let return_to = image_page_path(&page.image.id);
    // Only the visitor who made it sees Delete (a plain form: no script needed).
    let delete = page.yours.then(|| {
        let id = page.image.id.clone();
        view! {
            <form method="post" action=DeleteImage::PATH class="delete-image">
                <input type="hidden" name="id" value=id />
                <button type="submit" class="button secondary danger">
                    "Delete this image"
                </button>
            </form>
        }
    });
    let account_bar = viewer.map(|viewer| view! { <AccountBar viewer return_to /> });
    let prompt = page.image.prompt.clone();
    let title = if prompt.is_empty() {
        "A lofianime picture".to_owned()
    } else {
        prompt.clone()
    };
    let description = "A lofi-anime picture made from a prompt on lofianime.";
    view! {
        <Title text=format!("{title} · lofianime") />
        <Meta name="description" content=description />
        <Meta property="og:type" content="website" />
        <Meta property="og:site_name" content="lofianime" />
        <Meta property="og:title" content=title.clone() />
        <Meta property="og:description" content=description />
        <Meta property="og:url" content=page.page_url.clone() />
        <Meta property="og:image" content=page.preview_url.clone() />
        <Meta property="og:image:width" content=page.image.width.to_string() />
        <Meta property="og:image:height" content=page.image.height.to_string() />
        <Meta property="og:image:alt" content=prompt.clone() />
        <Meta name="twitter:card" content="summary_large_image" />
        <Meta name="twitter:title" content=title />
        <Meta name="twitter:image" content=page.preview_url />
        <header class="masthead">
            <p class="site-name">
                <a href="/">"lofianime"</a>
            </p>
            {account_bar}
        </header>
        <main class="image-page">
            <h1 class="visually-hidden">{prompt}</h1>
            <ResultFigure
                copy_link=view! { <CopyLink path=image_page_path(&page.image.id) /> }
                image=page.image
            />
            {delete}
        </main>
    }
}
