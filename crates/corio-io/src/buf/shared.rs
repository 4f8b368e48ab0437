//! Shared, immutable byte buffers as [`IoBuf`]s: `Arc<[u8]>`, `Rc<[u8]>`, `Arc<Vec<u8>>` and
//! `bytes::Bytes`, so one payload can be written to many sockets (a broadcast, a cached
//! response) without a copy per write; and `bytes::BytesMut` as an [`IoBufMut`].
//!
//! Their bytes live on the heap (or in static memory for `Bytes::from_static`) and never move
//! or change while any clone lives, and the op holds a clone until its final CQE.

use std::rc::Rc;
use std::sync::Arc;

use super::{IoBuf, IoBufMut};

/// `IoBuf` for a shared, immutable byte container whose bytes are all initialised.
macro_rules! shared_io_buf {
    ($($ty:ty: $why:literal;)+) => {$(
        // SAFETY: see the string next to the type in the invocation below.
        #[doc = $why]
        unsafe impl IoBuf for $ty {
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
    )+};
}

shared_io_buf! {
    Arc<[u8]>: "A heap slice shared by every clone: it never moves and is never written while one lives.";
    Rc<[u8]>: "As `Arc<[u8]>`, on one core.";
    Arc<Vec<u8>>: "A Vec behind an Arc can only be read, so it never reallocates while a clone lives.";
    bytes::Bytes: "Heap or static memory shared by its clones, immutable while any lives; moving the handle does not move the bytes.";
}

// SAFETY: a `BytesMut` owns its heap storage uniquely; it reallocates only through `&mut`
// methods that reserve, which the op's ownership excludes while in flight.
unsafe impl IoBuf for bytes::BytesMut {
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

// SAFETY: as above; `set_len` is called only with bytes the kernel (or a copy) initialised.
unsafe impl IoBufMut for bytes::BytesMut {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    /// # Safety
    /// As [`IoBufMut::set_init`]: the first `len` bytes were initialised.
    // SAFETY: only moves the length up to bytes the caller vouches for (see below).
    unsafe fn set_init(&mut self, len: usize) {
        if len > self.len() {
            // SAFETY: the caller guarantees the first `len` bytes are initialised, and
            // `len <= capacity` by IoBufMut's contract.
            unsafe { self.set_len(len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_buffers_expose_their_bytes() {
        let arc: Arc<[u8]> = Arc::from(&b"abc"[..]);
        assert_eq!((arc.bytes_init(), arc.bytes_total()), (3, 3));
        let bytes = bytes::Bytes::from_static(b"hello");
        assert_eq!(
            (bytes.bytes_init(), bytes.stable_ptr()),
            (5, bytes.as_ptr())
        );
        let mut spare = bytes::BytesMut::with_capacity(16);
        assert_eq!((spare.bytes_init(), spare.bytes_total() >= 16), (0, true));
        assert!(!spare.stable_mut_ptr().is_null());
    }
}
