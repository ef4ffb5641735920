//! A [`LimiterStore`] for anything that runs Redis Lua scripts: the native Redis
//! connection and the Upstash REST client differ only in how a command travels.
//! Each store call is one `EVALSHA`; a server that has not seen the script yet
//! answers `NOSCRIPT` and gets the script with `EVAL` instead (which also caches
//! it there, so the next call is one `EVALSHA` again).

use super::scripts::{Script, Scripts};
use super::{Bucket, LimiterStore, StoreError};
use async_trait::async_trait;

/// A Redis reply, as far as the limiter's scripts need it.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Nil,
    Int(i64),
    Text(String),
    List(Vec<Reply>),
}

impl Reply {
    fn int(&self) -> Result<i64, StoreError> {
        match self {
            Self::Int(n) => Ok(*n),
            Self::Text(text) => text
                .parse()
                .map_err(|_| StoreError::Protocol(format!("expected an integer, got {text:?}"))),
            other => Err(StoreError::Protocol(format!(
                "expected an integer, got {other:?}"
            ))),
        }
    }

    fn pair(&self) -> Result<(i64, i64), StoreError> {
        match self {
            Self::List(items) if items.len() == 2 => Ok((items[0].int()?, items[1].int()?)),
            other => Err(StoreError::Protocol(format!(
                "expected two integers, got {other:?}"
            ))),
        }
    }
}

/// Why a script did not run.
#[derive(Debug)]
pub enum ScriptError {
    /// The server does not know the script's hash yet.
    NoScript,
    Store(StoreError),
}

impl From<StoreError> for ScriptError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<ScriptError> for StoreError {
    fn from(error: ScriptError) -> Self {
        match error {
            ScriptError::NoScript => {
                StoreError::Protocol("NOSCRIPT where no script was run".into())
            }
            ScriptError::Store(error) => error,
        }
    }
}

/// How commands reach a Redis-compatible server.
#[async_trait]
pub trait ScriptRunner: Send + Sync + 'static {
    fn describe(&self) -> String;
    /// Sends one command (the verb, then its arguments) and returns the reply.
    async fn send(&self, command: Vec<String>) -> Result<Reply, ScriptError>;
}

/// The limiter's scripts over a [`ScriptRunner`].
pub struct ScriptedStore<R> {
    runner: R,
    scripts: Scripts,
}

impl<R: ScriptRunner> ScriptedStore<R> {
    pub fn new(runner: R, scripts: Scripts) -> Self {
        Self { runner, scripts }
    }

    /// How commands reach the server.
    pub(crate) fn runner(&self) -> &R {
        &self.runner
    }

    /// A cheap round trip that proves the server is there and accepts us.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self.runner.send(vec!["PING".into()]).await? {
            Reply::Text(pong) if pong == "PONG" => Ok(()),
            other => Err(StoreError::Protocol(format!("PING answered {other:?}"))),
        }
    }

    /// Runs `script` with `EVALSHA`, falling back to `EVAL` on `NOSCRIPT`.
    pub(crate) async fn run(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[String],
    ) -> Result<Reply, StoreError> {
        let command = |verb: &str, script: &str| {
            let mut command = vec![verb.to_owned(), script.to_owned(), keys.len().to_string()];
            command.extend(keys.iter().map(|k| (*k).to_owned()));
            command.extend(args.iter().cloned());
            command
        };
        match self.runner.send(command("EVALSHA", &script.sha1)).await {
            Err(ScriptError::NoScript) => {
                Ok(self.runner.send(command("EVAL", &script.source)).await?)
            }
            other => Ok(other?),
        }
    }
}

fn args(values: &[i64]) -> Vec<String> {
    values.iter().map(i64::to_string).collect()
}

#[async_trait]
impl<R: ScriptRunner> LimiterStore for ScriptedStore<R> {
    fn describe(&self) -> String {
        self.runner.describe()
    }

    async fn fixed_window(&self, key: &str, window_ms: u64, rate: i64) -> Result<i64, StoreError> {
        self.run(
            &self.scripts.fixed_window_limit,
            &[key],
            &args(&[window_ms as i64, rate]),
        )
        .await?
        .int()
    }

    async fn fixed_window_used(&self, key: &str) -> Result<i64, StoreError> {
        self.run(&self.scripts.fixed_window_used, &[key], &[])
            .await?
            .int()
    }

    async fn sliding_window(
        &self,
        current_key: &str,
        previous_key: &str,
        limit: u64,
        now_ms: u64,
        window_ms: u64,
        rate: i64,
    ) -> Result<i64, StoreError> {
        self.run(
            &self.scripts.sliding_window_limit,
            &[current_key, previous_key],
            &args(&[limit as i64, now_ms as i64, window_ms as i64, rate]),
        )
        .await?
        .int()
    }

    async fn sliding_window_remaining(
        &self,
        current_key: &str,
        previous_key: &str,
        limit: u64,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<i64, StoreError> {
        self.run(
            &self.scripts.sliding_window_remaining,
            &[current_key, previous_key],
            &args(&[limit as i64, now_ms as i64, window_ms as i64]),
        )
        .await?
        .int()
    }

    async fn token_bucket(
        &self,
        key: &str,
        max_tokens: u64,
        interval_ms: u64,
        refill_rate: u64,
        now_ms: u64,
        rate: i64,
    ) -> Result<(i64, i64), StoreError> {
        self.run(
            &self.scripts.token_bucket_limit,
            &[key],
            &args(&[
                max_tokens as i64,
                interval_ms as i64,
                refill_rate as i64,
                now_ms as i64,
                rate,
            ]),
        )
        .await?
        .pair()
    }

    async fn token_bucket_remaining(&self, key: &str) -> Result<Option<Bucket>, StoreError> {
        let (tokens, refilled_at_ms) = self
            .run(&self.scripts.token_bucket_remaining, &[key], &[])
            .await?
            .pair()?;
        Ok((refilled_at_ms != -1).then_some(Bucket {
            refilled_at_ms,
            tokens,
        }))
    }

    async fn delete_matching(&self, pattern: &str) -> Result<u64, StoreError> {
        let deleted = self
            .run(&self.scripts.delete_matching, &[pattern], &[])
            .await?
            .int()?;
        Ok(deleted.max(0) as u64)
    }
}
