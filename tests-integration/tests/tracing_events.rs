//! The pool reports what happens to its workers through `tracing`: a program that installs a
//! subscriber sees a lost worker and the task retried because of it. (Without one, the pool
//! prints nothing.)

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use polyloop::Pool;
use tracing::field::{Field, Visit};
use tracing::{Event, Metadata, Subscriber, span};

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

/// Keeps every event as one line: its level and fields.
#[derive(Debug, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<String>>>,
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(format!("{} ", event.metadata().level()));
        event.record(&mut fields);
        self.events.lock().expect("not poisoned").push(fields.0);
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

#[tokio::test]
async fn a_lost_worker_and_its_retried_task_are_reported() -> anyhow::Result<()> {
    let recorder = Recorder::default();
    let events = Arc::clone(&recorder.events);
    tracing::subscriber::set_global_default(recorder)?;

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

    let events = events.lock().expect("not poisoned").clone();
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
