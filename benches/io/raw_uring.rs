//! A hand-written io_uring echo server with no runtime: the practical limit for a ring-based
//! server on one core. One multishot ACCEPT; per connection one multishot RECV over a
//! provided-buffer ring registered with `register_buf_ring_with_flags`; one SEND per received
//! chunk, straight from its ring buffer (one SEND in flight per connection, so chunks go out in
//! order); one `submit_and_wait` per loop turn. No tasks, wakers or slots.
//!
//! # Invariants
//! - B1: the buffer ring's entries and memory are allocated before registration and freed only
//!   after the io_uring is closed (`Loop` drops `ring` before `pool`).
//! - B2: a buffer id is either in the kernel's ring or queued for sending on exactly one
//!   connection; it goes back to the kernel when its SEND has sent all of it.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::VecDeque;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};

use io_uring::types::{BufRingEntry, Fd};
use io_uring::{cqueue, opcode, squeue, IoUring};

const ENTRIES: u32 = 1024;
const BUFFERS: u16 = 512;
const BUFFER_SIZE: u32 = 4096;
const GROUP: u16 = 0;

/// `user_data`: the kind in the top byte, a buffer id in bits 32..48, the fd in the low 32.
const ACCEPT: u64 = 1 << 56;
const RECV: u64 = 2 << 56;
const SEND: u64 = 3 << 56;

fn token(kind: u64, fd: RawFd, bid: u16) -> u64 {
    kind | (u64::from(bid) << 32) | u64::from(fd as u32)
}

/// Serves echo on `listener` until a connection is accepted while `stop` is set.
///
/// # Errors
/// Ring setup and registration errors, and `io_uring_enter`'s.
pub fn serve(listener: TcpListener, stop: &AtomicBool, ready: impl FnOnce()) -> io::Result<()> {
    let pool = BufPool::new(BUFFERS, BUFFER_SIZE)?;
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(ENTRIES)?;
    // SAFETY: the entry array holds BUFFERS page-aligned entries and outlives the ring (B1).
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(pool.entries_addr(), BUFFERS, GROUP, 0)?;
    }
    let mut event_loop = Loop {
        ring,
        pool,
        conns: Vec::new(),
        starved: Vec::new(),
        cqes: Vec::new(),
    };
    event_loop.pool.fill();
    let listen_fd = listener.as_raw_fd();
    event_loop.push(
        &opcode::AcceptMulti::new(Fd(listen_fd))
            .build()
            .user_data(ACCEPT),
    )?;
    ready();
    event_loop.run(listen_fd, stop)
}

/// One connection's state.
#[derive(Default)]
struct Conn {
    /// Received chunks not yet fully sent: (buffer id, length); the front one is being sent.
    queue: VecDeque<(u16, u32)>,
    /// Bytes of the front chunk already sent.
    sent: u32,
    sending: bool,
    /// The peer has closed its side (or the receive failed): close once the queue is empty.
    closing: bool,
}

struct Loop {
    /// Declared before `pool`: the ring is closed before the buffers are freed (B1).
    ring: IoUring,
    pool: BufPool,
    /// Indexed by fd.
    conns: Vec<Option<Conn>>,
    /// Connections whose receive ended for want of buffers (ENOBUFS), to re-arm.
    starved: Vec<RawFd>,
    cqes: Vec<(u64, i32, u32)>,
}

impl Loop {
    fn run(&mut self, listen_fd: RawFd, stop: &AtomicBool) -> io::Result<()> {
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(err) if err.raw_os_error() == Some(libc::EINTR) => continue,
                Err(err) => return Err(err),
            }
            let mut cqes = std::mem::take(&mut self.cqes);
            cqes.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(user_data, res, flags) in &cqes {
                let fd = user_data as u32 as RawFd;
                let bid = (user_data >> 32) as u16;
                match user_data & (0xff << 56) {
                    ACCEPT => {
                        if res >= 0 && stop.load(Ordering::Acquire) {
                            close(res);
                            self.close_all();
                            return Ok(());
                        }
                        self.accepted(listen_fd, res, flags)?;
                    }
                    RECV => self.received(fd, res, flags)?,
                    SEND => self.sent(fd, bid, res)?,
                    other => unreachable!("user_data kind {other:#x} was never submitted"),
                }
            }
            cqes.clear();
            self.cqes = cqes;
            if self.pool.lent < usize::from(BUFFERS) {
                for fd in std::mem::take(&mut self.starved) {
                    self.arm_recv(fd)?;
                }
            }
        }
    }

    fn accepted(&mut self, listen_fd: RawFd, res: i32, flags: u32) -> io::Result<()> {
        if res >= 0 {
            set_nodelay(res);
            let index = res as usize;
            if self.conns.len() <= index {
                self.conns.resize_with(index + 1, || None);
            }
            self.conns[index] = Some(Conn::default());
            self.arm_recv(res)?;
        }
        if !cqueue::more(flags) {
            self.push(
                &opcode::AcceptMulti::new(Fd(listen_fd))
                    .build()
                    .user_data(ACCEPT),
            )?;
        }
        Ok(())
    }

    fn received(&mut self, fd: RawFd, res: i32, flags: u32) -> io::Result<()> {
        if res == -libc::ENOBUFS {
            self.starved.push(fd);
            return Ok(());
        }
        if res <= 0 {
            // EOF or an error: the multishot receive has ended.
            live(&mut self.conns, fd).closing = true;
            return self.maybe_close(fd);
        }
        let bid = cqueue::buffer_select(flags).expect("a RECV with data names its buffer");
        self.pool.lent += 1;
        let conn = live(&mut self.conns, fd);
        conn.queue.push_back((bid, res as u32));
        if !conn.sending {
            self.send_front(fd)?;
        }
        if !cqueue::more(flags) {
            self.arm_recv(fd)?;
        }
        Ok(())
    }

    fn sent(&mut self, fd: RawFd, bid: u16, res: i32) -> io::Result<()> {
        let conn = live(&mut self.conns, fd);
        conn.sending = false;
        if res < 0 {
            conn.closing = true;
            for (bid, _) in std::mem::take(&mut conn.queue) {
                self.pool.give_back(bid);
            }
            return self.maybe_close(fd);
        }
        conn.sent += res as u32;
        let (front, len) = *conn
            .queue
            .front()
            .expect("B2: a SEND sends its front chunk");
        debug_assert_eq!(front, bid);
        if conn.sent == len {
            conn.queue.pop_front();
            conn.sent = 0;
            self.pool.give_back(bid);
        }
        if live(&mut self.conns, fd).queue.is_empty() {
            self.maybe_close(fd)
        } else {
            self.send_front(fd)
        }
    }

    fn send_front(&mut self, fd: RawFd) -> io::Result<()> {
        let conn = live(&mut self.conns, fd);
        let (bid, len) = *conn.queue.front().expect("a chunk to send");
        let offset = conn.sent;
        conn.sending = true;
        let ptr = self.pool.buffer(bid).wrapping_add(offset as usize);
        let sqe = opcode::Send::new(Fd(fd), ptr, len - offset)
            .build()
            .user_data(token(SEND, fd, bid));
        self.push(&sqe)
    }

    fn arm_recv(&mut self, fd: RawFd) -> io::Result<()> {
        let sqe = opcode::RecvMulti::new(Fd(fd), GROUP)
            .build()
            .user_data(token(RECV, fd, 0));
        self.push(&sqe)
    }

    fn maybe_close(&mut self, fd: RawFd) -> io::Result<()> {
        let conn = live(&mut self.conns, fd);
        if conn.closing && !conn.sending && conn.queue.is_empty() {
            self.conns[fd as usize] = None;
            close(fd);
        }
        Ok(())
    }

    fn close_all(&mut self) {
        for (fd, conn) in self.conns.iter_mut().enumerate() {
            if conn.take().is_some() {
                close(fd as RawFd);
            }
        }
    }

    /// Pushes one SQE; a full SQ is submitted first, never dropped.
    fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every SQE built here points only at the pool's buffer memory, which
            // outlives the ring (B1), and a buffer is not reused until its SEND is reaped (B2).
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }
}

/// The open connection on `fd`.
fn live(conns: &mut [Option<Conn>], fd: RawFd) -> &mut Conn {
    conns[fd as usize]
        .as_mut()
        .unwrap_or_else(|| unreachable!("CQE for fd {fd}, which is not open"))
}

fn set_nodelay(fd: RawFd) {
    let on: libc::c_int = 1;
    // SAFETY: `fd` is a socket this loop owns; the option value is a live c_int of the stated
    // size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn close(fd: RawFd) {
    // SAFETY: `fd` was accepted by this loop, is closed once, and no op on it is in flight.
    unsafe { libc::close(fd) };
}

/// The provided buffers: `count` entries the kernel reads, and `count * size` bytes of memory.
struct BufPool {
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    memory: *mut u8,
    memory_layout: Layout,
    count: u16,
    size: u32,
    /// Our copy of the tail the kernel reads.
    tail: u16,
    /// Buffers taken by the kernel and not yet given back.
    lent: usize,
}

impl BufPool {
    fn new(count: u16, size: u32) -> io::Result<BufPool> {
        assert!(count.is_power_of_two(), "a buffer ring has 2^n entries");
        let entries_layout = Layout::from_size_align(usize::from(count) * 16, 4096)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let memory_layout = Layout::from_size_align(usize::from(count) * size as usize, 64)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: both layouts have a non-zero size.
        let (entries, memory) =
            unsafe { (alloc_zeroed(entries_layout), alloc_zeroed(memory_layout)) };
        assert!(
            !entries.is_null() && !memory.is_null(),
            "cannot allocate the buffer ring"
        );
        Ok(BufPool {
            entries: entries.cast(),
            entries_layout,
            memory,
            memory_layout,
            count,
            size,
            tail: 0,
            lent: 0,
        })
    }

    fn entries_addr(&self) -> u64 {
        self.entries as u64
    }

    fn buffer(&self, bid: u16) -> *const u8 {
        assert!(bid < self.count, "buffer id {bid} out of range");
        self.memory
            .wrapping_add(usize::from(bid) * self.size as usize)
            .cast_const()
    }

    /// Hands every buffer to the kernel.
    fn fill(&mut self) {
        for bid in 0..self.count {
            self.push(bid);
        }
        self.publish_tail();
    }

    fn give_back(&mut self, bid: u16) {
        self.push(bid);
        self.publish_tail();
        self.lent -= 1;
    }

    fn push(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        // SAFETY: `index < count`, inside the entry array (B1); the kernel reads only entries
        // below the published tail, and this one is at or past it.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(self.buffer(bid) as u64);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish_tail(&self) {
        // SAFETY: the tail field lives in the first entry of the live array (B1).
        let tail = unsafe { BufRingEntry::tail(self.entries) }.cast::<AtomicU16>();
        // SAFETY: as above; a naturally aligned u16 the kernel reads with acquire ordering, so
        // the entries written before are visible to it.
        unsafe { &*tail }.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufPool {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; the ring that used them is closed (B1).
        unsafe {
            dealloc(self.entries.cast(), self.entries_layout);
            dealloc(self.memory, self.memory_layout);
        }
    }
}
