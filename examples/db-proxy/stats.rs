//! Counters for INFO: each core counts its own clients, requests and errors, and records each
//! upstream reply's latency per shard in an HDR histogram, all in thread-locals (no atomics, no
//! sharing on the request path); INFO gathers every core's snapshot through corio-mesh's
//! `run_on_all` and adds them up.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use corio::rt::CoreId;
use hdrhistogram::Histogram;

/// One core's counters.
#[derive(Default)]
struct Counters {
    clients: Cell<u64>,
    requests: Cell<u64>,
    errors: Cell<u64>,
    /// Cluster redirections followed: MOVED, ASK, TRYAGAIN.
    moved: Cell<u64>,
    ask: Cell<u64>,
    tryagain: Cell<u64>,
}

thread_local! {
    static COUNTERS: Counters = Counters::default();
    /// Per shard: microseconds from queueing a request to its upstream to reading its reply.
    static LATENCY: RefCell<Vec<Histogram<u64>>> = const { RefCell::new(Vec::new()) };
}

/// A copy of one core's counters and latency histograms.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) core: usize,
    pub(crate) clients: u64,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) moved: u64,
    pub(crate) ask: u64,
    pub(crate) tryagain: u64,
    /// Upstream reply latency in microseconds, by shard.
    pub(crate) latency: Vec<Histogram<u64>>,
    /// The core's runtime counters (ring, executor, loop).
    pub(crate) runtime: corio::rt::Metrics,
    /// The core's change to the buffer budget not yet added process-wide (see `flow`).
    pub(crate) buffer_pending: isize,
}

/// Records one upstream reply of `shard` that took `elapsed`.
pub(crate) fn record_latency(shard: usize, elapsed: Duration) {
    LATENCY.with(|latency| {
        let mut latency = latency.borrow_mut();
        while latency.len() <= shard {
            // 1 µs to 1 h at 3 significant figures; values past the top are clamped.
            let histogram =
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid");
            latency.push(histogram);
        }
        let micros = (elapsed.as_micros() as u64).max(1);
        latency[shard].saturating_record(micros);
    });
}

fn bump(field: fn(&Counters) -> &Cell<u64>, delta: i64) {
    COUNTERS.with(|c| {
        let cell = field(c);
        cell.set(cell.get().saturating_add_signed(delta));
    });
}

pub(crate) fn client_connected() {
    bump(|c| &c.clients, 1);
}

pub(crate) fn client_gone() {
    bump(|c| &c.clients, -1);
}

pub(crate) fn request() {
    bump(|c| &c.requests, 1);
}

pub(crate) fn error() {
    bump(|c| &c.errors, 1);
}

/// Clients connected to this core now.
pub(crate) fn clients() -> u64 {
    COUNTERS.with(|c| c.clients.get())
}

/// This core's counters.
pub(crate) fn snapshot(core: CoreId) -> Snapshot {
    COUNTERS.with(|c| Snapshot {
        core: core.0,
        clients: c.clients.get(),
        requests: c.requests.get(),
        errors: c.errors.get(),
        moved: c.moved.get(),
        ask: c.ask.get(),
        tryagain: c.tryagain.get(),
        latency: LATENCY.with(|l| l.borrow().clone()),
        runtime: corio::rt::metrics(),
        buffer_pending: crate::flow::pending(),
    })
}

/// Counts a cluster redirection followed.
pub(crate) fn redirected(redirect: &crate::cluster::Redirect) {
    use crate::cluster::Redirect;
    let field: fn(&Counters) -> &Cell<u64> = match redirect {
        Redirect::Moved(..) => |c| &c.moved,
        Redirect::Ask(..) => |c| &c.ask,
        Redirect::TryAgain => |c| &c.tryagain,
    };
    bump(field, 1);
}
