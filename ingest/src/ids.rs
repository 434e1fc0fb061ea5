//! Deterministic trade event ids: the same trade always gets the same id, so a re-import or a
//! replayed stream is recognised as what the store already holds (its idempotency).

use hedgehog_domain::events::TradeReceived;
use uuid::Uuid;

use hedgehog_store::StreamId;

/// The event id of a trade: a UUID v7 whose time is the trade's and whose other bits are a
/// name-based hash of (stream, trade id). Deterministic, so a re-import yields the same events.
pub fn trade_event_id(stream: &StreamId, trade: &TradeReceived) -> Uuid {
    let name = format!("{}:{}", stream.as_str(), trade.trade_id);
    let hash = Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes());
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&hash.as_bytes()[..10]);
    let millis = u64::try_from(trade.trade_time.millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hedgehog_domain::Symbol;

    #[test]
    fn event_ids_are_deterministic_v7() {
        let sym = Symbol::parse("BTCUSDT").unwrap();
        let stream = StreamId::trades(&sym);
        let t = hedgehog_domain::testkit::trade("BTCUSDT", 3071245454)
            .price(rust_decimal::Decimal::new(2816547, 2))
            .at(1680652799999)
            .build();
        let a = trade_event_id(&stream, &t);
        assert_eq!(a, trade_event_id(&stream, &t));
        assert_eq!(a.get_version_num(), 7);
        let (secs, nanos) = a.get_timestamp().unwrap().to_unix();
        assert_eq!(secs * 1000 + u64::from(nanos) / 1_000_000, 1680652799999);
        let other = StreamId::new("trades-ETHUSDT").unwrap();
        assert_ne!(a, trade_event_id(&other, &t));
    }
}
