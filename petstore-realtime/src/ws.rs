//! WebSocket: `GET /v1/ws` and `GET /v1/ws/chat`, JSON text frames.
//!
//! Each connection is one task running two halves joined by a bounded queue: the
//! reader (client frames, log feeds, heartbeats, idle timer) and the writer. The
//! reader takes events from the log only while the queue has room, so a client that
//! reads slowly falls behind the log; once it is more than the log's
//! `subscriber_buffer` behind, the core cuts its feed off (`Lagged`) and the
//! connection is closed with 1013 and the position to resume from. Replies to client
//! frames have a little reserved room; a client that keeps sending while never
//! reading exhausts it and is closed the same way.

use petstore_core::telemetry::OpenStream;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use petstore_core::{
    Channel, Error, EventFilter, NewChatMessage, Principal, ResumeToken, Scope, Subscription,
};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout};
use tokio_stream::StreamMap;

use crate::config::RealtimeConfig;
use crate::error::WireError;
use crate::feed::{self, Since};
use crate::frame::{self, ClientFrame, ServerFrame};
use crate::routes::{AppState, HeaderCredential, authenticate_token, principal};

/// Close codes (RFC 6455 section 7.4.1).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_INVALID_DATA: u16 = 1007;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// Queue slots kept for replies to client frames (events may not take them).
const REPLY_HEADROOM: usize = 16;

/// Client frames are small; a small read buffer keeps idle connections cheap (it
/// grows for larger messages, up to the configured maximum).
const READ_BUFFER: usize = 4 * 1024;

/// The most queued messages the writer sends with one flush.
const MAX_BATCH: usize = 64;

/// Query parameters of both WebSocket routes.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WsQuery {
    /// A bearer token, checked at the handshake.
    token: Option<String>,
}

/// `GET /v1/ws`.
pub(crate) async fn connect(
    State(shared): State<Arc<AppState>>,
    credential: HeaderCredential,
    query: Result<Query<WsQuery>, QueryRejection>,
    upgrade: WebSocketUpgrade,
) -> Response {
    handshake(shared, credential, query, upgrade, false)
}

/// `GET /v1/ws/chat`: subscribes to `chat` once authenticated.
pub(crate) async fn connect_chat(
    State(shared): State<Arc<AppState>>,
    credential: HeaderCredential,
    query: Result<Query<WsQuery>, QueryRejection>,
    upgrade: WebSocketUpgrade,
) -> Response {
    handshake(shared, credential, query, upgrade, true)
}

/// Checks the credential before upgrading: a bad one is refused with 401 and no
/// upgrade happens.
fn handshake(
    shared: Arc<AppState>,
    credential: HeaderCredential,
    query: Result<Query<WsQuery>, QueryRejection>,
    upgrade: WebSocketUpgrade,
    chat: bool,
) -> Response {
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return WireError::bad_request(e.body_text()).into_response(),
    };
    let who = match principal(&shared.service, credential, query.token.as_deref()) {
        Ok(who) => who,
        Err(e) => return e.into_response(),
    };
    // The protocol layer reads messages up to twice the limit, so that a message
    // somewhat over it is read whole and refused cleanly (error frame, close 1009,
    // closing handshake). Beyond that, tungstenite stops reading mid-message and the
    // close is best effort.
    let max = shared.config.max_message_size;
    // Counted from here: a failed upgrade drops it with the callback.
    let gauge = OpenStream::new(if chat { "chat_websocket" } else { "websocket" });
    let hard = max.saturating_mul(2).max(max.saturating_add(64 * 1024));
    upgrade
        .max_message_size(hard)
        .max_frame_size(hard)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| {
            let span = gauge.span().clone();
            serve(socket, shared, who, chat, gauge).instrument(span)
        })
}

/// Why a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The client closed, or the connection ended: finish the closing handshake.
    ClientClosed,
    /// The connection failed: nothing more can be sent.
    Broken,
    /// The client did not keep up: close 1013 with the position to resume from.
    SlowConsumer,
    /// Nothing was heard from the client for the idle timeout.
    Idle,
    /// The client sent a message over the size limit.
    TooBig,
    /// The client broke the WebSocket protocol (close code and reason).
    Violation(u16, &'static str),
    /// The server is shutting down: close 1001 after what is queued.
    ShuttingDown,
}

/// What the writer must remember about a queued message: the positions it
/// delivers, which give the resume token of a slow consumer.
#[derive(Debug)]
enum Track {
    None,
    Subscribed(Channel, ResumeToken),
    Unsubscribed(Channel),
    Event(Channel, ResumeToken),
}

#[derive(Debug)]
struct Outbound {
    message: Message,
    track: Track,
}

impl Outbound {
    fn text(text: String, track: Track) -> Self {
        Self {
            message: Message::Text(text.into()),
            track,
        }
    }
}

async fn serve(
    socket: WebSocket,
    shared: Arc<AppState>,
    who: Principal,
    chat: bool,
    _gauge: OpenStream,
) {
    let (sink, mut stream) = socket.split();
    let (out, queue) = mpsc::channel(shared.config.outbound_queue + REPLY_HEADROOM);
    let (stop_tx, stop_rx) = oneshot::channel();
    let write_timeout = shared.config.write_timeout;
    let mut connection = Connection {
        shared,
        who,
        chat,
        feeds: StreamMap::new(),
        out,
    };
    let reader = async move {
        let stop = match connection.run(&mut stream).await {
            Err(stop) => stop,
            Ok(never) => match never {},
        };
        let _ = stop_tx.send(stop);
        // Stop following the log and release the queue before the handshake.
        drop(connection);
        if stop != Stop::Broken {
            // Read until the client answers our close frame, so that the TCP
            // connection ends cleanly (closing with unread input would reset it and
            // could destroy the close frame before the client reads it).
            // (After a protocol error the stream is over: nothing more can be read.)
            let _ = timeout(write_timeout, async {
                while let Some(Ok(_)) = stream.next().await {}
            })
            .await;
        }
    };
    tokio::join!(reader, write(sink, queue, stop_rx, write_timeout));
}

/// The reader half's state.
struct Connection {
    shared: Arc<AppState>,
    who: Principal,
    /// `/v1/ws/chat`: subscribe to `chat` once authenticated.
    chat: bool,
    feeds: StreamMap<Channel, Subscription>,
    out: mpsc::Sender<Outbound>,
}

impl Connection {
    fn config(&self) -> &RealtimeConfig {
        &self.shared.config
    }

    /// Serves the connection until it must stop.
    async fn run(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
    ) -> Result<Infallible, Stop> {
        let heartbeat_every = self.config().heartbeat_interval;
        let idle_after = self.config().idle_timeout;
        let max_size = self.config().max_message_size;
        let mut heartbeat =
            tokio::time::interval_at(Instant::now() + heartbeat_every, heartbeat_every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let idle = tokio::time::sleep(idle_after);
        tokio::pin!(idle);
        let shutdown = self.shared.shutdown.clone();
        let shutting_down = shutdown.cancelled();
        tokio::pin!(shutting_down);

        if self.chat && self.who.is_authenticated() {
            self.subscribe(None, "chat", None).await?;
        }
        loop {
            // Events wait in the log (not in memory here) while the client is behind.
            let room = self.out.capacity() > REPLY_HEADROOM;
            tokio::select! {
                message = stream.next() => {
                    idle.as_mut().reset(Instant::now() + idle_after);
                    match message {
                        None | Some(Ok(Message::Close(_))) => return Err(Stop::ClientClosed),
                        Some(Err(e)) => return Err(self.read_failed(&e)),
                        Some(Ok(Message::Text(text) )) if text.len() > max_size => return Err(self.too_big(text.len())),
                        Some(Ok(Message::Binary(data))) if data.len() > max_size => return Err(self.too_big(data.len())),
                        Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await?,
                        Some(Ok(Message::Binary(_))) => self.error(
                            None,
                            None,
                            &WireError::bad_request("binary frames are not supported: send JSON text frames"),
                        )?,
                        // Pings are answered by the protocol layer; both count as activity.
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    }
                }
                Some((channel, item)) = self.feeds.next(), if room && !self.feeds.is_empty() => {
                    // Nothing written after the shutdown signal goes out, even when
                    // this branch won the race against it.
                    if shutdown.is_cancelled() {
                        return Err(Stop::ShuttingDown);
                    }
                    self.deliver(channel, item)?;
                }
                // Wakes the loop once the writer has made room for events again (the
                // permits are given back at once: only this loop sends).
                open = async { self.out.reserve_many(REPLY_HEADROOM + 1).await.is_ok() }, if !room => {
                    if !open {
                        return Err(Stop::Broken);
                    }
                }
                _ = heartbeat.tick() => {
                    // A full queue means traffic is flowing: no ping needed.
                    if room {
                        self.enqueue(Outbound { message: Message::Ping(Default::default()), track: Track::None })?;
                    }
                }
                () = &mut idle => return Err(Stop::Idle),
                () = &mut shutting_down => return Err(Stop::ShuttingDown),
            }
        }
    }

    fn read_failed(&self, error: &axum::Error) -> Stop {
        use tokio_tungstenite::tungstenite::Error as WsError;
        use tokio_tungstenite::tungstenite::error::ProtocolError;
        let inner = std::error::Error::source(error).and_then(|e| e.downcast_ref::<WsError>());
        if let Some(WsError::Capacity(e)) = inner {
            tracing::debug!(error = %e, "websocket message far over the limit");
            return self.too_big(self.config().max_message_size.saturating_mul(2));
        }
        tracing::debug!(error = %error, "websocket read failed");
        match inner {
            Some(WsError::Utf8(_)) => {
                Stop::Violation(CLOSE_INVALID_DATA, "invalid UTF-8 in a text frame")
            }
            Some(WsError::Protocol(e))
                if !matches!(e, ProtocolError::ResetWithoutClosingHandshake) =>
            {
                Stop::Violation(CLOSE_PROTOCOL_ERROR, "protocol error")
            }
            _ => Stop::Broken,
        }
    }

    /// Refuses a message of `size` bytes: an error frame, then close 1009.
    fn too_big(&self, size: usize) -> Stop {
        let message = format!(
            "a message of {size} bytes or more is over the limit of {} bytes",
            self.config().max_message_size
        );
        let frame = WireError::new(StatusCode::PAYLOAD_TOO_LARGE, "message_too_large", message);
        // Best effort: the close frame that follows says it too.
        let _ = self.error(None, None, &frame);
        Stop::TooBig
    }

    async fn on_text(&mut self, text: &str) -> Result<(), Stop> {
        let frame::Parsed { id, kind, frame } = frame::parse(text);
        let id = id.as_ref();
        // A command's scope first: a caller without it learns nothing about the rules
        // of the frame's fields (the core checks the scope again).
        if kind.as_deref() == Some(frame::CHAT_SEND)
            && let Err(e) = self.who.require(Scope::ChatWrite)
        {
            return self.core_error(id, None, &e);
        }
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => return self.error(id, None, &e),
        };
        match frame {
            ClientFrame::Auth { token } => self.authenticate(id, &token).await,
            ClientFrame::Subscribe { channel, since } => {
                self.subscribe(id, &channel, since.as_deref()).await
            }
            ClientFrame::Unsubscribe { channel } => self.unsubscribe(id, &channel),
            ClientFrame::ChatSend { room, text } => {
                match self
                    .shared
                    .service
                    .post_chat(&self.who, NewChatMessage { room, text })
                    .await
                {
                    Ok(message) => self.reply(
                        &ServerFrame::ChatSent {
                            id,
                            message: &message,
                        },
                        Track::None,
                    ),
                    Err(e) => self.core_error(id, None, &e),
                }
            }
            ClientFrame::Ping => self.reply(&ServerFrame::Pong { id }, Track::None),
        }
    }

    async fn authenticate(&mut self, id: Option<&Value>, token: &str) -> Result<(), Stop> {
        if self.who.is_authenticated() {
            return self.error(
                id,
                None,
                &WireError::bad_request("the connection is already authenticated"),
            );
        }
        match authenticate_token(&self.shared.service, Some(token)) {
            Ok(who) if who.is_authenticated() => {
                // The connection's `stream` span (this task's) names its caller from now on.
                if let Some(sub) = who.subject() {
                    tracing::Span::current().record("sub", tracing::field::display(sub));
                }
                self.who = who;
            }
            Ok(_) => {
                return self.error(id, None, &WireError::bad_request("`token` is empty"));
            }
            // The connection stays open and anonymous; the client may try again.
            Err(e) => return self.core_error(id, None, &e),
        }
        let scopes = self.who.scopes().map(Scope::as_str).collect();
        let subject = self.who.subject().unwrap_or_default();
        self.reply(
            &ServerFrame::Authenticated {
                id,
                subject,
                scopes,
            },
            Track::None,
        )?;
        if self.chat {
            self.subscribe(None, "chat", None).await?;
        }
        Ok(())
    }

    async fn subscribe(
        &mut self,
        id: Option<&Value>,
        channel: &str,
        since: Option<&str>,
    ) -> Result<(), Stop> {
        let channel: Channel = match channel.parse() {
            Ok(channel) => channel,
            Err(e) => return self.core_error(id, None, &e),
        };
        if self.feeds.contains_key(&channel) {
            let e = WireError::new(
                StatusCode::CONFLICT,
                "already_subscribed",
                format!("already subscribed to `{channel}` (unsubscribe first to resubscribe)"),
            );
            return self.error(id, Some(&channel), &e);
        }
        let max = self.config().max_subscriptions;
        if self.feeds.len() >= max {
            let e = WireError::new(
                StatusCode::BAD_REQUEST,
                "too_many_subscriptions",
                format!("at most {max} subscriptions per connection"),
            );
            return self.error(id, Some(&channel), &e);
        }
        let since = Since::parse(since);
        if let Since::Invalid(raw) = &since {
            let e = WireError::bad_request(format!(
                "`since`: `{raw}` is not a resume token (use an event's `offset` or a `subscribed` frame's `position`)"
            ));
            return self.error(id, Some(&channel), &e);
        }
        let asked_to_resume = matches!(since, Since::Token(_));
        let filter = EventFilter::channels([channel.clone()]);
        let feed = match feed::open(&self.shared.service, &self.who, since, filter).await {
            Ok(feed) => feed,
            Err(e) => return self.core_error(id, Some(&channel), &e),
        };
        if let Some(reset) = &feed.reset {
            // The subscription goes on live; the client must reload what it missed.
            let text = ServerFrame::Error {
                id,
                code: petstore_core::ErrorKind::ResumeExpired.code(),
                message: &reset.message,
                channel: Some(&channel),
                errors: &[],
                reason: Some(reset.reason),
                resume_from: Some(feed.position),
            }
            .to_text();
            self.enqueue(Outbound::text(text, Track::None))?;
        }
        let subscribed = ServerFrame::Subscribed {
            id,
            channel: &channel,
            position: feed.position,
            recovered: asked_to_resume && feed.reset.is_none(),
        };
        self.reply(
            &subscribed,
            Track::Subscribed(channel.clone(), feed.position),
        )?;
        self.feeds.insert(channel, feed.events);
        Ok(())
    }

    fn unsubscribe(&mut self, id: Option<&Value>, channel: &str) -> Result<(), Stop> {
        let channel: Channel = match channel.parse() {
            Ok(channel) => channel,
            Err(e) => return self.core_error(id, None, &e),
        };
        if self.feeds.remove(&channel).is_none() {
            let e = WireError::new(
                StatusCode::NOT_FOUND,
                "not_subscribed",
                format!("not subscribed to `{channel}`"),
            );
            return self.error(id, Some(&channel), &e);
        }
        self.reply(
            &ServerFrame::Unsubscribed {
                id,
                channel: &channel,
            },
            Track::Unsubscribed(channel.clone()),
        )
    }

    /// Queues an event of a feed (the loop only polls feeds when there is room).
    fn deliver(
        &mut self,
        channel: Channel,
        item: petstore_core::Result<Arc<petstore_core::Event>>,
    ) -> Result<(), Stop> {
        match item {
            Ok(event) => {
                let text = self.shared.frames.delivery(&channel, &event);
                self.enqueue(Outbound {
                    message: Message::Text(text),
                    track: Track::Event(channel, event.offset()),
                })
            }
            // The core cut the feed off: the client is too far behind.
            Err(e) => {
                tracing::debug!(error = %e, "websocket subscriber lagged");
                Err(Stop::SlowConsumer)
            }
        }
    }

    fn reply(&self, frame: &ServerFrame<'_>, track: Track) -> Result<(), Stop> {
        self.enqueue(Outbound::text(frame.to_text(), track))
    }

    fn core_error(
        &self,
        id: Option<&Value>,
        channel: Option<&Channel>,
        e: &Error,
    ) -> Result<(), Stop> {
        self.error(id, channel, &WireError::from_core(e))
    }

    fn error(
        &self,
        id: Option<&Value>,
        channel: Option<&Channel>,
        e: &WireError,
    ) -> Result<(), Stop> {
        self.enqueue(Outbound::text(frame::error(id, channel, e), Track::None))
    }

    fn enqueue(&self, out: Outbound) -> Result<(), Stop> {
        self.out.try_send(out).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                petstore_core::telemetry::outbound_queue_cut_off();
                Stop::SlowConsumer
            }
            mpsc::error::TrySendError::Closed(_) => Stop::Broken,
        })
    }
}

/// The writer half: sends queued messages until told to stop, then closes.
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Outbound>,
    mut stop: oneshot::Receiver<Stop>,
    write_timeout: Duration,
) {
    // Per subscribed channel, the position up to which its events were written.
    let mut positions: HashMap<Channel, ResumeToken> = HashMap::new();
    // What the messages of the current batch deliver, applied once it is flushed.
    let mut tracks = Vec::new();
    let why = loop {
        let next = tokio::select! {
            biased;
            why = &mut stop => break why.unwrap_or(Stop::Broken),
            next = queue.recv() => next,
        };
        let Some(out) = next else {
            break (&mut stop).await.unwrap_or(Stop::Broken);
        };
        // Every message already waiting goes out with this one and a single flush: a
        // burst of events costs one write, not one per frame.
        let batch = async {
            let mut next = Some(out);
            while let Some(out) = next.take() {
                sink.feed(out.message).await?;
                tracks.push(out.track);
                if tracks.len() < MAX_BATCH {
                    next = queue.try_recv().ok();
                }
            }
            sink.flush().await
        };
        let sent = tokio::select! {
            biased;
            // A stalled write must not delay the close decision.
            why = &mut stop => break why.unwrap_or(Stop::Broken),
            sent = batch => sent,
        };
        if sent.is_err() {
            return;
        }
        for track in tracks.drain(..) {
            match track {
                Track::None => {}
                Track::Subscribed(channel, at) | Track::Event(channel, at) => {
                    positions.insert(channel, at);
                }
                Track::Unsubscribed(channel) => {
                    positions.remove(&channel);
                }
            }
        }
    };
    let close = match why {
        Stop::Broken => return,
        Stop::ClientClosed => None,
        Stop::SlowConsumer => {
            // Every subscribed channel has been written up to at least this position.
            let reason = match positions.values().min() {
                Some(at) => format!("slow consumer; resume from {at}"),
                None => "slow consumer".to_owned(),
            };
            Some((CLOSE_TRY_AGAIN_LATER, reason))
        }
        Stop::Idle => Some((CLOSE_NORMAL, "idle timeout".to_owned())),
        Stop::ShuttingDown => Some((CLOSE_GOING_AWAY, "server shutting down".to_owned())),
        Stop::TooBig => Some((CLOSE_TOO_BIG, "message too big".to_owned())),
        Stop::Violation(code, reason) => Some((code, reason.to_owned())),
    };
    let _ = timeout(write_timeout, async {
        if why != Stop::SlowConsumer {
            // Replies already queued (such as the error frame explaining the close)
            // still go out.
            while let Ok(out) = queue.try_recv() {
                if sink.send(out.message).await.is_err() {
                    return;
                }
            }
        }
        match close {
            Some((code, reason)) => {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let _ = sink.send(Message::Close(Some(frame))).await;
            }
            None => {
                let _ = sink.close().await;
            }
        }
    })
    .await;
}
