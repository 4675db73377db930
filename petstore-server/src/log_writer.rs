//! The log writer: a request's task appends its formatted line to a queue in memory;
//! a thread of its own writes the queue out in batches, a few milliseconds after the
//! first line of a batch arrives.
//!
//! Why not `tracing-appender`'s non-blocking writer: it hands every line to its thread
//! over a channel and wakes the thread for it (a futex call and a context switch per
//! request on a busy server, on the request's core), and it allocates the line once
//! more. Measured with `petstore-bench --scenario observability`, that wake was the
//! largest single cost of the per-request INFO line after formatting it. Here the
//! thread is woken once per batch, and a line costs a lock and a copy.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Bytes the queue holds before new lines are dropped (about 16,000 typical lines).
pub(crate) const QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// How long the writer thread lets a batch gather after its first line.
const BATCH_WINDOW: Duration = Duration::from_millis(10);
/// The writer thread also looks at the queue this often without being woken.
const IDLE_CHECK: Duration = Duration::from_secs(1);

struct Shared {
    queue: Mutex<Vec<u8>>,
    dropped: AtomicUsize,
    stopping: AtomicBool,
    thread: OnceLock<Thread>,
}

/// The `MakeWriter` of the log layer: every line goes to the queue.
pub(crate) struct LogWriter(Arc<Shared>);

/// One line being written (see [`LogWriter`]).
pub(crate) struct Line<'a>(&'a Shared);

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(&self.0)
    }
}

impl Write for Line<'_> {
    /// Queues `buf` whole (the log layer writes a line in one call), or drops it when
    /// the queue is full.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut queue = self.0.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.len() + buf.len() > QUEUE_BYTES {
            drop(queue);
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(buf.len());
        }
        let first = queue.is_empty();
        queue.extend_from_slice(buf);
        drop(queue);
        if first && let Some(thread) = self.0.thread.get() {
            thread.unpark();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Stops the writer thread when dropped, after it wrote out what is queued.
pub(crate) struct Stop {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Stop {
    /// Lines dropped so far because the queue was full.
    pub(crate) fn dropped_lines(&self) -> usize {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// A writer to `out` and the handle that stops it.
pub(crate) fn start(out: impl Write + Send + 'static) -> io::Result<(LogWriter, Stop)> {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Vec::with_capacity(64 * 1024)),
        dropped: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        thread: OnceLock::new(),
    });
    let thread = {
        let shared = shared.clone();
        thread::Builder::new()
            .name("petstore-log".into())
            .spawn(move || run(&shared, out))?
    };
    let _ = shared.thread.set(thread.thread().clone());
    Ok((
        LogWriter(shared.clone()),
        Stop {
            shared,
            thread: Some(thread),
        },
    ))
}

fn run(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        thread::park_timeout(IDLE_CHECK);
        let stopping = shared.stopping.load(Ordering::Acquire);
        if !stopping {
            thread::sleep(BATCH_WINDOW);
        }
        std::mem::swap(
            &mut *shared.queue.lock().unwrap_or_else(PoisonError::into_inner),
            &mut batch,
        );
        if !batch.is_empty() {
            // Nowhere to report a failed log write: the line is lost either way.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
            batch.shrink_to(1024 * 1024);
        }
        if stopping {
            let rest =
                std::mem::take(&mut *shared.queue.lock().unwrap_or_else(PoisonError::into_inner));
            let _ = out.write_all(&rest).and_then(|()| out.flush());
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` that keeps what it is given.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_in_order_and_all_of_them_at_stop() {
        let sink = Sink::default();
        let (writer, stop) = start(sink.clone()).unwrap();
        for i in 0..1000 {
            writer
                .make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        drop(stop);
        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(written, expected);
    }

    #[test]
    fn a_full_queue_drops_whole_lines_and_counts_them() {
        // No writer thread: nothing drains the queue.
        let shared = Shared {
            queue: Mutex::new(Vec::new()),
            dropped: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            thread: OnceLock::new(),
        };
        let line = vec![b'x'; QUEUE_BYTES / 2];
        for _ in 0..3 {
            Line(&shared).write_all(&line).unwrap();
        }
        Line(&shared).write_all(b"y").unwrap();
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(shared.queue.lock().unwrap().len(), QUEUE_BYTES);
    }
}
