//! The Lua scripts the Redis-backed stores run: one script per decision, so each
//! decision is atomic in Redis and costs one round trip. They implement the logic
//! of `@upstash/ratelimit` v2.0.8 (see `algorithms.rs` for the same in Rust) on
//! the same keys, so both libraries can share counters.

use crate::store::Script;
use std::sync::LazyLock;

/// KEYS[1] counter; ARGV window_ms, rate. Returns the count after the increment.
const FIXED_WINDOW_LIMIT: &str = r#"
local key = KEYS[1]
local window = ARGV[1]
local rate = tonumber(ARGV[2])
local count = redis.call("INCRBY", key, rate)
if count == rate then
  redis.call("PEXPIRE", key, window)
end
return count
"#;

/// KEYS[1] counter. Returns the count (0 when absent).
const FIXED_WINDOW_USED: &str = r#"
local value = redis.call("GET", KEYS[1])
if value then
  return tonumber(value)
end
return 0
"#;

/// KEYS current, previous; ARGV limit, now_ms, window_ms, rate.
/// Returns what remains (-1 when rejected without writing).
const SLIDING_WINDOW_LIMIT: &str = r#"
local current_key = KEYS[1]
local previous_key = KEYS[2]
local limit = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local rate = tonumber(ARGV[4])
local current = tonumber(redis.call("GET", current_key) or "0")
local previous = tonumber(redis.call("GET", previous_key) or "0")
local weighted = math.floor((1 - (now % window) / window) * previous)
if rate > 0 and weighted + current >= limit then
  return -1
end
local updated = redis.call("INCRBY", current_key, rate)
if updated == rate then
  redis.call("PEXPIRE", current_key, window * 2 + 1000)
end
return limit - (updated + weighted)
"#;

/// KEYS current, previous; ARGV limit, now_ms, window_ms. Returns what remains.
const SLIDING_WINDOW_REMAINING: &str = r#"
local limit = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local current = tonumber(redis.call("GET", KEYS[1]) or "0")
local previous = tonumber(redis.call("GET", KEYS[2]) or "0")
local weighted = math.floor((1 - (now % window) / window) * previous)
return limit - (weighted + current)
"#;

/// KEYS bucket hash; ARGV max_tokens, interval_ms, refill_rate, now_ms, rate.
/// Returns {remaining (-1 when rejected), reset_ms}.
const TOKEN_BUCKET_LIMIT: &str = r#"
local key = KEYS[1]
local max_tokens = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local refill_rate = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local rate = tonumber(ARGV[5])
local stored = redis.call("HMGET", key, "refilledAt", "tokens")
local refilled_at = now
local tokens = max_tokens
if stored[1] then
  refilled_at = tonumber(stored[1])
  tokens = tonumber(stored[2])
end
if now >= refilled_at + interval then
  local refills = math.floor((now - refilled_at) / interval)
  tokens = math.min(max_tokens, tokens + refills * refill_rate)
  refilled_at = refilled_at + refills * interval
end
if tokens == 0 and rate > 0 then
  return {-1, refilled_at + interval}
end
local remaining = tokens - rate
local expire = math.ceil((max_tokens - remaining) / refill_rate) * interval
redis.call("HSET", key, "refilledAt", refilled_at, "tokens", remaining)
if expire > 0 then
  redis.call("PEXPIRE", key, expire)
end
return {remaining, refilled_at + interval}
"#;

/// KEYS bucket hash. Returns {tokens, refilledAt} or {-1, -1} when absent.
const TOKEN_BUCKET_REMAINING: &str = r#"
local stored = redis.call("HMGET", KEYS[1], "refilledAt", "tokens")
if not stored[1] then
  return {-1, -1}
end
return {tonumber(stored[2]), tonumber(stored[1])}
"#;

/// KEYS[1] counter; ARGV limit. Gives one unit back to a window's counter: never
/// below what the limit allows (refused requests counted past the limit do not
/// eat the refund), never under 0, and nothing at all when the counter is gone
/// (its window ended). Returns the count after.
const COUNTER_REFUND: &str = r#"
local count = tonumber(redis.call("GET", KEYS[1]) or "0")
if count <= 0 then
  return 0
end
local target = math.min(count, tonumber(ARGV[1])) - 1
redis.call("DECRBY", KEYS[1], count - target)
return target
"#;

/// KEYS[1] bucket; ARGV max_tokens. Puts one token back, never above the bucket's
/// size; an absent bucket is full already. Returns the tokens after (-1: absent).
const TOKEN_BUCKET_REFUND: &str = r#"
local tokens = redis.call("HGET", KEYS[1], "tokens")
if not tokens then
  return -1
end
tokens = tonumber(tokens)
if tokens < tonumber(ARGV[1]) then
  tokens = redis.call("HINCRBY", KEYS[1], "tokens", 1)
end
return tokens
"#;

/// KEYS pattern. Deletes every key matching it; returns how many.
const DELETE_MATCHING: &str = r#"
local cursor = "0"
local deleted = 0
repeat
  local page = redis.call("SCAN", cursor, "MATCH", KEYS[1])
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    deleted = deleted + redis.call("DEL", key)
  end
until cursor == "0"
return deleted
"#;

/// Every script a store needs, with or without the Upstash key-locking shebang.
#[derive(Debug, Clone)]
pub struct Scripts {
    pub fixed_window_limit: Script,
    pub fixed_window_used: Script,
    pub sliding_window_limit: Script,
    pub sliding_window_remaining: Script,
    pub token_bucket_limit: Script,
    pub token_bucket_remaining: Script,
    pub delete_matching: Script,
    pub counter_refund: Script,
    pub token_bucket_refund: Script,
}

impl Scripts {
    pub fn new(key_locking: bool) -> Self {
        Self {
            fixed_window_limit: Script::new(FIXED_WINDOW_LIMIT, key_locking),
            fixed_window_used: Script::new(FIXED_WINDOW_USED, key_locking),
            sliding_window_limit: Script::new(SLIDING_WINDOW_LIMIT, key_locking),
            sliding_window_remaining: Script::new(SLIDING_WINDOW_REMAINING, key_locking),
            token_bucket_limit: Script::new(TOKEN_BUCKET_LIMIT, key_locking),
            token_bucket_remaining: Script::new(TOKEN_BUCKET_REMAINING, key_locking),
            delete_matching: Script::new(DELETE_MATCHING, key_locking),
            counter_refund: Script::new(COUNTER_REFUND, key_locking),
            token_bucket_refund: Script::new(TOKEN_BUCKET_REFUND, key_locking),
        }
    }

    /// The scripts for a store that wants the key-locking shebang or not, built once.
    pub fn for_store(key_locking: bool) -> &'static Scripts {
        static PLAIN: LazyLock<Scripts> = LazyLock::new(|| Scripts::new(false));
        static LOCKING: LazyLock<Scripts> = LazyLock::new(|| Scripts::new(true));
        if key_locking {
            &LOCKING
        } else {
            &PLAIN
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shebang_is_the_first_line_only_when_asked_for() {
        let upstash = Scripts::new(true);
        let plain = Scripts::new(false);
        assert!(upstash
            .fixed_window_limit
            .source
            .starts_with("#!lua flags=allow-key-locking\nlocal key"));
        assert!(plain.fixed_window_limit.source.starts_with("local key"));
        assert_ne!(
            upstash.fixed_window_limit.sha1,
            plain.fixed_window_limit.sha1
        );
    }
}
