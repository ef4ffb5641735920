//! `/admin`, the owner's page: what was spent (today, this month, the last
//! 30 days as a chart drawn here as inline SVG, with a table for screen
//! readers), who spent it, the latest generations, and the controls (pause,
//! limits, blocks, removing an image) as plain HTML forms. Rendered on the
//! server with no script at all, so nothing is added to what a visitor of `/`
//! downloads and it works without JavaScript. Written by hand rather than
//! with Leptos (whose components would join the visitors' bundle) or a
//! template crate (one page does not need one): every value is escaped by
//! [`esc`].
//!
//! Forms post to `/admin/…` and come back with `303 See Other` to `/admin`
//! and a fixed notice (`?done=paused`); they need the owner's session (or a
//! signed-in account in `auth.admins`), and the app's same-site guard refuses
//! them from other sites.

use crate::server::admin_access::AdminAccess;
use crate::server::auth::Caller;
use crate::server::state::AppState;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use lofianime_domain::{rfc3339, DayTotals, ImageKey, LiveLimit, SpendRow};
use lofianime_wire::Variant;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(page))
        .route("/admin/login", get(login_form).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/pause", post(pause))
        .route("/admin/resume", post(resume))
        .route("/admin/limits", post(limits))
        .route("/admin/blocks", post(block))
        .route("/admin/blocks/remove", post(unblock))
        .route("/admin/images/remove", post(remove_image))
}

/// Text made safe for HTML (element content and quoted attributes).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Dollars as the page shows them.
fn usd(micros: u64) -> String {
    format!("${:.2}", micros as f64 / 1e6)
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1rem 1.5rem;color:#1d1b26;background:#faf9fc}\
h1{font-size:1.5rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}\
.figures{display:flex;flex-wrap:wrap;gap:.8rem}.figure{background:#fff;border:1px solid #ddd6ea;border-radius:8px;padding:.6rem .9rem;min-width:11rem}\
.figure b{display:block;font-size:1.35rem}.notice{background:#e7f6ec;border:1px solid #9fd3ae;padding:.5rem .8rem;border-radius:6px}\
.error{background:#fdecec;border:1px solid #e3a0a0;padding:.5rem .8rem;border-radius:6px}.paused{background:#fff4d6;border:1px solid #e6c25c;padding:.5rem .8rem;border-radius:6px}\
table{border-collapse:collapse;width:100%;background:#fff}th,td{border-bottom:1px solid #e6e1ef;padding:.35rem .5rem;text-align:left;vertical-align:top}\
td.num,th.num{text-align:right}img.thumb{width:64px;height:64px;object-fit:cover;border-radius:4px;background:#eee}\
form.inline{display:inline}button{font:inherit;padding:.25rem .7rem;border-radius:5px;border:1px solid #8a7fb0;background:#fff;cursor:pointer}\
button.danger{border-color:#c0392b;color:#a3271a}input{font:inherit;padding:.2rem .4rem;max-width:12rem}label{margin-right:.8rem}\
svg{background:#fff;border:1px solid #ddd6ea;border-radius:8px;max-width:100%;height:auto}svg text{font:11px system-ui,sans-serif;fill:#4a4560}\
.prompt{max-width:26rem;overflow-wrap:anywhere}header{display:flex;justify-content:space-between;align-items:baseline}";

/// An owner's page answer: never cached, no script allowed, not framed.
fn html(status: StatusCode, title: &str, body: &str, images_origin: Option<&str>) -> Response {
    let document = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>{} · lofianime</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    );
    let images = images_origin
        .map(|origin| format!(" {origin}"))
        .unwrap_or_default();
    let policy = format!(
        "default-src 'none'; img-src 'self' data:{images}; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut response = (status, document).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// The origin images are fetched from, when not this site.
fn images_origin(state: &AppState) -> Option<String> {
    let base = state.images_base.as_deref()?;
    let url = url::Url::parse(base).ok()?;
    Some(url.origin().ascii_serialization())
}

/// Where a request that is not the owner's goes.
enum Gate {
    /// Admin access is off: there is no such page.
    NotFound,
    /// To the sign-in form.
    SignIn,
}

impl IntoResponse for Gate {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound => (StatusCode::NOT_FOUND, "Not found.").into_response(),
            Self::SignIn => Redirect::to("/admin/login").into_response(),
        }
    }
}

/// The owner behind this request, or where to send them.
fn owner(state: &AppState, headers: &HeaderMap, caller: &Caller) -> Result<String, Gate> {
    let Some(access) = &state.admin else {
        return Err(Gate::NotFound);
    };
    access.who(headers, Some(caller)).ok_or(Gate::SignIn)
}

fn access(state: &AppState) -> Option<&AdminAccess> {
    state.admin.as_deref()
}

/// `GET /admin/login`.
async fn login_form(State(state): State<AppState>) -> Response {
    match access(&state) {
        Some(_) => login_page(StatusCode::OK, None, &state),
        None => (StatusCode::NOT_FOUND, "Not found.").into_response(),
    }
}

fn login_page(status: StatusCode, problem: Option<&str>, state: &AppState) -> Response {
    let takes_token = access(state).is_some_and(AdminAccess::takes_token);
    let mut body = String::from("<main><h1>The owner's page</h1>");
    if let Some(problem) = problem {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\">{}</p>",
            esc(problem)
        );
    }
    if takes_token {
        body.push_str(
            "<form method=\"post\" action=\"/admin/login\"><p><label for=\"token\">Admin token</label>\
<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required></p>\
<p><button type=\"submit\">Enter</button></p></form>",
        );
    }
    if state.auth.is_on() {
        body.push_str("<p>Or <a href=\"/auth/login?return_to=/admin\">sign in</a> with an account listed in <code>auth.admins</code>.</p>");
    }
    body.push_str("</main>");
    html(status, "Owner sign-in", &body, None)
}

/// `POST /admin/login` with the form field `token`.
async fn login(
    State(state): State<AppState>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(access) = access(&state) else {
        return (StatusCode::NOT_FOUND, "Not found.").into_response();
    };
    let presented = form.get("token").map(|t| t.trim()).unwrap_or_default();
    if !access.is_token(presented) {
        tracing::warn!("a sign-in to the owner's page with a wrong token was refused");
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("That token is not the admin token."),
            &state,
        );
    }
    let Some(jar) = access.start("admin token") else {
        return login_page(StatusCode::NOT_FOUND, None, &state);
    };
    tracing::info!("the owner signed in to the owner's page with the admin token");
    (jar, Redirect::to("/admin")).into_response()
}

/// `POST /admin/logout`.
async fn logout(State(state): State<AppState>) -> Response {
    match access(&state).and_then(AdminAccess::end) {
        Some(jar) => (jar, Redirect::to("/admin/login")).into_response(),
        None => (StatusCode::NOT_FOUND, "Not found.").into_response(),
    }
}

/// The fixed notices a form's redirect may name.
fn notice(done: &str) -> Option<&'static str> {
    Some(match done {
        "paused" => "Generation is paused on every instance.",
        "resumed" => "Generation is running again.",
        "limits" => "The limits were changed on every instance.",
        "blocked" => "The visitor is blocked.",
        "unblocked" => "The block was lifted.",
        "removed" => "The image was removed.",
        _ => return None,
    })
}

/// `GET /admin`.
async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let who = match owner(&state, &headers, &caller) {
        Ok(who) => who,
        Err(refused) => return refused.into_response(),
    };
    let notice = query.get("done").and_then(|done| notice(done));
    render(&state, &who, notice.map(|n| (true, n.to_owned()))).await
}

/// The page, with a notice (`true`: done; `false`: an error) on top.
async fn render(state: &AppState, who: &str, notice: Option<(bool, String)>) -> Response {
    let studio = &state.studio;
    let (days, rows) = match (studio.spend_days(30).await, studio.spend_rows(200).await) {
        (Ok(days), Ok(rows)) => (days, rows),
        (Err(failure), _) | (_, Err(failure)) => {
            tracing::warn!(%failure, "the owner's page could not read the ledger");
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                "Owner",
                "<main><h1>The owner's page</h1><p class=\"error\">The store that keeps the ledger is unavailable. Please try again shortly.</p></main>",
                None,
            );
        }
    };
    let limits = studio.limits().await;
    let paused = studio.is_paused().await;
    let blocks = studio.blocks().await.unwrap_or_default();
    let today = days.first().cloned().unwrap_or_default();
    let month = &today.day[..today.day.len().min(8)];
    let month_micros: u64 = days
        .iter()
        .filter(|day| day.day.starts_with(month))
        .map(|day| day.usd_micros)
        .sum();
    let mut body = String::new();
    let _ = write!(
        body,
        "<header><h1>lofianime · the owner's page</h1><form class=\"inline\" method=\"post\" action=\"/admin/logout\">\
<span>{}</span> <button type=\"submit\">Sign out</button></form></header>",
        esc(who)
    );
    match notice {
        Some((true, text)) => {
            let _ = write!(
                body,
                "<p class=\"notice\" role=\"status\">{}</p>",
                esc(&text)
            );
        }
        Some((false, text)) => {
            let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(&text));
        }
        None => {}
    }
    // Today at a glance.
    let budget = limits
        .daily_usd_micros
        .in_force()
        .map(|micros| format!(" of {} budget", usd(micros)))
        .unwrap_or_else(|| " (no dollar budget)".into());
    let count_budget = limits
        .global_limit
        .and_then(|live| live.in_force())
        .map(|limit| format!(" of {limit} shared budget"))
        .unwrap_or_default();
    let _ = write!(
        body,
        "<section aria-label=\"Today\"><div class=\"figures\">\
<div class=\"figure\">Spent today<b id=\"spent-today\">{}</b>{}</div>\
<div class=\"figure\">Generations today<b id=\"runs-today\">{}</b>{}</div>\
<div class=\"figure\">Refused today<b id=\"refused-today\">{}</b>{}</div>\
<div class=\"figure\">Held for runs in flight<b>{}</b></div>\
<div class=\"figure\">This month<b id=\"spent-month\">{}</b>{} UTC</div></div>",
        usd(today.usd_micros),
        esc(&budget),
        today.runs,
        esc(&count_budget),
        today.refused_total(),
        refusals_text(&today),
        usd(today.reserved_micros),
        usd(month_micros),
        esc(month.trim_end_matches('-')),
    );
    let outcomes: Vec<String> = today
        .by_outcome
        .iter()
        .map(|(outcome, totals)| format!("{} {}", totals.runs, esc(outcome)))
        .collect();
    if !outcomes.is_empty() {
        let _ = write!(body, "<p>Today by outcome: {}.</p>", outcomes.join(", "));
    }
    body.push_str("</section>");
    // The pause switch.
    if paused {
        body.push_str("<p class=\"paused\" id=\"pause-state\">Generation is <b>paused</b>: every visitor is told so, and nothing is spent. \
<form class=\"inline\" method=\"post\" action=\"/admin/resume\"><button type=\"submit\">Resume generation</button></form></p>");
    } else {
        body.push_str("<p id=\"pause-state\">Generation is running. \
<form class=\"inline\" method=\"post\" action=\"/admin/pause\"><button class=\"danger\" type=\"submit\">Pause generation</button></form></p>");
    }
    body.push_str(&chart(&days));
    body.push_str(&limits_form(&limits));
    body.push_str(&payers(&today.day, &rows));
    body.push_str(&blocks_section(&blocks));
    body.push_str(&latest(state, &rows));
    html(
        StatusCode::OK,
        "Owner",
        &body,
        images_origin(state).as_deref(),
    )
}

/// What refused a day's generations, in words (` (3 over the limit, 1 paused)`).
fn refusals_text(day: &DayTotals) -> String {
    if day.refused.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = day
        .refused
        .iter()
        .map(|(scope, count)| {
            let why = match scope.as_str() {
                "limit" => "over a visitor's limit",
                "budget" => "over the shared budget",
                "daily_usd" => "over the dollar budget",
                "paused" => "while paused",
                "blocked" => "blocked",
                "sign_in_required" => "signed out",
                other => other,
            };
            format!("{count} {}", esc(why))
        })
        .collect();
    format!(" ({})", parts.join(", "))
}

/// The last 30 days as two bar charts (dollars; generations by outcome),
/// oldest on the left, each bar titled, and the same figures as a table.
fn chart(days: &[DayTotals]) -> String {
    let days: Vec<&DayTotals> = days.iter().rev().collect();
    let (width, height, left, bottom) = (900.0, 170.0, 56.0, 22.0);
    let slot = (width - left - 8.0) / days.len().max(1) as f64;
    let bar = (slot * 0.7).max(1.0);
    let plot = height - bottom - 14.0;
    let max_usd = days
        .iter()
        .map(|d| d.usd_micros)
        .max()
        .unwrap_or(0)
        .max(10_000);
    let max_runs = days.iter().map(|d| d.runs).max().unwrap_or(0).max(1);
    let mut out = String::from(
        "<section aria-labelledby=\"chart-title\"><h2 id=\"chart-title\">The last 30 days</h2>",
    );
    // Dollars per day.
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {width} {height}\" role=\"img\" aria-labelledby=\"usd-chart-title\"><title id=\"usd-chart-title\">Dollars spent per day, the last 30 days; at most {} a day</title>",
        usd(max_usd)
    );
    let _ = write!(
        out,
        "<text x=\"4\" y=\"14\">{}</text><text x=\"4\" y=\"{}\">$0</text>",
        usd(max_usd),
        height - bottom
    );
    for (n, day) in days.iter().enumerate() {
        let h = plot * day.usd_micros as f64 / max_usd as f64;
        let x = left + n as f64 * slot;
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"#6c5ce7\"><title>{}: {}</title></rect>",
            height - bottom - h,
            esc(&day.day),
            usd(day.usd_micros)
        );
        if n % 5 == 0 || n + 1 == days.len() {
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{}\">{}</text>",
                height - 6.0,
                esc(&day.day[5..])
            );
        }
    }
    out.push_str("</svg>");
    // Generations per day, by outcome.
    let colours = [
        ("delivered", "#2e9e5b"),
        ("stopped", "#e0a526"),
        ("failed", "#c0392b"),
    ];
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {width} {height}\" role=\"img\" aria-labelledby=\"runs-chart-title\"><title id=\"runs-chart-title\">Generations per day by outcome (delivered green, stopped amber, failed red, other grey), the last 30 days</title>"
    );
    let _ = write!(
        out,
        "<text x=\"4\" y=\"14\">{max_runs} runs</text><text x=\"4\" y=\"{}\">0</text>",
        height - bottom
    );
    for (n, day) in days.iter().enumerate() {
        let x = left + n as f64 * slot;
        let mut y = height - bottom;
        let mut shown = 0;
        for (outcome, colour) in colours {
            let runs = day.by_outcome.get(outcome).map_or(0, |t| t.runs);
            shown += runs;
            let h = plot * runs as f64 / max_runs as f64;
            y -= h;
            let _ = write!(out, "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{colour}\"><title>{}: {runs} {outcome}</title></rect>", esc(&day.day));
        }
        let other = day.runs.saturating_sub(shown);
        let h = plot * other as f64 / max_runs as f64;
        y -= h;
        let _ = write!(out, "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"#9a95a8\"><title>{}: {other} other</title></rect>", esc(&day.day));
        if n % 5 == 0 || n + 1 == days.len() {
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{}\">{}</text>",
                height - 6.0,
                esc(&day.day[5..])
            );
        }
    }
    out.push_str("</svg>");
    // The same figures as text.
    out.push_str("<details><summary>The figures as a table</summary><table><thead><tr><th>Day (UTC)</th><th class=\"num\">Dollars</th><th class=\"num\">Generations</th><th>By outcome</th><th class=\"num\">Refused</th></tr></thead><tbody>");
    for day in days.iter().rev() {
        let by: Vec<String> = day
            .by_outcome
            .iter()
            .map(|(outcome, totals)| format!("{} {}", totals.runs, esc(outcome)))
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(&day.day),
            usd(day.usd_micros),
            day.runs,
            by.join(", "),
            day.refused_total()
        );
    }
    out.push_str("</tbody></table></details></section>");
    out
}

/// A number input's value: the live one, empty when the settings' rules.
fn live_value(live: Option<u64>) -> String {
    live.map(|n| n.to_string()).unwrap_or_default()
}

fn limits_form(limits: &lofianime_domain::Limits) -> String {
    let mut out = String::from("<section aria-labelledby=\"limits-title\"><h2 id=\"limits-title\">Limits</h2><form method=\"post\" action=\"/admin/limits\"><p>");
    let field = |out: &mut String,
                 name: &str,
                 label: &str,
                 live: Option<u64>,
                 configured: Option<u64>| {
        let _ = write!(
            out,
            "<label>{label} <input name=\"{name}\" inputmode=\"numeric\" value=\"{}\" placeholder=\"{}\" size=\"6\"></label>",
            esc(&live_value(live)),
            esc(&configured.map(|n| n.to_string()).unwrap_or_else(|| "none".into())),
        );
    };
    field(
        &mut out,
        "limit",
        "Per visitor",
        limits.limit.live,
        limits.limit.configured,
    );
    if let Some(anonymous) = limits.anonymous_limit {
        field(
            &mut out,
            "anonymous_limit",
            "Signed out",
            anonymous.live,
            anonymous.configured,
        );
    }
    if let Some(global) = limits.global_limit {
        field(
            &mut out,
            "global_limit",
            "Shared budget",
            global.live,
            global.configured,
        );
    }
    let dollars = |micros: Option<u64>| micros.map(|m| format!("{}", m as f64 / 1e6));
    let _ = write!(
        out,
        "<label>Daily dollars <input name=\"daily_usd\" inputmode=\"decimal\" value=\"{}\" placeholder=\"{}\" size=\"6\"></label>",
        esc(&dollars(limits.daily_usd_micros.live).unwrap_or_default()),
        esc(&dollars(limits.daily_usd_micros.configured).unwrap_or_else(|| "none".into())),
    );
    out.push_str("<button type=\"submit\">Change limits</button></p><p>An empty field goes back to the settings' value (shown greyed). The per-visitor limit is the one <code>@upstash/ratelimit</code>'s <code>setDynamicLimit</code> sets.</p></form></section>");
    out
}

/// Today's top payers from the latest rows, with a Block button each.
fn payers(today: &str, rows: &[SpendRow]) -> String {
    let mut by_who: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for row in rows.iter().filter(|row| row.day == today) {
        let entry = by_who.entry(row.who.as_str()).or_default();
        entry.0 += 1;
        entry.1 += row.usd_micros;
    }
    let mut payers: Vec<(&str, (u64, u64))> = by_who.into_iter().collect();
    payers.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(b.1 .0.cmp(&a.1 .0)));
    let mut out = String::from(
        "<section aria-labelledby=\"payers-title\"><h2 id=\"payers-title\">Top payers today</h2>",
    );
    if payers.is_empty() {
        out.push_str("<p>No generations yet today.</p></section>");
        return out;
    }
    out.push_str("<table><thead><tr><th>Who (visitor tag or account)</th><th class=\"num\">Runs</th><th class=\"num\">Dollars</th><th></th></tr></thead><tbody>");
    for (who, (runs, micros)) in payers.into_iter().take(10) {
        let block = if who == "unknown" {
            String::new()
        } else {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/admin/blocks\"><input type=\"hidden\" name=\"target\" value=\"{}\"><button class=\"danger\" type=\"submit\">Block</button></form>",
                esc(who)
            )
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{runs}</td><td class=\"num\">{}</td><td>{block}</td></tr>",
            esc(who),
            usd(micros)
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

fn blocks_section(blocks: &[lofianime_domain::Block]) -> String {
    let mut out = String::from(
        "<section aria-labelledby=\"blocks-title\"><h2 id=\"blocks-title\">Blocked</h2>",
    );
    if blocks.is_empty() {
        out.push_str("<p>Nobody is blocked.</p>");
    } else {
        out.push_str("<table><thead><tr><th>Who</th><th>Note</th><th>Since</th><th>Until</th><th></th></tr></thead><tbody>");
        for block in blocks {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><form class=\"inline\" method=\"post\" action=\"/admin/blocks/remove\"><input type=\"hidden\" name=\"target\" value=\"{}\"><button type=\"submit\">Unblock</button></form></td></tr>",
                esc(&block.target),
                esc(block.note.as_deref().unwrap_or("")),
                esc(&block.at_ms.map(rfc3339).unwrap_or_else(|| "(made elsewhere)".into())),
                esc(&block.expires_ms.map(rfc3339).unwrap_or_else(|| "lifted by hand".into())),
                esc(&block.target),
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("<form method=\"post\" action=\"/admin/blocks\"><p><label>Address, IPv6 /64, e-mail, <code>sub:…</code> or tag <input name=\"target\" required></label>\
<label>For (hours, empty: until lifted) <input name=\"expires_in_hours\" inputmode=\"numeric\" size=\"4\"></label><label>Note <input name=\"note\"></label>\
<button class=\"danger\" type=\"submit\">Block</button></p></form></section>");
    out
}

/// The latest 50 generations, with a Delete image button where one was kept.
fn latest(state: &AppState, rows: &[SpendRow]) -> String {
    let mut out = String::from(
        "<section aria-labelledby=\"latest-title\"><h2 id=\"latest-title\">Latest generations</h2>",
    );
    if rows.is_empty() {
        out.push_str("<p>None yet.</p></section>");
        return out;
    }
    out.push_str("<table><thead><tr><th>Image</th><th>Prompt</th><th>Outcome</th><th class=\"num\">Billed s</th><th class=\"num\">Dollars</th><th>Who</th><th>Time (UTC)</th><th></th></tr></thead><tbody>");
    for row in rows.iter().take(50) {
        let key = row.image.as_deref().and_then(ImageKey::parse);
        let (thumb, remove) = match &key {
            Some(key) => (
                format!(
                    "<a href=\"/i/{id}\"><img class=\"thumb\" loading=\"lazy\" width=\"64\" height=\"64\" alt=\"\" src=\"{}\"></a>",
                    esc(&state.image_url(&key.variant(Variant::Thumb))),
                    id = esc(key.id().as_str())
                ),
                format!(
                    "<form class=\"inline\" method=\"post\" action=\"/admin/images/remove\"><input type=\"hidden\" name=\"image\" value=\"{}\"><button class=\"danger\" type=\"submit\">Delete image</button></form>",
                    esc(key.id().as_str())
                ),
            ),
            None => (String::new(), String::new()),
        };
        let _ = write!(
            out,
            "<tr><td>{thumb}</td><td class=\"prompt\">{}</td><td>{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{remove}</td></tr>",
            esc(row.prompt.as_deref().unwrap_or("")),
            esc(&row.outcome),
            row.billed_ms as f64 / 1000.0,
            usd(row.usd_micros),
            esc(&row.who),
            esc(&rfc3339(row.time_ms)[..19].replace('T', " ")),
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

/// After a form: back to the page with a fixed notice.
fn done(what: &str) -> Response {
    Redirect::to(&format!("/admin?done={what}")).into_response()
}

/// A form that could not be carried out: the page with the problem on top.
async fn failed(state: &AppState, who: &str, status: StatusCode, problem: &str) -> Response {
    let mut response = render(state, who, Some((false, problem.to_owned()))).await;
    *response.status_mut() = status;
    response
}

async fn pause(State(state): State<AppState>, headers: HeaderMap, caller: Caller) -> Response {
    let who = match owner(&state, &headers, &caller) {
        Ok(who) => who,
        Err(refused) => return refused.into_response(),
    };
    match state.studio.pause(&who).await {
        Ok(()) => done("paused"),
        Err(_) => {
            failed(
                &state,
                &who,
                StatusCode::SERVICE_UNAVAILABLE,
                "The store that keeps the controls is unavailable; nothing was changed.",
            )
            .await
        }
    }
}

async fn resume(State(state): State<AppState>, headers: HeaderMap, caller: Caller) -> Response {
    let who = match owner(&state, &headers, &caller) {
        Ok(who) => who,
        Err(refused) => return refused.into_response(),
    };
    match state.studio.resume(&who).await {
        Ok(()) => done("resumed"),
        Err(_) => {
            failed(
                &state,
                &who,
                StatusCode::SERVICE_UNAVAILABLE,
                "The store that keeps the controls is unavailable; nothing was changed.",
            )
            .await
        }
    }
}

/// A limit field of the form: empty is the settings' value.
fn limit_field(
    form: &HashMap<String, String>,
    name: &str,
    dollars: bool,
) -> Result<Option<Option<u64>>, String> {
    let Some(text) = form.get(name) else {
        return Ok(None);
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(Some(None));
    }
    if dollars {
        match text.trim_start_matches('$').parse::<f64>() {
            Ok(usd) if usd.is_finite() && (0.0..=1_000_000.0).contains(&usd) => {
                Ok(Some(Some((usd * 1e6).round() as u64)))
            }
            _ => Err(format!(
                "{name}: must be a number of dollars from 0 to 1000000, or empty"
            )),
        }
    } else {
        match text.parse::<u64>() {
            Ok(n) if n <= 1_000_000 => Ok(Some(Some(n))),
            _ => Err(format!(
                "{name}: must be a whole number from 0 to 1000000, or empty"
            )),
        }
    }
}

async fn limits(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let who = match owner(&state, &headers, &caller) {
        Ok(who) => who,
        Err(refused) => return refused.into_response(),
    };
    let fields = [
        ("limit", LiveLimit::Visitor, false),
        ("anonymous_limit", LiveLimit::SignedOut, false),
        ("global_limit", LiveLimit::Shared, false),
        ("daily_usd", LiveLimit::DailyDollars, true),
    ];
    let mut changes = Vec::new();
    for (name, which, dollars) in fields {
        match limit_field(&form, name, dollars) {
            Ok(Some(value)) => changes.push((which, value)),
            Ok(None) => {}
            Err(problem) => return failed(&state, &who, StatusCode::BAD_REQUEST, &problem).await,
        }
    }
    for (which, value) in changes {
        if state.studio.set_limit(which, value, &who).await.is_err() {
            return failed(&state, &who, StatusCode::SERVICE_UNAVAILABLE, "The store that keeps the controls is unavailable; some limits may not have changed.").await;
        }
    }
    done("limits")
}

async fn block(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let who = match owner(&state, &headers, &caller) {
        Ok(who) => who,
        Err(refused) => return refused.into_response(),
    };
    let target = form.get("target").map(|t| t.trim()).unwrap_or_default();
    if !crate::server::admin::blockable(target) {
        return failed(&state, &who, StatusCode::BAD_REQUEST, "target: must be an address, an IPv6 /64 (2001:db8:1:2::/64), an e-mail, sub:{subject} or a visitor's tag").await;
    }
    let lasts =
        match form
            .get("expires_in_hours")
            .map(|h| h.trim())
            .filter(|h| !h.is_empty())
        {
            None => None,
            Some(hours) => match hours.parse::<u64>() {
                Ok(hours) if (1..=87_600).contains(&hours) => {
                    Some(std::time::Duration::from_secs(hours * 3600))
                }
                _ => return failed(
                    &state,
                    &who,
                    StatusCode::BAD_REQUEST,
                    "expires_in_hours: must be a whole number of hours from 1 to 87600, or empty",
                )
                .await,
            },
        };
    let note = form.get("note").map(|n| n.trim()).filter(|n| !n.is_empty());
    if note.is_some_and(|note| note.chars().count() > 500) {
        return failed(
            &state,
            &who,
            StatusCode::BAD_REQUEST,
            "note: must be at most 500 characters",
        )
        .await;
    }
    match state.studio.block(target, lasts, note, &who).await {
        Ok(_) => done("blocked"),
        Err(_) => {
            failed(
                &state,
                &who,
                StatusCode::SERVICE_UNAVAILABLE,
                "The store that keeps the controls is unavailable; nothing was changed.",
            )
            .await
        }
    }
}

async fn unblock(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let who = match owner(&state, &headers, &caller) {
        Ok(who) => who,
        Err(refused) => return refused.into_response(),
    };
    let target = form.get("target").map(|t| t.trim()).unwrap_or_default();
    match state.studio.unblock(target, &who).await {
        Ok(_) => done("unblocked"),
        Err(_) => {
            failed(
                &state,
                &who,
                StatusCode::SERVICE_UNAVAILABLE,
                "The store that keeps the controls is unavailable; nothing was changed.",
            )
            .await
        }
    }
}

async fn remove_image(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let who = match owner(&state, &headers, &caller) {
        Ok(who) => who,
        Err(refused) => return refused.into_response(),
    };
    let Some(id) = form
        .get("image")
        .and_then(|id| crate::wire::ImageId::parse(id.trim()))
    else {
        return failed(
            &state,
            &who,
            StatusCode::BAD_REQUEST,
            "image: must be an image id (32 hexadecimal digits)",
        )
        .await;
    };
    match state.studio.remove_image(&id, &who).await {
        Ok(true) => done("removed"),
        Ok(false) => {
            failed(
                &state,
                &who,
                StatusCode::NOT_FOUND,
                "There is no such image (it may have been removed already).",
            )
            .await
        }
        Err(_) => {
            failed(
                &state,
                &who,
                StatusCode::SERVICE_UNAVAILABLE,
                "The image store is unavailable; nothing was removed.",
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_page_shows_is_escaped() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn only_fixed_notices_are_shown() {
        assert_eq!(
            notice("paused"),
            Some("Generation is paused on every instance.")
        );
        assert_eq!(notice("<b>hi</b>"), None);
    }
}
