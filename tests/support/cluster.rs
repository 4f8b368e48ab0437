//! A real Redis Cluster for the tests: 3 masters and 3 replicas from Debian's redis-server on
//! loopback ports below 32768 (each node's bus port is its port + 10000), a 1 s node timeout
//! and `cluster-require-full-coverage no`, created with
//! `redis-cli --cluster create`, waited for until `cluster_state:ok` and every replica in
//! sync, and killed and reaped on drop.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{kill_and_reap, run_tool, spawn, Reply, RespConn, TempDir, INSTALL_HINT, LOOPBACK};

/// The next port tried for a cluster node: a range well below the ephemeral one, with room
/// for the bus ports (+10000) below it too.
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);
const PORTS: std::ops::Range<u16> = 20000..22700;

/// How long creating a cluster and waiting for it may take.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);

/// One node of a [`RedisCluster`].
struct Node {
    port: u16,
    child: Option<Child>,
}

/// A running Redis Cluster, killed and reaped on drop.
pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: TempDir,
}

/// Whether `port` and its bus port are both free now.
fn ports_free(port: u16) -> bool {
    let free = |p: u16| std::net::TcpListener::bind((LOOPBACK, p)).is_ok();
    free(port) && free(port + 10000)
}

fn next_ports(n: usize) -> Vec<u16> {
    if NEXT_PORT.load(Ordering::Relaxed) == 0 {
        // Spread test processes over the range.
        let start = PORTS.start + (std::process::id() % 2000) as u16;
        let _ = NEXT_PORT.compare_exchange(0, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    let mut ports = Vec::new();
    while ports.len() < n {
        let mut port = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        if port >= PORTS.end {
            port = PORTS.start + port % (PORTS.end - PORTS.start);
            NEXT_PORT.store(port + 1, Ordering::Relaxed);
        }
        if ports_free(port) {
            ports.push(port);
        }
    }
    ports
}

impl RedisCluster {
    /// Starts 6 nodes, creates a cluster of 3 masters with one replica each, and waits until
    /// every node says `cluster_state:ok` and every master has its replica connected.
    #[track_caller]
    pub fn start() -> RedisCluster {
        let dir = TempDir::new("cluster");
        let ports = next_ports(6);
        let mut nodes = Vec::new();
        for &port in &ports {
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("node directory");
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                // The other masters keep serving while one has failed (Redis's default, yes,
                // makes every node answer CLUSTERDOWN until the failover).
                .args(["--cluster-require-full-coverage", "no"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .arg("--dir")
                .arg(&node_dir)
                .arg("--logfile")
                .arg(node_dir.join("redis.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let child = spawn(&mut cmd, "redis-server", INSTALL_HINT);
            nodes.push(Node {
                port,
                child: Some(child),
            });
        }
        let cluster = RedisCluster { nodes, dir };
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        for &port in &ports {
            while !super::ping(port) {
                assert!(Instant::now() < deadline, "node {port} never answered PING");
                thread::sleep(Duration::from_millis(20));
            }
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = run_tool("redis-cli", &args, None, CLUSTER_TIMEOUT);
        assert!(
            out.stdout.contains("All 16384 slots covered"),
            "redis-cli --cluster create failed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        cluster.wait_healthy(deadline);
        cluster
    }

    /// Waits until every live node says `cluster_state:ok` and every master has a replica
    /// connected.
    #[track_caller]
    fn wait_healthy(&self, deadline: Instant) {
        loop {
            let ok = self.live_ports().iter().all(|&port| {
                let mut conn = RespConn::connect(port);
                let info = text(conn.cmd(&["CLUSTER", "INFO"]));
                let replication = text(conn.cmd(&["INFO", "replication"]));
                info.contains("cluster_state:ok")
                    && (replication.contains("role:slave")
                        && replication.contains("master_link_status:up")
                        || replication.contains("connected_slaves:1"))
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster never became healthy"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ports of the nodes still running.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// A seed for the proxy: the first live node's port.
    pub fn seed(&self) -> u16 {
        self.live_ports()[0]
    }

    /// The port of the master serving `slot`, as node `via` sees it.
    #[track_caller]
    pub fn master_of(&self, slot: u16, via: u16) -> u16 {
        let nodes = text(RespConn::connect(via).cmd(&["CLUSTER", "NODES"]));
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 8 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let port: u16 = fields[1]
                .split(['@', ','])
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .expect("a node address");
            for range in &fields[8..] {
                let (lo, hi) = match range.split_once('-') {
                    Some((lo, hi)) => (lo.parse::<u16>(), hi.parse::<u16>()),
                    None => (range.parse(), range.parse()),
                };
                if let (Ok(lo), Ok(hi)) = (lo, hi) {
                    if (lo..=hi).contains(&slot) {
                        return port;
                    }
                }
            }
        }
        panic!("no master serves slot {slot}:\n{nodes}");
    }

    /// The node id of the node on `port`.
    #[track_caller]
    pub fn node_id(&self, port: u16) -> String {
        text(RespConn::connect(port).cmd(&["CLUSTER", "MYID"]))
    }

    /// Kills (SIGKILL) the node on `port`.
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port) {
            if let Some(mut child) = node.child.take() {
                kill_and_reap(&mut child);
            }
        }
    }

    /// The directory the nodes run in (their logs are `PORT/redis.log`).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                kill_and_reap(&mut child);
            }
        }
    }
}

/// The text of a bulk or simple reply.
#[track_caller]
pub fn text(reply: Reply) -> String {
    match reply {
        Reply::Bulk(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Reply::Simple(text) => text,
        other => panic!("expected text, got {other:?}"),
    }
}
