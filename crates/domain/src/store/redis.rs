//! The native Redis store (`REDIS_URL`): the `redis` crate's connection manager,
//! one multiplexed connection shared by every request and re-established on its
//! own after an outage.

use super::{Reply, ScriptError, ScriptRunner, ScriptedStore, StoreError};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind, Value};
use std::time::Duration;

/// A Redis server, for the limiter and the shared state.
pub type RedisStore = ScriptedStore<RedisConnection>;

impl RedisStore {
    /// Connects to `url` (`redis://[:password@]host:port[/db]`) and checks the
    /// server answers. `timeout` bounds each connection attempt and each command.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let connection = RedisConnection::connect(url, timeout).await?;
        let store = ScriptedStore::new(connection, false);
        store.ping().await?;
        Ok(store)
    }
}

pub struct RedisConnection {
    manager: ConnectionManager,
    description: String,
}

impl RedisConnection {
    async fn connect(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let description = format!("Redis at {}", redact(url));
        let client = redis::Client::open(url).map_err(|e| {
            StoreError::Protocol(format!("REDIS_URL is not a Redis URL: {}", e.kind_name()))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Reconnect quickly after an outage; requests made meanwhile fail at once.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| store_error(&e))?;
        Ok(Self {
            manager,
            description,
        })
    }

    async fn query(&self, command: redis::Cmd) -> Result<Reply, ScriptError> {
        let mut connection = self.manager.clone();
        match command.query_async::<Value>(&mut connection).await {
            Ok(value) => Ok(reply(value)?),
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                Err(ScriptError::NoScript)
            }
            Err(error) => Err(ScriptError::Store(store_error(&error))),
        }
    }
}

trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for RedisError {
    fn kind_name(&self) -> String {
        // The error's text may quote the URL, password included: describe it by kind.
        format!("{:?}", self.kind())
    }
}

fn store_error(error: &RedisError) -> StoreError {
    match error.kind() {
        ErrorKind::AuthenticationFailed => {
            StoreError::Unauthorized("Redis refused the credentials in REDIS_URL".into())
        }
        ErrorKind::Server(_) => StoreError::Command(error.to_string()),
        _ if error.is_timeout() => StoreError::TimedOut("Redis did not answer in time".into()),
        _ if error.is_io_error()
            || error.is_connection_refusal()
            || error.is_connection_dropped() =>
        {
            StoreError::Unavailable(format!("cannot reach Redis ({})", error.kind_name()))
        }
        _ => StoreError::Unavailable(format!("Redis error ({})", error.kind_name())),
    }
}

fn reply(value: Value) -> Result<Reply, StoreError> {
    Ok(match value {
        Value::Nil => Reply::Nil,
        Value::Int(n) => Reply::Int(n),
        Value::BulkString(bytes) => Reply::Text(String::from_utf8_lossy(&bytes).into_owned()),
        Value::SimpleString(text) => Reply::Text(text),
        Value::Okay => Reply::Text("OK".into()),
        Value::Array(items) | Value::Set(items) => {
            Reply::List(items.into_iter().map(reply).collect::<Result<_, _>>()?)
        }
        Value::ServerError(error) => return Err(StoreError::Command(format!("{error:?}"))),
        other => return Err(StoreError::Protocol(format!("unexpected reply {other:?}"))),
    })
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "(unparsable REDIS_URL)".into(),
    }
}

#[async_trait]
impl ScriptRunner for RedisConnection {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn send(&self, command: Vec<String>) -> Result<Reply, ScriptError> {
        let Some((verb, args)) = command.split_first() else {
            return Err(StoreError::Protocol("an empty command".into()).into());
        };
        let mut cmd = redis::cmd(verb);
        cmd.arg(args);
        self.query(cmd).await
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_the_description() {
        assert_eq!(
            redact("redis://:hunter2@db.example:6380/2"),
            "redis://:***@db.example:6380/2"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert!(!redact("rediss://user:hunter2@x").contains("hunter2"));
    }
}
