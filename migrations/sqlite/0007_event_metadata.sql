-- Who or what caused an event, as a JSON object of text values: for a user's command, who sent
-- it (`by`), how (`via`: cli, http, dashboard) and from where (`client`). NULL for what the
-- engine decides itself and for market data, which is most of the log. Kept beside the payload,
-- never in it, so the events a replay produces stay byte for byte the same.
ALTER TABLE events ADD COLUMN metadata TEXT;
