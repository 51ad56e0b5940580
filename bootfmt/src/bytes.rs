//! Bounds-checked little-endian reads from byte slices.
//!
//! Every multi-byte read in this crate goes through these helpers. Each returns `None`
//! when the requested bytes are not all inside the slice (including when `offset + width`
//! overflows), so callers turn a short input into their own error instead of panicking.

/// Returns `len` bytes of `bytes` starting at `offset`, or `None` if any of them is
/// outside the slice.
pub(crate) fn slice(bytes: &[u8], offset: usize, len: usize) -> Option<&[u8]> {
    bytes.get(offset..offset.checked_add(len)?)
}

/// Like [`slice`], with 64-bit offset and length as found in file headers.
pub(crate) fn slice64(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    slice(
        bytes,
        usize::try_from(offset).ok()?,
        usize::try_from(len).ok()?,
    )
}

/// Reads `N` bytes at `offset` as an array.
fn array<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    slice(bytes, offset, N)?.try_into().ok()
}

/// Reads the byte at `offset`.
pub(crate) fn u8_at(bytes: &[u8], offset: usize) -> Option<u8> {
    bytes.get(offset).copied()
}

/// Reads a little-endian `u16` at `offset`.
pub(crate) fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    array(bytes, offset).map(u16::from_le_bytes)
}

/// Reads a little-endian `u32` at `offset`.
pub(crate) fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    array(bytes, offset).map(u32::from_le_bytes)
}

/// Reads a little-endian `u64` at `offset`.
pub(crate) fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    array(bytes, offset).map(u64::from_le_bytes)
}

/// Rounds `value` up to a multiple of `align` (a power of two), or `None` on overflow.
pub(crate) fn align_up(value: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two());
    let mask = align.checked_sub(1)?;
    Some(value.checked_add(mask)? & !mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_bounds() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(u8_at(&b, 8), Some(9));
        assert_eq!(u16_at(&b, 0), Some(0x0201));
        assert_eq!(u32_at(&b, 1), Some(0x0504_0302));
        assert_eq!(u64_at(&b, 1), Some(0x0908_0706_0504_0302));
        assert_eq!(slice(&b, 9, 0), Some(&[][..]));
    }

    #[test]
    fn reads_out_of_bounds_are_none() {
        let b = [0u8; 8];
        assert_eq!(u8_at(&b, 8), None);
        assert_eq!(u16_at(&b, 7), None);
        assert_eq!(u32_at(&b, 5), None);
        assert_eq!(u64_at(&b, 1), None);
        assert_eq!(u64_at(&b, usize::MAX), None);
        assert_eq!(slice(&b, usize::MAX, 2), None);
        assert_eq!(slice(&b, 10, 0), None);
        assert_eq!(slice64(&b, u64::MAX, 1), None);
        assert_eq!(slice64(&b, 0, u64::MAX), None);
    }

    #[test]
    fn align_up_checks_overflow() {
        assert_eq!(align_up(0, 4), Some(0));
        assert_eq!(align_up(5, 4), Some(8));
        assert_eq!(align_up(8, 4), Some(8));
        assert_eq!(align_up(usize::MAX, 4), None);
        assert_eq!(align_up(usize::MAX - 3, 4), Some(usize::MAX - 3));
    }
}
