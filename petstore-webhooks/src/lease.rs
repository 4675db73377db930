//! The right to deliver. Instances sharing one [`crate::WebhookStore`] each run a
//! dispatcher, but only the holder of the lease follows the log and delivers, so each
//! event reaches each endpoint once; when it loses the lease it stops every task, and
//! the next holder goes on from the cursors and pending messages in the store.
//!
//! Until the core hands out cluster leases through the service, a process always holds
//! it: right for the in-memory store, which no other process shares.

use tokio::sync::watch;

/// Whether this process may deliver, and when that changes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lease {
    /// `None`: always held. Otherwise `true` while held; a closed channel means lost.
    held: Option<watch::Receiver<bool>>,
}

impl Lease {
    /// A lease held by whoever follows `held`.
    #[cfg(test)]
    pub(crate) fn following(held: watch::Receiver<bool>) -> Self {
        Self { held: Some(held) }
    }

    /// Resolves once this process holds the lease.
    pub(crate) async fn acquired(&mut self) {
        if let Some(held) = &mut self.held
            && held.wait_for(|held| *held).await.is_err()
        {
            // Nobody can grant it any more.
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once this process no longer holds the lease.
    pub(crate) async fn lost(&mut self) {
        match &mut self.held {
            None => std::future::pending().await,
            Some(held) => {
                let _ = held.wait_for(|held| !*held).await;
            }
        }
    }
}
