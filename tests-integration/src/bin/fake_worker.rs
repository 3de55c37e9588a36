//! A polyloop worker that breaks the protocol on purpose, for the bad-peer tests.
//!
//! It is written against `polyloop-wire` and std alone, like a third-party worker would be, and
//! misbehaves as its first argument says:
//!
//! * `version`: answers the Welcome with a Hello of the next protocol version;
//! * `exit`: reads the Welcome, then exits with code 7 without answering;
//! * `exit-unread`: exits with code 7 as soon as the Welcome arrives, without reading it all;
//! * `hang`: reads the Welcome and never answers it;
//! * `huge-hello`: answers the Welcome with a frame header announcing 200 MiB, and no body;
//! * `mute`: completes the handshake, then neither reads nor beats (it ignores the heartbeat
//!   socket, as a wedged process would);
//! * `fingerprint`: announces the task under its name but with a wrong fingerprint;
//! * `garbage`: answers the first Tasks frame with a frame of random-ish bytes;
//! * `oversized`: answers the first Tasks frame with a header announcing more than the limit;
//! * `bad-slot`: answers the first Tasks frame with a result for an id it was never given;
//! * `stale`: answers its first task correctly, then answers the next task with the first one's
//!   id and output again (a late duplicate), never answering the next task itself;
//! * `trailing`: answers the first Tasks frame with a Results frame with trailing bytes;
//! * `bad-slot-then-hang`: `bad-slot` in the first process started, `hang` in every later one;
//! * `chunk-halves`: answers every task right, and every chunk right in two parts, each in a
//!   Results frame of its own;
//! * `chunk-excess`, `chunk-garbage`, `chunk-ok`: like `chunk-halves`, but answer every chunk
//!   with one part holding an outcome more than the chunk has inputs, with its first half right
//!   and then a part whose second outcome does not decode, or with a plain `Ok`;
//! * `part-single`: like `chunk-halves`, but answers every single task with a part of one
//!   (right) outcome.
//!
//! Usage: `fake_worker <case> <task name> <task fingerprint> [report dir]`. The worker announces
//! the one task named (with a correct fingerprint unless the case says otherwise). With a report
//! dir it writes its pid as a line to the FIFO `pids` there, so a test can await every
//! process the pool starts. After misbehaving it reads its socket until the parent closes it or
//! kills it.

use std::error::Error;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;

use polyloop_wire::{
    ChunkInputs, ENV_WORKER_FD, FRAME_HEADER_LEN, FrameBuffer, Hello, Limits, Outcome,
    PROTOCOL_VERSION, ResultFrame, TaskInfo, ToChild, ToParent, Welcome, WireError,
    decode_to_child, encode_frame, push_outcome,
};

/// The exit code of the `exit` cases, which the pool's error must report.
const EXIT_CODE: u8 = 7;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("fake_worker: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode, Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [case, name, fingerprint, rest @ ..] = args.as_slice() else {
        return Err("usage: fake_worker <case> <task name> <task fingerprint> [report dir]".into());
    };
    let task = TaskInfo { name: name.clone(), fingerprint: fingerprint.parse()? };
    let report_dir = rest.first().map(Path::new);
    let case = match (case.as_str(), report_dir) {
        ("bad-slot-then-hang", Some(dir)) => {
            match OpenOptions::new().write(true).create_new(true).open(dir.join("misbehaved")) {
                Ok(_) => "bad-slot",
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => "hang",
                Err(err) => return Err(err.into()),
            }
        }
        ("bad-slot-then-hang", None) => return Err("bad-slot-then-hang needs a report dir".into()),
        (case, _) => case,
    };
    // Reported once the case is decided, so a test that reads the pid knows what this process does.
    if let Some(dir) = report_dir {
        // One short write to a FIFO is atomic, so lines of concurrent workers do not mix.
        let mut pids = OpenOptions::new().write(true).open(dir.join("pids"))?;
        pids.write_all(format!("{}\n", std::process::id()).as_bytes())?;
    }
    let fd: RawFd = std::env::var(ENV_WORKER_FD)?.parse()?;
    // SAFETY: the parent passed this descriptor for our exclusive use; nothing else here owns it.
    let mut stream = unsafe { UnixStream::from_raw_fd(fd) };
    if case == "exit-unread" {
        // Reading one byte makes sure the Welcome has arrived (the parent writes it at once);
        // exiting with the rest unread in the socket is what the case is about.
        stream.read_exact(&mut [0])?;
        return Ok(ExitCode::from(EXIT_CODE));
    }
    let mut peer = Peer { stream, frames: FrameBuffer::new(Limits::default()) };
    let Some(welcome) = peer.next_message(|msg| match msg {
        ToChild::Welcome(welcome) => Some(welcome),
        _ => None,
    })?
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let welcome = welcome.ok_or("the first frame was not a Welcome")?;
    match case {
        "version" => peer.send_hello(PROTOCOL_VERSION + 1, vec![task])?,
        "exit" => return Ok(ExitCode::from(EXIT_CODE)),
        "hang" => {}
        "huge-hello" => peer.stream.write_all(&(200u32 << 20).to_le_bytes())?,
        "mute" => {
            peer.send_hello(PROTOCOL_VERSION, vec![task])?;
            // Not a sleep standing in for an event: this process plays one that never wakes.
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        "fingerprint" => {
            let wrong = TaskInfo { fingerprint: task.fingerprint ^ 1, ..task };
            peer.send_hello(PROTOCOL_VERSION, vec![wrong])?;
        }
        "garbage" | "oversized" | "bad-slot" | "trailing" => {
            peer.send_hello(PROTOCOL_VERSION, vec![task])?;
            let Some(first) = peer.next_tasks()? else { return Ok(ExitCode::SUCCESS) };
            let reply = misbehave(case, &welcome, &first)?;
            peer.stream.write_all(&reply)?;
        }
        "stale" => {
            peer.send_hello(PROTOCOL_VERSION, vec![task])?;
            let Some(first) = peer.next_tasks()? else { return Ok(ExitCode::SUCCESS) };
            let x: u64 = postcard::from_bytes(&first.input)?;
            let output = postcard::to_allocvec(&(x * 2))?;
            let limits = limits_of(&welcome);
            let answer = ResultFrame { id: first.id, outcome: Outcome::Ok(&output) };
            let mut out = Vec::new();
            encode_frame(&ToParent::Results(vec![answer.clone()]), &mut out, &limits)?;
            peer.stream.write_all(&out)?;
            if peer.next_tasks()?.is_some() {
                out.clear();
                encode_frame(&ToParent::Results(vec![answer]), &mut out, &limits)?;
                peer.stream.write_all(&out)?;
            }
        }
        "chunk-halves" | "chunk-excess" | "chunk-garbage" | "chunk-ok" | "part-single" => {
            peer.send_hello(PROTOCOL_VERSION, vec![task])?;
            serve(&mut peer, case, &limits_of(&welcome))?;
            return Ok(ExitCode::SUCCESS);
        }
        other => return Err(format!("unknown case `{other}`").into()),
    }
    peer.drain();
    Ok(ExitCode::SUCCESS)
}

/// The bytes a post-handshake case answers its first task with.
fn misbehave(case: &str, welcome: &Welcome, first: &OwnedTask) -> Result<Vec<u8>, Box<dyn Error>> {
    let limits = limits_of(welcome);
    let mut out = Vec::new();
    match case {
        "garbage" => {
            // A well-framed payload of noise: the decoder, not the framing, must reject it. The
            // first byte is a variant tag no message has.
            let mut payload = random_ish(0x9e37_79b9_7f4a_7c15, 61);
            payload.insert(0, 0x42);
            out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            out.extend_from_slice(&payload);
        }
        "oversized" => {
            // Just the header: a reader that trusts it would wait for (or allocate) the body.
            out.extend_from_slice(&(limits.max_frame_len + 1).to_le_bytes());
        }
        "bad-slot" => {
            let result = ResultFrame { id: first.id + 1000, outcome: Outcome::Cancelled };
            encode_frame(&ToParent::Results(vec![result]), &mut out, &limits)?;
        }
        "trailing" => {
            // A valid answer for the id (the input echoed as the output), then bytes a newer
            // schema might have added: the whole frame must be refused, not the tail ignored.
            let result = ResultFrame { id: first.id, outcome: Outcome::Ok(&first.input) };
            encode_frame(&ToParent::Results(vec![result]), &mut out, &limits)?;
            out.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
            let len = (out.len() - FRAME_HEADER_LEN) as u32;
            out[..FRAME_HEADER_LEN].copy_from_slice(&len.to_le_bytes());
        }
        other => return Err(format!("`{other}` is not a post-handshake case").into()),
    }
    Ok(out)
}

/// What the parent asked of a serving case, copied out of the read buffer.
enum Work {
    /// Each task's id and input.
    Tasks(Vec<(u64, Vec<u8>)>),
    Chunk {
        id: u64,
        inputs: Vec<Vec<u8>>,
    },
    Shutdown,
    /// A message these cases do not act on (a `Cancel`: every task is answered at once).
    Nothing,
}

/// Answers tasks and chunks, as `double` would and as `case` says, until the parent shuts this
/// worker down or closes the socket.
fn serve(peer: &mut Peer, case: &str, limits: &Limits) -> Result<(), Box<dyn Error>> {
    loop {
        let work = peer.next_message(|msg| match msg {
            ToChild::Tasks(tasks) => {
                Ok(Work::Tasks(tasks.iter().map(|task| (task.id, task.input.to_vec())).collect()))
            }
            ToChild::Chunk(chunk) => ChunkInputs::new(chunk.inputs, chunk.count)
                .map(|input| input.map(<[u8]>::to_vec))
                .collect::<Result<_, WireError>>()
                .map(|inputs| Work::Chunk { id: chunk.id, inputs }),
            ToChild::Shutdown => Ok(Work::Shutdown),
            _ => Ok(Work::Nothing),
        })?;
        match work.transpose()? {
            None | Some(Work::Shutdown) => return Ok(()),
            Some(Work::Nothing) => {}
            Some(Work::Tasks(tasks)) => {
                let answers = tasks
                    .iter()
                    .map(|(id, input)| {
                        let output = doubled(input)?;
                        let part = part_of(std::slice::from_ref(&output));
                        Ok((*id, output, part))
                    })
                    .collect::<Result<Vec<_>, Box<dyn Error>>>()?;
                let results = answers
                    .iter()
                    .map(|(id, output, part)| {
                        let outcome = match case {
                            "part-single" => Outcome::Part(part),
                            _ => Outcome::Ok(output),
                        };
                        ResultFrame { id: *id, outcome }
                    })
                    .collect();
                peer.send_results(results, limits)?;
            }
            Some(Work::Chunk { id, inputs }) => {
                let outputs: Vec<Vec<u8>> =
                    inputs.iter().map(|input| doubled(input)).collect::<Result<_, _>>()?;
                let [first, ..] = outputs.as_slice() else { return Err("an empty chunk".into()) };
                let parts = match case {
                    "chunk-ok" => {
                        let result = ResultFrame { id, outcome: Outcome::Ok(first) };
                        peer.send_results(vec![result], limits)?;
                        continue;
                    }
                    "chunk-excess" => {
                        let mut part = part_of(&outputs);
                        push_outcome(&mut part, &Outcome::Ok(first));
                        vec![part]
                    }
                    "chunk-garbage" => {
                        // The first half right, then a tag no outcome has after an outcome that
                        // reads: every outcome of a part must be checked, not just the first.
                        let (front, back) = outputs.split_at(outputs.len() / 2);
                        let mut bad = part_of(&back[..1]);
                        bad.push(0x42);
                        vec![part_of(front), bad]
                    }
                    _ => {
                        let (front, back) = outputs.split_at(outputs.len() / 2);
                        [front, back]
                            .into_iter()
                            .filter(|half| !half.is_empty())
                            .map(part_of)
                            .collect()
                    }
                };
                for part in &parts {
                    peer.send_results(
                        vec![ResultFrame { id, outcome: Outcome::Part(part) }],
                        limits,
                    )?;
                }
            }
        }
    }
}

/// `double`'s output for `input`.
fn doubled(input: &[u8]) -> Result<Vec<u8>, Box<dyn Error>> {
    let x: u64 = postcard::from_bytes(input)?;
    Ok(postcard::to_allocvec(&(x * 2))?)
}

/// A part holding an `Ok` outcome for each of `outputs`.
fn part_of(outputs: &[Vec<u8>]) -> Vec<u8> {
    let mut part = Vec::new();
    for output in outputs {
        push_outcome(&mut part, &Outcome::Ok(output));
    }
    part
}

/// The limits the parent announced.
fn limits_of(welcome: &Welcome) -> Limits {
    Limits {
        max_frame_len: welcome.config.max_frame_len,
        max_batch_len: welcome.config.max_batch_len,
    }
}

/// `n` bytes from an xorshift generator: noise, but the same noise for the same seed.
fn random_ish(seed: u64, n: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

/// The first task of a Tasks frame, copied out of the read buffer.
#[derive(Debug)]
struct OwnedTask {
    id: u64,
    input: Vec<u8>,
}

/// The worker's end of the socket and the frames read from it.
struct Peer {
    stream: UnixStream,
    frames: FrameBuffer,
}

impl Peer {
    /// Reads the next message and hands it to `take`; `None` when the parent closed the socket.
    fn next_message<T>(
        &mut self,
        take: impl FnOnce(ToChild<'_>) -> T,
    ) -> Result<Option<T>, Box<dyn Error>> {
        loop {
            if self.frames.has_frame()? {
                let payload = self.frames.next_frame()?.unwrap_or_default();
                return Ok(Some(take(decode_to_child(payload, &Limits::default())?)));
            }
            let n = self.stream.read(self.frames.spare())?;
            if n == 0 {
                return Ok(None);
            }
            self.frames.filled(n);
        }
    }

    /// Waits for the first non-empty Tasks frame and returns its first task.
    fn next_tasks(&mut self) -> Result<Option<OwnedTask>, Box<dyn Error>> {
        loop {
            let first = self.next_message(|msg| match msg {
                ToChild::Tasks(tasks) => {
                    tasks.first().map(|task| OwnedTask { id: task.id, input: task.input.to_vec() })
                }
                _ => None,
            })?;
            match first {
                None => return Ok(None),
                Some(Some(task)) => return Ok(Some(task)),
                Some(None) => {}
            }
        }
    }

    fn send_hello(&mut self, protocol_version: u32, tasks: Vec<TaskInfo>) -> std::io::Result<()> {
        let hello = Hello { protocol_version, pid: std::process::id(), tasks, init_error: None };
        let mut out = Vec::new();
        encode_frame(&ToParent::Hello(hello), &mut out, &Limits::default())
            .map_err(std::io::Error::other)?;
        self.stream.write_all(&out)
    }

    /// Sends `results` in one Results frame.
    fn send_results(
        &mut self,
        results: Vec<ResultFrame<'_>>,
        limits: &Limits,
    ) -> Result<(), Box<dyn Error>> {
        let mut out = Vec::new();
        encode_frame(&ToParent::Results(results), &mut out, limits)?;
        Ok(self.stream.write_all(&out)?)
    }

    /// Reads and discards until the parent closes the socket (or kills this process).
    fn drain(&mut self) {
        let mut sink = [0; 4096];
        while matches!(self.stream.read(&mut sink), Ok(n) if n > 0) {}
    }
}
