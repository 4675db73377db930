//! The bridge task: follows the event log, publishes each event, tracks what the
//! broker acknowledged, resumes after outages and answers commands.
//!
//! Reading the log: the bridge follows it with core's [`Follower`] from its last
//! acknowledged event, taking the next events only while its in-flight window has
//! room, and whatever the follower already holds in one batch. The follower re-reads
//! by itself when the live feed outruns the bridge, and when the bridge's position has
//! left the log's retention it goes on from the oldest retained event and reports the
//! gap, which the bridge logs and counts (`BridgeStatus::resets`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use petstore_core::telemetry;
use petstore_core::{
    Error, ErrorKind, Event, EventFilter, Followed, Follower, Inventory, MAX_EVENT_READ, PetStore,
    Principal, ResetReason, Result, ResumeToken,
};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::commands;
use crate::config::{MqttConfig, MqttVersion, QoS, StartFrom};
use crate::inflight::{Inflight, Purpose};
use crate::link::{Inbound, Link, LinkEvent, Properties};
use crate::topics::Topics;

/// Commands that may run at once; more get a `rate_limited` reply.
const MAX_CONCURRENT_COMMANDS: usize = 64;
/// Most messages one event turns into (resource topics, `events/{type}`, inventory).
const MESSAGES_PER_EVENT: usize = 4;
/// How long shutdown waits for in-flight events and for the `offline` message.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often a bridge that is behind logs its lag.
const LAG_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Link events (sends and acknowledgements) handled in one step of the bridge loop.
const LINK_BATCH: usize = 256;

/// What the bridge is doing, for health checks and metrics
/// ([`BridgeHandle::status`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BridgeStatus {
    /// The bridge task runs (false after shutdown or a fatal error).
    pub running: bool,
    /// Connected to the broker.
    pub connected: bool,
    /// The last event the broker acknowledged with every message before it: the
    /// bridge resumes after it when the connection comes back.
    pub last_acked: Option<ResumeToken>,
    /// The last event handed to the MQTT client.
    pub last_sent: Option<ResumeToken>,
    /// Events sent and not yet acknowledged.
    pub in_flight: usize,
    /// Events fully acknowledged since start.
    pub events_published: u64,
    /// Successful connections to the broker (the first included).
    pub connects: u64,
    /// Where the latest connection resumed the log from.
    pub resumed_from: Option<ResumeToken>,
    /// Times the resume point was gone from the log: an outage or a backlog outlasted
    /// the log's retention, or the position was from another log. The events the log
    /// no longer held were not published; the bridge went on from the oldest retained
    /// event (core's [`Follower`] policy).
    pub resets: u64,
    /// Times the live log outran the bridge and it re-read the log from its position
    /// (nothing lost).
    pub lagged: u64,
    /// Messages the broker refused (MQTT 5 reason codes); they are not retried.
    pub rejected: u64,
    /// Commands that succeeded.
    pub commands_ok: u64,
    /// Commands that were refused or failed.
    pub commands_failed: u64,
    /// The latest connection or log error.
    pub last_error: Option<String>,
}

/// Starts the MQTT bridge of a [`PetStore`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Bridge;

impl Bridge {
    /// Connects to the broker of `config` and publishes the event log, in tokio tasks
    /// of the current runtime, until `shutdown` is cancelled (the workspace's one
    /// shutdown convention) or [`BridgeHandle::shutdown`] is called; then it stops as
    /// [`BridgeHandle::shutdown`] describes. Fails at once on an invalid configuration
    /// (URL, topic prefix, TLS files, a principal that may not read the log); an
    /// unreachable broker is not an error: the bridge keeps reconnecting and
    /// [`BridgeStatus::connected`] tells.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(
        store: PetStore,
        config: MqttConfig,
        shutdown: CancellationToken,
    ) -> Result<BridgeHandle> {
        let broker = config.validate()?;
        let who = Principal::new(config.principal.clone(), config.scopes.iter().copied());
        let topics = Arc::new(Topics::new(&config.prefix()));
        let queue_len = config.queue_len.max(1);
        // Room for a full window of event messages plus replies and presence, so that
        // queueing never has to wait for the poller.
        let capacity = queue_len * MESSAGES_PER_EVENT + MAX_CONCURRENT_COMMANDS + 16;
        let client_id = config.connect_client_id();
        let (link, events) = Link::start(&config, &client_id, &broker, topics.status(), capacity)?;
        // A command carries its caller's token in a user property, which 3.1.1 lacks.
        let commands = config.commands && config.version == MqttVersion::V5;
        if config.commands && !commands {
            tracing::warn!(
                "MQTT commands need MQTT 5 (the caller's token travels in a user property); this MQTT 3.1.1 bridge takes none"
            );
        }
        let (status, status_rx) = watch::channel(BridgeStatus {
            running: true,
            ..BridgeStatus::default()
        });
        let stop = shutdown.child_token();
        let (reply_tx, reply_rx) = mpsc::channel(MAX_CONCURRENT_COMMANDS);
        let runner = Runner {
            service: store.clone(),
            who,
            topics,
            qos: config.qos,
            version: config.version,
            event_properties: config.event_properties,
            queue_len,
            commands,
            start_from: config.start_from,
            retry_delay: config.reconnect_delay.max(Duration::from_millis(100)),
            link,
            inflight: Inflight::default(),
            reader: None,
            follower_lagged: 0,
            retry_at: None,
            connected: false,
            last_acked: None,
            last_sent: None,
            published: 0,
            status,
            reply_tx,
            reply_rx,
            command_slots: Arc::new(Semaphore::new(MAX_CONCURRENT_COMMANDS)),
        };
        tracing::info!(url = %config.url, %client_id, "starting MQTT bridge");
        let task = tokio::spawn(runner.run(events, stop.clone()));
        Ok(BridgeHandle {
            client_id,
            status: status_rx,
            stop,
            task: Some(task),
            service: store,
        })
    }
}

/// A running bridge. Dropping it stops the bridge as [`BridgeHandle::shutdown`] does,
/// without waiting.
#[derive(Debug)]
#[must_use = "dropping the handle stops the bridge"]
pub struct BridgeHandle {
    client_id: String,
    status: watch::Receiver<BridgeStatus>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    service: PetStore,
}

impl Drop for BridgeHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl BridgeHandle {
    /// The client id the bridge connects with (see
    /// [`MqttConfig::unique_client_id`](crate::MqttConfig::unique_client_id)), for
    /// broker logs and ACLs. Treat it as a secret where the broker lets any client take
    /// over an id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The current status.
    pub fn status(&self) -> BridgeStatus {
        self.status.borrow().clone()
    }

    /// Every status change, for a health check or metrics that outlive a borrow of
    /// the handle.
    pub fn status_updates(&self) -> watch::Receiver<BridgeStatus> {
        self.status.clone()
    }

    /// Waits until `ready` holds for the status (for example `|s| s.connected`) and
    /// returns that status; wrap it in a timeout.
    pub async fn wait_for(&self, mut ready: impl FnMut(&BridgeStatus) -> bool) -> BridgeStatus {
        let mut rx = self.status.clone();
        let status = rx.wait_for(|s| ready(s)).await.map(|s| s.clone());
        // Err: the task ended, its last status is final.
        status.unwrap_or_else(|_| rx.borrow().clone())
    }

    /// How many events the log holds beyond the last one the broker acknowledged.
    pub async fn lag(&self) -> Result<u64> {
        let head = self.service.head().await?;
        Ok(lag(head, self.status.borrow().last_acked))
    }

    /// Stops reading the log, waits (a few seconds at most) for the broker to
    /// acknowledge what is in flight, publishes the retained `offline` presence and
    /// disconnects cleanly.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

fn lag(head: ResumeToken, acked: Option<ResumeToken>) -> u64 {
    match acked {
        Some(a) if a.epoch == head.epoch => head.offset.saturating_sub(a.offset),
        _ => head.offset,
    }
}

/// A command's outcome on its way back to the bridge task.
#[derive(Debug)]
struct Reply {
    /// Where to publish it (MQTT 5 response topic), if anywhere.
    to: Option<(String, Option<Bytes>)>,
    ok: bool,
    body: serde_json::Value,
}

enum Step {
    Stop,
    Link(LinkEvent),
    LinkGone,
    Live(Result<Followed>),
    Reply(Reply),
    Retry,
    Tick,
}

/// The retained inventory snapshot: the counts and the log position they are at.
#[derive(Serialize)]
struct InventoryMessage<'a> {
    #[serde(flatten)]
    items: &'a Inventory,
    offset: ResumeToken,
}

struct Runner {
    service: PetStore,
    who: Principal,
    topics: Arc<Topics>,
    qos: QoS,
    version: MqttVersion,
    event_properties: bool,
    queue_len: usize,
    commands: bool,
    start_from: StartFrom,
    retry_delay: Duration,
    link: Link,
    inflight: Inflight,
    /// Following the log (`None`: not connected, or a failed read waits for
    /// `retry_at`).
    reader: Option<Follower>,
    /// The follower's lag count already added to the status.
    follower_lagged: u64,
    /// When to retry a log read that failed.
    retry_at: Option<Instant>,
    connected: bool,
    /// Position of the last event fully acknowledged (None until the start position
    /// is known).
    last_acked: Option<ResumeToken>,
    last_sent: Option<ResumeToken>,
    /// Events fully acknowledged since start.
    published: u64,
    status: watch::Sender<BridgeStatus>,
    reply_tx: mpsc::Sender<Reply>,
    reply_rx: mpsc::Receiver<Reply>,
    command_slots: Arc<Semaphore>,
}

async fn next_followed(reader: &mut Option<Follower>) -> Result<Followed> {
    match reader {
        Some(follower) => follower.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Runner {
    async fn run(mut self, mut link: mpsc::Receiver<LinkEvent>, stop: CancellationToken) {
        // The first look at the lag is one interval after start: a bridge that has
        // not connected yet is not behind.
        let mut tick =
            tokio::time::interval_at(Instant::now() + LAG_LOG_INTERVAL, LAG_LOG_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let room = self.connected && self.inflight.len() < self.queue_len;
            let step = tokio::select! {
                () = stop.cancelled() => Step::Stop,
                event = link.recv() => event.map_or(Step::LinkGone, Step::Link),
                item = next_followed(&mut self.reader), if room => Step::Live(item),
                Some(reply) = self.reply_rx.recv() => Step::Reply(reply),
                _ = sleep_until(self.retry_at), if self.connected => Step::Retry,
                _ = tick.tick() => Step::Tick,
            };
            match step {
                Step::Stop => {
                    self.finish(&mut link).await;
                    break;
                }
                Step::LinkGone => {
                    tracing::error!("MQTT client stopped; the bridge ends");
                    break;
                }
                Step::Link(event) => {
                    self.on_link(event).await;
                    // Acknowledgements come in bursts: take what is already there.
                    for _ in 1..LINK_BATCH {
                        let Ok(event) = link.try_recv() else { break };
                        self.on_link(event).await;
                    }
                }
                Step::Live(item) => self.on_followed(item).await,
                Step::Reply(reply) => self.publish_reply(reply),
                Step::Retry => {
                    self.retry_at = None;
                    self.reread().await;
                }
                Step::Tick => self.log_lag().await,
            }
            self.sync_status();
        }
        self.sync_status();
        self.status.send_modify(|s| {
            s.running = false;
            s.connected = false;
        });
    }

    /// Copies the positions and counters that change with every event into the
    /// status, once per step of the loop.
    fn sync_status(&self) {
        let (acked, sent) = (self.last_acked, self.last_sent);
        let (in_flight, published) = (self.inflight.len(), self.published);
        self.status.send_if_modified(|s| {
            let changed = s.last_acked != acked
                || s.last_sent != sent
                || s.in_flight != in_flight
                || s.events_published != published;
            if changed {
                metrics::gauge!(telemetry::MQTT_BRIDGE_IN_FLIGHT).set(in_flight as f64);
                s.last_acked = acked;
                s.last_sent = sent;
                s.in_flight = in_flight;
                s.events_published = published;
            }
            changed
        });
    }

    async fn on_link(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Connected => self.on_connected().await,
            LinkEvent::Sent(pkid) => {
                if self.inflight.sent(pkid).is_some() {
                    self.advance();
                }
            }
            LinkEvent::AwaitAck(pkid) => self.inflight.await_ack(pkid),
            LinkEvent::Acked(pkid, outcome) => {
                if let Err(reason) = outcome {
                    tracing::error!(pkid, %reason, "the broker refused a message; it is not retried");
                    self.status.send_modify(|s| s.rejected += 1);
                }
                if self.inflight.acked(pkid).is_some() {
                    self.advance();
                }
            }
            LinkEvent::Message(message) => self.on_message(message),
            LinkEvent::Down { error, resume } => {
                if self.connected {
                    tracing::warn!(%error, last_acked = ?self.last_acked, in_flight = self.inflight.len(),
                        "MQTT broker connection lost; the bridge will resume from its last acknowledged event");
                } else {
                    tracing::debug!(%error, "MQTT broker unreachable");
                }
                self.connected = false;
                self.reader = None;
                self.retry_at = None;
                self.inflight.clear();
                self.last_sent = self.last_acked;
                self.sync_status();
                metrics::gauge!(telemetry::MQTT_BRIDGE_CONNECTED).set(0.0);
                self.status.send_modify(|s| {
                    s.connected = false;
                    s.last_error = Some(error);
                });
                let _ = resume.send(());
            }
        }
    }

    async fn on_connected(&mut self) {
        self.connected = true;
        // Presence first: a retained `online` replaces the Last Will's `offline`.
        let qos = self.qos.max(QoS::AtLeastOnce);
        let topics = Arc::clone(&self.topics);
        let _ = self.queue(
            topics.status(),
            qos,
            true,
            Bytes::from_static(b"online"),
            Properties::default(),
            Purpose::Other,
        );
        if self.commands
            && let Err(e) = self.link.try_subscribe(topics.commands_filter(), self.qos)
        {
            tracing::error!(error = %e, "cannot subscribe to MQTT commands");
        }
        self.status.send_modify(|s| {
            s.connected = true;
            s.connects += 1;
        });
        metrics::gauge!(telemetry::MQTT_BRIDGE_CONNECTED).set(1.0);
        self.resume().await;
    }

    /// Follows the log again from the last acknowledged event (or from the start
    /// position on the first connection).
    async fn resume(&mut self) {
        if self.last_acked.is_none() {
            match self.start_position().await {
                Ok(start) => self.last_acked = Some(start),
                Err(e) => return self.read_failed(&e),
            }
        }
        let Some(from) = self.last_acked else { return };
        tracing::info!(resume_from = %from, "MQTT bridge connected");
        self.last_sent = Some(from);
        self.status.send_modify(|s| {
            s.resumed_from = Some(from);
            s.last_acked = Some(from);
            s.last_sent = Some(from);
        });
        self.follow_from(from).await;
    }

    /// Follows the log after `from`.
    async fn follow_from(&mut self, from: ResumeToken) {
        match self
            .service
            .follow(self.who.clone(), EventFilter::all(), Some(from))
            .await
        {
            Ok(follower) => {
                self.follower_lagged = follower.lagged();
                self.reader = Some(follower);
            }
            Err(e) => self.read_failed(&e),
        }
    }

    /// The position before the first event to publish.
    async fn start_position(&mut self) -> Result<ResumeToken> {
        match self.start_from {
            StartFrom::After(token) => Ok(token),
            StartFrom::Head => self.service.head().await,
            StartFrom::Oldest => {
                let first = self
                    .service
                    .events(&self.who, None, 1, EventFilter::all(), Duration::ZERO)
                    .await?;
                Ok(match first.events.first() {
                    Some(e) => ResumeToken::new(e.offset().epoch, e.offset().offset - 1),
                    None => first.next,
                })
            }
        }
    }

    /// Reads the log again after what was already handed to the client (the
    /// connection is up: what is in flight still gets acknowledged).
    async fn reread(&mut self) {
        match self.last_sent.or(self.last_acked) {
            Some(from) => self.follow_from(from).await,
            None => self.resume().await,
        }
    }

    /// The events after `after` were gone from the log: the follower goes on after
    /// `resumed_at`, and what lay between was never published.
    fn on_gap(&mut self, after: ResumeToken, resumed_at: ResumeToken, reason: ResetReason) {
        let lost = (after.epoch == resumed_at.epoch)
            .then(|| resumed_at.offset.saturating_sub(after.offset));
        tracing::error!(%after, %resumed_at, ?reason, lost,
            "MQTT bridge resumed further back than the event log retains: events were lost for MQTT subscribers; going on from the oldest retained event");
        self.skip_to(resumed_at);
        self.status.send_modify(|s| {
            s.resets += 1;
            s.last_error = Some(format!(
                "cannot resume after {after} ({reason:?}): going on after {resumed_at}"
            ));
        });
    }

    /// Adds the follower's new re-reads to the status.
    fn sync_lagged(&mut self) {
        let Some(follower) = &self.reader else { return };
        let lagged = follower.lagged();
        if lagged > self.follower_lagged {
            let more = lagged - self.follower_lagged;
            self.follower_lagged = lagged;
            tracing::debug!("MQTT bridge fell behind the live event log; re-read it");
            self.status.send_modify(|s| s.lagged += more);
        }
    }

    /// Moves the resume point (and what counts as sent) forward to `to`, past events
    /// the log no longer holds.
    fn skip_to(&mut self, to: ResumeToken) {
        let forward = |at: Option<ResumeToken>| match at {
            Some(at) if at.epoch == to.epoch && at >= to => Some(at),
            _ => Some(to),
        };
        self.last_acked = forward(self.last_acked);
        self.last_sent = forward(self.last_sent);
    }

    fn read_failed(&mut self, e: &Error) {
        tracing::error!(error = %e, "MQTT bridge cannot follow the event log; retrying");
        self.status
            .send_modify(|s| s.last_error = Some(e.to_string()));
        self.reader = None;
        self.retry_at = Some(Instant::now() + self.retry_delay);
    }

    /// The user properties of `event`'s messages (none when turned off).
    fn user_properties(&self, event: &Event) -> Vec<(String, String)> {
        if !self.event_properties || self.version == MqttVersion::V311 {
            return Vec::new();
        }
        let mut properties = vec![
            ("event-type".to_owned(), event.event_type().to_string()),
            ("offset".to_owned(), event.offset().to_string()),
            ("event-id".to_owned(), event.id().to_string()),
        ];
        // The CloudEvents distributed-tracing extension, as in the envelope.
        if let Some(traceparent) = event.traceparent() {
            properties.push(("traceparent".to_owned(), traceparent.to_string()));
        }
        properties
    }

    /// Publishes the events of one batch (a page, or what the live feed had
    /// buffered). The retained inventory snapshot goes out once per batch, after its
    /// last inventory-affecting event: only the newest snapshot matters.
    async fn publish_batch(&mut self, events: &[Arc<Event>]) {
        let last_inventory = events
            .iter()
            .rposition(|e| e.event_type().affects_inventory());
        let mut snapshot = match last_inventory {
            Some(_) => self.inventory_snapshot().await,
            None => None,
        };
        for (i, event) in events.iter().enumerate() {
            let inventory = if Some(i) == last_inventory {
                snapshot.take()
            } else {
                None
            };
            self.publish_event(event, inventory);
        }
    }

    /// The follower yielded `item`: an event is published with whatever else the
    /// follower already holds, as far as the window allows.
    async fn on_followed(&mut self, item: Result<Followed>) {
        let first = match item {
            Ok(Followed::Event(event)) => event,
            Ok(Followed::Gap {
                after,
                resumed_at,
                reason,
            }) => return self.on_gap(after, resumed_at, reason),
            Ok(_) => return,
            Err(e) => return self.read_failed(&e),
        };
        let room = self
            .queue_len
            .saturating_sub(self.inflight.len())
            .clamp(1, MAX_EVENT_READ);
        let mut batch = vec![first];
        let mut end = None;
        if let Some(follower) = &mut self.reader {
            while batch.len() < room {
                match follower.next().now_or_never() {
                    Some(Ok(Followed::Event(event))) => batch.push(event),
                    Some(other) => {
                        end = Some(other);
                        break;
                    }
                    None => break,
                }
            }
        }
        self.sync_lagged();
        self.publish_batch(&batch).await;
        match end {
            Some(Ok(Followed::Gap {
                after,
                resumed_at,
                reason,
            })) => self.on_gap(after, resumed_at, reason),
            Some(Err(e)) => self.read_failed(&e),
            Some(Ok(_)) | None => {}
        }
    }

    /// The inventory snapshot message, or `None` when it cannot be read.
    async fn inventory_snapshot(&mut self) -> Option<Bytes> {
        match self.service.inventory(&self.who).await {
            Ok(snapshot) => {
                let message = InventoryMessage {
                    items: &snapshot.items,
                    offset: snapshot.position,
                };
                serde_json::to_string(&message).ok().map(Bytes::from)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the inventory for its MQTT snapshot");
                None
            }
        }
    }

    /// Queues the messages of `event` (and the inventory snapshot, if given); the
    /// event's messages share one payload buffer.
    fn publish_event(&mut self, event: &Event, inventory: Option<Bytes>) {
        let topics = Arc::clone(&self.topics);
        let messages = topics.event_messages(event);
        let token = event.offset();
        self.inflight
            .begin(token, messages.len() + usize::from(inventory.is_some()));
        let user = self.user_properties(event);
        let content_type = self.event_properties;
        let props = |json: bool| Properties {
            user: user.clone(),
            correlation_data: None,
            json: json && content_type,
        };
        for m in messages {
            let props = props(!m.payload.is_empty());
            let _ = self.queue(
                m.topic,
                self.qos,
                m.retain,
                m.payload,
                props,
                Purpose::Event(token),
            );
        }
        if let Some(snapshot) = inventory {
            let props = props(true);
            let _ = self.queue(
                topics.inventory(),
                self.qos,
                true,
                snapshot,
                props,
                Purpose::Event(token),
            );
        }
        self.last_sent = Some(token);
    }

    /// Queues one PUBLISH and records what it is for.
    fn queue(
        &mut self,
        topic: impl Into<String>,
        qos: QoS,
        retain: bool,
        payload: Bytes,
        props: Properties,
        purpose: Purpose,
    ) -> Result<()> {
        let props = match self.version {
            MqttVersion::V5 => props,
            MqttVersion::V311 => Properties::default(),
        };
        match self
            .link
            .try_publish(topic.into(), qos, retain, payload, props)
        {
            Ok(()) => {
                self.inflight.queued(purpose);
                Ok(())
            }
            Err(e) => {
                // Only when the client is gone or its queue is full during an outage;
                // the event stays unacknowledged and is republished after reconnecting.
                tracing::warn!(?purpose, error = %e, "MQTT publish not queued");
                Err(e)
            }
        }
    }

    fn advance(&mut self) {
        if let Some((n, token)) = self.inflight.advance() {
            // Never backwards: a skip past lost events, or a restart in another log,
            // may overtake older in-flight events.
            self.last_acked = match self.last_acked {
                Some(acked) if acked.epoch != token.epoch || acked > token => Some(acked),
                _ => Some(token),
            };
            self.published += n;
            metrics::counter!(telemetry::MQTT_BRIDGE_PUBLISHED_TOTAL).increment(n);
        }
    }

    fn on_message(&mut self, message: Inbound) {
        if !self.commands {
            return;
        }
        if message.retain {
            // A retained command would run again on every (re)subscription.
            tracing::warn!(topic = %message.topic, "ignoring a retained MQTT command");
            return;
        }
        if let Some(topic) = &message.response_topic
            && !self.topics.is_reply_topic(topic)
        {
            // Nowhere safe to answer: run nothing rather than act unseen.
            tracing::info!(topic = %message.topic, response_topic = %topic,
                "MQTT command refused: its response topic is not under {}replies/{{client id}}/", self.topics.prefix());
            self.status.send_modify(|s| s.commands_failed += 1);
            return;
        }
        let to = message
            .response_topic
            .clone()
            .map(|topic| (topic, message.correlation_data.clone()));
        let Ok(slot) = self.command_slots.clone().try_acquire_owned() else {
            let err = Error::new(ErrorKind::RateLimited, "too many MQTT commands in progress");
            let _ = self.reply_tx.try_send(Reply {
                to,
                ok: false,
                body: commands::reply(&Err(err)),
            });
            return;
        };
        let store = self.service.clone();
        let prefix = self.topics.prefix().to_owned();
        let replies = self.reply_tx.clone();
        let operation = match crate::topics::command_topic(&prefix, &message.topic) {
            Some(crate::topics::CommandTopic::SetPetStatus(_)) => "set_pet_status",
            Some(crate::topics::CommandTopic::PlaceOrder) => "place_order",
            _ => "unknown",
        };
        let span = tracing::info_span!(
            "mqtt_command",
            command = operation,
            topic = %message.topic,
            sub = tracing::field::Empty,
        );
        // A valid `traceparent` user property: the command's writes carry it on, as a
        // REST write's do.
        let traceparent = message
            .traceparent
            .as_deref()
            .and_then(|v| v.parse::<petstore_core::TraceParent>().ok());
        let context = petstore_core::RequestContext::new().with_traceparent(traceparent);
        let started = std::time::Instant::now();
        let command = async move {
            let _slot = slot;
            let result = match commands::caller(&store, &message.authorization) {
                Ok(who) => {
                    if let Some(sub) = who.subject() {
                        tracing::Span::current().record("sub", tracing::field::display(sub));
                    }
                    commands::run(&store, &who, &prefix, &message.topic, &message.payload).await
                }
                Err(e) => Some(Err(e)),
            };
            let Some(result) = result else {
                return;
            };
            let outcome = match &result {
                Ok(_) => {
                    tracing::info!(topic = %message.topic, "MQTT command done");
                    "ok"
                }
                Err(e) => {
                    tracing::info!(topic = %message.topic, error = %e, "MQTT command refused");
                    e.kind().code()
                }
            };
            telemetry::record_request("mqtt", operation, outcome, started.elapsed());
            if to.is_none() {
                tracing::debug!(topic = %message.topic, "MQTT command without a response topic: no reply");
            }
            let _ = replies
                .send(Reply {
                    to,
                    ok: result.is_ok(),
                    body: commands::reply(&result),
                })
                .await;
        };
        tokio::spawn(context.scope(command.instrument(span)));
    }

    fn publish_reply(&mut self, reply: Reply) {
        self.status.send_modify(|s| {
            if reply.ok {
                s.commands_ok += 1;
            } else {
                s.commands_failed += 1;
            }
        });
        let Some((topic, correlation_data)) = reply.to else {
            return;
        };
        if !self.connected {
            tracing::warn!(%topic, "MQTT broker unreachable: command reply dropped");
            return;
        }
        let props = Properties {
            user: Vec::new(),
            correlation_data,
            json: true,
        };
        let qos = self.qos.max(QoS::AtLeastOnce);
        let _ = self.queue(
            topic,
            qos,
            false,
            Bytes::from(reply.body.to_string()),
            props,
            Purpose::Other,
        );
    }

    async fn log_lag(&mut self) {
        let Ok(head) = self.service.head().await else {
            return;
        };
        let lag = lag(head, self.last_acked);
        metrics::gauge!(telemetry::MQTT_BRIDGE_LAG_EVENTS).set(lag as f64);
        if lag > 0 && (!self.connected || lag >= self.queue_len as u64) {
            tracing::warn!(
                lag,
                connected = self.connected,
                "MQTT bridge is behind the event log"
            );
        }
    }

    /// Graceful stop: drain the window, publish `offline`, disconnect.
    async fn finish(&mut self, link: &mut mpsc::Receiver<LinkEvent>) {
        self.reader = None;
        if !self.connected {
            return;
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let qos = self.qos.max(QoS::AtLeastOnce);
        let topics = Arc::clone(&self.topics);
        let mut offline_queued = false;
        loop {
            if self.inflight.len() == 0 && !offline_queued {
                offline_queued = true;
                let props = Properties::default();
                let offline = Bytes::from_static(b"offline");
                if self
                    .queue(topics.status(), qos, true, offline, props, Purpose::Offline)
                    .is_err()
                {
                    break;
                }
            }
            let Ok(Some(event)) = tokio::time::timeout_at(deadline, link.recv()).await else {
                tracing::warn!(
                    in_flight = self.inflight.len(),
                    "MQTT bridge stopped before the broker acknowledged everything"
                );
                break;
            };
            match event {
                LinkEvent::Sent(pkid) => {
                    let done = self.inflight.sent(pkid);
                    self.advance();
                    if done == Some(Purpose::Offline) {
                        break;
                    }
                }
                LinkEvent::Acked(pkid, _) => {
                    let done = self.inflight.acked(pkid);
                    self.advance();
                    if done == Some(Purpose::Offline) {
                        break;
                    }
                }
                LinkEvent::AwaitAck(pkid) => self.inflight.await_ack(pkid),
                LinkEvent::Down { .. } => return,
                LinkEvent::Connected | LinkEvent::Message(_) => {}
            }
        }
        let _ = self.link.try_disconnect();
        // Let the poller send DISCONNECT before the client goes away.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(event) = link.recv().await {
                if let LinkEvent::Down { .. } = event {
                    break;
                }
            }
        })
        .await;
        tracing::info!(
            last_acked = self.last_acked.map(tracing::field::display),
            "MQTT bridge stopped"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_acked_position() {
        assert_eq!(
            lag(ResumeToken::new(1, 10), Some(ResumeToken::new(1, 4))),
            6
        );
        assert_eq!(lag(ResumeToken::new(1, 10), None), 10);
        assert_eq!(
            lag(ResumeToken::new(2, 10), Some(ResumeToken::new(1, 4))),
            10
        );
    }
}
