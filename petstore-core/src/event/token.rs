//! Positions in the event log: resume tokens, and why one cannot be honoured.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// A position in the event log: the log's generation (`epoch`) and the offset of the
/// last event seen. Its string form is the opaque resume token used by SSE ids,
/// WebSocket `since`, MQTT user properties, webhook replays, polling cursors and
/// GraphQL/gRPC subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResumeToken {
    /// The log generation; a token from another epoch cannot resume.
    pub epoch: u64,
    /// The offset of the last event the holder has seen (0: none).
    pub offset: u64,
}

impl ResumeToken {
    /// A token at `offset` of `epoch`.
    pub const fn new(epoch: u64, offset: u64) -> Self {
        Self { epoch, offset }
    }
}

impl fmt::Display for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.epoch, self.offset)
    }
}

impl FromStr for ResumeToken {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid_field(
                "since",
                format!("`{}` is not a resume token", truncate(s, 64)),
            )
        };
        let (epoch, offset) = s.split_once('-').ok_or_else(bad)?;
        // Exactly the schema's pattern: lower-case hex, then at most 19 digits (no sign;
        // `u64` holds every such offset).
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if epoch.len() != 16
            || !epoch.bytes().all(hex)
            || !(1..=19).contains(&offset.len())
            || !offset.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        Ok(Self {
            epoch: u64::from_str_radix(epoch, 16).map_err(|_| bad())?,
            offset: offset.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for ResumeToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResumeToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|e: Error| serde::de::Error::custom(e.reason()))
    }
}

impl JsonSchema for ResumeToken {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ResumeToken".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "Opaque resume token: a position in the event log.",
            "pattern": "^[0-9a-f]{16}-[0-9]{1,19}$"
        })
    }
}

/// Why a resume token cannot be honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResetReason {
    /// The token is from another log generation (e.g. the server restarted).
    EpochMismatch,
    /// The events after the token are no longer retained.
    Expired,
}

impl ResetReason {
    /// The wire name (`epoch_mismatch`, `expired`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ResetReason::EpochMismatch => "epoch_mismatch",
            ResetReason::Expired => "expired",
        }
    }

    /// The error a reader of `token` gets; [`Error::reset_reason`] gives `self` back.
    pub fn into_error(self, token: ResumeToken) -> Error {
        let msg = match self {
            ResetReason::EpochMismatch => {
                format!(
                    "resume token `{token}` is from another log epoch: reload, then resume from the new position"
                )
            }
            ResetReason::Expired => {
                format!(
                    "resume token `{token}` is older than the retained log: reload, then resume from the new position"
                )
            }
        };
        Error::new(ErrorKind::ResumeExpired, msg).with_source(Reset(self))
    }

    /// The error a reader asking for the events after `time` gets when retention has
    /// dropped some of them.
    pub fn into_error_at_time(self, time: chrono::DateTime<chrono::Utc>) -> Error {
        Error::new(
            ErrorKind::ResumeExpired,
            format!(
                "`{}` is older than the retained log: reload, then resume from the new position",
                time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ),
        )
        .with_source(Reset(self))
    }
}

impl fmt::Display for ResetReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The source of a [`ErrorKind::ResumeExpired`] error: why the reader must reload.
#[derive(Debug)]
struct Reset(ResetReason);

impl fmt::Display for Reset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reset: {}", self.0)
    }
}

impl std::error::Error for Reset {}

impl Error {
    /// Why a [`ErrorKind::ResumeExpired`] error's reader must reload.
    pub fn reset_reason(&self) -> Option<ResetReason> {
        std::error::Error::source(self)
            .and_then(|s| s.downcast_ref::<Reset>())
            .map(|r| r.0)
    }
}

/// At most `max` characters of `s`, for echoing client input in messages.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_reasons_print_as_their_wire_names() {
        for (reason, name) in [
            (ResetReason::Expired, "expired"),
            (ResetReason::EpochMismatch, "epoch_mismatch"),
        ] {
            assert_eq!(reason.as_str(), name);
            assert_eq!(reason.to_string(), name);
            assert_eq!(serde_json::to_value(reason).unwrap(), name);
        }
    }

    /// The error's source says why the reader must reload.
    #[test]
    fn a_reset_error_names_its_reason_in_its_source() {
        let err = ResetReason::EpochMismatch.into_error(ResumeToken::new(1, 2));
        assert_eq!(err.reset_reason(), Some(ResetReason::EpochMismatch));
        let source = std::error::Error::source(&err).unwrap();
        assert_eq!(source.to_string(), "reset: epoch_mismatch");
    }

    /// The schema of a token is the string pattern the parser enforces.
    #[test]
    fn the_token_schema_is_its_string_pattern() {
        let schema = schemars::schema_for!(ResumeToken);
        assert_eq!(schema.get("type").unwrap(), "string");
        assert_eq!(schema.get("pattern").unwrap(), "^[0-9a-f]{16}-[0-9]{1,19}$");
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate("héllo wörld", 4), "héll");
        assert_eq!(truncate("ab", 5), "ab");
        assert_eq!(truncate("", 3), "");
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let t = ResumeToken::new(0xdead_beef, 42);
        assert_eq!(t.to_string(), "00000000deadbeef-42");
        assert_eq!(t.to_string().parse::<ResumeToken>().unwrap(), t);
        for bad in [
            "",
            "42",
            "xyz-1",
            "00000000deadbeef-",
            "00000000deadbeef--1",
            "00000000deadbeef-1a",
            "+0000000deadbeef-1",
            "00000000DEADBEEF-1",
            "00000000deadbeef-+1",
            "00000000deadbeef-10000000000000000000",
        ] {
            assert!(bad.parse::<ResumeToken>().is_err(), "{bad}");
        }
    }
}
