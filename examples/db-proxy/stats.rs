//! Counters for INFO and `/metrics`: each core counts its own clients, requests and errors,
//! each command's calls, time and failures (with an HDR histogram of its latency), error
//! replies by their first word, and each upstream reply's latency per shard, all in
//! thread-locals (no atomics, no sharing on the request path); INFO gathers every core's
//! snapshot through corio-mesh's `run_on_all` and adds them up.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

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

/// One command's counters, as redis-server's `cmdstat_*` and `latency_percentiles_usec_*`.
#[derive(Clone, Debug)]
pub(crate) struct CommandStat {
    pub(crate) calls: u64,
    /// Microseconds from reading the request to having its reply, in all.
    pub(crate) usec: u64,
    /// Refused before running (wrong arity, CROSSSLOT, NOAUTH, a limit...).
    pub(crate) rejected: u64,
    /// Ran and replied with an error.
    pub(crate) failed: u64,
    /// Latency in microseconds.
    pub(crate) latency: Histogram<u64>,
}

impl CommandStat {
    fn new() -> CommandStat {
        CommandStat {
            calls: 0,
            usec: 0,
            rejected: 0,
            failed: 0,
            latency: histogram(),
        }
    }

    /// Adds `other`'s counts (another core's).
    pub(crate) fn merge(&mut self, other: &CommandStat) {
        self.calls += other.calls;
        self.usec += other.usec;
        self.rejected += other.rejected;
        self.failed += other.failed;
        let _ = self.latency.add(&other.latency);
    }
}

/// 1 µs to 1 h at 3 significant figures; values past the top are clamped.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

/// A request being answered: its command (lowercase) and when it was read.
pub(crate) struct Started {
    name: crate::command::CommandName,
    at: Instant,
}

impl Started {
    /// A request of the command `name` read at `at` (one clock reading per batch of
    /// requests).
    /// `None` too for a name no command has: counters are kept for known commands only, so
    /// random names cannot grow them.
    pub(crate) fn new(name: &[u8], at: Instant) -> Option<Started> {
        let name = crate::command::CommandName::new(name)?;
        crate::command::is_known(&name).then_some(Started { name, at })
    }
}

/// How a request ended, for the counters.
pub(crate) enum Outcome {
    Ok,
    /// Refused before it ran, with this error reply (its first bytes).
    Rejected(Vec<u8>),
    /// Ran, and replied with this error (its first bytes).
    Failed(Vec<u8>),
}

/// The most error kinds counted, as redis-server's `ERROR_STATS_NUMBER`.
const MAX_ERROR_KINDS: usize = 128;

thread_local! {
    static COUNTERS: Counters = Counters::default();
    /// Per command (lowercase name).
    static COMMANDS: RefCell<HashMap<Box<[u8]>, CommandStat>> = RefCell::default();
    /// Error replies by their first word (`ERR`, `WRONGTYPE`, `CROSSSLOT`...).
    static ERRORS: RefCell<HashMap<Box<[u8]>, u64>> = RefCell::default();
    /// Requests queued on this core's upstream connections and not yet answered.
    static INFLIGHT: Cell<i64> = const { Cell::new(0) };
    /// Whether each upstream (by shard or node) was last seen up from this core.
    static UPSTREAM_UP: RefCell<Vec<Option<bool>>> = const { RefCell::new(Vec::new()) };
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
    /// Per command.
    pub(crate) commands: HashMap<Box<[u8]>, CommandStat>,
    /// Error replies by their first word.
    pub(crate) errors_by_kind: HashMap<Box<[u8]>, u64>,
    /// Requests waiting for an upstream's reply.
    pub(crate) inflight: i64,
    /// Each upstream's state as this core last saw it (none: never used).
    pub(crate) upstream_up: Vec<Option<bool>>,
}

/// Counts one request answered at `now`: its command's calls, time and outcome, and the error
/// reply's first word.
pub(crate) fn command_done(started: &Started, outcome: &Outcome, now: Instant) {
    let usec = (now.saturating_duration_since(started.at).as_micros() as u64).max(1);
    COMMANDS.with(|commands| {
        let mut commands = commands.borrow_mut();
        let name = started.name.as_bytes();
        let stat = match commands.get_mut(name) {
            Some(stat) => stat,
            None => commands.entry(name.into()).or_insert_with(CommandStat::new),
        };
        match outcome {
            Outcome::Rejected(_) => stat.rejected += 1,
            Outcome::Ok | Outcome::Failed(_) => {
                stat.calls += 1;
                stat.usec += usec;
                stat.latency.saturating_record(usec);
                if matches!(outcome, Outcome::Failed(_)) {
                    stat.failed += 1;
                }
            }
        }
    });
    if let Outcome::Rejected(reply) | Outcome::Failed(reply) = outcome {
        error_kind(reply);
    }
}

/// Counts an error reply (`-KIND text\r\n`) by its first word.
pub(crate) fn error_kind(reply: &[u8]) {
    let text = reply.strip_prefix(b"-").unwrap_or(reply);
    let end = text
        .iter()
        .position(|&b| b == b' ' || b == b'\r')
        .unwrap_or(text.len())
        .min(64);
    let kind = &text[..end];
    ERRORS.with(|errors| {
        let mut errors = errors.borrow_mut();
        let kinds = errors.len();
        match errors.get_mut(kind) {
            Some(n) => *n += 1,
            // As redis-server: at most 128 kinds are tracked (a script can make any error
            // text); errors of further kinds count in total_error_replies only.
            None if kinds >= MAX_ERROR_KINDS => {}
            None => {
                errors.insert(kind.into(), 1);
            }
        }
    });
}

/// A request was queued on an upstream connection (`1`) or answered (`-1`).
pub(crate) fn inflight(delta: i64) {
    INFLIGHT.with(|n| n.set(n.get() + delta));
}

/// Upstream `shard` was seen up or down from this core.
pub(crate) fn upstream_state(shard: usize, up: bool) {
    UPSTREAM_UP.with(|states| {
        let mut states = states.borrow_mut();
        if states.len() <= shard {
            states.resize(shard + 1, None);
        }
        states[shard] = Some(up);
    });
}

/// Records one upstream reply of `shard` that took `elapsed`.
pub(crate) fn record_latency(shard: usize, elapsed: Duration) {
    LATENCY.with(|latency| {
        let mut latency = latency.borrow_mut();
        while latency.len() <= shard {
            latency.push(histogram());
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

/// One connected client, counted while it lives (also when its task ends by a panic).
pub(crate) struct Connected(());

impl Connected {
    pub(crate) fn new() -> Connected {
        bump(|c| &c.clients, 1);
        Connected(())
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        bump(|c| &c.clients, -1);
    }
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
        commands: COMMANDS.with(|m| m.borrow().clone()),
        errors_by_kind: ERRORS.with(|m| m.borrow().clone()),
        inflight: INFLIGHT.with(Cell::get),
        upstream_up: UPSTREAM_UP.with(|s| s.borrow().clone()),
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
