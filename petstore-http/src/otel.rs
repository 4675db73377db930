//! With the `opentelemetry` feature: a request's span continues the caller's trace.
//! The span becomes an OpenTelemetry span only where the application installed
//! `tracing-opentelemetry`'s layer; without it, this does nothing.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use petstore_core::TraceParent;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Makes the caller's span (from its valid `traceparent`) the remote parent of `span`.
pub(crate) fn continue_trace(span: &tracing::Span, traceparent: &TraceParent) {
    let value = traceparent.as_str();
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
