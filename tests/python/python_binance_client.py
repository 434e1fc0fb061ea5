"""Drives `hedgehog exchange serve` with python-binance, a Binance client nobody at Hedgehog
wrote: place, query and cancel orders, read balances and trades, and meet Binance's errors.

Usage: python python_binance_client.py BASE_URL API_KEY API_SECRET
Exits 0 and prints "ok" when every check holds; any failed check raises.
"""
import sys
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
print("ok")
