//! `Slice<B>`: a window `begin..end` over an owned buffer, so one allocation can be read into or
//! written from in parts.
//!
//! A slice owns its buffer like any other [`IoBuf`], so it can be lent to an op and given back;
//! [`Slice::into_inner`] returns the whole buffer. Made by [`IoBuf::slice`].

use std::ops::{Bound, RangeBounds};

use super::{IoBuf, IoBufMut};

/// Bytes `begin..end` of an owned buffer `B`, lent to ops as a buffer of its own.
///
/// As an [`IoBuf`], the slice's initialised bytes are those of `B` that fall inside the
/// window (a write sends them); as an [`IoBufMut`], a read fills the window after them, never
/// past `end`. Offsets are in bytes from the start of `B`.
///
/// # Examples
/// ```
/// use corio::io::buf::IoBuf;
/// let slice = b"hello world".to_vec().slice(6..);
/// assert_eq!((slice.begin(), slice.end(), slice.bytes_init()), (6, 11, 5));
/// assert_eq!(slice.into_inner(), b"hello world");
/// ```
#[derive(Debug)]
pub struct Slice<B> {
    buf: B,
    begin: usize,
    end: usize,
}

impl<B: IoBuf> Slice<B> {
    /// Bytes `range` of `buf`; see [`IoBuf::slice`].
    ///
    /// # Panics
    /// If the range ends before it begins, or past `buf.bytes_total()`.
    pub(crate) fn new(buf: B, range: impl RangeBounds<usize>) -> Slice<B> {
        let total = buf.bytes_total();
        let begin = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n.checked_add(1).expect("slice start overflows usize"),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n.checked_add(1).expect("slice end overflows usize"),
            Bound::Excluded(&n) => n,
            Bound::Unbounded => total,
        };
        assert!(begin <= end, "slice {begin}..{end} ends before it begins");
        assert!(
            end <= total,
            "slice {begin}..{end} is past the capacity {total}"
        );
        Slice { buf, begin, end }
    }
}

impl<B> Slice<B> {
    /// Offset in bytes of the slice's first byte in the underlying buffer.
    pub fn begin(&self) -> usize {
        self.begin
    }

    /// Offset in bytes just past the slice's last byte in the underlying buffer.
    pub fn end(&self) -> usize {
        self.end
    }

    /// The whole underlying buffer.
    pub fn get_ref(&self) -> &B {
        &self.buf
    }

    /// The whole underlying buffer, mutably.
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.buf
    }

    /// Gives the whole underlying buffer back, with every byte a read put into the window
    /// counted as initialised.
    pub fn into_inner(self) -> B {
        self.buf
    }
}

// SAFETY: `begin <= end <= bytes_total` (checked in `new`, and `B`'s capacity cannot change
// while the slice owns it), so the pointer stays inside `B`'s stable storage; the initialised
// count is `B`'s initialised bytes within the window.
unsafe impl<B: IoBuf> IoBuf for Slice<B> {
    fn stable_ptr(&self) -> *const u8 {
        self.buf.stable_ptr().wrapping_add(self.begin)
    }

    fn bytes_init(&self) -> usize {
        self.buf.bytes_init().clamp(self.begin, self.end) - self.begin
    }

    fn bytes_total(&self) -> usize {
        self.end - self.begin
    }
}

// SAFETY: as for `IoBuf`; `set_init` only marks bytes of `B` initialised after making sure
// every byte before them is (see below).
unsafe impl<B: IoBufMut> IoBufMut for Slice<B> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.buf.stable_mut_ptr().wrapping_add(self.begin)
    }

    /// Marks the first `len` bytes of the window initialised. If the window starts past `B`'s
    /// initialised length, the gap between them is zeroed first: `B` counts its initialised
    /// bytes as one prefix, and the gap would otherwise be counted without being written.
    /// # Safety
    /// As [`IoBufMut::set_init`]: the first `len` bytes were initialised.
    unsafe fn set_init(&mut self, len: usize) {
        let init = self.buf.bytes_init();
        if len > 0 && init < self.begin {
            let gap = self.buf.stable_mut_ptr().wrapping_add(init);
            // SAFETY: `init < begin <= bytes_total`, so the gap lies within `B`'s writable
            // storage, which `&mut self` lets us write.
            unsafe { gap.write_bytes(0, self.begin - init) };
        }
        // SAFETY: the caller initialised window bytes `0..len` (B's `begin..begin + len`), and
        // bytes `0..begin` of `B` were initialised already or zeroed above.
        unsafe { self.buf.set_init(self.begin + len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_only_its_own_initialised_bytes() {
        let buf = b"0123456789".to_vec();
        let s = buf.slice(2..5);
        assert_eq!((s.bytes_init(), s.bytes_total()), (3, 3));
        let s = s.into_inner().slice(..=3);
        assert_eq!((s.begin(), s.end(), s.bytes_init()), (0, 4, 4));
        let mut buf = Vec::with_capacity(16);
        buf.extend_from_slice(b"0123");
        let s = buf.slice(2..8);
        assert_eq!((s.bytes_init(), s.bytes_total()), (2, 6));
        // SAFETY: the pointer is inside the Vec's allocation, `begin` bytes in.
        assert_eq!(s.stable_ptr(), unsafe { s.get_ref().as_ptr().add(2) });
    }

    #[test]
    fn a_read_into_a_window_past_the_initialised_part_zeroes_the_gap() {
        let mut buf = Vec::with_capacity(16);
        buf.extend_from_slice(b"ab");
        let mut s = buf.slice(4..8);
        assert_eq!(s.bytes_init(), 0);
        // SAFETY: writes 3 bytes at the start of the window, inside the Vec's capacity, then
        // marks them initialised.
        unsafe {
            s.stable_mut_ptr()
                .copy_from_nonoverlapping(b"xyz".as_ptr(), 3);
            s.set_init(3);
        }
        assert_eq!(s.bytes_init(), 3);
        assert_eq!(s.into_inner(), b"ab\0\0xyz");
    }

    #[test]
    fn a_read_into_a_window_extends_the_buffer_in_place() {
        let mut s = Vec::with_capacity(8).slice(..4);
        // SAFETY: writes within the window, then marks those bytes initialised.
        unsafe {
            s.stable_mut_ptr().write(7);
            s.set_init(1);
        }
        assert_eq!(s.into_inner(), [7]);
    }

    #[test]
    #[should_panic(expected = "past the capacity")]
    fn a_window_past_the_capacity_panics() {
        let _ = b"abc".to_vec().into_boxed_slice().slice(1..4);
    }

    #[test]
    #[should_panic(expected = "ends before it begins")]
    #[allow(clippy::reversed_empty_ranges)] // the reversed range is what is tested
    fn a_reversed_window_panics() {
        let _ = Vec::<u8>::with_capacity(8).slice(3..2);
    }
}
