-- A small append in one statement: the log's lock, the stream's version checked, the rows,
-- the stream's row and the NOTIFY, in one round trip that commits on its own. The append
-- lock is held only while this statement runs and commits, where the same work sent as
-- separate statements held it across seven round trips: with a hundred symbols' workers each
-- appending its decisions, the lock, not the server's work, was what bounded them.
--
-- Returns the stream's version before the append and the position of its last event, or a
-- NULL position (and nothing written) when `expected` is given and is not the version. A
-- duplicate event id or trade key raises unique_violation, as an INSERT does: the caller
-- then looks the batch up and appends what is new. Large batches keep using COPY.
CREATE FUNCTION hedgehog_append(
    stream          TEXT,
    expected        BIGINT,        -- NULL: any version
    recorded_at     BIGINT,
    event_ids       UUID[],
    event_types     TEXT[],
    schema_versions INTEGER[],
    payloads        TEXT[],
    correlation_ids UUID[],
    causation_ids   UUID[],
    trade_ids       BIGINT[],
    metadata        TEXT[],
    channel         TEXT,
    origin          TEXT,
    OUT actual      BIGINT,
    OUT last_position BIGINT
) LANGUAGE plpgsql AS $$
DECLARE
    head  BIGINT;
    n     BIGINT := cardinality(event_ids);
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('hedgehog.events:' || current_schema()));
    SELECT COALESCE(MAX(e.stream_version), 0) INTO actual FROM events e
        WHERE e.stream_id = hedgehog_append.stream;
    IF expected IS NOT NULL AND expected <> actual THEN
        last_position := NULL;
        RETURN;
    END IF;
    SELECT COALESCE(MAX(e.position), 0) INTO head FROM events e;
    INSERT INTO events (position, event_id, stream_id, stream_version, event_type,
                        schema_version, payload, recorded_at, correlation_id, causation_id,
                        trade_id, metadata)
    SELECT head + t.k, t.id, hedgehog_append.stream, actual + t.k, t.ty, t.sv, t.pl,
           hedgehog_append.recorded_at, t.co, t.ca, t.tr, t.md
    FROM UNNEST(event_ids, event_types, schema_versions, payloads, correlation_ids,
                causation_ids, trade_ids, metadata)
         WITH ORDINALITY AS t(id, ty, sv, pl, co, ca, tr, md, k);
    last_position := head + n;
    INSERT INTO streams (stream_id, version, last_position)
        VALUES (hedgehog_append.stream, actual + n, head + n)
        ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version,
            last_position = excluded.last_position;
    PERFORM pg_notify(channel, (head + n) || ' ' || hedgehog_append.stream || ' '
                               || (head + 1) || ' ' || origin);
END;
$$;
