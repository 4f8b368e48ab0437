//! The epoll driver's interest table: which ops wait on which fd for what, and the one epoll
//! registration per fd that covers them all.
//!
//! An fd waited on by single-shot ops only is registered `EPOLLONESHOT` with the union of
//! their events, and armed again (`EPOLL_CTL_MOD`) after an event while ops still wait. An fd
//! with a multishot op (receive, accept, poll) is registered edge-triggered for reads and
//! writes for as long as that op lives, so a busy connection costs no `epoll_ctl` per read.
//!
//! The table never trusts a registration across a moment when nobody waited on the fd: the fd
//! may have been closed (which removes it from epoll) and its number reused since. So the next
//! wait arms it again; `MOD` falls back to `ADD` when the kernel no longer has it. An event
//! meant for an fd's old file costs only a retried syscall that says EAGAIN.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;

/// Events every registration asks for: errors and hang-ups are reported regardless.
const ERR_HUP: u32 = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
const ONESHOT: u32 = libc::EPOLLONESHOT as u32;
const ET: u32 = libc::EPOLLET as u32;
/// The registration of an fd with a multishot op.
const PERSISTENT: u32 =
    (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLPRI) as u32 | ET;

/// An op waiting on an fd.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Waiter {
    /// The op's slot.
    pub(crate) id: usize,
    /// What it waits for (epoll bits, which equal poll's).
    pub(crate) events: u32,
    /// A multishot op: it waits for as long as it lives.
    pub(crate) persistent: bool,
}

#[derive(Default)]
struct FdState {
    waiters: Vec<Waiter>,
    /// What the live registration reports, trusted only while ops wait (0: nothing trusted).
    armed: u32,
    /// Whether the kernel may have a registration for this fd (try MOD before ADD).
    registered: bool,
}

/// Every fd some op waits on, and its registration in the epoll instance `epfd`.
pub(crate) struct Fds {
    epfd: RawFd,
    map: HashMap<RawFd, FdState>,
    /// Ops waiting, over every fd.
    waiting: usize,
}

impl Fds {
    pub(crate) fn new(epfd: RawFd) -> Fds {
        Fds {
            epfd,
            map: HashMap::new(),
            waiting: 0,
        }
    }

    /// Number of ops waiting on some fd.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting
    }

    /// Makes `waiter` wait on `fd`.
    ///
    /// # Errors
    /// `EPERM` if `fd` cannot be waited on (a regular file); `EBADF` if it is not open.
    pub(crate) fn wait(&mut self, fd: RawFd, waiter: Waiter) -> io::Result<()> {
        let state = self.map.entry(fd).or_default();
        state.waiters.push(waiter);
        self.waiting += 1;
        let armed = self.arm(fd);
        if armed.is_err() {
            self.remove(fd, waiter.id, true);
        }
        armed
    }

    /// Stops op `id` waiting on `fd` (it finished, or was cancelled); `arm`: bring the
    /// registration in line now (else the caller calls [`arm`](Self::arm) later).
    pub(crate) fn remove(&mut self, fd: RawFd, id: usize, arm: bool) {
        if let Some(state) = self.map.get_mut(&fd) {
            let before = state.waiters.len();
            state.waiters.retain(|w| w.id != id);
            self.waiting -= before - state.waiters.len();
            if arm {
                let _ = self.arm(fd);
            }
        }
    }

    /// The waiters of `fd` that `events` concerns, after an event; the caller tries each and
    /// calls [`remove`](Self::remove) for those that finished, then [`arm`](Self::arm).
    pub(crate) fn fired(&mut self, fd: RawFd, events: u32, out: &mut Vec<Waiter>) {
        let Some(state) = self.map.get_mut(&fd) else {
            return;
        };
        if state.armed & ONESHOT != 0 {
            state.armed = 0; // the kernel disarmed it
        }
        let all = events & ERR_HUP != 0;
        out.extend(
            state
                .waiters
                .iter()
                .filter(|w| all || w.events & events != 0),
        );
    }

    /// The fd is being closed (a CLOSE op): its registration goes with it. Ops still waiting
    /// on it (none, when they own the fd) stay until they are cancelled.
    pub(crate) fn forget(&mut self, fd: RawFd) {
        if let Some(state) = self.map.get_mut(&fd) {
            state.armed = 0;
            state.registered = false;
            if state.waiters.is_empty() {
                self.map.remove(&fd);
            }
        }
    }

    /// Brings `fd`'s registration in line with its waiters.
    pub(crate) fn arm(&mut self, fd: RawFd) -> io::Result<()> {
        let Some(state) = self.map.get_mut(&fd) else {
            return Ok(());
        };
        let want = if state.waiters.is_empty() {
            0
        } else if state.waiters.iter().any(|w| w.persistent) {
            state.waiters.iter().fold(PERSISTENT, |e, w| e | w.events)
        } else {
            state.waiters.iter().fold(ONESHOT, |e, w| e | w.events)
        };
        if want == 0 {
            if state.armed & ET != 0 {
                // A multishot op ended: stop its edges (an fd closed already has none).
                let _ = ctl(self.epfd, libc::EPOLL_CTL_DEL, fd, 0);
                state.registered = false;
            }
            state.armed = 0;
            if !state.registered {
                self.map.remove(&fd);
            }
            return Ok(());
        }
        if want == state.armed {
            return Ok(());
        }
        let first = if state.registered {
            libc::EPOLL_CTL_MOD
        } else {
            libc::EPOLL_CTL_ADD
        };
        let result = match ctl(self.epfd, first, fd, want) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                ctl(self.epfd, libc::EPOLL_CTL_ADD, fd, want)
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                ctl(self.epfd, libc::EPOLL_CTL_MOD, fd, want)
            }
            other => other,
        };
        result?;
        state.registered = true;
        state.armed = want;
        Ok(())
    }
}

fn ctl(epfd: RawFd, op: i32, fd: RawFd, events: u32) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events,
        u64: fd as u64,
    };
    // SAFETY: epoll_ctl reads one epoll_event from this stack (and ignores it for DEL).
    if unsafe { libc::epoll_ctl(epfd, op, fd, &mut event) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
