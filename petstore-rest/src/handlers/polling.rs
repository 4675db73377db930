//! Polling the event log: `GET /v1/events` and `GET /v1/pets/changes`.

use std::sync::LazyLock;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use petstore_core::chrono::{DateTime, Utc};
use petstore_core::schemars::{self, JsonSchema, Schema, SchemaGenerator, json_schema};
use petstore_core::{
    Channel, Error, ErrorKind, EventFilter, EventType, MAX_EVENT_READ, OrderId, PetId, Principal,
    ROOM_PATTERN, ResumeToken, TypePattern,
};
use petstore_http::Problem;
use regex::Regex;
use serde::{Deserialize, Deserializer};

use crate::extract::{Caller, Params};
use crate::routes::AppState;

/// Events per response when `limit` is absent.
const DEFAULT_LIMIT: u32 = 100;

/// The syntax of a comma-separated list of `item`s: items may be surrounded by spaces,
/// and empty items are skipped.
fn list_pattern(item: &str) -> String {
    format!("^(?: *(?:{item})? *)(?:,(?: *(?:{item})? *))*$")
}

/// An anchored pattern without its anchors, to embed in another.
fn unanchored(pattern: &str) -> &str {
    pattern.trim_start_matches('^').trim_end_matches('$')
}

/// A list parameter's pattern: its schema's `pattern`, checked before the items are read.
#[derive(Debug)]
struct ListSyntax {
    pattern: String,
    regex: Regex,
}

impl ListSyntax {
    fn new(item: &str) -> Self {
        let pattern = list_pattern(item);
        let regex = Regex::new(&pattern).unwrap_or_else(|e| panic!("list pattern: {e}"));
        Self { pattern, regex }
    }

    /// The items of `text`, each read by `parse`; the message of the first bad one
    /// (or `what` when the list itself is malformed).
    fn parse<T>(
        &self,
        text: &str,
        what: &str,
        parse: impl Fn(&str) -> Result<T, petstore_core::Error>,
    ) -> Result<Vec<T>, String> {
        let items: Result<Vec<T>, String> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| parse(s).map_err(|e| e.reason().to_owned()))
            .collect();
        let items = items?;
        if self.regex.is_match(text) {
            Ok(items)
        } else {
            Err(what.to_owned())
        }
    }
}

/// Event types and families: `*`, `pet.*`, ..., `pet.created`, ...
static TYPES: LazyLock<ListSyntax> = LazyLock::new(|| {
    let mut items = vec![r"\*".to_owned()];
    for t in EventType::ALL {
        let family = t.as_str().split('.').next().unwrap_or_default();
        let family = format!("{}\\.\\*", regex::escape(family));
        if !items.contains(&family) {
            items.push(family);
        }
    }
    items.extend(EventType::ALL.iter().map(|t| regex::escape(t.as_str())));
    ListSyntax::new(&items.join("|"))
});

/// Channels: `pets`, `orders`, `inventory`, `chat`, `pets/{id}`, `orders/{id}`, `chat/{room}`.
static CHANNELS: LazyLock<ListSyntax> = LazyLock::new(|| {
    ListSyntax::new(&format!(
        "pets|orders|inventory|chat|pets/{}|orders/{}|chat/{}",
        unanchored(PetId::PATTERN),
        unanchored(OrderId::PATTERN),
        unanchored(ROOM_PATTERN),
    ))
});

/// Comma-separated event types or families.
#[derive(Debug, Clone, Default)]
pub(crate) struct TypeList(Vec<TypePattern>);

impl<'de> Deserialize<'de> for TypeList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TYPES
            .parse(
                &text,
                "must be a comma-separated list of event types or families, e.g. `pet.*,order.created`",
                str::parse,
            )
            .map(TypeList)
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for TypeList {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TypeList".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": TYPES.pattern,
            "examples": ["pet.*,order.created"],
        })
    }
}

/// Comma-separated channels.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChannelList(Vec<Channel>);

impl<'de> Deserialize<'de> for ChannelList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        CHANNELS
            .parse(
                &text,
                "must be a comma-separated list of channels, e.g. `pets,orders`",
                str::parse,
            )
            .map(ChannelList)
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for ChannelList {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ChannelList".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": CHANNELS.pattern,
            "examples": ["orders,pets"],
        })
    }
}

/// Where a poll starts: after a resume token, or after a time (the seed's polling loop
/// sends `Date.now()`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Since {
    /// After this position.
    Token(ResumeToken),
    /// After the events that happened up to this time.
    Time(DateTime<Utc>),
}

/// Epoch milliseconds: what `Date.now()` gives (15 digits reach past the year 30000).
const EPOCH_MILLIS: &str = "[0-9]{1,15}";

/// An RFC 3339 time (`2026-01-31T12:00:00Z`, `...T12:00:00.123+01:00`) on a date that
/// exists: month lengths and leap years are in the pattern, so that a schema-valid
/// time is one the parser takes. Up to 9 fraction digits; no leap second.
const RFC_3339: &str = concat!(
    "(?:",
    "[0-9]{4}-(?:",
    "(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])",
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)",
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))",
    "|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29",
    ")[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:[.][0-9]{1,9})?",
    "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])",
);

/// The three forms of `since`, as one anchored pattern (the parameter's schema).
static SINCE_PATTERN: LazyLock<String> = LazyLock::new(|| {
    let token = ResumeToken::json_schema(&mut SchemaGenerator::default());
    let token = token
        .get("pattern")
        .and_then(|p| p.as_str())
        .map(|p| unanchored(p).to_owned())
        .unwrap_or_else(|| panic!("ResumeToken has a pattern"));
    format!("^(?:{token}|{EPOCH_MILLIS}|{RFC_3339})$")
});

static SINCE_RULE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&SINCE_PATTERN).unwrap_or_else(|e| panic!("since pattern: {e}")));

impl Since {
    /// Reads `text` if the parameter's pattern admits it (so that the document and the
    /// server agree exactly).
    fn parse(text: &str) -> Result<Self, String> {
        let refused = || {
            let hint = if text.contains(' ') {
                " (a `+` in a query string is a space: send it as `%2B`)"
            } else {
                ""
            };
            format!(
                "`{}` is not a resume token, a time in epoch milliseconds or an RFC 3339 time{hint}",
                text.chars().take(64).collect::<String>()
            )
        };
        if !SINCE_RULE.is_match(text) {
            return Err(refused());
        }
        if let Ok(token) = text.parse() {
            return Ok(Since::Token(token));
        }
        let time = if text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse()
                .ok()
                .and_then(DateTime::<Utc>::from_timestamp_millis)
        } else {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        time.map(Since::Time).ok_or_else(refused)
    }

    /// The position to read after.
    async fn position(self, s: &AppState, who: &Principal) -> Result<ResumeToken, Problem> {
        Ok(match self {
            Since::Token(token) => token,
            Since::Time(time) => s.service.position_at(who, time).await?,
        })
    }
}

impl<'de> Deserialize<'de> for Since {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Since::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Since {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Since".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A resume token, a time in milliseconds since 1970-01-01T00:00:00Z (JavaScript's `Date.now()`), or an RFC 3339 time.",
            "pattern": SINCE_PATTERN.as_str(),
            "examples": ["0123456789abcdef-42", "1767225600000", "2026-01-01T00:00:00Z"],
        })
    }
}

/// Query of `GET /v1/events`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
pub(crate) struct EventsQuery {
    /// Where to start: a resume token (the `next` of the previous response, or the
    /// `X-Event-Position` of a read), or a time (epoch milliseconds such as
    /// `Date.now()`, or RFC 3339) for the retained events after it. Without it the feed
    /// starts at the oldest retained event. Malformed is 400; a token from another log
    /// epoch, or a token or time older than the retained log, is 410.
    since: Option<Since>,
    /// At most this many events per response (default 100).
    #[schemars(range(min = 1, max = MAX_EVENT_READ))]
    limit: Option<u32>,
    /// Comma-separated event types or families, e.g. `pet.*,order.created` (default: every type).
    types: Option<TypeList>,
    /// Comma-separated channels: `pets`, `orders`, `inventory`, `chat`, `pets/{id}`,
    /// `orders/{id}`, `chat/{room}` (default: everything the caller may read).
    channels: Option<ChannelList>,
    /// Long polling: when nothing is new, wait up to this many seconds for a first event
    /// (default 0; capped by the server, 30 s unless configured otherwise).
    #[schemars(range(max = u32::MAX))]
    wait: Option<u32>,
}

/// Query of `GET /v1/pets/changes`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
pub(crate) struct PetChangesQuery {
    /// Where to start: a resume token (the `next` of the previous response, or the
    /// `X-Event-Position` of a read), or a time (epoch milliseconds such as
    /// `Date.now()`, or RFC 3339) for the retained events after it. Without it the feed
    /// starts at the oldest retained event. Malformed is 400; a token from another log
    /// epoch, or a token or time older than the retained log, is 410.
    since: Option<Since>,
    /// At most this many events per response (default 100).
    #[schemars(range(min = 1, max = MAX_EVENT_READ))]
    limit: Option<u32>,
    /// Comma-separated pet event types, e.g. `pet.status_changed` (default: every pet event).
    types: Option<TypeList>,
    /// Long polling: when nothing is new, wait up to this many seconds for a first event
    /// (default 0; capped by the server, 30 s unless configured otherwise).
    #[schemars(range(max = u32::MAX))]
    wait: Option<u32>,
}

pub(crate) async fn events(
    State(s): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<EventsQuery>,
) -> Result<Response, Problem> {
    let filter = EventFilter::channels(q.channels.unwrap_or_default().0)
        .with_types(q.types.unwrap_or_default().0);
    feed(&s, &who, q.since, q.limit, filter, q.wait).await
}

pub(crate) async fn pet_changes(
    State(s): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<PetChangesQuery>,
) -> Result<Response, Problem> {
    let filter = EventFilter::channels([Channel::Pets]).with_types(q.types.unwrap_or_default().0);
    feed(&s, &who, q.since, q.limit, filter, q.wait).await
}

async fn feed(
    s: &AppState,
    who: &Principal,
    since: Option<Since>,
    limit: Option<u32>,
    filter: EventFilter,
    wait: Option<u32>,
) -> Result<Response, Problem> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT) as usize;
    let wait = Duration::from_secs(wait.unwrap_or(0).into()).min(s.config.poll_wait_cap());
    let since = match since {
        Some(since) => Some(since.position(s, who).await?),
        None => None,
    };
    // A long poll ends when the server shuts down (the client polls again elsewhere).
    let batch = tokio::select! {
        biased;
        batch = s.service.events(who, since, limit, filter, wait) => batch?,
        () = s.shutdown.cancelled() => {
            return Err(Error::new(ErrorKind::Unavailable, "the server is shutting down; poll again")
                .with_retry_after(Duration::from_secs(1))
                .into());
        }
    };
    let mut response = Json(&batch).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use petstore_core::chrono::{Datelike, Days, NaiveDate, SecondsFormat, TimeZone};

    use super::*;

    /// Every day of leap and common years, written by chrono, matches the pattern and
    /// parses; days that do not exist, and other near misses, match neither.
    #[test]
    fn the_since_pattern_is_the_parser() {
        for year in [0, 1600, 1900, 1999, 2000, 2023, 2024, 9999] {
            let mut day = NaiveDate::from_ymd_opt(year, 1, 1).unwrap();
            while day.year() == year {
                let time = Utc.from_utc_datetime(&day.and_hms_milli_opt(23, 59, 59, 120).unwrap());
                for text in [
                    time.to_rfc3339_opts(SecondsFormat::Secs, true),
                    time.to_rfc3339_opts(SecondsFormat::Nanos, false),
                    time.to_rfc3339_opts(SecondsFormat::Millis, true)
                        .to_lowercase(),
                ] {
                    assert!(SINCE_RULE.is_match(&text), "{text}");
                    assert!(
                        matches!(Since::parse(&text), Ok(Since::Time(t)) if t.timestamp() == time.timestamp()),
                        "{text}"
                    );
                }
                day = day + Days::new(1);
            }
        }
        for text in [
            "0",
            "1767225600000",
            "999999999999999",
            "0123456789abcdef-42",
        ] {
            assert!(Since::parse(text).is_ok(), "{text}");
        }
        for bad in [
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00.1234567890Z",
            "2024-01-01T00:00:00+24:00",
            "1000000000000000",
            "12.5",
            "-1",
            "",
        ] {
            assert!(!SINCE_RULE.is_match(bad), "{bad}");
            assert!(Since::parse(bad).is_err(), "{bad}");
        }
    }
}
