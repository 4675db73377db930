//! What was built for the most recent events, so that the connections delivering the
//! same event share one copy.

use std::collections::VecDeque;

use petstore_core::ResumeToken;

/// Values built for recent events, oldest first, at most a given number.
#[derive(Debug)]
pub(crate) struct Recent<T>(VecDeque<(ResumeToken, T)>);

impl<T> Default for Recent<T> {
    fn default() -> Self {
        Self(VecDeque::new())
    }
}

impl<T: Clone> Recent<T> {
    /// The value kept for the event at `at`. Connections are a few events apart, so
    /// the search starts from the newest.
    pub(crate) fn get(&self, at: ResumeToken) -> Option<T> {
        self.0
            .iter()
            .rev()
            .find_map(|(offset, value)| (*offset == at).then(|| value.clone()))
    }

    /// Keeps `value` for the event at `at`, dropping the oldest beyond `capacity`. An
    /// event older than the newest kept (a replay) is not kept. Returns whether the
    /// number of values kept grew.
    pub(crate) fn keep(&mut self, at: ResumeToken, value: T, capacity: usize) -> bool {
        if self.0.back().is_some_and(|(last, _)| *last >= at) {
            return false;
        }
        let grew = self.0.len() < capacity;
        if !grew {
            self.0.pop_front();
        }
        self.0.push_back((at, value));
        grew
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_in_order_and_not_replays() {
        let at = |n| ResumeToken::new(1, n);
        let mut recent = Recent::default();
        assert!(recent.keep(at(1), "a", 2));
        assert!(recent.keep(at(2), "b", 2));
        // Full: the oldest goes, the count stays.
        assert!(!recent.keep(at(3), "c", 2));
        assert_eq!(recent.get(at(1)), None);
        assert_eq!(recent.get(at(3)), Some("c"));
        // A replayed event is not kept and does not push out the live ones.
        assert!(!recent.keep(at(2), "old", 2));
        assert_eq!(recent.get(at(2)), Some("b"));
    }
}
