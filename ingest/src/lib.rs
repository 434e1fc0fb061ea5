//! `hedgehog-ingest`: where market trades are born as events. Files (`import`) and the live
//! trade stream (`streamer`) both end here: batched per market stream, put back in trade-id
//! order (`sequencer`), deduplicated by deterministic ids (`ids`), gaps counted and backfilled,
//! appended to the store.

pub mod ids;
pub mod import;
pub mod sequencer;
pub mod streamer;
