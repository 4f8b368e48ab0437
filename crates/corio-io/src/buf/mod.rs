//! Buffers the kernel may read from or write into while an op is in flight.
//!
//! I/O in corio takes buffers by value and gives them back with the result, so dropping a
//! future can never leave the kernel writing into freed memory (see corio-rt's driver
//! invariant I1). [`IoBuf`] is a buffer the kernel reads (writes to a socket or file);
//! [`IoBufMut`] one it fills, starting at its initialised length and up to its capacity.

mod aligned;
mod fixed;
mod ring;
mod shared;
mod slice;

pub use aligned::AlignedBuf;
pub use fixed::{FixedBuf, FixedBufPool};
pub use ring::{BufRing, RingBuf};
pub use slice::Slice;

/// A buffer whose bytes `[0, bytes_init)` the kernel may read during an op.
///
/// # Safety
/// `stable_ptr` must point at `bytes_init` initialised bytes that stay at that address, and
/// stay valid, for as long as the value lives, even when the value itself is moved: the
/// storage is on the heap or static, never inside the value.
pub unsafe trait IoBuf: Unpin + 'static {
    /// The start of the buffer.
    fn stable_ptr(&self) -> *const u8;
    /// How many bytes are initialised (what a write sends).
    fn bytes_init(&self) -> usize;
    /// The capacity in bytes.
    fn bytes_total(&self) -> usize;

    /// Bytes `range` of this buffer (offsets from its start, within its capacity) as a buffer
    /// of its own; [`Slice::into_inner`] gives the whole buffer back.
    ///
    /// # Panics
    /// If the range ends before it begins or past [`bytes_total`](IoBuf::bytes_total).
    ///
    /// # Examples
    /// ```
    /// use corio::io::buf::IoBuf;
    /// let tail = vec![0u8; 10].into_boxed_slice().slice(2..);
    /// assert_eq!((tail.bytes_init(), tail.bytes_total()), (8, 8));
    /// ```
    fn slice(self, range: impl std::ops::RangeBounds<usize>) -> Slice<Self>
    where
        Self: Sized,
    {
        Slice::new(self, range)
    }
}

/// A buffer the kernel may fill, from `bytes_init` up to `bytes_total`.
///
/// # Safety
/// As [`IoBuf`], and `stable_mut_ptr` points at `bytes_total` bytes of writable storage with
/// the same stability guarantees.
pub unsafe trait IoBufMut: IoBuf {
    /// The start of the buffer, for writing.
    fn stable_mut_ptr(&mut self) -> *mut u8;

    /// Marks the first `len` bytes as initialised.
    ///
    /// # Safety
    /// The first `len` bytes (`len <= bytes_total()`) must have been initialised.
    unsafe fn set_init(&mut self, len: usize);
}

// SAFETY: a Vec's storage is on the heap and moves only when it reallocates, which needs
// `&mut`, which the op's ownership of the Vec excludes while in flight.
unsafe impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: as for IoBuf; `set_len` within capacity after the kernel initialised the bytes.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    /// # Safety
    /// As [`IoBufMut::set_init`]: the first `len` bytes were initialised.
    unsafe fn set_init(&mut self, len: usize) {
        if len > self.len() {
            // SAFETY: the caller promises `len <= capacity` bytes are initialised.
            unsafe { self.set_len(len) };
        }
    }
}

// SAFETY: a boxed slice's storage is on the heap and never moves.
unsafe impl IoBuf for Box<[u8]> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: as above; a boxed slice is always fully initialised.
unsafe impl IoBufMut for Box<[u8]> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    /// # Safety
    /// As [`IoBufMut::set_init`]: the first `len` bytes were initialised.
    unsafe fn set_init(&mut self, _len: usize) {}
}

// SAFETY: static data never moves and is never freed.
unsafe impl IoBuf for &'static [u8] {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: static data never moves and is never freed.
unsafe impl IoBuf for &'static str {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

/// The spare capacity of `buf` (from its initialised length to its capacity) as the address
/// and length a read SQE takes.
pub(crate) fn spare_of<B: IoBufMut>(buf: &mut B) -> (*mut u8, u32) {
    let init = buf.bytes_init();
    let len = sqe_len(buf.bytes_total() - init);
    // `wrapping_add` stays in bounds (`init <= bytes_total`) and needs no unsafe block.
    (buf.stable_mut_ptr().wrapping_add(init), len)
}

/// The initialised bytes of `buf` from `pos` on (clamped) as the address and length a write
/// SQE takes.
pub(crate) fn init_from<B: IoBuf>(buf: &B, pos: usize) -> (*const u8, u32) {
    let pos = pos.min(buf.bytes_init());
    (
        buf.stable_ptr().wrapping_add(pos),
        sqe_len(buf.bytes_init() - pos),
    )
}

/// Applies a read's CQE to `buf`: on success the `n` bytes the kernel wrote into its spare
/// capacity become initialised. Returns the CQE's result.
pub(crate) fn fill_from_cqe<B: IoBufMut>(
    buf: &mut B,
    cqe: &corio_rt::Cqe,
) -> std::io::Result<usize> {
    let res = cqe.bytes();
    if let Ok(n) = res {
        let init = buf.bytes_init() + n;
        // SAFETY: the kernel initialised exactly `n` bytes after the old initialised length,
        // where the SQE built by `spare_of` pointed it.
        unsafe { buf.set_init(init) };
    }
    res
}

/// Copies as much of `bytes` as fits into the spare capacity of `buf`, which grows by that
/// count; returns it.
pub(crate) fn fill_from_slice<B: IoBufMut>(buf: &mut B, bytes: &[u8]) -> usize {
    let init = buf.bytes_init();
    let n = bytes.len().min(buf.bytes_total() - init);
    // SAFETY: `stable_mut_ptr() + init .. + n` is spare capacity of `buf` (n fits by the min
    // above), and `bytes` is a different allocation (it is borrowed while `buf` is mutable).
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.stable_mut_ptr().add(init), n);
        buf.set_init(init + n);
    }
    n
}

/// The initialised bytes of `buf` that a read just added: `n` bytes ending at its initialised
/// length.
pub(crate) fn last_filled<B: IoBuf>(buf: &B, n: usize) -> &[u8] {
    let init = buf.bytes_init();
    let n = n.min(init);
    // SAFETY: the first `init` bytes of `buf` are initialised, and `init - n .. init` lies in
    // them; the slice borrows `buf`.
    unsafe { std::slice::from_raw_parts(buf.stable_ptr().add(init - n), n) }
}

/// Length of an io_uring transfer: an SQE carries at most `u32::MAX` bytes; a longer buffer is
/// transferred in parts (a short read or write, which callers already handle).
pub(crate) fn sqe_len(len: usize) -> u32 {
    len.min(u32::MAX as usize) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_reads_fill_spare_capacity() {
        let mut v = Vec::with_capacity(8);
        v.push(1u8);
        assert_eq!((v.bytes_init(), v.bytes_total() >= 8), (1, true));
        // SAFETY: writes within capacity, then marks those bytes initialised.
        unsafe {
            v.stable_mut_ptr().add(1).write(2);
            v.set_init(2);
        }
        assert_eq!(v, [1, 2]);
        assert_eq!(sqe_len(usize::MAX), u32::MAX);
    }
}
