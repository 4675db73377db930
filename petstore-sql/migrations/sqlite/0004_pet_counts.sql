-- Pets per status, kept by triggers in the transaction that changes a pet, so the
-- inventory is one read of three rows instead of a count over the whole table (the
-- MQTT bridge reads it after every batch of events that changes it). Kept in step
-- with migrations/postgres. Triggers rather than the store's code: a pet row changed
-- by anything (an older release, an operator's UPDATE) still counts.
CREATE TABLE pet_counts (
    status TEXT PRIMARY KEY,
    n INTEGER NOT NULL CHECK (n >= 0)
);

CREATE TRIGGER pets_counted_on_insert AFTER INSERT ON pets
BEGIN
    INSERT INTO pet_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER pets_counted_on_delete AFTER DELETE ON pets
BEGIN
    UPDATE pet_counts SET n = n - 1 WHERE status = OLD.status;
END;

CREATE TRIGGER pets_counted_on_update AFTER UPDATE OF status ON pets
    WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE pet_counts SET n = n - 1 WHERE status = OLD.status;
    INSERT INTO pet_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

-- The pets already stored (the migration runs in one transaction with the triggers).
INSERT INTO pet_counts (status, n) SELECT status, COUNT(*) FROM pets GROUP BY status;
