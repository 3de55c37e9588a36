//! The tasks a worker holds, by the id each was sent with.
//!
//! Ids count up from zero on each connection and are never reused, so a late or repeated result
//! can name only a task that is no longer in flight, never another task: [`InFlight::remove`]
//! returns `None` for it, and the driver treats that as a broken worker.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Tasks in flight on one connection, keyed by wire id.
#[derive(Debug)]
pub(crate) struct InFlight<T> {
    next_id: u64,
    tasks: HashMap<u64, T, BuildHasherDefault<IdHasher>>,
}

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        InFlight { next_id: 0, tasks: HashMap::default() }
    }
}

impl<T> InFlight<T> {
    /// The id the next [`insert`](Self::insert) will give.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Holds `task` under a fresh id, greater than every id given before; returns the id.
    pub(crate) fn insert(&mut self, task: T) -> u64 {
        let id = self.next_id;
        // 2^64 tasks on one connection would take centuries at a billion a second.
        self.next_id += 1;
        self.tasks.insert(id, task);
        id
    }

    /// The task sent with `id`, if it is still in flight.
    pub(crate) fn get(&self, id: u64) -> Option<&T> {
        self.tasks.get(&id)
    }

    /// The task sent with `id`, to update, if it is still in flight.
    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        self.tasks.get_mut(&id)
    }

    /// Takes the task sent with `id` out: `None` if no task with that id is in flight (it was
    /// answered already, or never sent).
    pub(crate) fn remove(&mut self, id: u64) -> Option<T> {
        self.tasks.remove(&id)
    }

    /// Every task in flight, with its id, in no particular order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut T)> {
        self.tasks.iter_mut().map(|(&id, task)| (id, task))
    }

    /// Takes every task out, in the order they were inserted. Ids given later still count up
    /// from where they were.
    pub(crate) fn drain(&mut self) -> Vec<(u64, T)> {
        let mut tasks: Vec<(u64, T)> = self.tasks.drain().collect();
        tasks.sort_unstable_by_key(|&(id, _)| id);
        tasks
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.tasks.len()
    }
}

/// Hashes a `u64` id with one multiplication (Fibonacci hashing): ids are consecutive integers
/// from our own counter, not input an attacker picks, so SipHash's protection buys nothing here.
/// The low bits of the product permute the low bits of consecutive ids (the multiplier is odd)
/// and the high bits mix all of them, which is what the table's bucket index and tag use.
#[derive(Debug, Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; this keeps any other key correct, if slow.
        for &byte in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(byte));
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_up_and_are_never_reused() {
        let mut table = InFlight::default();
        let mut last = None;
        // Insert and remove in a pattern that would reuse slots in a slab with a free list.
        for round in 0..10_000u64 {
            let a = table.insert(round);
            let b = table.insert(round + 1);
            assert!(last.is_none_or(|last| a > last) && b > a);
            assert_eq!(table.remove(b), Some(round + 1));
            assert_eq!(table.remove(a), Some(round));
            last = Some(b);
        }
        assert_eq!(table.len(), 0);
        assert_eq!(table.next_id(), 20_000);
    }

    #[test]
    fn a_stale_or_repeated_id_finds_nothing() {
        let mut table = InFlight::default();
        let first = table.insert("first");
        assert_eq!(table.remove(first), Some("first"));
        // The next task must not answer to the first one's id.
        let second = table.insert("second");
        assert_ne!(first, second);
        assert_eq!(table.remove(first), None, "a late result for the first task");
        assert_eq!(table.get(second), Some(&"second"));
        assert_eq!(table.remove(second), Some("second"));
        assert_eq!(table.remove(second), None, "a repeated result");
        assert_eq!(table.remove(u64::MAX), None, "an id never sent");
    }

    #[test]
    fn drain_takes_all_and_ids_go_on_counting() {
        let mut table = InFlight::default();
        let ids: Vec<u64> = (0..100).map(|i| table.insert(i)).collect();
        for (id, task) in table.iter_mut() {
            assert_eq!(ids[*task as usize], id);
            *task += 1000;
        }
        let expected: Vec<(u64, u64)> = ids.iter().copied().zip(1000..1100).collect();
        assert_eq!(table.drain(), expected, "in the order inserted, with their ids");
        assert_eq!(table.len(), 0);
        assert_eq!(table.insert(7), 100);
    }
}
