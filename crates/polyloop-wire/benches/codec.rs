//! Encode and decode throughput of task and result batches, the per-task cost of the wire codec.
//!
//! Batches of 1 to 4096 small tasks (a postcard `u64` input) and results, and batches of 1 MiB
//! results, each built with the batch builders into one frame and decoded back with the same
//! limit checks a peer's bytes get. No IO: this bounds what framing costs a task.

#![expect(
    missing_docs,
    reason = "criterion_group! defines a pub fn that cannot take a doc comment"
)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use polyloop_wire::{
    Limits, Outcome, ResultBatch, TaskBatch, ToChild, ToParent, decode_to_child, decode_to_parent,
    split_frame,
};

const BATCH_SIZES: &[usize] = &[1, 16, 256, 4096];

fn small_input(i: usize) -> Vec<u8> {
    postcard::to_allocvec(&(i as u64 * 0x9E37_79B9)).unwrap_or_default()
}

fn task_frame(n: usize, limits: &Limits) -> Vec<u8> {
    let inputs: Vec<Vec<u8>> = (0..n).map(small_input).collect();
    let mut batch = TaskBatch::default();
    for (id, input) in inputs.iter().enumerate() {
        batch.push(id as u64, 0, input);
    }
    let mut out = Vec::new();
    batch.finish_into(&mut out, limits).expect("a batch within the limits");
    out
}

fn result_frame(n: usize, payload: &[u8], limits: &Limits) -> Vec<u8> {
    let mut batch = ResultBatch::default();
    for id in 0..n {
        batch.push(id as u64, &Outcome::Ok(payload));
    }
    let mut out = Vec::new();
    batch.finish_into(&mut out, limits).expect("a batch within the limits");
    out
}

fn tasks(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("task_batch");
    for &n in BATCH_SIZES {
        group.throughput(Throughput::Elements(n as u64));
        let inputs: Vec<Vec<u8>> = (0..n).map(small_input).collect();
        let mut batch = TaskBatch::default();
        let mut out = Vec::new();
        group.bench_with_input(BenchmarkId::new("encode", n), &inputs, |b, inputs| {
            b.iter(|| {
                out.clear();
                for (id, input) in inputs.iter().enumerate() {
                    batch.push(id as u64, 0, input);
                }
                batch.finish_into(&mut out, &limits).expect("within the limits");
                black_box(out.len())
            });
        });
        let frame = task_frame(n, &limits);
        group.bench_with_input(BenchmarkId::new("decode", n), &frame, |b, frame| {
            b.iter(|| {
                let (payload, _) = split_frame(frame, &limits).ok().flatten().expect("a frame");
                match decode_to_child(payload, &limits) {
                    Ok(ToChild::Tasks(items)) => black_box(items.len()),
                    _ => unreachable!("a task batch"),
                }
            });
        });
    }
    group.finish();
}

fn results(c: &mut Criterion) {
    let small = postcard::to_allocvec(&42u64).unwrap_or_default();
    result_group(c, "result_batch", &small, BATCH_SIZES, |n, _| Throughput::Elements(n as u64));
    // Large results: the codec should borrow, not copy, so decode is nearly free and encode is
    // one memcpy.
    let mebibyte = vec![0xA5u8; 1 << 20];
    result_group(c, "result_batch_1mib", &mebibyte, &[1, 8], |n, bytes| {
        Throughput::Bytes((n * bytes) as u64)
    });
}

/// Encodes and decodes batches of `n` results of `output` (already encoded), for each `n`.
fn result_group(
    c: &mut Criterion,
    name: &str,
    output: &[u8],
    sizes: &[usize],
    throughput: fn(usize, usize) -> Throughput,
) {
    let limits = Limits::default();
    let mut group = c.benchmark_group(name);
    for &n in sizes {
        group.throughput(throughput(n, output.len()));
        let mut batch = ResultBatch::default();
        let mut out = Vec::new();
        group.bench_function(BenchmarkId::new("encode", n), |b| {
            b.iter(|| {
                out.clear();
                for id in 0..n {
                    batch.push(id as u64, &Outcome::Ok(output));
                }
                batch.finish_into(&mut out, &limits).expect("within the limits");
                black_box(out.len())
            });
        });
        let frame = result_frame(n, output, &limits);
        group.bench_with_input(BenchmarkId::new("decode", n), &frame, |b, frame| {
            b.iter(|| {
                let (payload, _) = split_frame(frame, &limits).ok().flatten().expect("a frame");
                match decode_to_parent(payload, &limits) {
                    Ok(ToParent::Results(items)) => black_box(items.len()),
                    _ => unreachable!("a result batch"),
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, tasks, results);
criterion_main!(benches);
