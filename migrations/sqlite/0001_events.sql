-- The event log. One row per event; rows are never updated or deleted (see the triggers).
--
-- `position` is the global order ($all). It is assigned as max + 1 inside the write transaction,
-- and SQLite has one writer at a time, so positions are gap-free and commit in order.
CREATE TABLE events (
    position        INTEGER PRIMARY KEY,
    event_id        BLOB    NOT NULL UNIQUE,      -- UUID v7, 16 bytes
    stream_id       TEXT    NOT NULL,
    stream_version  INTEGER NOT NULL,             -- 1, 2, 3 ... per stream
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    payload         TEXT    NOT NULL,             -- the event's JSON, byte for byte as written
    recorded_at     INTEGER NOT NULL,             -- ms since the Unix epoch, the store's clock
    correlation_id  BLOB,
    causation_id    BLOB,
    trade_id        INTEGER,                      -- set for TradeReceived: idempotency key
    UNIQUE (stream_id, stream_version)
);

-- (market stream, exchange trade id) identifies a trade: the same trade is never stored twice.
CREATE UNIQUE INDEX events_trade_key ON events (stream_id, trade_id) WHERE trade_id IS NOT NULL;

CREATE TRIGGER events_are_immutable BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable: the log is append-only');
END;

CREATE TRIGGER events_are_permanent BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are permanent: the log is append-only');
END;
