-- The Pet Store schema for PostgreSQL. Kept in step with migrations/sqlite (the README
-- explains each table). Ids are TEXT COLLATE "C" (compared byte-wise, as Rust orders
-- them, whatever the database's locale), so "in id order" is the same order in SQL and
-- in the domain.

-- The log head: exactly one row. `head` is the offset of the newest event; every commit
-- that appends events adds to it in its own transaction, which serialises committers
-- and makes offsets gapless and in commit order. `epoch` is chosen once, at random,
-- when the store is first opened.
CREATE TABLE log_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL,
    head BIGINT NOT NULL CHECK (head >= 0)
);

-- The outbox: one row per event, written in the same transaction as the state change.
CREATE TABLE events (
    log_offset BIGINT PRIMARY KEY,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    subject TEXT NOT NULL,
    source TEXT NOT NULL,
    time TEXT NOT NULL,
    data TEXT NOT NULL,
    traceparent TEXT
);

CREATE TABLE pets (
    id TEXT COLLATE "C" PRIMARY KEY,
    status TEXT NOT NULL,
    species_key TEXT NOT NULL,
    version BIGINT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX pets_by_status ON pets (status, id);
CREATE INDEX pets_by_species ON pets (species_key, id);

CREATE TABLE orders (
    id TEXT COLLATE "C" PRIMARY KEY,
    status TEXT NOT NULL,
    pet_id TEXT COLLATE "C" NOT NULL,
    customer TEXT NOT NULL,
    version BIGINT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX orders_by_status ON orders (status, id);
CREATE INDEX orders_by_pet ON orders (pet_id, id);
CREATE INDEX orders_by_customer ON orders (customer, id);

CREATE TABLE payments (
    id TEXT COLLATE "C" PRIMARY KEY,
    order_id TEXT COLLATE "C" NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX payments_by_order ON payments (order_id);

CREATE TABLE users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    doc TEXT NOT NULL
);

CREATE TABLE idempotency (
    key TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX idempotency_by_age ON idempotency (created_at);

-- Named leases for once-per-cluster work. `expires_at` is milliseconds since the Unix
-- epoch on the database's clock; `generation` grows whenever a new tenure starts.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    generation BIGINT NOT NULL
);
