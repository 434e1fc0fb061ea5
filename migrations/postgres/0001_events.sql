-- The event log. One row per event; rows are never updated or deleted (see the trigger).
--
-- `position` is the global order ($all). Appends take a transaction-level advisory lock and
-- assign max + 1 while holding it; the lock is released only after the commit is visible, so a
-- reader can never see position N + 1 before N: no event can commit late behind a higher one.
CREATE TABLE events (
    position        BIGINT   PRIMARY KEY,
    event_id        UUID     NOT NULL UNIQUE,
    stream_id       TEXT     NOT NULL,
    stream_version  BIGINT   NOT NULL,
    event_type      TEXT     NOT NULL,
    schema_version  INTEGER  NOT NULL,
    payload         TEXT     NOT NULL,    -- the event's JSON, byte for byte (cast to jsonb to query)
    recorded_at     BIGINT   NOT NULL,    -- ms since the Unix epoch, the store's clock
    correlation_id  UUID,
    causation_id    UUID,
    trade_id        BIGINT,
    UNIQUE (stream_id, stream_version)
);

CREATE UNIQUE INDEX events_trade_key ON events (stream_id, trade_id) WHERE trade_id IS NOT NULL;

CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are permanent and immutable: the log is append-only';
END;
$$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
