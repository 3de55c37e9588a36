//! The pool reports what happens to its workers through `tracing`: a program that installs a
//! subscriber sees a lost worker and the task retried because of it. (Without one, the pool
//! prints nothing.)

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use polyloop::Pool;
use polyloop_tests_integration::EventLog;

/// On its first run (no file at `marker` yet): writes it, tells the test it runs by connecting
/// to the socket `probe`, and waits for a minute. On a later run it returns at once.
#[polyloop::task]
async fn mark_then_wait(marker: String, probe: String) -> u32 {
    if !Path::new(&marker).exists() {
        std::fs::write(&marker, b"").expect("the temp dir is writable");
        let _running = std::os::unix::net::UnixStream::connect(&probe).expect("the test listens");
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    std::process::id()
}

#[tokio::test]
async fn a_lost_worker_and_its_retried_task_are_reported() -> anyhow::Result<()> {
    let log = EventLog::installed();

    let dir = std::env::temp_dir().join(format!("polyloop-tracing-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let marker = dir.join("started").to_string_lossy().into_owned();
    let probe = dir.join("probe.sock");
    let listener = tokio::net::UnixListener::bind(&probe)?;
    let pool = Pool::builder().processes(1).retries(1).build().await?;
    let first = pool.stats().workers[0].pid;
    let task = pool.submit(mark_then_wait, (marker, probe.to_string_lossy().into_owned()));
    // The task connects once it runs in the worker.
    tokio::time::timeout(Duration::from_secs(60), listener.accept()).await??;
    kill(Pid::from_raw(first as i32), Signal::SIGKILL)?;
    let second = tokio::time::timeout(Duration::from_secs(60), task).await??;
    assert_ne!(second, first, "the task ran again on a replacement");
    pool.close().await?;
    std::fs::remove_dir_all(&dir)?;

    let events = log.lines();
    let lost = events.iter().find(|e| e.contains("message=worker lost")).map(String::as_str);
    let lost = lost.unwrap_or_else(|| panic!("no worker-lost event in {events:#?}"));
    assert!(
        lost.starts_with("WARN ") && lost.contains("SIGKILL") && lost.contains("tasks=1"),
        "{lost}"
    );
    assert!(
        events.iter().any(|e| e.contains("message=task retried") && e.contains("attempt=1")),
        "no retry event in {events:#?}"
    );
    Ok(())
}
