//! Anything that speaks Redis commands and runs Lua scripts: the native Redis
//! connection and the Upstash REST client differ only in how a command travels.
//! A script runs as one `EVALSHA`; a server that has not seen the script yet
//! answers `NOSCRIPT` and gets the script with `EVAL` instead (which also caches
//! it there, so the next call is one `EVALSHA` again).

use super::StoreError;
use async_trait::async_trait;

/// The shebang that lets Upstash lock only the script's keys. Plain Redis refuses it.
const KEY_LOCKING_SHEBANG: &str = "#!lua flags=allow-key-locking\n";

/// A script and the SHA-1 of its exact text, for `EVALSHA`.
#[derive(Debug, Clone)]
pub struct Script {
    pub source: String,
    pub sha1: String,
}

impl Script {
    /// `body` as sent, with the Upstash key-locking shebang when asked for.
    pub fn new(body: &str, key_locking: bool) -> Self {
        let source = if key_locking {
            format!("{KEY_LOCKING_SHEBANG}{}", body.trim_start())
        } else {
            body.trim_start().to_owned()
        };
        let sha1 = redis::Script::new(&source).get_hash().to_owned();
        Self { source, sha1 }
    }
}

/// A Redis reply, as far as the limiter's scripts need it.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Nil,
    Int(i64),
    Text(String),
    List(Vec<Reply>),
}

impl Reply {
    pub fn int(&self) -> Result<i64, StoreError> {
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

    /// A list of texts (an absent key's `Nil` is an empty list).
    pub fn texts(self) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Nil => Ok(Vec::new()),
            Self::List(items) => items
                .into_iter()
                .map(|item| match item {
                    Self::Text(text) => Ok(text),
                    Self::Int(n) => Ok(n.to_string()),
                    other => Err(StoreError::Protocol(format!(
                        "expected text, got {other:?}"
                    ))),
                })
                .collect(),
            other => Err(StoreError::Protocol(format!(
                "expected a list, got {other:?}"
            ))),
        }
    }

    pub fn pair(&self) -> Result<(i64, i64), StoreError> {
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

/// Scripts and commands over a [`ScriptRunner`].
pub struct ScriptedStore<R> {
    runner: R,
    /// Scripts carry Upstash's key-locking shebang (real Upstash only).
    key_locking: bool,
}

impl<R: ScriptRunner> ScriptedStore<R> {
    pub fn new(runner: R, key_locking: bool) -> Self {
        Self {
            runner,
            key_locking,
        }
    }

    pub fn describe(&self) -> String {
        self.runner.describe()
    }

    /// Whether scripts sent here should carry the key-locking shebang.
    pub fn key_locking(&self) -> bool {
        self.key_locking
    }

    /// Sends one plain command (the verb, then its arguments).
    pub async fn send(&self, command: Vec<String>) -> Result<Reply, StoreError> {
        Ok(self.runner.send(command).await?)
    }

    /// A cheap round trip that proves the server is there and accepts us.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self.runner.send(vec!["PING".into()]).await? {
            Reply::Text(pong) if pong == "PONG" => Ok(()),
            other => Err(StoreError::Protocol(format!("PING answered {other:?}"))),
        }
    }

    /// Runs `script` with `EVALSHA`, falling back to `EVAL` on `NOSCRIPT`.
    pub async fn run(
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

#[cfg(test)]
mod tests {
    use super::Script;

    #[test]
    fn hashes_are_sha1_of_the_exact_text() {
        let script = Script::new("return 1", false);
        // sha1("return 1"), as `SCRIPT LOAD "return 1"` answers.
        assert_eq!(script.sha1, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }

    #[test]
    fn the_shebang_is_the_first_line_only_when_asked_for() {
        let locked = Script::new("\nlocal key = 1", true);
        let plain = Script::new("\nlocal key = 1", false);
        assert!(locked
            .source
            .starts_with("#!lua flags=allow-key-locking\nlocal key"));
        assert!(plain.source.starts_with("local key"));
        assert_ne!(locked.sha1, plain.sha1);
    }
}
