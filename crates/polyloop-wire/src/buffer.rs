//! A read buffer that yields whole frames: the IO driver fills it, this finds the frames.

use crate::{FRAME_HEADER_LEN, Limits, WireError, split_frame};

/// The smallest read the buffer offers, so that one read syscall can fetch many small frames.
const MIN_READ: usize = 64 * 1024;

/// Accumulates bytes read from a peer and hands out complete frame payloads.
///
/// Calling protocol: [`FrameBuffer::spare`] gives space to read into, [`FrameBuffer::filled`]
/// records how much was read, then [`FrameBuffer::next_frame`] until it returns `Ok(None)`.
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
        if self.buf.len() - self.start < wanted {
            // Move what is left to the front, then grow if that still is not enough.
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = buffered;
            if self.buf.len() < wanted {
                self.buf.resize(wanted.max(2 * self.buf.len()), 0);
            }
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = buffered;
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
                let mut piece = piece;
                while !piece.is_empty() {
                    let spare = buffer.spare();
                    let n = spare.len().min(piece.len());
                    spare[..n].copy_from_slice(&piece[..n]);
                    buffer.filled(n);
                    piece = &piece[n..];
                    while let Some(payload) = buffer.next_frame().unwrap() {
                        match crate::decode_to_child(payload, &limits).unwrap() {
                            ToChild::Cancel(ids) => seen.push(ids.len()),
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                }
            }
            let expected: Vec<usize> = (0..50).chain([60_000]).collect();
            assert_eq!(seen, expected, "chunk {chunk}");
            assert_eq!(buffer.buffered(), 0);
        }
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
