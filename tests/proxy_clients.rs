//! Real client libraries through db-proxy, in front of two real redis-servers: each runs its
//! own test of pipelines, transactions, WATCH, pub/sub, blocking pops and SCAN
//! (`tests/clients/`).
//!
//! Needs redis-server and Debian's python3-redis (`apt-get install -y redis-server
//! redis-tools python3-redis`).

mod support;

use std::path::Path;
use std::time::Duration;

use support::{run_tool, shard_of, Proxy, RedisServer};

#[test]
fn redis_py_drives_pipelines_transactions_pubsub_and_blocking_pops() {
    let servers = [RedisServer::start(), RedisServer::start()];
    let proxy = Proxy::start(&[servers[0].port(), servers[1].port()]);
    // Debian's python, where apt installs python3-redis.
    let python = "/usr/bin/python3";
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/redis_py.py");
    let script = script.to_str().expect("a UTF-8 path");
    let port = proxy.port().to_string();
    let apart = |shard| {
        (0..1000)
            .map(|i| format!("apart{i}"))
            .find(|k| shard_of(k, 2) == shard)
            .unwrap()
    };
    let (a, b) = (apart(0), apart(1));
    let args = [script, &port, &a, &b];
    let out = run_tool(python, &args, None, Duration::from_secs(60));
    assert!(
        out.status.success() && out.stdout.contains("redis-py OK"),
        "redis-py failed:\n{}\n{}\n--- proxy ---\n{}",
        out.stdout,
        out.stderr,
        proxy.stderr()
    );
}
