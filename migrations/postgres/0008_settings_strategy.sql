-- The strategy a symbol's settings name (`TradingSettings::strategy`). Symbols whose settings
-- were projected before strategies had names run the book's, `naive`.
ALTER TABLE trading_settings ADD COLUMN strategy TEXT NOT NULL DEFAULT 'naive';
