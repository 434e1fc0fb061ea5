// Hedgehog's dashboard: draws what the API serves, then follows /api/updates.
//
// Nothing here polls: the page loads candles, orders and the symbol's status once, then applies
// each update the server pushes. When the subscription drops, the browser reconnects with the
// last event id it saw and the server first sends every row changed since (then `caught_up`);
// only a subscription that dropped before it saw any id makes the page load everything again,
// so what it shows is never a partial picture.
"use strict";

const LC = window.LightweightCharts;
const $ = (id) => document.getElementById(id);
const MINUTES = { "1m": 1, "5m": 5, "15m": 15, "1h": 60, "4h": 240, "1d": 1440 };

const view = { symbol: "", interval: "1m", market: "spot" };
let bars = new Map(); // candle open time (s) -> bar
let latest = -Infinity; // open time (s) of the newest bar drawn
let orders = new Map(); // order id -> order row
let loading = null; // the load in flight; updates wait for it
let generation = 0; // bumps on every reload, so a stale load drops its result

const chart = LC.createChart($("chart"), {
  autoSize: true,
  layout: { background: { color: "#131722" }, textColor: "#d1d4dc" },
  grid: { vertLines: { color: "#1f2433" }, horzLines: { color: "#1f2433" } },
  // A few bars stay a readable width instead of filling the chart, so the next ones fit too.
  timeScale: { timeVisible: true, secondsVisible: false, rightOffset: 4, barSpacing: 12,
               maxBarSpacing: 30 },
});
const series = chart.addSeries(LC.CandlestickSeries, {
  upColor: "#26a69a", downColor: "#ef5350", borderVisible: false,
  wickUpColor: "#26a69a", wickDownColor: "#ef5350",
});
const markers = LC.createSeriesMarkers(series, []);

// --- helpers --------------------------------------------------------------------------------

// Decimals come as strings with the exchange's trailing zeros ("61602.02000000").
function trim(text) {
  const s = String(text);
  return s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
}

function decimals(text) {
  const s = trim(text);
  const dot = s.indexOf(".");
  return dot < 0 ? 0 : s.length - dot - 1;
}

function bar(candle) {
  return {
    time: candle.open_time / 1000,
    open: Number(candle.open), high: Number(candle.high),
    low: Number(candle.low), close: Number(candle.close),
  };
}

function bucket(ms) {
  const width = MINUTES[view.interval] * 60000;
  return Math.floor(ms / width) * width / 1000;
}

function shows(candle) {
  return candle.symbol === view.symbol && candle.interval === view.interval &&
    candle.market === view.market;
}

function time(ms) {
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19);
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}

function say(text, error) {
  const message = $("message");
  message.textContent = text;
  message.className = error ? "error" : "";
}

async function json(url, init) {
  const response = await fetch(url, init);
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const why = body && body.error ? body.error.message : response.statusText;
    throw new Error(`${response.status}: ${why}`);
  }
  return body;
}

function query(params) {
  return new URLSearchParams(params).toString();
}

// --- drawing --------------------------------------------------------------------------------

function drawBars() {
  const sorted = [...bars.values()].sort((a, b) => a.time - b.time);
  series.setData(sorted);
  latest = sorted.length ? sorted[sorted.length - 1].time : -Infinity;
  $("chart").dataset.candles = String(sorted.length);
}

function drawOrders() {
  const all = [...orders.values()].sort((a, b) => b.time - a.time || b.order_id - a.order_id);
  const body = $("orders").tBodies[0];
  body.replaceChildren();
  for (const o of all.slice(0, 200)) {
    const row = document.createElement("tr");
    row.className = `order ${o.side} ${o.status}`;
    row.dataset.orderId = String(o.order_id);
    cell(row, time(o.time).slice(11));
    row.title = `${time(o.time)} UTC, order ${o.order_id}, position ${o.position_id}`;
    cell(row, o.side);
    cell(row, trim(o.price));
    cell(row, trim(o.original_quantity));
    cell(row, trim(o.executed_quantity));
    cell(row, o.status);
    body.appendChild(row);
  }
  const fills = all
    .filter((o) => Number(o.executed_quantity) > 0)
    .map((o) => {
      const buy = o.side === "BUY";
      return {
        time: bucket(o.update_time),
        position: buy ? "belowBar" : "aboveBar",
        color: buy ? "#26a69a" : "#ef5350",
        shape: buy ? "arrowUp" : "arrowDown",
        text: buy ? "B" : "S",
        id: String(o.order_id),
      };
    })
    .sort((a, b) => a.time - b.time);
  markers.setMarkers(fills);
  $("chart").dataset.fills = String(fills.length);
}

function drawStatus(s) {
  $("title").textContent = s.symbol;
  $("trading").textContent = s.status;
  $("streaming").textContent = s.streaming;
  $("profit").textContent = trim(s.realized_profit);
  $("fees").textContent = trim(s.fees);
  $("closed").textContent = String(s.positions_closed);
  const body = $("positions").tBodies[0];
  body.replaceChildren();
  for (const p of s.positions) {
    const row = document.createElement("tr");
    cell(row, String(p.position_id));
    cell(row, trim(p.buy_price));
    cell(row, trim(p.quantity));
    cell(row, trim(p.bought));
    cell(row, trim(p.sold));
    cell(row, p.sell ? trim(p.sell.price) : "-");
    body.appendChild(row);
  }
}

// --- loading --------------------------------------------------------------------------------

async function loadStatus() {
  if (!view.symbol) return;
  try {
    drawStatus(await json(`/api/symbols/${encodeURIComponent(view.symbol)}`));
  } catch (e) {
    say(String(e.message), true);
  }
}

let statusTimer = null;
function refreshStatus() {
  clearTimeout(statusTimer);
  statusTimer = setTimeout(loadStatus, 250);
}

async function load() {
  const mine = ++generation;
  if (!view.symbol) return;
  const params = { symbol: view.symbol, interval: view.interval, market: view.market };
  const [candles, rows] = await Promise.all([
    json(`/api/ohlc?${query(params)}`),
    json(`/api/orders?${query({ symbol: view.symbol })}`),
  ]);
  if (mine !== generation) return;
  bars = new Map(candles.map((c) => [c.open_time / 1000, bar(c)]));
  orders = new Map(rows.map((o) => [o.order_id, o]));
  if (candles.length > 0) {
    const precision = Math.max(2, ...candles.slice(-50).map((c) => decimals(c.close)));
    series.applyOptions({ priceFormat: { type: "price", precision, minMove: 10 ** -precision } });
  }
  drawBars();
  drawOrders();
  if (bars.size < 150) chart.timeScale().fitContent();
  else chart.timeScale().scrollToRealTime();
  await loadStatus();
  document.body.dataset.loaded = String(mine);
}

function reload() {
  loading = load().catch((e) => say(`could not load ${view.symbol}: ${e.message}`, true));
  return loading;
}

// --- live updates ---------------------------------------------------------------------------

async function onCandle(candle) {
  await loading;
  if (!shows(candle)) return;
  const b = bar(candle);
  bars.set(b.time, b);
  if (b.time >= latest) {
    // The series takes a new bar or a change to its last one; anything older means redrawing.
    series.update(b);
    latest = b.time;
    $("chart").dataset.candles = String(bars.size);
  } else {
    drawBars();
  }
}

async function onOrder(order) {
  await loading;
  if (order.symbol !== view.symbol) return;
  orders.set(order.order_id, order);
  drawOrders();
  refreshStatus();
}

function subscribe() {
  const source = new EventSource("/api/updates");
  const live = $("live");
  let dropped = false;
  let resumable = false; // an id was seen: a reconnect resumes from it
  source.onopen = () => {
    live.textContent = "live";
    live.className = "live on";
    if (dropped && !resumable) reload(); // whatever happened while we were away
    dropped = false;
  };
  source.onerror = () => {
    dropped = true;
    live.textContent = "reconnecting";
    live.className = "live off";
  };
  const seen = (e) => {
    if (e.lastEventId) resumable = true;
  };
  source.addEventListener("candle", (e) => {
    seen(e);
    onCandle(JSON.parse(e.data));
  });
  source.addEventListener("order", (e) => {
    seen(e);
    onOrder(JSON.parse(e.data));
  });
  source.addEventListener("caught_up", seen);
  const settings = (e) => {
    seen(e);
    if (JSON.parse(e.data).symbol === view.symbol) refreshStatus();
  };
  source.addEventListener("trading_settings", settings);
  source.addEventListener("streaming_settings", settings);
}

// --- commands -------------------------------------------------------------------------------

async function command(path) {
  if (!view.symbol) return say("choose a symbol first", true);
  // The session cookie goes with it, and the browser adds the page's Origin.
  try {
    const answer = await json(`/api/symbols/${encodeURIComponent(view.symbol)}/${path}`, {
      method: "POST",
    });
    say(`${path.replace("/", " ")}: ${answer.changed ? "done" : "already so"} (${answer.status})`);
    refreshStatus();
  } catch (e) {
    say(`${path.replace("/", " ")}: ${e.message}`, true);
  }
}

// --- signing in -----------------------------------------------------------------------------

// Trades the token for the session cookie (HttpOnly: no script, this one included, can read
// it); the token itself is kept nowhere.
async function signIn(token) {
  return json("/api/session", {
    method: "POST",
    headers: { Authorization: `Bearer ${token}` },
  });
}

function showWho(session) {
  const who = $("who");
  who.textContent = session.auth === "off" ? "authentication off" : `signed in as ${session.name}`;
  who.hidden = false;
  $("signout").hidden = session.auth === "off";
}

// Resolves with the session once there is one: from the link `hedgehog run` printed
// (`#token=...`, dropped from the address at once), an open session, or the form.
async function session() {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) {
    history.replaceState(null, "", location.pathname + location.search);
    try {
      await signIn(fromLink);
    } catch (e) {
      $("signin-message").textContent = `the link's token was refused (${e.message})`;
    }
  }
  try {
    return await json("/api/session");
  } catch (e) {
    // No session: ask for the token.
  }
  const form = $("signin");
  form.hidden = false;
  document.querySelector("main").hidden = true;
  return new Promise((resolve) => {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        await signIn($("token").value.trim());
        $("token").value = "";
        form.hidden = true;
        document.querySelector("main").hidden = false;
        resolve(await json("/api/session"));
      } catch (err) {
        const message = $("signin-message");
        message.textContent = err.message;
        message.className = "error";
      }
    });
  });
}

// --- wiring ---------------------------------------------------------------------------------

function pick() {
  view.symbol = $("symbol").value.trim().toUpperCase();
  view.interval = $("interval").value;
  view.market = $("market").value;
  history.replaceState(null, "", `?${query(view)}`);
  reload();
}

async function start() {
  const url = new URLSearchParams(location.search);
  $("interval").value = url.get("interval") || "1m";
  $("market").value = url.get("market") || "spot";
  showWho(await session());
  $("signout").addEventListener("click", async () => {
    await fetch("/api/session", { method: "DELETE" });
    location.reload();
  });
  let symbols = [];
  try {
    symbols = await json("/api/symbols");
  } catch (e) {
    say(String(e.message), true);
  }
  const list = $("symbols");
  for (const s of symbols) {
    const option = document.createElement("option");
    option.value = s.symbol;
    list.appendChild(option);
  }
  const trading = symbols.find((s) => s.trading !== "off") || symbols[0];
  $("symbol").value = url.get("symbol") || (trading ? trading.symbol : "");
  $("pick").addEventListener("submit", (e) => {
    e.preventDefault();
    pick();
  });
  for (const button of document.querySelectorAll("button[data-command]")) {
    button.addEventListener("click", () => command(button.dataset.command));
  }
  pick();
  subscribe();
}

start();
