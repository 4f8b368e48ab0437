//! One core's proxy: the settings every core shares, its upstream connections, how keys are
//! routed to them (a fixed shard map, or a Redis Cluster's slot map), and the INFO text.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use corio::rt::CoreId;

use crate::cluster::{self, CoreView};
use crate::keys::Keys;
use crate::reads::ReadFrom;
use crate::shard::{key_slot, ShardMap};
use crate::upstream::{Upstream, UpstreamConfig};
use crate::{flow, resp, stats};

/// Settings every core shares (copied to each).
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) upstream: UpstreamConfig,
    pub(crate) max_clients: usize,
    /// `--client-query-buffer-limit`.
    pub(crate) query_buffer_limit: usize,
    /// `--client-output-buffer-limit`.
    pub(crate) client_output_limit: usize,
    pub(crate) max_pending: usize,
    /// Whether the upstreams are the embedded backends (which have no transactions and no
    /// blocking commands).
    pub(crate) embedded: bool,
    /// `--max-pinned`: connections pinned to clients (WATCH, blocking commands), in all.
    pub(crate) max_pinned: usize,
    pub(crate) client_write_timeout: Duration,
    /// How long a client may send nothing before it is disconnected (`None`: forever).
    pub(crate) client_idle_timeout: Option<Duration>,
    /// The password clients must AUTH with, if any.
    pub(crate) requirepass: Option<Arc<str>>,
    /// Users other than `default` (`--user NAME:PASSWORD`), checked by AUTH and HELLO.
    pub(crate) users: Arc<[(String, String)]>,
    /// Where reads go in cluster mode.
    pub(crate) read_from: ReadFrom,
}

/// A node to forward to, and the key whose slot a redirection must name (none: no keys).
pub(crate) type Target<'a> = (usize, Option<&'a [u8]>);

/// How keys find their upstream.
pub(crate) enum Router {
    /// `--upstream` shards: slot ranges split evenly over a fixed list.
    Shards(ShardMap),
    /// `--cluster`: the Redis Cluster's own slot map, kept fresh (see [`cluster`]).
    Cluster(CoreView),
}

/// One core's proxy: its upstream connections and counters.
pub(crate) struct Proxy {
    pub(crate) core: CoreId,
    pub(crate) config: Config,
    pub(crate) limits: resp::Limits,
    pub(crate) router: Router,
    /// One connection per shard or cluster node, by number; grown as a cluster's nodes
    /// appear.
    upstreams: RefCell<Vec<Rc<Upstream>>>,
    /// The same for RESP3 clients (`HELLO 3`): connections that sent `HELLO 3` themselves,
    /// made when a RESP3 client first needs one.
    upstreams3: RefCell<Vec<Option<Rc<Upstream>>>>,
}

impl Proxy {
    /// A core's proxy over `addrs` (the shards, or a cluster's seeds).
    pub(crate) fn new(
        core: CoreId,
        config: Config,
        limits: resp::Limits,
        router: Router,
        addrs: &[std::net::SocketAddr],
    ) -> Proxy {
        let upstreams = addrs
            .iter()
            .enumerate()
            .map(|(i, &addr)| Upstream::new(i, addr, config.upstream.clone()))
            .collect();
        Proxy {
            core,
            config,
            limits,
            router,
            upstreams: RefCell::new(upstreams),
            upstreams3: RefCell::default(),
        }
    }

    /// The connection to `node` for a client of protocol 3 (`resp3`) or 2.
    pub(crate) fn upstream_for(&self, node: usize, resp3: bool) -> Rc<Upstream> {
        let upstream = self.upstream(node);
        if !resp3 {
            return upstream;
        }
        let mut pool = self.upstreams3.borrow_mut();
        if pool.len() <= node {
            pool.resize(node + 1, None);
        }
        pool[node]
            .get_or_insert_with(|| {
                let mut config = self.config.upstream.clone();
                config.resp3 = true;
                Upstream::new(node, upstream.addr, config)
            })
            .clone()
    }

    /// The connection to shard or node `node`.
    pub(crate) fn upstream(&self, node: usize) -> Rc<Upstream> {
        let mut upstreams = self.upstreams.borrow_mut();
        while upstreams.len() <= node {
            let number = upstreams.len();
            let addr = cluster::node_addr(number).expect("node numbers come from the node list");
            upstreams.push(Upstream::new(number, addr, self.config.upstream.clone()));
        }
        upstreams[node].clone()
    }

    /// Whether this proxy fronts a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.router, Router::Cluster(_))
    }

    /// The shard or node serving `slot` (none: a cluster slot no node serves).
    pub(crate) fn node_of_slot(&self, slot: u16) -> Option<usize> {
        match &self.router {
            Router::Shards(shards) => Some(shards.shard_of_slot(slot)),
            Router::Cluster(view) => view.node_of(slot),
        }
    }

    /// Whether reads may go to replicas (cluster mode, `--read-from` other than `master`).
    pub(crate) fn reads_from_replicas(&self) -> bool {
        self.is_cluster() && self.config.read_from != ReadFrom::Master
    }

    /// Where a read of a slot served by `master` goes under `--read-from`: a replica, the
    /// master, or `None` (`replica` mode and the master has no online replica).
    pub(crate) fn read_node(&self, master: usize) -> Option<usize> {
        let Router::Cluster(view) = &self.router else {
            return Some(master);
        };
        match self.config.read_from {
            ReadFrom::Master => Some(master),
            ReadFrom::Replica => view.replica_of(master),
            ReadFrom::PreferReplica => view.replica_of(master).or(Some(master)),
        }
    }

    /// The node a command whose keys must share a slot goes to, with its first key: their slot's
    /// (with `--upstream` shards, their shard's); slot 0's for a command without keys, or whose
    /// key count is not valid (the upstream then answers with its own error). `Err` when the
    /// keys' slots differ.
    pub(crate) fn same_slot_node<'a>(
        &self,
        keys: &Keys,
        args: &[&'a [u8]],
    ) -> Result<Option<Target<'a>>, ()> {
        let positions = keys.positions(args).unwrap_or_default();
        let Some(&first) = positions.first() else {
            return Ok(self.node_of_slot(0).map(|node| (node, None)));
        };
        let group = self.group_of_key(args[first]);
        if positions
            .iter()
            .any(|&i| self.group_of_key(args[i]) != group)
        {
            return Err(());
        }
        Ok(self
            .node_of_key(args[first])
            .map(|node| (node, Some(args[first]))))
    }

    /// The shard or node serving `key`.
    pub(crate) fn node_of_key(&self, key: &[u8]) -> Option<usize> {
        self.node_of_slot(key_slot(key))
    }

    /// What a multi-key request is split by: the shard, or in a cluster the slot (a node
    /// refuses keys of different slots in one request).
    pub(crate) fn group_of_key(&self, key: &[u8]) -> usize {
        match &self.router {
            Router::Shards(shards) => shards.shard_of_key(key),
            Router::Cluster(_) => usize::from(key_slot(key)),
        }
    }

    /// The node a split part's group goes to (see [`group_of_key`](Self::group_of_key)).
    pub(crate) fn node_of_group(&self, group: usize) -> Option<usize> {
        match &self.router {
            Router::Shards(_) => Some(group),
            Router::Cluster(view) => view.node_of(group as u16),
        }
    }

    /// Every shard, or every node serving slots: where a fan-out (DBSIZE) goes.
    pub(crate) fn fanout_nodes(&self) -> Vec<usize> {
        match &self.router {
            Router::Shards(_) => (0..self.upstreams.borrow().len()).collect(),
            Router::Cluster(view) => view.masters(),
        }
    }

    /// The INFO text: every core's counters (gathered by the caller) and the shard map.
    pub(crate) fn info(&self, cores: &[stats::Snapshot]) -> String {
        let sum = |f: fn(&stats::Snapshot) -> u64| cores.iter().map(f).sum::<u64>();
        let mut info = String::from("# Server\r\nredis_version:7.0.0\r\nproxy:corio db-proxy\r\n");
        info += &format!(
            "cores:{}\r\nserved_by_core:{}\r\n",
            cores.len(),
            self.core.0
        );
        info += "# Clients\r\n";
        info += &format!("connected_clients:{}\r\n", sum(|c| c.clients));
        info += &format!(
            "pinned_connections:{}\r\nmax_pinned:{}\r\n",
            crate::session::pinned::pinned_connections(),
            self.config.max_pinned
        );
        info += "# Memory\r\n";
        // As redis-server: what the allocator has handed out, and what is resident.
        info += &format!("used_memory:{}\r\n", allocated_bytes());
        info += &format!("used_memory_rss:{}\r\n", resident_bytes());
        let pending = cores.iter().map(|c| c.buffer_pending);
        info += &format!("buffer_memory:{}\r\n", flow::used_exactly(pending));
        info += &format!("max_buffer_memory:{}\r\n", flow::budget());
        info += "# CPU\r\n";
        let (system, user) = cpu_seconds();
        info += &format!("used_cpu_sys:{system:.6}\r\nused_cpu_user:{user:.6}\r\n");
        info += "# Stats\r\n";
        info += &format!("total_commands_processed:{}\r\n", sum(|c| c.requests));
        info += &format!("total_error_replies:{}\r\n", sum(|c| c.errors));
        for c in cores {
            info += &format!(
                "core{}:clients={},commands={},errors={}\r\n",
                c.core, c.clients, c.requests, c.errors
            );
        }
        match &self.router {
            Router::Shards(shards) => {
                info += "# Shards\r\n";
                for (i, upstream) in self.upstreams.borrow().iter().enumerate() {
                    let slots = shards.slots_of(i);
                    info += &format!(
                        "shard{i}:addr={},slots={}-{}\r\n",
                        upstream.addr,
                        slots.start,
                        slots.end - 1
                    );
                }
            }
            Router::Cluster(_) => {
                info += &cluster::info();
                let sum = |f: fn(&stats::Snapshot) -> u64| cores.iter().map(f).sum::<u64>();
                info += &format!(
                    "cluster_redirections:moved={},ask={},tryagain={}\r\n",
                    sum(|c| c.moved),
                    sum(|c| c.ask),
                    sum(|c| c.tryagain)
                );
            }
        }
        info += "# Runtime\r\n";
        let mut total = corio::rt::Metrics::default();
        for c in cores {
            total.merge(&c.runtime);
        }
        for (name, value) in total.fields() {
            info += &format!("corio_{name}:{value}\r\n");
        }
        for c in cores {
            let fields: Vec<String> = c
                .runtime
                .fields()
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            info += &format!("core{}_runtime:{}\r\n", c.core, fields.join(","));
        }
        info += "# Latency\r\n";
        let sampled = cores.iter().map(|c| c.latency.len()).max().unwrap_or(0);
        for i in 0..sampled.max(self.upstreams.borrow().len()) {
            let mut merged: Option<hdrhistogram::Histogram<u64>> = None;
            for histogram in cores.iter().filter_map(|c| c.latency.get(i)) {
                match &mut merged {
                    Some(m) => {
                        let _ = m.add(histogram);
                    }
                    None => merged = Some(histogram.clone()),
                }
            }
            let Some(h) = merged.filter(|h| !h.is_empty()) else {
                info += &format!("shard{i}_latency_usec:count=0\r\n");
                continue;
            };
            info += &format!(
                "shard{i}_latency_usec:count={},p50={},p90={},p99={},p999={},max={}\r\n",
                h.len(),
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.9),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            );
        }
        info
    }
}

/// This process's resident set size in bytes, from `/proc/self/statm` (0 if unreadable).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads system configuration.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

/// Bytes the allocator has handed out and not had back (glibc's `mallinfo2`: `uordblks` plus
/// the memory-mapped blocks); 0 where that is not available.
fn allocated_bytes() -> u64 {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        (info.uordblks + info.hblkhd) as u64
    }
    #[cfg(not(target_env = "gnu"))]
    0
}

/// The process's CPU time so far, system and user, in seconds (`getrusage(RUSAGE_SELF)`).
fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage writes one rusage to the valid, exclusive pointer it is given; a
    // zeroed rusage is a valid value of the plain C struct.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return (0.0, 0.0);
        }
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (seconds(usage.ru_stime), seconds(usage.ru_utime))
}
