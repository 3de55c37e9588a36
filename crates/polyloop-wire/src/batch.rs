//! Batch builders: append tasks or results one at a time, then emit one frame for all of them.
//!
//! The output is byte for byte what postcard writes for `ToChild::Tasks(vec)` and
//! `ToParent::Results(vec)`, but without building the `Vec` of borrowed items first: each item is
//! encoded as it arrives, straight into the frame's buffer, behind room kept for the header. The
//! frame header, variant tag and count are written into that room at the end, so a finished
//! frame is written out from where it was built, with no copy.

use std::marker::PhantomData;

use crate::{FRAME_HEADER_LEN, Limits, Outcome, WireError, clear_and_trim, varint};

/// The variant tags of the batch messages, fixed by their position in the enums.
const TASKS_TAG: u8 = 1;
const RESULTS_TAG: u8 = 1;

/// Room kept in front of the items: the length, the one-byte tag and a count of up to five bytes.
const HEADER_ROOM: usize = FRAME_HEADER_LEN + 1 + 5;

#[derive(Debug, Default)]
struct Inner {
    /// `HEADER_ROOM` bytes, then the encoded items (empty until the first push).
    buf: Vec<u8>,
    count: usize,
}

impl Inner {
    /// The buffer to append one item to.
    fn items(&mut self) -> &mut Vec<u8> {
        if self.buf.is_empty() {
            self.buf.resize(HEADER_ROOM, 0);
        }
        self.count += 1;
        &mut self.buf
    }

    fn byte_len(&self) -> usize {
        self.buf.len().saturating_sub(HEADER_ROOM)
    }

    fn finish(&mut self, tag: u8, limits: &Limits) -> Result<&[u8], WireError> {
        if self.buf.is_empty() {
            self.buf.resize(HEADER_ROOM, 0);
        }
        let mut header = [0u8; HEADER_ROOM];
        let mut count = Vec::with_capacity(5);
        varint::push_u64(&mut count, self.count as u64);
        let payload_len = 1 + count.len() + self.byte_len();
        if payload_len > limits.max_frame_len as usize {
            let err =
                WireError::FrameTooLarge { len: payload_len as u64, max: limits.max_frame_len };
            self.clear();
            return Err(err);
        }
        let header_len = FRAME_HEADER_LEN + 1 + count.len();
        header[..FRAME_HEADER_LEN].copy_from_slice(&(payload_len as u32).to_le_bytes());
        header[FRAME_HEADER_LEN] = tag;
        header[FRAME_HEADER_LEN + 1..header_len].copy_from_slice(&count);
        let start = HEADER_ROOM - header_len;
        self.buf[start..HEADER_ROOM].copy_from_slice(&header[..header_len]);
        Ok(&self.buf[start..])
    }

    fn clear(&mut self) {
        // A batch that held one large item gives its memory back.
        clear_and_trim(&mut self.buf);
        self.count = 0;
    }

    fn finish_into(
        &mut self,
        tag: u8,
        out: &mut Vec<u8>,
        limits: &Limits,
    ) -> Result<(), WireError> {
        out.extend_from_slice(self.finish(tag, limits)?);
        self.clear();
        Ok(())
    }
}

/// Which message a batch builds; sealed.
pub trait BatchKind: sealed::Sealed {
    /// The message's variant tag.
    const TAG: u8;
}

mod sealed {
    pub trait Sealed {}
}

/// Marks a [`Batch`] of tasks: a [`ToChild::Tasks`](crate::ToChild::Tasks) frame.
#[derive(Debug)]
pub enum Tasks {}

/// Marks a [`Batch`] of results: a [`ToParent::Results`](crate::ToParent::Results) frame.
#[derive(Debug)]
pub enum Results {}

impl sealed::Sealed for Tasks {}
impl sealed::Sealed for Results {}

impl BatchKind for Tasks {
    const TAG: u8 = TASKS_TAG;
}

impl BatchKind for Results {
    const TAG: u8 = RESULTS_TAG;
}

/// Builds one batch frame, item by item; see [`TaskBatch`] and [`ResultBatch`].
#[derive(Debug)]
pub struct Batch<K> {
    inner: Inner,
    _kind: PhantomData<K>,
}

/// Builds a [`ToChild::Tasks`](crate::ToChild::Tasks) frame.
pub type TaskBatch = Batch<Tasks>;

/// Builds a [`ToParent::Results`](crate::ToParent::Results) frame.
pub type ResultBatch = Batch<Results>;

impl<K> Default for Batch<K> {
    fn default() -> Self {
        Batch { inner: Inner::default(), _kind: PhantomData }
    }
}

impl<K: BatchKind> Batch<K> {
    /// Items appended since the last frame.
    pub fn len(&self) -> usize {
        self.inner.count
    }

    /// Whether no item was appended since the last frame.
    pub fn is_empty(&self) -> bool {
        self.inner.count == 0
    }

    /// Bytes of encoded items waiting.
    pub fn byte_len(&self) -> usize {
        self.inner.byte_len()
    }

    /// The frame for everything pushed so far, in place; call [`Batch::clear`] once it is
    /// written. A frame over the limit is an error, and the batch is cleared.
    pub fn finish(&mut self, limits: &Limits) -> Result<&[u8], WireError> {
        self.inner.finish(K::TAG, limits)
    }

    /// Starts a new batch.
    pub fn clear(&mut self) {
        self.inner.clear();
    }

    /// Appends the frame for everything pushed so far to `out` and starts a new batch.
    pub fn finish_into(&mut self, out: &mut Vec<u8>, limits: &Limits) -> Result<(), WireError> {
        self.inner.finish_into(K::TAG, out, limits)
    }
}

impl Batch<Tasks> {
    /// Appends one task.
    pub fn push(&mut self, id: u64, task: u32, input: &[u8]) {
        // Exactly postcard's encoding of `TaskFrame { id, task, input }` (three varints and
        // the bytes), written by hand because this runs once per task.
        let items = self.inner.items();
        varint::push_u64(items, id);
        varint::push_u64(items, task.into());
        varint::push_u64(items, input.len() as u64);
        items.extend_from_slice(input);
    }
}

impl Batch<Results> {
    /// Appends one result.
    pub fn push(&mut self, id: u64, outcome: &Outcome<'_>) {
        if let Outcome::Ok(output) = outcome {
            // Cannot fail: exactly `len` bytes are written.
            let _ = self.push_ok_with(id, output.len(), |items| {
                items.extend_from_slice(output);
                Ok(())
            });
            return;
        }
        // A tuple encodes exactly like the `ResultFrame` struct, without cloning the outcome.
        // Serializing into a Vec cannot fail for these field types.
        let _ = postcard::to_io(&(id, outcome), self.inner.items());
    }

    /// Appends a successful result whose `len` bytes of output `write` appends itself, straight
    /// into the frame (no intermediate buffer for a large output). If `write` fails or appends
    /// other than `len` bytes, the result is taken back out and the reason returned.
    pub fn push_ok_with(
        &mut self,
        id: u64,
        len: usize,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
    ) -> Result<(), String> {
        let items = self.inner.items();
        let start = items.len();
        // The id, then the outcome as a part holds it: postcard's encoding of the tuple.
        varint::push_u64(items, id);
        let written = crate::push_ok_outcome_with(items, len, write);
        if written.is_err() {
            items.truncate(start);
            self.inner.count -= 1;
            if self.inner.count == 0 {
                self.inner.clear();
            }
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gives_back_what_one_large_item_made_it_grow() {
        let limits = Limits::default();
        let mut batch = TaskBatch::default();
        batch.push(0, 0, &vec![1; 2 * crate::KEEP_CAPACITY]);
        let mut out = Vec::new();
        batch.finish_into(&mut out, &limits).unwrap();
        assert_eq!(batch.inner.buf.capacity(), 0, "the large batch's memory was given back");
        // Small batches keep their buffer between frames.
        batch.push(1, 0, &[1; 100]);
        batch.finish_into(&mut out, &limits).unwrap();
        assert!(batch.inner.buf.capacity() > 0, "a small batch's buffer is reused");
        let mut results = ResultBatch::default();
        let _ = results.push_ok_with(0, 2 * crate::KEEP_CAPACITY, |items| {
            items.resize(items.len() + 2 * crate::KEEP_CAPACITY, 0);
            Ok(())
        });
        let frame_len = results.finish(&limits).unwrap().len();
        assert!(frame_len > 2 * crate::KEEP_CAPACITY);
        results.clear();
        assert_eq!(results.inner.buf.capacity(), 0);
    }
}
