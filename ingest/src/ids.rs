//! Deterministic trade event ids: the same trade always gets the same id, so a re-import or a
//! replayed stream is recognised as what the store already holds (its idempotency).

/// Lives with the store, which leaves it out of a stored trade's row when it is this one.
pub use hedgehog_store::trade_event_id;

#[cfg(test)]
mod tests {
    use super::*;
    use hedgehog_domain::Symbol;
    use hedgehog_store::StreamId;

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
