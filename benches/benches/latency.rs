//! Round-trip latency of one task through the facade: `apply`, and `submit` then await.
//!
//! One task in flight at a time, so each figure is a full round trip: parent to worker, run,
//! result back, caller woken. The raw socketpair round trip it is judged against is measured by
//! `cargo xtask bench`, in the same run as polyloop's.

#![expect(
    missing_docs,
    reason = "criterion_group! defines a pub fn that cannot take a doc comment"
)]

use criterion::Criterion;
use polyloop::Pool;

/// Returns its input: the cost of a task is then all overhead.
#[polyloop::task]
async fn noop(x: u64) -> u64 {
    x
}

/// Returns the length of its input, so a large input travels one way only.
#[polyloop::task]
async fn len(bytes: serde_bytes::ByteBuf) -> u64 {
    bytes.len() as u64
}

fn latency(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let pool = runtime.block_on(Pool::builder().processes(2).build()).expect("a pool of 2");
    let mut group = c.benchmark_group("round_trip");
    group.bench_function("apply", |b| {
        b.iter(|| runtime.block_on(pool.apply(noop, 7)).expect("apply failed"));
    });
    group.bench_function("submit", |b| {
        b.iter(|| runtime.block_on(pool.submit(noop, 7)).expect("submit failed"));
    });
    let kib = serde_bytes::ByteBuf::from(vec![1u8; 1024]);
    group.bench_function("apply 1 KiB input", |b| {
        b.iter(|| runtime.block_on(pool.apply(len, kib.clone())).expect("apply failed"));
    });
    group.finish();
    runtime.block_on(pool.close()).expect("close");
}

criterion::criterion_group!(benches, latency);
criterion::criterion_main!(benches);
