//! Provided-buffer rings on the epoll driver: each group registered by `register_buf_ring` is
//! read as the kernel reads it, so a receive takes a buffer only when bytes are there.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering;

/// A provided-buffer ring, read as the kernel reads it: entries of 16 bytes (`addr: u64`,
/// `len: u32`, `bid: u16`, and in entry 0 the `tail: u16` the application publishes).
pub(crate) struct BufGroup {
    ring: u64,
    mask: u16,
    /// The next entry to take (the kernel's head).
    pub(crate) head: u16,
}

impl BufGroup {
    /// The buffer `skip` entries past the head, if the ring has it: `(addr, len, bid)`.
    ///
    /// # Safety
    /// The ring must be registered and alive (`register_buf_ring`'s contract).
    pub(crate) unsafe fn peek(&self, skip: u16) -> Option<(u64, u32, u16)> {
        // SAFETY: the tail is a naturally aligned u16 at byte 14 of the live ring (the caller's
        // contract), written by the application with release ordering.
        let tail = unsafe { &*((self.ring + 14) as *const std::sync::atomic::AtomicU16) }
            .load(Ordering::Acquire);
        if tail.wrapping_sub(self.head) <= skip {
            return None;
        }
        let index = self.head.wrapping_add(skip) & self.mask;
        let entry = self.ring + u64::from(index) * 16;
        // SAFETY: `entry` is inside the ring (masked index); the acquire above makes the
        // entries below the tail visible.
        unsafe {
            Some((
                *(entry as *const u64),
                *((entry + 8) as *const u32),
                *((entry + 12) as *const u16),
            ))
        }
    }
}

/// The groups registered on one core, by id.
#[derive(Default)]
pub(crate) struct Groups {
    map: HashMap<u16, BufGroup>,
    next: u16,
}

impl Groups {
    /// The next id to try (ids wrap; a live group's id is skipped when registering).
    pub(crate) fn next_id(&mut self) -> u16 {
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        id
    }

    pub(crate) fn get_mut(&mut self, bgid: u16) -> Option<&mut BufGroup> {
        self.map.get_mut(&bgid)
    }

    /// Stands in for `IORING_REGISTER_PBUF_RING`: receives naming `bgid` read the ring at
    /// `ring_addr` as the kernel would.
    ///
    /// # Safety
    /// As `register_buf_ring`'s.
    pub(crate) unsafe fn register_buf_ring(
        &mut self,
        ring_addr: u64,
        entries: u16,
        flags: u16,
    ) -> io::Result<u16> {
        if flags != 0 || !entries.is_power_of_two() || ring_addr % 4096 != 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut bgid = self.next_id();
        for _ in 0..=u16::MAX {
            if !self.map.contains_key(&bgid) {
                break;
            }
            bgid = self.next_id();
        }
        if self.map.contains_key(&bgid) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        self.map.insert(
            bgid,
            BufGroup {
                ring: ring_addr,
                mask: entries - 1,
                head: 0,
            },
        );
        Ok(bgid)
    }

    pub(crate) fn unregister_buf_ring(&mut self, bgid: u16) -> io::Result<()> {
        self.map
            .remove(&bgid)
            .map(drop)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
    }

    /// The head of group `bgid` (`IORING_REGISTER_PBUF_STATUS`).
    pub(crate) fn buf_ring_head(&self, bgid: u16) -> io::Result<u16> {
        self.map
            .get(&bgid)
            .map(|g| g.head)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
    }
}
