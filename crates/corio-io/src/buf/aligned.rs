//! `AlignedBuf`: a fixed-capacity heap buffer whose start is aligned to a chosen power of two,
//! as `O_DIRECT` file I/O requires.
//!
//! `O_DIRECT` reads and writes bypass the page cache, so the kernel demands that the buffer
//! address, the length and the file offset be multiples of the device's logical block size
//! (4096 bytes covers every common device). A `Vec<u8>` is only 1-aligned; this buffer is
//! allocated with the alignment asked for and freed with the same `Layout`.

use std::alloc::{self, Layout};
use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use super::{IoBuf, IoBufMut};

/// A heap buffer of fixed capacity whose first byte is aligned to `align` bytes.
///
/// Its length counts the initialised bytes, which a write sends and [`Deref`] shows; a read
/// fills the rest, up to the capacity. The capacity never changes.
///
/// # Examples
/// ```
/// use corio::io::buf::AlignedBuf;
/// let mut buf = AlignedBuf::with_capacity(8192);
/// assert_eq!(buf.as_ptr() as usize % 4096, 0);
/// buf.extend_from_slice(b"block");
/// assert_eq!((&buf[..], buf.capacity()), (&b"block"[..], 8192));
/// ```
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

impl AlignedBuf {
    /// The alignment of [`AlignedBuf::with_capacity`]: 4096 bytes, enough for `O_DIRECT` on
    /// devices with logical blocks of up to 4 KiB.
    pub const DEFAULT_ALIGN: usize = 4096;

    /// An empty buffer of `capacity` bytes whose start is a multiple of `align` bytes.
    ///
    /// # Errors
    /// `InvalidInput` if `align` is not a power of two, or if `capacity` rounded up to `align`
    /// exceeds `isize::MAX`; `OutOfMemory` if the allocator has no room.
    ///
    /// # Examples
    /// ```
    /// use corio::io::buf::AlignedBuf;
    /// let buf = AlignedBuf::new(1024, 512)?;
    /// assert_eq!((buf.as_ptr() as usize % 512, buf.capacity()), (0, 1024));
    /// assert!(AlignedBuf::new(1024, 500).is_err());
    /// # std::io::Result::Ok(())
    /// ```
    pub fn new(capacity: usize, align: usize) -> io::Result<AlignedBuf> {
        let layout = Layout::from_size_align(capacity, align).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad buffer layout: {capacity} bytes aligned to {align} (a power of two?)"),
            )
        })?;
        let ptr = if capacity == 0 {
            // No allocation; an aligned dangling pointer is never read or written.
            NonNull::new(std::ptr::without_provenance_mut::<u8>(align))
        } else {
            // SAFETY: the layout's size is non-zero, as `alloc` requires.
            NonNull::new(unsafe { alloc::alloc(layout) })
        };
        let ptr = ptr.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("cannot allocate {capacity} bytes aligned to {align}"),
            )
        })?;
        Ok(AlignedBuf {
            ptr,
            len: 0,
            layout,
        })
    }

    /// An empty buffer of `capacity` bytes aligned to [`DEFAULT_ALIGN`](Self::DEFAULT_ALIGN)
    /// (4096) bytes.
    ///
    /// # Panics
    /// If `capacity` rounded up to 4096 exceeds `isize::MAX`, or the allocation fails (as
    /// `Vec::with_capacity` does); use [`AlignedBuf::new`] to get an error instead.
    pub fn with_capacity(capacity: usize) -> AlignedBuf {
        AlignedBuf::new(capacity, Self::DEFAULT_ALIGN).unwrap_or_else(|err| panic!("{err}"))
    }

    /// The number of initialised bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is initialised.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.layout.size()
    }

    /// The alignment in bytes of the buffer's start.
    pub fn align(&self) -> usize {
        self.layout.align()
    }

    /// Sets the length to 0; the capacity stays.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Shortens the length to `len` bytes; does nothing if it is not longer.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Appends `data` after the initialised bytes.
    ///
    /// # Panics
    /// If `data` does not fit in the spare capacity (the buffer never grows).
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        let spare = self.capacity() - self.len;
        assert!(
            data.len() <= spare,
            "{} bytes do not fit in the {spare} spare bytes of an AlignedBuf",
            data.len()
        );
        // SAFETY: `len + data.len() <= capacity`, so the copy stays inside the allocation,
        // which `data` (a shared borrow) cannot overlap while we hold `&mut self`.
        unsafe {
            let dst = self.ptr.as_ptr().add(self.len);
            dst.copy_from_nonoverlapping(data.as_ptr(), data.len());
        }
        self.len += data.len();
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.layout.size() != 0 {
            // SAFETY: `ptr` came from `alloc` with this very layout and is freed only here.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
        }
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialised, and `ptr` is non-null and aligned.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only borrow.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .field("align", &self.align())
            .finish()
    }
}

// SAFETY: the buffer uniquely owns its allocation, like a `Vec<u8>`; nothing is shared.
unsafe impl Send for AlignedBuf {}
// SAFETY: `&AlignedBuf` only reads; writes need `&mut`.
unsafe impl Sync for AlignedBuf {}

// SAFETY: the storage is on the heap and never moves or reallocates; `len` bytes of it are
// initialised.
unsafe impl IoBuf for AlignedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.len
    }

    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: as for `IoBuf`; all `capacity` bytes are writable.
unsafe impl IoBufMut for AlignedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// # Safety
    /// As [`IoBufMut::set_init`]: the first `len` bytes were initialised.
    unsafe fn set_init(&mut self, len: usize) {
        self.len = self.len.max(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_is_aligned_and_the_length_tracks_initialised_bytes() {
        for align in [1, 512, 4096, 1 << 16] {
            let mut buf = AlignedBuf::new(3 * align, align).unwrap();
            assert_eq!(buf.as_ptr() as usize % align, 0, "align {align}");
            assert_eq!(
                (buf.len(), buf.capacity(), buf.align()),
                (0, 3 * align, align)
            );
            buf.extend_from_slice(&[7; 3]);
            buf[0] = 1;
            assert_eq!(&buf[..], [1, 7, 7]);
            buf.truncate(1);
            assert_eq!(&buf[..], [1]);
            buf.clear();
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn reads_fill_up_to_the_capacity() {
        let mut buf = AlignedBuf::with_capacity(4096);
        // SAFETY: writes within the capacity, then marks those bytes initialised.
        unsafe {
            buf.stable_mut_ptr().write_bytes(9, 4096);
            buf.set_init(4096);
        }
        assert_eq!((buf.bytes_init(), buf.bytes_total()), (4096, 4096));
        assert!(buf.iter().all(|&b| b == 9));
    }

    #[test]
    fn a_bad_alignment_is_an_error_and_zero_capacity_allocates_nothing() {
        let err = AlignedBuf::new(4096, 3000).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(AlignedBuf::new(usize::MAX, 4096).is_err());
        let empty = AlignedBuf::new(0, 4096).unwrap();
        assert_eq!((empty.len(), empty.capacity(), &empty[..]), (0, 0, &[][..]));
        assert_eq!(empty.as_ptr() as usize % 4096, 0);
    }

    #[test]
    #[should_panic(expected = "do not fit")]
    fn overfilling_panics() {
        AlignedBuf::new(2, 2).unwrap().extend_from_slice(b"abc");
    }
}
