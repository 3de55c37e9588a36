//! Starting a worker process with its sockets, and reaping it exactly once.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use nix::spawn::{
    PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn, posix_spawnp,
};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use polyloop_wire::{
    ENV_HEARTBEAT_FD, ENV_HEARTBEAT_MS, ENV_PARENT_PID, ENV_WORKER_FD, heartbeat_interval,
};

/// Socket buffers large enough that a batch of big results moves in few system calls.
const SOCKET_BUFFER: usize = 4 << 20;

/// Which program runs the workers.
#[derive(Debug, Clone)]
pub(crate) struct WorkerProgram {
    pub(crate) path: PathBuf,
    pub(crate) args: Vec<OsString>,
}

impl WorkerProgram {
    /// This program, re-executed. On Linux through `/proc/self/exe`, which still works when the
    /// file on disk was replaced (e.g. rebuilt by cargo) since the program started.
    pub(crate) fn current() -> std::io::Result<Self> {
        #[cfg(target_os = "linux")]
        let path = PathBuf::from("/proc/self/exe");
        #[cfg(not(target_os = "linux"))]
        let path = std::env::current_exe()?;
        Ok(WorkerProgram { path, args: Vec::new() })
    }
}

/// A started worker and the parent's ends of its sockets.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) proc: WorkerProc,
    pub(crate) stream: UnixStream,
    /// Where the worker beats, when the pool watches its liveness.
    pub(crate) heartbeat: Option<UnixStream>,
}

/// Starts a worker with its socket and, given a heartbeat timeout, a second socket to beat on.
///
/// The worker's ends reach it through `posix_spawn` file actions that `dup2` them to new numbers
/// in the child alone: the parent's copies stay close-on-exec throughout, so a program that
/// another thread starts at the same moment inherits none of them. (Clearing close-on-exec for
/// the spawn instead would leak them to such a program, which would then hold the worker's
/// channel open after the worker died.) `posix_spawn` is also the fast way to start a process:
/// no copy of the parent's address space.
pub(crate) fn spawn_worker(
    program: &WorkerProgram,
    heartbeat: Option<Duration>,
) -> std::io::Result<Spawned> {
    let (parent_end, child_end) = UnixStream::pair()?;
    for end in [&parent_end, &child_end] {
        // Best effort: the kernel caps the size at its configured maximum.
        let _ = setsockopt(end, sockopt::SndBuf, &SOCKET_BUFFER);
        let _ = setsockopt(end, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    let beat =
        heartbeat.map(|timeout| UnixStream::pair().map(|ends| (ends, timeout))).transpose()?;

    // The child's numbers lie above every descriptor passed, so no dup2 overwrites the source of
    // another. dup2 clears close-on-exec on the new number only.
    let sources: Vec<RawFd> = std::iter::once(child_end.as_raw_fd())
        .chain(beat.as_ref().map(|((_, child), _)| child.as_raw_fd()))
        .collect();
    let first = sources.iter().max().map_or(3, |max| max + 1);
    let mut actions = PosixSpawnFileActions::init()?;
    for (target, &source) in (first..).zip(&sources) {
        actions.add_dup2(source, target)?;
    }
    let mut ours =
        vec![(ENV_WORKER_FD, first.to_string()), (ENV_PARENT_PID, std::process::id().to_string())];
    if let Some((_, timeout)) = &beat {
        ours.push((ENV_HEARTBEAT_FD, (first + 1).to_string()));
        ours.push((ENV_HEARTBEAT_MS, heartbeat_interval(*timeout).as_millis().to_string()));
    }
    let env: Vec<CString> = std::env::vars_os()
        .filter(|(name, _)| !ours.iter().any(|(ours, _)| name == ours))
        .map(|(name, value)| env_entry(&name, &value))
        .chain(ours.iter().map(|(name, value)| env_entry(OsStr::new(name), OsStr::new(value))))
        .collect::<Result<_, _>>()?;
    let args: Vec<CString> = std::iter::once(program.path.as_os_str())
        .chain(program.args.iter().map(OsString::as_os_str))
        .map(c_string)
        .collect::<Result<_, _>>()?;

    let mut attr = PosixSpawnAttr::init()?;
    // Terminal signals (Ctrl-C) go to the parent only (the worker gets a process group of its
    // own); it decides when workers stop. As std's spawn does: no blocked signals, and SIGPIPE
    // at its default, since Rust programs ignore it.
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETPGROUP
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
    )?;
    attr.set_pgroup(Pid::from_raw(0))?;
    attr.set_sigmask(&SigSet::empty())?;
    let mut default = SigSet::empty();
    default.add(Signal::SIGPIPE);
    attr.set_sigdefault(&default)?;

    // A bare name is looked up in PATH, as `Command` does; a path is taken as it is.
    let pid = match program.path.as_os_str().as_bytes().contains(&b'/') {
        true => posix_spawn(program.path.as_path(), &actions, &attr, &args, &env)?,
        false => posix_spawnp(&args[0], &actions, &attr, &args, &env)?,
    };
    drop(child_end);
    Ok(Spawned {
        proc: WorkerProc { pid: pid.as_raw() as u32, running: Mutex::new(true) },
        stream: parent_end,
        heartbeat: beat.map(|((parent, _), _)| parent),
    })
}

fn c_string(text: &OsStr) -> std::io::Result<CString> {
    CString::new(text.as_bytes()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL byte in an argument")
    })
}

fn env_entry(name: &OsStr, value: &OsStr) -> std::io::Result<CString> {
    let mut entry = name.to_owned();
    entry.push("=");
    entry.push(value);
    c_string(&entry)
}

/// A worker process, reaped exactly once by whoever gets to it first.
#[derive(Debug)]
pub(crate) struct WorkerProc {
    pid: u32,
    /// `false` once reaped, so the pid is never signalled after it may have been reused.
    running: Mutex<bool>,
}

impl WorkerProc {
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    fn nix_pid(&self) -> Pid {
        Pid::from_raw(self.pid as i32)
    }

    /// Sends SIGKILL unless the process was reaped already.
    pub(crate) fn kill(&self) {
        if *self.running.lock().unwrap_or_else(PoisonError::into_inner) {
            let _ = kill(self.nix_pid(), Signal::SIGKILL);
        }
    }

    /// Kills the process and waits for it, blocking; for `Drop`.
    pub(crate) fn kill_and_reap(&self) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if *running {
            let _ = kill(self.nix_pid(), Signal::SIGKILL);
            while let Err(nix::errno::Errno::EINTR) = waitpid(self.nix_pid(), None) {}
            *running = false;
        }
    }

    /// Reaps the process if it has exited; `None` if it still runs (or was reaped elsewhere).
    fn try_reap(&self) -> Option<WaitStatus> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if !*running {
            return None;
        }
        match waitpid(self.nix_pid(), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => None,
            Ok(status) => {
                *running = false;
                Some(status)
            }
            Err(_) => {
                *running = false;
                None
            }
        }
    }

    /// Waits for the process to exit and reaps it, killing it if it has not exited after
    /// `grace`. Returns a description of how it ended.
    pub(crate) async fn reap(&self, grace: Duration) -> String {
        if let Some(status) = self.try_reap() {
            return describe(status);
        }
        let pid = self.pid;
        let mut exited = tokio::task::spawn_blocking(move || wait_exited(pid));
        if tokio::time::timeout(grace, &mut exited).await.is_err() {
            self.kill();
            let _ = exited.await;
        }
        match self.try_reap() {
            Some(status) => describe(status),
            None => "reaped elsewhere".to_owned(),
        }
    }
}

impl Drop for WorkerProc {
    /// A worker nobody reaped yet (e.g. one still in its handshake when the pool was dropped)
    /// is killed and reaped here, so no process outlives its last handle.
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// Blocks until `pid` has exited, without reaping it (so the pid stays ours until
/// [`WorkerProc::try_reap`] takes the status under the lock).
fn wait_exited(pid: u32) {
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
    loop {
        // SAFETY: `info` is a valid siginfo_t to write to; P_PID names one child of ours.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                info.as_mut_ptr(),
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// How a process ended, for error messages: "exit code 3" or "killed by signal 9 (SIGKILL)".
pub(crate) fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit code {code}"),
        WaitStatus::Signaled(_, signal, _) => {
            format!("killed by signal {} ({signal})", signal as i32)
        }
        other => format!("{other:?}"),
    }
}
