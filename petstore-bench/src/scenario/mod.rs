//! One module per scenario; shared pieces (settings, the event tracker, publishers
//! driven closed-loop or at a fixed rate) live here.

pub(crate) mod cluster;
pub(crate) mod core_benches;
pub(crate) mod fanout;
pub(crate) mod grpc;
pub(crate) mod mqtt;
pub(crate) mod observability;
pub(crate) mod rest;
pub(crate) mod restart;
pub(crate) mod webhooks;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use petstore_core::{Currency, EventFilter, Money, NewPet, PetStore, Principal, Scope};
use tokio::sync::Notify;

use crate::measure::{Clock, Histogram};

/// Settings shared by every scenario.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) quick: bool,
    /// A/B rounds (each round measures A and B once).
    pub(crate) rounds: usize,
    /// Length of one measurement.
    pub(crate) round: Duration,
    /// Warm-up before the rounds, per side.
    pub(crate) warmup: Duration,
    /// Subscriber counts of the fan-out rows.
    pub(crate) fanout: Vec<usize>,
    /// Subscribers held for the idle-memory rows.
    pub(crate) idle: usize,
    /// Length of the webhook soak at 1,000 deliveries/s.
    pub(crate) soak: Duration,
    /// This executable (the idle-memory rows run servers in a child process).
    pub(crate) exe: PathBuf,
}

/// The pet every scenario writes, named `name` (the same one the core benches use).
pub(crate) fn new_pet(name: String) -> NewPet {
    NewPet {
        name,
        species: "dog".into(),
        breed: Some("Beagle".into()),
        age: Some(2),
        status: None,
        tags: vec!["friendly".into()],
        photo_urls: vec![],
        price: Money::parse("100.00", Currency::USD).expect("valid price"),
    }
}

/// [`new_pet`] as the JSON body of `POST /v1/pets`.
pub(crate) fn new_pet_json(name: &str) -> String {
    serde_json::to_string(&new_pet(name.to_owned())).expect("serialisable")
}

/// The sequence number in a pet named `{marker}{seq}` inside a JSON payload.
pub(crate) fn seq_in(payload: &[u8], marker: &str) -> Option<u64> {
    let needle = format!("\"name\":\"{marker}");
    let at = payload
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())?
        + needle.len();
    let digits = payload[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&payload[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Events published by sequence number and their deliveries to `receivers` receivers:
/// when each was published, how many receivers have it, publish-to-receive latency.
#[derive(Debug)]
pub(crate) struct Tracker {
    pub(crate) clock: Clock,
    published: Vec<AtomicU64>,
    received: Vec<AtomicU32>,
    receivers: u32,
    /// Events every receiver has.
    complete: AtomicU64,
    /// Deliveries, all receivers together.
    deliveries: AtomicU64,
    /// Latencies are recorded for events from this sequence number on.
    record_from: AtomicU64,
    pub(crate) latency: Histogram,
    progress: Notify,
}

/// Ring size of the tracker: far more events than any window or phase has in flight.
const TRACKED: u64 = 1 << 20;

impl Tracker {
    pub(crate) fn new(receivers: usize) -> Self {
        Self::with_clock(receivers, Clock::new())
    }

    /// A tracker on `clock` (shared with others, so that one stamp serves them all).
    pub(crate) fn with_clock(receivers: usize, clock: Clock) -> Self {
        Self {
            clock,
            published: (0..TRACKED).map(|_| AtomicU64::new(0)).collect(),
            received: (0..TRACKED).map(|_| AtomicU32::new(0)).collect(),
            receivers: u32::try_from(receivers).expect("receiver count fits u32"),
            complete: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            record_from: AtomicU64::new(u64::MAX),
            latency: Histogram::default(),
            progress: Notify::new(),
        }
    }

    fn slot(seq: u64) -> usize {
        usize::try_from(seq % TRACKED).expect("small")
    }

    fn stamp(&self, seq: u64, at_ns: u64) {
        self.received[Self::slot(seq)].store(0, Ordering::Relaxed);
        self.published[Self::slot(seq)].store(at_ns, Ordering::Release);
    }

    /// One receiver got event `seq`.
    pub(crate) fn deliver(&self, seq: u64) {
        let slot = Self::slot(seq);
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        if seq >= self.record_from.load(Ordering::Relaxed) {
            let at = self.published[slot].load(Ordering::Acquire);
            self.latency.record(self.clock.since(at));
        }
        if self.received[slot].fetch_add(1, Ordering::AcqRel) + 1 == self.receivers {
            self.complete.fetch_add(1, Ordering::AcqRel);
            self.progress.notify_one();
        }
    }

    pub(crate) fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }

    pub(crate) fn complete(&self) -> u64 {
        self.complete.load(Ordering::Acquire)
    }

    /// Waits until every receiver has every one of the first `events` events.
    pub(crate) async fn drain(&self, events: u64, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.progress.notified();
            if self.complete() >= events {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                bail!(
                    "only {} of {events} events reached all {} receivers within {within:?} ({} deliveries)",
                    self.complete(),
                    self.receivers,
                    self.deliveries()
                );
            }
        }
    }
}

/// Something that publishes event number `seq` (through the full stack or a bare
/// baseline) so that receivers can tell its sequence number.
pub(crate) trait Publisher: Send {
    fn publish(&mut self, seq: u64) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Publishes through the core service: `create_pet` named `{marker}{seq}`.
pub(crate) struct StorePublisher {
    pub(crate) store: petstore_core::PetStore,
    pub(crate) who: petstore_core::Principal,
    pub(crate) marker: String,
}

impl Publisher for StorePublisher {
    async fn publish(&mut self, seq: u64) -> anyhow::Result<()> {
        self.store
            .create_pet(&self.who, new_pet(format!("{}{seq}", self.marker)))
            .await
            .context("create_pet")?;
        Ok(())
    }
}

/// The envelope of a real `pet.created` event, with the pet's name made a parameter.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    before: String,
    after: String,
    pub(crate) offset: String,
}

impl Template {
    pub(crate) async fn new(marker: &str) -> anyhow::Result<Self> {
        let store = PetStore::in_memory();
        let who = Principal::new("bench", Scope::ALL);
        store
            .create_pet(&who, new_pet(format!("{marker}0")))
            .await?;
        let batch = store
            .events(&who, None, 1, EventFilter::all(), Duration::ZERO)
            .await?;
        let event = batch.events.first().context("no event")?;
        let json = event.to_json();
        let name = format!("\"name\":\"{marker}0\"");
        let (before, after) = json.split_once(&name).context("event has no pet name")?;
        Ok(Self {
            before: format!("{before}\"name\":\"{marker}"),
            after: format!("\"{after}"),
            offset: event.offset().to_string(),
        })
    }

    pub(crate) fn envelope(&self, seq: u64) -> String {
        format!("{}{seq}{}", self.before, self.after)
    }
}

/// Where the next event's sequence number comes from across phases of one session.
#[derive(Debug, Default)]
pub(crate) struct Seq(u64);

/// Publishes the next event now, without waiting for its delivery.
pub(crate) async fn publish_one<P: Publisher>(
    publisher: &mut P,
    tracker: &Tracker,
    seq: &mut Seq,
) -> anyhow::Result<()> {
    tracker.stamp(seq.0, tracker.clock.now_ns());
    publisher.publish(seq.0).await?;
    seq.0 += 1;
    Ok(())
}

/// Publishes as fast as receivers keep up, with at most `window` events not yet
/// received by every receiver; returns deliveries per second over `dur`.
pub(crate) async fn saturate<P: Publisher>(
    publisher: &mut P,
    tracker: &Tracker,
    seq: &mut Seq,
    dur: Duration,
    window: u64,
) -> anyhow::Result<f64> {
    tracker.drain(seq.0, Duration::from_secs(30)).await?;
    let start = Instant::now();
    let deadline = start + dur;
    let before = tracker.deliveries();
    while Instant::now() < deadline {
        while seq.0 - tracker.complete() >= window {
            let notified = tracker.progress.notified();
            if seq.0 - tracker.complete() < window {
                break;
            }
            if tokio::time::timeout(Duration::from_secs(10), notified)
                .await
                .is_err()
            {
                bail!(
                    "stalled: {} of {} events delivered to every receiver after 10 s",
                    tracker.complete(),
                    seq.0
                );
            }
        }
        tracker.stamp(seq.0, tracker.clock.now_ns());
        publisher.publish(seq.0).await?;
        seq.0 += 1;
    }
    let rate = (tracker.deliveries() - before) as f64 / start.elapsed().as_secs_f64();
    tracker.drain(seq.0, Duration::from_secs(30)).await?;
    Ok(rate)
}

/// Publishes `rate` events per second for `dur` (scheduled times, so a publisher that
/// falls behind shows as latency), waits for every delivery, and returns the
/// publish-to-receive latencies of those events.
pub(crate) async fn paced<P: Publisher>(
    publisher: &mut P,
    tracker: &Tracker,
    seq: &mut Seq,
    rate: f64,
    dur: Duration,
) -> anyhow::Result<PacedRun> {
    tracker.drain(seq.0, Duration::from_secs(30)).await?;
    tracker.latency.reset();
    tracker.record_from.store(seq.0, Ordering::Relaxed);
    let first = seq.0;
    let total = (rate * dur.as_secs_f64()).round().max(1.0) as u64;
    let start_ns = tracker.clock.now_ns() + 2_000_000;
    let mut tick =
        tokio::time::interval_at(tracker.clock.at(start_ns).into(), Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0;
    while sent < total {
        tick.tick().await;
        let elapsed = tracker.clock.now_ns().saturating_sub(start_ns) as f64 / 1e9;
        let due = ((elapsed * rate) as u64 + 1).min(total);
        while sent < due {
            let at = start_ns + (sent as f64 / rate * 1e9) as u64;
            tracker.stamp(seq.0, at);
            publisher.publish(seq.0).await?;
            seq.0 += 1;
            sent += 1;
        }
    }
    let sent_for = tracker.clock.since(start_ns);
    tracker.drain(seq.0, Duration::from_secs(30)).await?;
    tracker.record_from.store(u64::MAX, Ordering::Relaxed);
    Ok(PacedRun {
        events: seq.0 - first,
        sent_for,
        p50_ms: tracker.latency.p50_ms(),
        p99_ms: tracker.latency.p99_ms(),
    })
}

/// What [`paced`] measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PacedRun {
    pub(crate) events: u64,
    pub(crate) sent_for: Duration,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_sequence_number() {
        let json = br#"{"data":{"id":"pet_1","name":"fan-1234","species":"dog"}}"#;
        assert_eq!(seq_in(json, "fan-"), Some(1234));
        assert_eq!(seq_in(json, "mq-"), None);
    }
}
