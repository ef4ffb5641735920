//! The front door to the owner's live controls: the pause switch, the
//! per-visitor limit in force, the deny list. Each change is logged once,
//! with who made it.

use super::{Studio, StudioError};

/// The limits a visitor is held to: the settings' and the one in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The per-visitor limit from the settings.
    pub configured: u64,
    /// The owner's live limit, when one is set (here or by a Node app with
    /// `setDynamicLimit`).
    pub dynamic: Option<u64>,
}

impl Limits {
    pub fn in_force(&self) -> u64 {
        self.dynamic.unwrap_or(self.configured)
    }
}

impl Studio {
    /// Whether generation is paused (as this instance last read it, at most a
    /// second ago).
    pub async fn is_paused(&self) -> bool {
        self.parts.pause.is_paused().await
    }

    /// Pauses generation on every instance (`by`: who, for the log).
    pub async fn pause(&self, by: &str) -> Result<(), StudioError> {
        self.parts
            .pause
            .set(Some(by))
            .await
            .map_err(StudioError::LimiterUnavailable)?;
        tracing::warn!(by, "generation paused by the owner");
        Ok(())
    }

    /// Resumes generation on every instance.
    pub async fn resume(&self, by: &str) -> Result<(), StudioError> {
        self.parts
            .pause
            .set(None)
            .await
            .map_err(StudioError::LimiterUnavailable)?;
        tracing::warn!(by, "generation resumed by the owner");
        Ok(())
    }

    /// The per-visitor limits.
    pub async fn limits(&self) -> Limits {
        Limits {
            configured: self.parts.limiter.algorithm().limit(),
            dynamic: self.dynamic.current().await,
        }
    }

    /// Sets the per-visitor limit in force on every instance (`None`: back
    /// to the settings' value), where `@upstash/ratelimit`'s
    /// `setDynamicLimit` keeps it.
    pub async fn set_visitor_limit(&self, limit: Option<u64>, by: &str) -> Result<(), StudioError> {
        self.dynamic
            .set(limit)
            .await
            .map_err(StudioError::LimiterUnavailable)?;
        match limit {
            Some(limit) => {
                tracing::warn!(by, limit, "the per-visitor limit was changed by the owner")
            }
            None => tracing::warn!(
                by,
                "the per-visitor limit was reset to the settings' value by the owner"
            ),
        }
        Ok(())
    }

    /// Blocks `target` (an address, an IPv6 /64 as `2001:db8:1:2::/64`, an
    /// e-mail or `sub:{subject}`); false when it was blocked already.
    pub async fn block(&self, target: &str, by: &str) -> Result<bool, StudioError> {
        let added = self
            .parts
            .deny
            .add(target)
            .await
            .map_err(StudioError::LimiterUnavailable)?;
        tracing::warn!(by, target = %crate::visitor::tag(target), "a visitor was blocked by the owner");
        Ok(added)
    }

    /// Lifts the block on `target`; false when there was none.
    pub async fn unblock(&self, target: &str, by: &str) -> Result<bool, StudioError> {
        let removed = self
            .parts
            .deny
            .remove(target)
            .await
            .map_err(StudioError::LimiterUnavailable)?;
        tracing::warn!(by, target = %crate::visitor::tag(target), "a block was lifted by the owner");
        Ok(removed)
    }

    /// Removes image `id` (moderation): its files leave the storage, and on
    /// every instance its page and files answer "removed" and it leaves the
    /// recent-images lists. False when there was no such image.
    pub async fn remove_image(
        &self,
        id: &lofianime_wire::ImageId,
        by: &str,
    ) -> Result<bool, StudioError> {
        let existed = self
            .parts
            .images
            .delete(id)
            .await
            .map_err(StudioError::ImageStore)?;
        if !existed && !self.parts.removed.contains(id.as_str()).await {
            return Ok(false);
        }
        self.parts
            .removed
            .add(id.as_str())
            .await
            .map_err(StudioError::LimiterUnavailable)?;
        tracing::warn!(by, image = %id, "an image was removed by the owner");
        Ok(true)
    }

    /// Everything on the deny list.
    pub async fn blocks(&self) -> Result<Vec<String>, StudioError> {
        self.parts
            .deny
            .members()
            .await
            .map_err(StudioError::LimiterUnavailable)
    }
}
