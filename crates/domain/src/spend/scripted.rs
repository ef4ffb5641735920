//! The ledger on Redis or Upstash: the same [`ScriptedStore`] that runs the
//! limiter's scripts. Writing a row (with its day's totals and the release of
//! its reservation) and taking a reservation are Lua scripts: one round trip
//! each, atomic, so instances sharing the store never count a run twice or
//! admit past the budget together.

use super::{
    keys, DayTotals, Reservation, Reserved, SpendLedger, SpendRow, LATEST_KEPT, RECENT_KEPT,
};
use crate::store::{Reply, Script, ScriptRunner, ScriptedStore, StoreError};
use async_trait::async_trait;
use std::sync::LazyLock;

/// KEYS: run, day, latest, recent, reservations. ARGV: row JSON, keep_ms,
/// outcome, billed_ms, usd_micros, reservation id (or ""), latest kept,
/// recent kept. 1 when the row is new.
static RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if ARGV[6] ~= "" then
  redis.call("HDEL", KEYS[5], ARGV[6])
end
if not redis.call("SET", KEYS[1], "1", "NX", "PX", ARGV[2]) then
  return 0
end
for _, total in ipairs({"runs", "billed_ms", "usd_micros"}) do
  local by = 1
  if total == "billed_ms" then by = ARGV[4] elseif total == "usd_micros" then by = ARGV[5] end
  redis.call("HINCRBY", KEYS[2], total, by)
  redis.call("HINCRBY", KEYS[2], total .. ":" .. ARGV[3], by)
end
redis.call("PEXPIRE", KEYS[2], ARGV[2])
redis.call("LPUSH", KEYS[3], ARGV[1])
redis.call("LTRIM", KEYS[3], 0, tonumber(ARGV[7]) - 1)
redis.call("PEXPIRE", KEYS[3], ARGV[2])
if tonumber(ARGV[4]) > 0 then
  redis.call("LPUSH", KEYS[4], ARGV[4])
  redis.call("LTRIM", KEYS[4], 0, tonumber(ARGV[8]) - 1)
  redis.call("PEXPIRE", KEYS[4], ARGV[2])
end
return 1
"#,
        false,
    )
});

/// What a day holds: spent plus live reservations (lapsed ones dropped).
/// KEYS: day, reservations. ARGV: now_ms.
const HELD: &str = r#"
local function held(day, reservations, now)
  local spent = tonumber(redis.call("HGET", day, "usd_micros") or "0")
  local sum = 0
  local all = redis.call("HGETALL", reservations)
  for i = 1, #all, 2 do
    local amount, expires = string.match(all[i + 1], "^(%d+):(%d+)$")
    if amount == nil or tonumber(expires) <= now then
      redis.call("HDEL", reservations, all[i])
    else
      sum = sum + tonumber(amount)
    end
  end
  return spent, sum
end
"#;

/// KEYS: day, reservations. ARGV: id, micros, budget, now_ms, expires_ms,
/// keep_ms. {admitted (0/1), spent + held after}.
static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        &format!(
            "{HELD}{}",
            r#"
local spent, sum = held(KEYS[1], KEYS[2], tonumber(ARGV[4]))
local want = tonumber(ARGV[2])
if spent + sum + want > tonumber(ARGV[3]) then
  return {0, spent + sum}
end
redis.call("HSET", KEYS[2], ARGV[1], ARGV[2] .. ":" .. ARGV[5])
redis.call("PEXPIRE", KEYS[2], ARGV[6])
return {1, spent + sum + want}
"#
        ),
        false,
    )
});

/// KEYS: day, reservations. ARGV: now_ms. The day's fields, then the sum
/// reserved, flattened.
static DAY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        &format!(
            "{HELD}{}",
            r#"
local _, sum = held(KEYS[1], KEYS[2], tonumber(ARGV[1]))
local fields = redis.call("HGETALL", KEYS[1])
table.insert(fields, "reserved")
table.insert(fields, tostring(sum))
return fields
"#
        ),
        false,
    )
});

/// KEYS: day. ARGV: keep_ms, then scope and count pairs.
static REFUSED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
for i = 2, #ARGV, 2 do
  redis.call("HINCRBY", KEYS[1], "refused:" .. ARGV[i], ARGV[i + 1])
end
redis.call("PEXPIRE", KEYS[1], ARGV[1])
return 1
"#,
        false,
    )
});

impl<R: ScriptRunner> ScriptedStore<R> {
    async fn list(&self, key: String, count: usize) -> Result<Vec<String>, StoreError> {
        let last = count.max(1) - 1;
        Reply::texts(
            self.send(vec!["LRANGE".into(), key, "0".into(), last.to_string()])
                .await?,
        )
    }
}

#[async_trait]
impl<R: ScriptRunner> SpendLedger for ScriptedStore<R> {
    async fn record(
        &self,
        row: &SpendRow,
        reservation: Option<&str>,
        keep_ms: u64,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(row).map_err(|e| StoreError::Protocol(e.to_string()))?;
        let keys = [
            keys::run(&row.run_id),
            keys::day(&row.day),
            keys::latest(),
            keys::recent(),
            keys::reservations(&row.day),
        ];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let args = [
            json,
            keep_ms.max(1).to_string(),
            row.outcome.clone(),
            row.billed_ms.to_string(),
            row.usd_micros.to_string(),
            reservation.unwrap_or_default().to_owned(),
            LATEST_KEPT.to_string(),
            RECENT_KEPT.to_string(),
        ];
        Ok(self.run(&RECORD, &keys, &args).await? == Reply::Int(1))
    }

    async fn reserve(&self, reservation: &Reservation) -> Result<Reserved, StoreError> {
        let keys = [
            keys::day(&reservation.day),
            keys::reservations(&reservation.day),
        ];
        let args = [
            reservation.id.clone(),
            reservation.micros.to_string(),
            reservation.budget_micros.to_string(),
            reservation.now_ms.to_string(),
            reservation.expires_ms.to_string(),
            reservation.keep_ms.max(1).to_string(),
        ];
        let (admitted, committed) = self
            .run(&RESERVE, &[&keys[0], &keys[1]], &args)
            .await?
            .pair()?;
        Ok(Reserved {
            admitted: admitted == 1,
            committed_micros: committed.max(0) as u64,
        })
    }

    async fn release(&self, day: &str, id: &str) -> Result<(), StoreError> {
        self.send(vec!["HDEL".into(), keys::reservations(day), id.to_owned()])
            .await?;
        Ok(())
    }

    async fn add_refusals(
        &self,
        day: &str,
        counts: &[(String, u64)],
        keep_ms: u64,
    ) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut args = vec![keep_ms.max(1).to_string()];
        for (scope, count) in counts {
            args.push(scope.clone());
            args.push(count.to_string());
        }
        self.run(&REFUSED, &[&keys::day(day)], &args).await?;
        Ok(())
    }

    async fn day(&self, day: &str, now_ms: u64) -> Result<DayTotals, StoreError> {
        let keys = [keys::day(day), keys::reservations(day)];
        let flat = Reply::texts(
            self.run(&DAY, &[&keys[0], &keys[1]], &[now_ms.to_string()])
                .await?,
        )?;
        let mut reserved = 0;
        let fields = flat
            .chunks_exact(2)
            .filter_map(|pair| match pair[0].as_str() {
                "reserved" => {
                    reserved = pair[1].parse().unwrap_or(0);
                    None
                }
                _ => Some((pair[0].clone(), pair[1].clone())),
            })
            .collect::<Vec<_>>();
        let mut totals = DayTotals::from_fields(day, fields);
        totals.reserved_micros = reserved;
        Ok(totals)
    }

    async fn latest(&self, count: usize) -> Result<Vec<SpendRow>, StoreError> {
        Ok(self
            .list(keys::latest(), count)
            .await?
            .iter()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect())
    }

    async fn recent_billed_ms(&self) -> Result<Vec<u64>, StoreError> {
        Ok(self
            .list(keys::recent(), RECENT_KEPT)
            .await?
            .iter()
            .filter_map(|ms| ms.parse().ok())
            .collect())
    }

    async fn try_lock(&self, name: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let reply = self
            .send(vec![
                "SET".into(),
                keys::lock(name),
                "1".into(),
                "NX".into(),
                "PX".into(),
                ttl_ms.max(1).to_string(),
            ])
            .await?;
        Ok(matches!(reply, Reply::Text(ok) if ok == "OK"))
    }

    async fn read_mark(&self, name: &str) -> Result<Option<u64>, StoreError> {
        match self.send(vec!["GET".into(), keys::mark(name)]).await? {
            Reply::Nil => Ok(None),
            reply => Ok(u64::try_from(reply.int()?).ok()),
        }
    }

    async fn write_mark(&self, name: &str, value: u64) -> Result<(), StoreError> {
        self.send(vec!["SET".into(), keys::mark(name), value.to_string()])
            .await?;
        Ok(())
    }
}
