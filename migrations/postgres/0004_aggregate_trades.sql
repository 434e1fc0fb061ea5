-- An aggregate trade (Binance aggTrades) is stored as its last trade id with the first one
-- beside it; single trades leave it NULL.
ALTER TABLE trade_events ADD COLUMN first_trade_id BIGINT;
