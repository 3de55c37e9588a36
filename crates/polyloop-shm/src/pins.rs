//! Keeping shared values alive while the tasks that carry them are on their way.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use crate::region::Region;

thread_local! {
    /// The regions serialized on this thread since the innermost [`collect_pins`] began.
    static COLLECTING: RefCell<Option<Vec<Arc<Region>>>> = const { RefCell::new(None) };
}

/// The shared values a serialized task input refers to, kept alive while it is held. Cloning
/// is cheap; holding none costs nothing.
#[derive(Clone, Default)]
pub struct Pins(Option<Arc<Vec<Arc<Region>>>>);

impl fmt::Debug for Pins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pins({})", self.0.as_ref().map_or(0, |regions| regions.len()))
    }
}

impl Pins {
    /// Whether no shared value is pinned.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Pins `other`'s values too.
    pub fn extend(&mut self, other: Pins) {
        match (&mut self.0, other.0) {
            (_, None) => {}
            (mine @ None, theirs) => *mine = theirs,
            (Some(mine), Some(theirs)) => Arc::make_mut(mine).extend(theirs.iter().cloned()),
        }
    }
}

/// Runs `serialize` and returns, with its result, the shared values it serialized: keep the
/// [`Pins`] as long as the bytes may still be decoded by a worker.
///
/// ```
/// let data = polyloop_shm::SharedBytes::copy_from_slice(b"hello")?;
/// let (bytes, pins) = polyloop_shm::collect_pins(|| postcard::to_allocvec(&data));
/// drop(data);
/// // `bytes` still refer to live memory while `pins` is held.
/// assert!(bytes.is_ok());
/// # #[cfg(target_os = "linux")]
/// assert!(!pins.is_empty());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn collect_pins<R>(serialize: impl FnOnce() -> R) -> (R, Pins) {
    let mut collector = Collector::start();
    let result = serialize();
    (result, collector.take())
}

/// Collects the shared values serialized on this thread from [`Collector::start`] on, for
/// callers that serialize many values and split them into [`Pins`] as they go (see
/// [`collect_pins`] for one). Dropping it ends the collection and resumes the one it
/// interrupted, if any.
#[derive(Debug)]
pub struct Collector {
    outer: Option<Vec<Arc<Region>>>,
}

impl Collector {
    /// Begins collecting.
    pub fn start() -> Collector {
        Collector {
            outer: COLLECTING.with(|collecting| collecting.borrow_mut().replace(Vec::new())),
        }
    }

    /// The values serialized since the start or the last `take`.
    pub fn take(&mut self) -> Pins {
        let taken = COLLECTING.with(|collecting| {
            collecting.borrow_mut().as_mut().map(std::mem::take).unwrap_or_default()
        });
        if taken.is_empty() {
            return Pins(None);
        }
        // Nested collections: the outer one pins what this one did as well.
        if let Some(outer) = self.outer.as_mut() {
            outer.extend(taken.iter().cloned());
        }
        Pins(Some(Arc::new(taken)))
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        // Even if the serializing code panicked: what it pinned still goes to the outer one.
        drop(self.take());
        let outer = self.outer.take();
        COLLECTING.with(|collecting| *collecting.borrow_mut() = outer);
    }
}

/// Records that `region` was serialized, if a collection is running on this thread; returns
/// whether one is.
pub(crate) fn pin(region: &Arc<Region>) -> bool {
    COLLECTING.with(|collecting| match collecting.borrow_mut().as_mut() {
        Some(regions) => {
            // A map passes one value to every input: once is enough.
            if !regions.last().is_some_and(|last| Arc::ptr_eq(last, region)) {
                regions.push(Arc::clone(region));
            }
            true
        }
        None => false,
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::SharedBytes;

    #[test]
    fn nested_collections_pin_into_both_and_restore_the_outer() {
        let a = SharedBytes::copy_from_slice(b"a").unwrap();
        let b = SharedBytes::copy_from_slice(b"b").unwrap();
        let mut outer = Collector::start();
        let (_, inner) = collect_pins(|| postcard::to_allocvec(&[&a, &a, &a]).unwrap());
        assert_eq!(format!("{inner:?}"), "Pins(1)", "the same value, pinned once");
        postcard::to_allocvec(&b).unwrap();
        assert_eq!(format!("{:?}", outer.take()), "Pins(2)");
        assert!(outer.take().is_empty());
        drop(outer);
        assert!(!pin(&crate::region::create(crate::region::Kind::Bytes, 0, &[]).unwrap()));
    }
}
