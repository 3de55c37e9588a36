//! The pool's own tokio runtime: one thread, `polyloop-driver`, that runs the pool's drivers, so
//! that the pool serves callers on any runtime, one after another, and outlives the one it was
//! built on.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{JoinHandle, Thread, ThreadId};

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::sync::oneshot;

/// The name of the thread that runs the drivers (15 bytes: Linux keeps no more).
const DRIVER_THREAD: &str = "polyloop-driver";
/// The runtime's blocking threads, which wait for worker processes to exit.
const REAPER_THREAD: &str = "polyloop-reaper";

/// A current-thread runtime on a thread of its own, stopped by [`DriverRuntime::shut_down`] or
/// when dropped.
#[derive(Debug)]
pub(crate) struct DriverRuntime {
    thread_id: ThreadId,
    /// `None` once stopped.
    running: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    /// Ends the thread's `block_on`, sent or dropped.
    stop: oneshot::Sender<()>,
    /// Sent by the thread once its runtime, and every task on it, is gone.
    stopped: oneshot::Receiver<()>,
    thread: JoinHandle<()>,
}

impl DriverRuntime {
    /// Starts the thread; the handle spawns onto its runtime.
    pub(crate) fn start() -> std::io::Result<(DriverRuntime, Handle)> {
        let runtime =
            Builder::new_current_thread().enable_all().thread_name(REAPER_THREAD).build()?;
        let handle = runtime.handle().clone();
        let (stop, stop_rx) = oneshot::channel();
        let (stopped_tx, stopped) = oneshot::channel();
        let mut runtime = NotStarted(Some(runtime));
        let thread =
            std::thread::Builder::new().name(DRIVER_THREAD.to_owned()).spawn(move || {
                let Some(runtime) = runtime.0.take() else { return };
                let _ = runtime.block_on(stop_rx);
                // Drops the tasks left (a driver resolves the tasks it held) and waits for the
                // blocking threads, which by now only wait for workers that were killed.
                drop(runtime);
                let _ = stopped_tx.send(());
            })?;
        let thread_id = thread.thread().id();
        let running = Running { stop, stopped, thread };
        Ok((DriverRuntime { thread_id, running: Mutex::new(Some(running)) }, handle))
    }

    /// Whether the caller runs on the driver thread (a driver decoding a value, say), which must
    /// not wait for itself.
    pub(crate) fn on_driver_thread(&self) -> bool {
        std::thread::current().id() == self.thread_id
    }

    fn take(&self) -> Option<Running> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Stops the runtime and waits, without blocking, until it is gone.
    pub(crate) async fn shut_down(&self) {
        let Some(Running { stop, stopped, thread }) = self.take() else { return };
        let _ = stop.send(());
        if !self.on_driver_thread() {
            let _ = stopped.await;
            // It has nothing left to do but return.
            let _ = thread.join();
        }
    }

    /// Stops the runtime and blocks until it is gone; for `Drop`.
    pub(crate) fn stop(&self) {
        let Some(Running { stop, thread, .. }) = self.take() else { return };
        let _ = stop.send(());
        if !self.on_driver_thread() {
            let _ = thread.join();
        }
    }
}

impl Drop for DriverRuntime {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A runtime on its way to its thread. Dropped there unstarted (the spawn failed), it is shut
/// down without waiting: the caller may be inside another runtime, where dropping one panics.
struct NotStarted(Option<Runtime>);

impl Drop for NotStarted {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs `future` to completion on this thread by parking it: for `Drop`, which may run inside a
/// runtime (where `block_on` panics) and must wait for something that another thread does.
///
/// `future` must not need this thread's runtime to make progress.
pub(crate) fn wait_here<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    // Outside tokio's budget: an exhausted one would make every poll pending until this task
    // yields to its scheduler, which it never does while it waits here.
    let mut future = pin!(tokio::task::unconstrained(future));
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}
