//! The recorded trades a simulated Binance plays: loaded once, in the order the exchange
//! produced them, and played at their own pace, faster, or as fast as possible.

use std::path::PathBuf;
use std::time::Duration;

use hedgehog_binance::Market;
use hedgehog_domain::events::TradeReceived;
use hedgehog_ingest::import::{read_trades, ImportError, ImportOptions};

/// Reads `files` (any format the importer reads) on a blocking thread: the trades in trade-time
/// order, ties by symbol and trade id, each once (overlapping files hold the same trades, and
/// Binance sends each once).
pub async fn load(
    files: Vec<PathBuf>,
    import: ImportOptions,
) -> Result<Vec<(Market, TradeReceived)>, ImportError> {
    let trades = tokio::task::spawn_blocking(move || read_trades(&files, &import)).await;
    let mut trades = hedgehog_runtime::rejoin(trades).ok_or(ImportError::Stopped)??;
    trades.sort_by_key(|(_, t)| (t.trade_time, t.symbol.clone(), t.trade_id));
    trades
        .dedup_by(|(ma, a), (mb, b)| ma == mb && a.symbol == b.symbol && a.trade_id == b.trade_id);
    Ok(trades)
}

/// Keeps a playback to the trades' own clock: `speed` 1 is real pace, 10 ten times faster, 0
/// as fast as possible.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    speed: f64,
    previous: Option<i64>,
}

impl Pace {
    pub fn new(speed: f64) -> Pace {
        Pace {
            speed,
            previous: None,
        }
    }

    /// Waits until a trade at `time` (ms) is due after the one before it.
    pub async fn wait(&mut self, time: i64) {
        if self.speed <= 0.0 {
            return;
        }
        if let Some(previous) = self.previous {
            let gap = (time - previous).max(0) as f64 / self.speed;
            if gap >= 1.0 {
                tokio::time::sleep(Duration::from_secs_f64(gap / 1000.0)).await;
            }
        }
        self.previous = Some(time);
    }
}
