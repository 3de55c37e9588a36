//! Starting a worker process with its socket, and reaping it exactly once.

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{setsockopt, sockopt};
use polyloop_wire::{ENV_PARENT_PID, ENV_WORKER_FD};

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

/// Serializes our own spawns: the child's end of the socket is inheritable only while one of them
/// runs, so two concurrent spawns must not pass each other's sockets on.
static SPAWN_LOCK: Mutex<()> = Mutex::new(());

/// Starts a worker and returns it with the parent's end of its socket.
///
/// The child's end is handed over by clearing its close-on-exec flag for this one spawn, not with
/// `pre_exec`, which would push std off its fast `posix_spawn`/vfork path.
pub(crate) fn spawn_worker(program: &WorkerProgram) -> std::io::Result<(WorkerProc, UnixStream)> {
    let (parent_end, child_end) = UnixStream::pair()?;
    for end in [&parent_end, &child_end] {
        // Best effort: the kernel caps the size at its configured maximum.
        let _ = setsockopt(end, sockopt::SndBuf, &SOCKET_BUFFER);
        let _ = setsockopt(end, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    let mut command = Command::new(&program.path);
    command
        .args(&program.args)
        .env(ENV_WORKER_FD, child_end.as_raw_fd().to_string())
        .env(ENV_PARENT_PID, std::process::id().to_string())
        // Terminal signals (Ctrl-C) go to the parent only; it decides when workers stop.
        .process_group(0);
    let child = {
        let _guard = SPAWN_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
        fcntl(&child_end, FcntlArg::F_SETFD(FdFlag::empty()))?;
        let spawned = command.spawn();
        drop(child_end);
        spawned?
    };
    Ok((WorkerProc { pid: child.id(), child: Mutex::new(Some(child)) }, parent_end))
}

/// A worker process, reaped exactly once by whoever gets to it first.
#[derive(Debug)]
pub(crate) struct WorkerProc {
    pid: u32,
    /// `None` once reaped, so the pid is never signalled after it may have been reused.
    child: Mutex<Option<Child>>,
}

impl WorkerProc {
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends SIGKILL unless the process was reaped already.
    pub(crate) fn kill(&self) {
        if let Some(child) = self.child.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            let _ = child.kill();
        }
    }

    /// Kills the process and waits for it, blocking; for `Drop`.
    pub(crate) fn kill_and_reap(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Reaps the process if it has exited; `None` if it still runs (or was reaped elsewhere).
    fn try_reap(&self) -> Option<ExitStatus> {
        let mut slot = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_mut()?.try_wait() {
            Ok(Some(status)) => {
                *slot = None;
                Some(status)
            }
            Ok(None) => None,
            Err(_) => {
                *slot = None;
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
pub(crate) fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exit code {code}")
    } else if let Some(signal) = status.signal() {
        match nix::sys::signal::Signal::try_from(signal) {
            Ok(name) => format!("killed by signal {signal} ({name})"),
            Err(_) => format!("killed by signal {signal}"),
        }
    } else {
        format!("{status}")
    }
}
