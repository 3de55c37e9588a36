//! Batch builders: append tasks or results one at a time, then emit one frame for all of them.
//!
//! The output is byte for byte what postcard writes for `ToChild::Tasks(vec)` and
//! `ToParent::Results(vec)`, but without building the `Vec` of borrowed items first: each item is
//! encoded as it arrives, and the frame header, variant tag and count are written at the end.

use crate::frame::patch_header;
use crate::{FRAME_HEADER_LEN, Limits, Outcome, WireError, varint};

/// The variant tags of the batch messages, fixed by their position in the enums.
const TASKS_TAG: u64 = 1;
const RESULTS_TAG: u64 = 1;

#[derive(Debug, Default)]
struct Batch {
    items: Vec<u8>,
    count: usize,
}

impl Batch {
    fn finish_into(
        &mut self,
        tag: u64,
        out: &mut Vec<u8>,
        limits: &Limits,
    ) -> Result<(), WireError> {
        let start = out.len();
        out.reserve(FRAME_HEADER_LEN + 10 + self.items.len());
        out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
        varint::push_u64(out, tag);
        varint::push_u64(out, self.count as u64);
        out.extend_from_slice(&self.items);
        self.items.clear();
        self.count = 0;
        patch_header(out, start, limits)
    }
}

/// Builds a [`ToChild::Tasks`](crate::ToChild::Tasks) frame.
#[derive(Debug, Default)]
pub struct TaskBatch(Batch);

impl TaskBatch {
    /// Appends one task.
    pub fn push(&mut self, slot: u32, task: u32, input: &[u8]) {
        // Exactly postcard's encoding of `TaskFrame { slot, task, input }` (three varints and
        // the bytes), written by hand because this runs once per task.
        let items = &mut self.0.items;
        varint::push_u64(items, slot.into());
        varint::push_u64(items, task.into());
        varint::push_u64(items, input.len() as u64);
        items.extend_from_slice(input);
        self.0.count += 1;
    }

    /// Tasks appended since the last frame.
    pub fn len(&self) -> usize {
        self.0.count
    }

    /// Whether no task was appended since the last frame.
    pub fn is_empty(&self) -> bool {
        self.0.count == 0
    }

    /// Bytes of encoded tasks waiting.
    pub fn byte_len(&self) -> usize {
        self.0.items.len()
    }

    /// Appends the frame for everything pushed so far to `out` and starts a new batch.
    pub fn finish_into(&mut self, out: &mut Vec<u8>, limits: &Limits) -> Result<(), WireError> {
        self.0.finish_into(TASKS_TAG, out, limits)
    }
}

/// Builds a [`ToParent::Results`](crate::ToParent::Results) frame.
#[derive(Debug, Default)]
pub struct ResultBatch(Batch);

impl ResultBatch {
    /// Appends one result.
    pub fn push(&mut self, slot: u32, outcome: &Outcome<'_>) {
        if let Outcome::Ok(output) = outcome {
            // The hot path, by hand: slot, the `Ok` tag (0), then the bytes.
            let items = &mut self.0.items;
            varint::push_u64(items, slot.into());
            items.push(0);
            varint::push_u64(items, output.len() as u64);
            items.extend_from_slice(output);
            self.0.count += 1;
            return;
        }
        // A tuple encodes exactly like the `ResultFrame` struct, without cloning the outcome.
        // Serializing into a Vec cannot fail for these field types.
        let _ = postcard::to_io(&(slot, outcome), &mut self.0.items);
        self.0.count += 1;
    }

    /// Results appended since the last frame.
    pub fn len(&self) -> usize {
        self.0.count
    }

    /// Whether no result was appended since the last frame.
    pub fn is_empty(&self) -> bool {
        self.0.count == 0
    }

    /// Bytes of encoded results waiting.
    pub fn byte_len(&self) -> usize {
        self.0.items.len()
    }

    /// Appends the frame for everything pushed so far to `out` and starts a new batch.
    pub fn finish_into(&mut self, out: &mut Vec<u8>, limits: &Limits) -> Result<(), WireError> {
        self.0.finish_into(RESULTS_TAG, out, limits)
    }
}
