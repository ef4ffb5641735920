//! The prompt form and, under it, the live status: the phase, elapsed time and
//! Cancel while a generation runs, then the error if there is one, and the quota.

use super::generation::{StudioState, Tracking};
use super::quota::QuotaLine;
use super::words::error_sentence;
use crate::api::{cancel, Generate};
use crate::progress::{JobState, Phase};
use crate::wire::ApiError;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;

/// The form posts to `POST /api/generate`: through the server action once the
/// island is hydrated, as a plain form post without JavaScript. (A plain form
/// rather than `ActionForm`: reading two fields by hand keeps a form-data
/// decoder out of the bundle.)
#[component]
pub fn PromptForm(state: StudioState, max_chars: usize, typed_prompt: String) -> impl IntoView {
    let StudioState {
        pending,
        job_id,
        hydrated,
        prompt_input,
        ..
    } = state;
    // Hydrated, the form sends through the action (no page load); without
    // JavaScript it is a plain POST to the same server function.
    let submit = move |event: leptos::ev::SubmitEvent| {
        event.prevent_default();
        let prompt = prompt_input
            .get_untracked()
            .map(|input| input.value())
            .unwrap_or_default();
        state.send(prompt, checked_shape());
    };

    view! {
        <form
            method="post"
            action=Generate::PATH
            id="prompt-form"
            class="prompt-form"
            data-hydrated=move || hydrated.get().to_string()
            on:submit=submit
        >
            <label for="prompt">"Enter your prompt"</label>
            <div class="prompt-row">
                <input
                    id="prompt"
                    name="prompt"
                    type="text"
                    required
                    maxlength=max_chars
                    autocomplete="off"
                    placeholder="a quiet train station at dusk, cherry blossoms"
                    value=typed_prompt
                    aria-describedby="status"
                    node_ref=prompt_input
                />
                <input type="hidden" name="job" prop:value=move || job_id.get() />
                <button type="submit" disabled=move || pending.get() || state.used_up()>
                    "Submit"
                </button>
            </div>
        </form>
    }
}

/// The live region under the form.
#[component]
pub fn StatusRegion(
    state: StudioState,
    first_error: Option<String>,
    account: Option<String>,
) -> impl IntoView {
    let StudioState {
        pending,
        tracking,
        error,
        quota,
        now,
        ..
    } = state;
    let first_error = StoredValue::new(first_error);
    let error_line = move || {
        let (class, text) = match error.get() {
            Some(error) => (
                if matches!(error, ApiError::Canceled { .. }) {
                    "notice-line"
                } else {
                    "error"
                },
                error_sentence(&error, now.get()),
            ),
            // Until the first answer: the error a form post without JavaScript
            // came back with, if any.
            None if !pending.get() && state.action.value().with(Option::is_none) => {
                ("error", first_error.get_value()?)
            }
            None => return None,
        };
        Some(view! { <p class=class>{text}</p> })
    };
    view! {
        <div id="status" class="status" role="status" aria-live="polite">
            <Show when=move || pending.get()>
                <Progress tracking now />
            </Show>
            {error_line}
            <QuotaLine quota now account />
        </div>
    }
}

/// "Generating… 45%", the seconds since the submission, and Cancel.
#[component]
fn Progress(tracking: Tracking, now: RwSignal<u64>) -> impl IntoView {
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
    view! {
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
    }
}

/// The shape the form's radio buttons say ([`ShapeChoice`]; empty on the
/// server).
fn checked_shape() -> String {
    #[cfg(feature = "hydrate")]
    {
        let checked = web_sys::window()
            .and_then(|window| window.document())
            .and_then(|document| {
                document
                    .query_selector("input[name=aspect]:checked")
                    .ok()
                    .flatten()
            })
            .and_then(|radio| radio.get_attribute("value"));
        if let Some(shape) = checked {
            return shape;
        }
    }
    String::new()
}

/// The shape radio buttons, rendered by the server outside the studio island
/// and tied to its form by `form="prompt-form"`: the browser keeps the choice
/// from one generation to the next and sends it without JavaScript, and the
/// bundle carries no code for them. `chosen`: the shape chosen before.
#[component]
pub fn ShapeChoice(chosen: String) -> impl IntoView {
    let is = |shape: &str| chosen == shape;
    view! {
        <fieldset class="shapes" form="prompt-form">
            <legend>"Shape"</legend>
            <label class="shape-choice">
                <input type="radio" name="aspect" value="square" form="prompt-form" checked=is("square") />
                "Square"
            </label>
            <label class="shape-choice">
                <input type="radio" name="aspect" value="portrait" form="prompt-form" checked=is("portrait") />
                "Portrait"
            </label>
            <label class="shape-choice">
                <input type="radio" name="aspect" value="landscape" form="prompt-form" checked=is("landscape") />
                "Landscape"
            </label>
        </fieldset>
    }
}
