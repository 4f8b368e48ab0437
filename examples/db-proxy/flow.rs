//! Flow control: how many bytes one client may make the proxy hold, and how many all clients
//! together may, so that no client can hurt another by what it sends or fails to read.
//!
//! The policy (README, "Limits"):
//! - **Requests.** A client's unparsed input may grow to `--client-query-buffer-limit`; every
//!   byte it grows by beyond the first 16 KiB is taken from the process-wide budget
//!   (`--max-buffer-memory`). A request that would pass either is refused as soon as its
//!   length line says so (`-ERR Protocol error ...` or `-OOM ...`), and the client is closed,
//!   since the rest of its bytes cannot be skipped safely.
//! - **Replies.** A reply from an upstream is counted against its client ([`Held`]) and the
//!   budget from the moment it is read until it is written to the client. A client whose held
//!   replies pass `--client-output-buffer-limit` is closed (as redis-server closes a client
//!   past its output buffer limit), and its later replies are read from the upstream and
//!   dropped; a single reply is never too big on its own.
//! - **In flight.** A client has at most [`Window::requests`] requests sent upstream and not
//!   yet answered. The window starts small, doubles while replies are small, and shrinks so
//!   that the window's expected reply bytes stay under [`WINDOW_TARGET`]: a client that
//!   pipelines thousands of GETs of 1 MB values has about 16 of them in flight, so the bytes
//!   queued ahead of another client's request on the shared upstream connection stay small.
//!   A client that does not read stops being read (its window is spent), and is closed when
//!   writing to it makes no progress for `--client-write-timeout-ms`.
//! - **Per upstream connection.** Requests are sent with the size their client's replies are
//!   expected to have. A client whose replies are large ([`LARGE_REPLY`] or more) waits before
//!   sending to a connection that already expects [`UPSTREAM_INFLIGHT`] bytes of replies, so
//!   heavy readers of large values take turns and a small request never has more than about
//!   that much queued ahead of it. Small requests never wait.
//! - **Budget.** While the process holds more than the budget, sessions stop sending new
//!   requests upstream; a request that still cannot be sent after the request timeout gets
//!   `-OOM`, and the budget recovers as clients read their replies (or are closed).

use std::cell::Cell;
use std::ops::Deref;
use std::rc::Rc;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// Bytes held process-wide: grown client input and replies not yet written. Each core adds
/// its changes in steps of at least [`FLUSH`] bytes (see [`Local`]), so the figure may be off
/// by that much per core, and the request path touches no shared cache line.
static USED: AtomicIsize = AtomicIsize::new(0);
/// The budget for [`USED`] (`--max-buffer-memory`).
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Bytes freed since the last `malloc_trim` (see [`trim_thread`]), flushed as [`USED`] is.
static FREED: AtomicUsize = AtomicUsize::new(0);

/// Expected reply bytes a client's window of requests in flight is sized for.
pub(crate) const WINDOW_TARGET: usize = 16 * 1024 * 1024;
/// Expected reply bytes in flight on one upstream connection past which clients with large
/// replies wait before sending more (see [`Window`]): what may queue ahead of another
/// client's request.
pub(crate) const UPSTREAM_INFLIGHT: usize = 64 * 1024 * 1024;
/// Replies expected at least this long make a client wait on a congested connection; smaller
/// ones never wait.
pub(crate) const LARGE_REPLY: usize = 64 * 1024;
/// The window a new client starts with (doubled while its replies stay small).
const INITIAL_WINDOW: usize = 16;
/// Freed bytes after which the trim thread returns free memory to the kernel.
const TRIM_AFTER: usize = 8 * 1024 * 1024;
/// A core's changes reach the process-wide counters once they add up to this many bytes.
const FLUSH: isize = 256 * 1024;

/// One core's changes not yet added to [`USED`] and [`FREED`].
struct Local {
    used: Cell<isize>,
    freed: Cell<usize>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            used: Cell::new(0),
            freed: Cell::new(0),
        }
    };
}

/// Adds `delta` to this core's share of [`USED`].
fn change(delta: isize) {
    LOCAL.with(|local| {
        let pending = local.used.get() + delta;
        if pending.abs() >= FLUSH {
            USED.fetch_add(pending, Ordering::Relaxed);
            local.used.set(0);
        } else {
            local.used.set(pending);
        }
    });
}

fn signed(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

/// Sets the process-wide budget, in bytes.
pub(crate) fn set_budget(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
}

/// Bytes held now, process-wide (INFO's `buffer_memory`).
pub(crate) fn used() -> usize {
    let local = LOCAL.with(|local| local.used.get());
    usize::try_from(USED.load(Ordering::Relaxed) + local).unwrap_or(0)
}

/// This core's change to [`USED`] not yet added to it.
pub(crate) fn pending() -> isize {
    LOCAL.with(|local| local.used.get())
}

/// Bytes held process-wide: [`USED`] plus every core's `pending` (gathered from each core by
/// INFO; exact when nothing moves meanwhile). Signed, so that accounting drift would show.
pub(crate) fn used_exactly(pending: impl Iterator<Item = isize>) -> isize {
    USED.load(Ordering::Relaxed) + pending.sum::<isize>()
}

/// The budget (INFO's `max_buffer_memory`).
pub(crate) fn budget() -> usize {
    LIMIT.load(Ordering::Relaxed)
}

/// Whether the process holds more than its budget.
#[cfg(test)]
fn over_budget() -> bool {
    used() > budget()
}

/// Whether the process holds more than its budget, not counting `own` bytes (those of the
/// client asking, which it cannot wait for).
pub(crate) fn over_budget_besides(own: usize) -> bool {
    used().saturating_sub(own) > budget()
}

/// Whether `n` more bytes would fit the budget now.
pub(crate) fn fits(n: usize) -> bool {
    used().saturating_add(n) <= budget()
}

/// Takes `n` bytes from the budget if they fit; `false` (nothing taken) if they do not.
pub(crate) fn try_take(n: usize) -> bool {
    if !fits(n) {
        return false;
    }
    take(n);
    true
}

/// Takes `n` bytes whether or not they fit (bytes already read or allocated).
pub(crate) fn take(n: usize) {
    change(signed(n));
}

/// Gives back `n` bytes taken by [`try_take`] or [`take`].
pub(crate) fn give_back(n: usize) {
    change(-signed(n));
}

/// Notes `n` bytes freed (a buffer shrunk or dropped), for the trim thread.
pub(crate) fn freed(n: usize) {
    LOCAL.with(|local| {
        let pending = local.freed.get() + n;
        if pending >= FLUSH as usize {
            FREED.fetch_add(pending, Ordering::Relaxed);
            local.freed.set(0);
        } else {
            local.freed.set(pending);
        }
    });
}

/// Starts a thread that returns freed memory to the kernel once a second when at least
/// [`TRIM_AFTER`] bytes were freed in large blocks since the last time.
///
/// glibc's allocator keeps freed memory in its arenas for reuse: without this, the resident
/// size after a burst of large values or of many connections stays at its peak (measured in
/// the README, "Memory"). `malloc_trim` runs off the cores, so no event loop waits for it.
pub(crate) fn trim_thread() {
    let spawned = std::thread::Builder::new()
        .name("db-proxy-trim".into())
        .spawn(|| loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            if FREED.load(Ordering::Relaxed) >= TRIM_AFTER {
                FREED.swap(0, Ordering::Relaxed);
                trim();
            }
        });
    if let Err(err) = spawned {
        eprintln!("db-proxy: no memory trim thread ({err}); freed memory stays in the heap");
    }
}

/// Fixes glibc's allocator thresholds, before any thread starts.
///
/// glibc raises its mmap threshold (up to 32 MiB) each time a large block is freed, and its
/// trim threshold to twice that, so after one burst of large values every core's arena keeps
/// up to 64 MiB at its top that neither `free` nor `malloc_trim` returns (measured: 22 of 27
/// MiB resident after 400 clients' 200 KiB requests). Fixed thresholds keep blocks of 4 MiB
/// and more out of the arenas altogether and let `free` return an arena's top past 8 MiB.
pub(crate) fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; it is called before other threads run.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

#[cfg(target_env = "gnu")]
fn trim() {
    // SAFETY: malloc_trim has no preconditions; it takes glibc's arena locks itself.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(target_env = "gnu"))]
fn trim() {}

/// Bytes of one buffer counted against the budget whatever it holds (an upstream's read
/// buffer growing for a large reply): given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Counted {
    bytes: usize,
}

impl Counted {
    /// Counts `bytes` from now on, instead of what was counted before.
    pub(crate) fn set(&mut self, bytes: usize) {
        if bytes > self.bytes {
            take(bytes - self.bytes);
        } else {
            give_back(self.bytes - bytes);
        }
        self.bytes = bytes;
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        give_back(self.bytes);
    }
}

/// The bytes one client holds in the proxy: replies read for it and not yet written.
#[derive(Debug)]
pub(crate) struct Held {
    bytes: Cell<usize>,
    /// `--client-output-buffer-limit`.
    limit: usize,
    /// Set once the client passed its limit: it is being closed, its replies are dropped.
    cut: Cell<bool>,
}

impl Held {
    pub(crate) fn new(limit: usize) -> Rc<Held> {
        Rc::new(Held {
            bytes: Cell::new(0),
            limit,
            cut: Cell::new(false),
        })
    }

    /// Whether the client passed its output limit and must be closed.
    pub(crate) fn is_cut(&self) -> bool {
        self.cut.get()
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.get()
    }
}

/// A reply's bytes, counted against its client and the budget until dropped.
#[derive(Debug)]
pub(crate) struct ReplyBytes {
    bytes: Vec<u8>,
    /// Bytes counted, and against whom (none for a reply nobody owns).
    counted: usize,
    held: Option<Rc<Held>>,
}

impl ReplyBytes {
    /// Counts `bytes` against `held`: `None` when that takes the client past its limit (the
    /// client is then cut: this and its later replies are dropped). A reply arriving when
    /// the client holds nothing else always fits, however big.
    pub(crate) fn admit(bytes: Vec<u8>, held: &Rc<Held>) -> Option<ReplyBytes> {
        if held.cut.get() {
            return None;
        }
        let before = held.bytes.get();
        let n = bytes.len();
        if before > 0 && before.saturating_add(n) > held.limit {
            held.cut.set(true);
            return None;
        }
        held.bytes.set(before + n);
        take(n);
        Some(ReplyBytes {
            bytes,
            counted: n,
            held: Some(held.clone()),
        })
    }

    /// Bytes counted against nobody (the proxy's own requests, such as a fan-out).
    pub(crate) fn unowned(bytes: Vec<u8>) -> ReplyBytes {
        ReplyBytes {
            bytes,
            counted: 0,
            held: None,
        }
    }

    /// Takes the bytes out; they stay counted until `self` is dropped (after they are
    /// written).
    pub(crate) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

impl Deref for ReplyBytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.bytes
    }
}

impl Drop for ReplyBytes {
    fn drop(&mut self) {
        if let Some(held) = &self.held {
            held.bytes.set(held.bytes.get() - self.counted);
            give_back(self.counted);
            if self.counted >= 64 * 1024 {
                freed(self.counted); // small replies' memory is reused as it is
            }
        }
    }
}

/// A client's window of requests in flight, sized by the replies it gets (module docs).
#[derive(Debug)]
pub(crate) struct Window {
    requests: usize,
    max: usize,
    /// The average reply of the last batch, in bytes (0 before the first).
    average: usize,
}

impl Window {
    /// A window of at most `max` requests (`--max-pending`).
    pub(crate) fn new(max: usize) -> Window {
        Window {
            requests: INITIAL_WINDOW.min(max),
            max,
            average: 0,
        }
    }

    /// Requests the client may have in flight now.
    pub(crate) fn requests(&self) -> usize {
        self.requests
    }

    /// The size a reply of this client is expected to have, in bytes (0 while unknown).
    pub(crate) fn estimate(&self) -> usize {
        self.average
    }

    /// Resizes after a batch of `sent` requests whose replies were `bytes` long in all.
    pub(crate) fn update(&mut self, sent: usize, bytes: usize) {
        if sent == 0 {
            return;
        }
        let mut requests = self.requests;
        if sent >= requests && bytes <= WINDOW_TARGET / 2 {
            requests = requests.saturating_mul(2);
        }
        let average = (bytes / sent).max(1);
        self.average = average;
        let fit = (WINDOW_TARGET / average).max(1);
        self.requests = requests.min(fit).clamp(1, self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget is process-wide: tests that move it run one at a time.
    static BUDGET: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn the_window_grows_with_small_replies_and_shrinks_with_large_ones() {
        let mut window = Window::new(1024);
        assert_eq!(window.requests(), 16);
        for _ in 0..10 {
            let n = window.requests();
            window.update(n, n * 10);
        }
        assert_eq!(window.requests(), 1024);
        assert_eq!(window.estimate(), 10);
        window.update(1024, 1024 * 1024 * 1024); // 1 MiB replies
        assert_eq!(window.requests(), 16);
        assert_eq!(window.estimate(), 1024 * 1024);
        window.update(16, 16 * 100 * 1024 * 1024); // 100 MiB replies
        assert_eq!(window.requests(), 1);
        // A batch smaller than the window does not grow it.
        let mut window = Window::new(1024);
        window.update(3, 30);
        assert_eq!(window.requests(), 16);
    }

    #[test]
    fn a_client_past_its_limit_is_cut_but_one_reply_always_fits() {
        let _budget = BUDGET.lock().unwrap_or_else(|e| e.into_inner());
        let held = Held::new(100);
        let big = ReplyBytes::admit(vec![0; 500], &held).expect("one reply always fits");
        assert_eq!(held.bytes(), 500);
        assert!(ReplyBytes::admit(vec![0; 1], &held).is_none());
        assert!(held.is_cut());
        drop(big);
        assert_eq!(held.bytes(), 0);
        // Once cut, nothing more is held for the client.
        assert!(ReplyBytes::admit(vec![0; 1], &held).is_none());

        let held = Held::new(100);
        let a = ReplyBytes::admit(vec![0; 60], &held).unwrap();
        let b = ReplyBytes::admit(vec![0; 40], &held).unwrap();
        assert_eq!(held.bytes(), 100);
        drop((a, b));
        assert_eq!(held.bytes(), 0);
        assert!(!held.is_cut());
    }

    #[test]
    fn the_budget_refuses_what_does_not_fit_and_gets_everything_back() {
        let _budget = BUDGET.lock().unwrap_or_else(|e| e.into_inner());
        // Within one thread the figure is exact, flushed or not.
        let before = used();
        set_budget(before + 1000);
        assert!(try_take(600));
        assert!(!try_take(600));
        assert!(try_take(400));
        assert!(!over_budget());
        take(1);
        assert!(over_budget());
        give_back(1001);
        assert_eq!(used(), before);
        // Large changes reach the shared counter.
        set_budget(usize::MAX);
        take(1 << 20);
        assert_eq!(used(), before + (1 << 20));
        give_back(1 << 20);
        assert_eq!(used(), before);
    }
}
