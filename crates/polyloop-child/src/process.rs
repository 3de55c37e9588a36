//! Becoming a worker: find the parent's socket in the environment, guard against being
//! orphaned, build the runtime the parent asked for, and serve until told to stop.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use polyloop_wire::{ENV_PARENT_PID, ENV_WORKER_FD, FrameBuffer, Limits, RuntimeFlavor};

use crate::Registry;
use crate::worker::{Welcomed, WorkerError, parse_welcome, refuse, serve_welcomed};

/// Runs this process as a worker if a polyloop pool started it; otherwise returns at once.
///
/// `#[polyloop::task]` calls this before `main` (so test and bench binaries, whose `main` is not
/// the user's, become workers too), and `#[polyloop::main]` / `polyloop::init()` call it first
/// thing in `main`. In a worker it never returns: the process exits when the parent shuts it
/// down or goes away.
pub fn worker_hook() {
    let Some(fd) = std::env::var_os(ENV_WORKER_FD) else { return };
    let parent = std::env::var_os(ENV_PARENT_PID);
    // SAFETY: this runs before main or as the first thing in main, before the program starts
    // threads of its own, so nothing reads the environment concurrently. The variables are
    // removed so that programs this worker starts do not take themselves for workers.
    unsafe {
        std::env::remove_var(ENV_WORKER_FD);
        std::env::remove_var(ENV_PARENT_PID);
    }
    let fd = fd.to_str().and_then(|s| s.parse::<RawFd>().ok());
    let parent = parent.and_then(|p| p.to_str().and_then(|s| s.parse::<i32>().ok()));
    let (Some(fd), Some(parent)) = (fd, parent) else {
        eprintln!("polyloop worker: malformed {ENV_WORKER_FD} or {ENV_PARENT_PID}");
        std::process::exit(70);
    };
    let code = match run_worker_process(fd, parent, Registry::linked()) {
        Ok(()) => 0,
        Err(WorkerError::Initializer(_)) => 3,
        Err(err) => {
            eprintln!("polyloop worker {}: {}", std::process::id(), error_chain(&err));
            2
        }
    };
    std::process::exit(code);
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Serves the parent on the inherited socket `fd` with `registry`, for a custom worker binary.
///
/// `parent` is the pid the parent announced; if this process already has another parent, the
/// parent died before the worker started, and the worker returns at once.
pub fn run_worker_process(fd: RawFd, parent: i32, registry: Registry) -> Result<(), WorkerError> {
    orphan_guard(parent)?;
    // SAFETY: the parent passed this descriptor for our exclusive use, and nothing else in the
    // process knows its number.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Our own children (a task may spawn programs) must not inherit the channel.
    nix::fcntl::fcntl(&owned, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .map_err(std::io::Error::from)?;
    ignore_signals();
    crate::panic::install_hook();

    let mut stream = UnixStream::from(owned);
    // The Welcome says which runtime to build, so it is read before there is one.
    let mut frames = FrameBuffer::new(Limits::default());
    let welcome = loop {
        if frames.has_frame()? {
            let payload = frames.next_frame()?.unwrap_or_default();
            break parse_welcome(payload)?;
        }
        let n = stream.read(frames.spare())?;
        if n == 0 {
            return Ok(()); // The parent went away before the handshake.
        }
        frames.filled(n);
    };
    stream.set_nonblocking(true)?;
    let runtime = match &welcome {
        Welcomed::Welcome(welcome) => match welcome.config.runtime {
            RuntimeFlavor::CurrentThread => {
                tokio::runtime::Builder::new_current_thread().enable_all().build()?
            }
            RuntimeFlavor::MultiThread { threads } => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1) as usize)
                .enable_all()
                .build()?,
        },
        _ => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
    };
    runtime.block_on(async move {
        let stream = tokio::net::UnixStream::from_std(stream)?;
        let (reader, mut writer) = stream.into_split();
        match welcome {
            Welcomed::Welcome(welcome) => {
                serve_welcomed(reader, writer, frames, registry, welcome).await
            }
            Welcomed::ParentGone => Ok(()),
            Welcomed::VersionMismatch(err) => {
                refuse(&mut writer).await?;
                Err(err.into())
            }
        }
    })
}

/// Makes sure the worker dies with its parent even when it cannot read its socket (a task that
/// blocks the thread): a small thread waits for the parent to exit and ends the process. The
/// primary signal is the end of stream on the socket, which the worker loop sees.
///
/// Not `PR_SET_PDEATHSIG`: it fires when the parent *thread* that spawned us exits, and a
/// tokio runtime retires idle threads while the pool lives on.
fn orphan_guard(parent: i32) -> Result<(), WorkerError> {
    // The parent may have died before we got here; then we were re-parented already.
    if nix::unistd::getppid().as_raw() != parent {
        std::process::exit(0);
    }
    std::thread::Builder::new().name("polyloop-parent-watch".into()).stack_size(64 * 1024).spawn(
        move || {
            wait_for_exit(parent);
            // Nobody wants this worker's results any more; skip destructors and flushes.
            // SAFETY: _exit is async-signal-safe and ends the process at once.
            unsafe { libc::_exit(0) }
        },
    )?;
    Ok(())
}

/// Blocks until process `parent` has exited.
fn wait_for_exit(parent: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, parent, 0) };
        if fd >= 0 {
            let mut poll = libc::pollfd { fd: fd as i32, events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd; a pidfd becomes readable when its process exits.
            while unsafe { libc::poll(&mut poll, 1, -1) } < 0 {}
            return;
        }
    }
    // Without pidfds (macOS, Linux before 5.3): re-parenting is how an exit shows. A slow poll,
    // on a thread of its own, only for the case where the socket cannot tell.
    while nix::unistd::getppid().as_raw() == parent {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Leaves signals aimed at the whole process group to the parent: it decides when workers stop
/// (and no worker prints its own report of a Ctrl-C). A write to a closed socket must return an
/// error, not kill the worker; code that runs before `main` still has SIGPIPE at its default.
fn ignore_signals() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for sig in [Signal::SIGPIPE, Signal::SIGINT] {
        // SAFETY: SIG_IGN installs no handler code, so it cannot violate signal safety.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
}
