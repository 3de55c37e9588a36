//! How a worker starts, and how it says why it cannot: a worker program run with a broken
//! environment prints one line on stderr and exits with its own status, instead of aborting,
//! exiting 0 in silence or waiting forever; and `polyloop::init()` inside a runtime serves.
//!
//! The program is `tokio_main_worker`, a `#[tokio::main]` program that calls `polyloop::init()`
//! first; here it is started with the variables a pool would set, made wrong one at a time.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Output, Stdio};
use std::time::Duration;

use polyloop::wire::{ENV_PARENT_PID, ENV_WORKER_FD, WELCOME_TIMEOUT, WorkerExit};
use tokio::process::Command;

const PROGRAM: &str = env!("CARGO_BIN_EXE_tokio_main_worker");

/// A bound on every run, so a worker that hangs fails the test rather than stalls it.
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs the program as a worker of this process with `fd` as its socket number and `stdin`,
/// overriding the parent pid with `parent` when given.
async fn run_worker(fd: &str, stdin: Stdio, parent: Option<u32>) -> Output {
    let parent = parent.unwrap_or_else(std::process::id);
    let run = Command::new(PROGRAM)
        .env(ENV_WORKER_FD, fd)
        .env(ENV_PARENT_PID, parent.to_string())
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(PATIENCE + WELCOME_TIMEOUT, run).await {
        Ok(output) => output.expect("run the worker program"),
        Err(_) => panic!("the worker program with {ENV_WORKER_FD}={fd} hung"),
    }
}

/// Asserts that the worker exited with `exit` and said so in one line that mentions `says`.
#[track_caller]
fn assert_refused(output: &Output, exit: WorkerExit, says: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(exit.code()), "{:?}: {stderr}", output.status);
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr}");
    assert!(stderr.contains(says), "stderr does not mention {says:?}: {stderr}");
    assert!(output.stdout.is_empty(), "main did not run: {:?}", output.stdout);
}

/// The worker's end of a socket pair, as its stdin (descriptor 0), and the parent's end.
fn socket_as_stdin() -> (UnixStream, Stdio) {
    let (parent, worker) = UnixStream::pair().expect("a socket pair");
    (parent, Stdio::from(OwnedFd::from(worker)))
}

#[tokio::test]
async fn a_malformed_descriptor_number_is_an_error_not_an_abort() {
    let output = run_worker("-1", Stdio::null(), None).await;
    assert_refused(&output, WorkerExit::BadEnvironment, "POLYLOOP_WORKER_FD=\"-1\"");
    let output = run_worker("three", Stdio::null(), None).await;
    assert_refused(&output, WorkerExit::BadEnvironment, "is not a valid number");
}

#[tokio::test]
async fn a_descriptor_that_is_no_socket_is_refused() {
    let output = run_worker("987", Stdio::null(), None).await;
    assert_refused(&output, WorkerExit::BadSocket, "not an open file descriptor");
    let output = run_worker("0", Stdio::null(), None).await;
    assert_refused(&output, WorkerExit::BadSocket, "not a socket");
}

/// A worker whose parent is not the pool's process (which exited before the worker started)
/// says so, rather than exiting 0 without running anything.
#[tokio::test]
async fn a_worker_of_another_parent_says_so() {
    let (_parent, stdin) = socket_as_stdin();
    let output = run_worker("0", stdin, Some(1)).await;
    assert_refused(&output, WorkerExit::Orphaned, "exited before this worker started");
}

/// A parent that never sends the Welcome does not hold the worker forever.
#[tokio::test]
async fn a_worker_gives_up_on_a_silent_parent() {
    let (_parent, stdin) = socket_as_stdin();
    let output = run_worker("0", stdin, None).await;
    assert_refused(&output, WorkerExit::NoWelcome, "no Welcome within 30s");
}

/// `polyloop::init()` called inside a runtime (the body of a `#[tokio::main]`) serves from a
/// thread of its own: the pool's workers, this program re-executed, answer the handshake.
#[tokio::test]
async fn init_inside_a_runtime_serves() {
    let run = Command::new(PROGRAM)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PATIENCE, run).await.expect("the program hung").unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "2 workers\n", "{stderr}");
}
