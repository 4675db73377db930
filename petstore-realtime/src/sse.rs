//! Server-Sent Events: `GET /v1/stream?channels=...` and `GET /v1/stream/{channel}`.
//!
//! Each message is `id:` (the resume token) and `data:` (the envelope, whose `type`
//! names the event), with no `event:` line, so that `EventSource.onmessage` receives
//! every event; `?named_events=true` adds `event: <type>` for `addEventListener`
//! clients. A reset and the final error of a slow client follow the same rule: in the
//! default form their data carries `"type": "reset"` / `"type": "error"`, in the named
//! form they are `event: reset` / `event: error`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};
use petstore_core::{Channel, Error, Event, EventFilter, RequestContext, ResumeToken};
use serde::Deserialize;
use serde_json::json;

use crate::error::WireError;
use crate::feed::{self, Feed, Since};
use crate::quota::{StreamPlace, StreamQuota};
use crate::recent::Recent;
use crate::routes::{AppState, HeaderCredential, principal};

/// Query parameters of both SSE routes.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamQuery {
    /// Comma-separated channels (only on `/v1/stream`); none means every readable one.
    channels: Option<String>,
    /// Comma-separated type patterns (`pet.*,order.created`); none means every type.
    types: Option<String>,
    /// A bearer token, for clients that cannot set `Authorization`.
    token: Option<String>,
    /// Resume after this token (the `Last-Event-ID` header wins).
    last_event_id: Option<String>,
    /// Name each message with an `event:` line (the event type, `reset`, `error`).
    #[serde(default)]
    named_events: bool,
}

/// How messages say what they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// Only in the data (`"type"`): every message reaches `onmessage`.
    Unnamed,
    /// Also as the SSE event name, for `addEventListener(type, ...)`.
    Named,
}

impl Form {
    /// A message of kind `name` (`reset`, `error`, or an event type) with `data`.
    fn message(self, name: &str, data: &str) -> SseEvent {
        let message = SseEvent::default().data(data);
        match self {
            Form::Unnamed => message,
            Form::Named => message.event(name),
        }
    }
}

/// `GET /v1/stream`.
pub(crate) async fn stream(
    State(shared): State<Arc<AppState>>,
    credential: HeaderCredential,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return WireError::bad_request(e.body_text()).into_response(),
    };
    let channels = query.channels.clone().unwrap_or_default();
    respond(&shared, credential, &headers, &channels, query).await
}

/// `GET /v1/stream/{*channel}` (channels such as `pets/pet_…` contain a slash).
pub(crate) async fn stream_channel(
    State(shared): State<Arc<AppState>>,
    Path(channel): Path<String>,
    credential: HeaderCredential,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return WireError::bad_request(e.body_text()).into_response(),
    };
    if query.channels.is_some() {
        return WireError::bad_request(
            "name the channel either in the path or in `channels`, not both",
        )
        .into_response();
    }
    let channels = channel.trim_start_matches('/');
    respond(&shared, credential, &headers, channels, query).await
}

async fn respond(
    shared: &AppState,
    credential: HeaderCredential,
    headers: &HeaderMap,
    channels: &str,
    query: StreamQuery,
) -> Response {
    match open(shared, credential, headers, channels, query).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn open(
    shared: &AppState,
    credential: HeaderCredential,
    headers: &HeaderMap,
    channels: &str,
    query: StreamQuery,
) -> Result<Response, WireError> {
    let config = &shared.config;
    let who = principal(&shared.service, credential, query.token.as_deref())?;
    let key = StreamQuota::key(&who, RequestContext::current().client_ip());
    let max = config.max_streams_per_caller;
    let Some(place) = shared.sse_quota.take(key, max) else {
        return Err(WireError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!("at most {max} open streams per caller: close one first"),
        ));
    };
    let mut filter = EventFilter::channels(parse_channels(channels)?);
    if filter.channels.len() > config.max_subscriptions {
        let e = Error::invalid_field(
            "channels",
            format!("at most {} channels per stream", config.max_subscriptions),
        );
        return Err(WireError::from_core(&e));
    }
    if let Some(types) = query.types.as_deref() {
        filter.types = EventFilter::parse_types(types).map_err(|e| WireError::from_core(&e))?;
    }
    let since = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("\u{fffd}"))
        .or(query.last_event_id.as_deref());
    let feed = feed::open(&shared.service, &who, Since::parse(since), filter)
        .await
        .map_err(|e| WireError::from_core(&e))?;
    let form = if query.named_events {
        Form::Named
    } else {
        Form::Unnamed
    };
    Ok(into_response(feed, form, shared, place))
}

/// Distinct channels of a comma-separated list.
fn parse_channels(list: &str) -> Result<Vec<Channel>, WireError> {
    let mut channels: Vec<Channel> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let channel = name.parse().map_err(|e| WireError::from_core(&e))?;
        if !channels.contains(&channel) {
            channels.push(channel);
        }
    }
    Ok(channels)
}

/// Streams `feed`: first a message with the `retry:` hint and the start position as
/// `id:` and no data (so a client that disconnects before any event resumes without a
/// gap, and no handler is called), then a reset if the client's token could not be
/// honoured, then the events.
///
/// The response is written straight from the log subscription: hyper polls it only
/// as fast as the client reads, so a client that falls more than the log's
/// `subscriber_buffer` behind is cut off by the core (`Lagged`). It then gets a final
/// error naming the position to resume from, and the stream ends.
///
/// `place` is the stream's place in its caller's quota, given back when the response
/// body is dropped (the client left, or the stream ended).
fn into_response(feed: Feed, form: Form, shared: &AppState, place: StreamPlace) -> Response {
    let config = &shared.config;
    let Feed {
        events,
        position,
        reset,
    } = feed;
    let mut opening = vec![
        SseEvent::default()
            .retry(config.retry_hint)
            .id(position.to_string()),
    ];
    if let Some(reset) = reset {
        let data = json!({
            "type": "reset",
            "reason": reset.reason,
            "message": reset.message,
            "resume_from": position,
        });
        opening.push(
            form.message("reset", &data.to_string())
                .id(position.to_string()),
        );
    }
    let messages = shared.sse_messages.clone();
    // Lives as long as the response body: the gauge goes down however the stream ends.
    let gauge = petstore_core::telemetry::OpenStream::new("sse");
    let live = stream::unfold(Some((events, position)), move |state| {
        let messages = messages.clone();
        async move {
            let (mut events, last) = state?;
            match events.next().await? {
                Ok(event) => {
                    let message = messages.message(&event, form);
                    Some((message, Some((events, event.offset()))))
                }
                Err(e) => Some((lagged(form, last, e.message()), None)),
            }
        }
    });
    // At shutdown the response ends, so that graceful shutdown can finish.
    let live = live.take_until(shared.shutdown.clone().cancelled_owned());
    let live = live.map(move |message| {
        let _held = &place;
        let _open = &gauge;
        message
    });
    let body = stream::iter(opening).chain(live).map(Ok::<_, Infallible>);
    let mut response = Sse::new(body)
        .keep_alive(
            KeepAlive::new()
                .interval(config.heartbeat_interval)
                .text("heartbeat"),
        )
        .into_response();
    // Reverse proxies such as nginx must not buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The SSE messages of the events delivered most recently, per form. Every stream of
/// a form sends the same message for the same event (the channel is not in it), so
/// during a fan-out it is built once and cloned (one copy of the buffer) for the other
/// streams.
#[derive(Debug, Default)]
pub(crate) struct MessageCache {
    unnamed: Mutex<Recent<SseEvent>>,
    named: Mutex<Recent<SseEvent>>,
}

impl MessageCache {
    /// Messages kept: more than the events that streams are apart at any moment.
    const CAPACITY: usize = 256;

    fn message(&self, event: &Event, form: Form) -> SseEvent {
        let recent = match form {
            Form::Unnamed => &self.unnamed,
            Form::Named => &self.named,
        };
        let lock = || recent.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(message) = lock().get(event.offset()) {
            return message;
        }
        let built = message(event, form);
        lock().keep(event.offset(), built.clone(), Self::CAPACITY);
        built
    }
}

/// The SSE message of one event.
fn message(event: &Event, form: Form) -> SseEvent {
    form.message(event.event_type().as_str(), event.json())
        .id(event.offset().to_string())
}

/// The final message to a client that fell behind: everything up to `resume_from`
/// was sent before it.
fn lagged(form: Form, resume_from: ResumeToken, why: &str) -> SseEvent {
    let data = json!({
        "type": "error",
        "code": "lagged",
        "message": format!("slow consumer: {why}"),
        "resume_from": resume_from,
    });
    form.message("error", &data.to_string())
}
