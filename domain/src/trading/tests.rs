use super::*;
use crate::paper_exchange::FillModel;
use crate::strategy::Naive;
use proptest::prelude::*;
use rust_decimal_macros::dec;

fn rules(tick: Decimal, step: Decimal, min_notional: Decimal) -> SymbolRules {
    SymbolRules {
        symbol: Symbol::parse("XRPUSDT").unwrap(),
        status: "TRADING".into(),
        base_asset: "XRP".into(),
        quote_asset: "USDT".into(),
        tick_size: tick,
        min_price: tick,
        max_price: dec!(10000),
        step_size: step,
        min_qty: step,
        max_qty: dec!(9000000),
        min_notional,
        max_notional: None,
    }
}

fn xrp() -> SymbolRules {
    rules(dec!(0.0001), dec!(0.1), dec!(5))
}

fn trade(id: u64, price: Decimal) -> TradeReceived {
    crate::testkit::trade("XRPUSDT", id)
        .price(price)
        .quantity(dec!(1000))
        .at(1_000 * id as i64)
        .event_time(1_000 * id as i64 + 1)
        .build()
}

/// Runs inputs through decide + apply like a worker would, returning every event and the state.
struct Run {
    rules: SymbolRules,
    paper: PaperExchange,
    state: TradingState,
    events: Vec<Event>,
    /// What each input decided, or the trade it passed, in order.
    log: Vec<Logged>,
}

enum Logged {
    Decided(Vec<Event>),
    Passed(TradeReceived),
}

impl Run {
    fn new(rules: SymbolRules, settings: TradingSettings) -> Self {
        let mut run = Run {
            rules,
            paper: PaperExchange::default(),
            state: TradingState::default(),
            events: Vec::new(),
            log: Vec::new(),
        };
        run.command(Command::UpdateSettings(settings)).unwrap();
        run.command(Command::Start {
            after_trade_id: None,
        })
        .unwrap();
        run
    }

    fn command(&mut self, c: Command) -> Result<Vec<Event>, Refusal> {
        let out = decide_command(
            &self.state,
            &self.rules,
            &Strategies::default(),
            c,
            Timestamp(7),
        )?;
        self.record(&out);
        Ok(out)
    }

    fn trade(&mut self, id: u64, price: Decimal) -> Vec<Event> {
        self.feed(&trade(id, price), true)
    }

    /// Decides `t` as a worker does: appends (here: folds) what it decided, or passes it.
    fn feed(&mut self, t: &TradeReceived, paper: bool) -> Vec<Event> {
        let paper = paper.then_some(&self.paper);
        let out = decide_trade(&Naive, &self.state, &self.rules, paper, t);
        if out.is_empty() {
            pass_trade(&mut self.state, &self.rules, t);
            self.log.push(Logged::Passed(t.clone()));
        }
        self.record(&out);
        out
    }

    fn record(&mut self, events: &[Event]) {
        for e in events {
            self.state = apply(std::mem::take(&mut self.state), e).unwrap();
        }
        self.events.extend_from_slice(events);
        if !events.is_empty() {
            self.log.push(Logged::Decided(events.to_vec()));
        }
    }
}

impl Run {
    fn live_trade(&mut self, id: u64, price: Decimal) -> Vec<Event> {
        self.feed(&trade(id, price), false)
    }

    fn report(&mut self, report: Report) -> Vec<Event> {
        let out = decide_report(&self.state, &self.rules, &report);
        self.record(&out);
        out
    }

    fn client_id(&self, side: Side) -> String {
        self.state
            .open_orders()
            .find(|(_, o)| o.side == side)
            .map(|(_, o)| o.client_order_id.clone())
            .expect("an open order on that side")
    }
}

fn executed(client_order_id: &str, cumulative: Decimal, quote: Decimal, last: Decimal) -> Report {
    Report::Executed {
        client_order_id: client_order_id.to_owned(),
        trade_id: Some(77),
        cumulative_quantity: cumulative,
        cumulative_quote_quantity: quote,
        commission: Some(Commission {
            amount: last / dec!(1000),
            asset: "XRP".into(),
        }),
        last_quantity: last,
        commission_price: None,
        time: Timestamp(99),
    }
}

fn without_commission(mut report: Report) -> Report {
    if let Report::Executed { commission, .. } = &mut report {
        *commission = None;
    }
    report
}

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::event_type).collect()
}

fn settings(chunks: u32, budget: Decimal) -> TradingSettings {
    TradingSettings {
        chunks,
        budget,
        ..TradingSettings::default()
    }
}

#[test]
fn the_first_trade_after_the_start_adds_the_fresh_position_and_it_buys() {
    let mut run = Run::new(xrp(), settings(5, dec!(100)));
    assert_eq!(types(&run.events), ["SettingsUpdated", "TradingStarted"]);
    let out = run.trade(1, dec!(1.0));
    assert_eq!(types(&out), ["PositionOpened", "OrderPlaced"]);
    let (Event::PositionOpened(fresh), Event::OrderPlaced(buy)) = (&out[0], &out[1]) else {
        unreachable!()
    };
    assert_eq!((fresh.position_id, fresh.trade_id), (1, 1));
    assert_eq!((buy.trade_id, buy.side), (Some(1), Side::Buy));
    assert_eq!(run.state.order, [1]);
}

#[test]
fn book_vector_buy_price_and_quantity_through_the_aggregate() {
    // price 1.0, buy_down 0.01, budget 10 in one chunk, tick 0.0001, step 1 -> buy 0.99 x 10
    let s = TradingSettings {
        buy_down_interval: dec!(0.01),
        ..settings(1, dec!(10))
    };
    let mut run = Run::new(rules(dec!(0.0001), dec!(1), dec!(1)), s);
    let out = run.trade(1, dec!(1.0));
    assert_eq!(types(&out), ["PositionOpened", "OrderPlaced"]);
    let Event::OrderPlaced(buy) = &out[1] else {
        unreachable!()
    };
    assert_eq!(
        (buy.side, buy.price, buy.quantity),
        (Side::Buy, dec!(0.99), dec!(10))
    );
    assert_eq!(buy.price.to_string(), "0.9900");
}

#[test]
fn book_vector_chunked_budget() {
    // budget 200, chunks 5, buy_down 0.2, tick 0.000001, step 0.001, trade 1.00 -> 0.8 x 50.000
    let s = TradingSettings {
        buy_down_interval: dec!(0.2),
        ..settings(5, dec!(200))
    };
    let mut run = Run::new(rules(dec!(0.000001), dec!(0.001), dec!(5)), s);
    let out = run.trade(1, dec!(1.00));
    let Event::OrderPlaced(buy) = &out[1] else {
        unreachable!()
    };
    assert_eq!(buy.price, dec!(0.8));
    assert_eq!(buy.quantity.to_string(), "50.000");
}

/// A state holding one position bought at 1.00 (rebuy_interval 0.1) whose SELL rests at 1.003.
fn selling_at_one(chunks: u32) -> Run {
    let s = TradingSettings {
        buy_down_interval: dec!(0),
        rebuy_interval: dec!(0.1),
        ..settings(chunks, dec!(100))
    };
    let mut run = Run::new(xrp(), s);
    assert_eq!(
        types(&run.trade(1, dec!(1.00))),
        ["PositionOpened", "OrderPlaced"]
    );
    assert_eq!(run.state.positions[&1].buy_price(), Some(dec!(1.00)));
    // 0.89 is far enough below for a rebuy, but the position's step is the fill.
    assert_eq!(types(&run.trade(2, dec!(0.89))), ["OrderFilled"]);
    // And on the next trade its step is the SELL.
    assert_eq!(types(&run.trade(3, dec!(0.89))), ["OrderPlaced"]);
    run
}

#[test]
fn book_vector_rebuy() {
    let mut run = selling_at_one(5);
    // 0.9 is not strictly below 1.00 - 0.1: no rebuy.
    assert!(run.trade(4, dec!(0.9)).is_empty());
    // 0.89 rebuys: the position is notified and a fresh one is added right after it.
    let out = run.trade(5, dec!(0.89));
    assert_eq!(
        types(&out),
        ["RebuyTriggered", "PositionOpened", "PositionsOrdered"]
    );
    assert_eq!(run.state.order, [1, 2]);
    assert!(run.state.positions[&1].rebuy_notified);
    assert_eq!(run.state.positions[&2].rebuy_of, Some(1));
    // The fresh one buys on the next trade; the notified one does not rebuy again.
    let out = run.trade(6, dec!(0.85));
    assert_eq!(types(&out), ["OrderPlaced", "PositionsOrdered"]);
    assert_eq!(
        run.state.order,
        [2, 1],
        "the order reverses after each trade"
    );
    // A trade that decides nothing reverses it too.
    assert!(run.trade(7, dec!(0.85)).is_empty());
    assert_eq!(run.state.order, [1, 2]);
}

#[test]
fn book_vector_no_rebuy_when_positions_number_chunks() {
    let mut run = selling_at_one(1);
    assert!(run.trade(4, dec!(0.5)).is_empty());
    assert!(
        !run.state.positions[&1].rebuy_notified,
        "not notified, so it can rebuy later"
    );
}

#[test]
fn a_position_runs_buy_sell_close_one_step_a_trade_and_a_fresh_one_takes_its_place() {
    let s = TradingSettings {
        buy_down_interval: dec!(0.01),
        profit_target: dec!(0.01),
        ..settings(1, dec!(100))
    };
    let mut run = Run::new(xrp(), s);
    assert_eq!(
        types(&run.trade(1, dec!(1.0000))),
        ["PositionOpened", "OrderPlaced"]
    );
    // BUY at 0.99: a trade at 0.99 does not cross it, 0.9899 does.
    assert!(run.trade(2, dec!(0.9900)).is_empty());
    assert_eq!(types(&run.trade(3, dec!(0.9899))), ["OrderFilled"]);
    let out = run.trade(4, dec!(0.9899));
    assert_eq!(types(&out), ["OrderPlaced"]);
    let Event::OrderPlaced(sell) = &out[0] else {
        unreachable!()
    };
    // 0.99 * 1.001 * 1.01 * 1.001 = 1.00190... -> 1.0019 on the tick
    assert_eq!(
        (sell.side, sell.price, sell.trade_id),
        (Side::Sell, dec!(1.0019), Some(4))
    );
    assert_eq!(
        sell.quantity,
        dec!(101.0),
        "what the BUY filled: 100 / 0.99 on a 0.1 step"
    );
    assert_eq!(types(&run.trade(5, dec!(1.0020))), ["OrderFilled"]);
    let out = run.trade(6, dec!(1.1));
    assert_eq!(types(&out), ["PositionClosed", "PositionOpened"]);
    let Event::PositionClosed(closed) = &out[0] else {
        unreachable!()
    };
    let buy_quote = dec!(0.99) * dec!(101.0);
    let sell_quote = dec!(1.0019) * dec!(101.0);
    let fees = (buy_quote + sell_quote) * dec!(0.001);
    assert_eq!(closed.fees, fees);
    assert_eq!(closed.realized_profit, sell_quote - buy_quote - fees);
    assert!(closed.realized_profit > dec!(0));
    assert_eq!(run.state.totals.positions_closed, 1);
    assert_eq!(run.state.order, [2]);
    // The fresh position buys on the next trade.
    let out = run.trade(7, dec!(1.1));
    assert_eq!(types(&out), ["OrderPlaced"]);
    assert_eq!(run.state.positions.keys().copied().collect::<Vec<_>>(), [2]);
}

#[test]
fn partial_fills_are_recorded_and_the_sell_waits_for_the_full_buy() {
    let mut run = Run::new(xrp(), settings(1, dec!(100)));
    run.paper.partial_fills = true;
    run.trade(1, dec!(1.0000)); // BUY 0.9999 x 100.0
    let mut t = trade(2, dec!(0.9));
    t.quantity = dec!(40);
    let out = run.feed(&t, true);
    assert_eq!(types(&out), ["OrderFilled"]);
    let Event::OrderFilled(f) = &out[0] else {
        unreachable!()
    };
    assert_eq!(
        (f.quantity, f.cumulative_quantity, f.status),
        (dec!(40), dec!(40), FillStatus::PartiallyFilled)
    );
    let mut t = trade(3, dec!(0.9));
    t.quantity = dec!(100);
    let out = run.feed(&t, true);
    assert_eq!(types(&out), ["OrderFilled"]);
    let Event::OrderFilled(f) = &out[0] else {
        unreachable!()
    };
    assert_eq!((f.quantity, f.status), (dec!(60.0), FillStatus::Filled));
    assert_eq!(types(&run.trade(4, dec!(0.9))), ["OrderPlaced"]);
}

#[test]
fn touch_fills_at_equal_price_cross_does_not() {
    let mut run = Run::new(xrp(), settings(1, dec!(100)));
    run.trade(1, dec!(1.0000)); // BUY at 0.9999
    assert!(run.trade(2, dec!(0.9999)).is_empty());
    run.paper.fill = FillModel::Touch;
    assert_eq!(types(&run.trade(3, dec!(0.9999))), ["OrderFilled"]);
}

#[test]
fn shutdown_lets_positions_run_out_then_turns_off() {
    let mut run = selling_at_one(5);
    assert_eq!(
        types(&run.command(Command::Shutdown).unwrap()),
        ["TradingShutdownRequested"]
    );
    // No rebuy in shutdown, however far the price falls.
    assert!(run.trade(4, dec!(0.5)).is_empty());
    assert_eq!(run.state.positions.len(), 1);
    assert_eq!(types(&run.trade(5, dec!(1.1))), ["OrderFilled"]);
    // The finished position is dropped, not replaced; it was the last: trading is off.
    let out = run.trade(6, dec!(1.1));
    assert_eq!(types(&out), ["PositionClosed", "TradingStopped"]);
    let Event::TradingStopped(stopped) = &out[1] else {
        unreachable!()
    };
    assert_eq!(stopped.reason, StopReason::ShutdownCompleted);
    assert_eq!(run.state.status, TradingStatus::Off);
    assert!(run.trade(7, dec!(1.0)).is_empty(), "off: no new position");
    assert!(
        run.command(Command::Shutdown).unwrap().is_empty(),
        "off already"
    );
}

#[test]
fn a_shutdown_right_after_the_start_still_runs_the_first_position_as_in_the_book() {
    let mut run = Run::new(xrp(), settings(5, dec!(100)));
    let out = run.command(Command::Shutdown).unwrap();
    assert_eq!(types(&out), ["TradingShutdownRequested"]);
    // The book's trader has its fresh position from the start: it buys, sells, and is dropped.
    assert_eq!(
        types(&run.trade(1, dec!(1.0))),
        ["PositionOpened", "OrderPlaced"]
    );
    assert_eq!(types(&run.trade(2, dec!(0.5))), ["OrderFilled"]);
    assert_eq!(types(&run.trade(3, dec!(0.5))), ["OrderPlaced"]);
    assert_eq!(types(&run.trade(4, dec!(2))), ["OrderFilled"]);
    assert_eq!(
        types(&run.trade(5, dec!(2))),
        ["PositionClosed", "TradingStopped"]
    );
    assert_eq!(run.state.status, TradingStatus::Off);
}

#[test]
fn stop_cancels_every_open_order_and_reports_what_was_not_sold() {
    let mut run = selling_at_one(5);
    run.trade(4, dec!(0.85)); // rebuy: position 2 added
    run.trade(5, dec!(0.85)); // position 2 places its BUY
    assert_eq!(run.state.open_orders().count(), 2);
    let out = run.command(Command::Stop).unwrap();
    assert_eq!(
        types(&out),
        ["OrderCancelled", "OrderCancelled", "TradingStopped"]
    );
    let Event::TradingStopped(stopped) = &out[2] else {
        unreachable!()
    };
    assert_eq!(stopped.reason, StopReason::Command);
    assert_eq!(
        stopped.unsold,
        [Unsold {
            position_id: 1,
            quantity: dec!(20.0),
            buy_price: dec!(1.00),
        }]
    );
    assert!(run.state.open_orders().next().is_none());
    assert!(run.state.order.is_empty());
    assert!(
        run.command(Command::Stop).unwrap().is_empty(),
        "stopping what is stopped"
    );
    assert!(
        run.trade(6, dec!(2)).is_empty(),
        "cancelled orders never fill"
    );
}

#[test]
fn a_refused_fresh_buy_is_rejected_and_stops_trading() {
    // A budget that passes the settings check but whose chunk truncates below min notional at
    // this price: 5 / 3.0001 = 1.66 -> 1 on a step of 1 -> notional 2.9998 < 5.
    let s = TradingSettings {
        buy_down_interval: dec!(0),
        ..settings(1, dec!(5))
    };
    let mut run = Run::new(rules(dec!(0.0001), dec!(1), dec!(5)), s);
    let out = run.trade(1, dec!(3.0001));
    assert_eq!(
        types(&out),
        ["PositionOpened", "OrderRejected", "TradingStopped"]
    );
    let Event::OrderRejected(r) = &out[1] else {
        unreachable!()
    };
    assert!(
        r.reason.starts_with("Filter failure: NOTIONAL"),
        "{}",
        r.reason
    );
    assert_eq!(r.trade_id, Some(1));
    assert_eq!(run.state.status, TradingStatus::Off);
    assert_eq!(run.state.stop_reason, Some(StopReason::OrderRejected));
    assert!(run.state.positions.is_empty());
}

/// The hand-checked sequence: three chunks, rebuys, the chunks cap leaving room for fewer
/// rebuys than ask on one trade, two positions finishing on one trade, and a shutdown that
/// drains. Every event below was worked out by hand from the book's rules (see the module's
/// doc): tick 0.0001, step 0.1, budget 300 in 3 chunks (100 each), buy_down 0, profit 0.01,
/// rebuy 0.05, fee 0.
#[test]
fn hand_checked_sequence_of_the_books_rules() {
    let s = TradingSettings {
        chunks: 3,
        budget: dec!(300),
        buy_down_interval: dec!(0),
        profit_target: dec!(0.01),
        rebuy_interval: dec!(0.05),
        fee: dec!(0),
        ..Default::default()
    };
    let mut run = Run::new(xrp(), s);
    let step = |run: &mut Run, id: u64, price: Decimal| -> Vec<String> {
        run.trade(id, price)
            .iter()
            .map(|e| match e {
                Event::PositionOpened(p) => {
                    format!("open {} rebuy_of {:?}", p.position_id, p.rebuy_of)
                }
                Event::OrderPlaced(o) => {
                    format!(
                        "place {} {:?} {} x {}",
                        o.position_id, o.side, o.price, o.quantity
                    )
                }
                Event::OrderFilled(f) => format!("fill {} {:?}", f.position_id, f.side),
                Event::RebuyTriggered(r) => format!("rebuy {}", r.position_id),
                Event::PositionClosed(c) => format!("close {}", c.position_id),
                Event::PositionsOrdered(o) => format!("order {:?}", o.positions),
                Event::TradingStopped(t) => format!("stopped {:?}", t.reason),
                other => other.event_type().to_owned(),
            })
            .collect()
    };
    // The first trade adds 1, which places its BUY at 1.0000 for 100 / 1 = 100.0.
    assert_eq!(
        step(&mut run, 1, dec!(1.0000)),
        ["open 1 rebuy_of None", "place 1 Buy 1.0000 x 100.0"]
    );
    assert_eq!(step(&mut run, 2, dec!(0.9999)), ["fill 1 Buy"]);
    // SELL at 1.0000 x 1.01 = 1.0100.
    assert_eq!(
        step(&mut run, 3, dec!(0.9999)),
        ["place 1 Sell 1.0100 x 100.0"]
    );
    // 0.9499 < 1.0000 x 0.95: 1 asks for a rebuy; 2 is added right after it.
    assert_eq!(
        step(&mut run, 4, dec!(0.9499)),
        ["rebuy 1", "open 2 rebuy_of Some(1)", "order [1, 2]"]
    );
    // 1 steps (nothing), 2 places its BUY at 0.9499 for 100 / 0.9499 = 105.27 -> 105.2.
    assert_eq!(
        step(&mut run, 5, dec!(0.9499)),
        ["place 2 Buy 0.9499 x 105.2", "order [2, 1]"]
    );
    assert_eq!(
        step(&mut run, 6, dec!(0.9498)),
        ["fill 2 Buy", "order [1, 2]"]
    );
    // SELL of 2 at 0.9499 x 1.01 = 0.959399 -> 0.9593.
    assert_eq!(
        step(&mut run, 7, dec!(0.9498)),
        ["place 2 Sell 0.9593 x 105.2", "order [2, 1]"]
    );
    // A trade that decides nothing reverses the order too.
    assert!(step(&mut run, 8, dec!(0.9500)).is_empty());
    assert_eq!(run.state.order, [1, 2]);
    // 1.02 goes through both SELLs: each fill is its position's step, in order.
    assert_eq!(
        step(&mut run, 9, dec!(1.0200)),
        ["fill 1 Sell", "fill 2 Sell", "order [2, 1]"]
    );
    // Both finish on one trade, each replaced in its place by a fresh position.
    assert_eq!(
        step(&mut run, 10, dec!(1.0200)),
        [
            "close 2",
            "open 3 rebuy_of None",
            "close 1",
            "open 4 rebuy_of None",
            "order [4, 3]"
        ]
    );
    assert_eq!(run.state.totals.positions_closed, 2);
    assert_eq!(
        step(&mut run, 11, dec!(1.0000)),
        [
            "place 4 Buy 1.0000 x 100.0",
            "place 3 Buy 1.0000 x 100.0",
            "order [3, 4]"
        ]
    );
    assert_eq!(
        step(&mut run, 12, dec!(0.9999)),
        ["fill 3 Buy", "fill 4 Buy", "order [4, 3]"]
    );
    assert_eq!(
        step(&mut run, 13, dec!(0.9999)),
        [
            "place 4 Sell 1.0100 x 100.0",
            "place 3 Sell 1.0100 x 100.0",
            "order [3, 4]"
        ]
    );
    // Both ask for a rebuy at 0.9, but 2 positions + 1 fill the 3 chunks: 3 steps first and
    // gets it; 4 finds no room and stays un-notified.
    assert_eq!(
        step(&mut run, 14, dec!(0.9000)),
        ["rebuy 3", "open 5 rebuy_of Some(3)", "order [4, 3, 5]"]
    );
    assert!(!run.state.positions[&4].rebuy_notified);
    assert_eq!(
        step(&mut run, 15, dec!(0.9000)),
        ["place 5 Buy 0.9000 x 111.1", "order [5, 3, 4]"]
    );
    assert_eq!(
        types(&run.command(Command::Shutdown).unwrap()),
        ["TradingShutdownRequested"]
    );
    // Nothing rebuys in shutdown.
    assert_eq!(
        step(&mut run, 16, dec!(0.8999)),
        ["fill 5 Buy", "order [4, 3, 5]"]
    );
    // 0.9 x 1.01 = 0.909.
    assert_eq!(
        step(&mut run, 17, dec!(0.8999)),
        ["place 5 Sell 0.9090 x 111.1", "order [5, 3, 4]"]
    );
    assert_eq!(
        step(&mut run, 18, dec!(1.0200)),
        [
            "fill 5 Sell",
            "fill 3 Sell",
            "fill 4 Sell",
            "order [4, 3, 5]"
        ]
    );
    // Shutting down: finished positions are dropped, and the last one turns trading off.
    assert_eq!(
        step(&mut run, 19, dec!(1.0200)),
        ["close 4", "close 3", "close 5", "stopped ShutdownCompleted"]
    );
    assert_eq!(run.state.status, TradingStatus::Off);
    assert_eq!(run.state.totals.positions_closed, 5);
}

#[test]
fn commands_say_when_nothing_changes_and_refuse_bad_settings() {
    let mut run = Run::new(xrp(), settings(5, dec!(100)));
    assert!(run
        .command(Command::Start {
            after_trade_id: None
        })
        .unwrap()
        .is_empty());
    assert!(run
        .command(Command::UpdateSettings(settings(5, dec!(100))))
        .unwrap()
        .is_empty());
    let err = run
        .command(Command::UpdateSettings(settings(0, dec!(100))))
        .unwrap_err();
    assert!(
        matches!(err, Refusal::InvalidSettings(ref e) if e.field == "chunks"),
        "{err}"
    );
    let err = run
        .command(Command::UpdateSettings(settings(5, dec!(-1))))
        .unwrap_err();
    assert!(
        matches!(err, Refusal::InvalidSettings(ref e) if e.field == "budget"),
        "{err}"
    );
    let err = run
        .command(Command::UpdateSettings(settings(5, dec!(20))))
        .unwrap_err();
    assert!(err.to_string().contains("20 / 5 = 4 USDT"), "{err}");
    let mut halted = xrp();
    halted.status = "BREAK".into();
    let err = decide_command(
        &TradingState::default(),
        &halted,
        &Strategies::default(),
        Command::Start {
            after_trade_id: None,
        },
        Timestamp(0),
    )
    .unwrap_err();
    assert!(matches!(err, Refusal::SymbolNotTrading { .. }));
}

#[test]
fn settings_apply_to_positions_added_after_them() {
    let mut run = Run::new(xrp(), settings(5, dec!(100)));
    run.trade(1, dec!(1.0));
    run.command(Command::UpdateSettings(settings(5, dec!(200))))
        .unwrap();
    assert_eq!(run.state.positions[&1].settings.budget, dec!(100));
    let buy = run.state.positions[&1].buy.as_ref().unwrap();
    assert_eq!(buy.quantity, dec!(20.0), "100 / 5 at 0.9999");
}

#[test]
fn a_trade_is_decided_once_and_trades_before_the_start_never() {
    let mut run = Run::new(xrp(), settings(5, dec!(100)));
    assert!(!run.trade(5, dec!(1.0)).is_empty());
    assert!(run.trade(5, dec!(0.5)).is_empty(), "same trade again");
    assert!(run.trade(4, dec!(0.5)).is_empty(), "an older trade");
    let mut fresh = Run {
        rules: xrp(),
        paper: PaperExchange::default(),
        state: TradingState::default(),
        events: Vec::new(),
        log: Vec::new(),
    };
    fresh
        .command(Command::Start {
            after_trade_id: Some(10),
        })
        .unwrap();
    assert!(fresh.trade(10, dec!(1.0)).is_empty());
    assert!(!fresh.trade(11, dec!(1.0)).is_empty());
}

#[test]
fn foreign_and_inconsistent_events_are_refused() {
    let t: Event = trade(1, dec!(1)).into();
    assert_eq!(
        apply(TradingState::default(), &t).unwrap_err(),
        ApplyError::Foreign("TradeReceived")
    );
    let closed: Event = PositionClosed {
        symbol: Symbol::parse("XRPUSDT").unwrap(),
        position_id: 9,
        trade_id: None,
        quantity: dec!(1),
        buy_price: dec!(1),
        sell_price: dec!(1),
        fees: dec!(0),
        realized_profit: dec!(0),
        time: Timestamp(0),
    }
    .into();
    assert_eq!(
        apply(TradingState::default(), &closed).unwrap_err(),
        ApplyError::UnknownPosition(9)
    );
    let run = selling_at_one(5);
    let ordered: Event = PositionsOrdered {
        symbol: Symbol::parse("XRPUSDT").unwrap(),
        trade_id: 9,
        positions: vec![1, 2],
    }
    .into();
    assert!(matches!(
        apply(run.state, &ordered).unwrap_err(),
        ApplyError::Order { trade_id: 9, .. }
    ));
}

// ---------------------------------------------------------------------------------------------
// property tests over random trade sequences
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Input {
    Trade { ticks: i64, quantity: u32 },
    Command(u8),
}

fn inputs() -> impl Strategy<Value = Vec<Input>> {
    let input = prop_oneof![
        20 => (-60i64..60, 1u32..400).prop_map(|(ticks, quantity)| Input::Trade { ticks, quantity }),
        1 => (0u8..4).prop_map(Input::Command),
    ];
    proptest::collection::vec(input, 1..400)
}

fn simulate(inputs: &[Input], chunks: u32, paper: PaperExchange) -> Run {
    let rules = xrp();
    let s = TradingSettings {
        buy_down_interval: dec!(0.001),
        profit_target: dec!(0.002),
        rebuy_interval: dec!(0.003),
        ..settings(chunks, dec!(500))
    };
    let mut run = Run::new(rules.clone(), s);
    run.paper = paper;
    let mut price = dec!(1.0000);
    for (i, input) in inputs.iter().enumerate() {
        match input {
            Input::Trade { ticks, quantity } => {
                price = (price + Decimal::from(*ticks) * rules.tick_size).max(dec!(0.5));
                let mut t = trade(i as u64 + 1, price);
                t.quantity = Decimal::from(*quantity);
                run.feed(&t, true);
            }
            Input::Command(c) => {
                let command = match c {
                    0 => Command::Start {
                        after_trade_id: None,
                    },
                    1 => Command::Stop,
                    2 => Command::Shutdown,
                    _ => Command::UpdateSettings(TradingSettings {
                        chunks: chunks.max(2) - 1,
                        ..run.state.settings.clone()
                    }),
                };
                run.command(command).unwrap();
            }
        }
    }
    run
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn invariants_hold_over_random_trades(
        inputs in inputs(),
        chunks in 1u32..6,
        touch in any::<bool>(),
        partial_fills in any::<bool>(),
    ) {
        let paper = PaperExchange {
            fill: if touch { FillModel::Touch } else { FillModel::Cross },
            partial_fills,
            fee_asset: None,
        };
        let run = simulate(&inputs, chunks, paper.clone());
        let rules = xrp();

        // Replaying the decisions through their stored (JSON) form, with the trades that
        // decided nothing passed in between, rebuilds the live state, and every decision obeys
        // the strategy's invariants.
        let mut rebuilt = TradingState::default();
        let mut sells: BTreeMap<u64, Decimal> = BTreeMap::new();
        for logged in &run.log {
            let events = match logged {
                Logged::Passed(t) => {
                    pass_trade(&mut rebuilt, &rules, t);
                    continue;
                }
                Logged::Decided(events) => events,
            };
            for e in events {
                let json = e.encode_stored().unwrap();
                let back = Event::decode(e.event_type(), e.schema_version(), &json).unwrap();
                prop_assert_eq!(&back, e);
                match e {
                    Event::PositionOpened(p) if p.rebuy_of.is_some() => {
                        prop_assert!(
                            rebuilt.positions.len() < rebuilt.settings.chunks as usize,
                            "a rebuy beyond the chunks"
                        );
                    }
                    Event::OrderPlaced(o) => {
                        prop_assert!((o.price % rules.tick_size).is_zero(), "price {} off tick", o.price);
                        prop_assert!((o.quantity % rules.step_size).is_zero(), "qty {} off step", o.quantity);
                        prop_assert!(rules.check_limit_order(o.price, o.quantity).is_ok());
                        if o.side == Side::Sell {
                            let buy = rebuilt.positions[&o.position_id].buy.as_ref().unwrap();
                            prop_assert!(!buy.open, "SELL placed before its BUY filled");
                            prop_assert_eq!(o.quantity, buy.executed);
                            sells.insert(o.position_id, o.quantity);
                        }
                    }
                    Event::PositionClosed(c) => {
                        prop_assert_eq!(Some(&c.quantity), sells.get(&c.position_id));
                    }
                    _ => {}
                }
                rebuilt = apply(rebuilt, &back).unwrap();
                prop_assert!(rebuilt.positions.len() <= chunks as usize);
                prop_assert_eq!(rebuilt.order.len(), rebuilt.positions.len());
            }
        }
        prop_assert_eq!(&rebuilt, &run.state);

        // The same inputs decide the same events, byte for byte.
        let again = simulate(&inputs, chunks, paper.clone());
        let bytes = |r: &Run| r.events.iter().map(|e| e.encode().unwrap()).collect::<Vec<_>>();
        prop_assert_eq!(bytes(&again), bytes(&run));
    }
}

#[test]
fn live_reports_fill_once_however_often_they_arrive() {
    let mut run = Run::new(xrp(), settings(1, dec!(100)));
    assert_eq!(
        types(&run.live_trade(1, dec!(1.0))),
        ["PositionOpened", "OrderPlaced"]
    );
    assert!(
        run.live_trade(2, dec!(0.5)).is_empty(),
        "live: a trade through the price fills nothing by itself"
    );
    let buy = run.client_id(Side::Buy);
    let Event::OrderPlaced(placed) = &run.events[run.events.len() - 1] else {
        unreachable!()
    };
    let (price, quantity) = (placed.price, placed.quantity);
    let half = quantity / dec!(2);
    let out = run.report(executed(&buy, half, half * price, half));
    assert_eq!(types(&out), ["OrderFilled"]);
    let Event::OrderFilled(fill) = &out[0] else {
        unreachable!()
    };
    assert_eq!(fill.status, FillStatus::PartiallyFilled);
    assert_eq!(fill.base_fee, half / dec!(1000), "commission paid in XRP");
    assert_eq!(
        (fill.trade_id, fill.venue_trade_id),
        (None, Some(77)),
        "Binance's trade id is kept apart from the market trades the worker decides"
    );
    assert_eq!(
        run.state.trade_cursor,
        Some(1),
        "a live fill moves no trade cursor"
    );
    assert_eq!(fill.fee, (half / dec!(1000) * price).normalize());
    assert!(
        run.report(executed(&buy, half, half * price, half))
            .is_empty(),
        "the same report again adds nothing"
    );
    // A reconnect missed a report; REST says where the order stands now: the rest of it.
    let out = run.report(without_commission(executed(
        &buy,
        quantity,
        quantity * price,
        dec!(1),
    )));
    assert_eq!(types(&out), ["OrderFilled"]);
    // The SELL is the position's next step, on the next trade.
    let out = run.live_trade(3, dec!(0.5));
    assert_eq!(types(&out), ["OrderPlaced"]);
    let Event::OrderPlaced(sell) = &out[0] else {
        unreachable!()
    };
    assert_eq!(sell.side, Side::Sell);
    assert_eq!(
        sell.quantity,
        formula::truncate(quantity - half / dec!(1000), dec!(0.1)).unwrap(),
        "the commission taken in XRP is not sold"
    );
    let sell_id = run.client_id(Side::Sell);
    let out = run.report(executed(
        &sell_id,
        sell.quantity,
        sell.quantity * sell.price,
        sell.quantity,
    ));
    assert_eq!(types(&out), ["OrderFilled"]);
    assert!(run
        .report(executed(&sell_id, sell.quantity, dec!(1), sell.quantity))
        .is_empty());
    assert_eq!(
        types(&run.live_trade(4, dec!(0.5))),
        ["PositionClosed", "PositionOpened"]
    );
}

#[test]
fn a_live_rejection_of_a_fresh_buy_stops_trading_and_of_a_sell_keeps_the_position() {
    let mut run = Run::new(xrp(), settings(1, dec!(100)));
    run.live_trade(1, dec!(1.0));
    let buy = run.client_id(Side::Buy);
    let out = run.report(Report::Rejected {
        client_order_id: buy,
        reason: "Account has insufficient balance for requested action.".into(),
        time: Timestamp(5),
    });
    assert_eq!(types(&out), ["OrderRejected", "TradingStopped"]);
    let Event::OrderRejected(r) = &out[0] else {
        unreachable!()
    };
    assert_eq!(r.order_id, Some(1));
    assert_eq!(run.state.stop_reason, Some(StopReason::OrderRejected));
    assert!(run.state.positions.is_empty());

    let mut run = Run::new(xrp(), settings(1, dec!(100)));
    run.live_trade(1, dec!(1.0));
    let buy = run.client_id(Side::Buy);
    let q = run.state.open_orders().next().unwrap().1.quantity;
    run.report(without_commission(executed(&buy, q, q * dec!(0.99), q)));
    run.live_trade(2, dec!(1.0));
    let sell = run.client_id(Side::Sell);
    let out = run.report(Report::Rejected {
        client_order_id: sell,
        reason: "insufficient balance".into(),
        time: Timestamp(6),
    });
    assert_eq!(types(&out), ["OrderRejected"]);
    assert_eq!(run.state.status, TradingStatus::On);
    assert_eq!(
        run.state.open_orders().count(),
        0,
        "the SELL is off the book"
    );
    assert_eq!(
        run.state.unsold()[0].quantity,
        q,
        "the position holds what it bought"
    );
}

#[test]
fn an_exchange_cancel_ends_the_buy_and_a_halt_stops_with_the_reason() {
    let mut run = Run::new(xrp(), settings(1, dec!(100)));
    run.live_trade(1, dec!(1.0));
    let buy = run.client_id(Side::Buy);
    let out = run.report(Report::Cancelled {
        client_order_id: buy.clone(),
        reason: "expired on Binance".into(),
        time: Timestamp(5),
    });
    assert_eq!(types(&out), ["OrderCancelled"]);
    assert!(run
        .report(Report::Cancelled {
            client_order_id: buy,
            reason: "again".into(),
            time: Timestamp(6),
        })
        .is_empty());
    assert_eq!(
        types(&run.live_trade(2, dec!(1.0))),
        ["PositionClosed", "PositionOpened"],
        "a BUY cancelled unfilled finishes its position on the next trade"
    );
    assert_eq!(types(&run.live_trade(3, dec!(1.0))), ["OrderPlaced"]);
    let out = run.report(Report::Halted {
        reason: "IP banned until 1700000000000".into(),
        time: Timestamp(8),
    });
    assert_eq!(types(&out), ["OrderCancelled", "TradingStopped"]);
    let Event::TradingStopped(stopped) = &out[1] else {
        unreachable!()
    };
    assert_eq!(stopped.reason, StopReason::ExchangeHalted);
    assert_eq!(
        stopped.detail.as_deref(),
        Some("IP banned until 1700000000000")
    );
    assert!(run
        .report(Report::Halted {
            reason: "again".into(),
            time: Timestamp(9)
        })
        .is_empty());
}

#[test]
fn a_commission_in_bnb_counts_at_bnbs_price_when_charged() {
    let mut run = Run::new(xrp(), settings(1, dec!(100)));
    run.live_trade(1, dec!(1.0));
    let buy = run.client_id(Side::Buy);
    let q = run.state.open_orders().next().unwrap().1.quantity;
    let bnb = |amount, price| Report::Executed {
        client_order_id: buy.clone(),
        trade_id: Some(5),
        cumulative_quantity: q,
        cumulative_quote_quantity: q * dec!(0.9999),
        commission: Some(Commission {
            amount,
            asset: "BNB".into(),
        }),
        last_quantity: q,
        commission_price: price,
        time: Timestamp(9),
    };
    let out = run.report(bnb(dec!(0.0001), Some(dec!(600))));
    let Event::OrderFilled(f) = &out[0] else {
        unreachable!()
    };
    assert_eq!(f.fee, dec!(0.06), "0.0001 BNB at 600 USDT");
    assert_eq!(f.commission_price, Some(dec!(600)));
    assert_eq!(f.base_fee, dec!(0), "nothing taken out of the XRP bought");
    assert_eq!(f.commission.as_ref().map(|c| c.asset.as_str()), Some("BNB"));
    // Unpriced (the shell found no price): recorded as charged, counted as nothing.
    let mut run = Run::new(xrp(), settings(1, dec!(100)));
    run.live_trade(1, dec!(1.0));
    let out = run.report(bnb(dec!(0.0001), None));
    let Event::OrderFilled(f) = &out[0] else {
        unreachable!()
    };
    assert_eq!((f.fee, f.commission_price), (dec!(0), None));
}

#[test]
fn the_paper_exchange_charges_in_another_asset_at_its_price() {
    let mut run = Run::new(xrp(), settings(1, dec!(100)));
    run.paper.fee_asset = Some(crate::paper_exchange::FeeAsset {
        asset: "BNB".into(),
        price: Some(dec!(300)),
    });
    run.trade(1, dec!(1.0)); // BUY 0.9999 x 100.0
    let out = run.trade(2, dec!(0.9));
    let Event::OrderFilled(f) = &out[0] else {
        unreachable!()
    };
    // 0.9999 x 100 x 0.001 = 0.09999 USDT = 0.0003333 BNB at 300 (to 8 decimals).
    let c = f.commission.as_ref().unwrap();
    assert_eq!((c.amount, c.asset.as_str()), (dec!(0.0003333), "BNB"));
    assert_eq!(f.commission_price, Some(dec!(300)));
    assert_eq!(f.fee, dec!(0.09999));
    assert_eq!(f.fee_asset, "USDT", "fee is the commission's quote value");
}

/// A fill that lands on the venue between a recorded stop and its cancel comes back in the
/// cancel's answer: it is recorded as a fill after the cancel, the stopped position keeps what
/// it bought (reported as left unsold, across a new start), a SELL's late fill takes from it,
/// and the same answer twice adds nothing.
#[test]
fn a_fill_racing_a_stop_is_recorded_and_left_unsold() {
    let mut run = Run::new(xrp(), settings(1, dec!(100)));
    run.live_trade(1, dec!(1.0));
    let buy = run.client_id(Side::Buy);
    let Event::OrderPlaced(placed) = run.events.last().unwrap().clone() else {
        unreachable!()
    };
    let (price, quantity) = (placed.price, placed.quantity);
    let third = (quantity / dec!(3)).round_dp(1);
    run.report(without_commission(executed(
        &buy,
        third,
        third * price,
        third,
    )));

    // Stopped with a third bought: the BUY is cancelled in the log, the third left unsold.
    let out = run.command(Command::Stop).unwrap();
    assert_eq!(types(&out), ["OrderCancelled", "TradingStopped"]);
    assert_eq!(run.state.left_unsold()[0].quantity, third);
    assert!(run.state.positions.is_empty());

    // The cancel's answer: the venue had executed two thirds by then.
    let two_thirds = third * dec!(2);
    let answer = executed(&buy, two_thirds, two_thirds * price, third);
    let out = run.report(answer.clone());
    assert_eq!(types(&out), ["OrderFilledAfterCancel"]);
    let Event::OrderFilledAfterCancel(late) = &out[0] else {
        unreachable!()
    };
    assert_eq!(
        (late.quantity, late.cumulative_quantity, late.price),
        (third, two_thirds, price)
    );
    assert_eq!(
        late.base_fee,
        third / dec!(1000),
        "the commission it took in XRP"
    );
    let left = run.state.left_unsold();
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0].quantity, two_thirds,
        "the position keeps what it bought"
    );
    assert_eq!(left[0].buy_price, price);
    assert!(
        run.report(answer).is_empty(),
        "the same answer again adds nothing"
    );
    // The venue's own cancel report about it changes nothing either.
    let cancelled = Report::Cancelled {
        client_order_id: buy.clone(),
        reason: "cancelled on Binance".into(),
        time: Timestamp(100),
    };
    assert!(run.report(cancelled).is_empty());

    // A new start trades fresh positions and still reports what the stop left.
    run.command(Command::Start {
        after_trade_id: Some(1),
    })
    .unwrap();
    assert_eq!(run.state.left_unsold()[0].quantity, two_thirds);
    assert!(run.state.unsold().is_empty());
    // Rebuilt from its events, the state is the same.
    let rebuilt = run
        .events
        .iter()
        .try_fold(TradingState::default(), apply)
        .unwrap();
    assert_eq!(rebuilt.left, run.state.left);
}

#[test]
fn a_sell_that_raced_a_stop_takes_from_what_was_left() {
    let mut run = Run::new(xrp(), settings(1, dec!(100)));
    run.live_trade(1, dec!(1.0));
    let buy = run.client_id(Side::Buy);
    let Event::OrderPlaced(placed) = run.events.last().unwrap().clone() else {
        unreachable!()
    };
    let q = placed.quantity;
    run.report(without_commission(executed(&buy, q, q * placed.price, q)));
    let out = run.live_trade(2, dec!(1.0));
    let Event::OrderPlaced(sell) = &out[0] else {
        panic!("{out:?}")
    };
    let sell_id = run.client_id(Side::Sell);
    run.command(Command::Stop).unwrap();
    assert_eq!(run.state.left_unsold()[0].quantity, q);
    let half = (sell.quantity / dec!(2)).round_dp(1);
    let out = run.report(without_commission(executed(
        &sell_id,
        half,
        half * sell.price,
        half,
    )));
    assert_eq!(types(&out), ["OrderFilledAfterCancel"]);
    assert_eq!(run.state.left_unsold()[0].quantity, q - half);
    // All of it sold after all: nothing is left unsold.
    run.report(without_commission(executed(
        &sell_id,
        q,
        q * sell.price,
        q - half,
    )));
    assert!(run.state.left_unsold().is_empty(), "{:?}", run.state.left);
}
