-- The orders of kept backtest runs (`hedgehog backtest --keep`), projected from their own
-- streams (`backtest-RUN-SYMBOL`) like `orders` is from the live ones, keyed by run as well.
CREATE TABLE backtest_orders (
    run_id                     TEXT    NOT NULL,   -- the run's id, as in its stream name
    symbol                     TEXT    NOT NULL,
    order_id                   INTEGER NOT NULL,
    client_order_id            TEXT    NOT NULL,
    position_id                INTEGER NOT NULL,
    side                       TEXT    NOT NULL,
    type                       TEXT    NOT NULL,
    time_in_force              TEXT    NOT NULL,
    price                      TEXT    NOT NULL,
    original_quantity          TEXT    NOT NULL,
    executed_quantity          TEXT    NOT NULL,
    cumulative_quote_quantity  TEXT    NOT NULL,
    status                     TEXT    NOT NULL,
    fees                       TEXT    NOT NULL,
    fee_asset                  TEXT,
    time                       INTEGER NOT NULL,
    update_time                INTEGER NOT NULL,
    position                   INTEGER NOT NULL,
    PRIMARY KEY (run_id, symbol, order_id)
) WITHOUT ROWID;
