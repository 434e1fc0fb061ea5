"""Drives `hedgehog exchange serve` with ccxt, the most used crypto trading library, set up as
the README says: markets, balances, tickers, klines and trades; limit orders placed, queried and
cancelled; market orders (by quantity and by cost) that fill; IOC and FOK orders that expire;
LIMIT_MAKER, response types, all orders, cancel-all, commission, Binance's filters.

The exchange plays real BTCUSDT trades (2023-04-05) from its start (`--start now`), ten times
faster than they happened, for an account holding 100,000 USDT.

Usage: python ccxt_client.py BASE_URL API_KEY API_SECRET
Exits 0 and prints "ok" when every check holds; any failed check raises.
"""
import sys
import time
from decimal import Decimal

import ccxt

base, key, secret = sys.argv[1:4]

# The README's set-up: Binance's spot markets only, REST pointed at the paper exchange.
exchange = ccxt.binance(
    {
        "apiKey": key,
        "secret": secret,
        "options": {
            "defaultType": "spot",
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
        },
    }
)
exchange.urls["api"]["public"] = base + "/api/v3"
exchange.urls["api"]["private"] = base + "/api/v3"

SYMBOL = "BTC/USDT"


def raises(error, call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except error as e:
        return str(e)
    raise AssertionError(f"expected {error.__name__}")


markets = exchange.load_markets()
assert markets[SYMBOL]["id"] == "BTCUSDT" and markets[SYMBOL]["precision"]["price"] == 0.01
assert exchange.fetch_balance()["USDT"]["free"] == 100000

# The tape plays from the start: wait for its first trades.
deadline = time.time() + 30
while True:
    try:
        ticker = exchange.fetch_ticker(SYMBOL)
        break
    except ccxt.BadSymbol:
        assert time.time() < deadline, "no trade played within 30 s"
        time.sleep(0.2)

# Market data.
assert 28000 < ticker["last"] < 28500, ticker
assert ticker["low"] <= ticker["last"] <= ticker["high"], ticker
assert ticker["bid"] and ticker["ask"], ticker
assert ticker["baseVolume"] > 0 and ticker["quoteVolume"] > 0, ticker
assert SYMBOL in exchange.fetch_tickers([SYMBOL])
candles = exchange.fetch_ohlcv(SYMBOL, "1m", limit=3)
assert 1 <= len(candles) <= 3, candles
for (opened, o, h, low, c, volume) in candles:
    assert opened % 60000 == 0 and low <= min(o, c) <= max(o, c) <= h and volume > 0, candles
assert exchange.fetch_ohlcv(SYMBOL, "1s", limit=5), "1s klines"
trades = exchange.fetch_trades(SYMBOL, limit=10)
assert trades and all(t["symbol"] == SYMBOL and t["amount"] > 0 for t in trades), trades
assert "no order book" in raises(ccxt.ExchangeError, exchange.fetch_order_book, SYMBOL)

last = Decimal(str(exchange.fetch_ticker(SYMBOL)["last"]))

# A limit order below the market: placed, queried, listed, cancelled.
below = exchange.price_to_precision(SYMBOL, float(last * Decimal("0.9")))
order = exchange.create_limit_buy_order(SYMBOL, 0.01, below)
assert order["status"] == "open" and order["type"] == "limit", order
assert exchange.fetch_order(order["id"], SYMBOL)["id"] == order["id"]
assert [o["id"] for o in exchange.fetch_open_orders(SYMBOL)] == [order["id"]]
assert exchange.fetch_balance()["USDT"]["used"] > 0
cancelled = exchange.cancel_order(order["id"], SYMBOL)
assert cancelled["status"] == "canceled", cancelled
assert exchange.fetch_balance()["USDT"]["used"] == 0

# A market order fills from the trades that follow, at their prices.
bought = exchange.create_market_buy_order(SYMBOL, 0.01)
assert bought["status"] == "closed" and bought["filled"] == 0.01, bought
assert bought["trades"] and abs(bought["average"] - float(last)) / float(last) < 0.01, bought
assert 0.0099 < exchange.fetch_balance()["BTC"]["free"] <= 0.01
sold = exchange.create_market_sell_order(SYMBOL, 0.005)
assert sold["status"] == "closed" and sold["filled"] == 0.005, sold
by_cost = exchange.create_market_buy_order_with_cost(SYMBOL, 50)
assert by_cost["status"] == "closed" and 49 < by_cost["cost"] <= 50, by_cost
mine = exchange.fetch_my_trades(SYMBOL)
assert len(mine) >= 3 and all(t["takerOrMaker"] == "taker" for t in mine), mine

# IOC: 2 BTC is more than any trade of the tape carries; the next trade fills part of it and
# the rest expires. FOK: all or nothing, so nothing.
above = exchange.price_to_precision(SYMBOL, float(last * Decimal("1.01")))
ioc = exchange.create_order(SYMBOL, "limit", "buy", 2, above, {"timeInForce": "IOC"})
assert ioc["status"] == "expired" and 0 < ioc["filled"] < 2, ioc
fok = exchange.create_order(SYMBOL, "limit", "buy", 2, above, {"timeInForce": "FOK"})
assert fok["status"] == "expired" and fok["filled"] == 0, fok

# LIMIT_MAKER (post-only) is refused when it would take; it rests when it would not.
raises(ccxt.InvalidOrder, exchange.create_order, SYMBOL, "limit", "buy", 0.01, above, {"postOnly": True})
maker = exchange.create_order(SYMBOL, "limit", "buy", 0.01, below, {"postOnly": True})
assert maker["id"], maker

# Response types: ACK says little, RESULT no fills.
ack = exchange.create_limit_buy_order(SYMBOL, 0.01, below, {"newOrderRespType": "ACK"})
assert "status" not in ack["info"] and ack["id"], ack
result = exchange.create_limit_buy_order(SYMBOL, 0.01, below, {"newOrderRespType": "RESULT"})
assert result["info"]["status"] == "NEW" and "fills" not in result["info"], result

# Binance's filters.
assert "PERCENT_PRICE_BY_SIDE" in raises(
    ccxt.InvalidOrder, exchange.create_limit_buy_order, SYMBOL, 0.01, float(last * 6)
)
assert "MARKET_LOT_SIZE" in raises(ccxt.InvalidOrder, exchange.create_market_buy_order, SYMBOL, 130)

# All orders, then every open one cancelled at once.
everything = exchange.fetch_orders(SYMBOL)
assert len(everything) == 9, [o["status"] for o in everything]
assert len(exchange.fetch_open_orders(SYMBOL)) == 3
assert len(exchange.cancel_all_orders(SYMBOL)) == 3
assert exchange.fetch_open_orders(SYMBOL) == []
assert exchange.fetch_balance()["USDT"]["used"] == 0

commission = exchange.private_get_account_commission({"symbol": "BTCUSDT"})
assert commission["standardCommission"]["taker"] == "0.00100000", commission

print("ok")
