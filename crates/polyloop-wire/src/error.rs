//! The one error type of the wire crate: everything a peer's bytes can get wrong.

/// A frame or message that could not be encoded or decoded.
///
/// Every malformed, oversized or out-of-order input from a peer maps to one of these; the decoder
/// never panics on peer bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The length prefix announces a frame larger than the agreed limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced or attempted payload length.
        len: u64,
        /// The limit in force.
        max: u32,
    },
    /// A batch holds more items than the agreed limit.
    #[error("batch of {len} items exceeds the limit of {max}")]
    BatchTooLong {
        /// Items in the batch.
        len: usize,
        /// The limit in force.
        max: u32,
    },
    /// The payload is not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The payload decoded but left bytes unread, so it was written by a different schema.
    #[error("message has {0} trailing bytes (peer speaks a different schema)")]
    TrailingBytes(usize),
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: we speak {ours}, the peer speaks {theirs}")]
    VersionMismatch {
        /// This build's [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
        ours: u32,
        /// The version the peer announced.
        theirs: u32,
    },
    /// A message arrived that is not allowed at this point of the conversation.
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
}

impl From<postcard::Error> for WireError {
    fn from(err: postcard::Error) -> Self {
        WireError::Malformed(err.to_string())
    }
}
