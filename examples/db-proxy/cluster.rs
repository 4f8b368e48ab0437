//! Cluster mode: the slot map of a Redis Cluster, learnt from its nodes and kept fresh, shared
//! by every core without a lock on the request path.
//!
//! - **Nodes** are numbered in the order the proxy first sees them (a seed, a map, a MOVED);
//!   the number never changes, so each core keeps one upstream connection per node number
//!   and a node that leaves and comes back keeps its connections' statistics.
//! - **The map** (slot to node, 16384 entries) is published as an `Arc` with a version
//!   number. A core checks the version (one relaxed atomic load) before each lookup and takes
//!   the lock only when it changed. A MOVED patches the slot on the core that saw it at
//!   once, until the next map arrives.
//! - **Refreshes** run on one thread, so at most one is in flight per process; triggers
//!   (MOVED, a node down, CLUSTERDOWN, the periodic timer) are coalesced and at most one
//!   refresh runs per [`MIN_GAP`]. A refresh asks up to [`VIEWS`] nodes (the map's masters,
//!   then the seeds) for `CLUSTER INFO` and `CLUSTER SHARDS` (`CLUSTER SLOTS` on servers
//!   without it) and keeps the view of the node with the highest `cluster_current_epoch`,
//!   so a node on the losing side of a partition cannot flip the map back. Spec: Redis
//!   Cluster's specification, "Redirection and resharding" and "Client and Proxies handling".

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::cell::{Cell, RefCell};

mod view;

use view::fetch_view;

/// The number of hash slots.
pub(crate) const SLOTS: usize = 16384;
/// A slot no node serves.
const NO_NODE: u32 = u32::MAX;
/// At most one refresh per this long, however many triggers arrive.
const MIN_GAP: Duration = Duration::from_millis(100);
/// Views compared per refresh.
const VIEWS: usize = 3;
/// Refreshes in a row whose best view is older than the map before it is taken anyway (a
/// cluster recreated from scratch starts its epochs again).
const STALE_VIEWS: u32 = 30;
/// Connect, read and write timeout of the refresh thread's sockets.
const IO_TIMEOUT: Duration = Duration::from_millis(1000);

/// Why a refresh ran (INFO counts each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// (Index 0 counts the refresh made at start.)
    Periodic = 1,
    Moved = 2,
    NodeDown = 3,
    ClusterDown = 4,
}

const CAUSES: [&str; 5] = ["start", "periodic", "moved", "node_down", "clusterdown"];

/// One view of the cluster: which node serves each slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotMap {
    /// Node number per slot ([`NO_NODE`] when none).
    slots: Vec<u32>,
    /// Each master's online replicas, by node number.
    replicas: HashMap<u32, Vec<u32>>,
    /// The answering node's `cluster_current_epoch`.
    pub(crate) epoch: u64,
    /// The node whose view this is.
    pub(crate) source: SocketAddr,
}

impl SlotMap {
    /// The node serving `slot`.
    pub(crate) fn node_of(&self, slot: u16) -> Option<usize> {
        match self.slots[usize::from(slot) % SLOTS] {
            NO_NODE => None,
            node => Some(node as usize),
        }
    }

    /// The online replicas of master `node`.
    pub(crate) fn replicas_of(&self, node: usize) -> &[u32] {
        self.replicas.get(&(node as u32)).map_or(&[], Vec::as_slice)
    }

    /// Every node that serves a slot, with how many, in node order.
    pub(crate) fn masters(&self) -> Vec<(usize, usize)> {
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for &node in self.slots.iter().filter(|&&n| n != NO_NODE) {
            *counts.entry(node).or_default() += 1;
        }
        let mut masters: Vec<(usize, usize)> =
            counts.into_iter().map(|(n, c)| (n as usize, c)).collect();
        masters.sort_unstable();
        masters
    }
}

/// The process's view of the cluster.
struct Shared {
    nodes: Vec<SocketAddr>,
    map: Arc<SlotMap>,
    /// Triggers waiting for the refresh thread, by cause.
    wanted: [bool; 5],
    /// Refreshes run, by cause.
    refreshes: [u64; 5],
    /// The last refresh's failure, if it failed.
    last_error: Option<String>,
    /// Views in a row older than the map, ignored (see [`STALE_VIEWS`]).
    stale_views: u32,
}

static SHARED: Mutex<Option<Shared>> = Mutex::new(None);
static WAKE: Condvar = Condvar::new();
/// Bumped each time a new map is published.
static VERSION: AtomicU64 = AtomicU64::new(0);

fn shared() -> MutexGuard<'static, Option<Shared>> {
    SHARED.lock().unwrap_or_else(|e| e.into_inner())
}

fn number_in(nodes: &mut Vec<SocketAddr>, addr: SocketAddr) -> usize {
    match nodes.iter().position(|&n| n == addr) {
        Some(i) => i,
        None => {
            nodes.push(addr);
            nodes.len() - 1
        }
    }
}

/// The address of node `number`.
pub(crate) fn node_addr(number: usize) -> Option<SocketAddr> {
    shared().as_ref()?.nodes.get(number).copied()
}

/// Asks the refresh thread for a new map.
pub(crate) fn request_refresh(cause: Cause) {
    if let Some(shared) = shared().as_mut() {
        shared.wanted[cause as usize] = true;
        WAKE.notify_one();
    }
}

/// What INFO shows of cluster mode: the map's source and epoch, slots per node, refreshes by
/// cause and the last refresh error.
pub(crate) fn info() -> String {
    let guard = shared();
    let Some(shared) = guard.as_ref() else {
        return String::new();
    };
    let map = &shared.map;
    let mut out = String::from("# Cluster\r\ncluster_enabled:1\r\n");
    out += &format!("cluster_map_source:{}\r\n", map.source);
    out += &format!("cluster_map_epoch:{}\r\n", map.epoch);
    out += &format!(
        "cluster_map_version:{}\r\n",
        VERSION.load(Ordering::Relaxed)
    );
    let covered = map.slots.iter().filter(|&&n| n != NO_NODE).count();
    out += &format!("cluster_slots_served:{covered}\r\n");
    let refreshes: Vec<String> = CAUSES
        .iter()
        .zip(shared.refreshes)
        .map(|(cause, n)| format!("{cause}={n}"))
        .collect();
    out += &format!(
        "cluster_refreshes:{},{}\r\n",
        shared.refreshes.iter().sum::<u64>(),
        refreshes.join(",")
    );
    if let Some(error) = &shared.last_error {
        out += &format!("cluster_refresh_error:{error}\r\n");
    }
    for (node, slots) in map.masters() {
        let replicas: Vec<String> = map
            .replicas_of(node)
            .iter()
            .map(|&r| shared.nodes[r as usize].to_string())
            .collect();
        out += &format!(
            "cluster_node{node}:addr={},slots={slots},replicas={}\r\n",
            shared.nodes[node],
            replicas.join("|")
        );
    }
    out
}

/// Learns the cluster from `seeds` (any one reachable is enough) and starts the refresh
/// thread, which refreshes every `interval` and on demand. Returns the first map.
///
/// # Errors
/// When no seed gives a usable view (each seed's error is named).
pub(crate) fn start(
    seeds: Vec<SocketAddr>,
    interval: Duration,
    password: Option<Arc<str>>,
) -> io::Result<Arc<SlotMap>> {
    let mut nodes = Vec::new();
    for &seed in &seeds {
        number_in(&mut nodes, seed);
    }
    let (map, errors) = best_view(&seeds, &mut nodes, password.as_deref());
    let Some(map) = map else {
        return Err(io::Error::new(
            io::ErrorKind::NotConnected,
            format!("no cluster seed gave a slot map: {}", errors.join("; ")),
        ));
    };
    let map = Arc::new(map);
    *shared() = Some(Shared {
        nodes,
        map: map.clone(),
        wanted: [false; 5],
        refreshes: [1, 0, 0, 0, 0],
        last_error: None,
        stale_views: 0,
    });
    VERSION.store(1, Ordering::Relaxed);
    std::thread::Builder::new()
        .name("db-proxy-cluster".into())
        .spawn(move || refresh_loop(seeds, interval, password))?;
    Ok(map)
}

/// The refresh thread: waits for a trigger or the interval, then refreshes.
fn refresh_loop(seeds: Vec<SocketAddr>, interval: Duration, password: Option<Arc<str>>) {
    let mut last = Instant::now();
    loop {
        let cause = {
            let mut guard = shared();
            let deadline = last + interval;
            loop {
                let shared = guard.as_mut().expect("cluster mode started");
                if let Some(i) = shared.wanted.iter().position(|&w| w) {
                    shared.wanted = [false; 5];
                    break i;
                }
                let now = Instant::now();
                if now >= deadline {
                    break Cause::Periodic as usize;
                }
                guard = WAKE
                    .wait_timeout(guard, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        };
        let since = last.elapsed();
        if since < MIN_GAP {
            std::thread::sleep(MIN_GAP - since);
        }
        last = Instant::now();
        // A refresh that panics (a bug) must not end the thread and freeze the map.
        let refreshed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            refresh(&seeds, cause, password.as_deref())
        }));
        if refreshed.is_err() {
            eprintln!("db-proxy: a cluster map refresh panicked; the next one will retry");
        }
    }
}

/// One refresh: ask the map's masters, then the seeds; publish the best view if it differs.
fn refresh(seeds: &[SocketAddr], cause: usize, password: Option<&str>) {
    let (mut nodes, candidates) = {
        let guard = shared();
        let shared = guard.as_ref().expect("cluster mode started");
        let mut candidates: Vec<SocketAddr> = shared
            .map
            .masters()
            .into_iter()
            .map(|(node, _)| shared.nodes[node])
            .collect();
        for seed in seeds {
            if !candidates.contains(seed) {
                candidates.push(*seed);
            }
        }
        (shared.nodes.clone(), candidates)
    };
    let (view, errors) = best_view(&candidates, &mut nodes, password);
    let mut guard = shared();
    let shared = guard.as_mut().expect("cluster mode started");
    shared.refreshes[cause] += 1;
    // The view numbered nodes on a copy of the list: a MOVED may have numbered others
    // meanwhile, so translate its numbers into the shared list's.
    let numbers: Vec<u32> = nodes
        .iter()
        .map(|&addr| number_in(&mut shared.nodes, addr) as u32)
        .collect();
    match view {
        Some(mut view) => {
            for node in view.slots.iter_mut().filter(|n| **n != NO_NODE) {
                *node = numbers[*node as usize];
            }
            view.replicas = view
                .replicas
                .iter()
                .map(|(master, replicas)| {
                    let replicas = replicas.iter().map(|&r| numbers[r as usize]).collect();
                    (numbers[*master as usize], replicas)
                })
                .collect();
            shared.last_error = None;
            if view.epoch < shared.map.epoch && shared.stale_views < STALE_VIEWS {
                // A node behind a partition, or an old master: keep the newer map.
                shared.stale_views += 1;
                shared.last_error = Some(format!(
                    "ignored {}'s view of epoch {} (the map's is {})",
                    view.source, view.epoch, shared.map.epoch
                ));
                return;
            }
            shared.stale_views = 0;
            if *shared.map != view {
                shared.map = Arc::new(view);
            }
            // Even an unchanged map ends the cores' MOVED patches, which it contradicts.
            VERSION.fetch_add(1, Ordering::Release);
        }
        None => shared.last_error = Some(errors.join("; ")),
    }
}

/// Asks `candidates` in turn until [`VIEWS`] have answered; the view with the highest epoch
/// (ties: the most slots served, then the first asked), and the errors met.
fn best_view(
    candidates: &[SocketAddr],
    nodes: &mut Vec<SocketAddr>,
    password: Option<&str>,
) -> (Option<SlotMap>, Vec<String>) {
    let mut best: Option<SlotMap> = None;
    let mut errors = Vec::new();
    let mut answered = 0;
    for &addr in candidates {
        if answered == VIEWS {
            break;
        }
        match fetch_view(addr, nodes, password) {
            Ok(view) => {
                answered += 1;
                let served = |m: &SlotMap| m.slots.iter().filter(|&&n| n != NO_NODE).count();
                let better = match &best {
                    None => true,
                    Some(b) => (view.epoch, served(&view)) > (b.epoch, served(b)),
                };
                if better {
                    best = Some(view);
                }
            }
            Err(err) => errors.push(format!("{addr}: {err}")),
        }
    }
    (best, errors)
}

/// One core's copy of the map, with the slots its MOVED replies patched since.
pub(crate) struct CoreView {
    map: RefCell<Arc<SlotMap>>,
    version: Cell<u64>,
    patches: RefCell<HashMap<u16, usize>>,
    /// Round-robin position among a master's replicas.
    turn: Cell<usize>,
}

impl CoreView {
    pub(crate) fn new(map: Arc<SlotMap>) -> CoreView {
        CoreView {
            map: RefCell::new(map),
            version: Cell::new(0),
            patches: RefCell::default(),
            turn: Cell::new(0),
        }
    }

    /// Takes the published map if it changed since this core last looked.
    fn update(&self) {
        let version = VERSION.load(Ordering::Acquire);
        if version != self.version.get() {
            if let Some(shared) = shared().as_ref() {
                *self.map.borrow_mut() = shared.map.clone();
            }
            self.version.set(version);
            self.patches.borrow_mut().clear();
        }
    }

    /// The node serving `slot`, if any.
    pub(crate) fn node_of(&self, slot: u16) -> Option<usize> {
        self.update();
        let patches = self.patches.borrow();
        if !patches.is_empty() {
            if let Some(&node) = patches.get(&slot) {
                return Some(node);
            }
        }
        self.map.borrow().node_of(slot)
    }

    /// A MOVED said `slot` is served by `node`: route it there until the next map.
    pub(crate) fn patch(&self, slot: u16, node: usize) {
        self.update();
        self.patches.borrow_mut().insert(slot % SLOTS as u16, node);
    }

    /// One of master `node`'s online replicas, taken in turn; `None` if it has none.
    pub(crate) fn replica_of(&self, node: usize) -> Option<usize> {
        self.update();
        let map = self.map.borrow();
        let replicas = map.replicas_of(node);
        if replicas.is_empty() {
            return None;
        }
        let turn = self.turn.get();
        self.turn.set(turn.wrapping_add(1));
        Some(replicas[turn % replicas.len()] as usize)
    }

    /// The nodes serving slots now (for fan-outs such as DBSIZE).
    pub(crate) fn masters(&self) -> Vec<usize> {
        self.update();
        self.map
            .borrow()
            .masters()
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }
}

/// A redirection in an upstream's error reply (Redis Cluster's specification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Redirect {
    /// `-MOVED <slot> <host:port>`: the slot lives there now.
    Moved(u16, String),
    /// `-ASK <slot> <host:port>`: this one request goes there, after `ASKING`.
    Ask(u16, String),
    /// `-TRYAGAIN ...`: a multi-key request during a migration; retry shortly.
    TryAgain,
}

/// The redirection an error reply carries, if any.
pub(crate) fn redirect(reply: &[u8]) -> Option<Redirect> {
    let text = reply.strip_prefix(b"-")?;
    let text = std::str::from_utf8(text).ok()?.trim_end();
    let mut words = text.split(' ');
    let kind = words.next()?;
    if kind == "TRYAGAIN" {
        return Some(Redirect::TryAgain);
    }
    let slot: u16 = words
        .next()?
        .parse()
        .ok()
        .filter(|&s| usize::from(s) < SLOTS)?;
    let addr = words.next()?.to_owned();
    match kind {
        "MOVED" => Some(Redirect::Moved(slot, addr)),
        "ASK" => Some(Redirect::Ask(slot, addr)),
        _ => None,
    }
}

impl Redirect {
    /// The slot a MOVED or ASK is about.
    pub(crate) fn slot(&self) -> Option<u16> {
        match self {
            Redirect::Moved(slot, _) | Redirect::Ask(slot, _) => Some(*slot),
            Redirect::TryAgain => None,
        }
    }
}

/// The number of the node a redirection's `ip:port` names (an empty host: the node that
/// replied), if a refresh has learnt that node from the cluster. `Err(true)`: an address the
/// map does not name (yet); `Err(false)`: not an IP address and port (hostnames are not
/// resolved on a core).
pub(crate) fn redirect_node(target: &str, replied: SocketAddr) -> Result<usize, bool> {
    let (host, port) = target.rsplit_once(':').ok_or(false)?;
    let port: u16 = port.parse().map_err(|_| false)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host {
        "" => replied.ip(),
        host => host.parse().map_err(|_| false)?,
    };
    let addr = SocketAddr::new(ip, port);
    let guard = shared();
    let shared = guard.as_ref().ok_or(false)?;
    shared.nodes.iter().position(|&n| n == addr).ok_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirections_are_parsed_as_the_spec_writes_them() {
        assert_eq!(
            redirect(b"-MOVED 3999 127.0.0.1:6381\r\n"),
            Some(Redirect::Moved(3999, "127.0.0.1:6381".into()))
        );
        assert_eq!(
            redirect(b"-ASK 3999 127.0.0.1:6381\r\n"),
            Some(Redirect::Ask(3999, "127.0.0.1:6381".into()))
        );
        assert_eq!(
            redirect(b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"),
            Some(Redirect::TryAgain)
        );
        assert_eq!(redirect(b"-ERR wrong\r\n"), None);
        assert_eq!(redirect(b"+OK\r\n"), None);
        assert_eq!(redirect(b"-MOVED x y\r\n"), None);
    }
}
