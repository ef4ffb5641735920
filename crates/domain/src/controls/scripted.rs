//! [`ControlStore`] on Redis or Upstash: plain commands (`GET`, `SET`, `DEL`,
//! `SMISMEMBER`, `SADD`, `SREM`, `SMEMBERS`), as `@upstash/ratelimit` and
//! the Upstash console use on the same keys.

use super::ControlStore;
use crate::store::{Reply, ScriptRunner, ScriptedStore, StoreError};
use async_trait::async_trait;
use std::collections::HashMap;

fn command(verb: &str, args: &[&str]) -> Vec<String> {
    std::iter::once(verb)
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect()
}

#[async_trait]
impl<R: ScriptRunner> ControlStore for ScriptedStore<R> {
    async fn get_text(&self, key: &str) -> Result<Option<String>, StoreError> {
        match self.send(command("GET", &[key])).await? {
            Reply::Nil => Ok(None),
            Reply::Text(text) => Ok(Some(text)),
            Reply::Int(n) => Ok(Some(n.to_string())),
            other => Err(StoreError::Protocol(format!("GET answered {other:?}"))),
        }
    }

    async fn set_text(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        match value {
            Some(value) => self.send(command("SET", &[key, value])).await?,
            None => self.send(command("DEL", &[key])).await?,
        };
        Ok(())
    }

    async fn any_member(&self, key: &str, members: &[&str]) -> Result<bool, StoreError> {
        if members.is_empty() {
            return Ok(false);
        }
        let mut args = vec![key];
        args.extend_from_slice(members);
        match self.send(command("SMISMEMBER", &args)).await? {
            Reply::List(found) => Ok(found.iter().any(|one| one.int().is_ok_and(|n| n == 1))),
            other => Err(StoreError::Protocol(format!(
                "SMISMEMBER answered {other:?}"
            ))),
        }
    }

    async fn add_member(&self, key: &str, member: &str) -> Result<bool, StoreError> {
        Ok(self.send(command("SADD", &[key, member])).await?.int()? == 1)
    }

    async fn remove_member(&self, key: &str, member: &str) -> Result<bool, StoreError> {
        Ok(self.send(command("SREM", &[key, member])).await?.int()? == 1)
    }

    async fn set_field(
        &self,
        key: &str,
        field: &str,
        value: Option<&str>,
    ) -> Result<(), StoreError> {
        match value {
            Some(value) => self.send(command("HSET", &[key, field, value])).await?,
            None => self.send(command("HDEL", &[key, field])).await?,
        };
        Ok(())
    }

    async fn fields(&self, key: &str) -> Result<HashMap<String, String>, StoreError> {
        let flat = self.send(command("HGETALL", &[key])).await?.texts()?;
        Ok(flat
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect())
    }

    async fn members(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let mut members = self.send(command("SMEMBERS", &[key])).await?.texts()?;
        members.sort();
        Ok(members)
    }
}
