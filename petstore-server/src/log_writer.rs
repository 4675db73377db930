//! The log writer: a thread appends its formatted lines to a buffer of its own; a
//! writer thread collects the buffers a few milliseconds after the first line of a
//! batch arrives (sooner when a buffer is half full), merges them in timestamp order
//! and writes the batch out.
//!
//! Why not `tracing-appender`'s non-blocking writer: it hands every line to its thread
//! over a channel and wakes the thread for it (a futex call and a context switch per
//! request on a busy server, on the request's core), and it allocates the line once
//! more. Why a buffer per thread rather than one queue: with one queue, the lock and
//! the queue's end moved between the cores on every line (measured: 400 ns a line with
//! two threads logging, against nothing with one). Here a line costs a lock that only
//! the writer thread ever contends for (once per batch) and a copy, and the writer
//! thread is woken once per batch.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// Bytes a thread's buffer holds before its new lines are dropped (about 1,000 typical
/// lines; a busy server thread writes a tenth of that between two collections, and a
/// buffer half full is collected at once). Memory is bounded by this per logging
/// thread while the output stalls.
pub(crate) const BUFFER_BYTES: usize = 256 * 1024;
/// How long the writer thread lets a batch gather after its first line.
const BATCH_WINDOW: Duration = Duration::from_millis(10);
/// The writer thread also looks at the buffers this often without being woken.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// How many leading bytes of two lines from different threads are compared to order
/// them: enough for the timestamp that begins every line, after the JSON format's
/// `{"timestamp":"` or a colour code.
const ORDER_KEY_BYTES: usize = 48;
/// Each record in a buffer: its length (`u32`, little-endian), then the line.
const HEADER: usize = 4;

/// Tells the writers of one process apart in a thread's list of buffers.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's buffer in each writer it has written to (usually one).
    static BUFFERS: RefCell<Vec<(u64, Arc<Buffer>)>> = const { RefCell::new(Vec::new()) };
}

/// One thread's lines since the writer thread last collected them.
#[derive(Default)]
struct Buffer(Mutex<Vec<u8>>);

impl Buffer {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Shared {
    id: u64,
    /// Every thread's buffer; locked when a thread writes its first line and when the
    /// writer thread collects.
    buffers: Mutex<Vec<Arc<Buffer>>>,
    /// For a thread whose thread-local storage is gone (it is exiting).
    fallback: Arc<Buffer>,
    dropped: AtomicUsize,
    /// A buffer is half full: collect now rather than at the end of the batch window.
    urgent: AtomicBool,
    stopping: AtomicBool,
    thread: OnceLock<Thread>,
}

impl Shared {
    fn new() -> Self {
        let fallback = Arc::new(Buffer::default());
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            buffers: Mutex::new(vec![fallback.clone()]),
            fallback,
            dropped: AtomicUsize::new(0),
            urgent: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            thread: OnceLock::new(),
        }
    }

    /// Appends `line` whole to `buffer`, or drops it when the buffer is full.
    fn append(&self, buffer: &Buffer, line: &[u8]) {
        let mut records = buffer.lock();
        if records.len() + HEADER + line.len() > BUFFER_BYTES {
            drop(records);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = records.len();
        // Fits: `line` is shorter than `BUFFER_BYTES`.
        records.extend_from_slice(&(line.len() as u32).to_le_bytes());
        records.extend_from_slice(line);
        let half = before < BUFFER_BYTES / 2 && records.len() >= BUFFER_BYTES / 2;
        drop(records);
        if half {
            self.urgent.store(true, Ordering::Release);
        }
        if (before == 0 || half)
            && let Some(thread) = self.thread.get()
        {
            thread.unpark();
        }
    }

    /// Appends `line` to the calling thread's buffer (registered at its first line).
    fn append_here(&self, line: &[u8]) {
        let queued = BUFFERS.try_with(|buffers| {
            let Ok(mut buffers) = buffers.try_borrow_mut() else {
                return false;
            };
            let index = match buffers.iter().position(|(id, _)| *id == self.id) {
                Some(index) => index,
                None => {
                    // Forget the buffers of writers that are gone (only this thread
                    // still holds them).
                    buffers.retain(|(_, buffer)| Arc::strong_count(buffer) > 1);
                    let buffer = Arc::new(Buffer::default());
                    self.buffers
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(buffer.clone());
                    buffers.push((self.id, buffer));
                    buffers.len() - 1
                }
            };
            self.append(&buffers[index].1, line);
            true
        });
        if queued != Ok(true) {
            self.append(&self.fallback, line);
        }
    }

    /// Moves every buffer's lines into `batches` (one batch per buffer that had any),
    /// leaving each buffer a vector from `spare`; forgets the buffers of threads that
    /// are gone once they are empty.
    fn collect(&self, batches: &mut Vec<Vec<u8>>, spare: &mut Vec<Vec<u8>>) {
        let mut buffers = self.buffers.lock().unwrap_or_else(PoisonError::into_inner);
        buffers.retain(|buffer| {
            let mut records = buffer.lock();
            if !records.is_empty() {
                let empty = spare.pop().unwrap_or_default();
                batches.push(std::mem::replace(&mut *records, empty));
                return true;
            }
            Arc::strong_count(buffer) > 1
        });
    }
}

/// The records of one batch, in the order they were written.
struct Records<'a>(&'a [u8]);

impl<'a> Records<'a> {
    fn peek(&self) -> Option<&'a [u8]> {
        let header = self.0.get(..HEADER)?;
        let len = u32::from_le_bytes(header.try_into().ok()?) as usize;
        self.0.get(HEADER..HEADER + len)
    }

    fn advance(&mut self) {
        let len = self.peek().map_or(self.0.len(), |line| HEADER + line.len());
        self.0 = &self.0[len..];
    }
}

/// Appends the lines of `batches` to `out`: each batch's lines in their order, and
/// between batches (threads) the line whose beginning (its timestamp) sorts first.
fn merge(batches: &[Vec<u8>], out: &mut Vec<u8>) {
    let key = |line: &[u8]| line.len().min(ORDER_KEY_BYTES);
    let mut heads: Vec<Records<'_>> = batches.iter().map(|b| Records(b)).collect();
    loop {
        let mut first: Option<(usize, &[u8])> = None;
        for (index, records) in heads.iter().enumerate() {
            if let Some(line) = records.peek()
                && first.is_none_or(|(_, best)| line[..key(line)] < best[..key(best)])
            {
                first = Some((index, line));
            }
        }
        let Some((index, line)) = first else {
            return;
        };
        out.extend_from_slice(line);
        heads[index].advance();
    }
}

/// The `MakeWriter` of the log layer: every line goes to its thread's buffer.
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
    /// the thread's buffer is full.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.append_here(buf);
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
    /// Lines dropped so far because a buffer was full.
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
    let shared = Arc::new(Shared::new());
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
    let mut batches = Vec::new();
    let mut spare = Vec::new();
    let mut merged = Vec::with_capacity(64 * 1024);
    loop {
        thread::park_timeout(IDLE_CHECK);
        // Let the batch gather, unless a buffer fills up or the writer stops.
        let window = Instant::now() + BATCH_WINDOW;
        while !shared.stopping.load(Ordering::Acquire)
            && !shared.urgent.swap(false, Ordering::AcqRel)
            && let Some(left) = window.checked_duration_since(Instant::now())
        {
            thread::park_timeout(left);
        }
        let stopping = shared.stopping.load(Ordering::Acquire);
        shared.collect(&mut batches, &mut spare);
        if !batches.is_empty() {
            merge(&batches, &mut merged);
            // Nowhere to report a failed log write: the lines are lost either way.
            let _ = out.write_all(&merged).and_then(|()| out.flush());
            merged.clear();
            merged.shrink_to(BUFFER_BYTES);
            spare.extend(batches.drain(..).map(|mut batch| {
                batch.clear();
                batch
            }));
        }
        if stopping {
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

    fn written(sink: &Sink) -> String {
        String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
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
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(written(&sink), expected);
    }

    /// Each thread's lines keep their order, none is lost or torn, including those of
    /// threads that ended before the writer collected them.
    #[test]
    fn every_thread_keeps_its_order_and_no_line_is_lost() {
        let sink = Sink::default();
        let (writer, stop) = start(sink.clone()).unwrap();
        let writer = Arc::new(writer);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                thread::spawn(move || {
                    for i in 0..2000 {
                        writer
                            .make_writer()
                            .write_all(format!("thread {t} line {i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(stop);
        let text = written(&sink);
        for t in 0..4 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<String> = (0..2000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, expected, "thread {t}");
        }
        assert_eq!(text.lines().count(), 8000);
    }

    fn batch(lines: &[&str]) -> Vec<u8> {
        let mut records = Vec::new();
        for line in lines {
            records.extend_from_slice(&(line.len() as u32).to_le_bytes());
            records.extend_from_slice(line.as_bytes());
        }
        records
    }

    #[test]
    fn batches_are_merged_by_their_leading_timestamp() {
        let batches = [
            batch(&[
                "2026-12-07T03:00:00.000001Z a\n",
                "2026-12-07T03:00:00.000004Z b\n",
            ]),
            batch(&[]),
            batch(&[
                "2026-12-07T03:00:00.000002Z c\nwith a second line\n",
                "2026-12-07T03:00:00.000003Z d\n",
                "2026-12-07T03:00:00.000005Z e\n",
            ]),
        ];
        let mut out = Vec::new();
        merge(&batches, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-12-07T03:00:00.000001Z a\n\
             2026-12-07T03:00:00.000002Z c\nwith a second line\n\
             2026-12-07T03:00:00.000003Z d\n\
             2026-12-07T03:00:00.000004Z b\n\
             2026-12-07T03:00:00.000005Z e\n"
        );
    }

    #[test]
    fn a_half_full_buffer_calls_for_an_early_collection() {
        let shared = Shared::new();
        let line = vec![b'x'; BUFFER_BYTES / 4 - HEADER];
        Line(&shared).write_all(&line).unwrap();
        assert!(!shared.urgent.load(Ordering::Acquire));
        Line(&shared).write_all(&line).unwrap();
        assert!(shared.urgent.load(Ordering::Acquire));
    }

    #[test]
    fn a_full_buffer_drops_whole_lines_and_counts_them() {
        // No writer thread: nothing collects the buffer.
        let shared = Shared::new();
        let line = vec![b'x'; BUFFER_BYTES / 2 - HEADER];
        for _ in 0..3 {
            Line(&shared).write_all(&line).unwrap();
        }
        Line(&shared).write_all(b"y").unwrap();
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 2);
        let mut batches = Vec::new();
        shared.collect(&mut batches, &mut Vec::new());
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].len(), BUFFER_BYTES);
    }
}
