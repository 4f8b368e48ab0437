//! Counters for INFO: each core counts its own clients, requests and errors in a thread-local
//! (no atomics, no sharing on the request path); INFO gathers every core's snapshot through
//! corio-mesh's `run_on_all` and adds them up.

use std::cell::Cell;

use corio::rt::CoreId;

/// One core's counters.
#[derive(Default)]
struct Counters {
    clients: Cell<u64>,
    requests: Cell<u64>,
    errors: Cell<u64>,
}

thread_local! {
    static COUNTERS: Counters = Counters::default();
}

/// A copy of one core's counters.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) core: usize,
    pub(crate) clients: u64,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
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
    })
}
