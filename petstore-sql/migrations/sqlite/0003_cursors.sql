-- Named log positions for work that follows the log once per cluster and must go on
-- where the previous holder of its lease stopped (the MQTT bridge to a shared broker):
-- the resume token text of the last event done, saved by the holder as it goes.
CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    position TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
