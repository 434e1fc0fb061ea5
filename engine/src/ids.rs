//! Deterministic decision ids: the same decision at the same place always gets the same id, so a
//! retried append is recognised as what the store already holds, and a backtest's kept events
//! are byte for byte a live run's.

use hedgehog_domain::Event;
use hedgehog_store::StreamId;
use uuid::Uuid;

/// Namespace of the ids of decided events (UUID v5 over stream, version and payload).
const DECISION_NAMESPACE: Uuid = Uuid::from_u128(0x6865_6467_6568_6f67_2d64_6563_6964_6531);

/// The id of a decided event: the same decision at the same place always gets the same id.
pub fn decision_id(stream: &StreamId, version: i64, event: &Event) -> Uuid {
    let payload = event.encode().unwrap_or_default();
    Uuid::new_v5(
        &DECISION_NAMESPACE,
        format!("{stream}:{version}:{payload}").as_bytes(),
    )
}
