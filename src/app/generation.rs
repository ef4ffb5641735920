//! The studio's client-side state in one place: the server action, the
//! generation in flight (its id, progress and cancel), the quota and its clock,
//! the result shown and the recent images. Built once by [`StudioState::new`];
//! the components only read it. Effects run only in the browser, once the
//! island is hydrated.

use crate::api::{current_quota, generate, progress, Generate};
use crate::progress::JobState;
use crate::wire::{ApiError, CreatedImage, Quota, QuotaReading, RecentImage, ShownImage};
use leptos::prelude::*;

/// A generation in flight as the page follows it: its id, when it was sent, the
/// last reading of its progress, and whether the visitor asked to cancel it.
#[derive(Clone, Copy)]
pub struct Tracking {
    pub in_flight: RwSignal<Option<String>>,
    pub sent_at: RwSignal<u64>,
    pub reading: RwSignal<Option<JobState>>,
    pub cancelling: RwSignal<bool>,
}

#[derive(Clone, Copy)]
pub struct StudioState {
    /// Calls the `generate` server function. (A plain action rather than a
    /// `ServerAction`: this page reads a no-JavaScript post's error itself, so
    /// the bundle needs no decoder for errors carried in URLs.)
    pub action: Action<Generate, Result<CreatedImage, ApiError>>,
    pub pending: Memo<bool>,
    /// The id the next submission carries.
    pub job_id: RwSignal<String>,
    /// True once the island is hydrated (the form says so for tests).
    pub hydrated: RwSignal<bool>,
    pub tracking: Tracking,
    /// The quota shown: the server's reading, then whatever the last answer said.
    pub quota: RwSignal<Option<Quota>>,
    /// The visitor's clock, ticking every second once hydrated.
    pub now: RwSignal<u64>,
    pub recent: RwSignal<Vec<RecentImage>>,
    /// The last answer's image.
    pub shown: Memo<Option<ShownImage>>,
    /// The error to show: the last answer's.
    pub error: Signal<Option<ApiError>>,
    pub prompt_input: NodeRef<leptos::html::Input>,
    pub result_figure: NodeRef<leptos::html::Figure>,
}

impl StudioState {
    pub fn new(reading: QuotaReading, recent: Vec<RecentImage>, following: Option<String>) -> Self {
        let action = Action::new(|input: &Generate| {
            let Generate {
                prompt,
                job,
                aspect,
                seed,
            } = input.clone();
            generate(prompt, job, aspect, seed)
        });
        let pending = action.pending();
        let job_id = RwSignal::new(String::new());
        let hydrated = RwSignal::new(false);
        Effect::new(move |_| {
            // A generation of the visitor's still running when the page was
            // made: its id, sent again without a prompt, follows it (nothing
            // new starts): progress, Cancel and the answer as usual.
            job_id.set(following.clone().unwrap_or_else(new_job_id));
            if following.is_some() {
                dispatch(action, None, job_id.get_untracked(), None);
            }
            hydrated.set(true);
        });
        let shown = Memo::new(move |_| match action.value().get() {
            Some(Ok(created)) => Some(created.image),
            _ => None,
        });
        let error = Signal::derive(move || match action.value().get() {
            Some(Err(error)) if !pending.get() => Some(error),
            _ => None,
        });
        let state = Self {
            action,
            pending,
            job_id,
            hydrated,
            tracking: follow_generations(pending, job_id),
            quota: RwSignal::new(reading.quota),
            now: ticking_clock(reading.now_ms),
            recent: RwSignal::new(recent),
            shown,
            error,
            prompt_input: NodeRef::new(),
            result_figure: NodeRef::new(),
        };
        state.after_each_answer();
        state.renew_at_reset();
        state
    }

    /// Sends the form's generation of `prompt` in shape `aspect` (a new
    /// seed) through the action. The server reads and checks the shape.
    pub fn send(&self, prompt: String, aspect: String) {
        dispatch(
            self.action,
            Some(prompt),
            self.job_id.get_untracked(),
            Some(aspect),
        );
    }

    /// True when the visitor has no generation left.
    pub fn used_up(&self) -> bool {
        self.quota.get().is_some_and(|q| q.remaining == 0)
    }

    /// After each answer: the new quota and recent-images list (both in the
    /// answer), and the focus on the result (or back on the prompt after an error).
    fn after_each_answer(self) {
        let Self {
            action,
            quota,
            recent,
            prompt_input,
            result_figure,
            ..
        } = self;
        Effect::new(move |_| match action.value().get() {
            Some(Ok(created)) => {
                if let Some(q) = created.quota {
                    quota.set(Some(q));
                }
                // Once drawn, the result takes the focus: a screen reader reads
                // it and Tab reaches its Download button next.
                request_animation_frame(move || {
                    if let Some(figure) = result_figure.get_untracked() {
                        let _ = figure.focus();
                    }
                });
                recent.set(created.recent);
            }
            Some(Err(error)) => {
                if let ApiError::RateLimited(q) = error {
                    quota.set(Some(q));
                }
                // The message is announced from the status region; the visitor
                // can edit the prompt straight away.
                request_animation_frame(move || {
                    if let Some(input) = prompt_input.get_untracked() {
                        let _ = input.focus();
                    }
                });
            }
            None => {}
        });
    }

    /// Past the reset the visitor has more (and a full quota a new reset time):
    /// asks the server for the new numbers, once per reset.
    fn renew_at_reset(self) {
        let Self { quota, now, .. } = self;
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
}

/// Sends one generation (a new seed) through the action.
fn dispatch(
    action: Action<Generate, Result<CreatedImage, ApiError>>,
    prompt: Option<String>,
    job: String,
    aspect: Option<String>,
) {
    action.dispatch(Generate {
        prompt,
        job: Some(job),
        aspect,
        seed: None,
    });
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
