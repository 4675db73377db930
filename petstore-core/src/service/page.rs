//! Cursor pagination of listings: the cursor of a page is the id of its last item.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::backend::Snapshot;
use crate::error::{Error, Result};
use crate::event::ResumeToken;
use crate::id::{OrderId, PetId};
use crate::order::Order;
use crate::pet::Pet;

/// Default and maximum page sizes (the `limit` of `PetQuery` / `OrderQuery`).
const DEFAULT_LIMIT: u32 = 20;
pub(crate) const MAX_LIMIT: u32 = 100;

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Page<T> {
    /// The items.
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// The event-log position this page reflects: subscribe from it to catch up.
    #[serde(skip)]
    #[schemars(skip)]
    pub position: Option<ResumeToken>,
}

/// Something listed by id.
pub(super) trait Keyed {
    type Id: std::str::FromStr;
    fn key(&self) -> &str;
}

impl Keyed for Pet {
    type Id = PetId;
    fn key(&self) -> &str {
        self.id.as_str()
    }
}

impl Keyed for Order {
    type Id = OrderId;
    fn key(&self) -> &str {
        self.id.as_str()
    }
}

/// The cursor is the id itself: ids sort by creation, so any well-formed id (the
/// schema's `cursor` pattern) is a position to continue after.
fn encode_cursor(id: &str) -> String {
    id.to_owned()
}

fn decode_cursor<T: std::str::FromStr>(cursor: &str) -> Result<T> {
    cursor
        .parse()
        .map_err(|_| Error::invalid_field("cursor", "not a cursor returned by this API"))
}

fn page_limit(limit: Option<u32>) -> Result<usize> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n as usize),
        _ => Err(Error::invalid_field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

/// One page: validates the limit, decodes the cursor, fetches one item more than the
/// limit to learn whether a next page exists.
pub(super) async fn paginate<T, F, Fut>(
    limit: Option<u32>,
    cursor: Option<&str>,
    fetch: F,
) -> Result<Page<T>>
where
    T: Keyed,
    F: FnOnce(Option<T::Id>, usize) -> Fut,
    Fut: Future<Output = Result<Snapshot<Vec<T>>>>,
{
    let limit = page_limit(limit)?;
    let after = cursor.map(decode_cursor::<T::Id>).transpose()?;
    let Snapshot {
        mut items,
        position,
    } = fetch(after, limit + 1).await?;
    let next_cursor = (items.len() > limit).then(|| {
        items.truncate(limit);
        encode_cursor(items[limit - 1].key())
    });
    Ok(Page {
        data: items,
        next_cursor,
        position: Some(position),
    })
}
