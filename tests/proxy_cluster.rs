//! db-proxy in front of a real Redis Cluster (`--cluster`): 3 masters and 3 replicas from
//! Debian's redis-server, started and torn down by `support::cluster::RedisCluster`.
//!
//! Values written through the proxy read back through it and through `redis-cli -c`; MOVED
//! and ASK during a slot migration are followed inside the proxy; slots resharded under load
//! keep being served; a killed master fails only its slots, and only until its replica takes
//! over.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::cluster::{text, RedisCluster};
use support::{key_slot, redis_cli, Proxy, Reply, RespConn};

fn proxy_for(cluster: &RedisCluster) -> Proxy {
    let seed = format!("127.0.0.1:{}", cluster.seed());
    Proxy::start_with(&[], &["--cluster", &seed, "--cluster-refresh-ms", "200"])
}

/// One INFO field of the proxy, as text.
fn info_field(proxy: &Proxy, field: &str) -> String {
    let info = text(proxy.conn().cmd(&["INFO"]));
    let prefix = format!("{field}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {field} in INFO:\n{info}"))
        .to_owned()
}

/// A field of `cluster_redirections:moved=N,ask=N,tryagain=N`.
fn redirections(proxy: &Proxy, kind: &str) -> u64 {
    info_field(proxy, "cluster_redirections")
        .split(',')
        .find_map(|kv| kv.strip_prefix(kind)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

#[test]
fn values_written_through_the_proxy_read_back_through_it_and_through_redis_cli_c() {
    let _serial = support::serial();
    let cluster = RedisCluster::start();
    let proxy = proxy_for(&cluster);
    let mut conn = proxy.conn();
    let keys: Vec<String> = (0..300).map(|i| format!("key:{i}")).collect();
    let mut pipeline = Vec::new();
    for key in &keys {
        pipeline.extend(support::encode(&["SET", key, &format!("value of {key}")]));
    }
    conn.send_raw(&pipeline);
    for reply in conn.read_replies(keys.len()) {
        assert_eq!(reply, Reply::ok());
    }
    // Through the proxy, one MGET across every master (split by slot, merged in order).
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    let Reply::Array(Some(values)) = conn.cmd(&mget) else {
        panic!("MGET is an array")
    };
    for (key, value) in keys.iter().zip(values) {
        assert_eq!(value, Reply::bulk(&format!("value of {key}")));
    }
    // Directly, following redirections as a cluster client does.
    for key in keys.iter().step_by(37) {
        let got = redis_cli(cluster.seed(), &["-c", "GET", key]);
        assert_eq!(got.trim(), format!("value of {key}"));
    }
    assert_eq!(conn.cmd(&["DBSIZE"]), Reply::Integer(300));
    // One SCAN loop walks every master: each key exactly once.
    let mut cursor = "0".to_string();
    let mut scanned = Vec::new();
    for _ in 0..10_000 {
        let Reply::Array(Some(reply)) = conn.cmd(&["SCAN", &cursor, "COUNT", "50"]) else {
            panic!("SCAN is an array")
        };
        let [Reply::Bulk(Some(next)), Reply::Array(Some(batch))] = &reply[..] else {
            panic!("SCAN reply: {reply:?}")
        };
        scanned.extend(batch.iter().cloned());
        cursor = String::from_utf8(next.clone()).unwrap();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(cursor, "0");
    // No shard rehashes during this scan, so every key comes exactly once.
    scanned.sort_by_key(|k| format!("{k:?}"));
    let before = scanned.len();
    scanned.dedup();
    assert_eq!((before, scanned.len()), (300, 300));
    let mut del = vec!["DEL"];
    del.extend(keys.iter().take(100).map(String::as_str));
    assert_eq!(conn.cmd(&del), Reply::Integer(100));
    assert_eq!(conn.cmd(&["DBSIZE"]), Reply::Integer(200));
    // Other multi-key commands go whole to their slot when their keys share it, and get
    // Redis Cluster's CROSSSLOT otherwise.
    let crossslot = Reply::Error("CROSSSLOT Keys in request don't hash to the same slot".into());
    assert_eq!(
        conn.cmd(&["MSETNX", "{u}a", "1", "{u}b", "2"]),
        Reply::Integer(1)
    );
    assert_eq!(conn.cmd(&["RENAME", "{u}a", "{u}c"]), Reply::ok());
    assert_eq!(conn.cmd(&["SADD", "{u}s1", "x", "y"]), Reply::Integer(2));
    assert_eq!(conn.cmd(&["SADD", "{u}s2", "y", "z"]), Reply::Integer(2));
    assert_eq!(
        conn.cmd(&["SINTERSTORE", "{u}s3", "{u}s1", "{u}s2"]),
        Reply::Integer(1)
    );
    let script = "return redis.call('GET', KEYS[1]) .. ARGV[1]";
    assert_eq!(
        conn.cmd(&["EVAL", script, "1", "{u}c", "!"]),
        Reply::bulk("1!")
    );
    assert_eq!(conn.cmd(&["RENAME", "key:1", "key:2"]), crossslot);
    assert_eq!(conn.cmd(&["MSETNX", "a", "1", "b", "2"]), crossslot);
    assert_eq!(conn.cmd(&["SUNION", "{u}s1", "s2"]), crossslot);
    assert_eq!(conn.cmd(&["EVAL", script, "2", "a", "b", "!"]), crossslot);
    // An error a script returns that looks like a redirection is not one: it reaches the
    // client as it is, for another slot, and is not followed to a node the map does not name.
    let slot = key_slot(b"{u}");
    let forged = |slot: u16| format!("return redis.error_reply('MOVED {slot} 10.0.0.9:6379')");
    let other = (slot + 1) % 16384;
    assert_eq!(
        conn.cmd(&["EVAL", &forged(other), "1", "{u}c"]),
        Reply::Error(format!("MOVED {other} 10.0.0.9:6379"))
    );
    let refused = conn.cmd(&["EVAL", &forged(slot), "1", "{u}c"]);
    assert!(
        refused.error_text().contains("does not name that node"),
        "{refused:?}"
    );
    assert_eq!(conn.cmd(&["GET", "{u}c"]), Reply::bulk("1"));
    // The proxy's own answers work as in static mode.
    assert_eq!(conn.cmd(&["PING"]), Reply::Simple("PONG".into()));
    assert_eq!(info_field(&proxy, "cluster_slots_served"), "16384");
}

#[test]
fn ask_and_moved_are_followed_during_a_slot_migration() {
    let _serial = support::serial();
    let cluster = RedisCluster::start();
    // No periodic refresh during the test: only a MOVED can tell the proxy of the new owner.
    let seed = format!("127.0.0.1:{}", cluster.seed());
    let proxy = Proxy::start_with(&[], &["--cluster", &seed, "--cluster-refresh-ms", "60000"]);
    let mut conn = proxy.conn();
    for key in ["{m}a", "{m}b"] {
        assert_eq!(
            conn.cmd(&["SET", key, &format!("{key} before")]),
            Reply::ok()
        );
    }
    let slot = key_slot(b"{m}");
    let source = cluster.master_of(slot, cluster.seed());
    let target = cluster
        .live_ports()
        .into_iter()
        .find(|&p| p != source && is_master(p))
        .expect("another master");
    let (source_id, target_id) = (cluster.node_id(source), cluster.node_id(target));
    let slot_text = slot.to_string();
    let mut src = RespConn::connect(source);
    let mut dst = RespConn::connect(target);
    // The migration as redis-cli --cluster reshard does it, one key at a time.
    let importing = ["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &source_id];
    assert_eq!(dst.cmd(&importing), Reply::ok());
    let migrating = ["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &target_id];
    assert_eq!(src.cmd(&migrating), Reply::ok());
    let target_port = target.to_string();
    let migrate = ["MIGRATE", "127.0.0.1", &target_port, "{m}a", "0", "5000"];
    assert_eq!(src.cmd(&migrate), Reply::ok());

    // {m}a has moved (the source answers ASK), {m}b has not; a new key goes to the target.
    assert_eq!(conn.cmd(&["GET", "{m}a"]), Reply::bulk("{m}a before"));
    assert_eq!(conn.cmd(&["GET", "{m}b"]), Reply::bulk("{m}b before"));
    assert_eq!(conn.cmd(&["SET", "{m}c", "new"]), Reply::ok());
    assert_eq!(dst.cmd(&["ASKING"]), Reply::ok());
    assert_eq!(dst.cmd(&["GET", "{m}c"]), Reply::bulk("new"));
    assert!(
        redirections(&proxy, "ask") >= 2,
        "{}",
        info_field(&proxy, "cluster_redirections")
    );

    // The migration ends: every master learns the slot's new owner.
    let migrate = ["MIGRATE", "127.0.0.1", &target_port, "{m}b", "0", "5000"];
    assert_eq!(src.cmd(&migrate), Reply::ok());
    for port in cluster.live_ports().into_iter().filter(|&p| is_master(p)) {
        let node = ["CLUSTER", "SETSLOT", &slot_text, "NODE", &target_id];
        assert_eq!(RespConn::connect(port).cmd(&node), Reply::ok());
    }
    // A connection that still routes the slot to the source gets MOVED, and follows it.
    let before = redirections(&proxy, "moved");
    let mut fresh = proxy.conn();
    for key in ["{m}a", "{m}b"] {
        assert_eq!(
            fresh.cmd(&["GET", key]),
            Reply::bulk(&format!("{key} before"))
        );
    }
    assert_eq!(fresh.cmd(&["GET", "{m}c"]), Reply::bulk("new"));
    let moved = redirections(&proxy, "moved");
    println!(
        "redirections: {}",
        info_field(&proxy, "cluster_redirections")
    );
    assert!(moved > before, "the MOVED was followed");
    let new_owner = cluster.master_of(slot, cluster.seed());
    assert_eq!(new_owner, target);
}

fn is_master(port: u16) -> bool {
    text(RespConn::connect(port).cmd(&["INFO", "replication"])).contains("role:master")
}

/// `calls=` of `cmdstat_<command>` in a node's INFO commandstats (0 if never called).
fn calls(port: u16, command: &str) -> u64 {
    let stats = text(RespConn::connect(port).cmd(&["INFO", "commandstats"]));
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn reads_go_to_replicas_with_read_from_replica_and_writes_to_masters() {
    let _serial = support::serial();
    let cluster = RedisCluster::start();
    let seed = format!("127.0.0.1:{}", cluster.seed());
    let proxy = Proxy::start_with(
        &[],
        &[
            "--cluster",
            &seed,
            "--read-from",
            "replica",
            "--cluster-refresh-ms",
            "200",
        ],
    );
    // The seed learns of its peers' replicas by gossip: wait until the proxy's map lists a
    // replica for every master.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = text(proxy.conn().cmd(&["INFO", "cluster"]));
        let masters: Vec<&str> = info
            .lines()
            .filter(|l| l.starts_with("cluster_node"))
            .collect();
        if masters.len() == 3 && masters.iter().all(|l| !l.trim_end().ends_with("replicas=")) {
            break;
        }
        assert!(Instant::now() < deadline, "no replicas in the map:\n{info}");
        thread::sleep(Duration::from_millis(50));
    }
    let mut conn = proxy.conn();
    let keys: Vec<String> = (0..100).map(|i| format!("rr:{i}")).collect();
    for key in &keys {
        assert_eq!(conn.cmd(&["SET", key, key]), Reply::ok());
    }
    let (masters, replicas): (Vec<u16>, Vec<u16>) = cluster
        .live_ports()
        .into_iter()
        .partition(|&p| is_master(p));
    for &master in &masters {
        wait_replicated(master);
    }
    for key in &keys {
        assert_eq!(conn.cmd(&["GET", key]), Reply::bulk(key));
    }
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    let Reply::Array(Some(values)) = conn.cmd(&mget) else {
        panic!("MGET is an array")
    };
    assert!(values.iter().zip(&keys).all(|(v, k)| *v == Reply::bulk(k)));
    let on_replicas: u64 = replicas
        .iter()
        .map(|&p| calls(p, "get") + calls(p, "mget"))
        .sum();
    let on_masters: u64 = masters
        .iter()
        .map(|&p| calls(p, "get") + calls(p, "mget"))
        .sum();
    let sets: u64 = masters.iter().map(|&p| calls(p, "set")).sum();
    println!("reads on replicas {on_replicas}, on masters {on_masters}; SETs on masters {sets}");
    assert_eq!(on_masters, 0, "no read reached a master");
    assert!(
        on_replicas >= 100 + 3,
        "every GET and each MGET part on a replica"
    );
    assert_eq!(sets, 100, "writes go to masters");
}

/// Runs SET/GET pairs through the proxy on `threads` connections until `stop`; returns
/// (operations, wrong or error replies with examples).
fn load(
    proxy: &Proxy,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<(u64, Vec<String>)>> {
    (0..threads)
        .map(|t| {
            let mut conn = proxy.conn();
            let stop = stop.clone();
            thread::spawn(move || {
                let (mut ops, mut bad) = (0u64, Vec::new());
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("load:{t}:{}", i % 500);
                    let value = format!("{i}");
                    let set = conn.cmd(&["SET", &key, &value]);
                    let get = conn.cmd(&["GET", &key]);
                    if set != Reply::ok() || get != Reply::bulk(&value) {
                        bad.push(format!("{key}: SET {set:?}, GET {get:?}"));
                    }
                    ops += 2;
                    i += 1;
                }
                (ops, bad)
            })
        })
        .collect()
}

#[test]
fn slots_resharded_under_load_keep_being_served() {
    let _serial = support::serial();
    let cluster = RedisCluster::start();
    // No periodic refresh: every moved slot is learnt from a redirection.
    let seed = format!("127.0.0.1:{}", cluster.seed());
    let proxy = Proxy::start_with(&[], &["--cluster", &seed, "--cluster-refresh-ms", "60000"]);
    // Keys in many slots, so the migration moves keys (and ASK happens).
    let mut conn = proxy.conn();
    let mut pipeline = Vec::new();
    for i in 0..5000 {
        pipeline.extend(support::encode(&["SET", &format!("fill:{i}"), "x"]));
    }
    conn.send_raw(&pipeline);
    conn.read_replies(5000);

    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(&proxy, 4, stop.clone());
    let masters: Vec<u16> = cluster
        .live_ports()
        .into_iter()
        .filter(|&p| is_master(p))
        .collect();
    let (from, to) = (cluster.node_id(masters[0]), cluster.node_id(masters[1]));
    let seed = format!("127.0.0.1:{}", masters[0]);
    let started = Instant::now();
    let out = support::run_tool(
        "redis-cli",
        &[
            "--cluster",
            "reshard",
            &seed,
            "--cluster-from",
            &from,
            "--cluster-to",
            &to,
            "--cluster-slots",
            "1500",
            "--cluster-yes",
        ],
        None,
        Duration::from_secs(120),
    );
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "reshard failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (mut ops, mut bad) = (0, Vec::new());
    for worker in workers {
        let (o, b) = worker.join().unwrap();
        ops += o;
        bad.extend(b);
    }
    let redirected = info_field(&proxy, "cluster_redirections");
    println!("1500 slots resharded in {took:?} under {ops} operations; {redirected}");
    assert!(
        bad.is_empty(),
        "{} wrong replies, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert!(redirections(&proxy, "moved") + redirections(&proxy, "ask") > 0);
    for i in (0..5000).step_by(97) {
        assert_eq!(conn.cmd(&["GET", &format!("fill:{i}")]), Reply::bulk("x"));
    }
}

#[test]
fn a_killed_master_fails_only_its_slots_until_its_replica_takes_over() {
    let _serial = support::serial();
    let mut cluster = RedisCluster::start();
    let proxy = proxy_for(&cluster);
    let mut conn = proxy.conn();
    let keys: Vec<String> = (0..200).map(|i| format!("fo:{i}")).collect();
    for key in &keys {
        assert_eq!(conn.cmd(&["SET", key, key]), Reply::ok());
    }
    let victim = cluster.master_of(0, cluster.seed());
    wait_replicated(victim);
    let (dead, alive): (Vec<&String>, Vec<&String>) = keys
        .iter()
        .partition(|k| cluster.master_of(key_slot(k.as_bytes()), cluster.seed()) == victim);
    assert!(!dead.is_empty() && !alive.is_empty());
    cluster.kill(victim);
    let killed = Instant::now();

    // Until the failover, the dead master's keys fail fast with a clear error, the others
    // never fail; then every key reads back, with no restart of the proxy.
    let mut errors = 0;
    let recovered = loop {
        for key in &alive {
            assert_eq!(
                conn.cmd(&["GET", key]),
                Reply::bulk(key),
                "a live master's key"
            );
        }
        let started = Instant::now();
        let reply = conn.cmd(&["GET", dead[0]]);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a dead master's key hung"
        );
        match reply {
            Reply::Bulk(Some(v)) if v == dead[0].as_bytes() => break killed.elapsed(),
            Reply::Error(e) => {
                assert!(
                    e.starts_with("ERR upstream") || e.starts_with("CLUSTERDOWN"),
                    "{e}"
                );
                errors += 1;
            }
            other => panic!("a dead master's key gave {other:?}"),
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no failover in 30 s"
        );
        thread::sleep(Duration::from_millis(50));
    };
    println!(
        "failover seen after {recovered:?}, {errors} errors for the dead master's key meanwhile"
    );
    for key in &keys {
        assert_eq!(conn.cmd(&["GET", key]), Reply::bulk(key));
    }
    let refreshes = info_field(&proxy, "cluster_refreshes");
    let node_down: u64 = refreshes
        .split(',')
        .find_map(|kv| kv.strip_prefix("node_down="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        node_down > 0,
        "the dead master asked for a refresh: {refreshes}"
    );
}

/// Waits (bounded) until every replica of the master on `port` has its whole stream.
fn wait_replicated(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = text(RespConn::connect(port).cmd(&["INFO", "replication"]));
        let offset = info
            .lines()
            .find_map(|l| l.strip_prefix("master_repl_offset:"))
            .unwrap_or("-1")
            .trim()
            .to_owned();
        let synced = info
            .lines()
            .filter(|l| l.starts_with("slave"))
            .all(|l| l.contains(&format!("offset={offset},")));
        if synced && info.contains("slave0:") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas never caught up:\n{info}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn transactions_blocking_pops_and_pubsub_work_in_front_of_a_cluster() {
    let _serial = support::serial();
    let cluster = RedisCluster::start();
    let proxy = proxy_for(&cluster);
    let mut conn = proxy.conn();
    let queued = || Reply::Simple("QUEUED".into());
    // A transaction on one slot, and one across slots (CROSSSLOT, then EXECABORT).
    assert_eq!(conn.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(conn.cmd(&["SET", "{u}a", "1"]), queued());
    assert_eq!(conn.cmd(&["INCR", "{u}a"]), queued());
    assert_eq!(
        conn.cmd(&["EXEC"]),
        Reply::Array(Some(vec![Reply::ok(), Reply::Integer(2)]))
    );
    assert_eq!(conn.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(conn.cmd(&["SET", "{u}a", "1"]), queued());
    assert!(conn
        .cmd(&["SET", "{v}b", "1"])
        .error_text()
        .starts_with("CROSSSLOT"));
    assert!(conn.cmd(&["EXEC"]).error_text().starts_with("EXECABORT"));
    // WATCH on the slot's master: another client's write aborts the transaction.
    assert_eq!(conn.cmd(&["WATCH", "{u}a"]), Reply::ok());
    assert_eq!(proxy.conn().cmd(&["SET", "{u}a", "7"]), Reply::ok());
    assert_eq!(conn.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(conn.cmd(&["INCR", "{u}a"]), queued());
    assert_eq!(conn.cmd(&["EXEC"]), Reply::Array(None));
    // A command the proxy's table never names, routed by the cluster's COMMAND.
    assert_eq!(conn.cmd(&["SET", "{u}x", "ohmytext"]), Reply::ok());
    assert_eq!(conn.cmd(&["SET", "{u}y", "mynewtext"]), Reply::ok());
    assert_eq!(conn.cmd(&["LCS", "{u}x", "{u}y"]), Reply::bulk("mytext"));
    // BLPOP woken by another client's LPUSH.
    let port = proxy.port();
    let waiter = thread::spawn(move || RespConn::connect(port).cmd(&["BLPOP", "{u}q", "5"]));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(conn.cmd(&["LPUSH", "{u}q", "job"]), Reply::Integer(1));
    assert_eq!(
        waiter.join().unwrap(),
        Reply::Array(Some(vec![Reply::bulk("{u}q"), Reply::bulk("job")]))
    );
    // Pub/sub: a channel, a pattern (each message once, though every node sees every
    // PUBLISH) and a shard channel.
    let mut sub = proxy.conn();
    sub.send(&["SUBSCRIBE", "news"]);
    assert_eq!(
        sub.read_reply(),
        Reply::Array(Some(vec![
            Reply::bulk("subscribe"),
            Reply::bulk("news"),
            Reply::Integer(1)
        ]))
    );
    sub.send(&["PSUBSCRIBE", "ne*"]);
    assert_eq!(
        sub.read_reply(),
        Reply::Array(Some(vec![
            Reply::bulk("psubscribe"),
            Reply::bulk("ne*"),
            Reply::Integer(2)
        ]))
    );
    sub.send(&["SSUBSCRIBE", "{u}orders"]);
    assert_eq!(
        sub.read_reply(),
        Reply::Array(Some(vec![
            Reply::bulk("ssubscribe"),
            Reply::bulk("{u}orders"),
            Reply::Integer(1)
        ]))
    );
    assert_eq!(conn.cmd(&["PUBLISH", "news", "hello"]), Reply::Integer(2));
    assert_eq!(
        conn.cmd(&["SPUBLISH", "{u}orders", "o1"]),
        Reply::Integer(1)
    );
    let mut got: Vec<String> = sub
        .read_replies(3)
        .into_iter()
        .map(|r| format!("{r:?}"))
        .collect();
    got.sort();
    assert_eq!(got.len(), 3);
    assert!(
        got[0].contains("message") && got[0].contains("hello"),
        "{got:?}"
    );
    assert!(got[1].contains("pmessage"), "{got:?}");
    assert!(
        got[2].contains("smessage") && got[2].contains("o1"),
        "{got:?}"
    );
    // Nothing more (no second copy of the pattern message).
    assert_eq!(
        sub.cmd(&["PING"]),
        Reply::Array(Some(vec![Reply::bulk("pong"), Reply::bulk("")]))
    );
}
