//! Rate limits as Binance keeps them: request weight and order counts per fixed window, taken
//! from the exchangeInfo's `rateLimits`, reported in `X-MBX-USED-WEIGHT-<n><u>` and
//! `X-MBX-ORDER-COUNT-<n><u>` headers, and answered with HTTP 429 past a limit, so that a
//! client's own rate limiting is exercised.

use hedgehog_binance::rest::{RateLimit, RateLimitType, Refusal};

use super::params::refuse;

/// One limit and what has been used of it in its current window.
#[derive(Debug, Clone)]
struct Counter {
    limit: RateLimit,
    /// The window's start (ms, aligned like Binance's: to the epoch) and its count.
    window: i64,
    used: u32,
}

impl Counter {
    fn roll(&mut self, now: i64) {
        let length = self.limit.window_ms().unwrap_or(86_400_000);
        let window = now - now.rem_euclid(length);
        if window != self.window {
            self.window = window;
            self.used = 0;
        }
    }

    fn described(&self) -> String {
        format!(
            "{} per {} {}",
            self.limit.limit, self.limit.interval_num, self.limit.interval
        )
    }
}

/// Past a limit: Binance's code and words, and when to come back.
#[derive(Debug)]
pub struct TooMany {
    pub refusal: Refusal,
    pub retry_after_secs: i64,
    /// The usage headers, as they stand.
    pub headers: Vec<(String, u32)>,
}

/// Every limit of the exchange.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    counters: Vec<Counter>,
}

impl Limits {
    pub fn new(limits: &[RateLimit]) -> Limits {
        Limits {
            counters: limits
                .iter()
                .map(|limit| Counter {
                    limit: limit.clone(),
                    window: i64::MIN,
                    used: 0,
                })
                .collect(),
        }
    }

    /// Counts a request of `weight` (an order too, when `order`) at `now`; the usage headers
    /// to send, or why it is refused. A refused request counts its weight, as Binance's do,
    /// but not as an order.
    pub fn admit(
        &mut self,
        now: i64,
        weight: u32,
        order: bool,
    ) -> Result<Vec<(String, u32)>, TooMany> {
        let mut refused = None;
        for c in &mut self.counters {
            c.roll(now);
            let add = match c.limit.rate_limit_type {
                RateLimitType::RequestWeight => weight,
                RateLimitType::RawRequests => 1,
                RateLimitType::Orders if order => 1,
                RateLimitType::Orders => 0,
            };
            if add > 0 && c.used + add > c.limit.limit && refused.is_none() {
                refused = Some(c.clone());
            }
        }
        for c in &mut self.counters {
            match c.limit.rate_limit_type {
                RateLimitType::RequestWeight => c.used += weight,
                RateLimitType::RawRequests => c.used += 1,
                RateLimitType::Orders if order && refused.is_none() => c.used += 1,
                RateLimitType::Orders => {}
            }
        }
        let headers = self.headers(order);
        match refused {
            None => Ok(headers),
            Some(c) => {
                let msg = match c.limit.rate_limit_type {
                    RateLimitType::Orders => (
                        -1015,
                        format!("Too many new orders; current limit is {}.", c.described()),
                    ),
                    _ => (
                        -1003,
                        format!(
                            "Too much request weight used; current limit is {}. Please use WebSocket Streams for live updates to avoid polling the API.",
                            c.described()
                        ),
                    ),
                };
                let length = c.limit.window_ms().unwrap_or(86_400_000);
                let retry = (c.window + length - now + 999) / 1000;
                Err(TooMany {
                    refusal: refuse(msg.0, msg.1),
                    retry_after_secs: retry.max(1),
                    headers,
                })
            }
        }
    }

    /// The weight headers always; the order counts on order requests, as Binance sends them.
    fn headers(&self, order: bool) -> Vec<(String, u32)> {
        self.counters
            .iter()
            .filter(|c| order || c.limit.rate_limit_type == RateLimitType::RequestWeight)
            .filter_map(|c| Some((c.limit.header()?, c.used)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(kind: RateLimitType, interval: &str, num: u32, limit: u32) -> RateLimit {
        RateLimit {
            rate_limit_type: kind,
            interval: interval.into(),
            interval_num: num,
            limit,
        }
    }

    #[test]
    fn past_a_limit_comes_a_429_until_the_window_turns() {
        let mut limits = Limits::new(&[
            limit(RateLimitType::RequestWeight, "MINUTE", 1, 10),
            limit(RateLimitType::Orders, "SECOND", 10, 2),
        ]);
        let t = 1_700_000_000_000; // a whole minute
        assert_eq!(
            limits.admit(t, 4, false).unwrap(),
            [("x-mbx-used-weight-1m".to_owned(), 4)]
        );
        let placed = limits.admit(t + 1, 1, true).unwrap();
        assert_eq!(placed[1], ("x-mbx-order-count-10s".to_owned(), 1));
        limits.admit(t + 2, 1, true).unwrap();
        let too_many = limits.admit(t + 3, 1, true).unwrap_err();
        assert_eq!(too_many.refusal.code, -1015);
        assert!(
            too_many.refusal.msg.contains("2 per 10 SECOND"),
            "{}",
            too_many.refusal.msg
        );
        assert_eq!(too_many.retry_after_secs, 10);
        // Weight 7 used; 4 more is past 10.
        let heavy = limits.admit(t + 4, 4, false).unwrap_err();
        assert_eq!(heavy.refusal.code, -1003);
        assert_eq!(heavy.headers, [("x-mbx-used-weight-1m".to_owned(), 11)]);
        // The next minute starts afresh.
        assert_eq!(
            limits.admit(t + 60_000, 4, true).unwrap(),
            [
                ("x-mbx-used-weight-1m".to_owned(), 4),
                ("x-mbx-order-count-10s".to_owned(), 1)
            ]
        );
    }
}
