//! When a pool's parent goes: killed outright, every worker exits within a second; signalled in
//! its process group (Ctrl-C), the workers leave the decision to it, say nothing, and its
//! `close` or drop shuts them down in order.
//!
//! The parent is the `orphan_parent` helper binary, started in a process group of its own so the
//! signals never reach this test process.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use polyloop_tests_integration::{PATIENCE, PROMPTLY, reaped, send_signal};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::time::Instant;

const ORPHAN_PARENT: &str = env!("CARGO_BIN_EXE_orphan_parent");

/// For the one test here whose pool's parent is this test binary.
#[polyloop::task]
async fn whoami(_i: u64) -> u32 {
    std::process::id()
}

/// A running `orphan_parent` and its workers; dropping it kills whatever is left of them.
struct Parent {
    child: Child,
    pid: u32,
    workers: Vec<u32>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Option<ChildStderr>,
}

impl Parent {
    /// Starts `orphan_parent <mode>` and reads its workers' pids.
    async fn start(mode: &str) -> anyhow::Result<Parent> {
        let mut child = Command::new(ORPHAN_PARENT)
            .arg(mode)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().ok_or_else(|| anyhow::anyhow!("the parent exited at once"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let stderr = child.stderr.take();
        let mut parent = Parent {
            child,
            pid,
            workers: Vec::new(),
            stdout: BufReader::new(stdout).lines(),
            stderr,
        };
        let line = parent.line().await?;
        parent.workers = line.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
        anyhow::ensure!(parent.workers.len() == 2, "two worker pids, got {line:?}");
        for &pid in &parent.workers {
            anyhow::ensure!(!exited(pid), "worker {pid} runs");
        }
        Ok(parent)
    }

    /// The parent's next line on stdout.
    async fn line(&mut self) -> anyhow::Result<String> {
        match tokio::time::timeout(PATIENCE, self.stdout.next_line()).await {
            Ok(line) => line?.ok_or_else(|| anyhow::anyhow!("the parent's stdout ended")),
            Err(_) => anyhow::bail!("no line from the parent within {PATIENCE:?}"),
        }
    }

    async fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        match tokio::time::timeout(PATIENCE, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => anyhow::bail!("the parent did not exit within {PATIENCE:?}"),
        }
    }

    /// Everything the parent and its workers wrote to stderr. The pipe ends when the last of
    /// them has exited.
    async fn stderr(&mut self) -> anyhow::Result<String> {
        let mut text = String::new();
        if let Some(stderr) = &mut self.stderr {
            tokio::time::timeout(PATIENCE, stderr.read_to_string(&mut text)).await??;
        }
        Ok(text)
    }

    /// Sends `signal` to the parent's process group and checks that the parent, not the signal,
    /// ends its workers: they serve on, the parent ends its pool as its line `ending` says, reaps
    /// every worker and exits 0, and neither it nor they print anything on stderr.
    async fn assert_shuts_down_on(&mut self, signal: Signal, ending: &str) -> anyhow::Result<()> {
        killpg(Pid::from_raw(self.pid as i32), signal)?;
        assert_eq!(self.line().await?, format!("received {signal}"));
        assert_eq!(self.line().await?, "served 8 tasks, 0 by other workers, 0 restarts");
        assert_eq!(self.line().await?, ending);
        assert_eq!(self.line().await?, "unreaped: []");
        let status = self.wait().await?;
        assert!(status.success(), "{status}");
        assert_eq!(self.stderr().await?, "", "no output from the parent or the workers");
        for &worker in &self.workers {
            assert!(reaped(worker), "worker {worker} was reaped by its parent");
        }
        Ok(())
    }

    /// Waits until every worker has exited; returns those still running at the deadline. The
    /// workers are not our children, so there is no event to wait on: poll /proc.
    async fn workers_exit_by(&self, deadline: Instant) -> Vec<u32> {
        loop {
            let running: Vec<u32> = self.workers.iter().copied().filter(|&p| !exited(p)).collect();
            if running.is_empty() || Instant::now() >= deadline {
                return running;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        // Only processes still running this program: a pid may have been reused since.
        let program = std::fs::canonicalize(ORPHAN_PARENT).ok();
        for &pid in &self.workers {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
            if !exited(pid) && exe.is_some() && exe == program {
                let _ = send_signal(pid, Signal::SIGKILL);
            }
        }
    }
}

/// Whether `pid` has exited. An orphaned worker is reaped by whoever adopted it, not by us, so
/// a zombie counts as exited.
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
            matches!(state, Some("Z" | "X"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. The parent dies.

#[tokio::test]
async fn sigkill_of_the_parent_ends_every_worker_within_a_second() -> anyhow::Result<()> {
    let mut parent = Parent::start("hold").await?;
    send_signal(parent.pid, Signal::SIGKILL)?;
    let deadline = Instant::now() + PROMPTLY;
    let status = parent.wait().await?;
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "{status}");
    let running = parent.workers_exit_by(deadline).await;
    assert!(running.is_empty(), "workers {running:?} outlived their parent by {PROMPTLY:?}");
    assert_eq!(parent.stderr().await?, "", "the workers exit silently");
    Ok(())
}

#[tokio::test]
async fn sigkill_of_the_parent_ends_workers_blocked_in_a_task() -> anyhow::Result<()> {
    let mut parent = Parent::start("spin").await?;
    // A blocked worker cannot read the end of its socket: only the kernel can end it.
    let mut spinning = Vec::new();
    while spinning.len() < parent.workers.len() {
        let line = parent.line().await?;
        match line.strip_prefix("spinning ").map(str::parse::<u32>) {
            Some(Ok(pid)) => spinning.push(pid),
            _ => anyhow::bail!("unexpected line {line:?}"),
        }
    }
    spinning.sort_unstable();
    let mut workers = parent.workers.clone();
    workers.sort_unstable();
    assert_eq!(spinning, workers, "each worker blocks in a task");
    send_signal(parent.pid, Signal::SIGKILL)?;
    let deadline = Instant::now() + PROMPTLY;
    parent.wait().await?;
    let running = parent.workers_exit_by(deadline).await;
    assert!(running.is_empty(), "blocked workers {running:?} outlived their parent");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 8. Ctrl-C, SIGINT and SIGTERM to the parent's process group.

#[tokio::test]
async fn unhandled_sigint_or_sigterm_kills_the_parent_and_its_workers_follow_silently()
-> anyhow::Result<()> {
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        let mut parent = Parent::start("hold").await?;
        killpg(Pid::from_raw(parent.pid as i32), signal)?;
        let deadline = Instant::now() + PROMPTLY;
        let status = parent.wait().await?;
        let by = std::os::unix::process::ExitStatusExt::signal(&status);
        assert_eq!(by, Some(signal as i32), "the parent died of {signal}: {status}");
        let running = parent.workers_exit_by(deadline).await;
        assert!(running.is_empty(), "workers {running:?} outlived their parent after {signal}");
        assert_eq!(parent.stderr().await?, "", "no output from the workers after {signal}");
    }
    Ok(())
}

#[tokio::test]
async fn sigint_to_the_group_leaves_shutdown_to_the_parent_s_close() -> anyhow::Result<()> {
    let mut parent = Parent::start("close").await?;
    // Even aimed at a worker itself, SIGINT is the parent's business: the worker ignores it.
    for &worker in &parent.workers {
        send_signal(worker, Signal::SIGINT)?;
    }
    parent.assert_shuts_down_on(Signal::SIGINT, "closed after 4 tasks").await
}

#[tokio::test]
async fn sigterm_to_the_group_leaves_shutdown_to_the_parent_s_drop() -> anyhow::Result<()> {
    let mut parent = Parent::start("drop").await?;
    parent.assert_shuts_down_on(Signal::SIGTERM, "dropped with 4 tasks cancelled").await
}

// ---------------------------------------------------------------------------------------------
// The other side of 5: while the parent lives, its workers live.

/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. The pool
/// forks its workers from its own driver thread, which lives as long as the pool, but the threads
/// of its callers' runtimes come and go: a tokio worker thread that calls `block_in_place` hands
/// its core to a new thread and becomes a blocking-pool thread, which exits once idle (after
/// `thread_keep_alive`, 10 s by default).
#[test]
fn workers_outlive_the_runtime_threads_that_used_them() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_keep_alive(Duration::from_millis(50))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let pool = std::sync::Arc::new(polyloop::Pool::builder().processes(1).build().await?);
        let pid = pool.apply(whoami, 0).await?;
        let spawner =
            spawning_thread(pid).ok_or_else(|| anyhow::anyhow!("no thread forked {pid}"))?;
        let name = std::fs::read_to_string(format!("/proc/self/task/{spawner}/comm"))?;
        anyhow::ensure!(name.trim_end() == "polyloop-driver", "{pid} forked by {name:?}");
        // A runtime thread that used the pool moves its core to a new thread for good.
        let user_pool = std::sync::Arc::clone(&pool);
        let user = tokio::spawn(async move {
            let pid = user_pool.apply(whoami, 0).await;
            tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(200)));
            (pid, current_thread_id())
        });
        let (served, user) = user.await?;
        anyhow::ensure!(matches!(served, Ok(p) if p == pid), "the worker {pid} serves: {served:?}");
        let user = user?;
        // The thread idles out; there is no event for that: poll /proc.
        let deadline = Instant::now() + PROMPTLY;
        let task = PathBuf::from(format!("/proc/self/task/{user}"));
        while task.exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::ensure!(!task.exists(), "precondition: thread {user} did not exit");

        let now = pool.apply(whoami, 0).await;
        let stats = pool.stats();
        assert!(matches!(now, Ok(p) if p == pid), "the worker {pid} still serves: {now:?}");
        assert_eq!(stats.workers[0].restarts, 0, "{stats:?}");
        pool.close().await?;
        Ok(())
    })
}

/// The kernel's id of the calling thread, from `/proc/thread-self` (a link to `<pid>/task/<tid>`).
fn current_thread_id() -> anyhow::Result<String> {
    let link = std::fs::read_link("/proc/thread-self")?;
    let tid = link.file_name().and_then(|tid| tid.to_str());
    tid.map(str::to_owned).ok_or_else(|| anyhow::anyhow!("/proc/thread-self is {link:?}"))
}

/// The thread of this process whose child `pid` is.
fn spawning_thread(pid: u32) -> Option<u32> {
    std::fs::read_dir("/proc/self/task").ok()?.flatten().find_map(|task| {
        let children = std::fs::read_to_string(task.path().join("children")).ok()?;
        children
            .split_whitespace()
            .any(|child| child == pid.to_string())
            .then(|| task.file_name().to_str()?.parse().ok())
            .flatten()
    })
}
