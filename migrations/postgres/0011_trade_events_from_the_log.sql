-- `trade_events` is served from the log: the table that copied every market trade (a second
-- full copy, about 90 bytes a trade, and a fifth of what the projector wrote) becomes a view
-- over `events`. What the read model still keeps is where each symbol's storing was off:
-- `trade_events_off`, one row per stretch of the log whose trades are not shown, written by
-- the `trade_events` projection with its checkpoint. The view shows a market trade when it is
-- at or before that checkpoint and in no such stretch, which is what the table held.

-- The stretches, derived here from the storing switches the projection had applied (those
-- at or before its checkpoint), in the order they were met: a stop while on opens one, the
-- next start closes it, and a start with backfill drops every stretch before it.
CREATE TABLE trade_events_off (
    symbol          TEXT    NOT NULL,
    from_position   BIGINT  NOT NULL,     -- the StoringStopped that began it
    until_position  BIGINT,               -- the StoringStarted that ended it; NULL: still off
    PRIMARY KEY (symbol, from_position)
);

WITH switches AS (
    SELECT substr(stream_id, 9) AS symbol, position, event_type AS kind,
           COALESCE((payload::jsonb ->> 'backfill')::boolean, false) AS backfill,
           LAG(event_type) OVER (PARTITION BY stream_id ORDER BY position) AS before
    FROM events
    WHERE stream_id LIKE 'storing-%'
      AND event_type IN ('StoringStarted', 'StoringStopped')
      AND payload::jsonb ->> 'topic' = 'trade_events'
      AND position <= COALESCE(
          (SELECT position FROM projection_checkpoints WHERE name = 'trade_events'), 0)
)
INSERT INTO trade_events_off (symbol, from_position, until_position)
SELECT s.symbol, s.position,
       (SELECT MIN(n.position) FROM switches n
        WHERE n.symbol = s.symbol AND n.position > s.position AND n.kind = 'StoringStarted')
FROM switches s
WHERE s.kind = 'StoringStopped'
  AND (s.before IS NULL OR s.before = 'StoringStarted')
  AND s.position > COALESCE(
      (SELECT MAX(b.position) FROM switches b
       WHERE b.symbol = s.symbol AND b.kind = 'StoringStarted' AND b.backfill), 0);

DROP TABLE trade_events;

-- The same columns as the table had, from the stored payload: a positional array (schema 2)
-- or the canonical object (schema 1, older logs). `kind` was added later: absent is MARKET.
CREATE VIEW trade_events AS
SELECT market, symbol,
       (CASE WHEN schema_version = 1 THEN j ->> 'trade_id' ELSE j ->> 1 END)::bigint
           AS trade_id,
       CASE WHEN schema_version = 1 THEN j ->> 'price' ELSE j ->> 2 END AS price,
       CASE WHEN schema_version = 1 THEN j ->> 'quantity' ELSE j ->> 3 END AS quantity,
       (CASE WHEN schema_version = 1 THEN j ->> 'buyer_order_id' ELSE j ->> 7 END)::bigint
           AS buyer_order_id,
       (CASE WHEN schema_version = 1 THEN j ->> 'seller_order_id' ELSE j ->> 8 END)::bigint
           AS seller_order_id,
       (CASE WHEN schema_version = 1 THEN j ->> 'trade_time' ELSE j ->> 4 END)::bigint
           AS trade_time,
       (CASE WHEN schema_version = 1 THEN j ->> 'event_time' ELSE j ->> 5 END)::bigint
           AS event_time,
       (CASE WHEN schema_version = 1 THEN j ->> 'buyer_is_maker' ELSE j ->> 6 END)::boolean
           AS buyer_market_maker,
       COALESCE(CASE WHEN schema_version = 1 THEN j ->> 'kind' ELSE j ->> 10 END, 'MARKET')
           AS kind,
       position,
       (CASE WHEN schema_version = 1 THEN j ->> 'first_trade_id' ELSE j ->> 9 END)::bigint
           AS first_trade_id
FROM (
    SELECT CASE WHEN stream_id LIKE 'usdm-trades-%' THEN 'usdm' ELSE 'spot' END AS market,
           CASE WHEN stream_id LIKE 'usdm-trades-%'
                THEN substr(stream_id, 13) ELSE substr(stream_id, 8) END AS symbol,
           position, schema_version, payload::jsonb AS j
    FROM events
    WHERE trade_id IS NOT NULL AND event_type = 'TradeReceived'
      AND (stream_id LIKE 'trades-%' OR stream_id LIKE 'usdm-trades-%')
      AND position <= COALESCE(
          (SELECT position FROM projection_checkpoints WHERE name = 'trade_events'), 0)
) AS e
WHERE NOT EXISTS (
    SELECT 1 FROM trade_events_off o
    WHERE o.symbol = e.symbol AND o.from_position < e.position
      AND (o.until_position IS NULL OR e.position < o.until_position)
);
