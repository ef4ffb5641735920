//! `GET /auth/login?return_to=/path`, `GET /auth/callback` (the redirect URI
//! registered at the provider) and `POST /auth/logout`. Sign-out is a POST,
//! refused from other sites by the router's same-site guard like every POST.

use crate::server::auth::provider::SignInError;
use crate::server::auth::session::{self, now_secs, SIGN_IN_TTL_SECS};
use crate::server::state::AppState;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use lofianime_domain::tag;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The sentence for a `return_to` that is not a path on this site.
pub const OFF_SITE_RETURN: &str =
    "return_to must be a path on this site, such as /i/0123abcd…; sign-in never sends you elsewhere.";

/// `return_to` if it is a path on this site: it starts with one `/`, has no
/// backslash, no scheme-relative `//`, no control characters, and stays on a
/// made-up origin when resolved against it.
pub fn same_site_path(candidate: &str) -> Option<String> {
    let ok_shape = candidate.starts_with('/')
        && !candidate.starts_with("//")
        && !candidate.contains('\\')
        && !candidate.chars().any(char::is_control)
        && candidate.len() <= 2048;
    if !ok_shape {
        return None;
    }
    let base = url::Url::parse("http://lofianime.invalid/").ok()?;
    let resolved = base.join(candidate).ok()?;
    (resolved.origin() == base.origin()).then(|| {
        let mut path = resolved.path().to_owned();
        if let Some(query) = resolved.query() {
            path.push('?');
            path.push_str(query);
        }
        path
    })
}

/// A 303 to `location`, never cached.
fn see_other(location: &str) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Redirect::to(location),
    )
        .into_response()
}

/// A small page that says what went wrong, with a way to try again.
fn problem_page(status: StatusCode, sentence: &str) -> Response {
    let escaped = sentence
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Sign-in · lofianime</title></head><body><main>\
         <h1>Sign-in did not work</h1><p role=\"alert\">{escaped}</p>\
         <p><a href=\"/auth/login\">Sign in again</a> · <a href=\"/\">Back to lofianime</a></p>\
         </main></body></html>"
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "Sign-in is not enabled on this site.",
    )
        .into_response()
}

/// `GET /auth/login`: sends the visitor to the provider.
/// Sign-in's routes: start, come back from the provider, sign out.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(crate::server::guard::SIGN_IN_PATH, get(login))
        .route(session::CALLBACK_PATH, get(callback))
        .route("/auth/logout", post(logout))
}

pub async fn login(State(state): State<AppState>, Query(query): Query<LoginQuery>) -> Response {
    let Some((sessions, provider)) = state.auth.parts() else {
        return not_found();
    };
    let return_to = match query.return_to.as_deref() {
        None | Some("") => "/".to_owned(),
        Some(candidate) => match same_site_path(candidate) {
            Some(path) => path,
            None => return problem_page(StatusCode::BAD_REQUEST, OFF_SITE_RETURN),
        },
    };
    match provider.authorize(return_to).await {
        Ok(authorization) => {
            let jar = sessions.remember_attempt(&authorization.attempt);
            (jar, see_other(&authorization.url)).into_response()
        }
        Err(error) => problem_page(error.status(), &error.to_string()),
    }
}

/// `GET /auth/callback`: the provider sends the visitor back here.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let Some((sessions, provider)) = state.auth.parts() else {
        return not_found();
    };
    let attempt = sessions.attempt(&headers, now_secs());
    let outcome = async {
        let attempt = attempt.ok_or(SignInError::NoAttempt)?;
        let state_matches = query
            .state
            .as_deref()
            .is_some_and(|sent| crate::server::metrics::same_secret(sent, &attempt.state));
        if !state_matches {
            return Err(SignInError::WrongState);
        }
        // An attempt is used once, even by a copy of its cookie.
        let digest = crate::server::metrics::digest_hex(&attempt.state);
        let first = state
            .studio
            .mark_once(&format!("sign-in-used:{digest}"), SIGN_IN_TTL_SECS * 1000)
            .await
            .map_err(|e| SignInError::ProviderUnreachable(e.to_string()))?;
        if !first {
            return Err(SignInError::CodeRefused(
                "the sign-in attempt was used already".into(),
            ));
        }
        if let Some(error) = &query.error {
            let shown: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(40)
                .collect();
            return Err(SignInError::ProviderSaidNo(shown));
        }
        let code = query.code.as_deref().ok_or(SignInError::ProviderSaidNo(
            "no authorization code".to_owned(),
        ))?;
        let account = provider.finish(&attempt, code).await?;
        Ok((account, attempt.return_to))
    }
    .await;
    match outcome {
        Ok((account, return_to)) => {
            let (account, session) = sessions.start(account, now_secs());
            tracing::info!(account = %tag(&account.email), "signed in");
            metrics::counter!("lofianime_sign_ins_total", "result" => "ok").increment(1);
            (session, see_other(&return_to)).into_response()
        }
        Err(error) => {
            tracing::info!(%error, "a sign-in was refused");
            metrics::counter!("lofianime_sign_ins_total", "result" => "refused").increment(1);
            // The attempt is used once, whatever its outcome.
            (
                sessions.forget_attempt(),
                problem_page(error.status(), &error.to_string()),
            )
                .into_response()
        }
    }
}

/// `POST /auth/logout`: ends the session for good (a copy of its cookie is
/// signed out too, on every instance, for as long as it could have lived) and
/// goes back to the front page.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some((sessions, _)) = state.auth.parts() else {
        return not_found();
    };
    let now = now_secs();
    if let Some(account) = sessions.account(&headers, now) {
        let lifetime_ms = account.expires.saturating_sub(now) * 1000;
        let name = super::ended_mark(&account.session);
        if let Err(error) = state.studio.mark_once(&name, lifetime_ms).await {
            tracing::error!(%error, "could not end the session for good; its cookie is cleared in this browser only");
        }
    }
    (sessions.end(), see_other("/")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_site_are_return_addresses() {
        assert_eq!(same_site_path("/").as_deref(), Some("/"));
        assert_eq!(same_site_path("/i/abc?x=1").as_deref(), Some("/i/abc?x=1"));
        assert_eq!(same_site_path("/a/../b").as_deref(), Some("/b"));
        for off_site in [
            "https://evil.example/",
            "//evil.example/x",
            "/\\evil.example",
            "\\\\evil.example",
            "evil.example",
            "javascript:alert(1)",
            "/\t/evil.example",
            "",
        ] {
            assert_eq!(same_site_path(off_site), None, "{off_site:?}");
        }
    }
}
