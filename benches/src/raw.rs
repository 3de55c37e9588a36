//! Raw limits of the machine: a Unix socketpair between this process and a re-executed copy of it.
//!
//! The suite binary re-executes itself with [`PEER_ENV`] set, naming one end of a socketpair that
//! the child inherits. That end is made inheritable only for that spawn by clearing `FD_CLOEXEC`,
//! not with a `pre_exec` closure, which would take std off its fast spawn path. The child, the *peer*, answers in one of two modes:
//!
//! - [`PeerMode::Echo`] reads 32 bytes and writes them back, blocked in `read` in between, so a round
//!   trip includes waking a sleeping receiver on both sides, as a pool's `apply` must (on the
//!   peer's side only when the measuring side polls, [`Wait::Polling`]);
//! - [`PeerMode::Source`] answers a request `(count, size)` with `count` messages of `size` bytes.
//!
//! Every peer writes one byte as soon as it runs, which times a re-execution to its first byte.
//! A [`Placement`] says whether the measuring thread and the peer are pinned to two cores or left
//! to the scheduler, and a [`Wait`] whether the measuring side sleeps in `read` for the echo or
//! polls for it (the peer always sleeps). Only std and libc are used, so these figures bound what
//! any IPC library can do here.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::measure::Samples;

/// Set in a re-executed suite to `<mode>:<fd>:<buffer bytes>`; see [`run_peer_if_requested`].
pub const PEER_ENV: &str = "POLYLOOP_BENCH_PEER";

/// The CPUs of the measuring thread and of a [`Placement::Pinned`] peer when the machine has two
/// or more.
const MEASURE_CPU: usize = 0;
const PEER_CPU: usize = 1;

/// Where the measuring thread and the peer run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The measuring thread on CPU 0 and the peer on CPU 1 (when the machine has two CPUs or
    /// more): across cores, as a pool's parent and workers usually are.
    Pinned,
    /// Wherever the scheduler puts them, as a pool's own processes run: on a VM that halts idle
    /// CPUs it may keep both on one core and skip the cross-core wake-up.
    Unpinned,
}

impl Placement {
    /// Both placements, in the order the suite reports them.
    pub const ALL: [Placement; 2] = [Placement::Pinned, Placement::Unpinned];

    /// `pinned` or `unpinned`.
    pub fn name(self) -> &'static str {
        match self {
            Placement::Pinned => "pinned",
            Placement::Unpinned => "unpinned",
        }
    }

    /// Places the calling thread to measure against a peer of this placement. Call it on a thread
    /// of its own: a pinned thread stays pinned.
    pub fn place_measuring_thread(self) -> io::Result<()> {
        match self {
            Placement::Pinned => pin_current_thread(MEASURE_CPU),
            Placement::Unpinned => Ok(()),
        }
    }

    fn peer_cpu(self) -> Option<usize> {
        match self {
            Placement::Pinned => Some(PEER_CPU),
            Placement::Unpinned => None,
        }
    }
}

/// How the measuring side of a round trip waits for its echo. The peer always waits blocked in
/// `read`, as polyloop's workers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Blocked in `read`, asleep until the echo wakes it, as a pool's drivers wait by default.
    Asleep,
    /// Non-blocking `recv` (`MSG_DONTWAIT`) in a loop until the echo is back, as a pool's
    /// drivers do under `PoolBuilder::busy_poll`: it burns the core, and skips its wake-up.
    Polling,
}

impl Wait {
    /// `asleep` or `polling`.
    pub fn name(self) -> &'static str {
        match self {
            Wait::Asleep => "asleep",
            Wait::Polling => "polling",
        }
    }
}

/// The size of an echoed message, the payload of a small task's round trip.
pub const ECHO_BYTES: usize = 32;

/// What a peer does with its end of the socketpair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerMode {
    /// Reads [`ECHO_BYTES`] and writes them back, blocked in `read` in between.
    Echo,
    /// Answers a request `(count, size)` with `count` messages of `size` bytes.
    Source,
}

impl PeerMode {
    fn name(self) -> &'static str {
        match self {
            PeerMode::Echo => "echo",
            PeerMode::Source => "source",
        }
    }
}

/// Runs the peer and exits if this process was started as one; returns at once otherwise.
///
/// Call it first thing in `main` of the binary that spawns peers.
pub fn run_peer_if_requested() {
    let Some(spec) = std::env::var_os(PEER_ENV) else { return };
    let code = match run_peer(&spec.to_string_lossy()) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("bench peer: {err}");
            1
        }
    };
    std::process::exit(code);
}

fn run_peer(spec: &str) -> io::Result<()> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidInput, format!("bad {PEER_ENV}={spec}"));
    let mut parts = spec.split(':');
    let mode = match parts.next() {
        Some("echo") => PeerMode::Echo,
        Some("source") => PeerMode::Source,
        _ => return Err(invalid()),
    };
    let fd: RawFd = parts.next().and_then(|s| s.parse().ok()).ok_or_else(invalid)?;
    let buffer: usize = parts.next().and_then(|s| s.parse().ok()).ok_or_else(invalid)?;
    if let Some(cpu) = parts.next().and_then(|s| s.parse().ok()) {
        pin_current_thread(cpu)?;
    }
    // SAFETY: the parent passed this descriptor open and owned by nobody else in this process;
    // the check below rejects a descriptor that is not a socket.
    let mut stream = unsafe { UnixStream::from_raw_fd(fd) };
    stream.local_addr()?;
    set_cloexec(fd, true)?;
    if buffer > 0 {
        set_buffers(&stream, buffer)?;
    }
    stream.write_all(b"R")?;
    match mode {
        PeerMode::Echo => {
            let mut msg = [0u8; ECHO_BYTES];
            loop {
                match stream.read_exact(&mut msg) {
                    Ok(()) => stream.write_all(&msg)?,
                    Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(err) => return Err(err),
                }
            }
        }
        PeerMode::Source => {
            let mut payload = Vec::new();
            let mut request = [0u8; 8];
            loop {
                match stream.read_exact(&mut request) {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(err) => return Err(err),
                }
                let count = u32::from_le_bytes([request[0], request[1], request[2], request[3]]);
                let size = u32::from_le_bytes([request[4], request[5], request[6], request[7]]);
                payload.resize(size as usize, 0xA5);
                for _ in 0..count {
                    stream.write_all(&payload)?;
                }
            }
        }
    }
}

/// Pins the calling thread to `cpu`; a CPU the machine lacks is ignored, so the figure is then
/// taken wherever the scheduler puts it.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpu >= cpus || cpu >= libc::CPU_SETSIZE as usize {
        return Ok(());
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it for
    // cpu < CPU_SETSIZE; sched_setaffinity(0) reads it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD on a descriptor we own only change its close-on-exec flag.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if on { flags | libc::FD_CLOEXEC } else { flags & !libc::FD_CLOEXEC };
        if libc::fcntl(fd, libc::F_SETFD, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sets SO_SNDBUF and SO_RCVBUF (the kernel doubles them and caps them at `net.core.*mem_max`).
pub fn set_buffers(stream: &UnixStream, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for option in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        // SAFETY: a plain setsockopt with a c_int value of the right size.
        let rc = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The send buffer the kernel actually granted, in bytes.
pub fn send_buffer(stream: &UnixStream) -> io::Result<usize> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(value).unwrap_or(0))
}

/// A running peer process and this side of its socketpair. Dropping it kills and reaps the peer.
#[derive(Debug)]
pub struct Peer {
    child: Option<Child>,
    stream: UnixStream,
    /// From just before the spawn to the peer's first byte read here.
    pub spawn_to_first_byte: Duration,
}

impl Peer {
    /// Re-executes the current binary as a peer; `buffer` sets both socket buffers on both ends.
    pub fn spawn(mode: PeerMode, buffer: Option<usize>, placement: Placement) -> io::Result<Peer> {
        Peer::spawn_program(&std::env::current_exe()?, mode, buffer, placement)
    }

    /// Starts `program`, which must call [`run_peer_if_requested`] first thing, as a peer.
    pub fn spawn_program(
        program: &std::path::Path,
        mode: PeerMode,
        buffer: Option<usize>,
        placement: Placement,
    ) -> io::Result<Peer> {
        let (ours, theirs) = UnixStream::pair()?;
        if let Some(bytes) = buffer {
            set_buffers(&ours, bytes)?;
        }
        let started = Instant::now();
        // Inheritable for this one spawn only; the harness spawns nothing else meanwhile, and the
        // parent's copy closes right after.
        set_cloexec(theirs.as_raw_fd(), false)?;
        let cpu = placement.peer_cpu().map_or_else(|| "any".to_owned(), |cpu| cpu.to_string());
        let spec = format!("{}:{}:{}:{cpu}", mode.name(), theirs.as_raw_fd(), buffer.unwrap_or(0));
        let child = Command::new(program)
            .env(PEER_ENV, spec)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn();
        drop(theirs);
        let child = child?;
        let mut peer =
            Peer { child: Some(child), stream: ours, spawn_to_first_byte: Duration::ZERO };
        let mut ready = [0u8; 1];
        peer.stream.read_exact(&mut ready)?;
        peer.spawn_to_first_byte = started.elapsed();
        Ok(peer)
    }

    /// The peer's pid (0 once it was reaped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The parent's end of the socketpair.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// `warmup` unrecorded then `samples` recorded round trips of [`ECHO_BYTES`] to an echo peer,
    /// this side sleeping in `read` for each echo ([`Wait::Asleep`]).
    pub fn round_trips(&mut self, warmup: usize, samples: usize) -> io::Result<Samples> {
        self.round_trips_waiting(Wait::Asleep, warmup, samples)
    }

    /// As [`round_trips`](Self::round_trips), but this side waits for each echo as `wait` says.
    pub fn round_trips_waiting(
        &mut self,
        wait: Wait,
        warmup: usize,
        samples: usize,
    ) -> io::Result<Samples> {
        let mut out = Samples::with_capacity(samples);
        let mut msg = [7u8; ECHO_BYTES];
        for i in 0..warmup + samples {
            let started = Instant::now();
            self.stream.write_all(&msg)?;
            match wait {
                Wait::Asleep => self.stream.read_exact(&mut msg)?,
                Wait::Polling => self.poll_exact(&mut msg)?,
            }
            if i >= warmup {
                out.push(started.elapsed());
            }
        }
        Ok(out)
    }

    /// Fills `buf` from the socket with `recv(MSG_DONTWAIT)`, trying again at once while nothing
    /// has arrived: the loop of a busy-polling driver, without the runtime around it.
    fn poll_exact(&self, buf: &mut [u8]) -> io::Result<()> {
        let fd = self.stream.as_raw_fd();
        let mut filled = 0;
        while filled < buf.len() {
            let rest = &mut buf[filled..];
            // SAFETY: `rest` is writable for its length; MSG_DONTWAIT never blocks.
            let n =
                unsafe { libc::recv(fd, rest.as_mut_ptr().cast(), rest.len(), libc::MSG_DONTWAIT) };
            if n > 0 {
                filled += n as usize;
                continue;
            }
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let err = io::Error::last_os_error();
            if !matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Asks a source peer for `count` messages of `size` bytes; the time until the last arrived.
    pub fn receive(&mut self, count: u32, size: u32) -> io::Result<Duration> {
        let mut request = [0u8; 8];
        request[..4].copy_from_slice(&count.to_le_bytes());
        request[4..].copy_from_slice(&size.to_le_bytes());
        let mut buf = vec![0u8; size as usize];
        let started = Instant::now();
        self.stream.write_all(&request)?;
        for _ in 0..count {
            self.stream.read_exact(&mut buf)?;
        }
        Ok(started.elapsed())
    }

    /// Closes the socket, which ends the peer, and reaps it.
    pub fn finish(mut self) -> io::Result<ExitStatus> {
        self.stream.shutdown(std::net::Shutdown::Both)?;
        let mut child = self.child.take().ok_or_else(|| io::Error::other("peer already reaped"))?;
        child.wait()
    }
}

/// Round trips to one echo peer measured in blocks between other work, so that the raw figure and
/// the work's see the same machine; the samples add up across blocks.
#[derive(Debug)]
pub struct EchoSeries {
    placement: Placement,
    wait: Wait,
    peer: Peer,
    samples: Samples,
}

impl EchoSeries {
    /// Unrecorded round trips before each block, which wake both sides up again.
    const BLOCK_WARMUP: usize = 5;

    /// Starts an echo peer of this placement, whose round trips this side waits for as `wait`
    /// says.
    pub fn spawn(placement: Placement, wait: Wait) -> io::Result<EchoSeries> {
        let peer = Peer::spawn(PeerMode::Echo, None, placement)?;
        Ok(EchoSeries { placement, wait, peer, samples: Samples::default() })
    }

    /// Where the peer and the measuring thread run.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// How the measuring side waits for each echo.
    pub fn wait(&self) -> Wait {
        self.wait
    }

    /// Measures `samples` more round trips. Call it on a thread of its own, which it places.
    pub fn block(&mut self, samples: usize) -> io::Result<()> {
        self.placement.place_measuring_thread()?;
        let block = self.peer.round_trips_waiting(self.wait, Self::BLOCK_WARMUP, samples)?;
        self.samples.extend(block);
        Ok(())
    }

    /// Ends the peer; every sample measured.
    pub fn finish(self) -> io::Result<Samples> {
        self.peer.finish()?;
        Ok(self.samples)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
