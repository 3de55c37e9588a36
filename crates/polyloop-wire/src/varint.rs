//! LEB128 varints exactly as postcard writes them, for the batch builders' hand-written headers,
//! and a reader for the hot path's length-prefixed byte strings.

/// Appends `value` as a postcard (LEB128) varint.
#[inline]
pub(crate) fn push_u64(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Splits a length-prefixed byte string (a varint length, then that many bytes, as postcard
/// writes `&[u8]`) off the front of `bytes`: `(the string, what follows)`. `None` if `bytes` do
/// not start with one; the caller then asks postcard, so that errors read the same everywhere.
#[inline(always)]
pub(crate) fn take_bytes(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = take_u64(bytes)?;
    let len = usize::try_from(len).ok()?;
    (len <= rest.len()).then(|| rest.split_at(len))
}

/// Splits a varint off the front of `bytes`. `None` if it is cut short or does not fit in 64
/// bits.
#[inline(always)]
fn take_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    // Most lengths on the hot path are under 128: one byte.
    if let [first @ 0..=0x7f, rest @ ..] = bytes {
        return Some((u64::from(*first), rest));
    }
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return None;
        }
        value |= bits << (7 * i);
        if byte < 0x80 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_strings_read_as_postcard_reads_them() {
        for len in [0usize, 1, 127, 128, 300, 20_000] {
            let string = vec![7u8; len];
            let mut bytes = postcard::to_allocvec(&serde_bytes::Bytes::new(&string)).unwrap();
            bytes.extend_from_slice(b"next");
            assert_eq!(take_bytes(&bytes), Some((&string[..], &b"next"[..])), "length {len}");
            for cut in 0..bytes.len() - 4 {
                assert_eq!(take_bytes(&bytes[..cut]), None, "{len} bytes cut at {cut}");
            }
        }
        for max in [u64::MAX, u32::MAX as u64] {
            let mut bytes = Vec::new();
            push_u64(&mut bytes, max);
            assert_eq!(take_u64(&bytes), Some((max, &[][..])));
        }
        // An eleventh byte, or a tenth above the top bit: too long for 64 bits.
        assert_eq!(take_u64(&[0xff; 11]), None);
        assert_eq!(take_u64(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]), None);
    }

    #[test]
    fn matches_postcard() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut ours = Vec::new();
            push_u64(&mut ours, v);
            assert_eq!(ours, postcard::to_allocvec(&v).unwrap(), "value {v}");
        }
    }
}
