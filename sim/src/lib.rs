//! `hedgehog-sim`: the simulated Binance on 127.0.0.1, for demos, tests, `hedgehog exchange
//! serve` and `hedgehog replay-server`: one exchange (`exchange`) behind Binance's spot API (REST,
//! trade stream and WebSocket API), playing recorded trades from its `tape`.

pub mod exchange;
pub mod tape;
