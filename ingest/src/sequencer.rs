//! Market order: a market stream is a sequence in trade-id order, whatever order its input came
//! in. The book's own dumps, for one, are stored in insertion order (on 2019-06-03, 50,608 of
//! 57,018 rows come after a row with a higher trade id), and a strategy fed them in file order
//! sees time run backwards.
//!
//! A [`Sequencer`] holds back the last [`WINDOW`] trades of each stream and lets the lowest ids
//! out in chunks of [`WINDOW`], so any row displaced by at most [`WINDOW`] rows comes out in
//! place: for such a row to come too late, a row above it would have to be let out while
//! [`WINDOW`] rows above that one were held, all of them arrived before it and belonging after
//! it. A chunk is put in order by sorting what is held (by id, then arrival), and input already
//! in order is only checked, never sorted, so sorted input
//! (Binance's public files, recordings) streams through at a memmove's cost, in memory bounded
//! by two windows (about 30 MB a stream), however long the input. A row further out of place
//! comes out after higher ids: it is counted as `late`, never dropped, and the caller says so.

/// How many trades a stream holds back at least (and lets out at once).
pub const WINDOW: usize = 100_000;

/// What a sequencer did to its input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reordering {
    /// Trades that came after a higher trade id of their stream (and were put back in place).
    pub reordered: u64,
    /// Trades that came too late to be put in place: let out after higher ids.
    pub late: u64,
}

/// Puts items keyed by trade id back in trade-id order, per stream `K`.
pub struct Sequencer<K, T> {
    lanes: std::collections::BTreeMap<K, Lane<T>>,
    window: usize,
    counts: Reordering,
}

struct Lane<T> {
    /// Held items as (trade id, arrival number, item), in arrival order after the part last
    /// sorted.
    held: Vec<(u64, u64, T)>,
    arrivals: u64,
    /// Whether `held` is in id order (then letting out needs no sort).
    in_order: bool,
    highest_in: Option<u64>,
    last_out: Option<u64>,
}

impl<K: Ord + Clone, T> Default for Sequencer<K, T> {
    fn default() -> Self {
        Self::new(WINDOW)
    }
}

impl<K: Ord + Clone, T> Sequencer<K, T> {
    /// A sequencer holding back at least `window` items per stream (at least one).
    pub fn new(window: usize) -> Self {
        Sequencer {
            lanes: std::collections::BTreeMap::new(),
            window: window.max(1),
            counts: Reordering::default(),
        }
    }

    /// Takes one item of stream `key` with trade id `id`; lets out to `out` what can go.
    pub fn push<E>(
        &mut self,
        key: &K,
        id: u64,
        item: T,
        out: &mut impl FnMut(&K, T) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.lanes.contains_key(key) {
            let lane = Lane {
                held: Vec::new(),
                arrivals: 0,
                in_order: true,
                highest_in: None,
                last_out: None,
            };
            self.lanes.insert(key.clone(), lane);
        }
        let Some(lane) = self.lanes.get_mut(key) else {
            return Ok(());
        };
        if lane.highest_in.is_some_and(|h| id < h) {
            self.counts.reordered += 1;
        }
        lane.highest_in = Some(lane.highest_in.map_or(id, |h| h.max(id)));
        if lane.held.last().is_some_and(|(last, _, _)| id < *last) {
            lane.in_order = false;
        }
        if lane.held.len() == lane.held.capacity() {
            // Grow as a Vec does, but never past the two windows it can hold.
            let room = (2 * self.window).saturating_sub(lane.held.len()).max(1);
            lane.held
                .reserve_exact(lane.held.len().max(1_024).min(room));
        }
        lane.arrivals += 1;
        lane.held.push((id, lane.arrivals, item));
        if lane.held.len() >= 2 * self.window {
            let keep = self.window;
            lane.release(key, keep, &mut self.counts, out)?;
        }
        Ok(())
    }

    /// Lets out everything still held, stream by stream in key order.
    pub fn finish<E>(&mut self, out: &mut impl FnMut(&K, T) -> Result<(), E>) -> Result<(), E> {
        for (key, lane) in &mut self.lanes {
            lane.release(key, 0, &mut self.counts, out)?;
        }
        Ok(())
    }

    /// What was reordered and what came late so far.
    pub fn counts(&self) -> Reordering {
        self.counts
    }
}

impl<T> Lane<T> {
    /// Puts what is held in order and lets out all but the `keep` highest.
    fn release<K, E>(
        &mut self,
        key: &K,
        keep: usize,
        counts: &mut Reordering,
        out: &mut impl FnMut(&K, T) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.in_order {
            // Equal ids keep their arrival order; an unstable sort needs no scratch memory.
            self.held
                .sort_unstable_by_key(|(id, arrival, _)| (*id, *arrival));
            self.in_order = true;
        }
        let go = self.held.len().saturating_sub(keep);
        for (id, _, item) in self.held.drain(..go) {
            if self.last_out.is_some_and(|last| id < last) {
                counts.late += 1;
            }
            self.last_out = Some(self.last_out.map_or(id, |l| l.max(id)));
            out(key, item)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(window: usize, ids: &[(u8, u64)]) -> (Vec<(u8, u64)>, Reordering) {
        let mut s = Sequencer::new(window);
        let mut got = Vec::new();
        let mut out = |k: &u8, id: u64| -> Result<(), ()> {
            got.push((*k, id));
            Ok(())
        };
        for &(k, id) in ids {
            s.push(&k, id, id, &mut out).unwrap();
        }
        s.finish(&mut out).unwrap();
        (got, s.counts())
    }

    #[test]
    fn rows_out_of_place_within_the_window_come_out_in_order() {
        let (got, counts) = run(3, &[(0, 5), (0, 3), (0, 4), (0, 1), (0, 2), (0, 6)]);
        assert_eq!(got, [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (0, 6)]);
        assert_eq!(
            counts,
            Reordering {
                reordered: 4,
                late: 0
            }
        );
    }

    #[test]
    fn each_stream_is_ordered_on_its_own_and_duplicates_stay() {
        let (got, counts) = run(10, &[(1, 9), (0, 2), (1, 8), (0, 1), (0, 2)]);
        assert_eq!(got, [(0, 1), (0, 2), (0, 2), (1, 8), (1, 9)]);
        assert_eq!(counts.reordered, 2);
    }

    #[test]
    fn a_row_later_than_the_window_is_let_out_late_and_counted() {
        // Window 2: at 4 held, the 2 lowest go. 1 comes 4 rows after its place.
        let (got, counts) = run(2, &[(0, 3), (0, 4), (0, 5), (0, 6), (0, 1)]);
        assert_eq!(got, [(0, 3), (0, 4), (0, 1), (0, 5), (0, 6)]);
        assert_eq!(
            counts,
            Reordering {
                reordered: 1,
                late: 1
            }
        );
    }

    #[test]
    fn rows_displaced_by_up_to_the_window_are_never_late() {
        // Every row shifted back by up to 3 places, with a window of 3.
        let mut ids: Vec<(u8, u64)> = (0..60).map(|i| (0, i)).collect();
        for chunk in ids.chunks_mut(4) {
            chunk.rotate_right(1);
        }
        let (got, counts) = run(3, &ids);
        let expected: Vec<(u8, u64)> = (0..60).map(|i| (0, i)).collect();
        assert_eq!(got, expected);
        assert_eq!(counts.late, 0);
    }
}
