//! The header's sign-in corner, rendered on the server only (no browser code):
//! "Sign in with Google" (a plain link to `/auth/login`), or the account's
//! e-mail and a Sign out button (a plain form posting to `/auth/logout`).

use crate::wire::Viewer;
use leptos::prelude::*;

/// Nothing when sign-in is off.
#[component]
pub fn AccountBar(viewer: Viewer, return_to: String) -> impl IntoView {
    let provider = viewer.sign_in_with?;
    Some(match viewer.account {
        Some(account) => view! {
            <div class="account">
                <span class="account-who" title=account.name.unwrap_or_default()>
                    {account.email}
                </span>
                <form method="post" action="/auth/logout">
                    <button type="submit" class="link-button">"Sign out"</button>
                </form>
            </div>
        }
        .into_any(),
        None => view! {
            <div class="account">
                <a class="sign-in" href=format!("/auth/login?return_to={return_to}")>
                    {format!("Sign in with {provider}")}
                </a>
            </div>
        }
        .into_any(),
    })
}

/// Shown instead of the form to a signed-out visitor who may not generate.
#[component]
pub fn SignInPrompt(provider: String, return_to: String) -> impl IntoView {
    view! {
        <section class="sign-in-prompt" aria-labelledby="sign-in-title">
            <h2 id="sign-in-title">"Sign in to generate images"</h2>
            <p>"Each account gets its own quota, on every device you sign in from."</p>
            <p>
                <a class="button" href=format!("/auth/login?return_to={return_to}")>
                    {format!("Sign in with {provider}")}
                </a>
            </p>
        </section>
    }
}
