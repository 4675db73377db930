//! Bookkeeping of unacknowledged publications: which log offset each MQTT packet id
//! belongs to, and how far the broker has acknowledged the log without a gap.

use std::collections::{HashMap, VecDeque};

use petstore_core::ResumeToken;

/// What a queued PUBLISH is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// One of the messages of the event at this position.
    Event(ResumeToken),
    /// The `offline` presence message sent on shutdown.
    Offline,
    /// A reply or the `online` presence message: nothing waits for it.
    Other,
}

#[derive(Debug)]
struct Pending {
    token: ResumeToken,
    /// Messages of the event not yet acknowledged.
    remaining: usize,
}

/// The in-flight window of the bridge.
#[derive(Debug, Default)]
pub(crate) struct Inflight {
    /// Events not yet retired, in log order.
    events: VecDeque<Pending>,
    /// PUBLISH requests queued to rumqttc that have no packet id yet, in order.
    queued: VecDeque<Purpose>,
    /// Sent PUBLISHes awaiting their acknowledgement.
    by_pkid: HashMap<u16, Purpose>,
    /// A PUBLISH held back by rumqttc because its packet id is still in use.
    collided: Option<(u16, Purpose)>,
}

impl Inflight {
    /// Events in the window (acknowledged ones behind an unacknowledged one count).
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// Opens the window entry of the event at `token`, published as `messages`
    /// messages.
    pub(crate) fn begin(&mut self, token: ResumeToken, messages: usize) {
        self.events.push_back(Pending {
            token,
            remaining: messages,
        });
    }

    /// A PUBLISH for `purpose` was queued (in the same order rumqttc will send it).
    pub(crate) fn queued(&mut self, purpose: Purpose) {
        self.queued.push_back(purpose);
    }

    /// rumqttc sent the next queued PUBLISH with `pkid` (0: QoS 0, nothing to wait
    /// for). Returns what completed.
    pub(crate) fn sent(&mut self, pkid: u16) -> Option<Purpose> {
        let purpose = match self.collided.take() {
            // A collided publish goes out once its packet id is free: the next send.
            Some((id, purpose)) if id == pkid => purpose,
            other => {
                self.collided = other;
                self.queued.pop_front()?
            }
        };
        if pkid == 0 {
            self.complete(purpose);
            Some(purpose)
        } else {
            self.by_pkid.insert(pkid, purpose);
            None
        }
    }

    /// rumqttc holds the next queued PUBLISH until `pkid` is acknowledged.
    pub(crate) fn await_ack(&mut self, pkid: u16) {
        if let Some(purpose) = self.queued.pop_front() {
            self.collided = Some((pkid, purpose));
        }
    }

    /// The broker acknowledged `pkid`. Returns what completed.
    pub(crate) fn acked(&mut self, pkid: u16) -> Option<Purpose> {
        let purpose = self.by_pkid.remove(&pkid)?;
        self.complete(purpose);
        Some(purpose)
    }

    fn complete(&mut self, purpose: Purpose) {
        if let Purpose::Event(token) = purpose
            && let Ok(i) = self
                .events
                .binary_search_by_key(&token.offset, |p| p.token.offset)
        {
            let pending = &mut self.events[i];
            pending.remaining = pending.remaining.saturating_sub(1);
        }
    }

    /// Retires the fully acknowledged events at the front of the window: returns how
    /// many and the position of the last one (the new resume point).
    pub(crate) fn advance(&mut self) -> Option<(u64, ResumeToken)> {
        let mut retired = None;
        let mut n = 0;
        while self.events.front().is_some_and(|p| p.remaining == 0) {
            retired = self.events.pop_front().map(|p| p.token);
            n += 1;
        }
        retired.map(|t| (n, t))
    }

    /// Forgets everything (the connection is gone; the bridge resumes from its last
    /// acknowledged position).
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(offset: u64) -> ResumeToken {
        ResumeToken::new(9, offset)
    }

    fn publish(w: &mut Inflight, offset: u64, n: usize) {
        w.begin(t(offset), n);
        for _ in 0..n {
            w.queued(Purpose::Event(t(offset)));
        }
    }

    #[test]
    fn advances_only_over_a_fully_acked_prefix() {
        let mut w = Inflight::default();
        publish(&mut w, 1, 2);
        w.queued(Purpose::Other);
        publish(&mut w, 2, 1);
        for pkid in 1..=4 {
            assert_eq!(w.sent(pkid), None);
        }
        // Out of order: the second event and the reply first.
        assert_eq!(w.acked(4), Some(Purpose::Event(t(2))));
        assert_eq!(w.acked(3), Some(Purpose::Other));
        assert_eq!(w.advance(), None);
        w.acked(1);
        assert_eq!(w.advance(), None, "event 1 has a message in flight");
        w.acked(2);
        assert_eq!(w.advance(), Some((2, t(2))));
        assert_eq!(w.len(), 0);
        assert_eq!(w.acked(2), None, "a duplicate ack completes nothing");
    }

    #[test]
    fn qos0_completes_on_send() {
        let mut w = Inflight::default();
        publish(&mut w, 5, 1);
        assert_eq!(w.sent(0), Some(Purpose::Event(t(5))));
        assert_eq!(w.advance(), Some((1, t(5))));
    }

    #[test]
    fn a_collided_publish_takes_its_pkid_when_it_goes_out() {
        let mut w = Inflight::default();
        publish(&mut w, 1, 1);
        publish(&mut w, 2, 1);
        w.sent(1);
        // The second publish wants pkid 1 again while it is unacknowledged.
        w.await_ack(1);
        assert_eq!(w.acked(1), Some(Purpose::Event(t(1))));
        assert_eq!(w.sent(1), None);
        assert_eq!(w.advance(), Some((1, t(1))));
        assert_eq!(w.acked(1), Some(Purpose::Event(t(2))));
        assert_eq!(w.advance(), Some((1, t(2))));
    }

    #[test]
    fn clear_forgets_the_window() {
        let mut w = Inflight::default();
        publish(&mut w, 1, 1);
        w.sent(7);
        w.clear();
        assert_eq!(w.len(), 0);
        assert_eq!(w.acked(7), None);
    }
}
