//! A chunk's outcomes as they are made: consecutive inputs of one task run in order, and their
//! outcomes are collected into parts, each of which travels to the parent as one result for the
//! chunk's id (`Outcome::Part`). Sans-IO: the worker loop runs the tasks and sends the parts.

use polyloop_wire::{Outcome, push_ok_outcome_with, push_outcome};

use crate::registry::{Failure, RunningTask};

/// Bytes an outcome takes beyond its output: its tag and length.
const OUTCOME_OVERHEAD: usize = 16;

/// How a task's future ended: done (its output is in the task) or failed, or the message of its
/// panic.
pub(crate) type Finished = Result<Result<(), Failure>, String>;

/// The outcomes of one chunk not yet sent, cut into parts of at most `part_limit` bytes (one
/// outcome larger than that goes alone).
#[derive(Debug)]
pub(crate) struct Parts {
    /// The part being filled.
    current: Vec<u8>,
    /// Parts cut off because the next outcome did not fit, oldest first.
    full: Vec<Vec<u8>>,
    part_limit: usize,
    /// The largest outcome a frame can carry.
    max_outcome: usize,
}

impl Parts {
    /// Parts for a worker whose frames carry at most `max_frame_len` bytes.
    pub(crate) fn new(max_frame_len: u32) -> Self {
        let max_frame = max_frame_len as usize;
        Parts {
            current: Vec::new(),
            full: Vec::new(),
            // Small enough that a part never holds up the other results for long.
            part_limit: (max_frame / 4).clamp(1, 1 << 20),
            // The result's id and tags, and the part's own tag and length, around it.
            max_outcome: max_frame.saturating_sub(4 * OUTCOME_OVERHEAD),
        }
    }

    /// Makes room for an outcome of about `size` bytes.
    fn reserve(&mut self, size: usize) {
        if !self.current.is_empty() && self.current.len() + size > self.part_limit {
            self.full.push(std::mem::take(&mut self.current));
        }
    }

    /// Adds an outcome that is not `Ok`.
    pub(crate) fn push(&mut self, outcome: &Outcome<'_>) {
        self.reserve(OUTCOME_OVERHEAD);
        push_outcome(&mut self.current, outcome);
    }

    /// Adds the outcome of a task that ended: its output, encoded in place, or why there is none.
    pub(crate) fn push_finished(&mut self, task: &(impl RunningTask + ?Sized), finished: Finished) {
        match finished {
            Err(panic) => return self.push(&Outcome::Panicked(panic)),
            Ok(Err(failure)) => return self.push(&failure.as_outcome()),
            Ok(Ok(())) => {}
        }
        let len = match task.encoded_len() {
            Ok(len) => len,
            Err(reason) => {
                let why = format!("output failed to serialize: {reason}");
                return self.push(&Outcome::Serialization(why));
            }
        };
        if len > self.max_outcome {
            let why = format!(
                "output of {len} bytes exceeds the frame limit of {} bytes",
                self.max_outcome + 4 * OUTCOME_OVERHEAD
            );
            return self.push(&Outcome::Serialization(why));
        }
        self.reserve(len + OUTCOME_OVERHEAD);
        if let Err(reason) =
            push_ok_outcome_with(&mut self.current, len, |out| task.encode_into(out))
        {
            let why = format!("output failed to serialize: {reason}");
            self.push(&Outcome::Serialization(why));
        }
    }

    /// Every part made so far, oldest first, to send now.
    pub(crate) fn take(&mut self) -> impl Iterator<Item = Vec<u8>> + use<> {
        let mut parts = std::mem::take(&mut self.full);
        if !self.current.is_empty() {
            parts.push(std::mem::take(&mut self.current));
        }
        parts.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use polyloop_wire::{PartOutcomes, RemoteError};

    use super::*;
    use crate::registry::Done;

    fn outcomes(parts: &mut Parts) -> Vec<Vec<String>> {
        parts
            .take()
            .map(|part| {
                PartOutcomes::new(&part).map(|outcome| format!("{:?}", outcome.unwrap())).collect()
            })
            .collect()
    }

    #[test]
    fn outcomes_keep_their_order_in_one_part() {
        let mut parts = Parts::new(1 << 20);
        parts.push_finished(&Done(vec![1]), Ok(Ok(())));
        let failed = RemoteError { message: "no".into(), chain: vec![], value: None };
        parts.push_finished(&Done(vec![]), Ok(Err(Failure::Failed(failed))));
        parts.push_finished(&Done(vec![]), Err("boom".into()));
        parts.push(&Outcome::Cancelled);
        let got = outcomes(&mut parts);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            got[0],
            [
                "Ok([1])",
                "Failed(RemoteError { message: \"no\", chain: [], value: None })",
                "Panicked(\"boom\")",
                "Cancelled"
            ]
        );
        assert_eq!(parts.take().count(), 0, "taken parts are gone");
    }

    #[test]
    fn parts_are_cut_at_the_limit_and_a_large_output_goes_alone() {
        let mut parts = Parts::new(4096); // parts of up to 1024 bytes
        for _ in 0..3 {
            parts.push_finished(&Done(vec![7; 400]), Ok(Ok(())));
        }
        parts.push_finished(&Done(vec![8; 2000]), Ok(Ok(())));
        parts.push_finished(&Done(vec![9; 10]), Ok(Ok(())));
        let sizes: Vec<usize> = outcomes(&mut parts).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 1, 1, 1], "two fit, then one, then the large one, then the rest");
    }

    #[test]
    fn an_output_no_frame_can_carry_fails_alone() {
        let mut parts = Parts::new(4096);
        parts.push_finished(&Done(vec![1; 5000]), Ok(Ok(())));
        parts.push_finished(&Done(vec![2]), Ok(Ok(())));
        let got = outcomes(&mut parts);
        assert!(got[0][0].starts_with("Serialization(\"output of 5000 bytes exceeds"), "{got:?}");
        assert_eq!(got[0][1], "Ok([2])");
    }
}
