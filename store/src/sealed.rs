//! Reading and writing the log through its sealed segments (`trade_segments`,
//! [`crate::segment`]'s blocks): the store's third table, merged in above the backends so that
//! every reader (`$all` pages, stream pages, trade-key pages, subscriptions, `eventually`'s
//! views) sees one log whatever has been sealed.
//!
//! How a page is read: the backend's page of its tables first, then the segments along the
//! same key (position, stream version or trade id) whose range meets the page, decoded (or
//! taken from the cache of decoded blocks) and merged in. The tables are read before the
//! segments, so a seal committed in between shows the moved trades in both; they are merged
//! by position, never counted twice.
//!
//! How the log is sealed ([`plan`]): a window of positions at a time, each market stream's
//! trades in it older than the cut become one segment, inserted in the transaction that
//! deletes their rows (the database refuses a delete no segment covers). A stream's newest
//! trade is never sealed, so the log's head and each stream's version stay where the tables
//! say they are.
//!
//! **Invariant**: sealing moves events and never changes one, and a damaged block is an error
//! naming the segment ([`StoreError::DamagedSegment`]), never a page without its trades.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use hedgehog_domain::Symbol;

use super::segment::{self, SealedTrade};
use super::{
    market_trade, AppendOutcome, Backend, Database, Part, Place, PlacedTrade, RecordedEvent,
    StoreError, StreamEvent, StreamHead, StreamId, Wakes,
};

/// Positions a seal takes at a time: one segment per market stream with trades among them.
/// A busy symbol's segment holds up to this many trades; twenty symbols' hold a twentieth each.
/// What a reader of `$all` decodes at once is at most about this many trades.
pub(crate) const WINDOW: i64 = 200_000;

/// Segments asked for at a time while merging a page.
const SEGMENTS_AT_ONCE: i64 = 64;

/// Decoded trades the cache keeps: two windows, so a reader of `$all` crossing from one to
/// the next decodes each block once (about 150 bytes a trade: under 64 MiB).
const CACHED_TRADES: u64 = 2 * WINDOW as u64;

/// A sealed segment as `trade_segments` describes it (its block is read apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub id: i64,
    pub stream: StreamId,
    pub first_position: i64,
    pub last_position: i64,
    pub first_version: i64,
    pub last_version: i64,
    pub min_trade_id: i64,
    pub max_trade_id: i64,
    pub trades: i64,
}

/// The key a page is read along.
#[derive(Debug, Clone)]
pub(crate) enum Along {
    /// `$all`, by position.
    All,
    /// A stream, by version.
    Stream(StreamId),
    /// A market stream, by trade id.
    Trades(StreamId),
}

impl Along {
    /// The segment's range of this key.
    fn range(&self, s: &Segment) -> (i64, i64) {
        match self {
            Along::All => (s.first_position, s.last_position),
            Along::Stream(_) => (s.first_version, s.last_version),
            Along::Trades(_) => (s.min_trade_id, s.max_trade_id),
        }
    }

    fn of(&self, t: &SealedTrade) -> i64 {
        match self {
            Along::All => t.position,
            Along::Stream(_) => t.version,
            Along::Trades(_) => t.row.trade_id,
        }
    }

    /// `trade_segments`' columns of this key's range.
    fn columns(&self) -> (&'static str, &'static str) {
        match self {
            Along::All => ("first_position", "last_position"),
            Along::Stream(_) => ("first_version", "last_version"),
            Along::Trades(_) => ("min_trade_id", "max_trade_id"),
        }
    }

    pub(crate) fn stream(&self) -> Option<&StreamId> {
        match self {
            Along::All => None,
            Along::Stream(s) | Along::Trades(s) => Some(s),
        }
    }
}

/// What a seal did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sealed {
    /// Segments written.
    pub segments: u64,
    /// Trades moved into them.
    pub trades: u64,
    /// Their blocks' bytes.
    pub bytes: u64,
}

impl std::ops::AddAssign for Sealed {
    fn add_assign(&mut self, o: Sealed) {
        self.segments += o.segments;
        self.trades += o.trades;
        self.bytes += o.bytes;
    }
}

/// The sums of `trade_segments` ([`Sealed`]'s fields), with the byte length function of the
/// backend's SQL (`length` or `octet_length`).
pub(crate) fn totals_sql(length: &str) -> String {
    format!(
        "SELECT COUNT(*), CAST(COALESCE(SUM(trades), 0) AS BIGINT), \
         CAST(COALESCE(SUM({length}(block)), 0) AS BIGINT) FROM trade_segments"
    )
}

impl Sealed {
    pub(crate) fn from_row((segments, trades, bytes): (i64, i64, i64)) -> Self {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Sealed {
            segments: n(segments),
            trades: n(trades),
            bytes: n(bytes),
        }
    }
}

/// A segment ready to insert: its description (id unset) and block.
pub(crate) struct NewSegment {
    pub stream: i64,
    pub info: Segment,
    pub checksum: u32,
    pub block: Vec<u8>,
}

/// Which of a window's trades to seal, one segment per stream: `rows` are the window's trades
/// with their stream's number, in position order; `newest` each stream's newest version in
/// `market_trades`. A stream's segment is the longest run from its first trade in the window
/// of trades older than `before`, without its newest: a segment covers a run of its stream's
/// rows with nothing left between. Pure, so both backends seal alike.
pub(crate) fn plan(
    rows: Vec<(i64, SealedTrade)>,
    newest: &HashMap<i64, i64>,
    before: i64,
    names: &HashMap<i64, StreamId>,
) -> Vec<NewSegment> {
    let mut runs: Vec<(i64, Vec<SealedTrade>, bool)> = Vec::new();
    let mut at: HashMap<i64, usize> = HashMap::new();
    for (stream, trade) in rows {
        let i = *at.entry(stream).or_insert_with(|| {
            runs.push((stream, Vec::new(), true));
            runs.len() - 1
        });
        let (_, run, open) = &mut runs[i];
        let sealable = trade.row.trade_time < before
            && newest.get(&stream).is_some_and(|n| trade.version < *n);
        *open &= sealable;
        if *open {
            run.push(trade);
        }
    }
    runs.into_iter()
        .filter(|(_, run, _)| !run.is_empty())
        .filter_map(|(stream, run, _)| {
            let name = names.get(&stream)?.clone();
            let (first, last) = (run.first()?, run.last()?);
            let info = Segment {
                id: 0,
                stream: name,
                first_position: first.position,
                last_position: last.position,
                first_version: first.version,
                last_version: last.version,
                min_trade_id: run.iter().map(|t| t.row.trade_id).min()?,
                max_trade_id: run.iter().map(|t| t.row.trade_id).max()?,
                trades: run.len() as i64,
            };
            let block = segment::encode(&run);
            Some(NewSegment {
                stream,
                info,
                checksum: segment::checksum(&block),
                block,
            })
        })
        .collect()
}

/// `trade_segments`' description of a segment (`s`, joined to `trade_streams` as `t`), in
/// [`Segment`]'s order.
pub(crate) const SEGMENT_COLUMNS: &str = "s.id, t.stream_id, s.first_position, s.last_position, \
     s.first_version, s.last_version, s.min_trade_id, s.max_trade_id, s.trades";

/// A row of [`SEGMENT_COLUMNS`].
pub(crate) type SegmentRow = (i64, String, i64, i64, i64, i64, i64, i64, i64);

impl Segment {
    pub(crate) fn from_row(r: SegmentRow) -> Self {
        Segment {
            id: r.0,
            stream: StreamId(r.1.into()),
            first_position: r.2,
            last_position: r.3,
            first_version: r.4,
            last_version: r.5,
            min_trade_id: r.6,
            max_trade_id: r.7,
            trades: r.8,
        }
    }

    /// The segment's trades, from its `block` and `checksum` as stored: a block that does not
    /// check or decode, or holds another count than described, is named.
    pub(crate) fn open(&self, block: &[u8], checksum: i64) -> Result<Vec<SealedTrade>, StoreError> {
        let damaged = |reason: String| StoreError::DamagedSegment {
            id: self.id,
            stream: self.stream.clone(),
            first_position: self.first_position,
            last_position: self.last_position,
            reason,
        };
        let checksum = u32::try_from(checksum)
            .map_err(|_| damaged(format!("its checksum {checksum} is not a CRC-32C")))?;
        let trades = segment::decode(block, checksum).map_err(|e| damaged(e.to_string()))?;
        if trades.len() as i64 != self.trades {
            return Err(damaged(format!(
                "it holds {} trades, its description says {}",
                trades.len(),
                self.trades
            )));
        }
        Ok(trades)
    }
}

/// The query of [`Backend::segments`] along `along`, its parameters marked with `mark` (`?` or
/// `$`): 1 from, 2 to, 3 and 4 the first key and id to start after, 5 the limit, 6 the
/// stream's name (when along a stream).
pub(crate) fn segments_sql(along: &Along, mark: char) -> String {
    let (first, last) = along.columns();
    let stream = if along.stream().is_some() {
        format!(" AND s.stream = (SELECT number FROM trade_streams WHERE stream_id = {mark}6)")
    } else {
        String::new()
    };
    format!(
        "SELECT {SEGMENT_COLUMNS} FROM trade_segments s JOIN trade_streams t \
         ON t.number = s.stream WHERE s.{last} >= {mark}1 AND s.{first} <= {mark}2 \
         AND (s.{first} > {mark}3 OR (s.{first} = {mark}3 AND s.id > {mark}4)){stream} \
         ORDER BY s.{first}, s.id LIMIT {mark}5"
    )
}

/// The segments of stream number `?1` (`$1`) whose trade ids meet `?2..=?3`, with their
/// blocks and checksums: what an append's careful path decodes to find trades already sealed.
pub(crate) fn overlapping_sql(mark: char) -> String {
    format!(
        "SELECT {SEGMENT_COLUMNS}, s.block, s.checksum FROM trade_segments s \
         JOIN trade_streams t ON t.number = s.stream \
         WHERE s.stream = {mark}1 AND s.max_trade_id >= {mark}2 AND s.min_trade_id <= {mark}3"
    )
}

/// The trades of a window to seal, `?1..?2` (`$1..$2`) in positions, with their streams'
/// numbers, in position order: [`SealedTrade`]'s columns.
pub(crate) fn window_sql(mark: char) -> String {
    format!(
        "SELECT stream, position, version, trade_time + recorded_lag, trade_id, price, quantity, \
         form, trade_time, event_lag, buyer_order_id, seller_order_id, first_trade_id, event_id \
         FROM market_trades WHERE position >= {mark}1 AND position < {mark}2 ORDER BY position"
    )
}

/// A segment's insert: 1 stream number, 2-8 its description, 9 checksum, 10 block.
pub(crate) fn insert_sql(mark: char) -> String {
    let values: Vec<String> = (1..=10).map(|i| format!("{mark}{i}")).collect();
    format!(
        "INSERT INTO trade_segments (stream, first_position, last_position, first_version, \
         last_version, min_trade_id, max_trade_id, trades, checksum, block) VALUES ({})",
        values.join(", ")
    )
}

/// The trade ids and event ids of sealed trades among `overlapping` (segments, blocks,
/// checksums): what an append must not store again.
pub(crate) fn keys_of(
    overlapping: Vec<(Segment, Vec<u8>, i64)>,
) -> Result<(HashSet<i64>, HashSet<uuid::Uuid>), StoreError> {
    let (mut trades, mut ids) = (HashSet::new(), HashSet::new());
    for (s, block, checksum) in overlapping {
        for t in s.open(&block, checksum)? {
            trades.insert(t.row.trade_id);
            if let Some(id) = t.row.event_id {
                ids.insert(id);
            }
        }
    }
    Ok((trades, ids))
}

impl NewSegment {
    /// What sealing this segment did, once `deleted` rows were deleted for it: exactly its
    /// trades, or the transaction must not commit.
    pub(crate) fn sealed_by(&self, deleted: u64) -> Result<Sealed, StoreError> {
        let i = &self.info;
        if deleted != i.trades as u64 {
            return Err(StoreError::Corrupt {
                position: i.first_position,
                column: "market_trades",
                value: format!(
                    "{deleted} rows of {} between versions {} and {}, sealing {}",
                    i.stream, i.first_version, i.last_version, i.trades
                ),
            });
        }
        Ok(Sealed {
            segments: 1,
            trades: deleted,
            bytes: self.block.len() as u64,
        })
    }
}

/// The segments along `along` ([`crate::Backend::segments`]) from an sqlx pool of either
/// backend, its parameters marked with `mark`.
macro_rules! segments_from {
    ($pool:expr, $mark:expr, $along:expr, $from:expr, $to:expr, $after:expr, $limit:expr) => {{
        let sql = $crate::sealed::segments_sql($along, $mark);
        let mut query = sqlx::query_as::<_, $crate::sealed::SegmentRow>(&sql)
            .bind($from)
            .bind($to)
            .bind($after.0)
            .bind($after.1)
            .bind($limit);
        if let Some(stream) = $along.stream() {
            query = query.bind(stream.as_str());
        }
        let rows = query.fetch_all($pool).await?;
        Ok(rows
            .into_iter()
            .map($crate::sealed::Segment::from_row)
            .collect())
    }};
}
pub(crate) use segments_from;

/// Decoded blocks, weighed by their trades.
#[derive(Clone)]
struct TradeWeight;

impl quick_cache::Weighter<i64, Arc<Decoded>> for TradeWeight {
    fn weight(&self, _: &i64, v: &Arc<Decoded>) -> u64 {
        v.trades.len().max(1) as u64
    }
}

/// A decoded block: its trades in version order, whether their trade ids rise with it (as an
/// exchange's do; a page by trade id then starts by binary search), and their symbol (its
/// stream's, parsed once, not once a trade).
struct Decoded {
    trades: Vec<SealedTrade>,
    ids_rise: bool,
    symbol: Symbol,
}

/// A backend with its sealed segments merged in: what [`crate::Store`] reads through.
pub(crate) struct Tiered {
    inner: Arc<dyn Backend>,
    cache: Arc<quick_cache::sync::Cache<i64, Arc<Decoded>, TradeWeight>>,
}

impl Tiered {
    pub(crate) fn new(inner: Arc<dyn Backend>) -> Self {
        Tiered {
            inner,
            cache: Arc::new(quick_cache::sync::Cache::with_options(
                // One shard: each shard has a part of the capacity and refuses what weighs
                // more, and a busy symbol's block is half of it.
                quick_cache::OptionsBuilder::new()
                    .shards(1)
                    .estimated_items_capacity(64)
                    .weight_capacity(CACHED_TRADES)
                    .build()
                    .expect("an OptionsBuilder with both capacities builds"),
                TradeWeight,
                Default::default(),
                Default::default(),
            )),
        }
    }

    /// A segment's trades, decoded once while the cache keeps them (a reader asking for a
    /// block being decoded, by another reader or ahead, waits for that decode).
    async fn decoded(&self, s: &Segment) -> Result<Arc<Decoded>, StoreError> {
        self.cache
            .get_or_insert_async(&s.id, decode(Arc::clone(&self.inner), s.clone()))
            .await
    }

    /// Starts decoding segment `s` into the cache in the background, unless it is there:
    /// the block a reader will need next is then ready when it gets there, instead of the
    /// reader (and whatever it feeds) waiting for a whole block's decode. A failure is left
    /// for the read that needs the block to report.
    fn prefetch(&self, s: &Segment) {
        if self.cache.peek(&s.id).is_some() {
            return;
        }
        let (cache, inner, s) = (Arc::clone(&self.cache), Arc::clone(&self.inner), s.clone());
        tokio::spawn(async move {
            let _ = cache
                .get_or_insert_async(&s.id, decode(inner, s.clone()))
                .await;
        });
    }

    /// Merges into `page` (the tables' page along `along` from key `from`, at most `limit`,
    /// in key order) the sealed trades that belong in it.
    async fn merge<T: Paged>(
        &self,
        along: Along,
        from: i64,
        limit: i64,
        mut page: Vec<T>,
    ) -> Result<Vec<T>, StoreError> {
        // Only market streams have segments.
        if along.stream().is_some_and(|s| s.market().is_none()) {
            return Ok(page);
        }
        let limit = usize::try_from(limit).unwrap_or(0);
        let key = |t: &T| t.key(&along);
        // Positions and versions have no gaps across the three tables, and no stream's newest
        // trade is sealed. A page of `$all` is read up to `limit` rows or the head, so one
        // whose positions follow on from `from` without a gap holds everything there (the
        // head's row is never sealed); a page of a stream may stop short of `limit` before
        // its end (PostgreSQL reads a window of versions), so only a full one does. What a
        // live reader reads: it asks nothing more of the database.
        let gapless = page
            .iter()
            .zip(from..)
            .all(|(t, expected)| key(t) == expected);
        let whole = match along {
            Along::All => gapless,
            Along::Stream(_) => gapless && page.len() >= limit,
            Along::Trades(_) => false,
        };
        if whole {
            return Ok(page);
        }
        // The tables' page holds every row up to its last key; beyond it, only if it is short
        // of `limit` for having reached their end (`$all`, or a stream's window all sealed).
        // A page along trade ids may stop short before the end (a window of ids): up to its
        // last id only, the next page goes on from there.
        let mut cutoff = match (page.last(), &along) {
            (Some(last), Along::Trades(_)) => key(last),
            (Some(last), _) if page.len() >= limit => key(last),
            _ => i64::MAX,
        };
        // The sealed trades go first and the tables' rows after them: sealed history is older,
        // so the page is then in key order as it stands (nothing to sort) unless a seal ran
        // between the two reads or rows were stored out of order.
        let rows = std::mem::take(&mut page);
        let mut after = (i64::MIN, i64::MIN);
        loop {
            let batch = self
                .inner
                .segments(&along, from, cutoff, after, SEGMENTS_AT_ONCE)
                .await?;
            for s in &batch {
                let (first, _) = along.range(s);
                if first > cutoff {
                    // The page ends before it: the next page is likely to start there.
                    self.prefetch(s);
                    break;
                }
                let d = self.decoded(s).await?;
                cutoff = take(&mut page, s, &d, &along, (from, cutoff), limit)?;
                // A full page bounds what the next segments may add: only keys below its last.
                if page.len() >= limit {
                    tidy(&mut page, &key, limit);
                    cutoff = page.last().map_or(cutoff, key);
                }
            }
            if (batch.len() as i64) < SEGMENTS_AT_ONCE {
                break;
            }
            let Some(last) = batch.last() else { break };
            after = (along.range(last).0, last.id);
            if after.0 > cutoff {
                break;
            }
        }
        page.extend(rows);
        tidy(&mut page, &key, limit);
        Ok(page)
    }

    /// The earliest stored trade of `stream` above trade id `after`, among the segments.
    async fn first_sealed_after(
        &self,
        stream: &StreamId,
        after: i64,
    ) -> Result<Option<Place>, StoreError> {
        let along = Along::Trades(stream.clone());
        let mut best: Option<Place> = None;
        let mut cursor = (i64::MIN, i64::MIN);
        loop {
            let batch = self
                .inner
                .segments(&along, after.saturating_add(1), i64::MAX, cursor, 1024)
                .await?;
            for s in &batch {
                if best.is_some_and(|b| b.position <= s.first_position) {
                    continue;
                }
                let place = if s.min_trade_id > after {
                    Some(Place {
                        position: s.first_position,
                        version: s.first_version,
                    })
                } else {
                    let d = self.decoded(s).await?;
                    d.trades
                        .iter()
                        .find(|t| t.row.trade_id > after)
                        .map(|t| Place {
                            position: t.position,
                            version: t.version,
                        })
                };
                if let Some(p) = place {
                    if best.is_none_or(|b| p.position < b.position) {
                        best = Some(p);
                    }
                }
            }
            if batch.len() < 1024 {
                return Ok(best);
            }
            let Some(last) = batch.last() else {
                return Ok(best);
            };
            cursor = (last.min_trade_id, last.id);
        }
    }
}

/// Reads segment `s`'s block and decodes it off the runtime.
async fn decode(inner: Arc<dyn Backend>, s: Segment) -> Result<Arc<Decoded>, StoreError> {
    let (block, checksum) = inner.segment_block(s.id).await?;
    let decoded = tokio::task::spawn_blocking(move || {
        let symbol = market_trade::symbol_of(&s.stream).ok_or_else(|| StoreError::Corrupt {
            position: s.first_position,
            column: "trade_segments.stream",
            value: s.stream.to_string(),
        })?;
        let trades = s.open(&block, checksum)?;
        let ids_rise = trades
            .windows(2)
            .all(|w| w[0].row.trade_id < w[1].row.trade_id);
        Ok(Arc::new(Decoded {
            trades,
            ids_rise,
            symbol,
        }))
    });
    crate::joined(decoded.await)
}

/// Adds to `page` the trades of block `d` (segment `s`) whose keys along `along` are in
/// `from..=cutoff`, at most `limit` of a block in key order; answers the cutoff, lowered when
/// a block out of key order (read whole) made the page long.
fn take<T: Paged>(
    page: &mut Vec<T>,
    s: &Segment,
    d: &Decoded,
    along: &Along,
    (from, mut cutoff): (i64, i64),
    limit: usize,
) -> Result<i64, StoreError> {
    let key = |t: &T| t.key(along);
    let trades = &d.trades;
    // In key order, but along trade ids when they do not rise with versions.
    let sorted = d.ids_rise || !matches!(along, Along::Trades(_));
    let start = if sorted {
        trades.partition_point(|t| along.of(t) < from)
    } else {
        0
    };
    page.reserve(limit.min(trades.len() - start));
    // The page's trades go to another thread: see `Symbol::unshared`.
    let symbol = d.symbol.unshared();
    let mut taken = 0;
    for t in &trades[start..] {
        let k = along.of(t);
        if k > cutoff {
            if sorted {
                break;
            }
            continue;
        }
        if k < from {
            continue;
        }
        page.push(T::sealed(s, &symbol, t)?);
        taken += 1;
        if sorted && taken == limit {
            // The rest of a sorted block comes after these in the page.
            break;
        }
        if !sorted && page.len() >= 2 * limit.max(1) {
            // An unsorted one is read whole: keep the page short as it goes.
            tidy(page, &key, limit);
            cutoff = page.last().map_or(cutoff, key);
        }
    }
    Ok(cutoff)
}

/// Sorts a merged page by its key, drops what both the tables and a segment held (a seal
/// between the two reads), and keeps the first `limit`.
fn tidy<T: Paged>(page: &mut Vec<T>, key: &impl Fn(&T) -> i64, limit: usize) {
    // Most pages come from one block alone, in order already: keys rising, nothing twice
    // (a key names one event along any of them).
    if !page.windows(2).all(|w| key(&w[0]) < key(&w[1])) {
        page.sort_by_key(|t| (key(t), t.position()));
        page.dedup_by_key(|t| t.position());
    }
    page.truncate(limit);
}

/// What a page holds, made from a sealed trade too.
pub(crate) trait Paged: Sized + Send {
    fn position(&self) -> i64;
    fn version(&self) -> i64;
    /// Its trade id, when it is a trade.
    fn trade_id(&self) -> Option<u64>;
    fn sealed(s: &Segment, symbol: &Symbol, t: &SealedTrade) -> Result<Self, StoreError>;

    /// Its key along `along` (a trade id for a trade; after every trade for anything else).
    fn key(&self, along: &Along) -> i64 {
        match along {
            Along::All => self.position(),
            Along::Stream(_) => self.version(),
            Along::Trades(_) => self
                .trade_id()
                .and_then(|id| i64::try_from(id).ok())
                .unwrap_or(i64::MAX),
        }
    }
}

impl Paged for StreamEvent {
    fn position(&self) -> i64 {
        self.position
    }
    fn version(&self) -> i64 {
        self.stream_version
    }
    fn trade_id(&self) -> Option<u64> {
        self.event.trade_id()
    }
    fn sealed(s: &Segment, symbol: &Symbol, t: &SealedTrade) -> Result<Self, StoreError> {
        Ok(StreamEvent {
            position: t.position,
            stream_id: s.stream.clone(),
            stream_version: t.version,
            event: t.row.trade(symbol.clone(), t.position)?.into(),
        })
    }
}

impl Paged for RecordedEvent {
    fn position(&self) -> i64 {
        self.position
    }
    fn version(&self) -> i64 {
        self.stream_version
    }
    fn trade_id(&self) -> Option<u64> {
        self.event.trade_id()
    }
    fn sealed(s: &Segment, symbol: &Symbol, t: &SealedTrade) -> Result<Self, StoreError> {
        let trade = t.row.trade(symbol.clone(), t.position)?;
        Ok(RecordedEvent {
            position: t.position,
            event_id: t
                .row
                .event_id
                .unwrap_or_else(|| crate::trade_event_id(&s.stream, &trade)),
            stream_id: s.stream.clone(),
            stream_version: t.version,
            recorded_at: t.recorded_at,
            correlation_id: None,
            causation_id: None,
            metadata: crate::Metadata::new(),
            event: trade.into(),
        })
    }
}

impl Paged for PlacedTrade {
    fn position(&self) -> i64 {
        self.position
    }
    fn version(&self) -> i64 {
        self.stream_version
    }
    fn trade_id(&self) -> Option<u64> {
        Some(self.trade.trade_id)
    }
    fn sealed(_: &Segment, symbol: &Symbol, t: &SealedTrade) -> Result<Self, StoreError> {
        Ok(PlacedTrade {
            position: t.position,
            stream_version: t.version,
            trade: t.row.trade(symbol.clone(), t.position)?,
        })
    }
}

#[async_trait]
impl Backend for Tiered {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn stores_trade_rows(&self) -> bool {
        self.inner.stores_trade_rows()
    }

    fn database(&self) -> Database {
        self.inner.database()
    }

    async fn try_append(
        &self,
        parts: &mut [Part],
        recorded_at: i64,
        look_up: bool,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        self.inner.try_append(parts, recorded_at, look_up).await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }

    async fn durable(&self, last: i64) -> Result<(), StoreError> {
        self.inner.durable(last).await
    }

    async fn read_all(&self, from: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        let page = self.inner.read_all(from, limit).await?;
        self.merge(Along::All, from, limit, page).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let page = self.inner.read_stream(stream, from, limit).await?;
        self.merge(Along::Stream(stream.clone()), from, limit, page)
            .await
    }

    async fn read_all_events(&self, from: i64, limit: i64) -> Result<Vec<StreamEvent>, StoreError> {
        let page = self.inner.read_all_events(from, limit).await?;
        self.merge(Along::All, from, limit, page).await
    }

    async fn read_stream_events(
        &self,
        stream: &StreamId,
        from: i64,
        limit: i64,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        let page = self.inner.read_stream_events(stream, from, limit).await?;
        self.merge(Along::Stream(stream.clone()), from, limit, page)
            .await
    }

    async fn read_trades(
        &self,
        stream: &StreamId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        let page = self.inner.read_trades(stream, after, limit).await?;
        let from = after.saturating_add(1);
        self.merge(Along::Trades(stream.clone()), from, limit, page)
            .await
    }

    async fn read_placed_trades(
        &self,
        stream: &StreamId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<PlacedTrade>, StoreError> {
        let page = self.inner.read_placed_trades(stream, after, limit).await?;
        let from = after.saturating_add(1);
        self.merge(Along::Trades(stream.clone()), from, limit, page)
            .await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<i64, StoreError> {
        self.inner.stream_version(stream).await
    }

    async fn head_position(&self) -> Result<i64, StoreError> {
        self.inner.head_position().await
    }

    async fn stream_heads(&self, prefix: &str) -> Result<Vec<StreamHead>, StoreError> {
        self.inner.stream_heads(prefix).await
    }

    async fn watch_foreign_appends(&self, wakes: Wakes) -> Result<(), StoreError> {
        self.inner.watch_foreign_appends(wakes).await
    }

    fn poll_interval(&self) -> std::time::Duration {
        self.inner.poll_interval()
    }

    async fn first_trade_after(
        &self,
        stream: &StreamId,
        after: i64,
    ) -> Result<Option<Place>, StoreError> {
        let live = self.inner.first_trade_after(stream, after).await?;
        let sealed = self.first_sealed_after(stream, after).await?;
        Ok(match (live, sealed) {
            (Some(a), Some(b)) => Some(if a.position <= b.position { a } else { b }),
            (a, b) => a.or(b),
        })
    }

    async fn segments(
        &self,
        along: &Along,
        from: i64,
        to: i64,
        after: (i64, i64),
        limit: i64,
    ) -> Result<Vec<Segment>, StoreError> {
        self.inner.segments(along, from, to, after, limit).await
    }

    async fn segment_block(&self, id: i64) -> Result<(Vec<u8>, i64), StoreError> {
        self.inner.segment_block(id).await
    }

    async fn seal_window(
        &self,
        from: i64,
        before: i64,
    ) -> Result<Option<(i64, Sealed)>, StoreError> {
        self.inner.seal_window(from, before).await
    }

    async fn compact(&self) -> Result<(), StoreError> {
        self.inner.compact().await
    }

    async fn sealed(&self) -> Result<Sealed, StoreError> {
        self.inner.sealed().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market_trade::TradeRow;

    fn trade(position: i64, version: i64, time: i64) -> SealedTrade {
        SealedTrade {
            position,
            version,
            recorded_at: time,
            row: TradeRow {
                trade_id: 100 + version,
                price: 9643,
                quantity: 1,
                form: 0,
                trade_time: time,
                event_lag: 0,
                buyer_order_id: None,
                seller_order_id: None,
                first_trade_id: None,
                event_id: None,
            },
        }
    }

    #[test]
    fn a_plan_seals_runs_of_old_trades_and_never_a_streams_newest() {
        let names: HashMap<i64, StreamId> = [
            (1, StreamId::new("trades-ADAUSDT").unwrap()),
            (2, StreamId::new("trades-BTCUSDT").unwrap()),
        ]
        .into();
        // Stream 1: versions 1..=4, the third too new, so only 1 and 2 are sealed (a run).
        // Stream 2: versions 1..=2, its newest is 2, so only 1.
        let rows = vec![
            (1, trade(10, 1, 1)),
            (2, trade(11, 1, 1)),
            (1, trade(12, 2, 2)),
            (1, trade(13, 3, 50)),
            (2, trade(14, 2, 3)),
            (1, trade(15, 4, 4)),
        ];
        let newest = [(1, 9), (2, 2)].into();
        let plan = plan(rows, &newest, 10, &names);
        let described: Vec<_> = plan
            .iter()
            .map(|s| {
                (
                    s.stream,
                    s.info.first_version,
                    s.info.last_version,
                    s.info.trades,
                )
            })
            .collect();
        assert_eq!(described, vec![(1, 1, 2, 2), (2, 1, 1, 1)]);
        let first = segment::decode(&plan[0].block, plan[0].checksum).unwrap();
        assert_eq!(first, vec![trade(10, 1, 1), trade(12, 2, 2)]);
    }
}
