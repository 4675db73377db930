//! The messages of one endpoint in memory: in insertion order, indexed by id, bounded
//! by the eviction rule of [`crate::WebhookStore::queue`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::backend::{Message, MessageStatus};

struct Record {
    message: Message,
    /// Position in the log (insertion order).
    seq: u64,
}

/// The messages an endpoint owes or remembers, in insertion order, indexed by id.
///
/// Eviction keeps the ring's rule: beyond `cap` records, the oldest finished ones go
/// (by insertion order; a reopened message keeps its place); pending ones stay, so
/// the log may hold more than `cap` while many are pending.
#[derive(Default)]
pub(crate) struct MessageLog {
    /// Message id -> record. Ids are unique within an endpoint: a replayed event
    /// reuses its record.
    records: HashMap<String, Record>,
    /// Insertion order: `seq` -> message id.
    order: BTreeMap<u64, String>,
    /// The `seq` of every finished record, and possibly of records reopened since
    /// (dropped lazily when eviction meets them).
    finished: BTreeSet<u64>,
    next_seq: u64,
    /// How many records are pending.
    pending: usize,
}

impl MessageLog {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Message> {
        self.records.get(id).map(|r| &r.message)
    }

    /// A pending message, to update its delivery state (not its status: that is what
    /// [`MessageLog::finish_pending`] and [`MessageLog::reopen`] are for).
    pub(crate) fn pending_mut(&mut self, id: &str) -> Option<&mut Message> {
        self.records
            .get_mut(id)
            .map(|r| &mut r.message)
            .filter(|m| m.status == MessageStatus::Pending)
    }

    pub(crate) fn is_pending(&self, id: &str) -> bool {
        self.get(id)
            .is_some_and(|m| m.status == MessageStatus::Pending)
    }

    /// How many messages are pending.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// Newest first.
    pub(crate) fn newest(&self) -> impl Iterator<Item = &Message> {
        self.order.values().rev().filter_map(|id| self.get(id))
    }

    /// Oldest first.
    pub(crate) fn oldest(&self) -> impl Iterator<Item = &Message> {
        self.order.values().filter_map(|id| self.get(id))
    }

    /// Adds a new message (its id must not be in the log), dropping the oldest finished
    /// ones beyond `cap`.
    pub(crate) fn push(&mut self, message: Message, cap: usize) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = message.id.clone();
        if message.status == MessageStatus::Pending {
            self.pending += 1;
        } else {
            self.finished.insert(seq);
        }
        self.order.insert(seq, id.clone());
        if let Some(old) = self.records.insert(id, Record { message, seq }) {
            // Not expected (callers look the id up first); keep the index consistent.
            self.order.remove(&old.seq);
            self.finished.remove(&old.seq);
            if old.message.status == MessageStatus::Pending {
                self.pending -= 1;
            }
        }
        while self.records.len() > cap {
            let Some(seq) = self.finished.pop_first() else {
                break;
            };
            let Some(id) = self.order.get(&seq) else {
                continue;
            };
            // Reopened since it finished: it stays where it is (finishing it again
            // puts its `seq` back).
            if self.is_pending(id) {
                continue;
            }
            if let Some(id) = self.order.remove(&seq) {
                self.records.remove(&id);
            }
        }
    }

    /// Ends a message with `status` (whatever it was); `None` when it is not in the
    /// log.
    pub(crate) fn finish(&mut self, id: &str, status: MessageStatus) -> Option<&mut Message> {
        let r = self.records.get_mut(id)?;
        if r.message.status == MessageStatus::Pending {
            self.pending -= 1;
        }
        r.message.status = status;
        r.message.next_attempt_at = None;
        self.finished.insert(r.seq);
        Some(&mut r.message)
    }

    /// Ends a pending message with `status`; `None` when it is not pending (or not in
    /// the log).
    pub(crate) fn finish_pending(
        &mut self,
        id: &str,
        status: MessageStatus,
    ) -> Option<&mut Message> {
        if !self.is_pending(id) {
            return None;
        }
        self.finish(id, status)
    }

    /// Makes a finished message pending again, from the start of the retry schedule;
    /// `None` when it is not finished (or not in the log). It keeps its place.
    pub(crate) fn reopen(
        &mut self,
        id: &str,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Option<&mut Message> {
        let r = self.records.get_mut(id)?;
        if r.message.status == MessageStatus::Pending {
            return None;
        }
        self.pending += 1;
        r.message.status = MessageStatus::Pending;
        r.message.step = 0;
        r.message.next_attempt_at = next_attempt_at;
        Some(&mut r.message)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use bytes::Bytes;

    use super::*;
    use crate::ids::EndpointId;

    fn record(id: &str) -> Message {
        Message {
            endpoint: EndpointId::generate(),
            id: id.to_owned(),
            event_type: "pet.created".to_owned(),
            offset: None,
            body: Bytes::new(),
            status: MessageStatus::Pending,
            attempts: 0,
            step: 0,
            created_at: Utc::now(),
            last_attempt_at: None,
            next_attempt_at: None,
            last_status_code: None,
            last_error: None,
        }
    }

    /// The log as it was: a ring scanned linearly.
    #[derive(Default)]
    struct Ring(VecDeque<(String, MessageStatus)>);

    impl Ring {
        fn push(&mut self, id: &str, cap: usize) {
            self.0.push_back((id.to_owned(), MessageStatus::Pending));
            while self.0.len() > cap {
                match self
                    .0
                    .iter()
                    .position(|(_, s)| *s != MessageStatus::Pending)
                {
                    Some(i) => {
                        self.0.remove(i);
                    }
                    None => break,
                }
            }
        }

        fn set(&mut self, id: &str, status: MessageStatus) -> bool {
            match self.0.iter_mut().rev().find(|(m, _)| m == id) {
                Some((_, s)) => {
                    *s = status;
                    true
                }
                None => false,
            }
        }
    }

    fn same(log: &MessageLog, ring: &Ring) {
        assert_eq!(log.len(), ring.0.len());
        let theirs = ring.0.iter().map(|(id, s)| (id.as_str(), *s));
        let ours = log.oldest().map(|m| (m.id.as_str(), m.status));
        assert!(ours.eq(theirs));
        let theirs = ring.0.iter().rev().map(|(id, _)| id.as_str());
        assert!(log.newest().map(|m| m.id.as_str()).eq(theirs));
    }

    #[test]
    fn eviction_drops_the_oldest_finished_and_keeps_pending() {
        let mut log = MessageLog::default();
        for id in ["a", "b", "c"] {
            log.push(record(id), 3);
        }
        log.finish("b", MessageStatus::Succeeded);
        log.push(record("d"), 3);
        let ids: Vec<&str> = log.oldest().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "d"]);
        // Nothing finished: the log grows beyond the cap.
        log.push(record("e"), 3);
        assert_eq!(log.len(), 4);
        // A message finished, made pending again and finished again keeps its place.
        log.finish("c", MessageStatus::Failed);
        log.reopen("c", None).unwrap();
        log.finish("a", MessageStatus::Cancelled);
        log.push(record("f"), 3);
        let ids: Vec<&str> = log.oldest().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["c", "d", "e", "f"]);
        assert!(log.get("a").is_none());
        log.finish("c", MessageStatus::Succeeded);
        log.finish("e", MessageStatus::Succeeded);
        log.push(record("g"), 3);
        let ids: Vec<&str> = log.oldest().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["d", "f", "g"]);
        assert!(log.is_pending("d") && !log.is_pending("c"));
    }

    #[test]
    fn eviction_skips_a_reopened_message_without_moving_it() {
        let mut log = MessageLog::default();
        for id in ["a", "b"] {
            log.push(record(id), 2);
        }
        log.finish("a", MessageStatus::Succeeded);
        log.reopen("a", None).unwrap();
        // `a`'s stale entry among the finished ones is met and skipped: nothing is
        // finished, so nothing goes, and `a` keeps its place and its state.
        log.push(record("c"), 2);
        let ids: Vec<&str> = log.oldest().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(log.pending(), 3);
        assert!(log.finished.is_empty(), "the stale entry was dropped");
        // Finished again, it is the oldest finished one and goes first.
        log.finish_pending("a", MessageStatus::Failed).unwrap();
        log.push(record("d"), 2);
        let ids: Vec<&str> = log.oldest().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["b", "c", "d"]);
    }

    #[test]
    fn finish_pending_and_reopen_change_only_the_state_they_name() {
        let mut log = MessageLog::default();
        log.push(record("a"), 10);
        assert!(
            log.reopen("a", None).is_none(),
            "pending: nothing to reopen"
        );
        let m = log.finish_pending("a", MessageStatus::Failed).unwrap();
        assert_eq!(m.status, MessageStatus::Failed);
        assert!(
            log.finish_pending("a", MessageStatus::Succeeded).is_none(),
            "finished already"
        );
        assert_eq!(log.get("a").unwrap().status, MessageStatus::Failed);
        assert_eq!(log.pending(), 0);
        let due = Utc::now();
        log.reopen("a", Some(due)).unwrap();
        let m = log.get("a").unwrap();
        assert_eq!(
            (m.status, m.next_attempt_at),
            (MessageStatus::Pending, Some(due))
        );
        assert_eq!(log.pending(), 1);
        assert!(log.finish_pending("nope", MessageStatus::Failed).is_none());
        assert!(log.reopen("nope", None).is_none());
    }

    #[test]
    fn eviction_matches_the_linear_ring() {
        // A small deterministic generator: the test needs no seed to reproduce.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for cap in [1, 2, 5, 16] {
            let mut log = MessageLog::default();
            let mut ring = Ring::default();
            let mut created = 0u64;
            for _ in 0..3_000 {
                match next(8) {
                    0..=2 => {
                        created += 1;
                        let id = format!("m{created}");
                        log.push(record(&id), cap);
                        ring.push(&id, cap);
                    }
                    op => {
                        // Mostly a message in the log, sometimes any (maybe evicted).
                        let id = match ring.0.len() as u64 {
                            len if len > 0 && next(8) > 0 => ring.0[next(len) as usize].0.clone(),
                            _ => format!("m{}", 1 + next(created.max(1))),
                        };
                        let status = if op < 7 {
                            [
                                MessageStatus::Succeeded,
                                MessageStatus::Failed,
                                MessageStatus::Cancelled,
                            ][next(3) as usize]
                        } else {
                            MessageStatus::Pending
                        };
                        let known = ring.set(&id, status);
                        if status == MessageStatus::Pending {
                            log.reopen(&id, None);
                        } else {
                            log.finish(&id, status);
                        }
                        assert_eq!(known, log.get(&id).is_some());
                    }
                }
                same(&log, &ring);
                let pending = log
                    .oldest()
                    .filter(|m| m.status == MessageStatus::Pending)
                    .count();
                assert_eq!(log.pending(), pending);
            }
            // Bounded bookkeeping.
            assert!(log.order.len() == log.records.len());
            assert!(log.finished.len() <= log.records.len());
        }
    }
}
