//! Request ids: a sane incoming `x-request-id` is kept (so that one id follows a
//! request through proxies), anything else is replaced by a fresh one.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, HeaderName};

/// The request id header, on requests and responses.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming id kept.
const MAX_LEN: usize = 128;

/// Fresh ids: 32 hex digits, a random prefix per generator and a counter. Unique like
/// a UUID, without asking the OS for randomness on every request.
#[derive(Debug, Clone)]
pub(crate) struct RequestIds {
    prefix: u64,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    pub(crate) fn new() -> Self {
        Self {
            prefix: RandomState::new().build_hasher().finish(),
            next: Arc::default(),
        }
    }

    /// The request's own id when it sent a sane one, else a fresh one.
    pub(crate) fn for_request(&self, headers: &HeaderMap) -> Arc<str> {
        match headers.get(X_REQUEST_ID).and_then(|v| v.to_str().ok()) {
            Some(id) if sane(id) => id.into(),
            _ => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                format!("{:016x}{n:016x}", self.prefix).into()
            }
        }
    }
}

/// At most 128 characters from the set that ids in the wild use (UUIDs, hex, AWS
/// `Root=1-…`, base64): nothing that could break a log line or a header.
fn sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_replaced() {
        let ids = RequestIds::new();
        let mut headers = HeaderMap::new();
        let a = ids.for_request(&headers);
        let b = ids.for_request(&headers);
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        for kept in [
            "abc-123",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
            "x".repeat(128).as_str(),
        ] {
            headers.insert(X_REQUEST_ID, kept.parse().unwrap());
            assert_eq!(&*ids.for_request(&headers), kept);
        }
        for replaced in ["", "a b", "x".repeat(129).as_str(), "<script>", "a\"b"] {
            headers.insert(X_REQUEST_ID, replaced.parse().unwrap());
            let id = ids.for_request(&headers);
            assert_ne!(&*id, replaced);
            assert_eq!(id.len(), 32);
        }
    }
}
