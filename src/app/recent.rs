//! "Your recent images": the visitor's last generations, newest first, as
//! 320 px WebP thumbnails shown at 160 px; each opens the image's own page.

use super::words::describe_age;
use crate::api::{delete_image, DeleteImage};
use crate::wire::{image_page_path, RecentImage, Variant};
use leptos::prelude::*;
use leptos::server_fn::ServerFn;

#[component]
pub fn RecentImages(
    recent: RwSignal<Vec<RecentImage>>,
    now: RwSignal<u64>,
    keep: usize,
) -> impl IntoView {
    // Why the last Delete failed, if it did.
    let failed = RwSignal::new(None::<String>);
    view! {
        <section class="recent" aria-labelledby="recent-heading">
            <h2 id="recent-heading">"Your recent images"</h2>
            {move || failed.get().map(|text| view! { <p class="error">{text}</p> })}
            <Show
                when=move || !recent.with(Vec::is_empty)
                fallback=move || {
                    view! {
                        <p class="hint">
                            {format!("Nothing yet: your last {keep} images will be kept here.")}
                        </p>
                    }
                }
            >
                <ul class="recent-grid">
                    <For
                        each=move || recent.get()
                        key=|image| image.id.clone()
                        children=move |image| {
                            let created = image.created_ms;
                            let id = image.id.clone();
                            // Hydrated, Delete asks without a page load and
                            // takes the image off the list; without
                            // JavaScript it is a plain form post.
                            let remove = move |event: leptos::ev::SubmitEvent| {
                                event.prevent_default();
                                let id = id.clone();
                                leptos::task::spawn_local(async move {
                                    match delete_image(id.clone()).await {
                                        Ok(_) => {
                                            failed.set(None);
                                            recent.update(|list| list.retain(|image| image.id != id));
                                        }
                                        Err(error) => failed.set(Some(error.to_string())),
                                    }
                                });
                            };
                            // The thumbnail's own size, so its shape is
                            // reserved (entries from before sizes were kept:
                            // square).
                            let (width, height) = match (image.width, image.height) {
                                (0, _) | (_, 0) => (320, 320),
                                (w, h) => Variant::Thumb.size_of(w, h),
                            };
                            view! {
                                <li>
                                    <a href=image_page_path(&image.id)>
                                        <img
                                            src=image.thumb_url.clone()
                                            alt=image.prompt.clone()
                                            loading="lazy"
                                            decoding="async"
                                            width=width
                                            height=height
                                        />
                                        <span class="recent-prompt">{image.prompt.clone()}</span>
                                        <span class="recent-when">
                                            {move || describe_age(now.get(), created)}
                                        </span>
                                    </a>
                                    <form
                                        method="post"
                                        action=DeleteImage::PATH
                                        class="recent-delete"
                                        on:submit=remove
                                    >
                                        <input type="hidden" name="id" value=image.id.clone() />
                                        <button
                                            type="submit"
                                            class="link-button"
                                            aria-label=format!("Delete {}", image.prompt)
                                        >
                                            "Delete"
                                        </button>
                                    </form>
                                </li>
                            }
                        }
                    />
                </ul>
            </Show>
        </section>
    }
}
