//! `hedgehog-sim`: a simulated Binance on 127.0.0.1, for demos, tests and `hedgehog exchange
//! serve`. `replay` plays recorded trades as Binance's trade stream; `exchange` is the paper
//! exchange behind Binance's spot API (REST, trade stream and WebSocket API).

pub mod exchange;
pub mod replay;
pub mod tape;
