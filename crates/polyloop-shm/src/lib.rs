//! Shared memory for polyloop: values the parent creates once and every worker maps, instead of
//! receiving a copy of them with each task.
//!
//! * [`SharedBytes`]: read-only bytes, e.g. a dataset thousands of tasks read. It travels as a
//!   few bytes that say where it is; each worker maps it once and keeps the mapping while the
//!   parent holds the value.
//! * [`SharedAtomics`]: an array of `AtomicU64` that tasks in every worker update in place, e.g.
//!   counters.
//!
//! Both are serde types: pass them in a task's arguments as any other value. Cloning one is an
//! `Arc` clone.
//!
//! # How it works
//! On Linux a value is a sealed `memfd` (it cannot shrink, and `SharedBytes` cannot be written),
//! which lives while the creating process holds a clone of the value or a task that carries
//! one is on its way. A worker opens it through `/proc/<parent>/fd/<n>`, checks its size, seals
//! and header before mapping it, and lets go of its mapping within a fraction of a second of the
//! parent closing the descriptor. Nothing is left behind when any process dies: the memory is
//! the kernel's, freed with the last descriptor and mapping.
//!
//! Elsewhere (macOS) `SharedBytes` falls back to carrying its bytes inline, as any other value;
//! `SharedAtomics::new` returns an `Unsupported` error.
//!
//! # Pins
//! The pool serializes a task's input inside [`collect_pins`], and keeps the [`Pins`] it gets
//! with the task until the task resolves: a value the user dropped right after submitting it
//! stays open until every worker that needs it had its chance to map it.

mod pins;
mod region;
mod types;

pub use pins::{Collector, Pins, collect_pins};
pub use types::{SharedAtomics, SharedBytes};
