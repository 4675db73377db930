-- Pets per status, kept by a trigger in the transaction that changes a pet, so the
-- inventory is one read of three rows instead of a count over the whole table (the
-- MQTT bridge reads it after every batch of events that changes it). Kept in step
-- with migrations/sqlite. A trigger rather than the store's code: a pet row changed by
-- anything (an instance still on an older release, an operator's UPDATE) still counts.
CREATE TABLE pet_counts (
    status TEXT COLLATE "C" PRIMARY KEY,
    n BIGINT NOT NULL CHECK (n >= 0)
);

-- A writer that moves a pet between two statuses locks both count rows. It locks them
-- in status order, whichever way the pet moves, so that two writers moving pets in
-- opposite directions cannot deadlock. (Every writer has locked its pet row before,
-- and takes the log head after.)
CREATE FUNCTION pet_counts_follow() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    gone TEXT;
    came TEXT;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        gone := OLD.status;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        came := NEW.status;
    END IF;
    IF gone IS NOT DISTINCT FROM came THEN
        RETURN NULL;
    END IF;
    IF gone IS NOT NULL AND (came IS NULL OR gone < came) THEN
        UPDATE pet_counts SET n = n - 1 WHERE status = gone;
        gone := NULL;
    END IF;
    IF came IS NOT NULL THEN
        INSERT INTO pet_counts AS c (status, n) VALUES (came, 1)
            ON CONFLICT (status) DO UPDATE SET n = c.n + 1;
    END IF;
    IF gone IS NOT NULL THEN
        UPDATE pet_counts SET n = n - 1 WHERE status = gone;
    END IF;
    RETURN NULL;
END;
$$;

-- Creating the trigger locks out writers to `pets` until this migration commits, so
-- the count below misses no concurrent change.
CREATE TRIGGER pets_counted AFTER INSERT OR DELETE OR UPDATE OF status ON pets
    FOR EACH ROW EXECUTE FUNCTION pet_counts_follow();

INSERT INTO pet_counts (status, n) SELECT status, COUNT(*) FROM pets GROUP BY status;
