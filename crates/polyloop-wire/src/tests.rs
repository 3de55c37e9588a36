//! Unit tests of the codec: round trips, and peer bytes that must fail cleanly, never panic.

use crate::*;

fn welcome() -> ToChild<'static> {
    ToChild::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        config: WorkerConfig {
            worker_idx: 3,
            child_concurrency: 16,
            runtime: RuntimeFlavor::CurrentThread,
            task_timeout_ms: Some(1500),
            max_frame_len: 1 << 20,
            max_batch_len: 512,
            max_nesting: crate::DEFAULT_MAX_NESTING,
        },
        initializer: Some(InitTask { name: "x::init".into(), fingerprint: 9, input: vec![1, 2] }),
    })
}

fn hello() -> ToParent<'static> {
    ToParent::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        pid: 4242,
        tasks: vec![TaskInfo { name: "x::double".into(), fingerprint: 77 }],
        init_error: None,
    })
}

fn outcomes() -> Vec<Outcome<'static>> {
    vec![
        Outcome::Ok(b"\x2a"),
        Outcome::Failed(RemoteError {
            message: "no".into(),
            chain: vec!["deeper".into()],
            value: None,
        }),
        Outcome::Panicked("boom".into()),
        Outcome::TimedOut,
        Outcome::Cancelled,
        Outcome::Serialization("bad input".into()),
        Outcome::UnknownTask(5),
    ]
}

/// Every kind of frame either side sends, encoded.
fn valid_frames() -> Vec<Vec<u8>> {
    let limits = Limits::default();
    let mut frames = Vec::new();
    let retry = ToChild::Retry(Retry { id: 300, attempt: 2 });
    for msg in [welcome(), ToChild::Cancel(vec![1, 2, 300]), ToChild::Shutdown, retry] {
        let mut out = Vec::new();
        encode_frame(&msg, &mut out, &limits).unwrap();
        frames.push(out);
    }
    let mut out = Vec::new();
    encode_frame(&hello(), &mut out, &limits).unwrap();
    frames.push(out);
    let mut tasks = TaskBatch::default();
    for id in 0..5u32 {
        tasks.push(id.into(), id % 2, &[id as u8; 3]);
    }
    let mut out = Vec::new();
    tasks.finish_into(&mut out, &limits).unwrap();
    frames.push(out);
    let mut results = ResultBatch::default();
    for (id, outcome) in outcomes().iter().enumerate() {
        results.push(id as u64, outcome);
    }
    let mut out = Vec::new();
    results.finish_into(&mut out, &limits).unwrap();
    frames.push(out);
    frames
}

/// Decodes `bytes` as a stream of frames in both directions; must never panic.
pub(crate) fn decode_all(bytes: &[u8], limits: &Limits) {
    let mut rest = bytes;
    while let Ok(Some((payload, used))) = split_frame(rest, limits) {
        let _ = decode_to_child(payload, limits);
        let _ = decode_to_parent(payload, limits);
        rest = &rest[used..];
    }
}

#[test]
fn handshake_round_trips() {
    let limits = Limits::default();
    let mut out = Vec::new();
    encode_frame(&welcome(), &mut out, &limits).unwrap();
    let (payload, used) = split_frame(&out, &limits).unwrap().unwrap();
    assert_eq!(used, out.len());
    assert_eq!(decode_to_child(payload, &limits).unwrap(), welcome());
    assert_eq!(peek_protocol_version(payload).unwrap(), PROTOCOL_VERSION);

    let mut out = Vec::new();
    encode_frame(&hello(), &mut out, &limits).unwrap();
    let (payload, _) = split_frame(&out, &limits).unwrap().unwrap();
    assert_eq!(decode_to_parent(payload, &limits).unwrap(), hello());
}

#[test]
fn batches_encode_like_postcard() {
    let limits = Limits::default();
    let inputs: Vec<Vec<u8>> =
        (0..300u32).map(|i| postcard::to_allocvec(&(i, "x")).unwrap()).collect();
    let mut batch = TaskBatch::default();
    let mut expected = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        batch.push(i as u64 * 1000, i as u32, input);
        expected.push(TaskFrame { id: i as u64 * 1000, task: i as u32, input });
    }
    assert_eq!(batch.len(), 300);
    let mut ours = Vec::new();
    batch.finish_into(&mut ours, &limits).unwrap();
    assert!(batch.is_empty());
    let mut theirs = Vec::new();
    encode_frame(&ToChild::Tasks(expected.clone()), &mut theirs, &limits).unwrap();
    assert_eq!(ours, theirs);
    let (payload, _) = split_frame(&ours, &limits).unwrap().unwrap();
    assert_eq!(decode_to_child(payload, &limits).unwrap(), ToChild::Tasks(expected));

    let mut results = ResultBatch::default();
    let expected: Vec<ResultFrame<'_>> = outcomes()
        .into_iter()
        .enumerate()
        .map(|(id, outcome)| ResultFrame { id: id as u64, outcome })
        .collect();
    for frame in &expected {
        results.push(frame.id, &frame.outcome);
    }
    let mut ours = Vec::new();
    results.finish_into(&mut ours, &limits).unwrap();
    let mut theirs = Vec::new();
    encode_frame(&ToParent::Results(expected.clone()), &mut theirs, &limits).unwrap();
    assert_eq!(ours, theirs);
    let (payload, _) = split_frame(&ours, &limits).unwrap().unwrap();
    assert_eq!(decode_to_parent(payload, &limits).unwrap(), ToParent::Results(expected));
}

#[test]
fn every_truncation_needs_more_bytes_or_fails_cleanly() {
    let limits = Limits::default();
    for frame in valid_frames() {
        for cut in 0..frame.len() {
            assert_eq!(split_frame(&frame[..cut], &limits), Ok(None), "cut at {cut}");
            // The same bytes presented as a complete (shorter) frame must fail, not panic.
            let mut lying = ((cut.saturating_sub(FRAME_HEADER_LEN)) as u32).to_le_bytes().to_vec();
            lying.extend_from_slice(&frame[FRAME_HEADER_LEN.min(cut)..cut]);
            decode_all(&lying, &limits);
        }
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let limits = Limits::default();
    let mut payload = postcard::to_allocvec(&ToChild::Shutdown).unwrap();
    payload.push(0);
    assert_eq!(decode_to_child(&payload, &limits), Err(WireError::TrailingBytes(1)));
}

#[test]
fn version_mismatch_is_named() {
    let limits = Limits::default();
    let mut payload = postcard::to_allocvec(&hello()).unwrap();
    payload[1] = (PROTOCOL_VERSION + 1) as u8;
    assert_eq!(
        decode_to_parent(&payload, &limits),
        Err(WireError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: PROTOCOL_VERSION + 1 })
    );
    // A future Hello with more fields still reports the version, not a decode error.
    payload.extend_from_slice(b"new fields");
    assert!(matches!(decode_to_parent(&payload, &limits), Err(WireError::VersionMismatch { .. })));
}

#[test]
fn limits_are_enforced() {
    let limits = Limits { max_frame_len: 64, max_batch_len: 2 };
    let header = 65u32.to_le_bytes();
    assert!(matches!(split_frame(&header, &limits), Err(WireError::FrameTooLarge { len: 65, .. })));
    let mut batch = TaskBatch::default();
    for id in 0..3 {
        batch.push(id, 0, &[]);
    }
    let mut out = Vec::new();
    batch.finish_into(&mut out, &limits).unwrap();
    let (payload, _) = split_frame(&out, &limits).unwrap().unwrap();
    assert!(matches!(
        decode_to_child(payload, &limits),
        Err(WireError::BatchTooLong { len: 3, .. })
    ));
    let mut big = TaskBatch::default();
    big.push(0, 0, &[0; 100]);
    let mut out = vec![9];
    assert!(matches!(big.finish_into(&mut out, &limits), Err(WireError::FrameTooLarge { .. })));
    assert_eq!(out, [9], "a failed encode leaves the buffer as it was");
}

#[test]
fn garbage_never_panics() {
    // A fixed xorshift stream, so a failure reproduces; proptest covers more in tests/.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let limits = Limits::default();
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 64) as usize;
        let mut bytes = (len as u32).to_le_bytes().to_vec();
        let mut s = state;
        for _ in 0..len {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            bytes.push((s >> 56) as u8);
        }
        decode_all(&bytes, &limits);
    }
}

#[test]
fn bit_flips_never_panic() {
    let limits = Limits::default();
    for frame in valid_frames() {
        for bit in 0..frame.len() * 8 {
            let mut flipped = frame.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            decode_all(&flipped, &limits);
        }
    }
}

#[test]
fn results_written_in_place_match_postcard_and_roll_back_on_failure() {
    let limits = Limits::default();
    let mut batch = ResultBatch::default();
    let output = postcard::to_allocvec(&(7u64, "seven")).unwrap();
    batch
        .push_ok_with(1, output.len(), |items| {
            items.extend_from_slice(&output);
            Ok(())
        })
        .unwrap();
    // A writer that fails, and one that writes the wrong length, leave no trace.
    let refused = batch.push_ok_with(2, 3, |items| {
        items.push(1);
        Err("refused".to_owned())
    });
    assert_eq!(refused.unwrap_err(), "refused");
    let short = batch.push_ok_with(3, 5, |items| {
        items.push(1);
        Ok(())
    });
    assert!(short.unwrap_err().contains("wrote 1 bytes after announcing 5"));
    assert_eq!(batch.len(), 1);
    let frame = batch.finish(&limits).unwrap().to_vec();
    batch.clear();
    assert!(batch.is_empty());
    let mut expected = Vec::new();
    let results = vec![ResultFrame { id: 1, outcome: Outcome::Ok(&output) }];
    encode_frame(&ToParent::Results(results), &mut expected, &limits).unwrap();
    assert_eq!(frame, expected);
}

/// The worked examples of docs/PROTOCOL.md, byte for byte: the document must show what the
/// encoder writes.
#[test]
fn worked_examples_in_the_protocol_doc_are_what_the_encoder_writes() {
    let limits = Limits::default();
    let mut tasks = TaskBatch::default();
    tasks.push(0, 0, &[0x15]);
    tasks.push(300, 0, &[0x15]);
    let mut out = Vec::new();
    tasks.finish_into(&mut out, &limits).unwrap();
    assert_eq!(out, [11, 0, 0, 0, 1, 2, 0, 0, 1, 0x15, 0xac, 0x02, 0, 1, 0x15]);

    let mut results = ResultBatch::default();
    results.push(0, &Outcome::Ok(&[0x2a]));
    results.push(300, &Outcome::Cancelled);
    out.clear();
    results.finish_into(&mut out, &limits).unwrap();
    assert_eq!(out, [9, 0, 0, 0, 1, 2, 0, 0, 1, 0x2a, 0xac, 0x02, 4]);

    out.clear();
    encode_frame(&ToChild::Cancel(vec![300]), &mut out, &limits).unwrap();
    assert_eq!(out, [4, 0, 0, 0, 2, 1, 0xac, 0x02]);

    let mut inputs = Vec::new();
    crate::push_input(&mut inputs, &[0x15]);
    crate::push_input(&mut inputs, &[0xac, 0x02]);
    let chunk = ChunkFrame { id: 7, task: 0, count: 2, inputs: &inputs };
    out.clear();
    encode_frame(&ToChild::Chunk(chunk), &mut out, &limits).unwrap();
    assert_eq!(out, [10, 0, 0, 0, 4, 7, 0, 2, 5, 1, 0x15, 2, 0xac, 0x02]);

    out.clear();
    encode_frame(&ToChild::Retry(Retry { id: 300, attempt: 2 }), &mut out, &limits).unwrap();
    assert_eq!(out, [4, 0, 0, 0, 5, 0xac, 0x02, 2]);

    let mut part = Vec::new();
    crate::push_outcome(&mut part, &Outcome::Ok(&[0x2a]));
    crate::push_outcome(&mut part, &Outcome::Ok(&[0xd8, 0x04]));
    let mut results = ResultBatch::default();
    results.push(7, &Outcome::Part(&part));
    out.clear();
    results.finish_into(&mut out, &limits).unwrap();
    assert_eq!(out, [12, 0, 0, 0, 1, 1, 7, 7, 7, 0, 1, 0x2a, 0, 2, 0xd8, 0x04]);

    let welcome = ToChild::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        config: WorkerConfig {
            worker_idx: 0,
            child_concurrency: 16,
            runtime: RuntimeFlavor::CurrentThread,
            task_timeout_ms: None,
            max_frame_len: limits.max_frame_len,
            max_batch_len: limits.max_batch_len,
            max_nesting: DEFAULT_MAX_NESTING,
        },
        initializer: None,
    });
    out.clear();
    encode_frame(&welcome, &mut out, &limits).unwrap();
    let version = PROTOCOL_VERSION as u8;
    let expected = [
        [0x11, 0, 0, 0, 0, version, 0, 0x10, 0, 0].as_slice(),
        &[0x80, 0x80, 0x80, 0x80, 0x01, 0x80, 0x80, 0x04, 0x80, 0x01, 0],
    ]
    .concat();
    assert_eq!(out, expected);
    assert_eq!(PROTOCOL_VERSION, 7, "update the dumps and the version in docs/PROTOCOL.md");
}
