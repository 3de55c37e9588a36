//! Encode and decode throughput of task and result batches (filled in by the bench work).
fn main() {}
