//! Provided-buffer rings (IORING_REGISTER_PBUF_RING, Linux 5.19): a pool of equal buffers the
//! kernel picks from when data arrives, so a waiting receive holds no buffer of its own.
//!
//! With multishot receive, an idle connection costs no buffer memory: a buffer is taken only
//! when bytes arrive, handed to the application as a [`RingBuf`], and given back to the ring
//! when that is dropped. Every CQE that carries a buffer id becomes a `RingBuf`, including the
//! CQEs of a receive whose future was dropped, so no buffer is ever lost.
//!
//! # Invariants
//! - R1: the entry array and the buffer memory are allocated once and freed only after the
//!   ring is unregistered, which happens when the last [`BufRing`] handle, op and [`RingBuf`]
//!   are gone (they all hold the shared `Inner`).
//! - R2: a buffer id is either in the ring (owned by the kernel) or inside exactly one live
//!   `RingBuf` (owned by the application); `RingBuf::drop` puts it back.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::ops::Deref;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::Waker;

use io_uring::types::BufRingEntry;

/// A registered pool of `count` buffers of `size` bytes each, on the current core.
///
/// Cloning is cheap and shares the pool. It belongs to the core it was made on.
///
/// # Examples
/// ```
/// corio::block_on(async {
///     let ring = corio::io::buf::BufRing::new(64, 4096).unwrap();
///     assert_eq!(ring.free(), 64);
/// });
/// ```
#[derive(Clone)]
pub struct BufRing {
    inner: Rc<Inner>,
}

struct Inner {
    /// The ring (driver id) the group is registered with.
    ring_id: u64,
    bgid: u16,
    count: u16,
    size: u32,
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    memory: NonNull<u8>,
    memory_layout: Layout,
    /// Our copy of the tail the kernel reads.
    tail: Cell<u16>,
    /// Buffers handed out as `RingBuf`s.
    lent: Cell<usize>,
    /// Receives waiting for a buffer to come back.
    waiters: RefCell<Vec<Waker>>,
    /// Buffers given back so far: a receive that ran dry waits for this to move.
    returned: Cell<u64>,
}

impl BufRing {
    /// Allocates `count` buffers of `size` bytes and registers them with the current core's
    /// ring. `count` is rounded up to a power of two (at most 32768); `size` is in bytes.
    ///
    /// # Errors
    /// `InvalidInput` for a zero size or count, or one too large; the kernel's error if it
    /// refuses the registration (kernels before 5.19 lack buffer rings); `Unsupported` outside
    /// a corio core; `OutOfMemory` if the allocation fails.
    pub fn new(count: u16, size: u32) -> io::Result<BufRing> {
        let count = count
            .max(1)
            .checked_next_power_of_two()
            .filter(|&c| c <= 32_768);
        let Some(count) = count.filter(|_| size > 0) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad buffer ring size",
            ));
        };
        let entries_layout = Layout::from_size_align(count as usize * 16, 4096)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let memory_layout = Layout::from_size_align(count as usize * size as usize, 64)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let entries = alloc_layout(entries_layout)?.cast::<BufRingEntry>();
        let memory = match alloc_layout(memory_layout) {
            Ok(memory) => memory,
            Err(err) => {
                // SAFETY: allocated just above with this layout.
                unsafe { dealloc(entries.as_ptr().cast(), entries_layout) };
                return Err(err);
            }
        };
        // SAFETY: `entries` is a page-aligned array of `count` entries that stays allocated
        // until after unregistration (R1); buffer addresses are filled in before any receive.
        let registered = unsafe { corio_rt::register_buf_ring(entries.as_ptr() as u64, count, 0) };
        let bgid = match registered {
            Ok(bgid) => bgid,
            Err(err) => {
                // SAFETY: allocated above with these layouts and never registered.
                unsafe {
                    dealloc(entries.as_ptr().cast(), entries_layout);
                    dealloc(memory.as_ptr(), memory_layout);
                }
                return Err(err);
            }
        };
        let inner = Inner {
            ring_id: corio_rt::ring_id().unwrap_or(0),
            bgid,
            count,
            size,
            entries,
            entries_layout,
            memory,
            memory_layout,
            tail: Cell::new(0),
            lent: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
            returned: Cell::new(0),
        };
        for bid in 0..count {
            inner.push(bid);
        }
        inner.publish_tail();
        Ok(BufRing {
            inner: Rc::new(inner),
        })
    }

    /// The buffer group id receives name (`IOSQE_BUFFER_SELECT` with `buf_group`).
    pub fn group(&self) -> u16 {
        self.inner.bgid
    }

    /// Size of each buffer in bytes.
    pub fn buf_size(&self) -> u32 {
        self.inner.size
    }

    /// Number of buffers in the pool.
    pub fn count(&self) -> u16 {
        self.inner.count
    }

    /// Buffers the kernel may fill now (the pool minus those lent out as [`RingBuf`]s).
    pub fn free(&self) -> usize {
        self.inner.count as usize - self.inner.lent.get()
    }

    /// Takes buffer `bid`, which the kernel filled with `len` bytes (from a CQE's buffer id and
    /// result).
    ///
    /// # Panics
    /// If `bid` is out of range or `len` exceeds the buffer size: the CQE did not come from this
    /// ring, a bug.
    pub(crate) fn take(&self, bid: u16, len: usize) -> RingBuf {
        assert!(
            bid < self.inner.count && len <= self.inner.size as usize,
            "R2: CQE names buffer {bid} with {len} bytes, not of this ring"
        );
        self.inner.lent.set(self.inner.lent.get() + 1);
        RingBuf {
            ring: self.inner.clone(),
            bid,
            len,
        }
    }

    /// Whether the kernel has buffers left to pick, by its own head (Linux 6.8); if it cannot
    /// say, whether any buffer is not lent out.
    pub(crate) fn kernel_has_buffers(&self) -> bool {
        match corio_rt::buf_ring_head(self.inner.bgid) {
            Ok(head) => self.inner.tail.get() != head,
            Err(_) => self.free() > 0,
        }
    }

    /// How many buffers have come back to the ring so far.
    pub(crate) fn returned(&self) -> u64 {
        self.inner.returned.get()
    }

    /// Registers `waker` to be woken when a lent buffer comes back.
    pub(crate) fn wait_for_buffer(&self, waker: &Waker) {
        let mut waiters = self.inner.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
        }
    }
}

impl fmt::Debug for BufRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufRing")
            .field("group", &self.inner.bgid)
            .field("count", &self.inner.count)
            .field("size", &self.inner.size)
            .field("free", &self.free())
            .finish()
    }
}

impl Inner {
    /// Writes buffer `bid` into the next free entry; visible to the kernel after
    /// `publish_tail`.
    fn push(&self, bid: u16) {
        let index = (self.tail.get() & (self.count - 1)) as usize;
        // SAFETY: `index < count`, inside the entry array (R1); the kernel reads only entries
        // below the published tail, and this one is at or past it.
        let entry = unsafe { &mut *self.entries.as_ptr().add(index) };
        // SAFETY: `bid < count`, so the offset stays inside the buffer memory (R1).
        let addr = unsafe { self.memory.as_ptr().add(bid as usize * self.size as usize) };
        entry.set_addr(addr as u64);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail.set(self.tail.get().wrapping_add(1));
    }

    fn publish_tail(&self) {
        // SAFETY: the tail field lives in the first entry of the live ring (R1); the kernel reads
        // it with acquire semantics, so entries written before are visible.
        let tail = unsafe { BufRingEntry::tail(self.entries.as_ptr()) } as *const AtomicU16;
        // SAFETY: as above; the field is a naturally aligned u16 shared with the kernel.
        unsafe { &*tail }.store(self.tail.get(), Ordering::Release);
    }

    fn give_back(&self, bid: u16) {
        self.push(bid);
        self.publish_tail();
        self.lent.set(self.lent.get() - 1);
        self.returned.set(self.returned.get() + 1);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in waiters {
            waker.wake();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // No op or RingBuf refers to the ring any more (they hold `Inner`): the kernel will pick
        // no buffer from it. Unregister only on the ring it belongs to; if that ring is gone,
        // so is the registration.
        if corio_rt::ring_id() == Some(self.ring_id) {
            let _ = corio_rt::unregister_buf_ring(self.bgid);
        }
        // SAFETY: allocated in `new` with these layouts; unregistered above (R1).
        unsafe {
            dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            dealloc(self.memory.as_ptr(), self.memory_layout);
        }
    }
}

fn alloc_layout(layout: Layout) -> io::Result<NonNull<u8>> {
    // SAFETY: the layout has a non-zero size (count and size are at least 1).
    NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or_else(|| io::ErrorKind::OutOfMemory.into())
}

/// A filled buffer lent by a [`BufRing`]; dropping it gives the buffer back to the ring.
///
/// Derefs to the received bytes, and is itself an [`IoBuf`](super::IoBuf): writing it to a
/// socket sends straight from the ring's memory, and the buffer returns to the ring after.
pub struct RingBuf {
    ring: Rc<Inner>,
    bid: u16,
    len: usize,
}

impl RingBuf {
    /// The buffer id within its ring.
    pub fn id(&self) -> u16 {
        self.bid
    }
}

// SAFETY: the bytes live in the ring's buffer memory, which neither moves nor is freed while
// this RingBuf holds the ring (R1), and which nobody else writes while it is lent (R2).
unsafe impl super::IoBuf for RingBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.deref().as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.len
    }
}

impl Deref for RingBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let offset = self.bid as usize * self.ring.size as usize;
        // SAFETY: the kernel wrote `len <= size` bytes at this buffer, which this RingBuf owns
        // until dropped (R2) and which stays allocated while `ring` is held (R1).
        unsafe { std::slice::from_raw_parts(self.ring.memory.as_ptr().add(offset), self.len) }
    }
}

impl Drop for RingBuf {
    fn drop(&mut self) {
        self.ring.give_back(self.bid);
    }
}

impl fmt::Debug for RingBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingBuf")
            .field("id", &self.bid)
            .field("len", &self.len)
            .finish()
    }
}
