-- Market trades in typed columns: the log's bulk, about a quarter of the space their JSON rows
-- of `events` took (store/src/market_trade.rs says which trades come here, and why). The log is
-- both tables: positions and stream versions are assigned across them, readers merge them by
-- position, and no event is ever in both. Existing rows of `events` stay where they are.

-- Market streams by number: a trade's row names its stream in a byte or two, not its name.
CREATE TABLE trade_streams (
    number          INTEGER PRIMARY KEY,
    stream_id       TEXT    NOT NULL UNIQUE
);

CREATE TABLE market_trades (
    position        INTEGER PRIMARY KEY,          -- in `$all`, with the positions of `events`
    stream          INTEGER NOT NULL,             -- trade_streams.number
    version         INTEGER NOT NULL,             -- in its stream, with the versions of `events`
    trade_id        INTEGER NOT NULL,
    price           INTEGER NOT NULL,             -- significand without its trailing zeros
    quantity        INTEGER NOT NULL,             -- the same
    -- bit 0: the buyer was the maker; bits 1-2: kind (0 MARKET, 1 INSURANCE_FUND, 2 ADL);
    -- then five bits each: price scale, price zeros, quantity scale, quantity zeros. A decimal
    -- is significand * 10^zeros / 10^scale, with `scale` digits after its point.
    form            INTEGER NOT NULL,
    trade_time      INTEGER NOT NULL,             -- ms since the Unix epoch
    event_lag       INTEGER NOT NULL,             -- event_time - trade_time
    recorded_lag    INTEGER NOT NULL,             -- recorded_at - trade_time
    buyer_order_id  INTEGER,
    seller_order_id INTEGER,
    first_trade_id  INTEGER,
    event_id        BLOB                          -- NULL: the id derived from the trade
);

CREATE UNIQUE INDEX market_trades_by_version ON market_trades (stream, version);
-- (market stream, exchange trade id) identifies a trade, as `events_trade_key` does.
CREATE UNIQUE INDEX market_trades_key ON market_trades (stream, trade_id);
CREATE UNIQUE INDEX market_trades_event_id ON market_trades (event_id) WHERE event_id IS NOT NULL;

CREATE TRIGGER market_trades_are_immutable BEFORE UPDATE ON market_trades
BEGIN
    SELECT RAISE(ABORT, 'events are immutable: the log is append-only');
END;

CREATE TRIGGER market_trades_are_permanent BEFORE DELETE ON market_trades
BEGIN
    SELECT RAISE(ABORT, 'events are permanent: the log is append-only');
END;

-- `trade_events` shows the trades of both tables, with the same columns and values as before:
-- a row's decimals are rebuilt as the text the JSON held ('0.09643000').
DROP VIEW trade_events;

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
)
UNION ALL
SELECT market, symbol, trade_id,
       -- digits padded to at least scale + 1, then the point put before the last `scale`
       sign_p || CASE WHEN scale_p = 0 THEN padded_p
                      ELSE substr(padded_p, 1, length(padded_p) - scale_p) || '.'
                           || substr(padded_p, length(padded_p) - scale_p + 1) END AS price,
       sign_q || CASE WHEN scale_q = 0 THEN padded_q
                      ELSE substr(padded_q, 1, length(padded_q) - scale_q) || '.'
                           || substr(padded_q, length(padded_q) - scale_q + 1) END AS quantity,
       buyer_order_id, seller_order_id, trade_time, event_time, buyer_market_maker, kind,
       position, first_trade_id
FROM (
    SELECT *,
           substr('00000000000000000000000000000' || digits_p,
                  -max(length(digits_p), scale_p + 1)) AS padded_p,
           substr('00000000000000000000000000000' || digits_q,
                  -max(length(digits_q), scale_q + 1)) AS padded_q
    FROM (
        SELECT CASE WHEN s.stream_id >= 'usdm-trades-' AND s.stream_id < 'usdm-trades.'
                    THEN 'usdm' ELSE 'spot' END AS market,
               CASE WHEN s.stream_id >= 'usdm-trades-' AND s.stream_id < 'usdm-trades.'
                    THEN substr(s.stream_id, 13) ELSE substr(s.stream_id, 8) END AS symbol,
               t.trade_id,
               CASE WHEN t.price < 0 THEN '-' ELSE '' END AS sign_p,
               CASE WHEN t.quantity < 0 THEN '-' ELSE '' END AS sign_q,
               CAST(abs(t.price) AS TEXT)
                   || substr('0000000000000000000000000000000', 1, (t.form >> 8) & 31) AS digits_p,
               CAST(abs(t.quantity) AS TEXT)
                   || substr('0000000000000000000000000000000', 1, (t.form >> 18) & 31) AS digits_q,
               (t.form >> 3) & 31 AS scale_p,
               (t.form >> 13) & 31 AS scale_q,
               t.buyer_order_id, t.seller_order_id, t.trade_time,
               t.trade_time + t.event_lag AS event_time,
               t.form & 1 AS buyer_market_maker,
               CASE (t.form >> 1) & 3 WHEN 0 THEN 'MARKET' WHEN 1 THEN 'INSURANCE_FUND'
                    ELSE 'ADL' END AS kind,
               t.position, t.first_trade_id
        FROM market_trades t JOIN trade_streams s ON s.number = t.stream
        WHERE t.position <= COALESCE(
            (SELECT position FROM projection_checkpoints WHERE name = 'trade_events'), 0)
    ) AS raw
) AS m
WHERE NOT EXISTS (
    SELECT 1 FROM trade_events_off o
    WHERE o.symbol = m.symbol AND o.from_position < m.position
      AND (o.until_position IS NULL OR m.position < o.until_position)
);
