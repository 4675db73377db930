//! OpenTelemetry export (the `otlp` cargo feature): every span the log filter lets
//! through is also sent, in batches, to an OTLP collector over HTTP/protobuf.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The service name spans are exported under.
const SERVICE_NAME: &str = "petstore-server";

/// The exporter of a running process: dropping it sends what is still batched and
/// stops it.
pub(crate) struct Exporter(SdkTracerProvider);

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("petstore-server: exporting the last spans over OTLP: {e}");
        }
    }
}

/// Where spans go for a collector at `endpoint`: its `/v1/traces`, as for
/// `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub(crate) fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// The tracing layer that exports spans to the OTLP collector at `endpoint` (a batch
/// every 5 s, or at shutdown), and its [`Exporter`].
pub(crate) fn layer<S>(
    endpoint: &str,
) -> anyhow::Result<(Box<dyn Layer<S> + Send + Sync>, Exporter)>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url(endpoint))
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
        .build();
    let tracer = provider.tracer(SERVICE_NAME);
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).boxed();
    Ok((layer, Exporter(provider)))
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn the_endpoint_is_the_collectors_base_url() {
        assert_eq!(
            traces_url("http://localhost:4318"),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://localhost:4318/"),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }
}
