//! The Redis Cluster rows: a cluster of 3 masters (no replicas) on CPU 0, loaded from CPU 1
//! by redis-benchmark with the same load two ways: `--cluster` straight at the nodes, and
//! through db-proxy (`--cluster`, one core, also on CPU 0). SET and GET, 50 connections,
//! keys spread over 100,000, `-P 1` and `-P 16`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::proxy::{db_proxy_with, redis_benchmark_with, spawn, wait_ping, Process};
use crate::{Row, Tool};

/// Requests per second each pipeline depth reaches here, roughly: sizes the runs so they
/// last about the case time.
fn requests(pipeline: usize, duration: Duration) -> u64 {
    let rate = if pipeline == 1 { 80_000.0 } else { 350_000.0 };
    ((rate * duration.as_secs_f64()) as u64).max(20_000)
}

/// Three free ports below 32768 whose bus ports (+10000) are free too.
fn cluster_ports() -> Vec<u16> {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let start = 22000 + (std::process::id() % 500) as u16;
    (start..22700)
        .filter(|&p| free(p) && free(p + 10000))
        .take(3)
        .collect()
}

fn start_cluster() -> Result<(Vec<Process>, u16), String> {
    let ports = cluster_ports();
    if ports.len() < 3 {
        return Err("no free ports for a cluster".into());
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-bench");
    let mut nodes = Vec::new();
    for &port in &ports {
        let node_dir = dir.join(port.to_string());
        let _ = std::fs::remove_dir_all(&node_dir);
        std::fs::create_dir_all(&node_dir).map_err(|e| format!("{}: {e}", node_dir.display()))?;
        nodes.push(spawn(
            Command::new("taskset")
                .args(["-c", "0", "redis-server", "--port", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .arg("--dir")
                .arg(&node_dir),
            Tool::RedisServer,
        )?);
        wait_ping(port)?;
    }
    let mut create = Command::new("redis-cli");
    create.args(["--cluster", "create"]);
    for port in &ports {
        create.arg(format!("127.0.0.1:{port}"));
    }
    let out = create
        .arg("--cluster-yes")
        .output()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    if !String::from_utf8_lossy(&out.stdout).contains("All 16384 slots covered") {
        return Err(format!(
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = ports.iter().all(|p| {
            Command::new("redis-cli")
                .args(["-p", &p.to_string(), "cluster", "info"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
        });
        if ok {
            return Ok((nodes, ports[0]));
        }
        if Instant::now() > deadline {
            return Err("the cluster never reached cluster_state:ok".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn run(duration: Duration, rows: &mut Vec<Row>) -> Result<(), String> {
    let (_nodes, seed) = start_cluster()?;
    let (_proxy, proxy_port) = db_proxy_with(&["--cluster".into(), format!("127.0.0.1:{seed}")])?;
    for pipeline in [1, 16] {
        for test in ["set", "get"] {
            let case = format!(
                "Redis Cluster {}, 50 conns, -P {pipeline} (redis-benchmark)",
                test.to_uppercase()
            );
            let n = requests(pipeline, duration);
            let direct = redis_benchmark_with(&["--cluster"], seed, test, pipeline, n)?;
            rows.push(Row::new(
                "cluster",
                &case,
                "cluster direct (--cluster)",
                "req/s",
                direct,
            ));
            let proxied = redis_benchmark_with(&[], proxy_port, test, pipeline, n)?;
            rows.push(Row::new(
                "cluster",
                &case,
                "db-proxy (corio)",
                "req/s",
                proxied,
            ));
        }
    }
    Ok(())
}
