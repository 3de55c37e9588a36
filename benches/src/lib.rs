//! Shared pieces of polyloop's benchmarks that do not need polyloop itself.
//!
//! The `suite` binary (run by `cargo xtask bench`) drives the end-to-end workloads through the
//! facade; everything it compares them with lives here: the raw limits of the machine measured
//! between two of the harness's own processes ([`raw`]), the same work done by tokio tasks in one
//! process ([`reference`](mod@reference)), and the bookkeeping ([`measure`], [`report`]). The
//! sizes of a run and the shape of its report are `polyloop-bench-report`'s, which xtask reads
//! without linking this crate.

pub mod measure;
pub mod raw;
pub mod reference;
pub mod report;

pub use polyloop_bench_report::{Params, SweepSeries};
