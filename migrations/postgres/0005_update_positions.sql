-- Read-model rows say where in the log they last changed, so `/api/updates` can resume a
-- subscriber after a position by serving the rows changed since. Candles stored before this
-- migration keep 0 until they change again (or `hedgehog projections rebuild candles`).
ALTER TABLE candles ADD COLUMN position BIGINT NOT NULL DEFAULT 0;

CREATE INDEX candles_by_position ON candles (position);
CREATE INDEX orders_by_position ON orders (position);
