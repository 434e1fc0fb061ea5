"""Drives `hedgehog exchange serve` with python-binance, a Binance client nobody at Hedgehog
wrote: place, query and cancel orders, read balances and trades, and meet Binance's errors.

With a second exchange playing real BTCUSDT trades (TAPE_URL, the same keys, 100,000 USDT), it
also reads market data (24-hour ticker, book ticker, historical klines paged by startTime, UI
klines, aggregated trades) and trades on it: market orders by quantity and by quote, an IOC that
partly fills and expires, LIMIT_MAKER refused, every open order cancelled at once, all orders.

Usage: python python_binance_client.py BASE_URL API_KEY API_SECRET [TAPE_URL]
Exits 0 and prints "ok" when every check holds; any failed check raises.
"""
import sys
import time
from decimal import Decimal

from binance.client import Client
from binance.exceptions import BinanceAPIException

base, key, secret = sys.argv[1:4]


def client(k, s):
    c = Client(k, s, ping=False)
    c.API_URL = base + "/api"
    return c


def balance(c, asset):
    for b in c.get_account()["balances"]:
        if b["asset"] == asset:
            return Decimal(b["free"]), Decimal(b["locked"])
    return Decimal(0), Decimal(0)


def refused(code, call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except BinanceAPIException as e:
        assert e.code == code, (code, e.code, e.message)
        return e.message
    raise AssertionError(f"expected Binance error {code}")


c = client(key, secret)
c.ping()
assert c.get_server_time()["serverTime"] > 0
info = c.get_symbol_info("BTCUSDT")
assert info["symbol"] == "BTCUSDT" and info["quoteAsset"] == "USDT", info
assert balance(c, "USDT") == (Decimal(10000), Decimal(0))

order = c.order_limit_buy(
    symbol="BTCUSDT", quantity="0.001", price="50000.00", newClientOrderId="py-buy-1"
)
assert order["status"] == "NEW" and order["clientOrderId"] == "py-buy-1", order
assert balance(c, "USDT") == (Decimal(9950), Decimal(50))

by_client_id = c.get_order(symbol="BTCUSDT", origClientOrderId="py-buy-1")
by_id = c.get_order(symbol="BTCUSDT", orderId=order["orderId"])
assert by_client_id["orderId"] == by_id["orderId"] == order["orderId"]
assert Decimal(by_id["origQty"]) == Decimal("0.001")
assert [o["orderId"] for o in c.get_open_orders(symbol="BTCUSDT")] == [order["orderId"]]

assert "PRICE_FILTER" in refused(
    -1013, c.order_limit_buy, symbol="BTCUSDT", quantity="0.001", price="50000.001"
)
assert "insufficient balance" in refused(
    -2010, c.order_limit_buy, symbol="BTCUSDT", quantity="1", price="50000"
)
assert "Duplicate" in refused(
    -2010,
    c.order_limit_buy,
    symbol="BTCUSDT",
    quantity="0.001",
    price="50000.00",
    newClientOrderId="py-buy-1",
)
refused(-2013, c.get_order, symbol="BTCUSDT", origClientOrderId="nope")

cancelled = c.cancel_order(symbol="BTCUSDT", orderId=order["orderId"])
assert cancelled["status"] == "CANCELED", cancelled
assert c.get_open_orders(symbol="BTCUSDT") == []
assert balance(c, "USDT") == (Decimal(10000), Decimal(0))
refused(-2011, c.cancel_order, symbol="BTCUSDT", orderId=order["orderId"])
assert c.get_my_trades(symbol="BTCUSDT") == []

# Market data comes from the trades it plays; none were given to this one.
assert c.get_recent_trades(symbol="BTCUSDT") == []
assert c.get_historical_trades(symbol="BTCUSDT", fromId=1) == []
assert c.get_all_tickers() == []
assert "played yet" in refused(-1121, c.get_symbol_ticker, symbol="BTCUSDT")
assert "played yet" in refused(-1121, c.get_avg_price, symbol="BTCUSDT")

refused(-2015, client("wrong-key", secret).get_account)
refused(-1022, client(key, "wrong-secret").get_account)

if len(sys.argv) > 4:
    base = sys.argv[4]
    t = client(key, secret)
    deadline = time.time() + 30
    while True:
        try:
            t.get_symbol_ticker(symbol="BTCUSDT")
            break
        except BinanceAPIException as e:
            assert e.code == -1121 and time.time() < deadline, e.message
            time.sleep(0.2)

    day = t.get_ticker(symbol="BTCUSDT")
    last = Decimal(day["lastPrice"])
    assert 28000 < last < 28500 and day["count"] > 0, day
    assert Decimal(day["lowPrice"]) <= last <= Decimal(day["highPrice"]), day
    book = t.get_orderbook_ticker(symbol="BTCUSDT")
    assert Decimal(book["bidPrice"]) > 0 and Decimal(book["askPrice"]) > 0, book
    # Paged by startTime from before the tape: every candle once, in order.
    klines = t.get_historical_klines("BTCUSDT", Client.KLINE_INTERVAL_1MINUTE, 1680652000000)
    opens = [k[0] for k in klines]
    assert opens and opens == sorted(set(opens)) and all(o % 60000 == 0 for o in opens), opens
    assert 0 < sum(k[8] for k in klines) <= 3144
    assert len(t.get_ui_klines(symbol="BTCUSDT", interval="1s", limit=2)) <= 2
    aggregated = t.get_aggregate_trades(symbol="BTCUSDT", limit=3)
    assert 1 <= len(aggregated) <= 3 and aggregated[-1]["f"] <= aggregated[-1]["l"], aggregated
    assert "no order book" in refused(-1020, t.get_order_book, symbol="BTCUSDT")

    bought = t.order_market_buy(symbol="BTCUSDT", quantity="0.01")
    assert bought["status"] == "FILLED" and bought["fills"], bought
    assert Decimal(bought["executedQty"]) == Decimal("0.01")
    by_quote = t.order_market_buy(symbol="BTCUSDT", quoteOrderQty="100")
    assert by_quote["status"] == "FILLED" and Decimal(by_quote["cummulativeQuoteQty"]) <= 100
    above = str((last * Decimal("1.01")).quantize(Decimal("0.01")))
    below = str((last * Decimal("0.9")).quantize(Decimal("0.01")))
    ioc = t.create_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="IOC", quantity="2", price=above
    )
    assert ioc["status"] == "EXPIRED" and 0 < Decimal(ioc["executedQty"]) < 2, ioc
    assert "immediately match" in refused(
        -2010,
        t.create_order,
        symbol="BTCUSDT",
        side="BUY",
        type="LIMIT_MAKER",
        quantity="0.01",
        price=above,
    )
    resting = t.order_limit_buy(symbol="BTCUSDT", quantity="0.01", price=below)
    ack = t.order_limit_buy(
        symbol="BTCUSDT", quantity="0.01", price=below, newOrderRespType="ACK"
    )
    assert "status" not in ack and ack["orderId"] == resting["orderId"] + 1, ack
    cancelled = t.cancel_all_open_orders(symbol="BTCUSDT")
    assert [o["status"] for o in cancelled] == ["CANCELED", "CANCELED"], cancelled
    statuses = [o["status"] for o in t.get_all_orders(symbol="BTCUSDT")]
    assert statuses == ["FILLED", "FILLED", "EXPIRED", "CANCELED", "CANCELED"], statuses
    assert balance(t, "USDT")[1] == 0
print("ok")
