//! A client's input buffer: it grows with what arrives (never with what a length line
//! claims), its growth beyond the first 16 KiB is taken from the process budget, and it
//! shrinks back after a large request.

use super::{BUF_SIZE, SHRINK_ABOVE};
use crate::flow;

/// The client's input buffer, with the bytes it grew by taken from the process budget.
pub(super) struct Input {
    pub(super) buf: Vec<u8>,
    /// Bytes of `buf`'s capacity taken from the budget (all beyond [`BUF_SIZE`]).
    pub(super) taken: usize,
}

impl Input {
    /// How many bytes [`reserve`](Self::reserve) would grow the buffer by (0: it has room).
    /// The capacity doubles (by at most 1 MiB at a time, so it follows what has arrived, never
    /// a length line's claim alone) but does not pass `need`, the length the request needs.
    pub(super) fn growth(&self, need: usize) -> usize {
        let (len, capacity) = (self.buf.len(), self.buf.capacity());
        if capacity - len >= 4096 {
            return 0;
        }
        let mut target = len + len.clamp(BUF_SIZE, 1 << 20);
        if need > len {
            target = target.min(need.max(len + 4096));
        }
        target - capacity
    }

    /// Makes room for at least 4 KiB more (see [`growth`](Self::growth)), taking the growth
    /// from the budget first; `false` if it does not fit.
    pub(super) fn reserve(&mut self, need: usize) -> bool {
        let grow = self.growth(need);
        if grow == 0 {
            return true;
        }
        if !flow::try_take(grow) {
            return false;
        }
        let before = self.buf.capacity();
        self.buf.reserve_exact(before + grow - self.buf.len());
        // The allocator may give more than asked.
        let grown = self.buf.capacity() - before;
        if grown > grow {
            flow::take(grown - grow);
        } else {
            flow::give_back(grow - grown);
        }
        self.taken += grown;
        true
    }

    /// Gives back the capacity of a large request once it has been consumed.
    pub(super) fn shrink(&mut self) {
        if self.buf.capacity() > SHRINK_ABOVE && self.buf.len() < BUF_SIZE {
            self.buf.shrink_to(BUF_SIZE);
            self.settle();
        }
    }

    /// Takes from or gives back to the budget what the capacity changed by, so `taken` is
    /// the capacity beyond [`BUF_SIZE`].
    fn settle(&mut self) {
        let now = self.buf.capacity().saturating_sub(BUF_SIZE);
        if now < self.taken {
            flow::give_back(self.taken - now);
            flow::freed(self.taken - now);
        } else if now > self.taken {
            flow::take(now - self.taken);
        }
        self.taken = now;
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        flow::give_back(self.taken);
        flow::freed(self.buf.capacity());
    }
}
