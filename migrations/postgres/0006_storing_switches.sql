-- The data warehouse's switches as each read model last applied them: `trade_events` and
-- `orders` store a symbol's rows only while its topic is on (a symbol without a row is on).
-- Written in the same transaction as the model's checkpoint, so the two always agree.
CREATE TABLE storing_switches (
    model   TEXT    NOT NULL,     -- trade_events | orders
    symbol  TEXT    NOT NULL,
    stored  BOOLEAN NOT NULL,
    PRIMARY KEY (model, symbol)
);
