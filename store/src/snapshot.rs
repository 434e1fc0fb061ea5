//! Snapshots: an aggregate's state saved at a version of its stream, so that a worker starts
//! from it and folds only the events after it, in time independent of the stream's length.
//!
//! A snapshot is a cache, never a source of truth: one row per stream in `snapshots`, replaced
//! whole by the next save in one statement (a crash leaves the old row or the new one), and
//! checked before use ([`Store::load_snapshot`]: the event it ends with must still be there).
//! What it encodes is the caller's ([`Snapshot::state`]); a caller whose encoding changed
//! raises its `schema`, and older rows are then ignored.

use uuid::Uuid;

use super::{now_millis, Database, Store, StoreError, StreamId};

/// An aggregate's state as of `version` of its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// What state this is (`trading`, ...): a row of another kind is not used.
    pub kind: String,
    /// The version of the state's encoding.
    pub schema: i64,
    /// The stream's version the state folds up to.
    pub version: i64,
    /// The id of the event at `version`: the row is used only while the stream still holds it.
    pub last_event_id: Uuid,
    /// The encoded state.
    pub state: String,
}

/// Why a stored snapshot was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("it holds a {found} state, not a {wanted} one")]
    Kind { found: String, wanted: String },
    #[error("its encoding is schema {found}, this program reads schema {wanted}")]
    Schema { found: i64, wanted: i64 },
    #[error("the stream no longer holds event {last_event_id} at version {version} (it is at version {current})")]
    Moved {
        version: i64,
        last_event_id: Uuid,
        current: i64,
    },
}

impl Store {
    /// Saves `snapshot` of `stream`, replacing the one saved before.
    pub async fn save_snapshot(
        &self,
        stream: &StreamId,
        snapshot: &Snapshot,
    ) -> Result<(), StoreError> {
        const UPSERT: &str = "INSERT INTO snapshots \
             (stream_id, kind, schema, stream_version, last_event_id, state, saved_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (stream_id) DO UPDATE SET kind = excluded.kind, \
             schema = excluded.schema, stream_version = excluded.stream_version, \
             last_event_id = excluded.last_event_id, state = excluded.state, \
             saved_at = excluded.saved_at";
        macro_rules! upsert {
            ($executor:expr) => {
                sqlx::query(UPSERT)
                    .bind(stream.as_str())
                    .bind(&snapshot.kind)
                    .bind(snapshot.schema)
                    .bind(snapshot.version)
                    .bind(snapshot.last_event_id.to_string())
                    .bind(&snapshot.state)
                    .bind(now_millis())
                    .execute($executor)
                    .await?
            };
        }
        match self.database() {
            Database::Sqlite { pool, writer } => {
                let _turn = writer.turn().await;
                upsert!(&pool);
            }
            Database::Postgres { pool } => {
                upsert!(&pool);
            }
        }
        Ok(())
    }

    /// The snapshot of `stream` of `kind` in encoding `schema`, if one is saved and still
    /// folds the stream as it is: `Ok(Err(why))` names why a saved one is not usable (the
    /// caller logs it and folds the stream from its start).
    pub async fn load_snapshot(
        &self,
        stream: &StreamId,
        kind: &str,
        schema: i64,
    ) -> Result<Option<Result<Snapshot, Unusable>>, StoreError> {
        const SELECT: &str = "SELECT kind, schema, stream_version, last_event_id, state \
             FROM snapshots WHERE stream_id = $1";
        type Row = (String, i64, i64, String, String);
        let row: Option<Row> = match self.database() {
            Database::Sqlite { pool, .. } => {
                sqlx::query_as(SELECT)
                    .bind(stream.as_str())
                    .fetch_optional(&pool)
                    .await?
            }
            Database::Postgres { pool } => {
                sqlx::query_as(SELECT)
                    .bind(stream.as_str())
                    .fetch_optional(&pool)
                    .await?
            }
        };
        let Some((found_kind, found_schema, version, last_event_id, state)) = row else {
            return Ok(None);
        };
        if found_kind != kind {
            return Ok(Some(Err(Unusable::Kind {
                found: found_kind,
                wanted: kind.to_owned(),
            })));
        }
        if found_schema != schema {
            return Ok(Some(Err(Unusable::Schema {
                found: found_schema,
                wanted: schema,
            })));
        }
        let last_event_id = Uuid::parse_str(&last_event_id).map_err(|_| StoreError::Corrupt {
            position: 0,
            column: "snapshots.last_event_id",
            value: last_event_id.clone(),
        })?;
        let at = self.read_stream(stream, version, 1).await?;
        if at.first().map(|e| e.event_id) != Some(last_event_id) {
            return Ok(Some(Err(Unusable::Moved {
                version,
                last_event_id,
                current: self.stream_version(stream).await?,
            })));
        }
        Ok(Some(Ok(Snapshot {
            kind: found_kind,
            schema: found_schema,
            version,
            last_event_id,
            state,
        })))
    }
}
