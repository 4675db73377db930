-- Every statement that inserts events NOTIFYs `petstore_log` (the channel each instance
-- LISTENs on; the payload is empty: a notification only says "read the table").
-- PostgreSQL delivers it when, and only if, the transaction commits. A trigger rather
-- than a `SELECT pg_notify(...)` from the store: one round trip less while the
-- committer holds the log head's row lock, and an event inserted by anything still
-- wakes every instance. SQLite has one process and no notifications: no counterpart.
CREATE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('petstore_log', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();
