//! Which attempt the running task is: 1 unless the parent says it is a retry.
//!
//! A retried task's future is wrapped in [`Retried`], which sets a thread-local for each of its
//! polls; a first attempt is not wrapped, so it costs nothing.

use std::any::Any;
use std::cell::Cell;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::registry::{Failure, RunningTask, TaskFuture};

thread_local! {
    /// The attempt of the task being polled on this thread; 0 while no retried task is.
    static ATTEMPT: Cell<u32> = const { Cell::new(0) };
}

/// Which attempt of the task this is: 1 the first time it runs, 2 when it runs again because
/// the worker that ran it was lost (under the pool's `retries` setting), and so on. A task can
/// log it, or make a retried step safe to repeat. 1 outside a retried task, e.g. when a task is
/// run in the parent with `task::call`.
///
/// It is read in the task's own future: a future the task spawns with `tokio::spawn` runs
/// apart from it and sees 1.
///
/// ```
/// // In a task's body (`polyloop::attempt` through the facade):
/// if polyloop_child::attempt() > 1 {
///     eprintln!("running again after a lost worker");
/// }
/// # assert_eq!(polyloop_child::attempt(), 1);
/// ```
pub fn attempt() -> u32 {
    ATTEMPT.with(Cell::get).max(1)
}

/// Sets [`ATTEMPT`] for as long as it lives, then puts back what was there.
struct Scope(u32);

impl Scope {
    fn enter(attempt: u32) -> Scope {
        Scope(ATTEMPT.replace(attempt))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        ATTEMPT.set(self.0);
    }
}

/// A retried task: its polls see its attempt.
struct Retried {
    attempt: u32,
    inner: TaskFuture,
}

/// `future`, which runs for the `attempt`-th time; a first attempt is left as it is.
pub(crate) fn with_attempt(future: TaskFuture, attempt: u32) -> TaskFuture {
    if attempt <= 1 {
        return future;
    }
    Box::pin(Retried { attempt, inner: future })
}

impl RunningTask for Retried {
    fn poll_run(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        let this = self.get_mut();
        let _scope = Scope::enter(this.attempt);
        this.inner.as_mut().poll_run(cx)
    }

    fn encoded_len(&self) -> Result<usize, String> {
        self.inner.encoded_len()
    }

    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), String> {
        self.inner.encode_into(out)
    }

    fn take_output(self: Pin<&mut Self>) -> Option<Box<dyn Any + Send>> {
        self.get_mut().inner.as_mut().take_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Reads;

    impl RunningTask for Reads {
        fn poll_run(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Failure>> {
            assert_eq!(attempt(), 3);
            Poll::Ready(Ok(()))
        }

        fn encoded_len(&self) -> Result<usize, String> {
            Ok(0)
        }

        fn encode_into(&self, _: &mut Vec<u8>) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn a_retried_task_sees_its_attempt_and_nothing_else_does() {
        let mut future = with_attempt(Box::pin(Reads), 3);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(future.as_mut().poll_run(&mut cx).is_ready());
        assert_eq!(attempt(), 1);
    }
}
