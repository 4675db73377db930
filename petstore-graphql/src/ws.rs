//! GraphQL over WebSocket on `/graphql`: `graphql-transport-ws` or the legacy
//! `graphql-ws`, served by `juniper_graphql_ws`, with this adapter's protections in
//! front of it (operation limits, operations per connection) and `extensions.code` on
//! the errors it sends back.

use petstore_core::telemetry::OpenStream;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tracing::Instrument as _;

use axum::extract::FromRequestParts as _;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::response::{IntoResponse as _, Response};
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _, stream};
use juniper::{DefaultScalarValue, ExecutionError, FieldError, InputValue, ScalarValue, Variables};
use juniper_graphql_ws::{ConnectionConfig, graphql_transport_ws, graphql_ws};
use petstore_core::{Error, ErrorKind, Principal, RequestContext};
use petstore_http::{INTERNAL_ERROR_TEXT, Problem};
use serde_json::json;
use tokio::sync::mpsc;

use crate::error::{core_error, graphql_errors, request_error};
use crate::http::AppState;
use crate::schema::Context;

const TRANSPORT_WS: &str = "graphql-transport-ws";
/// How long a connection closed at shutdown waits for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
const LEGACY_WS: &str = "graphql-ws";

/// Accepts the upgrade: a bad `Authorization` header is refused here with 401.
pub(crate) async fn upgrade(
    app: Arc<AppState>,
    who: Result<Principal, Error>,
    mut parts: Parts,
) -> Response {
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let header = match who {
        Ok(p) => p,
        Err(e) => return crate::http::problem_response(Problem::from(e)),
    };
    // The client's address as the edge found it (behind trusted proxies too).
    let ip = RequestContext::current().client_ip();
    let ws = ws
        .protocols([TRANSPORT_WS, LEGACY_WS])
        .max_message_size(app.config.max_body_bytes);
    // Without a subprotocol the client gets the current protocol.
    let protocol = if ws.selected_protocol().is_some_and(|p| p == LEGACY_WS) {
        Protocol::Legacy
    } else {
        Protocol::Transport
    };
    let gauge = OpenStream::new("graphql_ws");
    ws.on_upgrade(move |socket| {
        let span = gauge.span().clone();
        serve(socket, app, header, protocol, ip, gauge).instrument(span)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// `graphql-transport-ws` (the `graphql-ws` npm package).
    Transport,
    /// The legacy `graphql-ws` (`subscriptions-transport-ws`).
    Legacy,
}

impl Protocol {
    /// The frames that refuse operation `id`.
    fn refuse(self, id: &str, error: serde_json::Value) -> Vec<Message> {
        let error = json!({ "type": "error", "id": id, "payload": [error] });
        match self {
            // In graphql-transport-ws `error` ends the operation.
            Protocol::Transport => vec![text(&error)],
            Protocol::Legacy => vec![text(&error), text(&json!({ "type": "complete", "id": id }))],
        }
    }
}

fn text(value: &serde_json::Value) -> Message {
    Message::text(value.to_string())
}

/// What the connection knows about its operations.
#[derive(Debug, Default)]
struct Operations {
    /// Whether juniper accepted `connection_init` (set by the init callback, which
    /// runs before the next client message is read). Before it, juniper refuses every
    /// operation itself.
    acked: bool,
    /// Whether the `connection_ack` frame has gone into the output, and its signal:
    /// a refusal waits for it, so that no frame about an operation precedes the ack.
    ack_out: bool,
    ack_signal: Arc<tokio::sync::Notify>,
    /// The operations running, by id.
    active: HashMap<String, Running>,
    /// Who the connection acts as, once `connection_init` is accepted (the key of its
    /// rate limit).
    principal: Option<Principal>,
    /// The client's address, when the server provides it (the key of an anonymous
    /// connection's rate limit).
    ip: Option<IpAddr>,
}

/// One operation running on a connection: its `graphql_operation` span, open from its
/// start to its end, and its count in the request metrics when it ends (however it
/// ends: `complete`, an error, the client's stop, the connection's end).
#[derive(Debug)]
struct Running {
    kind: &'static str,
    started: std::time::Instant,
    span: tracing::Span,
    outcome: &'static str,
}

impl Running {
    fn start(kind: &'static str, name: Option<&str>, who: Option<&Principal>) -> Self {
        let span = tracing::info_span!(
            "graphql_operation",
            kind,
            name,
            sub = who.and_then(Principal::subject),
            transport = "websocket",
        );
        Self {
            kind,
            started: std::time::Instant::now(),
            span,
            outcome: "ok",
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let outcome = self.outcome;
        tracing::debug!(parent: &self.span, outcome, "GraphQL operation finished");
        petstore_core::telemetry::record_request("graphql", self.kind, outcome, elapsed);
    }
}

/// Notes that a result of the operation `id` carried errors: it ends as `error`, as an
/// HTTP response with errors counts.
fn failed(ops: &Shared, id: &str) {
    if let Some(running) = lock(ops).active.get_mut(id) {
        running.outcome = "error";
    }
}

/// Ends the operation `id`, as an `error` when `error` (else as its results went); an
/// id that is not running is ignored.
fn end(ops: &Shared, id: &str, error: bool) {
    let running = lock(ops).active.remove(id);
    if let Some(mut running) = running
        && error
    {
        running.outcome = "error";
    }
    // Recorded by its drop, outside the lock.
}

type Shared = Arc<Mutex<Operations>>;

fn lock(ops: &Shared) -> std::sync::MutexGuard<'_, Operations> {
    ops.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Notes that the `connection_ack` frame is in the output.
fn ack_out(ops: &Shared) {
    let mut ops = lock(ops);
    ops.ack_out = true;
    ops.ack_signal.notify_one();
}

/// Waits until the `connection_ack` frame is in the output.
async fn after_ack(ops: &Shared) {
    let signal = lock(ops).ack_signal.clone();
    while !lock(ops).ack_out {
        signal.notified().await;
    }
}

/// The credentials of `connection_init`: `{"authorization": "Bearer <jwt>"}` (or
/// `Authorization`), or `{"token": "<jwt>"}`; without them, the upgrade request's
/// `Authorization` header.
fn connection_principal(
    app: &AppState,
    params: &Variables<DefaultScalarValue>,
    header: Principal,
) -> Result<Principal, Error> {
    let string = |key: &str| -> Option<Result<&str, Error>> {
        let value = params.get(key)?;
        Some(
            value
                .as_scalar()
                .and_then(ScalarValue::try_as_str)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Unauthenticated,
                        format!("`{key}` in connection_init must be a string"),
                    )
                }),
        )
    };
    if let Some(value) = string("authorization").or_else(|| string("Authorization")) {
        return app.service.authenticate_header(Some(value?));
    }
    if let Some(token) = string("token") {
        return app.service.authenticate(Some(token?));
    }
    Ok(header)
}

/// Why `connection_init` was refused; its text becomes the close reason.
#[derive(Debug)]
struct InitError(String);

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InitError {}

type Config = ConnectionConfig<Context, DefaultScalarValue>;

fn init(
    app: Arc<AppState>,
    header: Principal,
    ops: Shared,
) -> impl FnOnce(Variables<DefaultScalarValue>) -> future::Ready<Result<Config, InitError>>
+ Unpin
+ Send
+ 'static {
    move |params| {
        future::ready(match connection_principal(&app, &params, header) {
            Ok(principal) => Ok({
                let mut state = lock(&ops);
                state.acked = true;
                state.principal = Some(principal.clone());
                drop(state);
                ConnectionConfig::new(Context::new(app.service.clone(), principal))
                    .with_keep_alive_interval(app.config.keep_alive)
                    // Clients are not required to ping: never drop a quiet connection.
                    .with_keep_alive_timeout(Duration::ZERO)
                    .with_panic_handler(|_, _: &Context| {
                        tracing::error!("a GraphQL operation panicked");
                        Some(ExecutionError::at_origin(FieldError::new(
                            INTERNAL_ERROR_TEXT,
                            juniper::graphql_value!({ "code": "INTERNAL_SERVER_ERROR" }),
                        )))
                    })
            }),
            Err(e) => {
                // A close reason is at most 123 bytes.
                let mut reason = format!("UNAUTHENTICATED: {}", e.message());
                while reason.len() > 120 {
                    reason.pop();
                }
                Err(InitError(reason))
            }
        })
    }
}

/// A client frame for juniper, parsed here so that what is screened is exactly what
/// juniper runs.
#[derive(Debug)]
enum Incoming<M> {
    Message(M),
    /// Juniper answers it according to its protocol (close 4400, `connection_error`).
    Unreadable(FrameError),
}

/// A client frame that is not a protocol message.
#[derive(Debug)]
struct FrameError(String);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FrameError {}

impl<S: ScalarValue> TryFrom<Incoming<graphql_transport_ws::Input<S>>>
    for graphql_transport_ws::Input<S>
{
    type Error = FrameError;

    fn try_from(incoming: Incoming<Self>) -> Result<Self, FrameError> {
        match incoming {
            Incoming::Message(m) => Ok(m),
            Incoming::Unreadable(e) => Err(e),
        }
    }
}

impl<S: ScalarValue> TryFrom<Incoming<graphql_ws::ClientMessage<S>>>
    for graphql_ws::ClientMessage<S>
{
    type Error = FrameError;

    fn try_from(incoming: Incoming<Self>) -> Result<Self, FrameError> {
        match incoming {
            Incoming::Message(m) => Ok(m),
            Incoming::Unreadable(e) => Err(e),
        }
    }
}

fn json<T: serde::de::DeserializeOwned>(message: &Message) -> Result<T, FrameError> {
    let bytes: &[u8] = match message {
        Message::Text(text) => text.as_str().as_bytes(),
        Message::Binary(bytes) => bytes,
        _ => b"",
    };
    serde_json::from_slice(bytes).map_err(|e| FrameError(format!("invalid message: {e}")))
}

type TransportIn = graphql_transport_ws::Input<DefaultScalarValue>;
type LegacyIn = graphql_ws::ClientMessage<DefaultScalarValue>;

fn parse_transport(message: Message) -> Incoming<TransportIn> {
    match message {
        Message::Close(_) => Incoming::Message(TransportIn::Close),
        other => match json(&other) {
            Ok(m) => Incoming::Message(TransportIn::Message(m)),
            Err(e) => Incoming::Unreadable(e),
        },
    }
}

fn parse_legacy(message: Message) -> Incoming<LegacyIn> {
    match message {
        Message::Close(_) => Incoming::Message(LegacyIn::ConnectionTerminate),
        other => match json(&other) {
            Ok(m) => Incoming::Message(m),
            Err(e) => Incoming::Unreadable(e),
        },
    }
}

/// What a client message does to the connection's operations.
enum Op<'a> {
    Start {
        id: &'a str,
        query: &'a str,
        operation_name: Option<&'a str>,
        variables: &'a Variables<DefaultScalarValue>,
    },
    Stop {
        id: &'a str,
    },
    Other,
}

fn view_transport(message: &TransportIn) -> Op<'_> {
    use graphql_transport_ws::{ClientMessage, Input};
    match message {
        Input::Message(ClientMessage::Subscribe { id, payload }) => Op::Start {
            id,
            query: &payload.query,
            operation_name: payload.operation_name.as_deref(),
            variables: &payload.variables,
        },
        Input::Message(ClientMessage::Complete { id }) => Op::Stop { id },
        _ => Op::Other,
    }
}

fn view_legacy(message: &LegacyIn) -> Op<'_> {
    match message {
        LegacyIn::Start { id, payload } => Op::Start {
            id,
            query: &payload.query,
            operation_name: payload.operation_name.as_deref(),
            variables: &payload.variables,
        },
        LegacyIn::Stop { id } => Op::Stop { id },
        _ => Op::Other,
    }
}

/// Decides whether a client message goes on to juniper; `Err` holds the frames that
/// refuse it instead.
fn screen(
    app: &AppState,
    protocol: Protocol,
    ops: &Shared,
    op: Op<'_>,
) -> Result<(), Vec<Message>> {
    let mut ops = lock(ops);
    let (id, query, operation_name, variables) = match op {
        Op::Stop { id } => {
            let stopped = ops.active.remove(id);
            drop(ops);
            drop(stopped);
            return Ok(());
        }
        Op::Other => return Ok(()),
        Op::Start {
            id,
            query,
            operation_name,
            variables,
        } => (id, query, operation_name, variables),
    };
    if !ops.acked {
        return Ok(());
    }
    let int_variable = |name: &str| {
        variables
            .get(name)
            .and_then(InputValue::as_scalar)
            .and_then(ScalarValue::try_to_int)
            .map(i64::from)
    };
    let kind = match app.limits.check(query, operation_name, &int_variable) {
        Err(rejection) => {
            return Err(protocol.refuse(id, request_error(rejection.code, rejection.message)));
        }
        Ok(Some(crate::limits::OperationKind::Mutation)) => "mutation",
        Ok(Some(crate::limits::OperationKind::Subscription)) => "subscription",
        Ok(_) => "query",
    };
    // An id this adapter still counts is either running (juniper refuses the
    // duplicate) or just ended (its `complete` is on the way out): it takes no new
    // slot, and costs no request, either way.
    if !ops.active.contains_key(id) {
        let max = app.config.max_subscriptions_per_connection;
        if ops.active.len() >= max {
            let error = request_error(
                "TOO_MANY_SUBSCRIPTIONS",
                format!("at most {max} operations may run at once on one connection"),
            );
            return Err(protocol.refuse(id, error));
        }
        // Each operation started counts as one request of the connection's principal
        // (its IP when anonymous), in the same buckets as HTTP requests.
        if let Some(limiter) = &app.limiter {
            let anonymous = Principal::anonymous();
            let who = ops.principal.as_ref().unwrap_or(&anonymous);
            if let Some(refused) = limiter.check(who, ops.ip).error() {
                return Err(protocol.refuse(id, core_error(&refused)));
            }
        }
        let running = Running::start(kind, operation_name, ops.principal.as_ref());
        ops.active.insert(id.to_owned(), running);
    }
    Ok(())
}

/// Turns a juniper `graphql-transport-ws` output into a frame, noting ends.
fn transport_frame(
    output: graphql_transport_ws::Output<DefaultScalarValue>,
    ops: &Shared,
) -> Message {
    use graphql_transport_ws::{Output, ServerMessage};
    match output {
        Output::Message(message) => {
            match &message {
                ServerMessage::ConnectionAck => ack_out(ops),
                ServerMessage::Next { id, payload } if !payload.errors.is_empty() => {
                    failed(ops, id);
                }
                ServerMessage::Complete { id } => end(ops, id, false),
                ServerMessage::Error { id, payload } => {
                    end(ops, id, true);
                    let errors = graphql_errors(payload.graphql_error());
                    return text(&json!({ "type": "error", "id": id, "payload": errors }));
                }
                _ => {}
            }
            serialize(&message)
        }
        Output::Close { code, message } => Message::Close(Some(CloseFrame {
            code,
            reason: message.into(),
        })),
    }
}

/// Turns a juniper legacy `graphql-ws` message into a frame, noting ends.
fn legacy_frame(message: graphql_ws::ServerMessage<DefaultScalarValue>, ops: &Shared) -> Message {
    use graphql_ws::ServerMessage;
    match &message {
        ServerMessage::ConnectionAck => ack_out(ops),
        ServerMessage::Data { id, payload } if !payload.errors.is_empty() => failed(ops, id),
        ServerMessage::Complete { id } => end(ops, id, false),
        ServerMessage::Error { id, payload } => {
            end(ops, id, true);
            let errors = graphql_errors(payload.graphql_error());
            return text(&json!({ "type": "error", "id": id, "payload": errors }));
        }
        _ => {}
    }
    serialize(&message)
}

fn serialize(message: &impl serde::Serialize) -> Message {
    match serde_json::to_string(message) {
        Ok(s) => Message::text(s),
        Err(e) => Message::Close(Some(CloseFrame {
            code: 1011,
            reason: format!("cannot serialize a response: {e}").into(),
        })),
    }
}

async fn serve(
    socket: WebSocket,
    app: Arc<AppState>,
    header: Principal,
    protocol: Protocol,
    ip: Option<IpAddr>,
    _gauge: OpenStream,
) {
    let ops = Shared::new(Mutex::new(Operations {
        ip,
        ..Operations::default()
    }));
    let init = init(app.clone(), header, ops.clone());
    match protocol {
        Protocol::Transport => {
            let connection = graphql_transport_ws::Connection::new(app.schema.clone(), init);
            let (sink, outputs) = connection.split();
            let o = ops.clone();
            let outputs = outputs.map(move |out| transport_frame(out, &o));
            let wire = Wire {
                protocol,
                parse: parse_transport,
                view: view_transport,
            };
            pump(socket, &app, wire, &ops, sink, outputs).await;
        }
        Protocol::Legacy => {
            let connection = graphql_ws::Connection::new(app.schema.clone(), init);
            let (sink, outputs) = connection.split();
            let o = ops.clone();
            let outputs = outputs.map(move |out| legacy_frame(out, &o));
            let wire = Wire {
                protocol,
                parse: parse_legacy,
                view: view_legacy,
            };
            pump(socket, &app, wire, &ops, sink, outputs).await;
        }
    }
}

/// How one protocol reads client frames.
struct Wire<M> {
    protocol: Protocol,
    parse: fn(Message) -> Incoming<M>,
    view: fn(&M) -> Op<'_>,
}

/// Moves frames between the socket and juniper until either side ends.
async fn pump<M>(
    socket: WebSocket,
    app: &AppState,
    wire: Wire<M>,
    ops: &Shared,
    mut juniper_in: impl Sink<Incoming<M>, Error = Infallible> + Unpin,
    juniper_out: impl Stream<Item = Message> + Unpin,
) {
    let (ws_out, mut ws_in) = socket.split();
    let (refusals_tx, mut refusals_rx) = mpsc::channel::<Message>(16);
    let closer = refusals_tx.clone();
    let stopper = refusals_tx.clone();

    let input = async {
        while let Some(Ok(message)) = ws_in.next().await {
            if matches!(message, Message::Ping(_) | Message::Pong(_)) {
                // Transport-level keep-alive; axum answers pings itself.
                continue;
            }
            let incoming = (wire.parse)(message);
            let verdict = match &incoming {
                Incoming::Message(m) => screen(app, wire.protocol, ops, (wire.view)(m)),
                Incoming::Unreadable(_) => Ok(()),
            };
            match verdict {
                Ok(()) => {
                    if juniper_in.send(incoming).await.is_err() {
                        break;
                    }
                }
                Err(frames) => {
                    // Refusals are only made once the connection is accepted; juniper's
                    // ack may still be on its way out, and must come first.
                    after_ack(ops).await;
                    for frame in frames {
                        if refusals_tx.send(frame).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    };

    // A socket that never initialises is closed (graphql-transport-ws: 4408).
    let init_timeout = app.config.connection_init_timeout;
    let watchdog = async move {
        if !init_timeout.is_zero() {
            tokio::time::sleep(init_timeout).await;
            if !lock(ops).acked {
                let close = CloseFrame {
                    code: 4408,
                    reason: "Connection initialisation timeout".into(),
                };
                let _ = closer.send(Message::Close(Some(close))).await;
            }
        }
        future::pending::<()>().await;
    };

    // The output ends when juniper's does, or after a close frame; refusals are merged
    // in until then.
    let juniper_out = juniper_out
        .map(Some)
        .chain(stream::once(future::ready(None)));
    let refusals = stream::poll_fn(move |cx| refusals_rx.poll_recv(cx)).map(Some);
    let output = stream::select(juniper_out, refusals)
        .take_while(|m| future::ready(m.is_some()))
        .filter_map(future::ready)
        .scan(false, |closed, message| {
            if *closed {
                return future::ready(None);
            }
            *closed = matches!(message, Message::Close(_));
            future::ready(Some(message))
        })
        .map(Ok)
        .forward(ws_out);

    // At shutdown the connection is closed with 1001 (going away); the client's answer
    // to the close frame ends it, or the grace period does.
    let shutdown = app.shutdown.clone();
    let stop = async move {
        shutdown.cancelled().await;
        let close = CloseFrame {
            code: 1001,
            reason: "server shutting down".into(),
        };
        let _ = stopper.send(Message::Close(Some(close))).await;
        tokio::time::sleep(CLOSE_GRACE).await;
    };

    let (input, output, watchdog, stop) = (pin!(input), pin!(output), pin!(watchdog), pin!(stop));
    let background = futures_util::future::select(output, watchdog);
    let served = futures_util::future::select(input, background);
    let _ = futures_util::future::select(served, stop).await;
}
