//! Market trades in typed columns (`market_trades`, migration "market trades"): the log's bulk,
//! stored in about a quarter of the space their JSON took and read without a JSON parser.
//!
//! Why a table of their own: a busy symbol makes millions of trades a day, and as rows of
//! `events` each carried its stream's name, its type's name, a 16-byte id with an index of its
//! own and its fields as JSON text (196 bytes a trade, and 92 more in indexes). Here a trade is
//! a row of integers: its stream as a number (`trade_streams`), its id, price and quantity as
//! significands, its times as lags from the trade's time. Its event id is not stored when it is
//! the one derived from the trade ([`trade_event_id`]), as every importer and streamer makes it.
//!
//! What goes here ([`TradeRow::of`], [`crate::PreparedBatch`]): a `TradeReceived` of a market
//! stream (`trades-X`, `usdm-trades-X`) about that stream's symbol, with no metadata, no
//! correlation and numbers that fit. Anything else stays a row of `events`, as before; readers
//! merge both by position, so which table holds an event is invisible above the backends.
//!
//! **Invariant**: a row reads back as exactly the event written, byte for byte once encoded:
//! decimals keep their scale (trailing zeros are counted, not dropped), times and ids are
//! restored, and the event id is the derived one only when the writer's was.

use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::{Symbol, Timestamp, TradeKind};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{StoreError, StreamId};

/// The event id of a trade: a UUID v7 whose time is the trade's and whose other bits are a
/// name-based hash of (stream, trade id). Deterministic, so a re-import yields the same events,
/// and a stored trade need not keep it.
pub fn trade_event_id(stream: &StreamId, trade: &TradeReceived) -> Uuid {
    let name = format!("{}:{}", stream.as_str(), trade.trade_id);
    let hash = Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes());
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&hash.as_bytes()[..10]);
    let millis = u64::try_from(trade.trade_time.millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid()
}

/// The `form` column's bits: what a trade's numbers need besides their significands.
mod form {
    pub const MAKER: i64 = 1;
    /// Two bits of kind: 0 market, 1 insurance fund, 2 ADL.
    pub const KIND_SHIFT: u32 = 1;
    pub const PRICE_SCALE_SHIFT: u32 = 3;
    pub const PRICE_ZEROS_SHIFT: u32 = 8;
    pub const QUANTITY_SCALE_SHIFT: u32 = 13;
    pub const QUANTITY_ZEROS_SHIFT: u32 = 18;
    /// Every field is five bits (scales and trailing zeros are at most 28).
    pub const FIVE: i64 = 0b1_1111;
    /// Bits above the last field: set means the row is not one this version wrote.
    pub const UNKNOWN: i64 = !((1 << 23) - 1);
}

/// A trade's columns in `market_trades`, but for its place (position, stream, version) and
/// its recorded time, which the append assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TradeRow {
    pub trade_id: i64,
    /// The price's significand without its trailing zeros (`form` counts them).
    pub price: i64,
    pub quantity: i64,
    pub form: i64,
    pub trade_time: i64,
    /// `event_time - trade_time`.
    pub event_lag: i64,
    pub buyer_order_id: Option<i64>,
    pub seller_order_id: Option<i64>,
    pub first_trade_id: Option<i64>,
    /// The event id when it is not the derived one ([`TradeRow::settle`]).
    pub event_id: Option<Uuid>,
}

/// A decimal as (significand without trailing zeros, scale, zeros removed), if it fits.
fn split(value: &Decimal) -> Option<(i64, i64, i64)> {
    let mut significand = value.mantissa();
    let mut zeros = 0_i64;
    while significand != 0 && significand % 10 == 0 {
        significand /= 10;
        zeros += 1;
    }
    // The whole significand must fit too: the view rebuilds it as an integer.
    i64::try_from(value.mantissa()).ok()?;
    Some((
        i64::try_from(significand).ok()?,
        i64::from(value.scale()),
        zeros,
    ))
}

/// The decimal of (significand, scale, zeros): [`split`]'s inverse.
fn join(significand: i64, scale: i64, zeros: i64) -> Option<Decimal> {
    let whole =
        i128::from(significand).checked_mul(10_i128.checked_pow(zeros.try_into().ok()?)?)?;
    Decimal::try_from_i128_with_scale(whole, scale.try_into().ok()?).ok()
}

fn optional(id: Option<u64>) -> Option<Option<i64>> {
    match id {
        None => Some(None),
        Some(id) => i64::try_from(id).ok().map(Some),
    }
}

impl TradeRow {
    /// The row of `trade`, when every number fits its column; `None`: keep it as JSON.
    pub(crate) fn of(trade: &TradeReceived) -> Option<TradeRow> {
        let kind = match trade.kind {
            TradeKind::Market => 0,
            TradeKind::InsuranceFund => 1,
            TradeKind::Adl => 2,
            TradeKind::Other(_) => return None,
        };
        let (price, price_scale, price_zeros) = split(&trade.price)?;
        let (quantity, quantity_scale, quantity_zeros) = split(&trade.quantity)?;
        let maker = if trade.buyer_is_maker { form::MAKER } else { 0 };
        let form = maker
            | (kind << form::KIND_SHIFT)
            | (price_scale << form::PRICE_SCALE_SHIFT)
            | (price_zeros << form::PRICE_ZEROS_SHIFT)
            | (quantity_scale << form::QUANTITY_SCALE_SHIFT)
            | (quantity_zeros << form::QUANTITY_ZEROS_SHIFT);
        Some(TradeRow {
            trade_id: i64::try_from(trade.trade_id).ok()?,
            price,
            quantity,
            form,
            trade_time: trade.trade_time.millis(),
            event_lag: trade
                .event_time
                .millis()
                .checked_sub(trade.trade_time.millis())?,
            buyer_order_id: optional(trade.buyer_order_id)?,
            seller_order_id: optional(trade.seller_order_id)?,
            first_trade_id: optional(trade.first_trade_id)?,
            event_id: None,
        })
    }

    /// Whether the trade may be a row of `stream` with `event_id`: a market stream of the
    /// trade's symbol. Keeps the id when it is not the derived one.
    pub(crate) fn settle(&mut self, stream: &StreamId, trade: &TradeReceived, id: Uuid) -> bool {
        if symbol_of(stream).as_ref() != Some(&trade.symbol) {
            return false;
        }
        self.event_id = (trade_event_id(stream, trade) != id).then_some(id);
        true
    }

    /// `recorded_at` as the row keeps it: a lag after the trade's time (small when live).
    pub(crate) fn recorded_lag(&self, recorded_at: i64) -> i64 {
        recorded_at.wrapping_sub(self.trade_time)
    }

    /// The trade this row holds, of `symbol` (its stream's); `position` names a corrupt row.
    pub(crate) fn trade(&self, symbol: Symbol, position: i64) -> Result<TradeReceived, StoreError> {
        let corrupt = |column: &'static str, value: String| StoreError::Corrupt {
            position,
            column,
            value,
        };
        let form = self.form;
        let field = |shift: u32| (form >> shift) & form::FIVE;
        if form & form::UNKNOWN != 0 {
            return Err(corrupt("form", form.to_string()));
        }
        let kind = match (form >> form::KIND_SHIFT) & 0b11 {
            0 => TradeKind::Market,
            1 => TradeKind::InsuranceFund,
            2 => TradeKind::Adl,
            _ => return Err(corrupt("form", form.to_string())),
        };
        let price = join(
            self.price,
            field(form::PRICE_SCALE_SHIFT),
            field(form::PRICE_ZEROS_SHIFT),
        )
        .ok_or_else(|| corrupt("price", self.price.to_string()))?;
        let quantity = join(
            self.quantity,
            field(form::QUANTITY_SCALE_SHIFT),
            field(form::QUANTITY_ZEROS_SHIFT),
        )
        .ok_or_else(|| corrupt("quantity", self.quantity.to_string()))?;
        let unsigned = |value: i64, column| {
            u64::try_from(value).map_err(|_| corrupt(column, value.to_string()))
        };
        Ok(TradeReceived {
            symbol,
            trade_id: unsigned(self.trade_id, "trade_id")?,
            price,
            quantity,
            trade_time: Timestamp(self.trade_time),
            event_time: Timestamp(self.trade_time.wrapping_add(self.event_lag)),
            buyer_is_maker: form & form::MAKER != 0,
            buyer_order_id: self
                .buyer_order_id
                .map(|id| unsigned(id, "buyer_order_id"))
                .transpose()?,
            seller_order_id: self
                .seller_order_id
                .map(|id| unsigned(id, "seller_order_id"))
                .transpose()?,
            first_trade_id: self
                .first_trade_id
                .map(|id| unsigned(id, "first_trade_id"))
                .transpose()?,
            kind,
        })
    }
}

/// The symbol of a market stream's trades, parsed from its name.
pub(crate) fn symbol_of(stream: &StreamId) -> Option<Symbol> {
    stream.market_symbol().map(|(_, symbol)| symbol)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hedgehog_domain::events::Event;

    fn trade(price: &str, quantity: &str) -> TradeReceived {
        TradeReceived {
            symbol: Symbol::parse("ADAUSDT").unwrap(),
            trade_id: 14364025,
            price: price.parse().unwrap(),
            quantity: quantity.parse().unwrap(),
            trade_time: Timestamp(1559520022517),
            event_time: Timestamp(1559520022520),
            buyer_is_maker: false,
            buyer_order_id: Some(71181005),
            seller_order_id: Some(71180991),
            first_trade_id: None,
            kind: TradeKind::Market,
        }
    }

    fn round_trip(t: &TradeReceived) -> TradeReceived {
        let row = TradeRow::of(t).expect("fits");
        row.trade(t.symbol.clone(), 1).expect("decodes")
    }

    #[test]
    fn a_row_reads_back_as_the_trade_byte_for_byte() {
        for (price, quantity) in [
            ("0.09643000", "1617.50000000"),
            ("0", "0.00000000"),
            ("100", "1"),
            ("26000.10", "0.00100000"),
            ("-1.5", "1234567.123456789012"),
        ] {
            let t = trade(price, quantity);
            let back = round_trip(&t);
            assert_eq!(back, t);
            let (a, b) = (Event::TradeReceived(t), Event::TradeReceived(back));
            assert_eq!(a.encode_stored().unwrap(), b.encode_stored().unwrap());
        }
        let mut t = trade("1.0", "2.00");
        t.buyer_is_maker = true;
        t.kind = TradeKind::Adl;
        t.buyer_order_id = None;
        t.first_trade_id = Some(14364001);
        t.event_time = Timestamp(1559520022000);
        assert_eq!(round_trip(&t), t);
    }

    #[test]
    fn what_does_not_fit_stays_json() {
        let mut t = trade("1", "1");
        t.kind = TradeKind::Other("BLOCK".into());
        assert!(TradeRow::of(&t).is_none());
        let mut t = trade("1", "1");
        t.trade_id = u64::MAX;
        assert!(TradeRow::of(&t).is_none());
        let t = trade("79228162514264337593543950335", "1");
        assert!(TradeRow::of(&t).is_none());
    }

    #[test]
    fn only_a_market_stream_of_the_trades_symbol_holds_it() {
        let t = trade("1", "1");
        let stream = StreamId::new("trades-ADAUSDT").unwrap();
        let mut row = TradeRow::of(&t).unwrap();
        assert!(row.settle(&stream, &t, trade_event_id(&stream, &t)));
        assert_eq!(row.event_id, None, "the derived id is not kept");
        let other = Uuid::from_u128(7);
        assert!(row.settle(&stream, &t, other));
        assert_eq!(row.event_id, Some(other));
        for name in ["trades-BTCUSDT", "trading-ADAUSDT", "orders"] {
            let stream = StreamId::new(name).unwrap();
            assert!(!row.settle(&stream, &t, other), "{name}");
        }
        assert!(row.settle(&StreamId::new("usdm-trades-ADAUSDT").unwrap(), &t, other));
    }

    #[test]
    fn a_corrupt_form_is_named() {
        let t = trade("1", "1");
        let mut row = TradeRow::of(&t).unwrap();
        row.form |= 1 << 40;
        let err = row.trade(t.symbol.clone(), 42).unwrap_err();
        assert!(err.to_string().contains("42"), "{err}");
    }
}
