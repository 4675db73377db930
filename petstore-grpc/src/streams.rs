//! What every server stream of this crate shares: it ends with `UNAVAILABLE` when the
//! server shuts down, with `DEADLINE_EXCEEDED` past the client's `grpc-timeout`, and
//! it is counted while open. The stream owns its core subscription, so a client that
//! goes away (its call is reset or its connection closes, which keepalive pings
//! detect) drops the stream and frees the subscription with it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::watch;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// How many streaming calls (server-streaming and bidirectional) are open right now.
/// Cheap to clone; every clone reads the same counter.
#[derive(Debug, Clone, Default)]
pub struct OpenStreams(Arc<AtomicUsize>);

impl OpenStreams {
    /// The current count.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Decrements the count (and the `grpc` streams gauge) when the stream it belongs to
/// is dropped.
struct Counted {
    open: OpenStreams,
    _gauge: petstore_core::telemetry::OpenStream,
}

impl Counted {
    fn new(open: &OpenStreams) -> Self {
        open.0.fetch_add(1, Ordering::SeqCst);
        Self {
            open: open.clone(),
            _gauge: petstore_core::telemetry::OpenStream::new("grpc"),
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The shutdown switch and the open-stream counter, shared by every service.
#[derive(Debug, Clone)]
pub(crate) struct Streams {
    shutdown: Arc<watch::Sender<bool>>,
    open: OpenStreams,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl Streams {
    pub(crate) fn new() -> Self {
        Self {
            shutdown: Arc::new(watch::channel(false).0),
            open: OpenStreams::default(),
        }
    }

    pub(crate) fn open(&self) -> OpenStreams {
        self.open.clone()
    }

    /// Ends every guarded stream (new ones end at once).
    pub(crate) fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    fn on_shutdown(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut rx = self.shutdown.subscribe();
        Box::pin(async move {
            if rx.wait_for(|down| *down).await.is_err() {
                // The switch is gone with the server: nothing will ever flip it.
                std::future::pending::<()>().await;
            }
        })
    }

    /// Guards a stream of a petstore call: counted, ended by shutdown (with
    /// `UNAVAILABLE`) and by the call's deadline (with `DEADLINE_EXCEEDED`).
    pub(crate) fn guard<T, S>(&self, inner: S, metadata: &MetadataMap) -> Guarded<T>
    where
        S: Stream<Item = Result<T, Status>> + Send + 'static,
    {
        Guarded {
            inner: Box::pin(inner),
            shutdown: self.on_shutdown(),
            last_words: Some(Err(Status::unavailable(
                "the server is shutting down; reconnect and resume from the last offset received",
            ))),
            deadline: grpc_timeout(metadata).map(|d| Box::pin(tokio::time::sleep(d))),
            done: false,
            _counted: Some(Counted::new(&self.open)),
        }
    }

    /// A `Watch*` call: the events on `channel` (narrowed to `types`) after `since`,
    /// as guarded protobuf events.
    pub(crate) async fn watch(
        &self,
        store: &petstore_core::PetStore,
        who: &petstore_core::Principal,
        since: Option<petstore_core::ResumeToken>,
        types: &[String],
        channel: petstore_core::Channel,
        metadata: &MetadataMap,
    ) -> Result<Guarded<crate::pb::Event>, Status> {
        use futures_util::StreamExt as _;
        let filter = petstore_core::EventFilter::channels([channel])
            .with_types(crate::convert::type_patterns(types).map_err(crate::error::status)?);
        let events = store
            .subscribe(who, since, filter)
            .await
            .map_err(crate::error::status)?
            .map(|item| {
                item.map(|e| crate::convert::event(&e))
                    .map_err(crate::error::status)
            });
        Ok(self.guard(events, metadata))
    }

    /// Guards a stream that is not counted and says `last_words` on shutdown (the
    /// health watch says NOT_SERVING).
    pub(crate) fn guard_quietly<T, S>(&self, inner: S, last_words: Result<T, Status>) -> Guarded<T>
    where
        S: Stream<Item = Result<T, Status>> + Send + 'static,
    {
        Guarded {
            inner: Box::pin(inner),
            shutdown: self.on_shutdown(),
            last_words: Some(last_words),
            deadline: None,
            done: false,
            _counted: None,
        }
    }
}

/// A response stream with the guarantees of [`Streams::guard`].
pub(crate) struct Guarded<T> {
    inner: BoxStream<T>,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    last_words: Option<Result<T, Status>>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
    _counted: Option<Counted>,
}

// `last_words` is only ever moved out whole, never pinned.
impl<T> Unpin for Guarded<T> {}

impl<T> fmt::Debug for Guarded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<T> Stream for Guarded<T> {
    type Item = Result<T, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.shutdown.as_mut().poll(cx).is_ready() {
            this.done = true;
            return Poll::Ready(this.last_words.take());
        }
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.done = true;
            return Poll::Ready(Some(Err(Status::deadline_exceeded(
                "the call's deadline (grpc-timeout) passed",
            ))));
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Err(status))) => {
                // An error ends the call.
                this.done = true;
                Poll::Ready(Some(Err(status)))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

/// The deadline a client sent in `grpc-timeout` (`<1 to 8 digits><H|M|S|m|u|n>`).
pub(crate) fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        let parse = |v: &'static str| {
            let mut m = MetadataMap::new();
            m.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&m)
        };
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("150m"), Some(Duration::from_millis(150)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("5x"), None);
        assert_eq!(parse("123456789S"), None);
        assert_eq!(grpc_timeout(&MetadataMap::new()), None);
    }
}
