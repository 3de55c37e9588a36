//! Catching a task's panic, with its message and location, without printing it in the child.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

thread_local! {
    /// Set while a task is being polled: its panics are reported to the parent, not printed.
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    /// Where the last task panic happened, recorded by the hook for [`CatchUnwind`].
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs a panic hook that records the location of task panics and stays silent about them,
/// and defers to the previous hook for every other panic.
pub(crate) fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_TASK.with(Cell::get) {
                let location =
                    info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                LOCATION.with(|cell| *cell.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}

pin_project_lite::pin_project! {
    /// Polls a future inside `catch_unwind`, turning a panic into `Err(message)`.
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F> CatchUnwind<F> {
    pub(crate) fn new(inner: F) -> Self {
        CatchUnwind { inner }
    }

    pub(crate) fn get_ref(&self) -> &F {
        &self.inner
    }

    pub(crate) fn into_inner(self) -> F {
        self.inner
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        catch_poll(self.project().inner, cx)
    }
}

/// Polls `future` once as [`CatchUnwind`] does: a panic is `Err(message)`.
pub(crate) fn catch_poll<F: Future + ?Sized>(
    future: Pin<&mut F>,
    cx: &mut Context<'_>,
) -> Poll<Result<F::Output, String>> {
    let was_in_task = IN_TASK.with(|flag| flag.replace(true));
    let polled = catch_unwind(AssertUnwindSafe(|| future.poll(cx)));
    IN_TASK.with(|flag| flag.set(was_in_task));
    match polled {
        Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(payload) => {
            let location = LOCATION.with(|cell| cell.borrow_mut().take());
            Poll::Ready(Err(panic_message(&*payload, location)))
        }
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send), location: Option<String>) -> String {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    };
    match location {
        Some(location) => format!("{message} (at {location})"),
        None => message,
    }
}
