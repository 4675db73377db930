//! Servers, stores and clients for the tests.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{SinkExt, Stream, StreamExt};
use petstore_core::{
    Currency, Event, EventFilter, LogConfig, MemoryStore, Money, NewPet, Pet, PetStore, Principal,
    ResumeToken, Scope, ServiceConfig, TokenAuthority,
};
use petstore_realtime::RealtimeConfig;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A listener whose accepted sockets have a small send buffer.
pub(crate) fn small_buffer_listener() -> TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    socket.listen(64).unwrap()
}

/// A TCP connection with a small receive buffer.
pub(crate) async fn small_buffer_connection(addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

/// How long any single expected thing may take before the test fails.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A running server.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) store: PetStore,
}

impl Server {
    pub(crate) fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
}

/// A store whose log is sized by `log`.
pub(crate) fn store_with(log: LogConfig) -> PetStore {
    PetStore::new(
        MemoryStore::new(log),
        TokenAuthority::random(Duration::from_secs(3600)),
        ServiceConfig::default(),
    )
}

pub(crate) async fn serve(store: PetStore, config: RealtimeConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_on(listener, store, config)
}

pub(crate) fn serve_on(listener: TcpListener, store: PetStore, config: RealtimeConfig) -> Server {
    let addr = listener.local_addr().unwrap();
    let app = petstore_realtime::router(
        store.clone(),
        config,
        &petstore_http::Edge::new(),
        tokio_util::sync::CancellationToken::new(),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { addr, store }
}

pub(crate) async fn default_server() -> Server {
    serve(PetStore::in_memory(), RealtimeConfig::default()).await
}

pub(crate) fn staff() -> Principal {
    Principal::system("staff")
}

pub(crate) fn new_pet(name: &str) -> NewPet {
    NewPet {
        name: name.to_owned(),
        species: "dog".to_owned(),
        breed: Some("beagle".to_owned()),
        age: Some(3),
        status: None,
        tags: vec!["friendly".to_owned()],
        photo_urls: vec![],
        price: Money::parse("120.00", Currency::USD).unwrap(),
    }
}

pub(crate) async fn add_pet(store: &PetStore, name: &str) -> Pet {
    store.create_pet(&staff(), new_pet(name)).await.unwrap()
}

pub(crate) fn token(
    store: &PetStore,
    subject: &str,
    scopes: impl IntoIterator<Item = Scope>,
) -> String {
    store.tokens().issue(subject, scopes).unwrap().access_token
}

/// Every event after `since` on `channels`, as the log has them.
pub(crate) async fn log_after(
    store: &PetStore,
    since: ResumeToken,
    filter: EventFilter,
) -> Vec<Event> {
    let batch = store
        .events(&staff(), Some(since), 1000, filter, Duration::ZERO)
        .await
        .unwrap();
    batch.events.iter().map(|e| (**e).clone()).collect()
}

// ----- SSE ---------------------------------------------------------------------------

pub(crate) type SseStream = Pin<
    Box<
        dyn Stream<Item = Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>>
            + Send,
    >,
>;

/// Opens an SSE stream (status 200 and `text/event-stream` asserted). The server
/// subscribes before it answers, so once this returns every later event is delivered.
pub(crate) async fn sse(url: &str, headers: &[(&str, &str)]) -> SseStream {
    let mut request = reqwest::Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .expect("SSE response in time")
        .unwrap();
    assert_eq!(response.status(), 200, "{url}");
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{url}"
    );
    Box::pin(response.bytes_stream().eventsource())
}

pub(crate) async fn next_sse(stream: &mut SseStream) -> eventsource_stream::Event {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an SSE event in time")
        .expect("the stream goes on")
        .expect("a well-formed event")
}

/// The next message a WHATWG `EventSource` would hand to `onmessage`, its only handler.
///
/// `eventsource-stream` parses as the WHATWG spec says (a message without data is not
/// dispatched; one without an `event:` line has the type `message`); a browser then
/// dispatches a message whose type is not `message` only to `addEventListener` for
/// that type, so `onmessage` never sees it: such messages are skipped here.
pub(crate) async fn next_onmessage(stream: &mut SseStream) -> eventsource_stream::Event {
    loop {
        let message = next_sse(stream).await;
        if message.event == "message" {
            return message;
        }
    }
}

/// The envelope of an SSE message of the default form: it reaches `onmessage` (no
/// `event:` line), its `id:` is the envelope's offset and the `type` is in the data.
pub(crate) fn envelope(message: &eventsource_stream::Event) -> Event {
    assert_eq!(message.event, "message", "{message:?}");
    let event: Event = serde_json::from_str(&message.data).unwrap();
    assert_eq!(message.id, event.offset().to_string());
    event
}

/// The envelope of an SSE message of the named form (`?named_events=true`): its
/// `event:` line is the event type.
pub(crate) fn named_envelope(message: &eventsource_stream::Event) -> Event {
    let event: Event = serde_json::from_str(&message.data).unwrap();
    assert_eq!(message.event, event.event_type().as_str());
    assert_eq!(message.id, event.offset().to_string());
    event
}

// ----- WebSocket ----------------------------------------------------------------------

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Reads until the server's close frame: the text frames before it (as JSON), and it.
pub(crate) async fn until_close(
    socket: &mut Ws,
) -> (
    Vec<Value>,
    tokio_tungstenite::tungstenite::protocol::CloseFrame,
) {
    let mut frames = Vec::new();
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("the client hears from the server")
            .expect("a close frame before the end")
            .unwrap();
        match message {
            Message::Text(text) => frames.push(serde_json::from_str(text.as_str()).unwrap()),
            Message::Close(frame) => return (frames, frame.expect("a close reason")),
            _ => {}
        }
    }
}

pub(crate) async fn ws(url: &str) -> Ws {
    let (socket, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake in time")
        .unwrap();
    assert_eq!(response.status(), 101);
    socket
}

pub(crate) async fn send(socket: &mut Ws, frame: Value) {
    socket.send(Message::text(frame.to_string())).await.unwrap();
}

/// The next JSON frame (protocol pings and pongs are skipped).
pub(crate) async fn recv(socket: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame in time")
            .expect("the socket stays open")
            .unwrap();
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a JSON text frame, got {other:?}"),
        }
    }
}

/// The next frame, which must be of type `kind`.
pub(crate) async fn expect(socket: &mut Ws, kind: &str) -> Value {
    let frame = recv(socket).await;
    assert_eq!(frame["type"], kind, "{frame}");
    frame
}

/// Subscribes and waits for `subscribed`; returns its frame.
pub(crate) async fn subscribe(socket: &mut Ws, channel: &str) -> Value {
    send(
        socket,
        serde_json::json!({"type": "subscribe", "channel": channel}),
    )
    .await;
    let frame = expect(socket, "subscribed").await;
    assert_eq!(frame["channel"], channel);
    frame
}

/// The envelope of an `event` frame.
pub(crate) fn event_of(frame: &Value) -> Event {
    serde_json::from_value(frame["event"].clone()).unwrap()
}

/// A store whose reads need `pets:read` / `orders:read`.
pub(crate) fn closed_store() -> PetStore {
    PetStore::new(
        MemoryStore::default(),
        TokenAuthority::random(Duration::from_secs(3600)),
        ServiceConfig::default().require_auth_for_reads(true),
    )
}

/// An event's `data` as JSON, for assertions on its wire form.
pub(crate) trait DataJson {
    fn data_json(&self) -> Value;
}

impl DataJson for Event {
    fn data_json(&self) -> Value {
        serde_json::to_value(self.data()).unwrap()
    }
}
