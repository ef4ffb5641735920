//! [`SharedState`] on Redis or Upstash: the same [`ScriptedStore`] that runs the
//! limiter's scripts, so one connection (or one REST client) serves both. The
//! two-step operations are Lua scripts (one round trip, atomic); reads are plain
//! `HGETALL` / `LRANGE`.

use super::SharedState;
use crate::store::{Reply, Script, ScriptRunner, ScriptedStore, StoreError};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::LazyLock;

/// KEYS[1] hash; ARGV ttl_ms, then field/value pairs. 1 when created.
static CREATE_HASH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call("EXISTS", KEYS[1]) == 1 then
  return 0
end
redis.call("HSET", KEYS[1], unpack(ARGV, 2))
redis.call("PEXPIRE", KEYS[1], ARGV[1])
return 1
"#,
        false,
    )
});

/// KEYS[1] hash; ARGV field/value pairs. 1 when the hash existed and was updated.
static UPDATE_HASH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call("EXISTS", KEYS[1]) == 0 then
  return 0
end
redis.call("HSET", KEYS[1], unpack(ARGV))
return 1
"#,
        false,
    )
});

/// KEYS[1] list; ARGV value, keep, ttl_ms.
static PUSH_CAPPED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call("LPUSH", KEYS[1], ARGV[1])
redis.call("LTRIM", KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call("PEXPIRE", KEYS[1], ARGV[3])
return 1
"#,
        false,
    )
});

/// KEYS[1] sorted set of taken slots (score: when); ARGV now_ms, window_ms,
/// limit, a unique member. -1 when a slot was taken, else the milliseconds
/// until the oldest leaves the window.
static TAKE_SLOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now - window)
if redis.call("ZCARD", KEYS[1]) < tonumber(ARGV[3]) then
  redis.call("ZADD", KEYS[1], now, ARGV[4])
  redis.call("PEXPIRE", KEYS[1], window)
  return -1
end
local oldest = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
return math.max(1, tonumber(oldest[2]) + window - now)
"#,
        false,
    )
});

/// KEYS[1] the hold; ARGV holder, ttl_ms. 1 when taken or renewed.
static HOLD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local current = redis.call("GET", KEYS[1])
if current == false or current == ARGV[1] then
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
  return 1
end
return 0
"#,
        false,
    )
});

/// KEYS[1] the hold; ARGV holder.
static LET_GO: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
end
return 1
"#,
        false,
    )
});

/// KEYS[1] the line, a hash of ticket -> "joined_ms:seen_ms"; ARGV ticket,
/// now_ms, stale_ms. How many live tickets joined before this one.
static WAIT_IN_LINE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local now = tonumber(ARGV[2])
local stale = tonumber(ARGV[3])
local joined = now
local mine = redis.call("HGET", KEYS[1], ARGV[1])
if mine then
  joined = tonumber(string.match(mine, "^(%d+)"))
end
redis.call("HSET", KEYS[1], ARGV[1], joined .. ":" .. now)
local flat = redis.call("HGETALL", KEYS[1])
local ahead = 0
for i = 1, #flat, 2 do
  local j, s = string.match(flat[i + 1], "^(%d+):(%d+)$")
  j = tonumber(j)
  s = tonumber(s)
  if s == nil or s < now - stale then
    redis.call("HDEL", KEYS[1], flat[i])
  elseif j < joined or (j == joined and flat[i] < ARGV[1]) then
    ahead = ahead + 1
  end
end
redis.call("PEXPIRE", KEYS[1], stale * 4)
return ahead
"#,
        false,
    )
});

fn pairs<'a>(fields: &'a [(&str, String)]) -> impl Iterator<Item = String> + 'a {
    fields
        .iter()
        .flat_map(|(name, value)| [(*name).to_owned(), value.clone()])
}

#[async_trait]
impl<R: ScriptRunner> SharedState for ScriptedStore<R> {
    fn describe(&self) -> String {
        ScriptedStore::describe(self)
    }

    async fn create_hash(
        &self,
        key: &str,
        fields: &[(&str, String)],
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let args: Vec<String> = std::iter::once(ttl_ms.max(1).to_string())
            .chain(pairs(fields))
            .collect();
        Ok(self.run(&CREATE_HASH, &[key], &args).await? == Reply::Int(1))
    }

    async fn update_hash(&self, key: &str, fields: &[(&str, String)]) -> Result<bool, StoreError> {
        let args: Vec<String> = pairs(fields).collect();
        Ok(self.run(&UPDATE_HASH, &[key], &args).await? == Reply::Int(1))
    }

    async fn read_hash(&self, key: &str) -> Result<HashMap<String, String>, StoreError> {
        let flat = Reply::texts(self.send(vec!["HGETALL".into(), key.to_owned()]).await?)?;
        Ok(flat
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect())
    }

    async fn push_capped(
        &self,
        key: &str,
        value: &str,
        keep: usize,
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        let args = [
            value.to_owned(),
            keep.max(1).to_string(),
            ttl_ms.max(1).to_string(),
        ];
        self.run(&PUSH_CAPPED, &[key], &args).await?;
        Ok(())
    }

    async fn take_slot(
        &self,
        key: &str,
        limit: u32,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let args = [
            now_ms.to_string(),
            window_ms.max(1).to_string(),
            limit.to_string(),
            uuid::Uuid::new_v4().simple().to_string(),
        ];
        match self.run(&TAKE_SLOT, &[key], &args).await? {
            Reply::Int(wait) if wait < 0 => Ok(None),
            Reply::Int(wait) => Ok(Some(wait as u64)),
            other => Err(StoreError::Protocol(format!(
                "the slot script answered {other:?}"
            ))),
        }
    }

    async fn hold(&self, key: &str, holder: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let args = [holder.to_owned(), ttl_ms.max(1).to_string()];
        Ok(self.run(&HOLD, &[key], &args).await? == Reply::Int(1))
    }

    async fn let_go(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        self.run(&LET_GO, &[key], &[holder.to_owned()]).await?;
        Ok(())
    }

    async fn wait_in_line(
        &self,
        key: &str,
        ticket: &str,
        now_ms: u64,
        stale_ms: u64,
    ) -> Result<u64, StoreError> {
        let args = [
            ticket.to_owned(),
            now_ms.to_string(),
            stale_ms.max(1).to_string(),
        ];
        match self.run(&WAIT_IN_LINE, &[key], &args).await? {
            Reply::Int(ahead) if ahead >= 0 => Ok(ahead as u64),
            other => Err(StoreError::Protocol(format!(
                "the line script answered {other:?}"
            ))),
        }
    }

    async fn leave_line(&self, key: &str, ticket: &str) -> Result<(), StoreError> {
        self.send(vec!["HDEL".into(), key.to_owned(), ticket.to_owned()])
            .await?;
        Ok(())
    }

    async fn read_list(&self, key: &str) -> Result<Vec<String>, StoreError> {
        Reply::texts(
            self.send(vec![
                "LRANGE".into(),
                key.to_owned(),
                "0".into(),
                "-1".into(),
            ])
            .await?,
        )
    }
}
