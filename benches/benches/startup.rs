//! Pool lifecycle through the facade: `build()` until every worker is ready, and `close()`.
//!
//! Each iteration starts real worker processes (this bench binary, re-executed) and reaps them,
//! so it also shows what a recycled or replaced worker costs.

#![expect(
    missing_docs,
    reason = "criterion_group! defines a pub fn that cannot take a doc comment"
)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use polyloop::Pool;

/// Registered so that the workers have a task table like any real program's.
#[polyloop::task]
async fn noop(x: u64) -> u64 {
    x
}

fn startup(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let mut group = c.benchmark_group("pool");
    group.sample_size(20);
    for processes in [1usize, 2] {
        group.bench_function(BenchmarkId::new("build", processes), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let pool = runtime
                        .block_on(Pool::builder().processes(processes).build())
                        .expect("a pool");
                    total += started.elapsed();
                    runtime.block_on(pool.close()).expect("close");
                }
                total
            });
        });
        group.bench_function(BenchmarkId::new("close", processes), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let pool = runtime
                        .block_on(Pool::builder().processes(processes).build())
                        .expect("a pool");
                    runtime.block_on(pool.apply(noop, 1)).expect("apply");
                    let started = Instant::now();
                    runtime.block_on(pool.close()).expect("close");
                    total += started.elapsed();
                }
                total
            });
        });
    }
    group.finish();
}

criterion::criterion_group!(benches, startup);
criterion::criterion_main!(benches);
