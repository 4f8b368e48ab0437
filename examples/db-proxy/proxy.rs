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
use crate::resp;
use crate::shard::{key_slot, ShardMap};
use crate::upstream::{Upstream, UpstreamConfig};

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

    /// How many shards or cluster nodes this core has connections for.
    pub(crate) fn upstream_count(&self) -> usize {
        self.upstreams.borrow().len()
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
}
