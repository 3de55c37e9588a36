//! A read buffer that yields whole frames: the IO driver fills it, this finds the frames.

use crate::{FRAME_HEADER_LEN, KEEP_CAPACITY, Limits, WireError, split_frame};

/// The smallest read the buffer offers, so that one read syscall can fetch many small frames.
const MIN_READ: usize = 64 * 1024;

/// Empties `buf`, and gives its memory back when it grew past [`KEEP_CAPACITY`].
///
/// For write buffers that a large frame made grow: without it, one 200 MiB result would keep
/// 200 MiB allocated for as long as the connection lives.
///
/// ```
/// let mut out = vec![0u8; 8 << 20];
/// polyloop_wire::clear_and_trim(&mut out);
/// assert!(out.is_empty() && out.capacity() <= polyloop_wire::KEEP_CAPACITY);
/// ```
pub fn clear_and_trim(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_CAPACITY {
        *buf = Vec::new();
    } else {
        buf.clear();
    }
}

/// Accumulates bytes read from a peer and hands out complete frame payloads.
///
/// Calling protocol: [`FrameBuffer::spare`] gives space to read into, [`FrameBuffer::filled`]
/// records how much was read, then [`FrameBuffer::next_frame`] until it returns `Ok(None)`.
///
/// The buffer grows to hold the largest frame it is given, and shrinks back once that frame was
/// handled and what is left fits in [`KEEP_CAPACITY`]: the next [`spare`](Self::spare) moves
/// what is left into a small buffer.
///
/// ```
/// use polyloop_wire::{FrameBuffer, Limits, ToChild, encode_frame};
///
/// let mut bytes = Vec::new();
/// encode_frame(&ToChild::Shutdown, &mut bytes, &Limits::default()).unwrap();
/// let mut buffer = FrameBuffer::new(Limits::default());
/// let spare = buffer.spare();
/// spare[..bytes.len()].copy_from_slice(&bytes);
/// buffer.filled(bytes.len());
/// assert!(buffer.next_frame().unwrap().is_some());
/// assert!(buffer.next_frame().unwrap().is_none());
/// ```
#[derive(Debug)]
pub struct FrameBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    limits: Limits,
}

impl FrameBuffer {
    /// An empty buffer that enforces `limits`.
    pub fn new(limits: Limits) -> Self {
        FrameBuffer { buf: Vec::new(), start: 0, end: 0, limits }
    }

    /// Changes the limits, e.g. once the handshake has agreed on them.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Free space at the end of the buffer to read into; never empty.
    ///
    /// The space is large enough for the rest of the frame at the front of the buffer, so a frame
    /// of any allowed size fits.
    pub fn spare(&mut self) -> &mut [u8] {
        let buffered = self.end - self.start;
        // Never sized by a header over the limit: next_frame rejects that frame, and a peer must
        // not make us allocate before it does.
        let frame_len = self.buf[self.start..self.end]
            .first_chunk::<FRAME_HEADER_LEN>()
            .map(|header| u32::from_le_bytes(*header))
            .filter(|&len| len <= self.limits.max_frame_len)
            .map_or(0, |len| FRAME_HEADER_LEN + len as usize);
        let wanted = frame_len.max(buffered + MIN_READ);
        if self.buf.len() > KEEP_CAPACITY && wanted <= KEEP_CAPACITY {
            // A large frame was handled: give its memory back.
            let mut small = vec![0; wanted.max(MIN_READ)];
            small[..buffered].copy_from_slice(&self.buf[self.start..self.end]);
            self.buf = small;
            self.start = 0;
            self.end = buffered;
        } else if self.buf.len() - self.start < wanted {
            // Move what is left to the front, then grow if that still is not enough.
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = buffered;
            if self.buf.len() < wanted {
                // Doubling, but never past what is kept: a buffer over it is given back.
                self.buf.resize(wanted.max((2 * self.buf.len()).min(KEEP_CAPACITY)), 0);
            }
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = buffered;
        }
        if frame_len > MIN_READ && self.end < self.start + frame_len {
            // A large frame is read up to its end and no further, so that the next one starts
            // at the front of the buffer rather than being moved there.
            return &mut self.buf[self.end..self.start + frame_len];
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into [`FrameBuffer::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The payload of the next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, WireError> {
        match split_frame(&self.buf[self.start..self.end], &self.limits)? {
            Some((_, used)) => {
                let payload = self.start + FRAME_HEADER_LEN..self.start + used;
                self.start += used;
                if self.start == self.end {
                    // Empty: restart at the front so the next read needs no copy.
                    self.start = 0;
                    self.end = 0;
                }
                Ok(Some(&self.buf[payload]))
            }
            None => Ok(None),
        }
    }

    /// Whether a whole frame is buffered, so [`FrameBuffer::next_frame`] will return it.
    pub fn has_frame(&self) -> Result<bool, WireError> {
        Ok(split_frame(&self.buf[self.start..self.end], &self.limits)?.is_some())
    }

    /// Bytes buffered that are not yet part of a returned frame.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ToChild, encode_frame};

    /// Reads `piece` into `buffer` as a driver would, in as many reads as the spare room takes,
    /// calling `after_read` after each.
    fn read_in(
        buffer: &mut FrameBuffer,
        mut piece: &[u8],
        mut after_read: impl FnMut(&mut FrameBuffer),
    ) {
        while !piece.is_empty() {
            let spare = buffer.spare();
            let n = spare.len().min(piece.len());
            spare[..n].copy_from_slice(&piece[..n]);
            buffer.filled(n);
            piece = &piece[n..];
            after_read(buffer);
        }
    }

    #[test]
    fn yields_frames_split_at_every_byte() {
        let limits = Limits::default();
        let mut stream = Vec::new();
        for i in 0..50u32 {
            encode_frame(&ToChild::Cancel(vec![u64::from(i); i as usize]), &mut stream, &limits)
                .unwrap();
        }
        encode_frame(&ToChild::Cancel(vec![u64::MAX; 60_000]), &mut stream, &limits).unwrap();
        for chunk in [1, 3, 17, 4096, 1 << 20] {
            let mut buffer = FrameBuffer::new(limits);
            let mut seen = Vec::new();
            for piece in stream.chunks(chunk) {
                read_in(&mut buffer, piece, |buffer| {
                    while let Some(payload) = buffer.next_frame().unwrap() {
                        match crate::decode_to_child(payload, &limits).unwrap() {
                            ToChild::Cancel(ids) => seen.push(ids.len()),
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                });
            }
            let expected: Vec<usize> = (0..50).chain([60_000]).collect();
            assert_eq!(seen, expected, "chunk {chunk}");
            assert_eq!(buffer.buffered(), 0);
        }
    }

    /// A Tasks frame of one task with `len` bytes of input, then `Cancel(vec![7])`.
    fn large_then_small(len: usize) -> Vec<u8> {
        let limits = Limits::default();
        let mut batch = crate::TaskBatch::default();
        batch.push(0, 0, &vec![0xab; len]);
        let mut stream = Vec::new();
        batch.finish_into(&mut stream, &limits).unwrap();
        encode_frame(&ToChild::Cancel(vec![7]), &mut stream, &limits).unwrap();
        stream
    }

    #[test]
    fn a_large_frame_is_read_to_its_end_and_the_next_one_starts_at_the_front() {
        let limits = Limits::default();
        let stream = large_then_small(1 << 20);
        let mut small = Vec::new();
        encode_frame(&ToChild::Cancel(vec![7]), &mut small, &limits).unwrap();
        let frame_len = stream.len() - small.len();
        let mut buffer = FrameBuffer::new(limits);
        let spare = buffer.spare();
        spare[..100].copy_from_slice(&stream[..100]);
        buffer.filled(100);
        assert!(buffer.next_frame().unwrap().is_none());
        // No room past the large frame's end, where a read would take the next frame's start
        // and the next spare would have to move it to the front.
        let spare = buffer.spare();
        assert_eq!(spare.len(), frame_len - 100);
        spare.copy_from_slice(&stream[100..frame_len]);
        buffer.filled(frame_len - 100);
        assert!(buffer.next_frame().unwrap().is_some());
        assert_eq!(buffer.buffered(), 0);
        let spare = buffer.spare();
        assert!(spare.len() >= MIN_READ);
        spare[..small.len()].copy_from_slice(&small);
        buffer.filled(small.len());
        assert_eq!(buffer.start, 0, "the next frame is at the front");
        assert!(buffer.next_frame().unwrap().is_some());
    }

    #[test]
    fn shrinks_back_once_a_large_frame_was_handled() {
        let limits = Limits::default();
        let stream = large_then_small(3 * KEEP_CAPACITY);
        let mut buffer = FrameBuffer::new(limits);
        let mut rest = stream.as_slice();
        let (mut seen, mut largest) = (Vec::new(), 0);
        while !rest.is_empty() {
            let spare = buffer.spare();
            let n = spare.len().min(rest.len()).min(1 << 20);
            spare[..n].copy_from_slice(&rest[..n]);
            buffer.filled(n);
            largest = largest.max(buffer.buf.len());
            rest = &rest[n..];
            while let Some(payload) = buffer.next_frame().unwrap() {
                seen.push(match crate::decode_to_child(payload, &limits).unwrap() {
                    ToChild::Tasks(tasks) => tasks[0].input.len(),
                    ToChild::Cancel(ids) => ids.len(),
                    other => panic!("unexpected {other:?}"),
                });
            }
        }
        assert_eq!(seen, [3 * KEEP_CAPACITY, 1]);
        assert!(largest > 3 * KEEP_CAPACITY, "the large frame was buffered whole");
        buffer.spare();
        assert!(buffer.buf.len() <= KEEP_CAPACITY, "kept {} bytes", buffer.buf.len());

        // Bytes of the next frame that arrived with the large one survive the move.
        let stream = large_then_small(3 * KEEP_CAPACITY);
        let split = stream.len() - 3;
        let mut written = 0;
        while written < split {
            let spare = buffer.spare();
            let n = spare.len().min(split - written);
            spare[..n].copy_from_slice(&stream[written..written + n]);
            buffer.filled(n);
            written += n;
        }
        assert!(buffer.next_frame().unwrap().is_some());
        assert!(buffer.next_frame().unwrap().is_none());
        let spare = buffer.spare();
        spare[..3].copy_from_slice(&stream[split..]);
        buffer.filled(3);
        assert!(buffer.buf.len() <= KEEP_CAPACITY);
        let payload = buffer.next_frame().unwrap().expect("the small frame, whole");
        assert_eq!(crate::decode_to_child(payload, &limits).unwrap(), ToChild::Cancel(vec![7]));
    }

    #[test]
    fn a_steady_stream_of_frames_under_the_keep_size_reuses_the_buffer() {
        let limits = Limits::default();
        let stream = large_then_small(1 << 20).repeat(4);
        let mut buffer = FrameBuffer::new(limits);
        let mut sizes = Vec::new();
        for piece in stream.chunks(64 << 10) {
            read_in(&mut buffer, piece, |buffer| {
                while buffer.next_frame().unwrap().is_some() {}
                sizes.push(buffer.buf.as_ptr() as usize);
            });
        }
        // After the first large frame sized it, the buffer is never reallocated.
        let settled = &sizes[sizes.len() / 2..];
        assert!(settled.windows(2).all(|w| w[0] == w[1]), "reallocated while steady");
    }

    #[test]
    fn oversized_header_is_an_error_and_allocates_nothing() {
        let mut buffer = FrameBuffer::new(Limits { max_frame_len: 1 << 30, max_batch_len: 1 });
        buffer.spare()[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        buffer.filled(4);
        assert!(matches!(buffer.next_frame(), Err(WireError::FrameTooLarge { .. })));
        assert!(buffer.spare().len() <= 2 * MIN_READ, "the header did not size the buffer");
        let mut buffer = FrameBuffer::new(Limits { max_frame_len: 10, max_batch_len: 1 });
        buffer.spare()[..4].copy_from_slice(&11u32.to_le_bytes());
        buffer.filled(4);
        assert!(matches!(buffer.next_frame(), Err(WireError::FrameTooLarge { .. })));
        assert!(buffer.spare().len() <= 2 * MIN_READ, "the header did not size the buffer");
    }
}
