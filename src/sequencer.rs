//! Market order: a market stream is a sequence in trade-id order, whatever order its input came
//! in. The book's own dumps, for one, are stored in insertion order (on 2019-06-03, 50,608 of
//! 57,018 rows come after a row with a higher trade id), and a strategy fed them in file order
//! sees time run backwards.
//!
//! A [`Sequencer`] holds back up to [`WINDOW`] trades per stream and lets out the lowest id
//! whenever it holds more, so any row displaced by fewer than [`WINDOW`] rows comes out in
//! place. Sorted input (Binance's public files, recordings) flows through at the cost of a heap
//! push and pop, in memory bounded by the window (about 20 MB a stream), however long the input.
//! A row more than [`WINDOW`] rows late comes out after higher ids: it is counted as `late`,
//! never dropped, and the caller says so.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};

/// How many trades a stream's window holds back at most.
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
    lanes: BTreeMap<K, Lane<T>>,
    window: usize,
    counts: Reordering,
}

struct Lane<T> {
    held: BinaryHeap<Reverse<Entry<T>>>,
    /// Arrival number: equal ids come out in the order they came in.
    arrivals: u64,
    highest_in: Option<u64>,
    last_out: Option<u64>,
}

struct Entry<T> {
    id: u64,
    arrival: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.id, self.arrival) == (other.id, other.arrival)
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.id, self.arrival).cmp(&(other.id, other.arrival))
    }
}

impl<K: Ord + Clone, T> Default for Sequencer<K, T> {
    fn default() -> Self {
        Self::new(WINDOW)
    }
}

impl<K: Ord + Clone, T> Sequencer<K, T> {
    /// A sequencer holding back at most `window` items per stream (at least one).
    pub fn new(window: usize) -> Self {
        Sequencer {
            lanes: BTreeMap::new(),
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
            self.lanes.insert(
                key.clone(),
                Lane {
                    held: BinaryHeap::new(),
                    arrivals: 0,
                    highest_in: None,
                    last_out: None,
                },
            );
        }
        let Some(lane) = self.lanes.get_mut(key) else {
            return Ok(());
        };
        if lane.highest_in.is_some_and(|h| id < h) {
            self.counts.reordered += 1;
        }
        lane.highest_in = Some(lane.highest_in.map_or(id, |h| h.max(id)));
        lane.arrivals += 1;
        lane.held.push(Reverse(Entry {
            id,
            arrival: lane.arrivals,
            item,
        }));
        while lane.held.len() > self.window {
            lane.release(key, &mut self.counts, out)?;
        }
        Ok(())
    }

    /// Lets out everything still held, stream by stream in key order.
    pub fn finish<E>(&mut self, out: &mut impl FnMut(&K, T) -> Result<(), E>) -> Result<(), E> {
        for (key, lane) in &mut self.lanes {
            while !lane.held.is_empty() {
                lane.release(key, &mut self.counts, out)?;
            }
        }
        Ok(())
    }

    /// What was reordered and what came late so far.
    pub fn counts(&self) -> Reordering {
        self.counts
    }
}

impl<T> Lane<T> {
    fn release<K, E>(
        &mut self,
        key: &K,
        counts: &mut Reordering,
        out: &mut impl FnMut(&K, T) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(Reverse(entry)) = self.held.pop() else {
            return Ok(());
        };
        if self.last_out.is_some_and(|last| entry.id < last) {
            counts.late += 1;
        }
        self.last_out = Some(self.last_out.map_or(entry.id, |l| l.max(entry.id)));
        out(key, entry.item)
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
}
