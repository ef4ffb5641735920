//! The owner's JSON API under `/admin/api/`, for scripts: what was spent,
//! and the live controls (pause, the per-visitor limit, the deny list). Only
//! with `ADMIN_TOKEN` set (32 bytes or more), presented as
//! `Authorization: Bearer …` and compared through digests; without it every
//! `/admin` path is a 404. Answers are `private, no-store`. A bearer token is
//! never sent by a browser on its own, so a cross-site request cannot use it.

use crate::server::auth::Caller;
use crate::server::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use lofianime_domain::{StudioError, Visitor};
use serde_json::{json, Value};

/// The owner's API routes (answering 404 when admin access is off).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/api/summary", get(summary))
        .route("/admin/api/days", get(days))
        .route("/admin/api/generations", get(generations))
        .route("/admin/api/pause", post(pause))
        .route("/admin/api/resume", post(resume))
        .route("/admin/api/limits", put(set_limits))
        .route("/admin/api/blocks", get(blocks).post(block))
        .route("/admin/api/blocks/{target}", delete(unblock))
        .route("/admin/api/images/{id}", delete(remove_image))
}

/// An answer of the owner's API: never cached anywhere.
fn answer(status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    response
}

fn problem(status: StatusCode, message: &str) -> Response {
    answer(status, json!({ "error": message }))
}

/// Why the owner's API refused a request before doing anything.
enum Refusal {
    /// Admin access is off.
    NoAccess,
    /// The token is missing or wrong.
    Unauthorized,
    /// The body is not what the endpoint takes (the message names the field).
    BadBody(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::NoAccess => problem(StatusCode::NOT_FOUND, "Not found."),
            Self::Unauthorized => {
                let mut refused = problem(
                    StatusCode::UNAUTHORIZED,
                    "The admin token is missing or wrong.",
                );
                refused
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                refused
            }
            Self::BadBody(message) => problem(StatusCode::BAD_REQUEST, &message),
        }
    }
}

/// The owner, when the request is one's (see [`crate::server::admin_access::AdminAccess::who`]);
/// otherwise the refusal.
fn owner(state: &AppState, headers: &HeaderMap, caller: &Caller) -> Result<String, Refusal> {
    let Some(access) = &state.admin else {
        return Err(Refusal::NoAccess);
    };
    match access.who(headers, Some(caller)) {
        Some(who) => Ok(who),
        None => {
            tracing::warn!(
                "a request to the owner's API without the owner's token or session was refused"
            );
            Err(Refusal::Unauthorized)
        }
    }
}

/// A store that could not take the change: nothing changed.
fn unavailable(failure: &StudioError) -> Response {
    tracing::warn!(%failure, "an owner's control could not be read or changed");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "The store that keeps the controls is unavailable; nothing was changed.",
    )
}

/// `GET /admin/api/summary`.
async fn summary(State(state): State<AppState>, headers: HeaderMap, caller: Caller) -> Response {
    if let Err(refused) = owner(&state, &headers, &caller) {
        return refused.into_response();
    }
    let studio = &state.studio;
    // Today first: read once, with the rest of the month.
    let days = match studio.spend_days(31).await {
        Ok(days) => days,
        Err(failure) => return unavailable(&failure),
    };
    let today = days.first().cloned().unwrap_or_default();
    let month_prefix = &today.day[..today.day.len().min(8)];
    let month_micros: u64 = days
        .iter()
        .filter(|day| day.day.starts_with(month_prefix))
        .map(|day| day.usd_micros)
        .sum();
    let limits = studio.limits().await;
    let policy = studio.spend_policy();
    let by_outcome: serde_json::Map<String, Value> = today
        .by_outcome
        .iter()
        .map(|(outcome, totals)| {
            (
                outcome.clone(),
                json!({
                    "runs": totals.runs,
                    "billed_seconds": totals.billed_ms as f64 / 1000.0,
                    "spent_usd": totals.usd_micros as f64 / 1e6,
                }),
            )
        })
        .collect();
    answer(
        StatusCode::OK,
        json!({
            "day": today.day,
            "today_spent_usd": today.usd(),
            "today_reserved_usd": today.reserved_micros as f64 / 1e6,
            "today_runs": today.runs,
            "today_by_outcome": by_outcome,
            "today_refused": today.refused_total(),
            "today_refused_by": today.refused,
            "month_spent_usd": month_micros as f64 / 1e6,
            "daily_budget_usd": limits.daily_usd_micros.in_force().map(|micros| micros as f64 / 1e6),
            "usd_per_second": policy.usd_per_second,
            "paused": studio.is_paused().await,
            "limits": limits_json(&limits),
        }),
    )
}

/// A whole number from the query's `name`, within `range`, or `default`
/// when it is absent; a 400 naming it otherwise.
fn query_number(
    query: &std::collections::HashMap<String, String>,
    name: &str,
    range: std::ops::RangeInclusive<u32>,
    default: u32,
) -> Result<u32, Refusal> {
    match query.get(name) {
        None => Ok(default),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                Refusal::BadBody(format!(
                    "{name}: must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ))
            }),
    }
}

/// One UTC day's totals as the owner's API gives them.
pub fn day_json(day: &lofianime_domain::DayTotals) -> Value {
    let by_outcome: serde_json::Map<String, Value> = day
        .by_outcome
        .iter()
        .map(|(outcome, totals)| {
            (
                outcome.clone(),
                json!({
                    "runs": totals.runs,
                    "billed_seconds": totals.billed_ms as f64 / 1000.0,
                    "spent_usd": totals.usd_micros as f64 / 1e6,
                }),
            )
        })
        .collect();
    json!({
        "day": day.day,
        "runs": day.runs,
        "billed_seconds": day.billed_ms as f64 / 1000.0,
        "spent_usd": day.usd(),
        "reserved_usd": day.reserved_micros as f64 / 1e6,
        "by_outcome": by_outcome,
        "refused": day.refused_total(),
        "refused_by": day.refused,
    })
}

/// `GET /admin/api/days?days=30`: one row per UTC day, today first.
async fn days(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Err(refused) = owner(&state, &headers, &caller) {
        return refused.into_response();
    }
    let count = match query_number(&query, "days", 1..=400, 30) {
        Ok(count) => count,
        Err(bad) => return bad.into_response(),
    };
    match state.studio.spend_days(count).await {
        Ok(days) => answer(
            StatusCode::OK,
            json!({ "days": days.iter().map(day_json).collect::<Vec<_>>() }),
        ),
        Err(failure) => unavailable(&failure),
    }
}

/// `GET /admin/api/generations?limit=50`: the latest rows of the ledger.
async fn generations(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Err(refused) = owner(&state, &headers, &caller) {
        return refused.into_response();
    }
    let limit = match query_number(&query, "limit", 1..=200, 50) {
        Ok(limit) => limit,
        Err(bad) => return bad.into_response(),
    };
    match state.studio.spend_rows(limit as usize).await {
        Ok(rows) => answer(
            StatusCode::OK,
            json!({ "generations": rows.iter().map(|row| json!({
                "run": row.run_id,
                "day": row.day,
                "time": lofianime_domain::rfc3339(row.time_ms),
                "outcome": row.outcome,
                "billed_seconds": row.billed_ms as f64 / 1000.0,
                "spent_usd": row.usd(),
                "who": row.who,
                "prompt": row.prompt,
                "image": row.image.as_deref().and_then(lofianime_domain::ImageKey::parse).map(|key| key.id().to_string()),
            })).collect::<Vec<_>>() }),
        ),
        Err(failure) => unavailable(&failure),
    }
}

/// `POST /admin/api/pause`.
async fn pause(State(state): State<AppState>, headers: HeaderMap, caller: Caller) -> Response {
    let by = match owner(&state, &headers, &caller) {
        Ok(by) => by,
        Err(refused) => return refused.into_response(),
    };
    match state.studio.pause(&by).await {
        Ok(()) => answer(StatusCode::OK, json!({ "paused": true })),
        Err(failure) => unavailable(&failure),
    }
}

/// `POST /admin/api/resume`.
async fn resume(State(state): State<AppState>, headers: HeaderMap, caller: Caller) -> Response {
    let by = match owner(&state, &headers, &caller) {
        Ok(by) => by,
        Err(refused) => return refused.into_response(),
    };
    match state.studio.resume(&by).await {
        Ok(()) => answer(StatusCode::OK, json!({ "paused": false })),
        Err(failure) => unavailable(&failure),
    }
}

/// The body's JSON object, or a 400 that says what is wrong.
fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err(Refusal::BadBody("The body must be a JSON object.".into())),
    }
}

/// The limits in force, as the owner's API shows them.
pub fn limits_json(limits: &lofianime_domain::Limits) -> Value {
    let count = |live: &lofianime_domain::Live<u64>| json!({ "in_force": live.in_force(), "configured": live.configured, "live": live.live });
    let dollars = |micros: Option<u64>| micros.map(|micros| micros as f64 / 1e6);
    let daily = &limits.daily_usd_micros;
    json!({
        "limit": count(&limits.limit),
        "anonymous_limit": limits.anonymous_limit.as_ref().map(count),
        "global_limit": limits.global_limit.as_ref().map(count),
        "daily_usd": {
            "in_force": dollars(daily.in_force()),
            "configured": dollars(daily.configured),
            "live": dollars(daily.live),
        },
    })
}

/// `PUT /admin/api/limits` with any of `limit`, `anonymous_limit`,
/// `global_limit` (whole numbers) and `daily_usd` (dollars); `null` goes
/// back to the settings' value. Every field is checked before any changes.
async fn set_limits(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    body: axum::body::Bytes,
) -> Response {
    use lofianime_domain::LiveLimit;
    let by = match owner(&state, &headers, &caller) {
        Ok(by) => by,
        Err(refused) => return refused.into_response(),
    };
    let fields = match object(&body) {
        Ok(fields) => fields,
        Err(bad) => return bad.into_response(),
    };
    if fields.is_empty() {
        return problem(
            StatusCode::BAD_REQUEST,
            "limit: missing (give any of limit, anonymous_limit, global_limit, daily_usd)",
        );
    }
    let mut changes = Vec::new();
    for (name, value) in &fields {
        let which = match name.as_str() {
            "limit" => LiveLimit::Visitor,
            "anonymous_limit" => LiveLimit::SignedOut,
            "global_limit" => LiveLimit::Shared,
            "daily_usd" => LiveLimit::DailyDollars,
            other => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "{other}: not a limit (limit, anonymous_limit, global_limit, daily_usd)"
                    ),
                )
            }
        };
        let parsed = match (which, value) {
            (_, Value::Null) => Some(None),
            (LiveLimit::DailyDollars, value) => value
                .as_f64()
                .filter(|usd| usd.is_finite() && (0.0..=1_000_000.0).contains(usd))
                .map(|usd| Some((usd * 1e6).round() as u64)),
            (_, value) => value.as_u64().filter(|n| *n <= 1_000_000).map(Some),
        };
        let Some(parsed) = parsed else {
            let what = if which == LiveLimit::DailyDollars {
                "a number of dollars from 0 to 1000000"
            } else {
                "a whole number from 0 to 1000000"
            };
            return problem(
                StatusCode::BAD_REQUEST,
                &format!("{name}: must be {what}, or null for the settings' value"),
            );
        };
        changes.push((name.clone(), which, parsed));
    }
    let limits = state.studio.limits().await;
    for (name, which, _) in &changes {
        let missing = match which {
            LiveLimit::SignedOut => limits.anonymous_limit.is_none(),
            LiveLimit::Shared => limits.global_limit.is_none(),
            LiveLimit::Visitor | LiveLimit::DailyDollars => false,
        };
        if missing {
            return problem(
                StatusCode::BAD_REQUEST,
                &format!("{name}: this site has no such quota (see the settings)"),
            );
        }
    }
    for (name, which, value) in changes {
        match state.studio.set_limit(which, value, &by).await {
            Ok(true) => {}
            Ok(false) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    &format!("{name}: this site has no such quota (see the settings)"),
                )
            }
            Err(failure) => return unavailable(&failure),
        }
    }
    answer(StatusCode::OK, limits_json(&state.studio.limits().await))
}

/// Whether `target` is something a block can name: an address, an IPv6 /64
/// (`2001:db8:1:2::/64`), an e-mail or `sub:{subject}`.
pub fn blockable(target: &str) -> bool {
    let target = target.trim();
    if target.is_empty() || target.len() > 320 || target.chars().any(char::is_whitespace) {
        return false;
    }
    if target.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    if let Some(network) = target.strip_suffix("/64") {
        return network.parse::<std::net::Ipv6Addr>().is_ok();
    }
    // A visitor's tag, as the owner's page shows visitors known by address.
    let tag = target.len() == 32
        && target
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    tag || target.contains('@')
        || target.starts_with("sub:")
        || Visitor::may_name_an_account(target)
}

/// A block as the owner's API shows it.
pub fn block_json(block: &lofianime_domain::Block) -> Value {
    json!({
        "target": block.target,
        "note": block.note,
        "by": block.by,
        "at": block.at_ms.map(lofianime_domain::rfc3339),
        "expires": block.expires_ms.map(lofianime_domain::rfc3339),
    })
}

/// `GET /admin/api/blocks`.
async fn blocks(State(state): State<AppState>, headers: HeaderMap, caller: Caller) -> Response {
    if let Err(refused) = owner(&state, &headers, &caller) {
        return refused.into_response();
    }
    match state.studio.blocks().await {
        Ok(blocks) => answer(
            StatusCode::OK,
            json!({ "blocks": blocks.iter().map(block_json).collect::<Vec<_>>() }),
        ),
        Err(failure) => unavailable(&failure),
    }
}

/// What a block request asks for.
struct BlockRequest {
    target: String,
    lasts: Option<std::time::Duration>,
    note: Option<String>,
}

/// Reads `{"target", "expires_in_secs"?, "note"?}`, naming a bad field.
fn block_request(fields: &serde_json::Map<String, Value>) -> Result<BlockRequest, Refusal> {
    if let Some(other) = fields
        .keys()
        .find(|name| !matches!(name.as_str(), "target" | "note" | "expires_in_secs"))
    {
        return Err(Refusal::BadBody(format!(
            "{other}: not a field of a block (target, expires_in_secs, note)"
        )));
    }
    let target = fields
        .get("target")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|target| blockable(target))
        .ok_or_else(|| {
            Refusal::BadBody(
                "target: must be an address, an IPv6 /64 (2001:db8:1:2::/64), an e-mail, sub:{subject} or a visitor's tag".into(),
            )
        })?;
    let lasts = match fields.get("expires_in_secs") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .filter(|secs| (1..=10 * 365 * 86_400).contains(secs))
                .map(std::time::Duration::from_secs)
                .ok_or_else(|| {
                    Refusal::BadBody(
                        "expires_in_secs: must be a whole number of seconds from 1 to 315360000"
                            .into(),
                    )
                })?,
        ),
    };
    let note = match fields.get("note") {
        None | Some(Value::Null) => None,
        Some(Value::String(note)) if note.chars().count() <= 500 => {
            Some(note.trim().to_owned()).filter(|note| !note.is_empty())
        }
        Some(_) => {
            return Err(Refusal::BadBody(
                "note: must be text of at most 500 characters".into(),
            ))
        }
    };
    Ok(BlockRequest {
        target: target.to_owned(),
        lasts,
        note,
    })
}

/// `POST /admin/api/blocks` with `{"target", "expires_in_secs"?, "note"?}`.
async fn block(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    body: axum::body::Bytes,
) -> Response {
    let by = match owner(&state, &headers, &caller) {
        Ok(by) => by,
        Err(refused) => return refused.into_response(),
    };
    let request = match object(&body).and_then(|fields| block_request(&fields)) {
        Ok(request) => request,
        Err(bad) => return bad.into_response(),
    };
    match state
        .studio
        .block(&request.target, request.lasts, request.note.as_deref(), &by)
        .await
    {
        Ok(added) => answer(
            if added {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            json!({ "blocked": request.target }),
        ),
        Err(failure) => unavailable(&failure),
    }
}

/// `DELETE /admin/api/blocks/{target}`.
async fn unblock(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Path(target): Path<String>,
) -> Response {
    let by = match owner(&state, &headers, &caller) {
        Ok(by) => by,
        Err(refused) => return refused.into_response(),
    };
    match state.studio.unblock(&target, &by).await {
        Ok(true) => answer(StatusCode::OK, json!({ "unblocked": target })),
        Ok(false) => problem(StatusCode::NOT_FOUND, "No such block."),
        Err(failure) => unavailable(&failure),
    }
}

/// `DELETE /admin/api/images/{id}`.
async fn remove_image(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let by = match owner(&state, &headers, &caller) {
        Ok(by) => by,
        Err(refused) => return refused.into_response(),
    };
    let Some(id) = crate::wire::ImageId::parse(&id) else {
        return problem(StatusCode::NOT_FOUND, "No such image.");
    };
    match state.studio.remove_image(&id, &by).await {
        Ok(true) => answer(StatusCode::OK, json!({ "removed": id.to_string() })),
        Ok(false) => problem(StatusCode::NOT_FOUND, "No such image."),
        Err(failure) => unavailable(&failure),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_name_addresses_networks_and_accounts_only() {
        for good in [
            "203.0.113.7",
            "2001:db8::1",
            "2001:db8:1:2::/64",
            "ada@example.com",
            "sub:42",
        ] {
            assert!(blockable(good), "{good}");
        }
        for bad in ["", " ", "203.0.113.0/24", "a b", "../x/y"] {
            assert!(!blockable(bad), "{bad:?}");
        }
    }
}
