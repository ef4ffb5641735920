//! The quota line: "3 of 5 generations left. Renews in 20 h 57 min." (signed
//! in: "… left on you@example.com."), or the closed form's line, counting down
//! each second once hydrated.

use super::words::describe_wait;
use crate::wire::Quota;
use leptos::prelude::*;

#[component]
pub fn QuotaLine(
    quota: RwSignal<Option<Quota>>,
    now: RwSignal<u64>,
    /// The signed-in account's e-mail: the quota is the account's.
    account: Option<String>,
) -> impl IntoView {
    let on = account
        .map(|email| format!(" on {email}"))
        .unwrap_or_default();
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
                    <span>{format!("{} of {} generations left{on}.", q.remaining, q.limit)}</span>
                    " "
                    <span>{format!("{after} {wait}.")}</span>
                </p>
            }
        })
    }
}
