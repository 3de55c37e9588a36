//! Property tests of the decoder: random bytes, every truncation and bit flips of valid frames
//! are a typed error or "need more bytes", never a panic.

use polyloop_wire::{
    Limits, Outcome, RemoteError, ResultBatch, TaskBatch, ToChild, decode_to_child,
    decode_to_parent, encode_frame, split_frame,
};
use proptest::prelude::*;

/// Decodes `bytes` as a stream of frames in both directions.
fn decode_all(bytes: &[u8], limits: &Limits) {
    let mut rest = bytes;
    while let Ok(Some((payload, used))) = split_frame(rest, limits) {
        let _ = decode_to_child(payload, limits);
        let _ = decode_to_parent(payload, limits);
        rest = &rest[used..];
    }
}

/// A valid frame of each batch kind, built from generated contents.
fn frames(tasks: &[(u64, u32, Vec<u8>)], message: &str) -> Vec<Vec<u8>> {
    let limits = Limits::default();
    let mut task_batch = TaskBatch::default();
    let mut result_batch = ResultBatch::default();
    for (id, task, input) in tasks {
        task_batch.push(*id, *task, input);
        result_batch.push(*id, &Outcome::Ok(input));
        let failed = RemoteError {
            message: message.to_owned(),
            chain: vec![message.to_owned()],
            value: None,
        };
        result_batch.push(id.wrapping_add(1), &Outcome::Failed(failed));
    }
    let mut task_frame = Vec::new();
    task_batch.finish_into(&mut task_frame, &limits).unwrap();
    let mut result_frame = Vec::new();
    result_batch.finish_into(&mut result_frame, &limits).unwrap();
    let mut cancel = Vec::new();
    let ids = tasks.iter().map(|t| t.0).collect();
    encode_frame(&ToChild::Cancel(ids), &mut cancel, &limits).unwrap();
    vec![task_frame, result_frame, cancel]
}

fn task_list() -> impl Strategy<Value = Vec<(u64, u32, Vec<u8>)>> {
    prop::collection::vec(
        (any::<u64>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..40)),
        0..8,
    )
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes, &Limits::default());
        // And as a payload under a correct length prefix.
        let mut framed = (bytes.len() as u32).to_le_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        decode_all(&framed, &Limits::default());
    }

    #[test]
    fn valid_frames_decode_and_truncations_need_more(tasks in task_list(), message in ".{0,20}") {
        let limits = Limits::default();
        for frame in frames(&tasks, &message) {
            let (payload, used) = split_frame(&frame, &limits).unwrap().unwrap();
            prop_assert_eq!(used, frame.len());
            let decoded = decode_to_child(payload, &limits).is_ok() || decode_to_parent(payload, &limits).is_ok();
            prop_assert!(decoded);
            for cut in 0..frame.len() {
                prop_assert_eq!(split_frame(&frame[..cut], &limits), Ok(None));
            }
        }
    }

    #[test]
    fn bit_flips_never_panic(tasks in task_list(), flips in prop::collection::vec(any::<usize>(), 1..4)) {
        let limits = Limits { max_frame_len: 1 << 16, max_batch_len: 64 };
        for mut frame in frames(&tasks, "x") {
            for flip in &flips {
                let bit = flip % (frame.len() * 8);
                frame[bit / 8] ^= 1 << (bit % 8);
            }
            decode_all(&frame, &limits);
        }
    }
}
