//! Becoming a worker: find the parent's sockets in the environment, guard against being
//! orphaned, prove liveness, build the runtime the parent asked for, and serve until told to stop.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use polyloop_wire::{
    ENV_HEARTBEAT_FD, ENV_HEARTBEAT_MS, ENV_PARENT_PID, ENV_WORKER_FD, FrameBuffer, Limits,
    RuntimeFlavor, WELCOME_TIMEOUT, WorkerExit,
};

use crate::Registry;
use crate::worker::{Welcomed, WorkerError, parse_welcome, refuse, serve_welcomed};

/// Runs this process as a worker if a polyloop pool started it; otherwise returns at once.
///
/// `#[polyloop::task]` calls this before `main` (so test and bench binaries, whose `main` is not
/// the user's, become workers too), and `#[polyloop::main]` / `polyloop::init()` call it first
/// thing in `main`. In a worker it never returns: the process exits when the parent shuts it
/// down or goes away, with a [`WorkerExit`] status and one line on stderr if it could not serve.
///
/// Called on a thread that is inside a tokio runtime (`polyloop::init()` in a `#[tokio::main]`),
/// it serves from a thread of its own: a runtime cannot be built inside another.
pub fn worker_hook() {
    let inherited = match Inherited::from_env() {
        Ok(None) => return,
        Ok(Some(inherited)) => inherited,
        Err(err) => exit_with(&err),
    };
    let serve = move || run_worker_process(inherited, Registry::linked());
    let result = match tokio::runtime::Handle::try_current() {
        Err(_) => serve(),
        // The caller's runtime stays idle meanwhile: the process exits when serving ends.
        Ok(_) => std::thread::Builder::new()
            .name("polyloop-worker".into())
            // As much stack as a main thread has, since tasks run on it.
            .stack_size(8 << 20)
            .spawn(serve)
            .map_err(WorkerError::from)
            .and_then(|thread| {
                thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }),
    };
    match result {
        Ok(()) => std::process::exit(0),
        Err(err) => exit_with(&err),
    }
}

/// Ends the process with `err`'s status, saying why on stderr (an initializer's error is the
/// parent's to report: it has it from the handshake).
fn exit_with(err: &WorkerError) -> ! {
    let exit = err.exit();
    if exit != WorkerExit::InitializerFailed {
        // The error and its causes on one line, as the parent would print a task's error.
        let text = polyloop_wire::RemoteError::from_error(err);
        eprintln!("polyloop worker {}: {text}", std::process::id());
    }
    std::process::exit(exit.code());
}

/// What a pool passes to the worker process it starts, read from the environment.
#[derive(Debug)]
pub struct Inherited {
    /// The worker's end of its socket to the parent.
    pub socket: OwnedFd,
    /// The pid of the parent that started this process.
    pub parent: i32,
    /// Where to prove liveness, and how often; `None` when the parent does not watch.
    pub heartbeat: Option<(OwnedFd, Duration)>,
}

impl Inherited {
    /// Reads the variables a pool sets for its workers, and removes them, so that programs the
    /// worker starts do not take themselves for workers. `Ok(None)` when this process was not
    /// started by a pool.
    ///
    /// # Errors
    /// A variable that is malformed ([`WorkerError::Environment`]) or a descriptor that is not an
    /// open socket ([`WorkerError::Socket`]).
    pub fn from_env() -> Result<Option<Self>, WorkerError> {
        let Some(fd) = std::env::var_os(ENV_WORKER_FD) else { return Ok(None) };
        let parent = std::env::var_os(ENV_PARENT_PID);
        let beat_fd = std::env::var_os(ENV_HEARTBEAT_FD);
        let beat_ms = std::env::var_os(ENV_HEARTBEAT_MS);
        // SAFETY: this runs before main or as the first thing in main, before the program starts
        // threads of its own (a `#[tokio::main]` runtime's threads do not touch the environment
        // while they are idle), so nothing reads the environment concurrently.
        unsafe {
            for var in [ENV_WORKER_FD, ENV_PARENT_PID, ENV_HEARTBEAT_FD, ENV_HEARTBEAT_MS] {
                std::env::remove_var(var);
            }
        }
        let socket = socket_from(ENV_WORKER_FD, &fd)?;
        let parent = number(ENV_PARENT_PID, parent.as_ref())?;
        let heartbeat = match (beat_fd, beat_ms) {
            (None, None) => None,
            (Some(fd), ms) => {
                let ms: u64 = number(ENV_HEARTBEAT_MS, ms.as_ref())?;
                Some((socket_from(ENV_HEARTBEAT_FD, &fd)?, Duration::from_millis(ms.max(1))))
            }
            (None, Some(_)) => {
                return Err(WorkerError::Environment(format!(
                    "{ENV_HEARTBEAT_MS} is set without {ENV_HEARTBEAT_FD}"
                )));
            }
        };
        Ok(Some(Inherited { socket, parent, heartbeat }))
    }

    /// Does what every worker process needs before it serves, on whatever runtime it then
    /// builds: [`ignore_group_signals`], [`install_panic_hook`] and [`watch_parent`] (which
    /// also beats on the heartbeat socket). Returns the socket to [`serve`](crate::serve) on,
    /// in blocking mode.
    ///
    /// # Errors
    /// [`WorkerError::Orphaned`] if the parent exited before this process got here.
    ///
    /// # Example: a worker on a runtime of its own
    /// ```no_run
    /// use polyloop_child::{Inherited, Registry, serve};
    ///
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let Some(inherited) = Inherited::from_env()? else {
    ///         return Err("start me from a polyloop pool".into());
    ///     };
    ///     let socket = inherited.prepare()?;
    ///     let runtime = tokio::runtime::Builder::new_multi_thread()
    ///         .worker_threads(2)
    ///         .thread_name("my-worker")
    ///         .enable_all()
    ///         .build()?;
    ///     runtime.block_on(async {
    ///         socket.set_nonblocking(true)?;
    ///         let stream = tokio::net::UnixStream::from_std(socket)?;
    ///         serve(stream, Registry::linked()).await
    ///     })?;
    ///     Ok(())
    /// }
    /// ```
    pub fn prepare(self) -> Result<UnixStream, WorkerError> {
        let Inherited { socket, parent, heartbeat } = self;
        ignore_group_signals();
        install_panic_hook();
        watch_parent(parent, heartbeat)?;
        Ok(UnixStream::from(socket))
    }
}

/// Installs the panic hook that keeps a task's panic out of the worker's stderr and records its
/// location for the parent's error; other panics still reach the hook installed before. Idempotent.
pub fn install_panic_hook() {
    crate::panic::install_hook();
}

/// Parses variable `name`, which must be set, as a non-negative number.
fn number<T: std::str::FromStr>(name: &str, value: Option<&OsString>) -> Result<T, WorkerError> {
    let Some(value) = value else {
        return Err(WorkerError::Environment(format!("{name} is not set")));
    };
    value
        .to_str()
        .filter(|text| !text.starts_with('-'))
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| WorkerError::Environment(format!("{name}={value:?} is not a valid number")))
}

/// Takes ownership of the socket whose number variable `name` holds, after checking that it is
/// one: adopting a descriptor that is closed or something else would fail later, obscurely.
fn socket_from(name: &str, value: &OsString) -> Result<OwnedFd, WorkerError> {
    let fd: RawFd = number(name, Some(value))?;
    let mut stat = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat writes a `stat` to the valid pointer, or fails with EBADF for a number that
    // is no open descriptor.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return Err(WorkerError::Socket(format!(
            "{name}={fd} is not an open file descriptor (was this program started by a polyloop \
             pool?): {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: fstat succeeded, so it initialized the struct.
    let mode = unsafe { stat.assume_init() }.st_mode;
    if mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(WorkerError::Socket(format!("{name}={fd} is open but not a socket")));
    }
    // SAFETY: the descriptor is open, the parent passed it for our exclusive use, and nothing
    // else in the process knows its number.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Our own children (a task may spawn programs) must not inherit it.
    nix::fcntl::fcntl(&owned, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .map_err(std::io::Error::from)?;
    Ok(owned)
}

/// Serves the parent over the sockets in `inherited` with `registry`, for a custom worker
/// binary: watches the parent and beats, reads the Welcome (waiting at most
/// [`WELCOME_TIMEOUT`]), builds the runtime it asks for and serves until the parent shuts the
/// worker down or goes away.
///
/// # Errors
/// [`WorkerError::Orphaned`] if this process already has another parent (the parent died before
/// the worker started), [`WorkerError::NoWelcome`] if the parent sends nothing in time, and
/// whatever serving fails with. [`WorkerError::exit`] gives the matching exit status.
///
/// ```no_run
/// use polyloop_child::{Inherited, Registry, run_worker_process};
///
/// if let Some(inherited) = Inherited::from_env().unwrap() {
///     run_worker_process(inherited, Registry::linked()).unwrap();
///     std::process::exit(0);
/// }
/// ```
pub fn run_worker_process(inherited: Inherited, registry: Registry) -> Result<(), WorkerError> {
    let mut stream = inherited.prepare()?;
    // The Welcome says which runtime to build, so it is read before there is one.
    let (welcome, frames) = read_welcome_blocking(&mut stream, WELCOME_TIMEOUT)?;
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
        let (reader, mut writer) = polyloop_socket::split(stream)?;
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

/// Reads the parent's first frame on a blocking socket, waiting at most `timeout` for it, with
/// the handshake's small frame limit. Returns it with the buffer, which may hold more.
fn read_welcome_blocking(
    stream: &mut UnixStream,
    timeout: Duration,
) -> Result<(Welcomed, FrameBuffer), WorkerError> {
    let deadline = Instant::now() + timeout;
    let mut frames = FrameBuffer::new(Limits::HANDSHAKE);
    loop {
        if frames.has_frame()? {
            let payload = frames.next_frame()?.unwrap_or_default();
            let welcome = parse_welcome(payload)?;
            return Ok((welcome, frames));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WorkerError::NoWelcome(timeout));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(frames.spare()) {
            Ok(0) => return Ok((Welcomed::ParentGone, frames)),
            Ok(n) => frames.filled(n),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(WorkerError::NoWelcome(timeout));
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into()),
        }
    }
}

/// Makes sure the worker dies with its parent even when it cannot read its socket (a task that
/// blocks the thread), and proves to the parent that the process runs: a small thread,
/// `polyloop-parent-watch`, waits for process `parent` to exit, writing a byte to `heartbeat`
/// every interval meanwhile, and ends the process when it does. The primary signal of a parent's
/// end is the end of stream on the socket, which the worker loop sees.
///
/// Not `PR_SET_PDEATHSIG`: it fires when the parent *thread* that spawned us exits, and a
/// tokio runtime retires idle threads while the pool lives on.
///
/// # Errors
/// [`WorkerError::Orphaned`] if `parent` is no longer this process's parent, or an i/o error if
/// the thread cannot start.
pub fn watch_parent(
    parent: i32,
    heartbeat: Option<(OwnedFd, Duration)>,
) -> Result<(), WorkerError> {
    // The parent may have died before we got here; then we were re-parented already.
    let actual = nix::unistd::getppid().as_raw();
    if actual != parent {
        return Err(WorkerError::Orphaned { parent, actual });
    }
    let heartbeat = heartbeat.map(|(fd, interval)| (UnixStream::from(fd), interval));
    if let Some((beat, _)) = &heartbeat {
        // A parent that stops reading must not block the beats: they are dropped instead.
        beat.set_nonblocking(true)?;
    }
    let watch = ParentWatch::new(parent);
    std::thread::Builder::new().name("polyloop-parent-watch".into()).stack_size(64 * 1024).spawn(
        move || {
            let mut next_beat = Instant::now();
            loop {
                let wait = match &heartbeat {
                    Some((beat, interval)) => {
                        let mut beat: &UnixStream = beat;
                        let now = Instant::now();
                        if now >= next_beat {
                            // One byte is a beat. Failing (the parent's buffer full, or the
                            // parent gone) is fine: liveness is the parent's to judge.
                            let _ = beat.write(&[0]);
                            next_beat = now + *interval;
                        }
                        Some(next_beat.saturating_duration_since(now))
                    }
                    None => None,
                };
                if watch.exited_within(wait) {
                    // Nobody wants this worker's results any more; skip destructors and flushes.
                    // SAFETY: _exit is async-signal-safe and ends the process at once.
                    unsafe { libc::_exit(0) }
                }
            }
        },
    )?;
    Ok(())
}

/// Waits for the parent process to exit.
struct ParentWatch {
    parent: i32,
    /// A descriptor that becomes readable when the parent exits (Linux 5.3 and later).
    pidfd: Option<OwnedFd>,
}

impl ParentWatch {
    fn new(parent: i32) -> Self {
        #[cfg(target_os = "linux")]
        let pidfd = {
            // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, parent, 0) };
            // SAFETY: a new descriptor is ours to own.
            (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
        };
        #[cfg(not(target_os = "linux"))]
        let pidfd = None;
        ParentWatch { parent, pidfd }
    }

    /// Whether the parent exited within `wait` (`None`: as long as it takes).
    fn exited_within(&self, wait: Option<Duration>) -> bool {
        use std::os::fd::AsRawFd;
        if let Some(pidfd) = &self.pidfd {
            let ms = wait.map_or(-1, |wait| wait.as_millis().min(i32::MAX as u128) as i32);
            let mut poll = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd. An interrupted poll counts as no exit: we ask again.
            return unsafe { libc::poll(&mut poll, 1, ms) } > 0;
        }
        // Without pidfds (macOS, Linux before 5.3): re-parenting is how an exit shows. A slow
        // poll, on a thread of its own, only for the case where the socket cannot tell.
        let tick = Duration::from_millis(100);
        std::thread::sleep(wait.map_or(tick, |wait| wait.min(tick)));
        nix::unistd::getppid().as_raw() != self.parent
    }
}

/// Leaves signals aimed at the whole process group to the parent: ignores SIGINT (the parent
/// decides when workers stop, and no worker prints its own report of a Ctrl-C) and SIGPIPE (a
/// write to a closed socket must return an error, not kill the worker; code that runs before
/// `main` still has SIGPIPE at its default).
pub fn ignore_group_signals() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for sig in [Signal::SIGPIPE, Signal::SIGINT] {
        // SAFETY: SIG_IGN installs no handler code, so it cannot violate signal safety.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_parent_is_given_up_on_at_the_deadline() {
        let (_parent, mut child) = UnixStream::pair().unwrap();
        let started = Instant::now();
        let err = read_welcome_blocking(&mut child, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, WorkerError::NoWelcome(_)), "{err}");
        assert_eq!(err.exit(), WorkerExit::NoWelcome);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_huge_first_frame_is_refused_before_it_is_read() {
        let (mut parent, mut child) = UnixStream::pair().unwrap();
        parent.write_all(&(256u32 << 20).to_le_bytes()).unwrap();
        let err = read_welcome_blocking(&mut child, Duration::from_secs(5)).unwrap_err();
        assert!(
            matches!(err, WorkerError::Wire(polyloop_wire::WireError::FrameTooLarge { .. })),
            "{err}"
        );
    }

    #[test]
    fn numbers_in_the_environment_must_be_non_negative() {
        let bad = |value: &str| number::<RawFd>("X", Some(&OsString::from(value))).unwrap_err();
        for value in ["-1", "", "3x", "99999999999"] {
            let err = bad(value);
            assert_eq!(err.exit(), WorkerExit::BadEnvironment, "{value}: {err}");
            assert!(err.to_string().contains("X="), "{err}");
        }
        assert_eq!(number::<RawFd>("X", Some(&OsString::from("7"))).unwrap(), 7);
    }

    #[test]
    fn a_descriptor_that_is_not_an_open_socket_is_refused() {
        let closed = socket_from("X", &OsString::from("987654")).unwrap_err();
        assert_eq!(closed.exit(), WorkerExit::BadSocket, "{closed}");
        let file = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsRawFd;
        let not_socket =
            socket_from("X", &OsString::from(file.as_raw_fd().to_string())).unwrap_err();
        assert!(not_socket.to_string().contains("not a socket"), "{not_socket}");
    }
}
