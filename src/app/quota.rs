//! The quota line: "3 of 5 generations left. Renews in 20 h 57 min.", or the
//! closed form's line, counting down each second once hydrated.

use super::words::describe_wait;
use crate::wire::Quota;
use leptos::prelude::*;

#[component]
pub fn QuotaLine(quota: RwSignal<Option<Quota>>, now: RwSignal<u64>) -> impl IntoView {
    move || {
        quota.get().map(|q| {
            let wait = describe_wait(now.get(), q.reset_ms);
            let (class, after) = if q.remaining == 0 {
                ("quota quota-empty", "The form reopens in")
            } else {
                ("quota", "Renews in")
            };
            view! {
                <p class=class>
                    <span>{format!("{} of {} generations left.", q.remaining, q.limit)}</span>
                    " "
                    <span>{format!("{after} {wait}.")}</span>
                </p>
            }
        })
    }
}
