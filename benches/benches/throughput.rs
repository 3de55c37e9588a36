//! No-op task throughput through the facade: `map`, `map_unordered` and `map_stream` over `u64`s.
//!
//! The tasks do nothing, so each figure is polyloop's per-task overhead: scheduling, batching,
//! serialization and the socket. `cargo xtask bench` reports the headline figure; this bench is
//! for comparing changes (`cargo bench -p polyloop-benches --bench throughput`).

#![expect(
    missing_docs,
    reason = "criterion_group! defines a pub fn that cannot take a doc comment"
)]

use std::pin::Pin;

use criterion::{BenchmarkId, Criterion, Throughput};
use futures_core::Stream;
use polyloop::Pool;

/// Returns its input: the cost of a task is then all overhead.
#[polyloop::task]
async fn noop(x: u64) -> u64 {
    x
}

/// Drains a stream of results, counting the successes.
async fn drain<S, T, E>(stream: S) -> usize
where
    S: Stream<Item = Result<T, E>>,
    E: std::fmt::Debug,
{
    let mut stream = std::pin::pin!(stream);
    let mut count = 0;
    while let Some(item) = std::future::poll_fn(|cx| Pin::as_mut(&mut stream).poll_next(cx)).await {
        item.expect("no-op task failed");
        count += 1;
    }
    count
}

fn throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let mut group = c.benchmark_group("noop");
    group.sample_size(20);
    for concurrency in [16u32, 256] {
        let pool = runtime
            .block_on(Pool::builder().processes(2).child_concurrency(concurrency).build())
            .expect("a pool of 2");
        for n in [1_000u64, 100_000] {
            group.throughput(Throughput::Elements(n));
            let id = format!("concurrency {concurrency}/{n}");
            group.bench_function(BenchmarkId::new("map", &id), |b| {
                b.iter(|| runtime.block_on(pool.map(noop, 0..n)).expect("no-op map failed"));
            });
            group.bench_function(BenchmarkId::new("map_unordered", &id), |b| {
                b.iter(|| runtime.block_on(drain(pool.map_unordered(noop, 0..n))));
            });
            group.bench_function(BenchmarkId::new("map_stream", &id), |b| {
                b.iter(|| runtime.block_on(drain(pool.map_stream(noop, 0..n))));
            });
        }
        runtime.block_on(pool.close()).expect("close");
    }
    group.finish();
}

criterion::criterion_group!(benches, throughput);
criterion::criterion_main!(benches);
