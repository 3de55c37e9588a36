//! Encoding a value onto the end of a buffer that is reused.

use serde::Serialize;

/// Appends `value`'s postcard encoding to `out`, the counterpart of [`decode_value`].
///
/// A byte slice (`serde_bytes`, `String`) is appended as one copy; postcard's own `to_extend`
/// copies it a byte at a time, several times slower for large values.
///
/// ```
/// let mut out = vec![0xff];
/// polyloop_wire::encode_value(&(7u64, "x"), &mut out).unwrap();
/// assert_eq!(out, [0xff, 7, 1, b'x']);
/// ```
///
/// [`decode_value`]: crate::decode_value
pub fn encode_value<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> postcard::Result<()> {
    postcard::serialize_with_flavor(value, Append(out))
}

/// A postcard flavor that appends to a borrowed `Vec` in place.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() <= 16 {
            // A varint or a short string, most of what is appended: pushes cost less than a
            // call to `memcpy` (which `extend` of a few bytes compiles to).
            self.0.reserve(data.len());
            for &byte in data {
                self.0.push(byte);
            }
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn appends_what_postcard_encodes() {
        let value =
            (u64::MAX, vec![String::from("polyloop"); 3], serde_bytes::ByteBuf::from([9; 300]));
        let mut out = vec![1, 2];
        super::encode_value(&value, &mut out).unwrap();
        assert_eq!(out[..2], [1, 2]);
        assert_eq!(out[2..], postcard::to_allocvec(&value).unwrap());
    }
}
