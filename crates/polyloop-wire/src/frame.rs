//! Framing: a little-endian `u32` length, then a postcard payload consumed exactly.

use serde::Serialize;

use crate::{PROTOCOL_VERSION, ToChild, ToParent, WireError};

/// Bytes in a frame header (the payload length).
pub const FRAME_HEADER_LEN: usize = 4;

/// How much memory a buffer keeps once the large frame that made it grow was handled: read and
/// write buffers and batches shrink back to at most this, so that one large task does not keep
/// its size allocated for the life of the connection. Room for a batch of many small tasks, or a
/// 1 MiB result with its doubling slack, so that a steady stream of such frames reuses its
/// buffers instead of allocating (and page-faulting) a fresh one for each frame.
pub const KEEP_CAPACITY: usize = 4 << 20;

/// The limits both sides enforce on what they decode; the parent sends its own in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest payload, in bytes.
    pub max_frame_len: u32,
    /// The most items in one batch.
    pub max_batch_len: u32,
}

impl Limits {
    /// The limits before the handshake is complete: a Welcome or Hello is a few hundred bytes
    /// (a Hello lists the worker's task names), so a header that announces more is refused before
    /// anything is allocated for it.
    pub const HANDSHAKE: Limits = Limits { max_frame_len: 1 << 20, max_batch_len: 1 };
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_frame_len: 256 << 20, max_batch_len: 1 << 16 }
    }
}

/// Finds the first frame in `buf`.
///
/// Returns the payload and the number of bytes the whole frame used, `Ok(None)` when `buf` does
/// not hold a whole frame yet, or an error when the header announces more than the limit (so a
/// reader never buffers an unbounded amount).
pub fn split_frame<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Option<(&'a [u8], usize)>, WireError> {
    let Some(header) = buf.first_chunk::<FRAME_HEADER_LEN>() else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(*header);
    if len > limits.max_frame_len {
        return Err(WireError::FrameTooLarge { len: len.into(), max: limits.max_frame_len });
    }
    let end = FRAME_HEADER_LEN + len as usize;
    Ok(buf.get(FRAME_HEADER_LEN..end).map(|payload| (payload, end)))
}

/// Appends `msg` to `out` as one frame.
///
/// On error `out` is left as it was.
pub fn encode_frame<M: Serialize>(
    msg: &M,
    out: &mut Vec<u8>,
    limits: &Limits,
) -> Result<(), WireError> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    if let Err(err) = postcard::to_io(msg, &mut *out) {
        out.truncate(start);
        return Err(err.into());
    }
    patch_header(out, start, limits)
}

/// Writes the length of the frame that starts at `start` and runs to the end of `out`.
fn patch_header(out: &mut Vec<u8>, start: usize, limits: &Limits) -> Result<(), WireError> {
    let len = out.len() - start - FRAME_HEADER_LEN;
    if len > limits.max_frame_len as usize {
        out.truncate(start);
        return Err(WireError::FrameTooLarge { len: len as u64, max: limits.max_frame_len });
    }
    out[start..start + FRAME_HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Reads the protocol version of a handshake payload without decoding the rest of it.
///
/// The handshake messages are the first variant of their enum and open with the version, so this
/// works on a payload written by any build, older or newer.
pub fn peek_protocol_version(payload: &[u8]) -> Result<u32, WireError> {
    let ((tag, version), _) = postcard::take_from_bytes::<(u32, u32)>(payload)?;
    if tag != 0 {
        return Err(WireError::Unexpected("a message other than the handshake"));
    }
    Ok(version)
}

/// Decodes a payload sent by the parent.
pub fn decode_to_child<'a>(payload: &'a [u8], limits: &Limits) -> Result<ToChild<'a>, WireError> {
    check_handshake_version(payload)?;
    let msg = decode_exact::<ToChild<'a>>(payload)?;
    match &msg {
        ToChild::Tasks(items) => check_batch(items.len(), limits)?,
        ToChild::Cancel(items) => check_batch(items.len(), limits)?,
        ToChild::Welcome(_) | ToChild::Shutdown | ToChild::Chunk(_) | ToChild::Retry(_) => {}
    }
    Ok(msg)
}

/// Decodes a payload sent by a child.
pub fn decode_to_parent<'a>(payload: &'a [u8], limits: &Limits) -> Result<ToParent<'a>, WireError> {
    check_handshake_version(payload)?;
    let msg = decode_exact::<ToParent<'a>>(payload)?;
    if let ToParent::Results(items) = &msg {
        check_batch(items.len(), limits)?;
    }
    Ok(msg)
}

fn check_handshake_version(payload: &[u8]) -> Result<(), WireError> {
    if payload.first() == Some(&0) {
        let theirs = peek_protocol_version(payload)?;
        if theirs != PROTOCOL_VERSION {
            return Err(WireError::VersionMismatch { ours: PROTOCOL_VERSION, theirs });
        }
    }
    Ok(())
}

fn decode_exact<'a, T: serde::Deserialize<'a>>(payload: &'a [u8]) -> Result<T, WireError> {
    let (msg, rest) = postcard::take_from_bytes::<T>(payload)?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes(rest.len()));
    }
    Ok(msg)
}

fn check_batch(len: usize, limits: &Limits) -> Result<(), WireError> {
    if len > limits.max_batch_len as usize {
        return Err(WireError::BatchTooLong { len, max: limits.max_batch_len });
    }
    Ok(())
}
