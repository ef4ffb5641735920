//! The owner's model servers as one pool, shared by every instance through
//! the store: a generation holds a free server while its run lasts (a hold
//! per server, renewed every few seconds and lapsing when its instance dies),
//! and when every server is held it waits in one line with everyone else's
//! generations (first come, first served; a ticket not seen for a few seconds
//! leaves the line). In memory for a single instance.

use crate::clock::Clock;
use crate::generator::ProgressReporter;
use crate::shared::SharedState;
use lofianime_wire::progress::Phase;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How long a hold lives without renewal.
const HOLD_MS: u64 = 15_000;
/// How often a hold is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// A ticket not seen for this long leaves the line.
const LINE_STALE_MS: u64 = 5_000;
/// How often a ticket in the line looks again.
const LOOK_EVERY: Duration = Duration::from_millis(200);

const LINE: &str = "lofianime:cog:line";

fn hold_key(server: usize) -> String {
    format!("lofianime:cog:server:{server}")
}

/// The pool of `servers` model servers.
pub(super) struct Pool {
    state: Arc<dyn SharedState>,
    clock: Arc<dyn Clock>,
    servers: usize,
}

/// Why no server could be had.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NoServer {
    /// Every server was tried and is down (or refused).
    AllDown,
}

/// A server held for one run; let go when dropped.
pub(super) struct Held {
    pub(super) server: usize,
    holder: String,
    state: Arc<dyn SharedState>,
    renewing: tokio::task::JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewing.abort();
        let (state, key, holder) = (
            self.state.clone(),
            hold_key(self.server),
            self.holder.clone(),
        );
        crate::on_drop::spawn_cleanup(async move {
            if let Err(error) = state.let_go(&key, &holder).await {
                tracing::warn!(%error, "could not let a model server go (its hold lapses in 15 s)");
            }
        });
    }
}

/// Leaves the line when dropped (the visitor left or cancelled while waiting).
struct InLine {
    state: Arc<dyn SharedState>,
    ticket: String,
}

impl Drop for InLine {
    fn drop(&mut self) {
        let (state, ticket) = (self.state.clone(), self.ticket.clone());
        crate::on_drop::spawn_cleanup(async move {
            let _ = state.leave_line(LINE, &ticket).await;
        });
    }
}

impl Pool {
    pub(super) fn new(state: Arc<dyn SharedState>, clock: Arc<dyn Clock>, servers: usize) -> Self {
        Self {
            state,
            clock,
            servers,
        }
    }

    /// Waits in line for a server that is not held (and not in `down`), and
    /// holds it; says how many are ahead meanwhile. A store that cannot
    /// answer lets the generation try the servers in turn (the servers' own
    /// 409 then keeps two runs off one server).
    pub(super) async fn take(
        &self,
        progress: &ProgressReporter,
        down: &HashSet<usize>,
    ) -> Result<Held, NoServer> {
        let ticket = uuid::Uuid::new_v4().simple().to_string();
        let _in_line = InLine {
            state: self.state.clone(),
            ticket: ticket.clone(),
        };
        let first = rand::random_range(0..self.servers.max(1));
        loop {
            if down.len() >= self.servers {
                return Err(NoServer::AllDown);
            }
            let ahead = match self
                .state
                .wait_in_line(LINE, &ticket, self.clock.now_ms(), LINE_STALE_MS)
                .await
            {
                Ok(ahead) => ahead,
                Err(error) => {
                    tracing::warn!(%error, "the model servers' line cannot be read; trying the servers");
                    0
                }
            };
            // Only those a free server could be for try to take one.
            if ahead < (self.servers - down.len()) as u64 {
                for offset in 0..self.servers {
                    let server = (first + offset) % self.servers;
                    if down.contains(&server) {
                        continue;
                    }
                    let taken = self
                        .state
                        .hold(&hold_key(server), &ticket, HOLD_MS)
                        .await
                        .unwrap_or(true);
                    if taken {
                        return Ok(self.held(server, ticket));
                    }
                }
            }
            progress.report(Phase::InLine(ahead.min(u32::MAX as u64) as u32));
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }

    fn held(&self, server: usize, holder: String) -> Held {
        let renewing = {
            let (state, key, holder) = (self.state.clone(), hold_key(server), holder.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    if let Err(error) = state.hold(&key, &holder, HOLD_MS).await {
                        tracing::warn!(%error, "could not renew the hold on a model server");
                    }
                }
            })
        };
        Held {
            server,
            holder,
            state: self.state.clone(),
            renewing,
        }
    }
}
