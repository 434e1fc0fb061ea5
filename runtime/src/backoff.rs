//! Waiting before a reconnect: the trade stream, the user data stream and `exchange serve`'s
//! follower back off the same way.

use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;

/// Sleeps the backoff with ±50 % jitter (so that many clients do not reconnect in step), then
/// doubles it up to the cap.
pub async fn wait(backoff: &mut Duration, max: Duration, shutdown: &mut watch::Receiver<bool>) {
    let jitter = rand::rng().random_range(0.5..1.5);
    let pause = backoff.mul_f64(jitter);
    tokio::select! {
        _ = tokio::time::sleep(pause) => {}
        _ = shutdown.changed() => {}
    }
    *backoff = (*backoff * 2).min(max);
}
