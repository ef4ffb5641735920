//! The front door to the owner's live controls: the pause switch, the
//! per-visitor limit in force, the deny list. Each change is logged once,
//! with who made it.

use super::{Studio, StudioError};

/// A limit the owner may change live: the settings' value and the live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live<T> {
    /// From the settings (`None`: none is set there).
    pub configured: Option<T>,
    /// Set live by the owner (or, for the per-visitor limit, by a Node app
    /// with `setDynamicLimit`).
    pub live: Option<T>,
}

impl<T: Copy> Live<T> {
    pub fn in_force(&self) -> Option<T> {
        self.live.or(self.configured)
    }
}

/// Every limit the owner may change live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Each visitor's generations per window.
    pub limit: Live<u64>,
    /// Signed-out visitors' own quota (`None`: they have none of their own).
    pub anonymous_limit: Option<Live<u64>>,
    /// The budget shared by all visitors (`None`: no count budget is set).
    pub global_limit: Option<Live<u64>>,
    /// The daily dollar budget, in micro-dollars.
    pub daily_usd_micros: Live<u64>,
}

/// Which live limit a change is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveLimit {
    Visitor,
    SignedOut,
    Shared,
    /// In micro-dollars.
    DailyDollars,
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

    /// Every limit the owner may change live, as this instance reads it.
    pub async fn limits(&self) -> Limits {
        let count = |limiter: &crate::ratelimit::RateLimiter| limiter.algorithm().limit();
        Limits {
            limit: Live {
                configured: Some(count(&self.parts.limiter)),
                live: self.dynamic.current().await,
            },
            anonymous_limit: match self.signed_out_own_quota() {
                Some(own) => Some(Live {
                    configured: Some(count(own)),
                    live: self.anonymous_limit.current().await,
                }),
                None => None,
            },
            global_limit: match &self.parts.budget {
                Some(budget) => Some(Live {
                    configured: Some(count(budget)),
                    live: self.global_limit.current().await,
                }),
                None => None,
            },
            daily_usd_micros: Live {
                configured: self.parts.spend.budget_micros(),
                live: self.parts.daily_usd.current().await,
            },
        }
    }

    /// Sets one live limit on every instance (`None`: back to the settings'
    /// value). The per-visitor limit is kept where `@upstash/ratelimit`'s
    /// `setDynamicLimit` keeps it. Refused (`Ok(false)`) for a quota that
    /// does not exist here (no signed-out quota, no count budget).
    pub async fn set_limit(
        &self,
        which: LiveLimit,
        value: Option<u64>,
        by: &str,
    ) -> Result<bool, StudioError> {
        let live = match which {
            LiveLimit::Visitor => &*self.dynamic,
            LiveLimit::SignedOut if self.signed_out_own_quota().is_some() => &*self.anonymous_limit,
            LiveLimit::Shared if self.parts.budget.is_some() => &*self.global_limit,
            LiveLimit::DailyDollars => &*self.parts.daily_usd,
            LiveLimit::SignedOut | LiveLimit::Shared => return Ok(false),
        };
        live.set(value)
            .await
            .map_err(StudioError::LimiterUnavailable)?;
        match value {
            Some(value) => {
                tracing::warn!(by, limit = ?which, value, "a limit was changed by the owner")
            }
            None => {
                tracing::warn!(by, limit = ?which, "a limit was reset to the settings' value by the owner")
            }
        }
        Ok(true)
    }

    /// Blocks `target` (an address, an IPv6 /64 as `2001:db8:1:2::/64`, an
    /// e-mail, `sub:{subject}` or a visitor's tag) on every instance, for
    /// `lasts` (`None`: until lifted); false when it was blocked already
    /// (its details are replaced).
    pub async fn block(
        &self,
        target: &str,
        lasts: Option<std::time::Duration>,
        note: Option<&str>,
        by: &str,
    ) -> Result<bool, StudioError> {
        let now_ms = self.now_ms();
        let block = crate::controls::Block {
            target: target.to_owned(),
            note: note.map(str::to_owned),
            by: Some(by.to_owned()),
            at_ms: Some(now_ms),
            expires_ms: lasts.map(|lasts| now_ms + lasts.as_millis() as u64),
        };
        let added = self
            .parts
            .deny
            .add(&block)
            .await
            .map_err(StudioError::LimiterUnavailable)?;
        tracing::warn!(by, target = %crate::visitor::tag(target), expires_in_secs = lasts.map(|d| d.as_secs()), "a visitor was blocked by the owner");
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
        if removed {
            tracing::warn!(by, target = %crate::visitor::tag(target), "a block was lifted by the owner");
        }
        Ok(removed)
    }

    /// Lifts the blocks whose time is up (every instance runs it now and
    /// then; lifting twice is harmless).
    pub async fn lift_expired_blocks(&self) -> Result<usize, StudioError> {
        let lifted = self
            .parts
            .deny
            .lift_expired(self.now_ms())
            .await
            .map_err(StudioError::LimiterUnavailable)?;
        if lifted > 0 {
            tracing::info!(lifted, "blocks whose time was up were lifted");
        }
        Ok(lifted)
    }

    /// Lifts expired blocks every 10 s until the process ends.
    pub async fn lift_expired_blocks_forever(&self) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = self.lift_expired_blocks().await {
                tracing::debug!(%error, "could not lift expired blocks; the next pass tries again");
            }
        }
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

    /// Everything on the deny list (with the details of the blocks made
    /// here; one made in the Upstash console has none).
    pub async fn blocks(&self) -> Result<Vec<crate::controls::Block>, StudioError> {
        self.parts
            .deny
            .list()
            .await
            .map_err(StudioError::LimiterUnavailable)
    }
}
