//! Live fan-out of published events to this process's subscribers.
//!
//! Stand-in: the lead is exporting the in-memory log's replay-then-live fan-out from
//! petstore-core (`petstore_core::backend::Fanout`); when it lands on main this module
//! and the live half of `crate::follow` give way to it. Until then it keeps the
//! in-memory log's rules: one `broadcast` ring of `LogConfig::subscriber_buffer` events
//! shared by every subscriber (writers never wait; a subscriber a whole ring behind is
//! cut off with `Lagged`), and registration under the same lock as publication, so a
//! subscriber knows exactly which offsets reach it live.

use std::sync::{Arc, Mutex, MutexGuard};

use petstore_core::Event;
use tokio::sync::broadcast;

/// The publishing side, fed by the follower in offset order.
#[derive(Debug)]
pub(crate) struct Fanout {
    buffer: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `None` once the store is closed.
    tx: Option<broadcast::Sender<Arc<Event>>>,
    /// Offset of the newest published event.
    published: u64,
    /// Changes when the feed is interrupted: receivers of an older generation were
    /// not given every event and must be told so.
    generation: u64,
}

/// A subscriber's place in the feed.
#[derive(Debug)]
pub(crate) struct Registration {
    /// Every event published after the registration, in offset order.
    pub(crate) rx: broadcast::Receiver<Arc<Event>>,
    /// The newest offset published before it: the subscriber reads up to here from
    /// the database, the rest arrives on `rx`.
    pub(crate) published: u64,
    pub(crate) generation: u64,
}

/// Why a receiver closed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Closed {
    /// The store was closed: the stream ends.
    Shutdown,
    /// The feed was interrupted (the follower fell out of retention): the subscriber
    /// missed events and must resume.
    Interrupted,
}

impl Fanout {
    pub(crate) fn new(buffer: usize, published: u64) -> Self {
        let (tx, _) = broadcast::channel(buffer.max(1));
        Self {
            buffer: buffer.max(1),
            inner: Mutex::new(Inner {
                tx: Some(tx),
                published,
                generation: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves `Inner` consistent, so a poisoned lock is too.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest published offset.
    pub(crate) fn published(&self) -> u64 {
        self.lock().published
    }

    /// Publishes `events`, which continue the feed without a gap.
    pub(crate) fn publish(&self, events: &[Arc<Event>]) {
        let mut inner = self.lock();
        for event in events {
            inner.published = event.offset.offset;
            if let Some(tx) = &inner.tx {
                // No receiver is not an error: nobody is listening right now.
                let _ = tx.send(event.clone());
            }
        }
    }

    /// Registers a subscriber; `None` once the store is closed.
    pub(crate) fn register(&self) -> Option<Registration> {
        let inner = self.lock();
        Some(Registration {
            rx: inner.tx.as_ref()?.subscribe(),
            published: inner.published,
            generation: inner.generation,
        })
    }

    /// Restarts the feed at `published`: current receivers close and report
    /// [`Closed::Interrupted`].
    pub(crate) fn interrupt(&self, published: u64) {
        let mut inner = self.lock();
        if inner.tx.is_some() {
            inner.tx = Some(broadcast::channel(self.buffer).0);
            inner.generation += 1;
        }
        inner.published = published;
    }

    /// Ends every subscription (the store is closing).
    pub(crate) fn close(&self) {
        self.lock().tx = None;
    }

    /// Why a receiver of `generation` closed.
    pub(crate) fn why_closed(&self, generation: u64) -> Closed {
        let inner = self.lock();
        if inner.tx.is_some() && inner.generation != generation {
            Closed::Interrupted
        } else {
            Closed::Shutdown
        }
    }
}
