//! LEB128 varints exactly as postcard writes them, for the batch builders' hand-written headers.

/// Appends `value` as a postcard (LEB128) varint.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_postcard() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut ours = Vec::new();
            push_u64(&mut ours, v);
            assert_eq!(ours, postcard::to_allocvec(&v).unwrap(), "value {v}");
        }
    }
}
