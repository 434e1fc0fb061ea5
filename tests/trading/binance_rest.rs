//! The Binance REST adapter against the simulated Binance on 127.0.0.1 (what `exchange serve`
//! runs), which checks every request's key, signature, timestamp, parameters and filters, and
//! whose fault injection plays 429s, 418s, errors, lost answers and hangs. (That the client
//! reads Binance's own documented payloads is checked in `binance/src/rest.rs`.)

use crate::common;
use crate::common::simulated_binance;

use std::time::{Duration, Instant};

use hedgehog_binance::rest::{
    Credentials, NewOrder, OrderRef, OrderStatus, RateLimit, RateLimitType, RestClient, RestError,
};
use hedgehog_domain::{Side, Symbol};
use hedgehog_store::StreamId;
use rust_decimal_macros::dec;
use serde_json::json;
use simulated_binance::{Scripted, SimBinance, API_KEY, SECRET};

fn btcusdt() -> Symbol {
    Symbol::parse("BTCUSDT").unwrap()
}

fn client(mock: &SimBinance, timeout: Duration) -> RestClient {
    RestClient::new(&mock.url, Some(Credentials::new(API_KEY, SECRET)), timeout)
}

fn buy(client_order_id: &str) -> NewOrder {
    NewOrder {
        symbol: btcusdt(),
        side: Side::Buy,
        price: dec!(60000.50),
        quantity: dec!(0.00100),
        client_order_id: client_order_id.to_owned(),
    }
}

#[tokio::test]
async fn signed_requests_carry_key_timestamp_window_and_signature() {
    // The mock's clock runs 40 s ahead: without measuring it, every signed request would be
    // refused (-1021).
    let mock = SimBinance::start(40_000).await;
    let rest = client(&mock, Duration::from_secs(5));
    rest.ping().await.unwrap();
    let offset = rest.sync_time().await.unwrap();
    assert!((offset - 40_000).abs() < 1_000, "offset {offset}");

    let (rules, limits) = rest.exchange_info().await.unwrap();
    let btc = rules
        .get(&btcusdt())
        .expect("BTCUSDT in the captured exchangeInfo");
    assert_eq!(btc.symbol, btcusdt());
    assert!(limits
        .iter()
        .any(|l| l.rate_limit_type == RateLimitType::RequestWeight && l.limit == 1200));
    // The client keeps to the limits exchangeInfo gave.
    assert!(rest
        .limits()
        .iter()
        .any(|l| l.header == "x-mbx-used-weight-1m" && l.limit == 1200));

    let placed = rest
        .place_limit_order(&buy("hh-BTCUSDT-1-B"))
        .await
        .unwrap();
    assert_eq!(placed.status, OrderStatus::New);
    assert_eq!(placed.client_order_id, "hh-BTCUSDT-1-B");
    assert_eq!(
        (placed.price, placed.orig_qty),
        (dec!(60000.5), dec!(0.001))
    );
    assert!(placed.fills.is_empty());

    let seen = mock.seen();
    let post = seen.iter().find(|s| s.method == "POST").unwrap();
    assert_eq!(post.api_key.as_deref(), Some(API_KEY));
    for (key, value) in [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.001"),
        ("price", "60000.5"),
        ("newClientOrderId", "hh-BTCUSDT-1-B"),
        ("recvWindow", "5000"),
    ] {
        assert_eq!(
            post.params.get(key).map(String::as_str),
            Some(value),
            "{key}"
        );
    }
    let timestamp: i64 = post.params["timestamp"].parse().unwrap();
    assert!(
        (post.at - timestamp).abs() < 2_000,
        "timestamp on Binance's clock"
    );
    assert!(post.params.contains_key("signature"));
    // Public endpoints carry no key and no signature.
    let ping = seen.iter().find(|s| s.path == "/api/v3/ping").unwrap();
    assert!(ping.api_key.is_none() && ping.params.is_empty());

    let by_client = OrderRef::ClientId("hh-BTCUSDT-1-B".into());
    let queried = rest.query_order(&btcusdt(), &by_client).await.unwrap();
    assert_eq!(queried.order_id, placed.order_id);
    let open = rest.open_orders(&btcusdt()).await.unwrap();
    assert_eq!(open.len(), 1);
    let cancelled = rest
        .cancel_order(&btcusdt(), &OrderRef::Id(placed.order_id))
        .await
        .unwrap();
    assert_eq!(cancelled.status, OrderStatus::Canceled);
    assert!(rest.open_orders(&btcusdt()).await.unwrap().is_empty());

    let account = rest.account().await.unwrap();
    assert!(account.can_trade);
    assert_eq!(account.balance("BTC").0, dec!(4723846.89208129));
    assert_eq!(account.commission_rates.unwrap().maker, dec!(0.0015));

    // The weight Binance reported is what the client counts.
    let used = rest
        .limits()
        .into_iter()
        .find(|l| l.header == "x-mbx-used-weight-1m")
        .unwrap()
        .used;
    assert!(
        used >= 1 + 1 + 20 + 1 + 4 + 6 + 1 + 6 + 20,
        "weight used {used}"
    );
}

#[tokio::test]
async fn binance_errors_are_typed_and_name_the_endpoint() {
    let mock = SimBinance::start(0).await;
    let rest = client(&mock, Duration::from_secs(5));

    // Real filter failures, from BTCUSDT's filters: a price off the tick, a quantity off the step.
    let mut off_tick = buy("hh-1");
    off_tick.price = dec!(60000.505);
    let e = rest.place_limit_order(&off_tick).await.unwrap_err();
    assert!(matches!(e, RestError::FilterFailure { .. }), "{e}");
    assert!(e.to_string().contains("PRICE_FILTER"), "{e}");
    let mut off_step = buy("hh-2");
    off_step.quantity = dec!(0.0000001);
    let e = rest.place_limit_order(&off_step).await.unwrap_err();
    assert!(
        e.to_string().contains("LOT_SIZE") && e.to_string().contains("POST /api/v3/order"),
        "{e}"
    );

    mock.script(
        "POST",
        "/api/v3/order",
        Scripted::Error(
            400,
            -2010,
            "Account has insufficient balance for requested action.".into(),
        ),
    );
    let e = rest.place_limit_order(&buy("hh-3")).await.unwrap_err();
    assert!(matches!(e, RestError::InsufficientBalance { .. }), "{e}");

    let e = rest
        .cancel_order(&btcusdt(), &OrderRef::Id(999))
        .await
        .unwrap_err();
    assert!(matches!(e, RestError::UnknownOrder { .. }), "{e}");
    let e = rest
        .query_order(&btcusdt(), &OrderRef::ClientId("nope".into()))
        .await
        .unwrap_err();
    assert!(matches!(e, RestError::UnknownOrder { .. }), "{e}");

    // A wrong secret: Binance's -1022, told as a key problem.
    let wrong = RestClient::new(
        &mock.url,
        Some(Credentials::new(API_KEY, "not-the-secret")),
        Duration::from_secs(5),
    );
    let e = wrong.account().await.unwrap_err();
    assert!(matches!(e, RestError::BadSignature { .. }), "{e}");
    assert!(e.to_string().contains("BINANCE_API_SECRET"), "{e}");
    // No keys at all: refused before any request.
    let before = mock.seen().len();
    let keyless = RestClient::new(&mock.url, None, Duration::from_secs(5));
    let e = keyless.account().await.unwrap_err();
    assert!(matches!(e, RestError::NoCredentials { .. }), "{e}");
    assert_eq!(mock.seen().len(), before);
    // Nothing was placed by any of it.
    assert!(mock.orders().is_empty());
}

#[tokio::test]
async fn a_clock_that_drifts_is_measured_again_once() {
    let mock = SimBinance::start(0).await;
    let rest = client(&mock, Duration::from_secs(5));
    mock.script(
        "GET",
        "/api/v3/account",
        Scripted::Error(
            400,
            -1021,
            "Timestamp for this request is outside of the recvWindow.".into(),
        ),
    );
    rest.account().await.unwrap();
    let paths: Vec<String> = mock.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        paths,
        ["/api/v3/account", "/api/v3/time", "/api/v3/account"]
    );
}

#[tokio::test]
async fn a_429_pauses_for_retry_after_and_a_418_halts_without_touching_the_network() {
    let mock = SimBinance::start(0).await;
    let rest = client(&mock, Duration::from_secs(5));
    mock.script("GET", "/api/v3/openOrders", Scripted::TooMany(1));
    let started = Instant::now();
    rest.open_orders(&btcusdt()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited {:?}",
        started.elapsed()
    );
    let opens = mock
        .seen()
        .iter()
        .filter(|s| s.path == "/api/v3/openOrders")
        .count();
    assert_eq!(opens, 2, "retried once after Retry-After");

    mock.script("GET", "/api/v3/account", Scripted::Teapot(120));
    let e = rest.account().await.unwrap_err();
    assert!(matches!(e, RestError::Banned { .. }), "{e}");
    assert!(e.to_string().contains("418"), "{e}");
    let before = mock.seen().len();
    let e = rest.place_limit_order(&buy("hh-ban")).await.unwrap_err();
    assert!(matches!(e, RestError::Banned { .. }), "{e}");
    assert_eq!(mock.seen().len(), before, "no request while banned");
}

#[tokio::test]
async fn the_client_waits_for_the_next_window_rather_than_exceed_an_order_limit() {
    let mock = SimBinance::start(0).await;
    let rest = client(&mock, Duration::from_secs(5));
    rest.set_rate_limits(&[RateLimit {
        rate_limit_type: RateLimitType::Orders,
        interval: "SECOND".into(),
        interval_num: 10,
        limit: 2,
    }]);
    for i in 0..3 {
        rest.place_limit_order(&buy(&format!("hh-w-{i}")))
            .await
            .unwrap();
    }
    let posts: Vec<i64> = mock
        .seen()
        .iter()
        .filter(|s| s.method == "POST")
        .map(|s| s.at)
        .collect();
    assert_eq!(posts.len(), 3);
    let window = |t: i64| t - t.rem_euclid(10_000);
    // Never more than two orders in one 10-second window.
    assert!(
        window(posts[2]) > window(posts[0]),
        "third order at {} in the window of the first ({})",
        posts[2],
        posts[0]
    );
}

#[tokio::test]
async fn a_lost_answer_is_resolved_by_looking_the_order_up_never_by_placing_it_twice() {
    let mock = SimBinance::start(0).await;
    let rest = client(&mock, Duration::from_millis(300));

    // The order lands but its answer is lost: found by its client order id, placed once.
    mock.script(
        "POST",
        "/api/v3/order",
        Scripted::LoseAnswer(Duration::from_secs(1)),
    );
    let placed = rest.place_limit_order(&buy("hh-lost-1")).await.unwrap();
    assert_eq!(placed.client_order_id, "hh-lost-1");
    let posts = |mock: &SimBinance, id: &str| {
        mock.seen()
            .iter()
            .filter(|s| s.method == "POST" && s.params["newClientOrderId"] == id)
            .count()
    };
    assert_eq!(posts(&mock, "hh-lost-1"), 1);
    assert_eq!(mock.orders().len(), 1);

    // The request never lands: the lookup says unknown, and it is placed again, once.
    mock.script(
        "POST",
        "/api/v3/order",
        Scripted::Hang(Duration::from_secs(1)),
    );
    let placed = rest.place_limit_order(&buy("hh-lost-2")).await.unwrap();
    assert_eq!(placed.client_order_id, "hh-lost-2");
    assert_eq!(posts(&mock, "hh-lost-2"), 2);
    let orders = mock.orders();
    assert_eq!(orders.len(), 2);
    assert_eq!(
        orders
            .iter()
            .filter(|o| o["clientOrderId"] == json!("hh-lost-2"))
            .count(),
        1
    );
}

/// The user data stream client against a mock WebSocket API on 127.0.0.1: each connection must
/// open with a correctly signed `userDataStream.subscribe.signature`; the mock then sends
/// Binance's own execution report payloads (wrapped and bare) and drops the connection. The
/// client resubscribes, and announces every subscription before that connection's reports.
#[tokio::test]
async fn the_user_data_stream_subscribes_signed_relays_reports_and_resubscribes() {
    use futures::SinkExt;
    use hedgehog_binance::user_stream::Feed;
    use hedgehog_domain::trading::Report;
    use tokio_tungstenite::tungstenite::Message;

    let fixture = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/binance-rest/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let (new, trade) = (
        fixture("execution_report_wrapped.json"),
        fixture("execution_report_trade.json"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws-api/v3", listener.local_addr().unwrap());
    let (checked, mut subscriptions) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for _ in 0..2 {
            let (mut ws, request) = accept_subscription(&listener).await;
            let params = &request["params"];
            let payload = format!(
                "apiKey={}&recvWindow={}&timestamp={}",
                params["apiKey"].as_str().unwrap(),
                params["recvWindow"],
                params["timestamp"]
            );
            let signed = params["signature"]
                == hedgehog_binance::rest::sign(SECRET.as_bytes(), &payload).as_str();
            checked
                .send((
                    request["method"].as_str().unwrap().to_owned(),
                    params["apiKey"] == API_KEY,
                    signed,
                ))
                .unwrap();
            let answer =
                json!({"id": request["id"], "status": 200, "result": {"subscriptionId": 0}});
            ws.send(Message::text(answer.to_string())).await.unwrap();
            ws.send(Message::text(new.clone())).await.unwrap();
            ws.send(Message::text(trade.clone())).await.unwrap();
            ws.close(None).await.unwrap();
        }
    });
    let (mut reports, stop, task) =
        follow_user_stream(url, hedgehog_ingest::streamer::IDLE_TIMEOUT);
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let next = tokio::time::timeout(Duration::from_secs(10), reports.recv())
            .await
            .expect("the feed goes on")
            .unwrap();
        seen.push(next);
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    for _ in 0..2 {
        let (method, key, signed) = subscriptions.recv().await.unwrap();
        assert_eq!(method, "userDataStream.subscribe.signature");
        assert!(
            key && signed,
            "the subscription carries our key and a valid signature"
        );
    }
    assert!(matches!(seen[0], Feed::Subscribed));
    assert!(
        matches!(seen[2], Feed::Subscribed),
        "resubscribed: {seen:?}"
    );
    for report in [&seen[1], &seen[3]] {
        let Feed::Report { symbol, report } = report else {
            panic!("{seen:?}")
        };
        assert_eq!(symbol.as_str(), "ETHUSDT");
        assert!(
            matches!(report, Report::Executed { cumulative_quantity, .. } if *cumulative_quantity == dec!(1)),
            "the TRADE report, not the NEW one: {report:?}"
        );
    }
}

/// What a live trader makes of Binance's answers to a placement: a refusal is a rejection of
/// that order (the domain turns it into `OrderRejected`), a 418 a halt, and an order placed is
/// placed once, under the client order id the log holds.
#[tokio::test]
async fn refusals_become_rejections_and_a_ban_a_halt() {
    use hedgehog_domain::events::OrderPlaced;
    use hedgehog_domain::trading::Report;
    use hedgehog_domain::types::{OrderType, TimeInForce};
    use hedgehog_domain::{Event, Timestamp};

    let mock = SimBinance::start(0).await;
    let rest = client(&mock, Duration::from_secs(2));
    let placed = |id: &str| {
        Event::OrderPlaced(OrderPlaced {
            symbol: btcusdt(),
            position_id: 1,
            trade_id: None,
            order_id: 1,
            client_order_id: id.to_owned(),
            side: Side::Buy,
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Gtc,
            price: dec!(60000.50),
            quantity: dec!(0.00100),
            time: Timestamp(1),
        })
    };
    mock.script(
        "POST",
        "/api/v3/order",
        Scripted::Error(
            400,
            -2010,
            "Account has insufficient balance for requested action.".into(),
        ),
    );
    let reports = hedgehog_binance::live::send(&rest, &[placed("refused-1")]).await;
    assert!(
        matches!(&reports[..], [Report::Rejected { client_order_id, reason, .. }]
            if client_order_id == "refused-1" && reason.contains("insufficient balance")),
        "{reports:?}"
    );
    assert!(mock.orders().is_empty());

    let reports = hedgehog_binance::live::send(&rest, &[placed("placed-1")]).await;
    assert!(
        reports.is_empty(),
        "a resting order reports nothing yet: {reports:?}"
    );
    assert_eq!(mock.orders().len(), 1);

    mock.script("POST", "/api/v3/order", Scripted::Teapot(120));
    let reports = hedgehog_binance::live::send(&rest, &[placed("banned-1")]).await;
    assert!(
        matches!(&reports[..], [Report::Halted { reason, .. }] if reason.contains("418")),
        "{reports:?}"
    );
    assert_eq!(mock.orders().len(), 1, "nothing placed while banned");
}

/// A live engine reads the exchange info again on a period: the filters it decides by follow
/// Binance's changes, and the rate limits are applied.
#[tokio::test]
async fn the_exchange_info_is_read_again_on_a_period() {
    let mock = SimBinance::start(0).await;
    let venue = hedgehog_binance::live::Venue::new(
        client(&mock, Duration::from_secs(2)),
        Default::default(),
    );
    assert!(venue.symbol_rules(&btcusdt()).is_none());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let refresher = tokio::spawn(hedgehog_binance::live::refresh_rules(
        venue.clone(),
        Duration::from_millis(50),
        stopped,
    ));
    let mut rules = venue.rules.subscribe();
    tokio::time::timeout(Duration::from_secs(10), rules.changed())
        .await
        .expect("refreshed within the period")
        .unwrap();
    let btc = venue.symbol_rules(&btcusdt()).expect("BTCUSDT listed");
    assert_eq!(btc.tick_size, dec!(0.01));
    stop.send(true).unwrap();
    refresher.await.unwrap();
    let reads = mock
        .seen()
        .iter()
        .filter(|s| s.path == "/api/v3/exchangeInfo")
        .count();
    assert!(reads >= 1);
}

/// The public `historicalTrades` (what the streamer fills gaps with): no key sent, pages of at
/// most 1,000 from the id asked for, decoded into trades in id order.
#[tokio::test]
async fn historical_trades_are_public_paged_and_in_id_order() {
    let mock = SimBinance::start(0).await;
    let trades: Vec<_> = (100..3_100u64)
        .map(|id| hedgehog_domain::events::TradeReceived {
            quantity: dec!(0.001),
            buyer_is_maker: id % 2 == 0,
            ..common::trade_at(
                "BTCUSDT",
                id,
                dec!(60000.01) + rust_decimal::Decimal::from(id % 7),
                1_700_000_000_000 + id as i64,
            )
        })
        .collect();
    mock.serve_trades(&trades);
    let keyless = RestClient::new(&mock.url, None, Duration::from_secs(5));

    let page = keyless
        .historical_trades(&btcusdt(), 1_500, 5_000)
        .await
        .unwrap();
    assert_eq!(page.len(), 1_000, "a page is at most 1,000 trades");
    let ids: Vec<u64> = page.iter().map(|t| t.id).collect();
    assert_eq!(ids, (1_500..2_500).collect::<Vec<_>>());
    let trade = page[0].clone().into_trade(&btcusdt());
    assert_eq!(trade, trades[1_400], "the same trade back");
    let asked = mock.seen().pop().unwrap();
    assert_eq!(asked.path, "/api/v3/historicalTrades");
    assert_eq!(asked.params["limit"], "1000");
    assert_eq!(asked.api_key, None, "public: no key sent");

    // Past the end: what there is, then nothing.
    let tail = keyless
        .historical_trades(&btcusdt(), 3_000, 500)
        .await
        .unwrap();
    assert_eq!(tail.len(), 100);
    assert!(keyless
        .historical_trades(&btcusdt(), 3_100, 500)
        .await
        .unwrap()
        .is_empty());
}

/// What a commission charged in BNB is counted at: BNBUSDT's price in the minute it was charged
/// (the close of that minute's kline), or `None` before BNBUSDT's first trade.
#[tokio::test]
async fn a_commission_asset_is_priced_by_the_minute_it_was_charged_in() {
    let mock = SimBinance::start(0).await;
    let bnb = hedgehog_domain::Symbol::parse("BNBUSDT").unwrap();
    let minute = 1_700_000_040_000i64; // a minute boundary
    let trades: Vec<_> = [
        (1u64, 0, dec!(600.1)),
        (2, 30_000, dec!(600.5)),
        (3, 61_000, dec!(601.0)),
    ]
    .into_iter()
    .map(|(id, at, price)| common::trade_at("BNBUSDT", id, price, minute + at))
    .collect();
    mock.serve_trades(&trades);
    let rest = RestClient::new(&mock.url, None, Duration::from_secs(5));
    assert_eq!(
        rest.price_at(&bnb, minute + 10_000).await.unwrap(),
        Some(dec!(600.5)),
        "the close of the minute it falls in"
    );
    assert_eq!(
        rest.price_at(&bnb, minute + 90_000).await.unwrap(),
        Some(dec!(601.0))
    );
    assert_eq!(rest.price_at(&bnb, minute - 1).await.unwrap(), None);
    let asked = mock.seen().pop().unwrap();
    assert_eq!(asked.path, "/api/v3/klines");
    assert_eq!(
        (
            asked.params["interval"].as_str(),
            asked.params["limit"].as_str()
        ),
        ("1m", "1")
    );
    assert_eq!(asked.api_key, None, "public: no key sent");
}

/// A live trader on BTCUSDT (one chunk of 100 USDT) against `mock`, and the BUY its first
/// trade placed: stored, and on the venue.
struct LiveBuy {
    db: common::TestDb,
    store: hedgehog_store::Store,
    rules: hedgehog_domain::exchange::SymbolRules,
    venue: hedgehog_binance::live::Venue,
    stop: tokio::sync::watch::Sender<bool>,
    running: tokio::task::JoinHandle<Result<(), hedgehog_engine::worker::TraderError>>,
    placed: hedgehog_domain::events::OrderPlaced,
}

/// The first event of the BTCUSDT trading stream that `pick` takes, once `ready` holds too,
/// polled for up to 20 s.
async fn recorded<T>(
    store: &hedgehog_store::Store,
    what: &str,
    pick: impl Fn(hedgehog_domain::Event) -> Option<T>,
    ready: impl Fn() -> bool,
) -> T {
    let started = Instant::now();
    loop {
        let events = store
            .read_stream_to_end(&StreamId::trading(&btcusdt()))
            .await
            .unwrap();
        if let Some(found) = events.iter().find_map(|e| pick(e.event.clone())) {
            if ready() {
                return found;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no {what} recorded: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn live_buy(mock: &SimBinance, at: i64) -> LiveBuy {
    use hedgehog_domain::{Event, Timestamp};
    use hedgehog_engine::aggregate::TradingAggregate;
    use hedgehog_engine::trading::{Request, SettingsChange};
    use hedgehog_store::{ExpectedVersion, NewEvent};

    let db = common::TestDb::sqlite();
    let store = db.open().await;
    let info = hedgehog_binance::exchange_info::bundled().unwrap();
    let rules = info.get(&btcusdt()).unwrap().clone();
    let settings = SettingsChange {
        chunks: Some(1),
        budget: Some(dec!(100)),
        ..SettingsChange::default()
    };
    for request in [Request::Settings(settings), Request::Start] {
        hedgehog_engine::trading::command(&store, &rules, request, Timestamp(at))
            .await
            .unwrap();
    }
    let venue =
        hedgehog_binance::live::Venue::new(client(mock, Duration::from_secs(2)), info.clone());
    let aggregate = TradingAggregate {
        rules: rules.clone(),
        strategies: Default::default(),
        paper: None,
    };
    let trader = hedgehog_engine::worker::Trader::load(store.clone(), aggregate)
        .await
        .unwrap()
        .on_venue(venue.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(trader.run(stopped));
    store
        .append(
            &StreamId::trades(&btcusdt()),
            ExpectedVersion::Any,
            vec![NewEvent::new(common::trade_at(
                "BTCUSDT",
                7,
                dec!(60000),
                at + 10_000,
            ))],
        )
        .await
        .unwrap();
    // Sent once stored: wait for the venue to have it, not just the log.
    let placed = recorded(
        &store,
        "BUY placed",
        |e| match e {
            Event::OrderPlaced(o) => Some(o),
            _ => None,
        },
        || mock.orders().len() == 1,
    )
    .await;
    LiveBuy {
        db,
        store,
        rules,
        venue,
        stop,
        running,
        placed,
    }
}

/// Live, end to end: a fill whose commission Binance took in BNB is recorded with what it was
/// worth in USDT when charged (BNBUSDT's price that minute), so fees and profit count it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_fill_charged_in_bnb_counts_at_bnbs_price() {
    use hedgehog_binance::user_stream::Feed;
    use hedgehog_domain::events::Commission;
    use hedgehog_domain::trading::Report;
    use hedgehog_domain::{Event, Timestamp};

    let mock = SimBinance::start(0).await;
    let at = 1_700_000_040_000i64;
    mock.serve_trades(&[common::trade_at("BNBUSDT", 1, dec!(612.3), at + 5_000)]);
    let LiveBuy {
        store,
        venue,
        stop,
        running,
        placed,
        ..
    } = live_buy(&mock, at).await;
    let report = Report::Executed {
        client_order_id: placed.client_order_id.clone(),
        trade_id: Some(99),
        cumulative_quantity: placed.quantity,
        cumulative_quote_quantity: placed.quantity * placed.price,
        commission: Some(Commission {
            amount: dec!(0.0001),
            asset: "BNB".into(),
        }),
        last_quantity: placed.quantity,
        commission_price: None,
        time: Timestamp(at + 20_000),
    };
    venue
        .feed
        .send(Feed::Report {
            symbol: btcusdt(),
            report,
        })
        .unwrap();
    let fill = recorded(
        &store,
        "fill",
        |e| match e {
            Event::OrderFilled(f) => Some(f),
            _ => None,
        },
        || true,
    )
    .await;
    assert_eq!(fill.commission_price, Some(dec!(612.3)));
    assert_eq!(fill.fee, dec!(0.06123), "0.0001 BNB at 612.3 USDT");
    assert_eq!(fill.base_fee, dec!(0));
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
}

/// A fill that lands on Binance between a recorded stop and its cancel (a `trading stop` from
/// another process, the fill not yet reported) comes back in the cancel's answer: the engine
/// records it as a fill after the cancel, and `trading status` reports what the position
/// bought as left unsold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_racing_a_stop_is_recorded_from_the_cancels_answer() {
    use hedgehog_domain::{Event, Timestamp};
    use hedgehog_engine::trading::Request;

    let mock = SimBinance::start(0).await;
    let at = 1_700_000_040_000i64;
    let LiveBuy {
        db,
        store,
        rules,
        stop,
        running,
        placed,
        ..
    } = live_buy(&mock, at).await;
    // Most of the BUY executes on Binance, unreported; then a stop is recorded.
    let quantity = dec!(0.001);
    assert!(placed.quantity > quantity, "{placed:?}");
    let quote = quantity * placed.price;
    mock.execute(
        &placed.client_order_id,
        &quantity.to_string(),
        &quote.to_string(),
    );
    hedgehog_engine::trading::command(&store, &rules, Request::Stop, Timestamp(at + 20_000))
        .await
        .unwrap();
    let late = recorded(
        &store,
        "fill from the cancel's answer",
        |e| match e {
            Event::OrderFilledAfterCancel(f) => Some(f),
            _ => None,
        },
        || true,
    )
    .await;
    assert_eq!(
        (late.quantity, late.cumulative_quantity, late.price),
        (quantity, quantity, placed.price)
    );
    assert_eq!(mock.orders()[0]["status"], "CANCELED");
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    let (state, _) = hedgehog_engine::trading::state(&store, &btcusdt())
        .await
        .unwrap();
    let left = state.left_unsold();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].quantity, quantity);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hedgehog"))
        .args(["--database-url", &db.url, "trading", "status", "BTCUSDT"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "left unsold by a stop: position {}: {quantity} BTC bought at {} USDT",
            late.position_id,
            placed.price.normalize()
        )),
        "{text}"
    );
}

/// The user data stream pings the venue itself, and a connection that goes silent (no answer,
/// not even a pong) is taken as dead: the client subscribes again on a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_user_data_stream_is_pinged_then_made_again() {
    use futures::{SinkExt, StreamExt};
    use hedgehog_binance::user_stream::Feed;
    use tokio_tungstenite::tungstenite::Message;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws-api/v3", listener.local_addr().unwrap());
    let (pinged, mut pings) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..2 {
            let (mut ws, request) = accept_subscription(&listener).await;
            let answer =
                json!({"id": request["id"], "status": 200, "result": {"subscriptionId": 0}});
            ws.send(Message::text(answer.to_string())).await.unwrap();
            // The client's own ping comes; then this side says nothing more, pongs included.
            let ping = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
            let _ = pinged.send(matches!(ping, Ok(Some(Ok(Message::Ping(_))))));
            held.push(ws);
        }
        held
    });
    let (mut reports, stop, task) = follow_user_stream(url, Duration::from_millis(600));
    for n in 0..2 {
        let next = tokio::time::timeout(Duration::from_secs(10), reports.recv())
            .await
            .unwrap_or_else(|_| panic!("subscription {n} within 10 s"))
            .unwrap();
        assert!(matches!(next, Feed::Subscribed), "{next:?}");
    }
    assert!(pings.recv().await.unwrap(), "the client pinged the venue");
    let held = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.len(), 2, "a second connection after the silence");
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// Follows the user data stream at `url` with our keys (REST unused): its feed, its stop switch
/// and the task.
fn follow_user_stream(
    url: String,
    idle: Duration,
) -> (
    tokio::sync::broadcast::Receiver<hedgehog_binance::user_stream::Feed>,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let feed = hedgehog_binance::user_stream::channel();
    let reports = feed.subscribe();
    let rest = std::sync::Arc::new(RestClient::new(
        "http://127.0.0.1:9",
        None,
        Duration::from_secs(1),
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(hedgehog_binance::user_stream::follow(
        url,
        rest,
        Credentials::new(API_KEY, SECRET),
        feed,
        idle,
        stopped,
    ));
    (reports, stop, task)
}

/// The next connection to the fake WebSocket API and its first request (the subscription).
async fn accept_subscription(
    listener: &tokio::net::TcpListener,
) -> (
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    serde_json::Value,
) {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let (socket, _) = listener.accept().await.unwrap();
    let mut ws = tokio_tungstenite::accept_async(socket).await.unwrap();
    let Some(Ok(Message::Text(request))) = ws.next().await else {
        panic!("no subscription request");
    };
    let request = serde_json::from_str(request.as_str()).unwrap();
    (ws, request)
}
