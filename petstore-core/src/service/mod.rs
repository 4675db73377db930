//! The `PetStore` service: every command and query of the contract. Each command
//! checks the caller (authentication, then authorization), validates, and commits its
//! state change together with its events. One file per aggregate.

mod accounts;
mod chat;
mod events;
mod follower;
mod orders;
mod page;
mod payments;
mod pets;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::{Principal, Scope, TokenAuthority};
use crate::backend::{Change, Store};
use crate::context::RequestContext;
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Channel, Event, EventFilter, ResumeToken};
use crate::memory::MemoryStore;
use crate::order::Order;

pub use accounts::LoginConfig;
pub use follower::{Followed, Follower};
pub(crate) use page::MAX_LIMIT;
pub use page::Page;
pub use pets::IfMatch;

/// How many times a command is retried when a concurrent writer got there first.
const COMMIT_ATTEMPTS: usize = 5;
/// Maximum events per read of the log.
pub const MAX_EVENT_READ: usize = 1_000;

/// Service settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// When true, pet reads need `pets:read` too (by default they are open to
    /// anonymous callers). Orders, payments and order events always need a token.
    pub require_auth_for_reads: bool,
    /// The CloudEvents `source` of every event.
    pub source: String,
    /// Lifetime of tokens issued by `POST /v1/auth/token`.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// Limits on password checks.
    pub login: LoginConfig,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            require_auth_for_reads: false,
            source: "/petstore".to_owned(),
            token_ttl: Duration::from_secs(3600),
            login: LoginConfig::default(),
        }
    }
}

impl ServiceConfig {
    /// Sets [`ServiceConfig::require_auth_for_reads`].
    pub fn require_auth_for_reads(mut self, yes: bool) -> Self {
        self.require_auth_for_reads = yes;
        self
    }

    /// Sets [`ServiceConfig::source`].
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Sets [`ServiceConfig::login`].
    pub fn login(mut self, login: LoginConfig) -> Self {
        self.login = login;
        self
    }
}

/// The result of placing an order.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// The order.
    pub order: Order,
    /// True when an earlier request with the same idempotency key placed it.
    pub replayed: bool,
}

/// The result of applying a payment provider's notice.
#[derive(Debug, Clone, PartialEq)]
pub struct NoticeOutcome {
    /// The order after the notice.
    pub order: Order,
    /// True when this notice id was applied before (nothing changed this time).
    pub duplicate: bool,
}

/// The Pet Store service over any [`Store`]. Cheap to clone; every adapter holds one.
#[derive(Clone)]
pub struct PetStore {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    auth: TokenAuthority,
    config: ServiceConfig,
    source: Arc<str>,
    /// Who holds this instance's leases.
    instance: String,
    login: accounts::LoginGuard,
}

impl fmt::Debug for PetStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PetStore")
            .field("config", &self.inner.config)
            .field("auth", &self.inner.auth)
            .field("instance", &self.inner.instance)
            .finish_non_exhaustive()
    }
}

impl PetStore {
    /// A service over `store`, issuing and verifying tokens with `auth`.
    pub fn new(store: impl Store, auth: TokenAuthority, config: ServiceConfig) -> Self {
        Self::from_arc(Arc::new(store), auth, config)
    }

    /// Like [`PetStore::new`] for an already shared store.
    pub fn from_arc(store: Arc<dyn Store>, auth: TokenAuthority, config: ServiceConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                auth,
                source: config.source.as_str().into(),
                instance: format!("inst_{}", uuid::Uuid::new_v4().simple()),
                login: accounts::LoginGuard::new(&config.login),
                config,
            }),
        }
    }

    /// An in-memory service with a random token secret and default settings.
    pub fn in_memory() -> Self {
        let config = ServiceConfig::default();
        Self::new(
            MemoryStore::default(),
            TokenAuthority::random(config.token_ttl),
            config,
        )
    }

    /// The settings.
    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    /// The token issuer/verifier.
    pub fn tokens(&self) -> &TokenAuthority {
        &self.inner.auth
    }

    /// This service instance's name among the instances sharing its store (the holder
    /// of its leases).
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    // ----- authentication ---------------------------------------------------------

    /// The principal for an optional bearer token: anonymous without one,
    /// `Unauthenticated` for a bad one.
    pub fn authenticate(&self, bearer_token: Option<&str>) -> Result<Principal> {
        match bearer_token {
            None => Ok(Principal::anonymous()),
            Some(token) => self.inner.auth.verify(token),
        }
    }

    /// The principal for an optional `Authorization` header value (`Bearer <jwt>`).
    pub fn authenticate_header(&self, header: Option<&str>) -> Result<Principal> {
        match header {
            None => Ok(Principal::anonymous()),
            Some(h) => self.inner.auth.verify_bearer(h),
        }
    }

    // ----- authorization ----------------------------------------------------------

    /// Checks a read scope. While reads are open (not
    /// [`ServiceConfig::require_auth_for_reads`]) anyone, even anonymous, may read
    /// pets; orders and payments always need `orders:read`.
    pub fn authorize_read(&self, who: &Principal, scope: Scope) -> Result<()> {
        if scope == Scope::PetsRead && !self.inner.config.require_auth_for_reads {
            return Ok(());
        }
        who.require(scope)
    }

    /// Checks that `who` may follow `channel`: the channel's read scope, for chat any
    /// authenticated principal, and for one order its customer or an admin (anyone
    /// else is told the order does not exist).
    pub async fn authorize_channel(&self, who: &Principal, channel: &Channel) -> Result<()> {
        match channel.read_scope() {
            Some(scope) => self.authorize_read(who, scope)?,
            None if who.is_authenticated() => {}
            None => {
                return Err(Error::new(
                    ErrorKind::Unauthenticated,
                    format!("channel `{channel}` needs a token"),
                ));
            }
        }
        if let Channel::Order(id) = channel {
            self.visible_order(who, id).await?;
        }
        Ok(())
    }

    /// Whether `who` may see `order`: its customer or an admin.
    fn may_see(who: &Principal, order: &Order) -> bool {
        who.has(Scope::Admin) || who.subject() == Some(order.customer.as_str())
    }

    /// `filter` narrowed to what `who` may read: without channels, every channel the
    /// caller may read; for a reader who is not an admin, only their own orders.
    async fn readable_filter(
        &self,
        who: &Principal,
        mut filter: EventFilter,
    ) -> Result<EventFilter> {
        if filter.channels.is_empty() {
            let mut readable = Vec::new();
            for channel in [Channel::Pets, Channel::Orders, Channel::Chat] {
                if self.authorize_channel(who, &channel).await.is_ok() {
                    readable.push(channel);
                }
            }
            if readable.is_empty() {
                return Err(who.require(Scope::PetsRead).unwrap_err());
            }
            filter.channels = readable;
        } else {
            for channel in &filter.channels {
                self.authorize_channel(who, channel).await?;
            }
        }
        if !who.has(Scope::Admin) {
            filter = filter.only_customer(who.subject().unwrap_or_default());
        }
        Ok(filter)
    }

    // ----- commits ----------------------------------------------------------------

    /// Commits `change`, its events carrying the trace context of the request.
    async fn commit(&self, mut change: Change) -> Result<Vec<Arc<Event>>> {
        if let Some(trace) = RequestContext::current().traceparent() {
            for event in &mut change.events {
                event.traceparent = Some(trace.clone());
            }
        }
        let events = self.store().commit(change, &self.inner.source).await?;
        // The head gauge is the fan-out's, which sees every instance's events.
        if !events.is_empty() {
            metrics::counter!(crate::telemetry::LOG_EVENTS_TOTAL).increment(events.len() as u64);
        }
        Ok(events)
    }

    /// Runs `attempt` until it commits without a concurrent-write conflict.
    async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Err(e) if e.is_stale_write() && tries < COMMIT_ATTEMPTS => continue,
                other => return other,
            }
        }
    }

    // ----- leases -----------------------------------------------------------------

    /// Acquires or renews this instance's lease `name` for `ttl` (see
    /// [`Store::acquire_lease`]); `true` while this instance holds it. Work that must
    /// happen once among the instances sharing the store runs only while it holds the
    /// lease, renewing it well within `ttl`.
    pub async fn hold_lease(&self, name: &str, ttl: Duration) -> Result<bool> {
        self.store()
            .acquire_lease(name, &self.inner.instance, ttl)
            .await
    }

    /// Gives up this instance's lease `name`, so another instance can take it at once.
    pub async fn release_lease(&self, name: &str) -> Result<()> {
        self.store().release_lease(name, &self.inner.instance).await
    }

    /// The log position just before the first event, for a reader that starts from
    /// the oldest retained event.
    async fn oldest_position(&self) -> Result<ResumeToken> {
        let first = self.store().read(None, 1, &EventFilter::all()).await?;
        Ok(match first.events.first() {
            Some(e) => ResumeToken::new(e.offset().epoch, e.offset().offset - 1),
            None => first.next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command is retried after a stale write, at most `COMMIT_ATTEMPTS` times in
    /// all; any other error ends it at once.
    #[tokio::test]
    async fn only_stale_writes_are_retried_and_only_so_often() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let service = PetStore::in_memory();
        let calls = &AtomicUsize::new(0);
        let run = |stale_until: usize, other: bool| {
            calls.store(0, Ordering::SeqCst);
            service.retrying(move || {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if other {
                        Err(Error::new(ErrorKind::Unavailable, "down"))
                    } else if n <= stale_until {
                        Err(Error::stale_write("pet"))
                    } else {
                        Ok(n)
                    }
                }
            })
        };
        assert_eq!(run(2, false).await.unwrap(), 3);
        assert_eq!(
            run(COMMIT_ATTEMPTS - 1, false).await.unwrap(),
            COMMIT_ATTEMPTS
        );
        // Stale every time until the tenth try: given up after the fifth.
        let err = run(2 * COMMIT_ATTEMPTS, false).await.unwrap_err();
        assert!(err.is_stale_write(), "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), COMMIT_ATTEMPTS);
        let err = run(0, true).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    /// The service keeps the settings it was given; its Debug shows them and its
    /// token authority (which prints no secret).
    #[test]
    fn the_service_keeps_and_shows_its_settings() {
        let config = ServiceConfig::default().source("/elsewhere");
        let auth = TokenAuthority::random(config.token_ttl);
        let service = PetStore::new(MemoryStore::default(), auth, config.clone());
        assert_eq!(service.config(), &config);
        let debug = format!("{service:?}");
        let start = "PetStore { config: ServiceConfig { require_auth_for_reads: false, \
                     source: \"/elsewhere\", token_ttl: 3600s,";
        assert!(debug.starts_with(start), "{debug}");
        assert!(
            debug.contains("auth: TokenAuthority { ttl: 3600s"),
            "{debug}"
        );
        let instance = format!("instance: \"{}\", .. }}", service.instance());
        assert!(debug.ends_with(&instance), "{debug}");
    }

    /// A lease another instance holds is not this instance's until released.
    #[tokio::test]
    async fn a_lease_held_by_another_instance_is_not_held() {
        let service = PetStore::in_memory();
        assert!(
            service.instance().starts_with("inst_"),
            "{}",
            service.instance()
        );
        assert_ne!(service.instance(), PetStore::in_memory().instance());
        let ttl = Duration::from_secs(60);
        assert!(
            service
                .store()
                .acquire_lease("dispatch", "inst_other", ttl)
                .await
                .unwrap()
        );
        assert!(!service.hold_lease("dispatch", ttl).await.unwrap());
        service
            .store()
            .release_lease("dispatch", "inst_other")
            .await
            .unwrap();
        assert!(service.hold_lease("dispatch", ttl).await.unwrap());
        assert!(
            service.hold_lease("dispatch", ttl).await.unwrap(),
            "renewed"
        );
        service.release_lease("dispatch").await.unwrap();
        assert!(
            service
                .store()
                .acquire_lease("dispatch", "inst_other", ttl)
                .await
                .unwrap(),
            "released"
        );
    }
}
