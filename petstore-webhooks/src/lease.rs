//! The right to deliver. Instances sharing one [`crate::WebhookStore`] each run a
//! dispatcher, but only the holder of the lease follows the log and delivers, so each
//! event reaches each endpoint once; when it loses the lease it stops every task, and
//! the next holder goes on from the cursors and pending messages in the store.
//!
//! The lease is the core's (`PetStore::hold_lease`): a row in a shared database, a
//! map in the in-memory store. The holder renews it every third of its lifetime; an
//! instance that cannot renew in time considers it lost (another may hold it by then).

use std::time::Duration;

use petstore_core::PetStore;
#[cfg(test)]
use tokio::sync::watch;
use tokio::time::Instant;

/// The name of the delivery lease among the instances sharing a store.
pub(crate) const NAME: &str = "petstore-webhooks/dispatcher";

/// Whether this process may deliver, and when that changes.
#[derive(Debug, Clone)]
pub(crate) enum Lease {
    /// The service's lease `NAME`, lasting `ttl` per grant.
    Service { service: PetStore, ttl: Duration },
    /// `true` while held; a closed channel means lost (tests drive it by hand).
    #[cfg(test)]
    Following(watch::Receiver<bool>),
}

impl Lease {
    /// The service's delivery lease.
    pub(crate) fn of(service: PetStore, ttl: Duration) -> Self {
        Self::Service { service, ttl }
    }

    /// A lease held by whoever follows `held`.
    #[cfg(test)]
    pub(crate) fn following(held: watch::Receiver<bool>) -> Self {
        Self::Following(held)
    }

    /// Resolves once this process holds the lease.
    pub(crate) async fn acquired(&mut self) {
        match self {
            Self::Service { service, ttl } => loop {
                match service.hold_lease(NAME, *ttl).await {
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot acquire the webhook delivery lease")
                    }
                }
                tokio::time::sleep(*ttl / 3).await;
            },
            #[cfg(test)]
            Self::Following(held) => {
                if held.wait_for(|held| *held).await.is_err() {
                    // Nobody can grant it any more.
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// Renews the lease until it is lost, then resolves.
    pub(crate) async fn lost(&mut self) {
        match self {
            Self::Service { service, ttl } => {
                let mut granted = Instant::now();
                loop {
                    tokio::time::sleep(*ttl / 3).await;
                    match service.hold_lease(NAME, *ttl).await {
                        Ok(true) => granted = Instant::now(),
                        Ok(false) => return,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot renew the webhook delivery lease");
                            // Past two thirds of the grant another instance may take it
                            // before the next try: stop delivering first.
                            if granted.elapsed() >= *ttl * 2 / 3 {
                                return;
                            }
                        }
                    }
                }
            }
            #[cfg(test)]
            Self::Following(held) => {
                let _ = held.wait_for(|held| !*held).await;
            }
        }
    }

    /// Gives the lease up (at shutdown), so that another instance takes over at once.
    pub(crate) async fn release(&self) {
        match self {
            Self::Service { service, .. } => {
                if let Err(e) = service.release_lease(NAME).await {
                    tracing::warn!(error = %e, "cannot release the webhook delivery lease");
                }
            }
            #[cfg(test)]
            Self::Following(_) => {}
        }
    }
}
