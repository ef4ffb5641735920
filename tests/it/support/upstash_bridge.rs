//! An Upstash-REST-compatible server in front of a real Redis, for tests: the
//! subset of the protocol that `@upstash/redis` and our client use, written from
//! the protocol facts (POST `/`, `/pipeline`, `/multi-exec`; Bearer token; JSON
//! command arrays; `{"result"}` / `{"error"}`; 400 / 401; `Upstash-Encoding: base64`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value as RedisValue;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

pub struct Bridge {
    pub url: String,
    pub token: String,
    requests: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Bridge {
    /// Serves on a free loopback port, forwarding to `redis_url`.
    pub async fn start(redis_url: &str, token: &str) -> Self {
        let client = redis::Client::open(redis_url).expect("a Redis URL");
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        // Lazy: the bridge keeps running (and answering 500) while Redis is down.
        let redis =
            ConnectionManager::new_lazy_with_config(client, config).expect("a connection manager");
        let requests = Arc::new(AtomicU64::new(0));
        let state = BridgeState {
            redis,
            token: token.to_owned(),
            requests: requests.clone(),
        };
        let app = Router::new()
            .route("/", post(single))
            .route("/pipeline", post(pipeline))
            .route("/multi-exec", post(multi_exec))
            .with_state(Arc::new(state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr: SocketAddr = listener.local_addr().expect("an address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the bridge serves");
        });
        Self {
            url: format!("http://{addr}"),
            token: token.to_owned(),
            requests,
            task,
        }
    }

    /// HTTP requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct BridgeState {
    redis: ConnectionManager,
    token: String,
    requests: Arc<AtomicU64>,
}

type Shared = State<Arc<BridgeState>>;

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// A refused request: the status and the `{"error"}` message.
type Refusal = (StatusCode, String);

fn refuse(status: StatusCode, message: &str) -> Refusal {
    (status, message.to_owned())
}

/// Checks the token and the content type; on success returns whether answers
/// must be base64-encoded.
fn admit(state: &BridgeState, headers: &HeaderMap) -> Result<bool, Refusal> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let Some(authorization) = headers.get(header::AUTHORIZATION) else {
        return Err(refuse(StatusCode::UNAUTHORIZED, "Unauthorized"));
    };
    let Some(token) = authorization
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "Malformed Authorization header",
        ));
    };
    if token != state.token {
        return Err(refuse(StatusCode::UNAUTHORIZED, "Unauthorized"));
    }
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "Content-Type must be application/json",
        ));
    }
    Ok(headers
        .get("upstash-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("base64")))
}

/// A JSON command array as a Redis command.
fn command(value: &Value) -> Result<redis::Cmd, String> {
    let parts = value
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or("a command must be a non-empty array")?;
    let text = |v: &Value| -> Result<String, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(format!("unsupported argument {other}")),
        }
    };
    let mut cmd = redis::cmd(&text(&parts[0])?);
    for part in &parts[1..] {
        cmd.arg(text(part)?);
    }
    Ok(cmd)
}

fn encode(value: RedisValue, base64: bool) -> Result<Value, String> {
    let string = |s: String| {
        if base64 && s != "OK" {
            Value::String(base64::engine::general_purpose::STANDARD.encode(s))
        } else {
            Value::String(s)
        }
    };
    Ok(match value {
        RedisValue::Nil => Value::Null,
        RedisValue::Int(n) => json!(n),
        RedisValue::Double(d) => json!(d),
        RedisValue::Boolean(b) => json!(b),
        RedisValue::BulkString(bytes) => string(String::from_utf8_lossy(&bytes).into_owned()),
        RedisValue::SimpleString(s) => string(s),
        RedisValue::Okay => Value::String("OK".into()),
        RedisValue::Array(items) | RedisValue::Set(items) => Value::Array(
            items
                .into_iter()
                .map(|i| encode(i, base64))
                .collect::<Result<_, _>>()?,
        ),
        RedisValue::Map(pairs) => Value::Array(
            pairs
                .into_iter()
                .flat_map(|(k, v)| [k, v])
                .map(|i| encode(i, base64))
                .collect::<Result<_, _>>()?,
        ),
        RedisValue::ServerError(e) => return Err(e.to_string()),
        other => Value::String(format!("{other:?}")),
    })
}

/// Runs one command: `Ok(result)`, or `Err((status, message))`.
async fn run(
    state: &BridgeState,
    value: &Value,
    base64: bool,
) -> Result<Value, (StatusCode, String)> {
    let cmd = command(value).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let mut redis = state.redis.clone();
    match cmd.query_async::<RedisValue>(&mut redis).await {
        Ok(reply) => encode(reply, base64).map_err(|e| (StatusCode::BAD_REQUEST, e)),
        Err(e) if matches!(e.kind(), redis::ErrorKind::Server(_)) => {
            Err((StatusCode::BAD_REQUEST, server_message(&e)))
        }
        Err(e) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("redis unavailable: {e}"),
        )),
    }
}

/// The error as Redis worded it (`NOSCRIPT No matching script…`).
fn server_message(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => e.to_string(),
    }
}

fn parse(body: &Bytes) -> Result<Value, Refusal> {
    serde_json::from_slice(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))
}

async fn single(State(state): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let base64 = match admit(&state, &headers) {
        Ok(b) => b,
        Err((status, message)) => return error(status, &message),
    };
    let value = match parse(&body) {
        Ok(v) => v,
        Err((status, message)) => return error(status, &message),
    };
    match run(&state, &value, base64).await {
        Ok(result) => Json(json!({ "result": result })).into_response(),
        Err((status, message)) => error(status, &message),
    }
}

/// Admits a `/pipeline` or `/multi-exec` request: whether to base64-encode the
/// answers, and the commands (a JSON array of command arrays).
fn admit_batch(
    state: &BridgeState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(bool, Vec<Value>), Refusal> {
    let base64 = admit(state, headers)?;
    match parse(body)? {
        Value::Array(commands) => Ok((base64, commands)),
        _ => Err(refuse(
            StatusCode::BAD_REQUEST,
            "expected an array of commands",
        )),
    }
}

async fn pipeline(State(state): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let (base64, commands) = match admit_batch(&state, &headers, &body) {
        Ok(batch) => batch,
        Err((status, message)) => return error(status, &message),
    };
    let mut answers = Vec::with_capacity(commands.len());
    for command in &commands {
        answers.push(match run(&state, command, base64).await {
            Ok(result) => json!({ "result": result }),
            Err((_, message)) => json!({ "error": message }),
        });
    }
    Json(Value::Array(answers)).into_response()
}

async fn multi_exec(State(state): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let (base64, commands) = match admit_batch(&state, &headers, &body) {
        Ok(batch) => batch,
        Err((status, message)) => return error(status, &message),
    };
    let mut pipe = redis::pipe();
    pipe.atomic();
    for command_value in &commands {
        match command(command_value) {
            Ok(cmd) => {
                pipe.add_command(cmd);
            }
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        }
    }
    let mut redis = state.redis.clone();
    match pipe.query_async::<Vec<RedisValue>>(&mut redis).await {
        Ok(replies) => {
            let answers: Vec<Value> = replies
                .into_iter()
                .map(|reply| match encode(reply, base64) {
                    Ok(result) => json!({ "result": result }),
                    Err(message) => json!({ "error": message }),
                })
                .collect();
            Json(Value::Array(answers)).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &server_message(&e)),
    }
}
