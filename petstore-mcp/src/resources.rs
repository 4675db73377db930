//! Resources (`petstore://pets/{id}`, `petstore://orders/{id}`, `petstore://inventory`)
//! and the feed of their changes, read from the event log.

use std::fmt;

use petstore_core::{
    Channel, Event, EventFilter, EventType, Followed, Follower, OrderId, Pet, PetId, PetQuery,
    PetStore, Principal, ResumeToken, Scope,
};
use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate,
};

const JSON: &str = "application/json";
const INVENTORY: &str = "petstore://inventory";
const PETS: &str = "petstore://pets/";
const ORDERS: &str = "petstore://orders/";
/// Pets per page of `resources/list`.
const LIST_PAGE: u32 = 100;

/// A resource this server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResourceUri {
    Inventory,
    Pet(PetId),
    Order(OrderId),
}

impl ResourceUri {
    /// The resource a URI names; `None` for anything else (including a malformed id).
    pub(crate) fn parse(uri: &str) -> Option<Self> {
        if uri == INVENTORY {
            Some(Self::Inventory)
        } else if let Some(id) = uri.strip_prefix(PETS) {
            id.parse().ok().map(Self::Pet)
        } else if let Some(id) = uri.strip_prefix(ORDERS) {
            id.parse().ok().map(Self::Order)
        } else {
            None
        }
    }

    /// The resource of a channel an event is published on, if it is one.
    fn of_channel(channel: &Channel) -> Option<String> {
        match channel {
            Channel::Inventory => Some(INVENTORY.to_owned()),
            Channel::Pet(id) => Some(format!("{PETS}{id}")),
            Channel::Order(id) => Some(format!("{ORDERS}{id}")),
            _ => None,
        }
    }

    fn read_scope(&self) -> Scope {
        match self {
            Self::Inventory | Self::Pet(_) => Scope::PetsRead,
            Self::Order(_) => Scope::OrdersRead,
        }
    }

    /// Whether `who` may read this kind of resource (not whether it exists).
    pub(crate) fn readable_by(&self, store: &PetStore, who: &Principal) -> bool {
        store.authorize_read(who, self.read_scope()).is_ok()
    }

    /// Reads the resource as `who`: its JSON document.
    pub(crate) async fn read(
        &self,
        store: &PetStore,
        who: &Principal,
    ) -> petstore_core::Result<ReadResourceResult> {
        let value = match self {
            Self::Inventory => serde_json::to_value(store.inventory(who).await?.items),
            Self::Pet(id) => serde_json::to_value(store.pet(who, id).await?),
            Self::Order(id) => serde_json::to_value(store.order(who, id).await?),
        }
        .map_err(petstore_core::Error::internal)?;
        let text = serde_json::to_string_pretty(&value).map_err(petstore_core::Error::internal)?;
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(text, self.to_string()).with_mime_type(JSON),
        ]))
    }
}

impl fmt::Display for ResourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inventory => f.write_str(INVENTORY),
            Self::Pet(id) => write!(f, "{PETS}{id}"),
            Self::Order(id) => write!(f, "{ORDERS}{id}"),
        }
    }
}

fn pet_resource(pet: &Pet) -> Resource {
    Resource::new(format!("{PETS}{}", pet.id), pet.id.as_str())
        .with_title(format!("{} the {} ({})", pet.name, pet.species, pet.status))
        .with_description(format!(
            "Pet `{}`: {} {}, {}.",
            pet.id,
            pet.name,
            pet.breed.as_deref().unwrap_or(&pet.species),
            pet.price
        ))
        .with_mime_type(JSON)
}

/// `resources/list`: the inventory, then every pet, a page at a time (the cursor is
/// the catalogue's own).
pub(crate) async fn list(
    store: &PetStore,
    who: &Principal,
    cursor: Option<String>,
) -> petstore_core::Result<ListResourcesResult> {
    let first = cursor.is_none();
    let mut query = PetQuery::default().limit(LIST_PAGE);
    if let Some(cursor) = cursor {
        query = query.cursor(cursor);
    }
    let page = store.pets(who, &query).await?;
    let mut resources = Vec::with_capacity(page.data.len() + 1);
    if first {
        resources.push(
            Resource::new(INVENTORY, "inventory")
                .with_title("Inventory")
                .with_description("How many pets are available, pending and sold.")
                .with_mime_type(JSON),
        );
    }
    resources.extend(page.data.iter().map(pet_resource));
    let mut result = ListResourcesResult::with_all_items(resources);
    result.next_cursor = page.next_cursor;
    Ok(result)
}

/// `resources/templates/list`.
pub(crate) fn templates() -> ListResourceTemplatesResult {
    ListResourceTemplatesResult::with_all_items(vec![
        ResourceTemplate::new(format!("{PETS}{{id}}"), "pet")
            .with_title("A pet")
            .with_description("One pet of the catalogue as JSON; `id` is a pet id (`pet_…`).")
            .with_mime_type(JSON),
        ResourceTemplate::new(format!("{ORDERS}{{id}}"), "order")
            .with_title("An order")
            .with_description("One order as JSON; `id` is an order id (`ord_…`).")
            .with_mime_type(JSON),
    ])
}

/// What one step of the event log changed, as resource notifications.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// The resources whose content changed; `None` after a gap in the feed, when any
    /// resource may have changed.
    pub(crate) uris: Option<Vec<String>>,
    /// Whether the resource list changed (a pet was added or removed).
    pub(crate) list_changed: bool,
}

impl Changes {
    fn of(event: &Event) -> Self {
        Self {
            uris: Some(
                event
                    .channels()
                    .iter()
                    .filter_map(ResourceUri::of_channel)
                    .collect(),
            ),
            list_changed: matches!(
                event.event_type(),
                EventType::PetCreated | EventType::PetDeleted
            ),
        }
    }

    fn everything() -> Self {
        Self {
            uris: None,
            list_changed: true,
        }
    }

    /// Whether `uri` may have changed.
    pub(crate) fn touches(&self, uri: &str) -> bool {
        self.uris
            .as_ref()
            .is_none_or(|uris| uris.iter().any(|u| u == uri))
    }
}

/// Follows the event log for resource changes. Change notifications carry no data, so
/// the feed reads the log as an internal reader; whether a client may hear about a
/// resource is checked when it subscribes.
pub(crate) struct ResourceFeed {
    follower: Follower,
}

impl fmt::Debug for ResourceFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceFeed")
            .field("position", &self.follower.position())
            .finish_non_exhaustive()
    }
}

/// The log head when a `subscriptions/listen` request reached the MCP router (a
/// request extension). rmcp acknowledges the subscription before it calls the handler,
/// so a feed started by the handler "from now" would miss a change the client commits
/// right after the acknowledgement; the feed starts from here instead
/// ([`ResourceFeed::after`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListenFrom(pub(crate) ResumeToken);

impl ResourceFeed {
    /// Follows the live log from now on: every change committed after this returns is
    /// reported.
    pub(crate) async fn start(store: PetStore) -> petstore_core::Result<Self> {
        let filter = EventFilter::channels([Channel::Pets, Channel::Orders]);
        Ok(Self {
            follower: store.follow(Self::reader(), filter, None).await?,
        })
    }

    /// Follows the log after `position`: every change committed after it is reported.
    pub(crate) async fn after(
        store: PetStore,
        position: ResumeToken,
    ) -> petstore_core::Result<Self> {
        let filter = EventFilter::channels([Channel::Pets, Channel::Orders]);
        Ok(Self {
            follower: store.follow(Self::reader(), filter, Some(position)).await?,
        })
    }

    /// The feed reads the log as an internal reader (see the type's documentation).
    fn reader() -> Principal {
        Principal::system("petstore-mcp")
    }

    /// The next change. A lag loses nothing (the follower re-reads); when the log no
    /// longer held the feed's position, anything may have changed. `None` when the log
    /// cannot be followed any more.
    pub(crate) async fn next(&mut self) -> Option<Changes> {
        match self.follower.next().await {
            Ok(Followed::Event(event)) => Some(Changes::of(&event)),
            Ok(_) => Some(Changes::everything()),
            Err(e) => {
                tracing::warn!(error = %e, "MCP resource feed failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change committed after a `subscriptions/listen` request arrived, but before its
    /// feed started (rmcp acknowledges first), is reported; a feed started "from now"
    /// would not see it.
    #[tokio::test]
    async fn a_feed_since_the_arrival_sees_a_change_made_before_it_started() {
        let store = PetStore::in_memory();
        let system = Principal::system("test");
        let arrived = store.head().await.unwrap();
        let pet = petstore_core::seed::sample_pets().remove(0);
        let pet = store.create_pet(&system, pet).await.unwrap();

        let mut since = ResourceFeed::after(store.clone(), arrived).await.unwrap();
        let mut now = ResourceFeed::start(store.clone()).await.unwrap();
        let changes = tokio::time::timeout(std::time::Duration::from_secs(10), since.next())
            .await
            .expect("the change made before the feed started")
            .expect("a change");
        assert!(changes.list_changed);
        assert!(changes.touches(&format!("{PETS}{}", pet.id)));
        // The feed from now reports only what comes next.
        let later = petstore_core::seed::sample_pets().remove(1);
        let later = store.create_pet(&system, later).await.unwrap();
        let changes = tokio::time::timeout(std::time::Duration::from_secs(10), now.next())
            .await
            .expect("the next change")
            .expect("a change");
        assert!(changes.touches(&format!("{PETS}{}", later.id)));
        assert!(!changes.touches(&format!("{PETS}{}", pet.id)));
    }
}
