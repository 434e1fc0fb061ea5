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
    from_position   INTEGER NOT NULL,     -- the StoringStopped that began it
    until_position  INTEGER,              -- the StoringStarted that ended it; NULL: still off
    PRIMARY KEY (symbol, from_position)
) WITHOUT ROWID;

WITH switches AS (
    SELECT substr(stream_id, 9) AS symbol, position, event_type AS kind,
           COALESCE(json_extract(payload, '$.backfill'), 0) AS backfill,
           LAG(event_type) OVER (PARTITION BY stream_id ORDER BY position) AS before
    FROM events
    WHERE stream_id >= 'storing-' AND stream_id < 'storing.'
      AND event_type IN ('StoringStarted', 'StoringStopped')
      AND json_extract(payload, '$.topic') = 'trade_events'
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
       json_extract(payload, CASE schema_version WHEN 1 THEN '$.trade_id' ELSE '$[1]' END)
           AS trade_id,
       json_extract(payload, CASE schema_version WHEN 1 THEN '$.price' ELSE '$[2]' END)
           AS price,
       json_extract(payload, CASE schema_version WHEN 1 THEN '$.quantity' ELSE '$[3]' END)
           AS quantity,
       json_extract(payload, CASE schema_version WHEN 1 THEN '$.buyer_order_id' ELSE '$[7]' END)
           AS buyer_order_id,
       json_extract(payload, CASE schema_version WHEN 1 THEN '$.seller_order_id' ELSE '$[8]' END)
           AS seller_order_id,
       json_extract(payload, CASE schema_version WHEN 1 THEN '$.trade_time' ELSE '$[4]' END)
           AS trade_time,
       json_extract(payload, CASE schema_version WHEN 1 THEN '$.event_time' ELSE '$[5]' END)
           AS event_time,
       json_extract(payload, CASE schema_version WHEN 1 THEN '$.buyer_is_maker' ELSE '$[6]' END)
           AS buyer_market_maker,
       COALESCE(json_extract(payload, CASE schema_version WHEN 1 THEN '$.kind' ELSE '$[10]' END),
                'MARKET') AS kind,
       position,
       json_extract(payload, CASE schema_version WHEN 1 THEN '$.first_trade_id' ELSE '$[9]' END)
           AS first_trade_id
FROM (
    SELECT CASE WHEN stream_id >= 'usdm-trades-' AND stream_id < 'usdm-trades.' THEN 'usdm'
                ELSE 'spot' END AS market,
           CASE WHEN stream_id >= 'usdm-trades-' AND stream_id < 'usdm-trades.'
                THEN substr(stream_id, 13) ELSE substr(stream_id, 8) END AS symbol,
           position, schema_version, payload
    FROM events
    WHERE trade_id IS NOT NULL AND event_type = 'TradeReceived'
      AND ((stream_id >= 'trades-' AND stream_id < 'trades.')
           OR (stream_id >= 'usdm-trades-' AND stream_id < 'usdm-trades.'))
      AND position <= COALESCE(
          (SELECT position FROM projection_checkpoints WHERE name = 'trade_events'), 0)
) AS e
WHERE NOT EXISTS (
    SELECT 1 FROM trade_events_off o
    WHERE o.symbol = e.symbol AND o.from_position < e.position
      AND (o.until_position IS NULL OR e.position < o.until_position)
);
