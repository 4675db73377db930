//! Opening a feed of the event log for one connection: resume from the client's token
//! when the log still has it, otherwise say why and go live from the head, with no
//! gap from the position reported to the client.

use petstore_core::{
    Error, ErrorKind, EventFilter, PetStore, Principal, ResumeToken, Subscription,
};

/// Where a client asks to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Since {
    /// From now on.
    Live,
    /// After this position.
    Token(ResumeToken),
    /// Something that is not a resume token (kept, shortened, for the message).
    Invalid(String),
}

impl Since {
    /// An absent or empty value means live.
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        match raw.map(str::trim) {
            None | Some("") => Since::Live,
            Some(raw) => match raw.parse() {
                Ok(token) => Since::Token(token),
                Err(_) => Since::Invalid(raw.chars().take(64).collect()),
            },
        }
    }
}

/// Why a requested resume could not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reset {
    /// `expired`, `epoch_mismatch` or `invalid_token`.
    pub(crate) reason: &'static str,
    /// For humans.
    pub(crate) message: String,
}

/// An open feed.
#[derive(Debug)]
pub(crate) struct Feed {
    /// The events, replay first.
    pub(crate) events: Subscription,
    /// The position the feed starts after: resuming from it later loses nothing.
    pub(crate) position: ResumeToken,
    /// Set when the client's token could not be honoured and the feed is live instead.
    pub(crate) reset: Option<Reset>,
}

/// Subscribes `who` to `filter` from `since`. Authorization errors come back as
/// errors; a token that cannot resume becomes a [`Reset`] and a live feed.
pub(crate) async fn open(
    store: &PetStore,
    who: &Principal,
    since: Since,
    filter: EventFilter,
) -> Result<Feed, Error> {
    let reset = match since {
        Since::Live => None,
        Since::Invalid(raw) => Some(Reset {
            reason: "invalid_token",
            message: format!("`{raw}` is not a resume token of this server"),
        }),
        Since::Token(token) => {
            match store.subscribe(who, Some(token), filter.clone()).await {
                Ok(events) => {
                    return Ok(Feed {
                        events,
                        position: token,
                        reset: None,
                    });
                }
                Err(e) if e.kind() == ErrorKind::ResumeExpired => Some(Reset {
                    reason: if token.epoch == store.head().await?.epoch {
                        "expired"
                    } else {
                        "epoch_mismatch"
                    },
                    message: e.message().to_owned(),
                }),
                // A token ahead of the log: not one this log issued.
                Err(e) if e.kind() == ErrorKind::InvalidInput => Some(Reset {
                    reason: "invalid_token",
                    message: e.message().to_owned(),
                }),
                Err(e) => return Err(e),
            }
        }
    };
    // Live, but from an explicit head token: the position we report is exactly where
    // the feed starts, so a client resuming from it later misses nothing.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let head = store.head().await?;
        match store.subscribe(who, Some(head), filter.clone()).await {
            Ok(events) => {
                return Ok(Feed {
                    events,
                    position: head,
                    reset,
                });
            }
            // Only possible when the retention is tiny and writers are busy: retry
            // from the new head.
            Err(e) if e.kind() == ErrorKind::ResumeExpired && attempts < 3 => continue,
            Err(e) => return Err(e),
        }
    }
}
