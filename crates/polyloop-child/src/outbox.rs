//! The results a worker has not written yet, and the rule for when its writer must wake. Sans-IO:
//! finished tasks push into an [`Outbox`] under the worker's lock, and the writer task takes
//! what accumulated and writes it without the lock.
//!
//! Calling order: [`Outbox::push`] or [`Outbox::push_result`] for each result, waking the writer
//! whenever one returns `true`; the writer, once woken, calls [`Outbox::take`] and writes the
//! [`Taken`] frames, then sleeps until the next wake.

use polyloop_wire::{KEEP_CAPACITY, Limits, Outcome, ResultBatch};

use crate::chunk::Finished;
use crate::registry::RunningTask;

/// Bytes a result takes beyond its output or message: id, tags and lengths.
const OUTCOME_OVERHEAD: usize = 32;

/// A batch is cut once it holds this many bytes, far below the frame limit: larger frames
/// would buy no fewer syscalls, and a reader's buffer would grow past what it keeps
/// ([`KEEP_CAPACITY`]) and be given back and grown again (zeroed) for each of them. A result
/// larger than this still travels, in a frame of its own.
const BATCH_BYTES: usize = KEEP_CAPACITY / 4;

/// Results not yet written: whole frames cut at the limits, and the batch being filled.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// Results not yet encoded into a frame.
    batch: ResultBatch,
    /// Frames ready to write: a batch goes here when it is full.
    frames: Vec<u8>,
    limits: Limits,
}

/// What the writer took out of an [`Outbox`], to write without the lock. The next
/// [`Outbox::take`] swaps it back in, so both sides keep reusing the same two buffers.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// Whole frames, back to back.
    pub(crate) frames: Vec<u8>,
    /// The last results, not yet a frame: [`ResultBatch::finish`] makes one in place.
    pub(crate) batch: ResultBatch,
}

impl Outbox {
    /// An empty outbox whose frames respect `limits`.
    pub(crate) fn new(limits: Limits) -> Self {
        Outbox { batch: ResultBatch::default(), frames: Vec::new(), limits }
    }

    /// Whether nothing waits to be written.
    pub(crate) fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.frames.is_empty()
    }

    /// Queues one result; `true` if the outbox was empty before, so the writer sleeps and must be
    /// woken (once: until it takes, later results find it awake or about to be).
    #[must_use = "the writer must be woken when this returns true"]
    pub(crate) fn push(&mut self, id: u64, outcome: &Outcome<'_>) -> bool {
        let size = outcome_size_hint(outcome);
        if !self.make_room(size) {
            let max = self.limits.max_frame_len;
            let too_big = Outcome::Serialization(format!(
                "a result of {size} bytes exceeds the frame limit of {max} bytes"
            ));
            return self.push(id, &too_big);
        }
        let was_idle = self.is_empty();
        self.batch.push(id, outcome);
        was_idle
    }

    /// Queues a finished task's result: its output is encoded straight into the batch. Returns
    /// what [`Outbox::push`] does.
    #[must_use = "the writer must be woken when this returns true"]
    pub(crate) fn push_result(
        &mut self,
        id: u64,
        output: &dyn RunningTask,
        finished: Finished,
    ) -> bool {
        match finished {
            Err(panic) => return self.push(id, &Outcome::Panicked(panic)),
            Ok(Err(failure)) => return self.push(id, &failure.as_outcome()),
            Ok(Ok(())) => {}
        }
        let len = match output.encoded_len() {
            Ok(len) => len,
            Err(reason) => {
                let why = format!("output failed to serialize: {reason}");
                return self.push(id, &Outcome::Serialization(why));
            }
        };
        if !self.make_room(len + OUTCOME_OVERHEAD) {
            let max = self.limits.max_frame_len;
            let why = format!("output of {len} bytes exceeds the frame limit of {max} bytes");
            return self.push(id, &Outcome::Serialization(why));
        }
        let was_idle = self.is_empty();
        match self.batch.push_ok_with(id, len, |items| output.encode_into(items)) {
            Ok(()) => was_idle,
            Err(reason) => {
                let why = format!("output failed to serialize: {reason}");
                self.push(id, &Outcome::Serialization(why))
            }
        }
    }

    /// Hands everything queued to the writer, and takes back the buffers it wrote last time
    /// (`taken` must have been written and cleared): the outbox is empty afterwards.
    pub(crate) fn take(&mut self, taken: &mut Taken) {
        std::mem::swap(&mut self.frames, &mut taken.frames);
        std::mem::swap(&mut self.batch, &mut taken.batch);
    }

    /// Makes room in the batch for a result of `size` bytes, moving a full batch to the frames
    /// waiting to be written; `false` if no frame could hold it.
    fn make_room(&mut self, size: usize) -> bool {
        let max_len = self.limits.max_frame_len as usize;
        if size > max_len {
            return false;
        }
        if !self.batch.is_empty()
            && (self.batch.byte_len() + size > max_len.min(BATCH_BYTES)
                || self.batch.len() >= self.limits.max_batch_len as usize)
        {
            // Cannot fail: the batch was kept under both limits.
            let _ = self.batch.finish_into(&mut self.frames, &self.limits);
        }
        true
    }
}

/// An upper bound of an outcome's encoded size, short of the error strings' exact lengths.
fn outcome_size_hint(outcome: &Outcome<'_>) -> usize {
    OUTCOME_OVERHEAD
        + match outcome {
            Outcome::Ok(bytes) => bytes.len(),
            Outcome::Failed(err) => {
                err.message.len() + err.chain.iter().map(|s| s.len() + 8).sum::<usize>()
            }
            Outcome::Panicked(msg) | Outcome::Serialization(msg) => msg.len(),
            Outcome::Part(bytes) => bytes.len(),
            Outcome::TimedOut | Outcome::Cancelled | Outcome::UnknownTask(_) => 0,
        }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use polyloop_wire::{ToParent, decode_to_parent, split_frame};

    use super::*;
    use crate::registry::{Done, Failure};

    /// A finished task whose output writes other than the length it announced.
    struct Lies;

    impl RunningTask for Lies {
        fn poll_run(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Failure>> {
            Poll::Ready(Ok(()))
        }
        fn encoded_len(&self) -> Result<usize, String> {
            Ok(4)
        }
        fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), String> {
            out.push(1);
            Ok(())
        }
    }

    fn limits(max_frame_len: u32, max_batch_len: u32) -> Limits {
        Limits { max_frame_len, max_batch_len }
    }

    /// Takes what `outbox` holds as the writer writes it: one `Vec` per frame, each result as
    /// `(id, outcome as text)`.
    fn take_frames(outbox: &mut Outbox, limits: &Limits) -> Vec<Vec<(u64, String)>> {
        let mut taken = Taken::default();
        outbox.take(&mut taken);
        let mut bytes = taken.frames.clone();
        if !taken.batch.is_empty() {
            bytes.extend_from_slice(taken.batch.finish(limits).unwrap());
        }
        let mut frames = Vec::new();
        let mut rest = &bytes[..];
        while let Some((payload, used)) = split_frame(rest, limits).unwrap() {
            let ToParent::Results(results) = decode_to_parent(payload, limits).unwrap() else {
                panic!("not a results frame");
            };
            frames.push(results.into_iter().map(|r| (r.id, format!("{:?}", r.outcome))).collect());
            rest = &rest[used..];
        }
        assert!(rest.is_empty(), "{} bytes after the last frame", rest.len());
        frames
    }

    #[test]
    fn take_hands_over_every_result_in_order_and_leaves_the_outbox_empty() {
        let limits = Limits::default();
        let mut outbox = Outbox::new(limits);
        assert!(outbox.is_empty());
        let _ = outbox.push(3, &Outcome::Cancelled);
        let _ = outbox.push_result(1, &Done(vec![7, 8]), Ok(Ok(())));
        let _ = outbox.push_result(2, &Done(vec![]), Err("boom".into()));
        assert!(!outbox.is_empty());
        let frames = take_frames(&mut outbox, &limits);
        assert_eq!(
            frames,
            [[
                (3, "Cancelled".to_owned()),
                (1, "Ok([7, 8])".to_owned()),
                (2, "Panicked(\"boom\")".to_owned()),
            ]]
        );
        assert!(outbox.is_empty(), "empty after take");
        assert_eq!(take_frames(&mut outbox, &limits), Vec::<Vec<_>>::new(), "nothing twice");
    }

    #[test]
    fn take_hands_back_the_writers_buffers() {
        let mut outbox = Outbox::new(Limits::default());
        let mut taken = Taken::default();
        taken.frames.reserve(1000);
        let capacity = taken.frames.capacity();
        // The outbox keeps the writer's buffer and fills it; the next take hands it back.
        outbox.take(&mut taken);
        let _ = outbox.push(1, &Outcome::Cancelled);
        outbox.take(&mut taken);
        assert_eq!(taken.batch.len(), 1);
        assert!(taken.frames.capacity() >= capacity, "the writer's frames buffer came back");
    }

    #[test]
    fn only_the_first_result_after_an_idle_moment_wakes_the_writer() {
        let limits = limits(1 << 20, 2);
        let mut outbox = Outbox::new(limits);
        assert!(outbox.push(0, &Outcome::Cancelled), "the first result wakes");
        assert!(!outbox.push(1, &Outcome::TimedOut), "the writer is awake already");
        // The third cuts a frame at the batch limit: still not idle, still no wake.
        assert!(!outbox.push_result(2, &Done(vec![1]), Ok(Ok(()))));
        let mut taken = Taken::default();
        outbox.take(&mut taken);
        assert!(outbox.push_result(3, &Done(vec![1]), Ok(Ok(()))), "idle again after a take");
        assert!(!outbox.push(4, &Outcome::Cancelled));
    }

    #[test]
    fn a_rejected_output_wakes_the_writer_like_any_result() {
        let mut outbox = Outbox::new(Limits::default());
        assert!(outbox.push_result(0, &Lies, Ok(Ok(()))), "its Serialization outcome wakes");
        let frames = take_frames(&mut outbox, &Limits::default());
        assert_eq!(frames.len(), 1);
        assert!(frames[0][0].1.starts_with("Serialization(\"output failed to"), "{frames:?}");
    }

    #[test]
    fn a_batch_is_cut_into_a_frame_at_the_batch_limit() {
        let limits = limits(1 << 20, 2);
        let mut outbox = Outbox::new(limits);
        for id in 0..5 {
            let _ = outbox.push(id, &Outcome::Cancelled);
        }
        let sizes: Vec<usize> = take_frames(&mut outbox, &limits).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1]);
    }

    #[test]
    fn a_batch_is_cut_into_a_frame_before_it_would_pass_the_frame_limit() {
        let limits = limits(1000, 1 << 16);
        let mut outbox = Outbox::new(limits);
        for id in 0..5 {
            let _ = outbox.push_result(id, &Done(vec![9; 400]), Ok(Ok(())));
        }
        let frames = take_frames(&mut outbox, &limits);
        let sizes: Vec<usize> = frames.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1], "two outputs of 400 bytes per frame of 1000");
        let ids: Vec<u64> = frames.iter().flatten().map(|(id, _)| *id).collect();
        assert_eq!(ids, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn large_outputs_are_cut_into_frames_of_about_a_quarter_of_what_a_reader_keeps() {
        let limits = Limits::default();
        let mut outbox = Outbox::new(limits);
        let output = Done(vec![7; 600 << 10]);
        for id in 0..6 {
            let _ = outbox.push_result(id, &output, Ok(Ok(())));
        }
        // A large output travels alone, however large.
        let _ = outbox.push_result(6, &Done(vec![8; 3 * BATCH_BYTES]), Ok(Ok(())));
        let _ = outbox.push(7, &Outcome::Cancelled);
        let sizes: Vec<usize> = take_frames(&mut outbox, &limits).iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 1, 1, 1, 1, 1, 1, 1], "not one frame of 6 MiB under a 256 MiB limit");
        for id in 0..20 {
            let _ = outbox.push_result(id, &Done(vec![7; 40 << 10]), Ok(Ok(())));
        }
        let sizes: Vec<usize> = take_frames(&mut outbox, &limits).iter().map(Vec::len).collect();
        assert_eq!(sizes, [20], "small ones still share a frame");
    }

    #[test]
    fn a_result_no_frame_can_carry_is_a_serialization_error_in_its_place() {
        let limits = limits(1000, 1 << 16);
        let mut outbox = Outbox::new(limits);
        let _ = outbox.push_result(0, &Done(vec![1; 2000]), Ok(Ok(())));
        let _ = outbox.push(1, &Outcome::Panicked("p".repeat(2000)));
        let _ = outbox.push_result(2, &Done(vec![2]), Ok(Ok(())));
        let frames = take_frames(&mut outbox, &limits);
        assert_eq!(frames.len(), 1, "{frames:?}");
        let results = &frames[0];
        assert_eq!(results[0].0, 0);
        assert!(results[0].1.starts_with("Serialization(\"output of 2000 bytes exceeds"));
        assert_eq!(results[1].0, 1);
        assert!(results[1].1.starts_with("Serialization(\"a result of 2032 bytes exceeds"));
        assert_eq!(results[2], (2, "Ok([2])".to_owned()));
    }
}
