-- The last saved state of an aggregate, to start from instead of its stream's first event: one
-- row per stream, replaced in place by the next save (a cache of a fold of the log, never a
-- source of truth). `stream_version` and `last_event_id` say which events it folds; a row whose
-- stream no longer holds that event there, whose `schema` is not the reader's, or that does
-- not decode is ignored and the state rebuilt from the events.
CREATE TABLE snapshots (
    stream_id       TEXT    PRIMARY KEY,
    kind            TEXT    NOT NULL,     -- what state it is: trading, streaming, storing
    schema          BIGINT  NOT NULL,     -- the version of that state's encoding
    stream_version  BIGINT  NOT NULL,
    last_event_id   TEXT    NOT NULL,
    state           TEXT    NOT NULL,     -- JSON
    saved_at        BIGINT  NOT NULL      -- ms since the Unix epoch, the saver's clock
);
