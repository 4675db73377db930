//! A WebSocket client that sends requests and does not read the answers fills its
//! connection's queue of outgoing messages; it is cut off (close 1013) and counted in
//! `petstore_subscriber_cutoffs_total`, as a subscriber the log cuts off is.
//!
//! A test binary of its own: the counter is the process's.

#[allow(dead_code, unreachable_pub)]
#[path = "it/support.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::SinkExt as _;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use petstore_core::LogConfig;
use petstore_core::telemetry::SUBSCRIBER_CUTOFFS_TOTAL;
use petstore_realtime::RealtimeConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use support::*;

/// Counts `petstore_subscriber_cutoffs_total`; every other metric is a no-op.
#[derive(Default)]
struct Cutoffs(Arc<AtomicU64>);

impl Recorder for Cutoffs {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        if key.name() == SUBSCRIBER_CUTOFFS_TOTAL {
            Counter::from_arc(self.0.clone())
        } else {
            Counter::noop()
        }
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_cut_off_by_its_full_queue_is_counted() {
    let recorder = Cutoffs::default();
    let cutoffs = recorder.0.clone();
    metrics::set_global_recorder(recorder).expect("the only recorder of this binary");

    let server = serve_on(
        small_buffer_listener(),
        store_with(LogConfig::default()),
        RealtimeConfig::default().outbound_queue(4),
    );
    let (mut slow, _) = tokio_tungstenite::client_async(
        server.ws_url("/v1/ws").as_str(),
        tokio_tungstenite::MaybeTlsStream::Plain(small_buffer_connection(server.addr).await),
    )
    .await
    .unwrap();
    // Events wait in the log while a client is behind; replies cannot: a client that
    // sends requests and never reads the answers fills its TCP buffers, then the
    // queue (4 messages), and is cut off.
    for id in 0..5_000 {
        let ping = serde_json::json!({ "type": "ping", "id": id }).to_string();
        let sent = tokio::time::timeout(WAIT, slow.send(Message::text(ping))).await;
        if !matches!(sent, Ok(Ok(()))) {
            break;
        }
    }
    let (_, close) = until_close(&mut slow).await;
    assert_eq!(close.code, CloseCode::Again, "1013: {close:?}");
    assert!(close.reason.starts_with("slow consumer"), "{close:?}");
    assert_eq!(cutoffs.load(Ordering::Relaxed), 1);
}
