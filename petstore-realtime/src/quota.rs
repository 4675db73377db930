//! How many SSE streams one caller may hold open.
//!
//! Each open stream holds a socket, a log subscription and a task's worth of memory for
//! as long as the client likes: without a bound, one token (or one anonymous address)
//! can open streams until the process runs out of file descriptors. Callers are told
//! apart as the rate limiter does: by token subject, or by client address when
//! anonymous.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use petstore_core::Principal;

/// Open streams per caller.
#[derive(Debug, Default)]
pub(crate) struct StreamQuota {
    open: Mutex<HashMap<String, usize>>,
}

impl StreamQuota {
    /// The caller key of `who`, connecting from `ip` (anonymous callers without an
    /// address share one key).
    pub(crate) fn key(who: &Principal, ip: Option<IpAddr>) -> String {
        match (who.subject(), ip) {
            (Some(subject), _) if who.is_authenticated() => format!("sub:{subject}"),
            (_, Some(ip)) => format!("ip:{ip}"),
            _ => "anonymous".to_owned(),
        }
    }

    /// A place for one more stream of `key`, or `None` when it already holds `max`.
    /// The place is given back when the returned guard is dropped.
    pub(crate) fn take(self: &Arc<Self>, key: String, max: usize) -> Option<StreamPlace> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key.clone()).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(StreamPlace {
            quota: self.clone(),
            key,
        })
    }

    #[cfg(test)]
    fn open(&self, key: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(key).copied().unwrap_or(0)
    }
}

/// One open stream's place in its caller's quota.
#[derive(Debug)]
pub(crate) struct StreamPlace {
    quota: Arc<StreamQuota>,
    key: String,
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        let mut open = self
            .quota
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                // No key outlives its streams: the map stays as small as what is open.
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_max_places_and_one_back_when_a_stream_ends() {
        let quota = Arc::new(StreamQuota::default());
        let a = quota.take("sub:alice".into(), 2).expect("first");
        let _b = quota.take("sub:alice".into(), 2).expect("second");
        assert!(quota.take("sub:alice".into(), 2).is_none());
        assert!(
            quota.take("sub:bob".into(), 2).is_some(),
            "others are not limited"
        );
        drop(a);
        assert_eq!(quota.open("sub:alice"), 1);
        assert!(quota.take("sub:alice".into(), 2).is_some());
    }
}
