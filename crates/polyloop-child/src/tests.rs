//! Unit tests of the worker loop over an in-memory duplex: no processes.

use std::time::Duration;

use polyloop_wire::{
    ChunkFrame, FrameBuffer, Limits, Outcome, PROTOCOL_VERSION, PartOutcomes, RemoteError,
    RuntimeFlavor, Task, TaskBatch, TaskSpec, ToChild, ToParent, Welcome, WorkerConfig,
    decode_to_parent, encode_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::{Registry, TaskEntry, serve};

polyloop_wire::task_spec! {
    Double: u64 => u64 = "t::double"
}
impl Task for Double {
    async fn run(x: u64) -> Result<u64, RemoteError> {
        Ok(x * 2)
    }
}

polyloop_wire::task_spec! {
    Fails: String => () = "t::fails"
}
impl Task for Fails {
    async fn run(msg: String) -> Result<(), RemoteError> {
        Err(RemoteError { message: msg, chain: vec!["cause".into()], value: None })
    }
}

polyloop_wire::task_spec! {
    Panics: () => () = "t::panics"
}
impl Task for Panics {
    async fn run(_: ()) -> Result<(), RemoteError> {
        panic!("kaboom")
    }
}

polyloop_wire::task_spec! {
    /// Sleeps; reports how many sleepers were running when it started.
    Sleep: u64 => u32 = "t::sleep"
}
static SLEEPING: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
impl Task for Sleep {
    async fn run(ms: u64) -> Result<u32, RemoteError> {
        use std::sync::atomic::Ordering::SeqCst;
        let running = SLEEPING.fetch_add(1, SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        SLEEPING.fetch_sub(1, SeqCst);
        Ok(running)
    }
}

polyloop_wire::task_spec! {
    /// Sleeps without counting, for the cancellation tests (tests run in parallel).
    Wait: u64 => () = "t::wait"
}
impl Task for Wait {
    async fn run(ms: u64) -> Result<(), RemoteError> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    }
}

polyloop_wire::task_spec! {
    /// Blocks the thread for the given milliseconds: CPU-bound work that never yields.
    Spin: u64 => () = "t::spin"
}
impl Task for Spin {
    async fn run(ms: u64) -> Result<(), RemoteError> {
        std::thread::sleep(Duration::from_millis(ms));
        Ok(())
    }
}

polyloop_wire::task_spec! {
    /// Every way an input can end, picked by its value: 0 panics, 1 fails, 1000 + ms sleeps for
    /// ms and answers the value, anything else answers its double at once.
    Mixed: u64 => u64 = "t::mixed"
}
impl Task for Mixed {
    async fn run(x: u64) -> Result<u64, RemoteError> {
        match x {
            0 => panic!("mixed zero"),
            1 => Err(RemoteError { message: "mixed one".into(), chain: vec![], value: None }),
            1000.. => {
                tokio::time::sleep(Duration::from_millis(x - 1000)).await;
                Ok(x)
            }
            _ => Ok(x * 2),
        }
    }
}

static ENTRIES: [TaskEntry; 7] = [
    TaskEntry::of::<Double>(),
    TaskEntry::of::<Fails>(),
    TaskEntry::of::<Panics>(),
    TaskEntry::of::<Sleep>(),
    TaskEntry::of::<Wait>(),
    TaskEntry::of::<Spin>(),
    TaskEntry::of::<Mixed>(),
];

struct Parent {
    io: DuplexStream,
    frames: FrameBuffer,
}

impl Parent {
    async fn send(&mut self, msg: &ToChild<'_>) {
        let mut out = Vec::new();
        encode_frame(msg, &mut out, &Limits::default()).unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    async fn send_chunk(&mut self, id: u64, task: u32, inputs: &[Vec<u8>]) {
        let mut bytes = Vec::new();
        for input in inputs {
            polyloop_wire::push_input(&mut bytes, input);
        }
        let count = inputs.len() as u32;
        self.send(&ToChild::Chunk(ChunkFrame { id, task, count, inputs: &bytes })).await;
    }

    /// The outcomes of chunk `id`, in the order they came, until `n` have come, and how many
    /// frames brought them.
    async fn chunk_outcomes(&mut self, id: u64, n: usize) -> (Vec<String>, usize) {
        let (mut outcomes, mut frames) = (Vec::new(), 0);
        while outcomes.len() < n {
            match self.recv().await {
                Some(Received::Results(results)) => {
                    frames += 1;
                    for (result_id, part) in results {
                        assert_eq!(result_id, id, "{part}");
                        outcomes.extend(part.lines().map(str::to_owned));
                    }
                }
                other => panic!("expected results, got {other:?}"),
            }
        }
        assert_eq!(outcomes.len(), n, "{outcomes:?}");
        (outcomes, frames)
    }

    async fn send_tasks(&mut self, tasks: &[(u64, u32, Vec<u8>)]) {
        let mut batch = TaskBatch::default();
        for (id, task, input) in tasks {
            batch.push(*id, *task, input);
        }
        let mut out = Vec::new();
        batch.finish_into(&mut out, &Limits::default()).unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    /// The next message, decoded into owned results: (id, outcome as text).
    async fn recv(&mut self) -> Option<Received> {
        loop {
            if let Some(payload) = self.frames.next_frame().unwrap() {
                return Some(match decode_to_parent(payload, &Limits::default()).unwrap() {
                    ToParent::Hello(hello) => Received::Hello(hello),
                    ToParent::Results(results) => Received::Results(
                        results.into_iter().map(|r| (r.id, describe(&r.outcome))).collect(),
                    ),
                });
            }
            let n = self.io.read(self.frames.spare()).await.unwrap();
            if n == 0 {
                return None;
            }
            self.frames.filled(n);
        }
    }

    async fn results(&mut self, n: usize) -> Vec<(u64, String)> {
        let mut all = Vec::new();
        while all.len() < n {
            match self.recv().await {
                Some(Received::Results(results)) => all.extend(results),
                other => panic!("expected results, got {other:?}"),
            }
        }
        all.sort();
        all
    }
}

/// An outcome as text; a chunk's part as its outcomes' texts, one per line.
fn describe(outcome: &Outcome<'_>) -> String {
    match outcome {
        Outcome::Part(part) => {
            PartOutcomes::new(part).map(|outcome| format!("{:?}\n", outcome.unwrap())).collect()
        }
        outcome => format!("{outcome:?}"),
    }
}

#[derive(Debug)]
enum Received {
    Hello(polyloop_wire::Hello),
    Results(Vec<(u64, String)>),
}

fn welcome(concurrency: u32, timeout_ms: Option<u64>) -> ToChild<'static> {
    let limits = Limits::default();
    ToChild::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        config: WorkerConfig {
            worker_idx: 0,
            child_concurrency: concurrency,
            runtime: RuntimeFlavor::CurrentThread,
            task_timeout_ms: timeout_ms,
            max_frame_len: limits.max_frame_len,
            max_batch_len: limits.max_batch_len,
            max_nesting: polyloop_wire::DEFAULT_MAX_NESTING,
        },
        initializer: None,
    })
}

async fn start(
    concurrency: u32,
    timeout_ms: Option<u64>,
) -> (Parent, tokio::task::JoinHandle<Result<(), crate::WorkerError>>) {
    crate::panic::install_hook();
    let (parent, child) = tokio::io::duplex(1 << 20);
    let worker = tokio::spawn(serve(child, Registry::new(&ENTRIES)));
    let mut parent = Parent { io: parent, frames: FrameBuffer::new(Limits::default()) };
    parent.send(&welcome(concurrency, timeout_ms)).await;
    match parent.recv().await {
        Some(Received::Hello(hello)) => {
            assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
            let names: Vec<_> = hello.tasks.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(
                names,
                [
                    "t::double",
                    "t::fails",
                    "t::panics",
                    "t::sleep",
                    "t::wait",
                    "t::spin",
                    "t::mixed"
                ]
            );
            assert_eq!(hello.tasks[0].fingerprint, Double::fingerprint());
        }
        other => panic!("expected hello, got {other:?}"),
    }
    (parent, worker)
}

fn enc<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).unwrap()
}

#[tokio::test]
async fn runs_a_batch_and_reports_every_kind_of_outcome() {
    let (mut parent, worker) = start(16, None).await;
    parent
        .send_tasks(&[
            (0, 0, enc(&21u64)),
            (1, 1, enc(&"nope".to_owned())),
            (2, 2, enc(&())),
            (3, 9, enc(&())),
            (4, 0, vec![0xff; 11]),
            (5, 0, enc(&(1u64, 2u64))),
        ])
        .await;
    let results = parent.results(6).await;
    assert_eq!(results[0], (0, format!("{:?}", Outcome::Ok(&enc(&42u64)))));
    assert!(
        results[1].1.contains("Failed")
            && results[1].1.contains("nope")
            && results[1].1.contains("cause")
    );
    assert!(
        results[2].1.contains("Panicked") && results[2].1.contains("kaboom"),
        "{}",
        results[2].1
    );
    assert_eq!(results[3], (3, "UnknownTask(9)".to_owned()));
    assert!(results[4].1.contains("Serialization"), "{}", results[4].1);
    assert!(results[5].1.contains("trailing bytes"), "{}", results[5].1);
    // The worker lives on after all that.
    parent.send_tasks(&[(6, 0, enc(&1u64))]).await;
    assert_eq!(parent.results(1).await[0].0, 6);
    parent.send(&ToChild::Shutdown).await;
    assert!(parent.recv().await.is_none(), "shutdown closes the stream");
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn honours_concurrency_and_batches_results() {
    let (mut parent, worker) = start(3, None).await;
    let tasks: Vec<_> = (0..9).map(|id| (id, 3, enc(&20u64))).collect();
    parent.send_tasks(&tasks).await;
    let results = parent.results(9).await;
    // Each sleeper saw at most 3 sleepers running (itself included).
    for (id, outcome) in &results {
        let running: u32 = outcome
            .strip_prefix("Ok([")
            .and_then(|s| s.strip_suffix("])"))
            .map(|s| s.parse().unwrap())
            .unwrap_or_else(|| panic!("id {id}: {outcome}"));
        assert!(running <= 3, "id {id} saw {running} running");
    }
    parent.send(&ToChild::Shutdown).await;
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn cancel_and_timeout_reach_the_task() {
    let (mut parent, worker) = start(4, Some(50)).await;
    parent.send_tasks(&[(0, 4, enc(&10_000u64)), (1, 4, enc(&10_000u64))]).await;
    parent.send(&ToChild::Cancel(vec![0, 77])).await;
    let results = parent.results(2).await;
    assert_eq!(results, [(0, "Cancelled".to_owned()), (1, "TimedOut".to_owned())]);
    parent.send(&ToChild::Shutdown).await;
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_task_id_not_above_the_last_is_a_wire_error() {
    for repeat in [3, 2] {
        let (mut parent, worker) = start(4, None).await;
        parent.send_tasks(&[(1, 0, enc(&1u64)), (3, 0, enc(&2u64))]).await;
        assert_eq!(parent.results(2).await.len(), 2);
        // Running a task twice would answer its id twice: the worker stops instead.
        parent.send_tasks(&[(repeat, 0, enc(&3u64))]).await;
        let err = worker.await.unwrap().expect_err("a repeated or lower id is an error");
        assert!(format!("{err:?}").contains("not above the last"), "{err:?}");
    }
}

#[tokio::test]
async fn parent_gone_ends_the_worker() {
    let (parent, worker) = start(4, None).await;
    drop(parent);
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn garbage_and_version_mismatch_are_errors_not_panics() {
    let (mut parent, worker) = start(4, None).await;
    parent.io.write_all(&[5, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0x99]).await.unwrap();
    let err = worker.await.unwrap().expect_err("garbage is an error");
    assert!(matches!(err, crate::WorkerError::Wire(_)), "{err:?}");

    let (parent_io, child) = tokio::io::duplex(1 << 16);
    let worker = tokio::spawn(serve(child, Registry::new(&ENTRIES)));
    let mut parent = Parent { io: parent_io, frames: FrameBuffer::new(Limits::default()) };
    let mut payload = enc(&welcome(1, None));
    payload[1] = (PROTOCOL_VERSION + 1) as u8;
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&payload);
    parent.io.write_all(&frame).await.unwrap();
    // The worker answers with its own version so the parent can name both, then stops.
    let mut raw = Vec::new();
    parent.io.read_to_end(&mut raw).await.unwrap();
    let (reply, _) = polyloop_wire::split_frame(&raw, &Limits::default()).unwrap().unwrap();
    assert_eq!(polyloop_wire::peek_protocol_version(reply).unwrap(), PROTOCOL_VERSION);
    let err = worker.await.unwrap().expect_err("version mismatch is an error");
    assert!(
        err.to_string().contains("invalid frame") || format!("{err:?}").contains("VersionMismatch"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_chunk_answers_every_input_in_order_however_it_ends() {
    let (mut parent, worker) = start(16, None).await;
    let inputs = [
        enc(&5u64),
        enc(&0u64),
        vec![0xff; 11],
        enc(&(1u64, 2u64)),
        enc(&1010u64),
        enc(&7u64),
        enc(&1u64),
        enc(&1001u64),
        enc(&9u64),
    ];
    parent.send_chunk(0, 6, &inputs).await;
    let (outcomes, _) = parent.chunk_outcomes(0, inputs.len()).await;
    let ok = |x: u64| format!("{:?}", Outcome::Ok(&enc(&x)));
    assert_eq!(outcomes[0], ok(10));
    assert!(outcomes[1].contains("Panicked") && outcomes[1].contains("mixed zero"), "{outcomes:?}");
    assert!(outcomes[2].contains("Serialization"), "{outcomes:?}");
    assert!(outcomes[3].contains("trailing bytes"), "{outcomes:?}");
    assert_eq!(outcomes[4], ok(1010), "the first input that waits");
    assert_eq!(outcomes[5], ok(14));
    assert!(outcomes[6].contains("Failed") && outcomes[6].contains("mixed one"), "{outcomes:?}");
    assert_eq!(outcomes[7..], [ok(1001), ok(18)]);
    // The worker lives on, and a chunk that never waits answers as well.
    parent.send_chunk(1, 6, &[enc(&2u64), enc(&3u64)]).await;
    assert_eq!(parent.chunk_outcomes(1, 2).await.0, [ok(4), ok(6)]);
    parent.send(&ToChild::Shutdown).await;
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_chunk_of_blocking_inputs_sends_its_outcomes_as_it_goes() {
    let (mut parent, worker) = start(16, None).await;
    // Each input holds the thread for 5 ms, far past the worker's time between yields.
    parent.send_chunk(0, 5, &[enc(&5u64), enc(&5u64), enc(&5u64)]).await;
    let (outcomes, frames) = parent.chunk_outcomes(0, 3).await;
    assert_eq!(outcomes, ["Ok([])"; 3]);
    assert!(frames >= 2, "the outcomes waited for the whole chunk");
    parent.send(&ToChild::Shutdown).await;
    worker.await.unwrap().unwrap();
}

#[tokio::test]
async fn blocking_tasks_send_each_result_as_it_finishes() {
    let (mut parent, worker) = start(16, None).await;
    parent.send_tasks(&[(0, 5, enc(&30u64)), (1, 5, enc(&30u64)), (2, 5, enc(&30u64))]).await;
    // Each task holds the thread for 30 ms; its result must not wait for the others.
    for expected in 0..3 {
        match parent.recv().await {
            Some(Received::Results(results)) => {
                assert_eq!(results.len(), 1, "one result per frame: {results:?}");
                assert_eq!(results[0].0, expected);
            }
            other => panic!("expected results, got {other:?}"),
        }
    }
    parent.send(&ToChild::Shutdown).await;
    worker.await.unwrap().unwrap();
}
