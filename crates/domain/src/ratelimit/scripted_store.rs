//! The limiter on Redis or Upstash: each store call is one of the Lua scripts in
//! `scripts.rs`, run through the store layer's [`ScriptedStore`] (one `EVALSHA`,
//! one round trip).

use super::scripts::Scripts;
use super::{Bucket, LimiterStore};
use crate::store::{Script, ScriptRunner, ScriptedStore, StoreError};
use async_trait::async_trait;

/// The limiter's scripts, with the key-locking shebang when the store wants it.
fn scripts<R: ScriptRunner>(store: &ScriptedStore<R>) -> &'static Scripts {
    Scripts::for_store(store.key_locking())
}

/// Runs a limiter script that answers one integer.
async fn int<R: ScriptRunner>(
    store: &ScriptedStore<R>,
    script: &Script,
    keys: &[&str],
    values: &[i64],
) -> Result<i64, StoreError> {
    store.run(script, keys, &args(values)).await?.int()
}

fn args(values: &[i64]) -> Vec<String> {
    values.iter().map(i64::to_string).collect()
}

#[async_trait]
impl<R: ScriptRunner> LimiterStore for ScriptedStore<R> {
    fn describe(&self) -> String {
        ScriptedStore::describe(self)
    }

    async fn fixed_window(&self, key: &str, window_ms: u64, rate: i64) -> Result<i64, StoreError> {
        let script = &scripts(self).fixed_window_limit;
        int(self, script, &[key], &[window_ms as i64, rate]).await
    }

    async fn fixed_window_used(&self, key: &str) -> Result<i64, StoreError> {
        int(self, &scripts(self).fixed_window_used, &[key], &[]).await
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
        let script = &scripts(self).sliding_window_limit;
        let values = [limit as i64, now_ms as i64, window_ms as i64, rate];
        int(self, script, &[current_key, previous_key], &values).await
    }

    async fn sliding_window_remaining(
        &self,
        current_key: &str,
        previous_key: &str,
        limit: u64,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<i64, StoreError> {
        let script = &scripts(self).sliding_window_remaining;
        let values = [limit as i64, now_ms as i64, window_ms as i64];
        int(self, script, &[current_key, previous_key], &values).await
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
            &scripts(self).token_bucket_limit,
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
            .run(&scripts(self).token_bucket_remaining, &[key], &[])
            .await?
            .pair()?;
        Ok((refilled_at_ms != -1).then_some(Bucket {
            refilled_at_ms,
            tokens,
        }))
    }

    async fn delete_matching(&self, pattern: &str) -> Result<u64, StoreError> {
        let deleted = int(self, &scripts(self).delete_matching, &[pattern], &[]).await?;
        Ok(deleted.max(0) as u64)
    }

    async fn counter_refund(&self, key: &str, limit: u64) -> Result<i64, StoreError> {
        int(self, &scripts(self).counter_refund, &[key], &[limit as i64]).await
    }

    async fn token_bucket_refund(&self, key: &str, max_tokens: u64) -> Result<i64, StoreError> {
        let script = &scripts(self).token_bucket_refund;
        int(self, script, &[key], &[max_tokens as i64]).await
    }
}
