-- One row per stream: its version and the position of its last event, kept by every append in
-- the same transaction as the events. What lists streams, finds symbols and wakes a stream's
-- subscribers reads this, never a scan of `events`: its cost does not grow with the log.
-- Derived from `events` (this migration fills it from them), so it is updated in place.
CREATE TABLE streams (
    stream_id       TEXT    PRIMARY KEY COLLATE "C",
    version         BIGINT  NOT NULL,
    last_position   BIGINT  NOT NULL
);

INSERT INTO streams (stream_id, version, last_position)
    SELECT stream_id, MAX(stream_version), MAX(position) FROM events GROUP BY stream_id;
