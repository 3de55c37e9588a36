//! Small encoded values kept inline: most task inputs and outputs are a few bytes, and a heap
//! allocation each (freed on another thread) cost more than the task itself.

use std::ops::Deref;

/// Bytes this long or shorter need no allocation.
const INLINE: usize = 30;

/// Encoded bytes, inline when short.
#[derive(Clone)]
pub(crate) enum SmallBytes {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Vec<u8>),
}

impl SmallBytes {
    /// A copy of `bytes`.
    pub(crate) fn copy_from(bytes: &[u8]) -> Self {
        match bytes.len() {
            len @ 0..=INLINE => {
                let mut buf = [0; INLINE];
                buf[..len].copy_from_slice(bytes);
                SmallBytes::Inline { len: len as u8, buf }
            }
            _ => SmallBytes::Heap(bytes.to_vec()),
        }
    }

    /// Whether `len` bytes are kept inline.
    pub(crate) fn fits_inline(len: usize) -> bool {
        len <= INLINE
    }

    /// The postcard encoding of `value`.
    pub(crate) fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, postcard::Error> {
        let mut buf = [0; INLINE];
        match postcard::to_slice(value, &mut buf) {
            Ok(used) => {
                let len = used.len() as u8;
                Ok(SmallBytes::Inline { len, buf })
            }
            Err(postcard::Error::SerializeBufferFull) => {
                postcard::to_allocvec(value).map(SmallBytes::Heap)
            }
            Err(err) => Err(err),
        }
    }
}

impl Deref for SmallBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            SmallBytes::Inline { len, buf } => &buf[..*len as usize],
            SmallBytes::Heap(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for SmallBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_stay_inline_and_long_ones_do_not() {
        let short = SmallBytes::encode(&(7u64, "x")).unwrap();
        assert!(matches!(short, SmallBytes::Inline { .. }));
        assert_eq!(&*short, &postcard::to_allocvec(&(7u64, "x")).unwrap()[..]);
        let long = SmallBytes::encode(&"y".repeat(100)).unwrap();
        assert!(matches!(long, SmallBytes::Heap(_)));
        assert_eq!(&*long, &postcard::to_allocvec(&"y".repeat(100)).unwrap()[..]);
        assert_eq!(&*SmallBytes::copy_from(&[1, 2, 3]), &[1, 2, 3]);
        assert_eq!(SmallBytes::copy_from(&[9; 31]).len(), 31);
    }
}
