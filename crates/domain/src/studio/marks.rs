//! Marks that every instance sees, each with an expiry: a sign-in attempt used
//! once, a session ended for good. The web side decides what they mean; the
//! studio keeps them in the shared store (Redis or Upstash when configured).

use super::{Studio, StudioError};

/// The keys of the marks.
fn key(name: &str) -> String {
    format!("lofianime:mark:{name}")
}

impl Studio {
    /// Sets the mark `name` for `ttl_ms`; false when it was set already (by
    /// this instance or another): the thing it marks was used before.
    pub async fn mark_once(&self, name: &str, ttl_ms: u64) -> Result<bool, StudioError> {
        let at = self.now_ms().to_string();
        self.parts
            .shared
            .create_hash(&key(name), &[("at", at)], ttl_ms.max(1))
            .await
            .map_err(StudioError::JobBoard)
    }

    /// Whether the mark `name` is set (and has not expired).
    pub async fn is_marked(&self, name: &str) -> Result<bool, StudioError> {
        let hash = self
            .parts
            .shared
            .read_hash(&key(name))
            .await
            .map_err(StudioError::JobBoard)?;
        Ok(!hash.is_empty())
    }
}
