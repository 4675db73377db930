//! The bridge task: follows the event log, publishes each event, tracks what the
//! broker acknowledged, resumes after outages and answers commands.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use petstore_core::{
    Channel, Error, ErrorKind, Event, EventFilter, PetStore, Principal, Result, ResumeToken,
    Subscription,
};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::commands;
use crate::config::{MqttConfig, MqttVersion, QoS, StartFrom};
use crate::inflight::{Inflight, Purpose};
use crate::link::{Inbound, Link, LinkEvent, Properties};
use crate::topics;

/// Commands that may run at once; more get a `rate_limited` reply.
const MAX_CONCURRENT_COMMANDS: usize = 64;
/// Most messages one event turns into (resource topics, `events/{type}`, inventory).
const MESSAGES_PER_EVENT: usize = 4;
/// How long shutdown waits for in-flight events and for the `offline` message.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often a bridge that is behind logs its lag.
const LAG_LOG_INTERVAL: Duration = Duration::from_secs(10);

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
    /// Times the resume point was gone from the log (the outage outlasted the log's
    /// retention): the events in between were not published.
    pub resets: u64,
    /// Times the bridge fell behind the live log and re-read it.
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
    /// of the current runtime. Fails at once on an invalid configuration (URL, topic
    /// prefix, TLS files, a principal that may not read the log); an unreachable
    /// broker is not an error: the bridge keeps reconnecting and
    /// [`BridgeStatus::connected`] tells.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(store: PetStore, config: MqttConfig) -> Result<BridgeHandle> {
        let broker = config.validate()?;
        let who = Principal::new(config.principal.clone(), config.scopes.iter().copied());
        for channel in [Channel::Pets, Channel::Orders] {
            store.authorize_channel(&who, &channel)?;
        }
        let prefix = config.prefix();
        let queue_len = config.queue_len.max(1);
        // Room for a full window of event messages plus replies and presence, so that
        // queueing never has to wait for the poller.
        let capacity = queue_len * MESSAGES_PER_EVENT + MAX_CONCURRENT_COMMANDS + 16;
        let (link, events) =
            Link::start(&config, &broker, &topics::status_topic(&prefix), capacity)?;
        let (status, status_rx) = watch::channel(BridgeStatus {
            running: true,
            ..BridgeStatus::default()
        });
        let (stop, stopped) = oneshot::channel();
        let (reply_tx, reply_rx) = mpsc::channel(MAX_CONCURRENT_COMMANDS);
        let runner = Runner {
            store: store.clone(),
            who,
            prefix,
            qos: config.qos,
            version: config.version,
            event_properties: config.event_properties,
            queue_len,
            commands: config.commands,
            start_from: config.start_from,
            retry_delay: config.reconnect_delay.max(Duration::from_millis(100)),
            link,
            inflight: Inflight::default(),
            sub: None,
            retry_at: None,
            connected: false,
            last_acked: None,
            last_sent: None,
            status,
            reply_tx,
            reply_rx,
            command_slots: Arc::new(Semaphore::new(MAX_CONCURRENT_COMMANDS)),
        };
        tracing::info!(url = %config.url, client_id = %config.client_id, "starting MQTT bridge");
        let task = tokio::spawn(runner.run(events, stopped));
        Ok(BridgeHandle {
            status: status_rx,
            stop: Some(stop),
            task: Some(task),
            store,
        })
    }
}

/// A running bridge. Dropping it stops the bridge as [`BridgeHandle::shutdown`] does,
/// without waiting.
#[derive(Debug)]
#[must_use = "dropping the handle stops the bridge"]
pub struct BridgeHandle {
    status: watch::Receiver<BridgeStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    store: PetStore,
}

impl BridgeHandle {
    /// The current status.
    pub fn status(&self) -> BridgeStatus {
        self.status.borrow().clone()
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
        let head = self.store.head().await?;
        Ok(lag(head, self.status.borrow().last_acked))
    }

    /// Stops reading the log, waits (a few seconds at most) for the broker to
    /// acknowledge what is in flight, publishes the retained `offline` presence and
    /// disconnects cleanly.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
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
    Log(Option<Result<Arc<Event>>>),
    Reply(Reply),
    Resubscribe,
    Tick,
}

struct Runner {
    store: PetStore,
    who: Principal,
    prefix: String,
    qos: QoS,
    version: MqttVersion,
    event_properties: bool,
    queue_len: usize,
    commands: bool,
    start_from: StartFrom,
    retry_delay: Duration,
    link: Link,
    inflight: Inflight,
    sub: Option<Subscription>,
    /// When to retry a log subscription that failed.
    retry_at: Option<Instant>,
    connected: bool,
    /// Position of the last event fully acknowledged (None until the start position
    /// is known).
    last_acked: Option<ResumeToken>,
    last_sent: Option<ResumeToken>,
    status: watch::Sender<BridgeStatus>,
    reply_tx: mpsc::Sender<Reply>,
    reply_rx: mpsc::Receiver<Reply>,
    command_slots: Arc<Semaphore>,
}

async fn next_event(sub: &mut Option<Subscription>) -> Option<Result<Arc<Event>>> {
    match sub {
        Some(sub) => sub.next().await,
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
    async fn run(mut self, mut link: mpsc::Receiver<LinkEvent>, mut stop: oneshot::Receiver<()>) {
        let mut tick = tokio::time::interval(LAG_LOG_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let can_read = self.connected && self.inflight.len() < self.queue_len;
            let step = tokio::select! {
                _ = &mut stop => Step::Stop,
                event = link.recv() => event.map_or(Step::LinkGone, Step::Link),
                item = next_event(&mut self.sub), if can_read => Step::Log(item),
                Some(reply) = self.reply_rx.recv() => Step::Reply(reply),
                _ = sleep_until(self.retry_at), if self.connected => Step::Resubscribe,
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
                Step::Link(event) => self.on_link(event).await,
                Step::Log(Some(Ok(event))) => self.publish_event(&event).await,
                Step::Log(Some(Err(e))) => {
                    // Lagged: the log outran the broker; re-read from what was sent.
                    tracing::warn!(error = %e, "MQTT bridge fell behind the event log; re-reading it");
                    self.status.send_modify(|s| s.lagged += 1);
                    self.reread().await;
                }
                Step::Log(None) => {
                    tracing::warn!("the event log closed; the MQTT bridge publishes nothing more");
                    self.sub = None;
                }
                Step::Reply(reply) => self.publish_reply(reply),
                Step::Resubscribe => {
                    self.retry_at = None;
                    self.reread().await;
                }
                Step::Tick => self.log_lag().await,
            }
        }
        self.status.send_modify(|s| {
            s.running = false;
            s.connected = false;
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
                self.sub = None;
                self.retry_at = None;
                self.inflight.clear();
                self.last_sent = self.last_acked;
                self.status.send_modify(|s| {
                    s.connected = false;
                    s.in_flight = 0;
                    s.last_sent = s.last_acked;
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
        let status = topics::status_topic(&self.prefix);
        let _ = self.queue(
            &status,
            qos,
            true,
            "online",
            Properties::default(),
            Purpose::Other,
        );
        if self.commands {
            let filter = topics::commands_filter(&self.prefix);
            if let Err(e) = self.link.try_subscribe(&filter, self.qos) {
                tracing::error!(error = %e, "cannot subscribe to MQTT commands");
            }
        }
        self.status.send_modify(|s| {
            s.connected = true;
            s.connects += 1;
        });
        self.resume().await;
    }

    /// Follows the log again from the last acknowledged event (or from the start
    /// position on the first connection).
    async fn resume(&mut self) {
        if self.last_acked.is_none() {
            match self.start_position().await {
                Ok(start) => self.last_acked = Some(start),
                Err(e) => return self.subscribe_failed(e),
            }
        }
        let Some(from) = self.last_acked else { return };
        tracing::info!(resume_from = %from, "MQTT bridge connected");
        self.status.send_modify(|s| {
            s.resumed_from = Some(from);
            s.last_acked = Some(from);
        });
        self.subscribe(from).await;
    }

    /// The position before the first event to publish.
    async fn start_position(&mut self) -> Result<ResumeToken> {
        match self.start_from {
            StartFrom::After(token) => Ok(token),
            StartFrom::Head => self.store.head().await,
            StartFrom::Oldest => {
                let first = self
                    .store
                    .events(&self.who, None, 1, EventFilter::all(), Duration::ZERO)
                    .await?;
                Ok(match first.events.first() {
                    Some(e) => ResumeToken::new(e.offset.epoch, e.offset.offset - 1),
                    None => first.next,
                })
            }
        }
    }

    /// Follows the log again after what was already handed to the client (the
    /// connection is up: what is in flight still gets acknowledged).
    async fn reread(&mut self) {
        match self.last_sent.or(self.last_acked) {
            Some(from) => self.subscribe(from).await,
            None => self.resume().await,
        }
    }

    /// (Re)subscribes to the log after `from`.
    async fn subscribe(&mut self, from: ResumeToken) {
        self.sub = None;
        let e = match self
            .store
            .subscribe(&self.who, Some(from), EventFilter::all())
            .await
        {
            Ok(sub) => {
                self.sub = Some(sub);
                self.retry_at = None;
                return;
            }
            Err(e) => e,
        };
        if e.kind() != ErrorKind::ResumeExpired {
            return self.subscribe_failed(e);
        }
        // The outage outlasted the log's retention: what lies between is gone.
        tracing::error!(error = %e, "MQTT bridge cannot resume: events were lost for MQTT subscribers; restarting from the log head");
        let head = match self.store.head().await {
            Ok(head) => head,
            Err(e) => return self.subscribe_failed(e),
        };
        self.last_acked = Some(head);
        self.last_sent = Some(head);
        self.status.send_modify(|s| {
            s.resets += 1;
            s.last_acked = Some(head);
            s.last_sent = Some(head);
            s.last_error = Some(e.to_string());
        });
        match self
            .store
            .subscribe(&self.who, Some(head), EventFilter::all())
            .await
        {
            Ok(sub) => {
                self.sub = Some(sub);
                self.retry_at = None;
            }
            Err(e) => self.subscribe_failed(e),
        }
    }

    fn subscribe_failed(&mut self, e: Error) {
        tracing::error!(error = %e, "MQTT bridge cannot follow the event log; retrying");
        self.status
            .send_modify(|s| s.last_error = Some(e.to_string()));
        self.retry_at = Some(Instant::now() + self.retry_delay);
    }

    fn properties(&self, event: &Event, json: bool) -> Properties {
        if !self.event_properties {
            return Properties::default();
        }
        Properties {
            user: vec![
                ("event-type".to_owned(), event.event_type.to_string()),
                ("offset".to_owned(), event.offset.to_string()),
                ("event-id".to_owned(), event.id.to_string()),
            ],
            correlation_data: None,
            json,
        }
    }

    async fn publish_event(&mut self, event: &Event) {
        let messages = topics::event_messages(&self.prefix, event);
        let inventory = if event.event_type.affects_inventory() {
            match self.store.inventory(&self.who).await {
                Ok(snapshot) => {
                    let mut json = serde_json::to_value(snapshot.items).unwrap_or_default();
                    if let Some(obj) = json.as_object_mut() {
                        obj.insert("offset".to_owned(), snapshot.position.to_string().into());
                    }
                    Some(json.to_string())
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the inventory for its MQTT snapshot");
                    None
                }
            }
        } else {
            None
        };
        let token = event.offset;
        self.inflight
            .begin(token, messages.len() + usize::from(inventory.is_some()));
        for m in messages {
            let props = self.properties(event, !m.payload.is_empty());
            let _ = self.queue(
                &m.topic,
                self.qos,
                m.retain,
                m.payload,
                props,
                Purpose::Event(token),
            );
        }
        if let Some(snapshot) = inventory {
            let topic = topics::inventory_topic(&self.prefix);
            let props = self.properties(event, true);
            let _ = self.queue(
                &topic,
                self.qos,
                true,
                snapshot,
                props,
                Purpose::Event(token),
            );
        }
        self.last_sent = Some(token);
        let in_flight = self.inflight.len();
        self.status.send_modify(|s| {
            s.last_sent = Some(token);
            s.in_flight = in_flight;
        });
    }

    /// Queues one PUBLISH and records what it is for.
    fn queue(
        &mut self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: impl Into<Bytes>,
        props: Properties,
        purpose: Purpose,
    ) -> Result<()> {
        let props = match self.version {
            MqttVersion::V5 => props,
            MqttVersion::V311 => Properties::default(),
        };
        match self.link.try_publish(topic, qos, retain, payload, props) {
            Ok(()) => {
                self.inflight.queued(purpose);
                Ok(())
            }
            Err(e) => {
                // Only when the client is gone or its queue is full during an outage;
                // the event stays unacknowledged and is republished after reconnecting.
                tracing::warn!(%topic, error = %e, "MQTT publish not queued");
                Err(e)
            }
        }
    }

    fn advance(&mut self) {
        if let Some((n, token)) = self.inflight.advance() {
            // Never backwards (a reset to the head may overtake older in-flight events).
            let token = self.last_acked.map_or(token, |acked| acked.max(token));
            self.last_acked = Some(token);
            let in_flight = self.inflight.len();
            self.status.send_modify(|s| {
                s.last_acked = Some(token);
                s.events_published += n;
                s.in_flight = in_flight;
            });
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
        let store = self.store.clone();
        let who = self.who.clone();
        let prefix = self.prefix.clone();
        let replies = self.reply_tx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Some(result) =
                commands::run(&store, &who, &prefix, &message.topic, &message.payload).await
            else {
                return;
            };
            match &result {
                Ok(_) => tracing::info!(topic = %message.topic, "MQTT command done"),
                Err(e) => {
                    tracing::info!(topic = %message.topic, error = %e, "MQTT command refused")
                }
            }
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
        });
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
            &topic,
            qos,
            false,
            reply.body.to_string(),
            props,
            Purpose::Other,
        );
    }

    async fn log_lag(&mut self) {
        let Ok(head) = self.store.head().await else {
            return;
        };
        let lag = lag(head, self.last_acked);
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
        self.sub = None;
        if !self.connected {
            return;
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let qos = self.qos.max(QoS::AtLeastOnce);
        let status = topics::status_topic(&self.prefix);
        let mut offline_queued = false;
        loop {
            if self.inflight.len() == 0 && !offline_queued {
                offline_queued = true;
                let props = Properties::default();
                if self
                    .queue(&status, qos, true, "offline", props, Purpose::Offline)
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
        tracing::info!(last_acked = ?self.last_acked, "MQTT bridge stopped");
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
