-- Sealed segments (store/src/segment.rs): runs of a market stream's trades moved out of
-- `market_trades` into one immutable, compressed, checksummed block each. The log is now three
-- tables; readers merge the blocks in by position, version or trade id, and a trade is in
-- exactly one of them at any moment a reader can see.
CREATE TABLE trade_segments (
    id              INTEGER PRIMARY KEY,
    stream          INTEGER NOT NULL,             -- trade_streams.number
    first_position  INTEGER NOT NULL,
    last_position   INTEGER NOT NULL,
    first_version   INTEGER NOT NULL,
    last_version    INTEGER NOT NULL,
    min_trade_id    INTEGER NOT NULL,
    max_trade_id    INTEGER NOT NULL,
    trades          INTEGER NOT NULL,
    checksum        INTEGER NOT NULL,             -- CRC-32C of `block`
    block           BLOB    NOT NULL
);

-- A stream's segments never overlap in versions: one ends where the next may begin.
CREATE UNIQUE INDEX trade_segments_by_version ON trade_segments (stream, last_version);
CREATE INDEX trade_segments_by_position ON trade_segments (last_position);
CREATE INDEX trade_segments_by_trade ON trade_segments (stream, max_trade_id);

CREATE TRIGGER trade_segments_are_immutable BEFORE UPDATE ON trade_segments
BEGIN
    SELECT RAISE(ABORT, 'events are immutable: the log is append-only');
END;

CREATE TRIGGER trade_segments_are_permanent BEFORE DELETE ON trade_segments
BEGIN
    SELECT RAISE(ABORT, 'events are permanent: the log is append-only');
END;

-- A trade's row may leave `market_trades` only for a segment that holds it, sealed in the
-- same transaction (the sealer inserts the segment first): never otherwise.
DROP TRIGGER market_trades_are_permanent;

CREATE TRIGGER market_trades_are_permanent BEFORE DELETE ON market_trades
WHEN NOT EXISTS (
    SELECT 1 FROM trade_segments s
    WHERE s.stream = OLD.stream AND s.last_version >= OLD.version
      AND s.first_version <= OLD.version
)
BEGIN
    SELECT RAISE(ABORT, 'events are permanent: the log is append-only');
END;
