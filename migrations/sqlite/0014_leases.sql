-- Several engines on one database (store/src/lease.rs). A lease says which node owns a
-- resource (a symbol's trading and streaming, by its name) until when; its epoch rises at every
-- change of hands and is never reset (a released lease keeps its row, expired, so the next
-- holder's epoch is higher still). Coordination state, like `checkpoints` and `snapshots`:
-- updated in place, never part of the log.
CREATE TABLE leases (
    resource    TEXT    PRIMARY KEY,
    node        TEXT    NOT NULL,
    epoch       INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,               -- ms since the epoch; 0: released
    acquired_at INTEGER NOT NULL
);

-- The nodes, each keeping its row alive while it runs (a heartbeat).
CREATE TABLE nodes (
    node        TEXT    PRIMARY KEY,
    pid         INTEGER NOT NULL,
    host        TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    seen_at     INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

-- Fencing: an event whose metadata names a lease (`lease`, `node`, `epoch`: a worker's
-- decision) is stored only while that node holds that lease at that epoch. A node paused past
-- its lease, whose symbol another node has since taken, appends nothing when it resumes.
-- SQLite serialises writers: the check and the insert see the same lease.
CREATE TRIGGER events_are_fenced BEFORE INSERT ON events
WHEN NEW.metadata IS NOT NULL AND json_extract(NEW.metadata, '$.lease') IS NOT NULL
 AND NOT EXISTS (
    SELECT 1 FROM leases l
    WHERE l.resource = json_extract(NEW.metadata, '$.lease')
      AND l.node = json_extract(NEW.metadata, '$.node')
      AND CAST(l.epoch AS TEXT) = json_extract(NEW.metadata, '$.epoch')
      AND l.expires_at > 0
)
BEGIN
    SELECT RAISE(ABORT, 'hedgehog: stale lease');
END;
