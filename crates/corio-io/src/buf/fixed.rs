//! Registered (fixed) buffers: a per-core pool of buffers registered once with the ring
//! (IORING_REGISTER_BUFFERS), so READ_FIXED and WRITE_FIXED skip mapping the pages on every op.
//!
//! # Invariants
//! - F1: the pool's memory stays allocated, and registered, until the last [`FixedBufPool`]
//!   handle and [`FixedBuf`] are gone (they share `Inner`); it is unregistered before it is
//!   freed.
//! - F2: a buffer index is either free in the pool or inside exactly one live `FixedBuf`.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::RefCell;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::{IoBuf, IoBufMut};

/// A pool of `count` registered buffers of `size` bytes on the current core.
///
/// A ring has one set of fixed buffers at a time, so a core has at most one live pool.
///
/// # Examples
/// ```
/// corio::block_on(async {
///     let pool = corio::io::buf::FixedBufPool::new(4, 4096).unwrap();
///     let mut buf = pool.try_get().unwrap();
///     buf.extend_from_slice(b"hello");
///     assert_eq!((&buf[..], pool.free()), (&b"hello"[..], 3));
/// });
/// ```
#[derive(Clone)]
pub struct FixedBufPool {
    inner: Rc<Inner>,
}

struct Inner {
    /// The ring (driver id) the buffers are registered with.
    ring_id: u64,
    memory: NonNull<u8>,
    layout: Layout,
    size: usize,
    free: RefCell<Vec<u16>>,
    waiters: RefCell<Vec<Waker>>,
}

impl FixedBufPool {
    /// Allocates `count` page-aligned buffers of `size` bytes and registers them.
    ///
    /// # Errors
    /// `InvalidInput` for a zero count or size; `EBUSY` if this core already has fixed
    /// buffers; `ENOMEM` past `RLIMIT_MEMLOCK`; `Unsupported` outside a corio core.
    pub fn new(count: u16, size: usize) -> io::Result<FixedBufPool> {
        if count == 0 || size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty fixed-buffer pool",
            ));
        }
        let total = size
            .checked_mul(count as usize)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let layout = Layout::from_size_align(total, 4096)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: the layout has a non-zero size.
        let memory = NonNull::new(unsafe { alloc_zeroed(layout) })
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let iovecs: Vec<libc::iovec> = (0..count as usize)
            .map(|i| libc::iovec {
                // SAFETY: `i < count`, inside the allocation.
                iov_base: unsafe { memory.as_ptr().add(i * size) }.cast(),
                iov_len: size,
            })
            .collect();
        // SAFETY: the memory stays allocated until after unregistration (F1).
        if let Err(err) = unsafe { corio_rt::register_buffers(&iovecs) } {
            // SAFETY: allocated above with this layout, never registered.
            unsafe { dealloc(memory.as_ptr(), layout) };
            return Err(err);
        }
        Ok(FixedBufPool {
            inner: Rc::new(Inner {
                ring_id: corio_rt::ring_id().unwrap_or(0),
                memory,
                layout,
                size,
                free: RefCell::new((0..count).rev().collect()),
                waiters: RefCell::new(Vec::new()),
            }),
        })
    }

    /// A free buffer (empty, `size` bytes of capacity), or `None` if all are in use.
    pub fn try_get(&self) -> Option<FixedBuf> {
        let index = self.inner.free.borrow_mut().pop()?;
        Some(FixedBuf {
            pool: self.inner.clone(),
            index,
            len: 0,
        })
    }

    /// A free buffer, waiting for one to be dropped if all are in use.
    pub async fn get(&self) -> FixedBuf {
        poll_fn(|cx| match self.try_get() {
            Some(buf) => Poll::Ready(buf),
            None => {
                self.inner.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Buffers not in use.
    pub fn free(&self) -> usize {
        self.inner.free.borrow().len()
    }
}

impl fmt::Debug for FixedBufPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedBufPool")
            .field("size", &self.inner.size)
            .field("free", &self.free())
            .finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // No FixedBuf is alive, so no fixed op is in flight (an op owns its FixedBuf). On
        // another ring (the original is gone) there is nothing to unregister.
        if corio_rt::ring_id() == Some(self.ring_id) {
            let _ = corio_rt::unregister_buffers();
        }
        // SAFETY: allocated in `new` with this layout; unregistered above (F1).
        unsafe { dealloc(self.memory.as_ptr(), self.layout) };
    }
}

/// One registered buffer from a [`FixedBufPool`]; dropping it returns it to the pool.
///
/// Derefs to its initialised bytes; an [`IoBuf`]/[`IoBufMut`] whose ops may use the fixed
/// opcodes through [`buf_index`](FixedBuf::buf_index).
pub struct FixedBuf {
    pool: Rc<Inner>,
    index: u16,
    len: usize,
}

impl FixedBuf {
    /// The index the ring knows this buffer by (READ_FIXED/WRITE_FIXED's `buf_index`).
    pub fn buf_index(&self) -> u16 {
        self.index
    }

    /// Empties the buffer (capacity unchanged).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `bytes`.
    ///
    /// # Panics
    /// If they do not fit in the buffer's capacity.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        assert!(
            end <= self.pool.size,
            "{end} bytes exceed the fixed buffer's capacity"
        );
        // SAFETY: `end <= size`: the copy stays inside this buffer, which we own (F2).
        unsafe {
            self.base()
                .add(self.len)
                .copy_from_nonoverlapping(bytes.as_ptr(), bytes.len());
        }
        self.len = end;
    }

    fn base(&self) -> *mut u8 {
        // SAFETY: `index < count`, inside the pool's allocation (F1).
        unsafe {
            self.pool
                .memory
                .as_ptr()
                .add(self.index as usize * self.pool.size)
        }
    }
}

// SAFETY: the memory is part of the pool's allocation, which never moves and outlives this
// buffer (F1); only this FixedBuf uses it (F2).
unsafe impl IoBuf for FixedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.base()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.pool.size
    }
}

// SAFETY: as for IoBuf.
unsafe impl IoBufMut for FixedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.base()
    }
    /// # Safety
    /// As [`IoBufMut::set_init`]: the first `len` bytes were initialised.
    unsafe fn set_init(&mut self, len: usize) {
        self.len = self.len.max(len.min(self.pool.size));
    }
}

impl Deref for FixedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialised (zeroed at allocation, or written).
        unsafe { std::slice::from_raw_parts(self.base(), self.len) }
    }
}

impl DerefMut for FixedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for Deref; `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.base(), self.len) }
    }
}

impl Drop for FixedBuf {
    fn drop(&mut self) {
        self.pool.free.borrow_mut().push(self.index);
        for waker in self.pool.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }
}

impl fmt::Debug for FixedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedBuf")
            .field("index", &self.index)
            .field("len", &self.len)
            .finish()
    }
}
