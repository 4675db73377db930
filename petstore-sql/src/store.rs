//! [`SqlStore`]: connecting, and the `Store` / `EventLog` implementations.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use petstore_core::backend::{Change, EventLog, Fanout, IdempotencyRecord, Snapshot, Store};
use petstore_core::{
    Error, ErrorKind, Event, EventBatch, EventFilter, Inventory, LogConfig, Order, OrderId,
    OrderQuery, Payment, PaymentId, Pet, PetId, PetQuery, ResetReason, Result, ResumeToken,
    Subscription, User, telemetry,
};
use sqlx::any::AnyPoolOptions;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::dialect::Dialect;
use crate::error::db_error;
use crate::follow;
use crate::outbox::{self, PAGE};
use crate::state;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Connection settings beyond the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqlOptions {
    /// Pooled connections (readers, writers and the log follower share them).
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before `Unavailable`.
    pub acquire_timeout: Duration,
    /// How often the log follower looks for new events without being woken: the
    /// safety net for a lost notification.
    pub poll_interval: Duration,
}

impl Default for SqlOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl SqlOptions {
    /// Sets [`SqlOptions::max_connections`].
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(2);
        self
    }

    /// Sets [`SqlOptions::acquire_timeout`].
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Sets [`SqlOptions::poll_interval`].
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(10));
        self
    }
}

/// A [`Store`] and [`EventLog`] on SQLite (one process) or PostgreSQL (any number of
/// instances sharing one database and one event log). Cheap to clone; the background
/// tasks stop when the last clone is dropped or [`SqlStore::close`] is called.
#[derive(Clone)]
pub struct SqlStore {
    shared: Arc<Shared>,
    tasks: Arc<Tasks>,
    /// The SQLite committer's queue (`None` on PostgreSQL, where each commit runs in
    /// the caller's task).
    committer: Option<mpsc::Sender<Queued>>,
}

/// What the store, its background tasks and its subscriptions share.
pub(crate) struct Shared {
    pub(crate) pool: AnyPool,
    pub(crate) dialect: Dialect,
    pub(crate) config: LogConfig,
    /// The log's epoch, fixed when the database was first opened.
    pub(crate) epoch: u64,
    /// This process's live feed; `None` once the store is closed. Replaced when the
    /// follower falls out of retention (the subscriptions of the old one end).
    fanout: std::sync::RwLock<Option<Arc<Fanout>>>,
    /// Wakes the follower.
    pub(crate) wake: Arc<Notify>,
    /// SQLite has one writer at a time; queueing writers here instead of in SQLite's
    /// busy handler (which sleeps and retries) keeps commit latency even.
    writer: tokio::sync::Mutex<()>,
}

impl Shared {
    /// The live feed, unless the store is closed.
    pub(crate) fn fanout(&self) -> Option<Arc<Fanout>> {
        self.fanout
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Ends every live subscription and starts a new feed after `published`.
    pub(crate) fn restart_fanout(&self, published: u64) -> Option<Arc<Fanout>> {
        let mut fanout = self.fanout.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = fanout.as_ref() {
            // Its subscribers get `Lagged` when the last reference to it goes.
            old.interrupt();
            *fanout = Some(Arc::new(Fanout::new(
                self.token(published),
                self.config.subscriber_buffer,
            )));
        }
        fanout.clone()
    }

    /// Ends every live subscription for good.
    fn close_fanout(&self) {
        *self.fanout.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) async fn conn(&self) -> Result<PoolConnection<Any>> {
        self.pool.acquire().await.map_err(db_error)
    }

    /// Opens a writing transaction: on SQLite after queueing behind this process's
    /// other writers (the guard, held until the transaction ends).
    pub(crate) async fn begin_write(&self) -> Result<WriteTx<'_>> {
        let guard = match self.dialect {
            Dialect::Sqlite => Some(self.writer.lock().await),
            Dialect::Postgres => None,
        };
        let tx = self
            .pool
            .begin_with(self.dialect.begin_write())
            .await
            .map_err(db_error)?;
        Ok(WriteTx { tx, _guard: guard })
    }

    /// Records one writing transaction that started at `started` and the outcome of
    /// each change it carried.
    fn record_transaction<T>(&self, started: Instant, outcomes: &[Result<T>]) {
        let backend = self.dialect.label();
        metrics::histogram!(telemetry::DB_COMMIT_DURATION_SECONDS, "backend" => backend)
            .record(started.elapsed().as_secs_f64());
        for outcome in outcomes {
            let outcome = match outcome {
                Ok(_) => "ok",
                Err(e) if e.is_stale_write() => "stale",
                Err(_) => "error",
            };
            metrics::counter!(telemetry::DB_COMMITS_TOTAL, "backend" => backend, "outcome" => outcome)
                .increment(1);
        }
        metrics::gauge!(telemetry::DB_POOL_CONNECTIONS, "backend" => backend, "state" => "open")
            .set(f64::from(self.pool.size()));
        metrics::gauge!(telemetry::DB_POOL_CONNECTIONS, "backend" => backend, "state" => "idle")
            .set(self.pool.num_idle() as f64);
    }

    fn token(&self, offset: u64) -> ResumeToken {
        ResumeToken::new(self.epoch, offset)
    }

    /// The offset after which a reader starts: `since` if it may resume, else the
    /// error the in-memory log gives for it. `None` starts at `default`.
    fn start(&self, since: Option<ResumeToken>, head: u64, default: u64) -> Result<u64> {
        let Some(since) = since else {
            return Ok(default);
        };
        if since.epoch != self.epoch {
            return Err(ResetReason::EpochMismatch.into_error(since));
        }
        if since.offset > head {
            return Err(Error::invalid_field(
                "since",
                format!("resume token `{since}` is ahead of the log (head is {head})"),
            ));
        }
        if since.offset < self.oldest_resumable(head) {
            return Err(ResetReason::Expired.into_error(since));
        }
        Ok(since.offset)
    }

    /// The oldest offset a reader may resume after: the retained window is the newest
    /// `retention` events, whatever the table still holds before deletion catches up.
    fn oldest_resumable(&self, head: u64) -> u64 {
        head.saturating_sub(self.config.retention as u64)
    }
}

/// A writing transaction and, on SQLite, this process's writer turn.
pub(crate) struct WriteTx<'a> {
    pub(crate) tx: sqlx::Transaction<'static, Any>,
    _guard: Option<tokio::sync::MutexGuard<'a, ()>>,
}

/// Stops the background tasks with the last clone of the store.
struct Tasks {
    cancel: CancellationToken,
    shared: Arc<Shared>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.shared.close_fanout();
    }
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it may carry a password.
        f.debug_struct("SqlStore")
            .field("dialect", &self.shared.dialect)
            .field("epoch", &format_args!("{:016x}", self.shared.epoch))
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Connects to `url` (`sqlite://PATH`, the file created if missing, or
    /// `postgres://...`), runs the embedded migrations and starts following the log.
    /// Needs a Tokio runtime.
    pub async fn connect(url: &str, config: LogConfig) -> Result<Self> {
        Self::connect_with(url, config, SqlOptions::default()).await
    }

    /// Like [`SqlStore::connect`] with explicit [`SqlOptions`].
    pub async fn connect_with(url: &str, config: LogConfig, options: SqlOptions) -> Result<Self> {
        let dialect = Dialect::from_url(url)?;
        // sqlx's `Any` driver registry is process-wide; this is the call applications
        // that use `Any` themselves make too, so the order of the calls does not matter.
        sqlx::any::install_default_drivers();
        let url = match dialect {
            Dialect::Sqlite => prepare_sqlite(url).await?,
            Dialect::Postgres => url.to_owned(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(options.acquire_timeout)
            // No ping before each use (a round trip per request): a broken connection
            // fails its query (`Unavailable`) and the pool replaces it.
            .test_before_acquire(false)
            .connect(&url)
            .await
            .map_err(db_error)?;
        let migrations = match dialect {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrations.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => db_error(e),
            // The database's schema is not one this code wrote (a newer release, or
            // an edited migration): nothing to retry.
            other => Error::new(
                ErrorKind::Internal,
                format!("the database schema does not match this petstore-sql: {other}"),
            ),
        })?;
        let (epoch, head) = {
            let mut conn = pool.acquire().await.map_err(db_error)?;
            outbox::init(&mut conn).await?
        };

        let shared = Arc::new(Shared {
            pool,
            dialect,
            fanout: std::sync::RwLock::new(Some(Arc::new(Fanout::new(
                ResumeToken::new(epoch, head),
                config.subscriber_buffer,
            )))),
            config,
            epoch,
            wake: Arc::new(Notify::new()),
            writer: tokio::sync::Mutex::new(()),
        });
        let cancel = CancellationToken::new();
        tokio::spawn(follow::run_follower(
            shared.clone(),
            options.poll_interval,
            cancel.clone(),
        ));
        let committer = match dialect {
            Dialect::Postgres => {
                tokio::spawn(follow::run_listener(
                    url,
                    shared.wake.clone(),
                    cancel.clone(),
                ));
                None
            }
            Dialect::Sqlite => {
                let (queue, queued) = mpsc::channel(4 * MAX_GROUP);
                tokio::spawn(run_committer(shared.clone(), queued, cancel.clone()));
                Some(queue)
            }
        };
        Ok(Self {
            committer,
            tasks: Arc::new(Tasks {
                cancel,
                shared: shared.clone(),
            }),
            shared,
        })
    }

    /// The position saved as `name` by [`SqlStore::save_cursor`], if any: where work
    /// that follows the log once per cluster (under a lease) goes on after a failover.
    pub async fn cursor(&self, name: &str) -> Result<Option<ResumeToken>> {
        crate::lease::cursor(&self.shared, name).await
    }

    /// Saves `position` as `name` (never moving it back within an epoch).
    pub async fn save_cursor(&self, name: &str, position: ResumeToken) -> Result<()> {
        crate::lease::save_cursor(&self.shared, name, position).await
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.shared.dialect
    }

    /// Stops following the log (open subscriptions end) and closes the connections.
    pub async fn close(&self) {
        self.tasks.cancel.cancel();
        self.shared.close_fanout();
        self.shared.pool.close().await;
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    async fn conn(&self) -> Result<PoolConnection<Any>> {
        self.shared.conn().await
    }

    /// Opens a read transaction (one snapshot for all its statements) and reads the
    /// log position in it; what the caller reads next in it matches that position.
    async fn begin_snapshot(&self) -> Result<(sqlx::Transaction<'static, Any>, ResumeToken)> {
        let mut tx = self
            .shared
            .pool
            .begin_with(self.shared.dialect.begin_read())
            .await
            .map_err(db_error)?;
        let head = outbox::head(&mut tx).await?;
        Ok((tx, self.shared.token(head)))
    }
}

async fn finish<T>(
    tx: sqlx::Transaction<'static, Any>,
    items: T,
    position: ResumeToken,
) -> Result<Snapshot<T>> {
    tx.commit().await.map_err(db_error)?;
    Ok(Snapshot { items, position })
}

/// Creates the database file (and its folder) if missing and switches it to WAL, in
/// which readers never block the writer. Returns the URL for the pool.
async fn prepare_sqlite(url: &str) -> Result<String> {
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(|e| Error::invalid_field("database_url", format!("not a SQLite URL: {e}")))?;
    let path = options.get_filename();
    let named = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if named.is_empty() || named == ":memory:" || url.contains("mode=memory") {
        return Err(Error::invalid_field(
            "database_url",
            "an in-memory SQLite database is not supported (each pooled connection would get its own); use a file, or the in-memory store",
        ));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot create the database folder `{}`", dir.display()),
            )
            .with_source(e)
        })?;
    }
    let url = if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    let mut conn = AnyConnection::connect(&url).await.map_err(db_error)?;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
        .fetch_one(&mut conn)
        .await
        .map_err(db_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "SQLite did not switch to WAL mode");
    }
    conn.close().await.map_err(db_error)?;
    Ok(url)
}

#[async_trait]
impl EventLog for SqlStore {
    async fn head(&self) -> Result<ResumeToken> {
        let mut conn = self.conn().await?;
        Ok(self.shared.token(outbox::head(&mut conn).await?))
    }

    async fn read(
        &self,
        since: Option<ResumeToken>,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<EventBatch> {
        let mut conn = self.conn().await?;
        let head = outbox::head(&mut conn).await?;
        let start = self
            .shared
            .start(since, head, self.shared.oldest_resumable(head))?;
        let mut next = start;
        let mut events = Vec::new();
        // Examine events until `limit` match (as the in-memory log does); `next` is
        // the last examined, so a filtered-out stretch is not scanned again.
        'scan: while events.len() < limit && next < head {
            let page = outbox::fetch(&mut conn, self.shared.epoch, next, head, PAGE).await?;
            if page.first().map(|e| e.offset().offset) != Some(next + 1) {
                // Deleted under us (another instance keeps a shorter retention).
                return Err(ResetReason::Expired.into_error(self.shared.token(start)));
            }
            for event in page {
                if events.len() >= limit {
                    break 'scan;
                }
                next = event.offset().offset;
                if filter.matches(&event) {
                    events.push(event);
                }
            }
        }
        Ok(EventBatch {
            events,
            next: self.shared.token(next),
        })
    }

    async fn subscribe(
        &self,
        since: Option<ResumeToken>,
        filter: EventFilter,
    ) -> Result<Subscription> {
        let (head, oldest) = {
            let mut conn = self.conn().await?;
            outbox::head_and_oldest(&mut conn).await?
        };
        let start = self.shared.start(since, head, head)?;
        // The replay must start at the row after `start`: refuse now, rather than cut
        // the stream off at its first item, when another instance (with a shorter
        // retention) has deleted it.
        if start < head && oldest.is_none_or(|o| o > start + 1) {
            return Err(ResetReason::Expired.into_error(self.shared.token(start)));
        }
        let fanout = self
            .shared
            .fanout()
            .ok_or_else(|| Error::new(ErrorKind::Unavailable, "the store is closed"))?;
        let shared = self.shared.clone();
        // From the head read above when there is no token: the events committed before
        // this call are not live, whether or not this process has published them yet.
        Ok(
            fanout.subscribe(Some(self.shared.token(start)), filter, move |until| {
                follow::replay(shared, start, until)
            }),
        )
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn pet(&self, id: &PetId) -> Result<Option<Pet>> {
        state::pet(&mut *self.conn().await?, id).await
    }

    async fn pets(
        &self,
        query: &PetQuery,
        after: Option<&PetId>,
        limit: usize,
    ) -> Result<Snapshot<Vec<Pet>>> {
        let (mut tx, position) = self.begin_snapshot().await?;
        let items = state::pets(&mut tx, query, after, limit).await?;
        finish(tx, items, position).await
    }

    async fn order(&self, id: &OrderId) -> Result<Option<Order>> {
        state::order(&mut *self.conn().await?, id).await
    }

    async fn orders(
        &self,
        query: &OrderQuery,
        after: Option<&OrderId>,
        limit: usize,
    ) -> Result<Snapshot<Vec<Order>>> {
        let (mut tx, position) = self.begin_snapshot().await?;
        let items = state::orders(&mut tx, query, after, limit).await?;
        finish(tx, items, position).await
    }

    async fn payment(&self, id: &PaymentId) -> Result<Option<Payment>> {
        state::payment(&mut *self.conn().await?, id).await
    }

    async fn user(&self, username: &str) -> Result<Option<User>> {
        state::user(&mut *self.conn().await?, username).await
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>> {
        state::idempotency(&mut *self.conn().await?, key).await
    }

    async fn inventory(&self) -> Result<Snapshot<Inventory>> {
        let (mut tx, position) = self.begin_snapshot().await?;
        let items = state::inventory(&mut tx).await?;
        finish(tx, items, position).await
    }

    async fn commit(&self, change: Change, source: &str) -> Result<Vec<Arc<Event>>> {
        if let Some(queue) = &self.committer {
            let (reply, answer) = oneshot::channel();
            let closed = || Error::new(ErrorKind::Unavailable, "the store is closed");
            queue
                .send(Queued {
                    change,
                    source: source.to_owned(),
                    reply,
                })
                .await
                .map_err(|_| closed())?;
            return answer.await.map_err(|_| closed())?;
        }
        let mut outcomes = commit_changes(&self.shared, vec![(change, source.to_owned())]).await;
        outcomes.pop().unwrap_or_else(|| {
            Err(Error::new(
                ErrorKind::Internal,
                "a commit without an outcome",
            ))
        })
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        crate::lease::acquire(&self.shared, name, holder, ttl).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        crate::lease::release(&self.shared, name, holder).await
    }
}

/// Applies `change` (its writes in lock order, then its events) inside `tx`; returns
/// the events as appended.
async fn apply_change(
    tx: &mut AnyConnection,
    shared: &Shared,
    change: Change,
    source: &str,
) -> Result<Vec<Event>> {
    let mut writes = change.writes;
    writes.sort_by_cached_key(state::lock_order);
    for write in &writes {
        state::apply(tx, write).await?;
    }
    outbox::append(
        tx,
        shared.dialect,
        change.events,
        source,
        Utc::now(),
        shared.epoch,
        shared.config.retention as u64,
    )
    .await
}

/// Most commits one SQLite transaction takes.
const MAX_GROUP: usize = 64;

/// A commit waiting for the SQLite committer.
struct Queued {
    change: Change,
    source: String,
    reply: oneshot::Sender<Result<Vec<Arc<Event>>>>,
}

/// The SQLite committer: group commit. SQLite takes one writer at a time and each
/// commit is one synchronous WAL write, so the commits that queued while a transaction
/// ran go into the next one together (up to [`MAX_GROUP`]): one `BEGIN IMMEDIATE`,
/// one flush and one writer turn for all of them. Each runs in its own savepoint, so
/// one that fails (a stale write) is rolled back alone and the others commit. A
/// caller learns its outcome after the transaction commits; one that stopped waiting
/// may still have committed, as with any database once the commit is sent.
async fn run_committer(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<Queued>,
    cancel: CancellationToken,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            n = queue.recv_many(&mut group, MAX_GROUP) => if n == 0 { return },
        }
        let (changes, replies): (Vec<_>, Vec<_>) = group
            .drain(..)
            .map(|q| ((q.change, q.source), q.reply))
            .unzip();
        metrics::histogram!(telemetry::DB_COMMIT_GROUP_SIZE).record(changes.len() as f64);
        let outcomes = commit_changes(&shared, changes).await;
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
    }
}

/// Commits `changes` in one transaction ([`commit_group`]), records it, and wakes the
/// follower when events were appended; the outcome of each change, in order. When the
/// transaction itself fails, the first change gets its error and the others a copy.
async fn commit_changes(
    shared: &Shared,
    changes: Vec<(Change, String)>,
) -> Vec<Result<Vec<Arc<Event>>>> {
    let n = changes.len();
    let started = Instant::now();
    let outcomes = match commit_group(shared, changes).await {
        Ok(outcomes) => outcomes,
        Err(e) => {
            let copies: Vec<_> = (1..n)
                .map(|_| Err(Error::new(e.kind(), e.message().to_owned())))
                .collect();
            std::iter::once(Err(e)).chain(copies).collect()
        }
    };
    shared.record_transaction(started, &outcomes);
    if outcomes
        .iter()
        .any(|o| o.as_ref().is_ok_and(|e| !e.is_empty()))
    {
        shared.wake.notify_one();
    }
    outcomes
        .into_iter()
        .map(|o| o.map(|events| events.into_iter().map(Arc::new).collect()))
        .collect()
}

/// One transaction for `changes` (one change on PostgreSQL, a group on SQLite); the
/// outcome of each, in order. `Err` when the transaction itself failed (nothing
/// committed).
async fn commit_group(
    shared: &Shared,
    changes: Vec<(Change, String)>,
) -> Result<Vec<Result<Vec<Event>>>> {
    let WriteTx { mut tx, _guard } = shared.begin_write().await?;
    let mut changes = changes;
    if changes.len() == 1 {
        // Alone: no savepoint, the transaction is the change's.
        let (change, source) = changes.remove(0);
        let outcome = apply_change(&mut tx, shared, change, &source).await;
        if outcome.is_err() {
            // Dropping the transaction rolls back too; saying so returns the
            // connection clean at once.
            let _ = tx.rollback().await;
        } else {
            tx.commit().await.map_err(db_error)?;
        }
        return Ok(vec![outcome]);
    }
    let mut outcomes = Vec::with_capacity(changes.len());
    for (change, source) in changes {
        savepoint(&mut tx, "SAVEPOINT petstore_change").await?;
        let outcome = apply_change(&mut tx, shared, change, &source).await;
        if outcome.is_err() {
            savepoint(&mut tx, "ROLLBACK TO petstore_change").await?;
        }
        savepoint(&mut tx, "RELEASE petstore_change").await?;
        outcomes.push(outcome);
    }
    tx.commit().await.map_err(db_error)?;
    Ok(outcomes)
}

async fn savepoint(tx: &mut AnyConnection, sql: &str) -> Result<()> {
    sqlx::query(sql)
        .execute(tx)
        .await
        .map(drop)
        .map_err(db_error)
}
