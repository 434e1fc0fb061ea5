//! A request's parameters, read as Binance reads them, refused in Binance's words.

use std::collections::BTreeMap;

use hedgehog_binance::rest::Refusal;
use hedgehog_domain::exchange::ExchangeRules;
use hedgehog_domain::Symbol;
use rust_decimal::Decimal;
use serde_json::Value;

/// The query's (or the form body's) parameters.
pub type Params = BTreeMap<String, String>;

/// An answer's body and the execution reports it causes, or Binance's refusal.
pub type Answer = Result<(Value, Vec<Value>), Refusal>;

pub fn refuse(code: i64, msg: impl Into<String>) -> Refusal {
    Refusal {
        code,
        msg: msg.into(),
    }
}

/// `-1102`: a parameter that must be there.
pub fn mandatory<'a>(params: &'a Params, name: &str) -> Result<&'a str, Refusal> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            refuse(
                -1102,
                format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
            )
        })
}

fn illegal(name: &str) -> Refusal {
    refuse(
        -1100,
        format!("Illegal characters found in parameter '{name}'."),
    )
}

pub fn decimal(params: &Params, name: &str) -> Result<Decimal, Refusal> {
    mandatory(params, name)?.parse().map_err(|_| illegal(name))
}

pub fn optional_decimal(params: &Params, name: &str) -> Result<Option<Decimal>, Refusal> {
    match params.get(name) {
        None => Ok(None),
        Some(_) => decimal(params, name).map(Some),
    }
}

/// An optional whole number (ids, times in ms, limits).
pub fn number(params: &Params, name: &str) -> Result<Option<i64>, Refusal> {
    params
        .get(name)
        .map(|v| v.parse::<i64>().map_err(|_| illegal(name)))
        .transpose()
}

/// `limit`: `default` when absent, refused outside 1 ..= `max`.
pub fn limit(params: &Params, default: usize, max: usize) -> Result<usize, Refusal> {
    let limit = number(params, "limit")?.unwrap_or(default as i64);
    if limit < 1 || limit > max as i64 {
        return Err(refuse(
            -1130,
            format!("Invalid data sent for a parameter: limit is 1 to {max}."),
        ));
    }
    Ok(limit as usize)
}

/// `symbol`: one the exchange lists.
pub fn symbol(rules: &ExchangeRules, params: &Params) -> Result<Symbol, Refusal> {
    listed(rules, mandatory(params, "symbol")?)
}

fn listed(rules: &ExchangeRules, name: &str) -> Result<Symbol, Refusal> {
    Symbol::parse(name)
        .ok()
        .filter(|s| rules.get(s).is_some())
        .ok_or_else(|| refuse(-1121, "Invalid symbol."))
}

/// The symbols a market-data request names: `symbol`, `symbols` (a JSON array), or none for
/// every symbol (`None`).
pub fn symbols(rules: &ExchangeRules, params: &Params) -> Result<Option<Vec<Symbol>>, Refusal> {
    match (params.get("symbol"), params.get("symbols")) {
        (Some(_), Some(_)) => Err(refuse(
            -1101,
            "Parameter 'symbol' and 'symbols' cannot be sent together.",
        )),
        (Some(_), None) => Ok(Some(vec![symbol(rules, params)?])),
        (None, Some(list)) => {
            let names: Vec<String> = serde_json::from_str(list).map_err(|_| illegal("symbols"))?;
            let symbols = names
                .iter()
                .map(|n| listed(rules, n))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(symbols))
        }
        (None, None) => Ok(None),
    }
}
