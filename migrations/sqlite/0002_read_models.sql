-- Read models: tables the projections (crate `hedgehog-projections`) derive from the event log.
-- Nothing else writes them, and any of them can be emptied and rebuilt from the log at any time
-- (`hedgehog projections rebuild`). The same columns on SQLite and PostgreSQL.
--
-- Prices, quantities and amounts are exact decimal text, as the events carry them (SQLite has no
-- exact decimal type; on PostgreSQL cast to NUMERIC to compute). Times are ms since the Unix epoch.

-- How far each projection has applied the log. Written in the same transaction as the changes
-- it covers, so a crash never loses or double-applies an event. `generation` grows with each
-- rebuild: a projector holding an older one knows its cached rows are stale.
CREATE TABLE projection_checkpoints (
    name        TEXT    PRIMARY KEY,
    position    INTEGER NOT NULL,             -- last $all position applied
    generation  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL              -- the projector's clock, for `projections status`
);

-- One row per stored market trade (`TradeReceived`), spot or USD-M futures. Keyed in the
-- exchange's order (trade id) per market and symbol; no time index, which would cost a fifth of
-- the projection's speed: a time window is read along the key (see `query::trades`).
CREATE TABLE trade_events (
    market              TEXT    NOT NULL,     -- spot | usdm
    symbol              TEXT    NOT NULL,
    trade_id            INTEGER NOT NULL,
    price               TEXT    NOT NULL,
    quantity            TEXT    NOT NULL,
    buyer_order_id      INTEGER,              -- known for spot data before 2024-06-18
    seller_order_id     INTEGER,
    trade_time          INTEGER NOT NULL,
    event_time          INTEGER NOT NULL,
    buyer_market_maker  BOOLEAN NOT NULL,
    kind                TEXT    NOT NULL,     -- MARKET, INSURANCE_FUND, ADL, ...
    position            INTEGER NOT NULL,     -- the event's place in the log
    PRIMARY KEY (market, symbol, trade_id)
) WITHOUT ROWID;


-- One row per order, upserted by every event about it.
CREATE TABLE orders (
    symbol                     TEXT    NOT NULL,
    order_id                   INTEGER NOT NULL,
    client_order_id            TEXT    NOT NULL,
    position_id                INTEGER NOT NULL,   -- the strategy's position it belongs to
    side                       TEXT    NOT NULL,   -- BUY | SELL
    type                       TEXT    NOT NULL,   -- LIMIT, ...
    time_in_force              TEXT    NOT NULL,
    price                      TEXT    NOT NULL,
    original_quantity          TEXT    NOT NULL,
    executed_quantity          TEXT    NOT NULL,
    cumulative_quote_quantity  TEXT    NOT NULL,
    status                     TEXT    NOT NULL,   -- NEW, PARTIALLY_FILLED, FILLED, CANCELED
    fees                       TEXT    NOT NULL,   -- sum of the fills' fees, in fee_asset
    fee_asset                  TEXT,
    time                       INTEGER NOT NULL,   -- placed
    update_time                INTEGER NOT NULL,   -- last fill or cancel
    position                   INTEGER NOT NULL,   -- log position of the last event applied
    PRIMARY KEY (symbol, order_id)
);

CREATE INDEX orders_by_status ON orders (status, symbol);

-- The current trading status and settings of each symbol.
CREATE TABLE trading_settings (
    symbol             TEXT    PRIMARY KEY,
    status             TEXT    NOT NULL,   -- off | on | shutdown
    chunks             INTEGER NOT NULL,
    budget             TEXT    NOT NULL,
    buy_down_interval  TEXT    NOT NULL,
    profit_target      TEXT    NOT NULL,
    rebuy_interval     TEXT    NOT NULL,
    fee                TEXT    NOT NULL,
    position           INTEGER NOT NULL
);

-- Whether each symbol's trades are being streamed.
CREATE TABLE streaming_settings (
    symbol    TEXT    PRIMARY KEY,
    status    TEXT    NOT NULL,            -- on | off
    position  INTEGER NOT NULL
);

-- OHLC candles with exactly the fields of Binance's klines, per market, symbol and interval.
-- Only MARKET trades count. The latest candle of each series is still being built
-- (`closed` false) and changes as trades arrive.
CREATE TABLE candles (
    market                  TEXT    NOT NULL,
    symbol                  TEXT    NOT NULL,
    interval                TEXT    NOT NULL,   -- 1m 5m 15m 1h 4h 1d
    open_time               INTEGER NOT NULL,   -- aligned to the interval, UTC
    open                    TEXT    NOT NULL,
    high                    TEXT    NOT NULL,
    low                     TEXT    NOT NULL,
    close                   TEXT    NOT NULL,
    volume                  TEXT    NOT NULL,
    close_time              INTEGER NOT NULL,   -- open_time + interval - 1 ms
    quote_volume            TEXT    NOT NULL,
    trade_count             INTEGER NOT NULL,
    taker_buy_base_volume   TEXT    NOT NULL,
    taker_buy_quote_volume  TEXT    NOT NULL,
    first_trade_id          INTEGER NOT NULL,   -- open is this trade's price
    last_trade_id           INTEGER NOT NULL,   -- close is this trade's price
    closed                  BOOLEAN NOT NULL,
    PRIMARY KEY (market, symbol, interval, open_time)
) WITHOUT ROWID;
