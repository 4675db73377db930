//! With the `opentelemetry` feature: a request's span continues the caller's trace.
//! The span becomes an OpenTelemetry span only where the application installed
//! `tracing-opentelemetry`'s layer; without it, this does nothing.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::TraceParent;

impl TraceParent {
    /// Makes the caller's span (this `traceparent`) the remote parent of `span`, so
    /// that an OpenTelemetry export shows `span` in the caller's trace. Every adapter
    /// calls it on its request span (HTTP requests, gRPC calls).
    pub fn continue_in(&self, span: &tracing::Span) {
        let value = self.as_str();
        // A parsed traceparent is `00-<32 hex>-<16 hex>-<2 hex>`.
        let (Ok(trace), Ok(parent), Ok(flags)) = (
            TraceId::from_hex(&value[3..35]),
            SpanId::from_hex(&value[36..52]),
            u8::from_str_radix(&value[53..55], 16),
        ) else {
            return;
        };
        let remote = SpanContext::new(
            trace,
            parent,
            TraceFlags::new(flags),
            true,
            TraceState::default(),
        );
        // Only fails when no OpenTelemetry layer is installed: nothing to continue then.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}
