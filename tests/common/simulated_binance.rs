//! The simulated Binance (`hedgehog_sim::exchange`, what `hedgehog exchange serve` runs) set up
//! for the adapter's tests, in-process on 127.0.0.1: the exchange info and the account of
//! Binance's own captured and documented payloads (`tests/fixtures/binance-rest/`), BTCUSDT's
//! real filters, and the exchange's fault injection ([`Scripted`]: a 429, a 418, an error code,
//! a lost answer, a hang) and request log. There is no other fake Binance REST.

use hedgehog_domain::events::TradeReceived;
use hedgehog_sim::exchange::{Control, ExchangeOptions, ExchangeServer, Start};
use rust_decimal::Decimal;
use serde_json::Value;

pub use hedgehog_sim::exchange::{Fault as Scripted, Seen};

pub const API_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
pub const SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/binance-rest/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap()
}

/// A running simulated Binance and its controls.
#[derive(Clone)]
pub struct SimBinance {
    control: Control,
    /// The exchange's clock runs this far ahead of the machine's (ms).
    pub skew_ms: i64,
    pub url: String,
}

impl SimBinance {
    /// Starts it on 127.0.0.1, its clock `skew_ms` ahead of the machine's: the 2021 capture's
    /// exchange info (BTCUSDT and ETHUSDT, 1,200 weight a minute; BNBUSDT added from the
    /// bundled 2024 snapshot, for commissions charged in BNB), the documented account's
    /// balances and commission, and 1,000,000 USDT to buy with.
    pub async fn start(skew_ms: i64) -> SimBinance {
        let mut info: Value =
            serde_json::from_str(&fixture("http_spot_market_exchange_info.json")).unwrap();
        let bundled: Value =
            serde_json::from_str(&hedgehog_binance::exchange_info::bundled_json().unwrap())
                .unwrap();
        let bnb = bundled["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["symbol"] == "BNBUSDT")
            .unwrap()
            .clone();
        info["symbols"].as_array_mut().unwrap().push(bnb);
        let info = info.to_string();
        let account: Value = serde_json::from_str(&fixture("account_response.json")).unwrap();
        let mut balances: Vec<(String, Decimal)> = account["balances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let free = b["free"].as_str().unwrap().parse().unwrap();
                (b["asset"].as_str().unwrap().to_owned(), free)
            })
            .collect();
        balances.push(("USDT".to_owned(), Decimal::from(1_000_000)));
        let rate = account["commissionRates"]["maker"].as_str().unwrap();
        let options = ExchangeOptions {
            files: Vec::new(),
            speed: 0.0,
            start: Start::FirstStreamClient,
            import: Default::default(),
            api_key: API_KEY.to_owned(),
            secret: SECRET.to_owned(),
            balances,
            commission: rate.parse().unwrap(),
            exchange_info_json: info,
            exchange_info_origin: "the 2021 capture".to_owned(),
            follow: None,
            clock_skew_ms: skew_ms,
            cuts: None,
        };
        let server = ExchangeServer::bind(([127, 0, 0, 1], 0).into(), options)
            .await
            .unwrap();
        let url = format!("http://{}", server.local_addr().unwrap());
        let control = server.control();
        tokio::spawn(server.serve(std::future::pending()));
        SimBinance {
            control,
            skew_ms,
            url,
        }
    }

    /// The next request to `method path` gets `what`.
    pub fn script(&self, method: &str, path: &str, what: Scripted) {
        self.control.script(method, path, what);
    }

    /// The market data (`historicalTrades`, `klines`) knows these trades from now on.
    pub fn serve_trades<'a>(&self, trades: impl IntoIterator<Item = &'a TradeReceived>) {
        let trades: Vec<TradeReceived> = trades.into_iter().cloned().collect();
        self.control.record(&trades);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.control.seen()
    }

    /// The order `client_order_id` executes `quantity` for `quote` in all, with no report sent
    /// (one the user data stream has not delivered yet): what a cancel then answers.
    pub fn execute(&self, client_order_id: &str, quantity: &str, quote: &str) {
        let executed = self.control.execute_unreported(
            client_order_id,
            quantity.parse().unwrap(),
            quote.parse().unwrap(),
        );
        assert!(
            executed,
            "an open order with client order id {client_order_id}"
        );
    }

    pub fn orders(&self) -> Vec<Value> {
        self.control.orders()
    }
}
