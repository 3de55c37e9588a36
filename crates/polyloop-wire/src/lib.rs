//! polyloop's IPC wire protocol, sans-IO: bytes in, messages out.
//!
//! This crate contains no networking code, no processes and no async runtime. It defines the
//! messages that cross the boundary between a polyloop pool (the parent) and its workers (the
//! children), how they are framed, the handshake that checks both sides agree, and the limits
//! every decoder enforces. `polyloop-pool` and `polyloop-child` are thin IO drivers around it.
//!
//! # Brief overview
//! * A frame is a little-endian `u32` payload length followed by a [postcard] payload that must be
//!   consumed exactly. [`split_frame`] finds frames in a byte buffer; [`decode_to_child`] and
//!   [`decode_to_parent`] parse a payload; [`encode_frame`] writes one.
//! * The parent speaks first with [`ToChild::Welcome`]; the child answers with
//!   [`ToParent::Hello`] (its protocol version, pid and task registry). After that the parent sends
//!   [`ToChild::Tasks`] batches and the child answers with [`ToParent::Results`] batches, which
//!   [`TaskBatch`] and [`ResultBatch`] build without an allocation per item.
//! * [`TaskSpec`] is the schema of one task: its stable name, its serde input and output types
//!   and a [fingerprint](TaskSpec::fingerprint) of them, so a worker binary built from other code
//!   is refused. [`Task`] adds the code, for the worker side; a parent needs only the spec.
//! * [`decode_value`] decodes a postcard value from a peer, such as a task's input or output,
//!   with a nesting limit ([`DEFAULT_MAX_NESTING`]), so a deeply nested value is a
//!   [`DecodeError`] instead of a stack overflow that aborts the process; [`encode_value`]
//!   appends one to a buffer.
//!
//! The byte-level layout is documented in `docs/PROTOCOL.md`.
//!
//! # Example
//! ```
//! use polyloop_wire::{decode_to_child, split_frame, Limits, TaskBatch, ToChild};
//!
//! let mut batch = TaskBatch::default();
//! batch.push(7, 0, &postcard::to_allocvec(&21u64).unwrap());
//! let mut bytes = Vec::new();
//! batch.finish_into(&mut bytes, &Limits::default()).unwrap();
//!
//! let (payload, used) = split_frame(&bytes, &Limits::default()).unwrap().unwrap();
//! assert_eq!(used, bytes.len());
//! let ToChild::Tasks(tasks) = decode_to_child(payload, &Limits::default()).unwrap() else {
//!     unreachable!()
//! };
//! assert_eq!((tasks[0].id, tasks[0].task), (7, 0));
//! ```

mod append;
mod batch;
mod bootstrap;
mod buffer;
mod chunk;
mod depth;
mod error;
mod fold;
mod frame;
mod message;
mod reason;
mod task;
mod varint;

pub use append::encode_value;
pub use batch::{Batch, BatchKind, ResultBatch, Results, TaskBatch, Tasks};
pub use bootstrap::{
    ENV_HEARTBEAT_FD, ENV_HEARTBEAT_MS, ENV_PARENT_PID, ENV_WORKER_FD, WELCOME_TIMEOUT, WorkerExit,
    heartbeat_interval,
};
pub use buffer::{FrameBuffer, clear_and_trim};
pub use chunk::{
    ChunkInputs, PartOutcomes, PartSummary, push_encoded_input, push_input, push_ok_outcome_with,
    push_outcome,
};
pub use depth::{DEFAULT_MAX_NESTING, DecodeError, decode_value};
pub use error::WireError;
pub use fold::{Fold, FoldInput, FoldOutput};
pub use frame::{
    FRAME_HEADER_LEN, KEEP_CAPACITY, Limits, decode_to_child, decode_to_parent, encode_frame,
    peek_protocol_version, split_frame,
};
pub use message::{
    ChunkFrame, Hello, InitTask, Outcome, PROTOCOL_VERSION, RemoteError, ResultFrame, Retry,
    RuntimeFlavor, TaskFrame, TaskInfo, ToChild, ToParent, TypedValue, Welcome, WorkerConfig,
};
pub use reason::serialize_failure;
pub use task::{SCHEMAS, Task, TaskSchema, TaskSpec, schema_fingerprint};

#[doc(hidden)]
pub mod __private {
    pub use linkme;
}

#[cfg(test)]
mod tests;
