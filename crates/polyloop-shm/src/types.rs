//! The shared values users hold: [`SharedBytes`] and [`SharedAtomics`].

use std::fmt;
use std::io;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pins::pin;
use crate::region::{self, Kind, Locator, Region};

/// Read-only bytes that every worker of a pool maps instead of receiving a copy: build one
/// once, then pass clones of it in as many tasks' inputs as you like. Each worker maps it the
/// first time a task brings it, and reads it in place from then on.
///
/// It derefs to `[u8]`; cloning it is an `Arc` clone. It serializes as where it is (a few bytes)
/// when the pool serializes a task's input, and as its bytes anywhere else (a task's output
/// created in a worker, a file): it always deserializes to the same bytes.
///
/// On Linux the bytes live in a sealed `memfd` that nobody can write or resize; elsewhere
/// `SharedBytes` holds them on the heap and travels as its bytes, as a `Vec<u8>` would.
///
/// ```
/// use polyloop_shm::SharedBytes;
///
/// let text = SharedBytes::copy_from_slice(b"the quick brown fox")?;
/// let words = text.split(|&b| b == b' ').count();
/// assert_eq!(words, 4);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct SharedBytes(Repr);

#[derive(Clone)]
enum Repr {
    Mapped(Arc<Region>),
    Heap(Arc<[u8]>),
}

impl SharedBytes {
    /// Copies `data` into new shared memory.
    ///
    /// # Errors
    /// What the system returns when it cannot create the memory (out of memory or
    /// descriptors); on systems without shared memory support, never.
    pub fn copy_from_slice(data: &[u8]) -> io::Result<SharedBytes> {
        match region::create(Kind::Bytes, data.len(), data) {
            Ok(region) => Ok(SharedBytes(Repr::Mapped(region))),
            Err(err) if err.kind() == io::ErrorKind::Unsupported => {
                Ok(SharedBytes(Repr::Heap(data.into())))
            }
            Err(err) => Err(err),
        }
    }

    /// Whether the bytes are in shared memory (they travel as where they are), rather than on
    /// this process's heap (they travel as bytes).
    pub fn is_shared(&self) -> bool {
        matches!(self.0, Repr::Mapped(_))
    }
}

impl Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Mapped(region) => region.bytes(),
            Repr::Heap(bytes) => bytes,
        }
    }
}

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBytes")
            .field("len", &self.len())
            .field("shared", &self.is_shared())
            .finish()
    }
}

impl PartialEq for SharedBytes {
    fn eq(&self, other: &SharedBytes) -> bool {
        **self == **other
    }
}

impl Eq for SharedBytes {}

/// How a value refers to shared memory on the wire.
#[derive(Deserialize)]
#[serde(rename = "SharedBytes")]
enum BytesWire {
    /// The bytes themselves.
    Inline(serde_bytes::ByteBuf),
    /// Where they are.
    Mapped(Locator),
}

/// Whether `region` travels as where it is: when the pool serializes a task's input (which
/// keeps it alive until the task is done), or when it belongs to another process (its creator
/// keeps it alive by the same rule).
fn travels_mapped(region: &Arc<Region>) -> bool {
    pin(region) || !region.is_own()
}

impl Serialize for SharedBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Mapped(region) if travels_mapped(region) => {
                serializer.serialize_newtype_variant("SharedBytes", 1, "Mapped", &region.locator())
            }
            _ => serializer.serialize_newtype_variant(
                "SharedBytes",
                0,
                "Inline",
                serde_bytes::Bytes::new(self),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for SharedBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SharedBytes, D::Error> {
        Ok(SharedBytes(match BytesWire::deserialize(deserializer)? {
            BytesWire::Inline(bytes) => Repr::Heap(bytes.into_vec().into()),
            BytesWire::Mapped(at) => {
                Repr::Mapped(region::find(Kind::Bytes, at).map_err(D::Error::custom)?)
            }
        }))
    }
}

/// An array of `AtomicU64` in memory every worker of a pool maps: pass it in tasks' inputs,
/// and what a task in any worker does to it, every process sees. The equivalent of Python's
/// `multiprocessing.Value` and `Array`, for counters, flags and histograms.
///
/// It derefs to `[AtomicU64]`, zeroed when created; cloning it is an `Arc` clone. It only
/// travels in a pool's task inputs (or back, in an output, to the process that created it):
/// serializing it anywhere else is an error.
///
/// Linux only: elsewhere [`SharedAtomics::new`] returns an `Unsupported` error.
///
/// ```
/// use std::sync::atomic::Ordering;
/// # #[cfg(target_os = "linux")] {
/// let counters = polyloop_shm::SharedAtomics::new(4)?;
/// counters[1].fetch_add(1, Ordering::Relaxed);
/// assert_eq!(counters[1].load(Ordering::Relaxed), 1);
/// # }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct SharedAtomics(Arc<Region>);

impl SharedAtomics {
    /// `len` new atomics, all zero.
    ///
    /// # Errors
    /// `Unsupported` where shared memory is not supported (anywhere but Linux), or what the
    /// system returns when it cannot create the memory.
    pub fn new(len: usize) -> io::Result<SharedAtomics> {
        region::create(Kind::Atomics, len, &[]).map(SharedAtomics)
    }
}

impl Deref for SharedAtomics {
    type Target = [AtomicU64];

    fn deref(&self) -> &[AtomicU64] {
        self.0.atomics()
    }
}

impl fmt::Debug for SharedAtomics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for SharedAtomics {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !travels_mapped(&self.0) {
            return Err(S::Error::custom(
                "a SharedAtomics travels only in a pool's task inputs, or back to its creator",
            ));
        }
        self.0.locator().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedAtomics {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SharedAtomics, D::Error> {
        let at = Locator::deserialize(deserializer)?;
        region::find(Kind::Atomics, at).map(SharedAtomics).map_err(D::Error::custom)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::collect_pins;

    #[test]
    fn bytes_travel_as_where_they_are_inside_a_collection_and_as_bytes_outside() {
        let data = SharedBytes::copy_from_slice(&[7; 10_000]).unwrap();
        assert!(data.is_shared());
        let (mapped, pins) = collect_pins(|| postcard::to_allocvec(&data).unwrap());
        assert!(mapped.len() < 32, "{} bytes", mapped.len());
        assert!(!pins.is_empty());
        let inline = postcard::to_allocvec(&data).unwrap();
        assert!(inline.len() > 10_000);
        for wire in [&mapped, &inline] {
            let back: SharedBytes = postcard::from_bytes(wire).unwrap();
            assert_eq!(back, data);
        }
        let back: SharedBytes = postcard::from_bytes(&inline).unwrap();
        assert!(!back.is_shared());
        // Pinned, the memory outlives the value it was serialized from.
        drop(data);
        let back: SharedBytes = postcard::from_bytes(&mapped).unwrap();
        assert_eq!(&back[..3], [7, 7, 7]);
        drop((back, pins));
        let err = postcard::from_bytes::<SharedBytes>(&mapped).unwrap_err();
        assert!(matches!(err, postcard::Error::SerdeDeCustom), "{err}");
    }

    #[test]
    fn atomics_serialize_only_where_something_keeps_them_alive() {
        let counters = SharedAtomics::new(2).unwrap();
        assert!(postcard::to_allocvec(&counters).is_err());
        let (wire, _pins) = collect_pins(|| postcard::to_allocvec(&counters).unwrap());
        let back: SharedAtomics = postcard::from_bytes(&wire).unwrap();
        back[0].fetch_add(3, Ordering::Relaxed);
        assert_eq!(counters[0].load(Ordering::Relaxed), 3);
        assert!(postcard::from_bytes::<SharedBytes>(&wire).is_err());
    }

    #[test]
    fn empty_values_are_fine() {
        let empty = SharedBytes::copy_from_slice(&[]).unwrap();
        assert!(empty.is_empty());
        assert!(SharedAtomics::new(0).unwrap().is_empty());
    }
}
