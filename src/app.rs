//! The page: a prompt form, a visible "Generating…" state, the image or a readable
//! error. Rendered on the server, hydrated in the browser, and usable without
//! JavaScript (the form posts to the same server function).

use crate::api::{cancel, current_quota, progress, recent_images, site_info, Generate};
use crate::progress::{JobState, Phase};
use crate::wire::{
    image_url_from_key, ApiError, AppInfo, Quota, QuotaReading, RecentImage, GENERIC_FAILURE,
    IMAGES_PATH,
};
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, Meta, MetaTags, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::hooks::use_query_map;
use leptos_router::{SsrMode, StaticSegment};

/// The Content-Security-Policy of every page: scripts only from the app itself
/// and the inline bootstrap carrying this response's nonce, WASM allowed to
/// compile, images and everything else from the app's own origin, no framing.
pub fn content_security_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
         object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The HTML document around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let (Some(nonce), Some(response)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) {
        if let Ok(policy) = axum::http::HeaderValue::from_str(&content_security_policy(&nonce)) {
            response.insert_header(axum::http::header::CONTENT_SECURITY_POLICY, policy);
        }
    }
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <link rel="icon" type="image/svg+xml" href="/favicon.svg" />
                <AutoReload options=options.clone() />
                // Hashed names when built with hash-files (cached for a year).
                <HashedStylesheet options=options.clone() id="leptos" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Title text="lofianime · lofi anime images from a prompt" />
        <Meta
            name="description"
            content="Type a scene and get a calm, lofi-anime picture of it."
        />
        <Router>
            <Routes fallback=NotFound>
                // Async: the whole page is rendered before it is sent, so it is
                // complete without JavaScript.
                <Route path=StaticSegment("") view=HomePage ssr=SsrMode::Async />
            </Routes>
        </Router>
    }
}

#[component]
fn HomePage() -> impl IntoView {
    let info = Resource::new_blocking(|| (), |_| site_info());
    let quota = Resource::new_blocking(|| (), |_| current_quota());
    let recent = Resource::new_blocking(|| (), |_| recent_images());
    view! {
        <header class="masthead">
            <h1>"lofianime"</h1>
            <p class="tagline">"Type a scene. Get a calm, lofi-anime picture of it."</p>
        </header>
        <main>
            <Suspense fallback=|| {
                view! { <p class="loading">"Loading…"</p> }
            }>
                {move || Suspend::new(async move {
                    match (info.await, quota.await) {
                        (Ok(info), Ok(reading)) => {
                            // The page works without the list if it cannot be read.
                            let recent = recent.await.unwrap_or_default();
                            view! { <Studio info reading recent /> }.into_any()
                        }
                        _ => {
                            view! {
                                <p class="error">{GENERIC_FAILURE}</p>
                            }
                                .into_any()
                        }
                    }
                })}
            </Suspense>
        </main>
    }
}

/// The visitor's clock: the server's reading until the page is hydrated, then
/// the browser's, ticking every second (an Effect never runs on the server).
fn ticking_clock(start_ms: u64) -> RwSignal<u64> {
    let now = RwSignal::new(start_ms);
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        {
            now.set(js_sys::Date::now() as u64);
            set_interval(
                move || now.set(js_sys::Date::now() as u64),
                std::time::Duration::from_secs(1),
            );
        }
    });
    now
}

/// "5 h 12 min", "12 min", "42 s": how long until `reset_ms`.
pub fn describe_wait(now_ms: u64, reset_ms: u64) -> String {
    let secs = reset_ms.saturating_sub(now_ms).div_ceil(1000);
    match (secs / 3600, (secs % 3600).div_ceil(60), secs) {
        (0, _, s) if s < 60 => format!("{s} s"),
        (0, m, _) => format!("{m} min"),
        (h, 60, _) => format!("{} h", h + 1),
        (h, 0, _) => format!("{h} h"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

/// A fresh generation id from the browser's random source; empty on the server
/// (a page without JavaScript sends none and simply waits for its answer).
fn new_job_id() -> String {
    #[cfg(feature = "hydrate")]
    {
        let mut bytes = [0u8; 16];
        let filled = web_sys::window()
            .and_then(|window| window.crypto().ok())
            .is_some_and(|crypto| crypto.get_random_values_with_u8_array(&mut bytes).is_ok());
        if filled {
            return crate::progress::JobId::from_bytes(bytes).to_string();
        }
    }
    String::new()
}

/// The browser's clock, in epoch milliseconds (0 on the server).
fn browser_now_ms() -> u64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::now() as u64
    }
    #[cfg(not(feature = "hydrate"))]
    {
        0
    }
}

/// A generation in flight as the page follows it: its id, when it was sent, the
/// last reading of its progress, and whether the visitor asked to cancel it.
#[derive(Clone, Copy)]
struct Tracking {
    in_flight: RwSignal<Option<String>>,
    sent_at: RwSignal<u64>,
    reading: RwSignal<Option<JobState>>,
    cancelling: RwSignal<bool>,
}

/// While a submission is pending, polls its progress twice a second; the next
/// submission gets a fresh id in `job_id`.
fn follow_generations(pending: Memo<bool>, job_id: RwSignal<String>) -> Tracking {
    let tracking = Tracking {
        in_flight: RwSignal::new(None),
        sent_at: RwSignal::new(0),
        reading: RwSignal::new(None),
        cancelling: RwSignal::new(false),
    };
    let polling = StoredValue::new(None::<IntervalHandle>);
    Effect::new(move |_| {
        if pending.get() {
            // The form has been read: this id is the submission's; the next
            // submission gets another.
            let id = job_id.get_untracked();
            job_id.set(new_job_id());
            tracking.sent_at.set(browser_now_ms());
            tracking.reading.set(None);
            tracking.cancelling.set(false);
            tracking.in_flight.set((!id.is_empty()).then(|| id.clone()));
            if !id.is_empty() {
                let ask = move || {
                    let id = id.clone();
                    leptos::task::spawn_local(async move {
                        if let Ok(Some(reading)) = progress(id).await {
                            if pending.get_untracked() {
                                tracking.reading.set(Some(reading.state));
                            }
                        }
                    });
                };
                let handle = set_interval_with_handle(ask, std::time::Duration::from_millis(500));
                polling.set_value(handle.ok());
            }
        } else {
            if let Some(handle) = polling.get_value() {
                handle.clear();
            }
            polling.set_value(None);
            tracking.in_flight.set(None);
        }
    });
    tracking
}

/// After each answer: the new quota, the focus on the result (or back on the
/// prompt after an error), and a fresh recent-images list.
fn after_each_answer(
    action: ServerAction<Generate>,
    quota: RwSignal<Option<Quota>>,
    recent: RwSignal<Vec<RecentImage>>,
    prompt_input: NodeRef<leptos::html::Input>,
    result_figure: NodeRef<leptos::html::Figure>,
) {
    Effect::new(move |_| match action.value().get() {
        Some(Ok(created)) => {
            if let Some(q) = created.quota {
                quota.set(Some(q));
            }
            // Once drawn, the result takes the focus: a screen reader reads it and
            // Tab reaches its Download button next.
            request_animation_frame(move || {
                if let Some(figure) = result_figure.get_untracked() {
                    let _ = figure.focus();
                }
            });
            leptos::task::spawn_local(async move {
                if let Ok(list) = recent_images().await {
                    recent.set(list);
                }
            });
        }
        Some(Err(error)) => {
            if let ApiError::RateLimited(q) = error {
                quota.set(Some(q));
            }
            // The message is announced from the status region; the visitor can
            // edit the prompt straight away.
            request_animation_frame(move || {
                if let Some(input) = prompt_input.get_untracked() {
                    let _ = input.focus();
                }
            });
        }
        None => {}
    });
}

/// Past the reset the visitor has more (and a full quota a new reset time): asks
/// the server for the new numbers, once per reset.
fn renew_at_reset(quota: RwSignal<Option<Quota>>, now: RwSignal<u64>) {
    let asked_for_reset = StoredValue::new(0u64);
    Effect::new(move |_| {
        let Some(q) = quota.get() else {
            return;
        };
        if now.get() > q.reset_ms && asked_for_reset.get_value() != q.reset_ms {
            asked_for_reset.set_value(q.reset_ms);
            leptos::task::spawn_local(async move {
                if let Ok(fresh) = current_quota().await {
                    quota.set(fresh.quota);
                }
            });
        }
    });
}

/// The form, its progress and its result.
#[component]
fn Studio(info: AppInfo, reading: QuotaReading, recent: Vec<RecentImage>) -> impl IntoView {
    let action = ServerAction::<Generate>::new();
    let now = ticking_clock(reading.now_ms);
    // The quota shown: the server's reading, then whatever the last answer said.
    let quota = RwSignal::new(reading.quota);
    let recent = RwSignal::new(recent);
    let prompt_input = NodeRef::<leptos::html::Input>::new();
    let result_figure = NodeRef::<leptos::html::Figure>::new();

    // Each submission carries a fresh id, so the page can follow it and cancel it.
    // Effects run only in the browser, once the page is hydrated: the form then
    // says it is live (tests and the first-load measurement wait for this).
    let job_id = RwSignal::new(String::new());
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| {
        job_id.set(new_job_id());
        hydrated.set(true);
    });
    let pending = action.pending();
    let tracking = follow_generations(pending, job_id);
    after_each_answer(action, quota, recent, prompt_input, result_figure);
    renew_at_reset(quota, now);
    let used_up = move || quota.get().is_some_and(|q| q.remaining == 0);
    let query = use_query_map();
    // After a form post without JavaScript, the page URL carries the prompt (and the
    // image, on success): show them as if the action had just finished.
    let typed_prompt = query
        .with_untracked(|q| q.get("prompt"))
        .unwrap_or_default();
    let shown_image = Memo::new(move |_| match action.value().get() {
        Some(Ok(created)) => Some((created.url, created.prompt)),
        Some(Err(_)) => None,
        None => query.with(|q| {
            let url = image_url_from_key(&q.get("image")?)?;
            Some((url, q.get("prompt").unwrap_or_default()))
        }),
    });
    let error = Signal::derive(move || match action.value().get() {
        Some(Err(error)) if !pending.get() => Some(error),
        _ => None,
    });

    view! {
        {info.offline_generator.then(|| view! { <OfflineNotice /> })}
        <ActionForm
            action
            attr:class="prompt-form"
            attr:data-hydrated=move || hydrated.get().to_string()
        >
            <label for="prompt">"Enter your prompt"</label>
            <div class="prompt-row">
                <input
                    id="prompt"
                    name="prompt"
                    type="text"
                    required
                    maxlength=info.max_prompt_chars
                    autocomplete="off"
                    placeholder="a quiet train station at dusk, cherry blossoms"
                    value=typed_prompt
                    aria-describedby="status"
                    node_ref=prompt_input
                />
                <input type="hidden" name="job" prop:value=move || job_id.get() />
                <button type="submit" disabled=move || pending.get() || used_up()>
                    "Submit"
                </button>
            </div>
        </ActionForm>
        <StatusRegion pending tracking error quota now />
        {move || {
            shown_image
                .get()
                .map(|(url, prompt)| view! { <ResultFigure url prompt node_ref=result_figure /> })
        }}
        <RecentImages recent now keep=info.recent_images />
        <footer>
            <p>
                {format!(
                    "Each visitor gets {} generation{} per {}.",
                    info.limit,
                    if info.limit == 1 { "" } else { "s" },
                    describe_window(info.window_ms),
                )}
            </p>
        </footer>
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

/// The live region: the phase, elapsed time and Cancel while a generation runs,
/// then the error if there is one, and the quota line.
#[component]
fn StatusRegion(
    pending: Memo<bool>,
    tracking: Tracking,
    error: Signal<Option<ApiError>>,
    quota: RwSignal<Option<Quota>>,
    now: RwSignal<u64>,
) -> impl IntoView {
    let Tracking {
        in_flight,
        sent_at,
        reading,
        cancelling,
    } = tracking;
    let phase_line = move || match reading.get() {
        Some(JobState::Running(phase)) => phase.label(),
        // Finished on the server; the answer is on its way.
        Some(JobState::Finished) => Phase::Saving.label(),
        Some(JobState::Canceled | JobState::Failed) => "Stopping…".to_owned(),
        None => Phase::Waiting.label(),
    };
    let elapsed = move || {
        let secs = now.get().saturating_sub(sent_at.get()) / 1000;
        format!("{secs} s")
    };
    let cancel_generation = move |_| {
        let Some(id) = in_flight.get_untracked() else {
            return;
        };
        cancelling.set(true);
        leptos::task::spawn_local(async move {
            // The answer to the generation itself says how it ended.
            if cancel(id).await.is_err() {
                cancelling.set(false);
            }
        });
    };
    let error_line = move || {
        error.get().map(|error| {
            let class = if matches!(error, ApiError::Canceled { .. }) {
                "notice-line"
            } else {
                "error"
            };
            // The shared budget's refusal says when it reopens (the visitor's own
            // quota line says so for their limit).
            let text = match &error {
                ApiError::BudgetSpent(budget) => format!(
                    "{error} It reopens in {}.",
                    describe_wait(now.get(), budget.reset_ms),
                ),
                other => other.to_string(),
            };
            view! { <p class=class>{text}</p> }
        })
    };
    view! {
        <div id="status" class="status" role="status" aria-live="polite">
            <Show when=move || pending.get()>
                <div class="generating">
                    <span class="spinner" aria-hidden="true"></span>
                    <span class="phase">{phase_line}</span>
                    <span class="elapsed" aria-hidden="true">
                        {move || (sent_at.get() > 0).then(elapsed)}
                    </span>
                    <Show when=move || in_flight.get().is_some()>
                        <button
                            type="button"
                            class="secondary cancel"
                            on:click=cancel_generation
                            disabled=move || cancelling.get()
                        >
                            {move || if cancelling.get() { "Cancelling…" } else { "Cancel" }}
                        </button>
                    </Show>
                </div>
            </Show>
            {error_line}
            <QuotaLine quota now />
        </div>
    }
}

/// "3 of 5 generations left. Renews in 20 h 57 min.", or the closed form's line.
#[component]
fn QuotaLine(quota: RwSignal<Option<Quota>>, now: RwSignal<u64>) -> impl IntoView {
    move || {
        quota.get().map(|q| {
            let wait = describe_wait(now.get(), q.reset_ms);
            if q.remaining == 0 {
                view! {
                    <p class="quota quota-empty">
                        <span>{format!("0 of {} generations left.", q.limit)}</span>
                        " "
                        <span>{format!("The form reopens in {wait}.")}</span>
                    </p>
                }
                .into_any()
            } else {
                view! {
                    <p class="quota">
                        <span>{format!("{} of {} generations left.", q.remaining, q.limit)}</span>
                        " "
                        <span>{format!("Renews in {wait}.")}</span>
                    </p>
                }
                .into_any()
            }
        })
    }
}

/// The finished image with Download, "Create new image" and "Use this prompt
/// again": plain links with full page loads (rel=external), so they work the same
/// with and without JavaScript.
#[component]
fn ResultFigure(
    url: String,
    prompt: String,
    node_ref: NodeRef<leptos::html::Figure>,
) -> impl IntoView {
    view! {
        <figure class="result" tabindex="-1" node_ref=node_ref>
            <img src=url.clone() alt=prompt.clone() />
            <figcaption>{prompt.clone()}</figcaption>
            <div class="result-actions">
                <a class="button" href=url.clone() download=download_name(&prompt, &url)>
                    "Download"
                </a>
                <a class="button secondary" href="/" rel="external">
                    "Create new image"
                </a>
                <a class="button secondary" href=again_url(&prompt) rel="external">
                    "Use this prompt again"
                </a>
            </div>
        </figure>
    }
}

/// The visitor's last generations, newest first; each opens as the result.
#[component]
fn RecentImages(recent: RwSignal<Vec<RecentImage>>, now: RwSignal<u64>, keep: usize) -> AnyView {
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
                        key=|image| image.url.clone()
                        children=move |image| {
                            let href = image
                                .url
                                .strip_prefix(IMAGES_PATH)
                                .map(|key| format!("{}&image={key}", again_url(&image.prompt)))
                                .unwrap_or_else(|| image.url.clone());
                            let created = image.created_ms;
                            view! {
                                <li>
                                    <a href=href rel="external">
                                        <img
                                            src=image.url.clone()
                                            alt=image.prompt.clone()
                                            loading="lazy"
                                            width="160"
                                            height="160"
                                        />
                                        <span class="recent-prompt">{image.prompt.clone()}</span>
                                        <span class="recent-when">
                                            {move || describe_age(now.get(), created)}
                                        </span>
                                    </a>
                                </li>
                            }
                        }
                    />
                </ul>
            </Show>
        </section>
    }
    .into_any()
}

/// "just now", "5 min ago", "3 h ago", "2 days ago".
pub fn describe_age(now_ms: u64, then_ms: u64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    match secs {
        0..60 => "just now".to_owned(),
        60..3_600 => format!("{} min ago", secs / 60),
        3_600..86_400 => format!("{} h ago", secs / 3_600),
        86_400..172_800 => "yesterday".to_owned(),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// A file name for a downloaded image, from its prompt: "a-quiet-train-station.png".
pub fn download_name(prompt: &str, url: &str) -> String {
    let extension = url.rsplit_once('.').map_or("png", |(_, ext)| ext);
    let mut slug = String::new();
    for word in prompt
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if slug.len() + word.len() + 1 > 60 {
            break;
        }
        if !slug.is_empty() {
            slug.push('-');
        }
        slug.push_str(&word.to_lowercase());
    }
    if slug.is_empty() {
        slug.push_str("lofianime");
    }
    format!("{slug}.{extension}")
}

/// The page with `prompt` already typed in.
fn again_url(prompt: &str) -> String {
    let encoded: String = prompt
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            other => format!("%{other:02X}"),
        })
        .collect();
    format!("/?prompt={encoded}")
}

/// "day", "6 hours", "90 seconds": a window length as a person says it.
pub fn describe_window(window_ms: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (86_400_000, "day"),
        (3_600_000, "hour"),
        (60_000, "minute"),
        (1_000, "second"),
        (1, "millisecond"),
    ];
    let (size, name) = UNITS
        .into_iter()
        .find(|(size, _)| window_ms.is_multiple_of(*size))
        .unwrap_or((1, "millisecond"));
    match window_ms / size {
        1 => name.to_owned(),
        n => format!("{n} {name}s"),
    }
}

#[component]
fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(axum::http::StatusCode::NOT_FOUND);
    }
    view! {
        <main class="not-found">
            <h1>"Page not found"</h1>
            <p>
                <a href="/">"Back to lofianime"</a>
            </p>
        </main>
    }
}

#[cfg(test)]
mod tests {
    use super::describe_window;

    #[test]
    fn downloads_are_named_after_the_prompt() {
        use super::download_name;
        assert_eq!(
            download_name("A quiet train station, at dusk!", "/images/x.png"),
            "a-quiet-train-station-at-dusk.png"
        );
        assert_eq!(download_name("東京の夜", "/images/x.jpg"), "東京の夜.jpg");
        assert_eq!(download_name("!!!", "/images/x.png"), "lofianime.png");
        assert!(download_name(&"word ".repeat(40), "/images/x.png").len() <= 64);
    }

    #[test]
    fn the_prompt_again_link_encodes_the_prompt() {
        assert_eq!(
            super::again_url("a cat & dog?"),
            "/?prompt=a+cat+%26+dog%3F"
        );
    }

    #[test]
    fn waits_read_the_way_people_say_them() {
        use super::describe_wait;
        assert_eq!(describe_wait(0, 42_000), "42 s");
        assert_eq!(describe_wait(0, 12 * 60_000), "12 min");
        assert_eq!(describe_wait(0, 5 * 3_600_000 + 12 * 60_000), "5 h 12 min");
        assert_eq!(describe_wait(0, 3_600_000), "1 h");
        assert_eq!(describe_wait(0, 3_600_000 - 1), "1 h");
        assert_eq!(describe_wait(10, 5), "0 s");
    }

    #[test]
    fn ages_read_the_way_people_say_them() {
        use super::describe_age;
        assert_eq!(describe_age(59_999, 0), "just now");
        assert_eq!(describe_age(5 * 60_000, 0), "5 min ago");
        assert_eq!(describe_age(3 * 3_600_000 + 5, 0), "3 h ago");
        assert_eq!(describe_age(30 * 3_600_000, 0), "yesterday");
        assert_eq!(describe_age(3 * 86_400_000, 0), "3 days ago");
        assert_eq!(
            describe_age(0, 10),
            "just now",
            "a clock behind is not negative"
        );
    }

    #[test]
    fn windows_read_the_way_people_say_them() {
        assert_eq!(describe_window(86_400_000), "day");
        assert_eq!(describe_window(2 * 86_400_000), "2 days");
        assert_eq!(describe_window(6 * 3_600_000), "6 hours");
        assert_eq!(describe_window(90_000), "90 seconds");
        assert_eq!(describe_window(250), "250 milliseconds");
    }
}
