//! The prompt form and, under it, the live status: the phase, elapsed time and
//! Cancel while a generation runs, then the error if there is one, and the quota.

use super::generation::{StudioState, Tracking};
use super::quota::QuotaLine;
use super::words::describe_wait;
use crate::api::cancel;
use crate::progress::{JobState, Phase};
use crate::wire::ApiError;
use leptos::prelude::*;

/// The form posts to `POST /api/generate`: through the server action once the
/// island is hydrated, as a plain form post without JavaScript.
#[component]
pub fn PromptForm(state: StudioState, max_chars: usize, typed_prompt: String) -> impl IntoView {
    let StudioState {
        action,
        pending,
        job_id,
        hydrated,
        prompt_input,
        ..
    } = state;
    view! {
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
        </ActionForm>
    }
}

/// The live region under the form.
#[component]
pub fn StatusRegion(state: StudioState) -> impl IntoView {
    let StudioState {
        pending,
        tracking,
        error,
        quota,
        now,
        ..
    } = state;
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
                <Progress tracking now />
            </Show>
            {error_line}
            <QuotaLine quota now />
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
