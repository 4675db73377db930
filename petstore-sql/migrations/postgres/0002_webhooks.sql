-- Webhook delivery state (petstore-webhooks' `WebhookStore`, implemented with the
-- `webhooks` feature): endpoints with their secrets and delivery cursor, the messages
-- each endpoint owes or remembers, and the attempt log. Created whatever the features,
-- so that one database serves builds with and without it. Times are microseconds since
-- the Unix epoch. Kept in step with migrations/sqlite.

CREATE TABLE webhook_endpoints (
    id TEXT COLLATE "C" PRIMARY KEY,
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    -- JSON array of event type patterns; empty means every type.
    events TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    disabled_reason TEXT,
    failing_since BIGINT,
    -- `whsec_...` text.
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_expires_at BIGINT,
    -- Resume token text of the last event the endpoint's follower examined.
    cursor TEXT NOT NULL,
    last_gap TEXT,
    revision BIGINT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- The endpoint's counter for the order of its messages and attempts. Taking the
    -- next value locks the endpoint row, which serialises the writes of one endpoint.
    next_seq BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE webhook_messages (
    endpoint_id TEXT COLLATE "C" NOT NULL,
    message_id TEXT NOT NULL,
    -- Insertion order within the endpoint (a reopened message keeps its value).
    seq BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    log_offset TEXT,
    body BYTEA NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    step BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_attempt_at BIGINT,
    next_attempt_at BIGINT,
    last_status_code BIGINT,
    last_error TEXT,
    PRIMARY KEY (endpoint_id, message_id)
);
CREATE INDEX webhook_messages_by_seq ON webhook_messages (endpoint_id, seq);
CREATE INDEX webhook_messages_by_status ON webhook_messages (status, endpoint_id, seq);

CREATE TABLE webhook_attempts (
    endpoint_id TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    url TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    status_code BIGINT,
    latency_ms BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT,
    response_body TEXT,
    PRIMARY KEY (endpoint_id, seq)
);
CREATE INDEX webhook_attempts_by_message ON webhook_attempts (endpoint_id, message_id, seq);
