//! "Your recent images": the visitor's last generations, newest first, as
//! 320 px WebP thumbnails shown at 160 px; each opens the image's own page.

use super::words::describe_age;
use crate::api::DeleteImage;
use crate::wire::{image_page_path, RecentImage, Variant};
use leptos::prelude::*;
use leptos::server_fn::ServerFn;

#[component]
pub fn RecentImages(
    recent: RwSignal<Vec<RecentImage>>,
    now: RwSignal<u64>,
    keep: usize,
) -> impl IntoView {
    view! {
        <section class="recent" aria-labelledby="recent-heading">
            <h2 id="recent-heading">"Your recent images"</h2>

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
                                    // A plain form (no script): the page
                                    // comes back without the image.
                                    <form
                                        method="post"
                                        action=DeleteImage::PATH
                                        class="recent-delete"
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
