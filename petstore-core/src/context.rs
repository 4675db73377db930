//! What the transport knows about the request being served: its id, the client's
//! address and the W3C trace context. Adapters set it once at their edge with
//! [`RequestContext::scope`]; the service reads it where it needs it (the trace
//! context goes into the events a write appends, the client address into the login
//! throttle) without every command taking another parameter.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// The request being served, as its transport saw it.
///
/// ```
/// # use petstore_core::RequestContext;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let ctx = RequestContext::new().with_request_id("req-1");
/// let seen = ctx.scope(async { RequestContext::current().request_id().map(str::to_owned) }).await;
/// assert_eq!(seen.as_deref(), Some("req-1"));
/// # }
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RequestContext {
    request_id: Option<Arc<str>>,
    client_ip: Option<IpAddr>,
    traceparent: Option<TraceParent>,
    /// Set once the request made its one password check; shared by the clones of
    /// this context (everything the request runs).
    credential_checked: Arc<AtomicBool>,
}

impl PartialEq for RequestContext {
    fn eq(&self, other: &Self) -> bool {
        self.request_id == other.request_id
            && self.client_ip == other.client_ip
            && self.traceparent == other.traceparent
    }
}

impl Eq for RequestContext {}

impl RequestContext {
    /// An empty context (what code outside any [`RequestContext::scope`] sees).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the request id.
    pub fn with_request_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// Sets the client's address.
    pub fn with_client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }

    /// Sets the trace context the request arrived with.
    pub fn with_traceparent(mut self, traceparent: Option<TraceParent>) -> Self {
        self.traceparent = traceparent;
        self
    }

    /// The request id, if the transport gave one.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The client's address, if known.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    /// The W3C trace context of the request, if any.
    pub fn traceparent(&self) -> Option<&TraceParent> {
        self.traceparent.as_ref()
    }

    /// Claims the request's one password check: `true` the first time, `false` after
    /// (so that GraphQL aliases or batches cannot multiply the cost of a login).
    /// Outside any scope every call gets a fresh context, so library callers that set
    /// none are not limited here.
    pub(crate) fn claim_credential_check(&self) -> bool {
        !self.credential_checked.swap(true, Ordering::AcqRel)
    }

    /// Runs `f` with this context as [`RequestContext::current`]. Tasks spawned by `f`
    /// do not inherit it: enter the scope again inside them when they serve the same
    /// request.
    pub async fn scope<F: Future>(self, f: F) -> F::Output {
        CURRENT.scope(self, f).await
    }

    /// The context of the request being served, or an empty one outside any scope.
    pub fn current() -> RequestContext {
        CURRENT.try_with(Clone::clone).unwrap_or_default()
    }
}

/// A W3C Trace Context `traceparent` value (`00-<trace id>-<parent id>-<flags>`),
/// carried by events as the CloudEvents distributed-tracing extension so that one trace
/// shows a write and every push it caused.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TraceParent(Arc<str>);

impl TraceParent {
    /// The header value.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32 hex digits of the trace id.
    pub fn trace_id(&self) -> &str {
        &self.0[3..35]
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TraceParent {
    type Err = Error;

    /// Accepts version `00` as W3C Trace Context level 1 defines it: lower-case hex,
    /// a trace id and a parent id that are not all zeros.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid_field("traceparent", "not a W3C traceparent");
        let parts: Vec<&str> = s.trim().split('-').collect();
        let [version, trace, parent, flags] = parts[..] else {
            return Err(bad());
        };
        let hex = |p: &str, len: usize| {
            p.len() == len && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let zero = |p: &str| p.bytes().all(|b| b == b'0');
        if version != "00"
            || !hex(trace, 32)
            || !hex(parent, 16)
            || !hex(flags, 2)
            || zero(trace)
            || zero(parent)
        {
            return Err(bad());
        }
        Ok(Self(s.trim().into()))
    }
}

impl Serialize for TraceParent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TraceParent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for TraceParent {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TraceParent".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "W3C Trace Context `traceparent` of the request that caused the event.",
            "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_parse_as_w3c_level_1_defines_them() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t: TraceParent = ok.parse().unwrap();
        assert_eq!(t.as_str(), ok);
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert!(bad.parse::<TraceParent>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_context_is_seen_inside_its_scope_only() {
        assert_eq!(RequestContext::current(), RequestContext::new());
        let ctx = RequestContext::new()
            .with_request_id("r1")
            .with_client_ip("127.0.0.1".parse().unwrap());
        let inner = ctx.clone().scope(async { RequestContext::current() }).await;
        assert_eq!(inner, ctx);
        assert_eq!(RequestContext::current().request_id(), None);
    }
}
