//! Bandwidth through the facade for large values: tasks returning 1 MiB, and taking 1 MiB.
//!
//! Values are `serde_bytes::ByteBuf`, as the user guide advises for bytes (a plain `Vec<u8>` goes
//! through serde one element at a time). Throughput is in bytes of payload.

#![expect(
    missing_docs,
    reason = "criterion_group! defines a pub fn that cannot take a doc comment"
)]

use criterion::{BenchmarkId, Criterion, Throughput};
use polyloop::Pool;
use serde_bytes::ByteBuf;

const MIB: usize = 1 << 20;

/// Returns `bytes` bytes, as a task producing a large result would.
#[polyloop::task]
async fn blob(seed: u64, bytes: u64) -> ByteBuf {
    ByteBuf::from(vec![seed as u8; bytes as usize])
}

/// Returns the length of its input, so a large input travels one way only.
#[polyloop::task]
async fn len(bytes: ByteBuf) -> u64 {
    bytes.len() as u64
}

fn payload(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let pool = runtime.block_on(Pool::builder().processes(2).build()).expect("a pool of 2");
    let mut group = c.benchmark_group("mib");
    group.sample_size(20);
    for n in [1u64, 16] {
        group.throughput(Throughput::Bytes(n * MIB as u64));
        group.bench_function(BenchmarkId::new("results", n), |b| {
            b.iter(|| {
                runtime
                    .block_on(pool.map(blob, (0..n).map(|seed| (seed, MIB as u64))))
                    .expect("map failed")
            });
        });
        let inputs: Vec<ByteBuf> = (0..n).map(|_| ByteBuf::from(vec![3u8; MIB])).collect();
        group.bench_function(BenchmarkId::new("inputs", n), |b| {
            b.iter(|| runtime.block_on(pool.map(len, inputs.clone())).expect("map failed"));
        });
    }
    group.finish();
    runtime.block_on(pool.close()).expect("close");
}

criterion::criterion_group!(benches, payload);
criterion::criterion_main!(benches);
