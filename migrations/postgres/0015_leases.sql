-- Several engines on one database (store/src/lease.rs). A lease says which node owns a
-- resource (a symbol's trading and streaming, by its name) until when, by the database's
-- clock; its epoch rises at every change of hands and is never reset (a released lease keeps
-- its row, expired, so the next holder's epoch is higher still). Coordination state, like
-- `checkpoints` and `snapshots`: updated in place, never part of the log.
CREATE TABLE leases (
    resource    TEXT   PRIMARY KEY,
    node        TEXT   NOT NULL,
    epoch       BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,                -- ms since the epoch; 0: released
    acquired_at BIGINT NOT NULL
);

-- The nodes, each keeping its row alive while it runs (a heartbeat).
CREATE TABLE nodes (
    node        TEXT   PRIMARY KEY,
    pid         BIGINT NOT NULL,
    host        TEXT   NOT NULL,
    started_at  BIGINT NOT NULL,
    seen_at     BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

-- Fencing: an event whose metadata names a lease (`lease`, `node`, `epoch`: a worker's
-- decision) is stored only while that node holds that lease at that epoch. The lease row is
-- read FOR SHARE: a takeover (an UPDATE of it) waits for the append to commit, so the new
-- holder reads every decision made under the old epoch, and an append after the takeover sees
-- the new epoch and is refused (SQLSTATE HH001).
CREATE FUNCTION hedgehog_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    meta jsonb := NEW.metadata::jsonb;
    held leases%ROWTYPE;
BEGIN
    SELECT * INTO held FROM leases WHERE resource = meta->>'lease' FOR SHARE;
    IF NOT FOUND OR held.node <> meta->>'node' OR held.epoch::text <> meta->>'epoch'
       OR held.expires_at = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'HH001',
            MESSAGE = format('hedgehog: stale lease: %s decided under epoch %s of %s, which %s',
                meta->>'node', meta->>'epoch', meta->>'lease',
                CASE WHEN NOT FOUND THEN 'was never granted'
                     WHEN held.expires_at = 0 THEN 'was released'
                     ELSE format('node %s holds at epoch %s', held.node, held.epoch) END);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER events_are_fenced BEFORE INSERT ON events FOR EACH ROW
WHEN (NEW.metadata IS NOT NULL AND NEW.metadata LIKE '%"lease"%')
EXECUTE FUNCTION hedgehog_fence();
