//! What db-proxy shows operators, in front of two real redis-servers: INFO's `# Commandstats`,
//! `# Errorstats`, `# Latencystats` and merged `# Keyspace` as redis-server shapes them, and
//! Prometheus metrics at `--metrics-listen`, scraped with curl.
//!
//! Needs redis-server and curl (`apt-get install -y redis-server redis-tools curl`).

mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::{run_tool, shard_of, Proxy, RedisServer, Reply};

/// `INFO section` (`INFO` alone for "").
fn info(conn: &mut support::RespConn, section: &str) -> String {
    let args: &[&str] = if section.is_empty() {
        &["INFO"]
    } else {
        &["INFO", section]
    };
    match conn.cmd(args) {
        Reply::Bulk(Some(text)) => String::from_utf8(text).unwrap(),
        other => panic!("INFO {section}: {other:?}"),
    }
}

/// The value of `field` (`name:value` line) in an INFO text.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
}

#[test]
fn info_has_commandstats_errorstats_latencystats_and_merged_keyspace() {
    let servers = [RedisServer::start(), RedisServer::start()];
    let proxy = Proxy::start(&[servers[0].port(), servers[1].port()]);
    let mut conn = proxy.conn();
    for i in 0..10 {
        assert_eq!(conn.cmd(&["SET", &format!("key{i}"), "v"]), Reply::ok());
    }
    assert_eq!(conn.cmd(&["EXPIRE", "key0", "1000"]), Reply::Integer(1));
    assert_eq!(conn.cmd(&["EXPIRE", "key1", "1000"]), Reply::Integer(1));
    assert!(conn
        .cmd(&["INCR", "key2"])
        .error_text()
        .starts_with("ERR value"));
    assert!(conn
        .cmd(&["GET"])
        .error_text()
        .starts_with("ERR wrong number"));
    let (a, b) = ["x", "y"]
        .map(|p| {
            (0..1000)
                .map(|i| format!("{p}{i}"))
                .find(|k| shard_of(k, 2) == usize::from(p == "y"))
                .unwrap()
        })
        .into();
    assert!(conn
        .cmd(&["RENAME", &a, &b])
        .error_text()
        .starts_with("CROSSSLOT"));
    assert!(conn
        .cmd(&["NOSUCHCOMMAND"])
        .error_text()
        .starts_with("ERR unknown"));

    let stats = info(&mut conn, "commandstats");
    let set = field(&stats, "cmdstat_set").expect("cmdstat_set");
    assert!(set.starts_with("calls=10,usec="), "{set}");
    assert!(set.ends_with(",rejected_calls=0,failed_calls=0"), "{set}");
    let incr = field(&stats, "cmdstat_incr").unwrap();
    assert!(
        incr.starts_with("calls=1,") && incr.ends_with("failed_calls=1"),
        "{incr}"
    );
    let get = field(&stats, "cmdstat_get").unwrap();
    assert!(
        get.starts_with("calls=0,") && get.contains("rejected_calls=1"),
        "{get}"
    );
    assert!(field(&stats, "cmdstat_rename")
        .unwrap()
        .contains("rejected_calls=1"));
    // Unknown names are not counted as commands (random names cannot grow the table).
    assert!(!stats.contains("nosuchcommand"));

    let errors = info(&mut conn, "errorstats");
    assert_eq!(
        field(&errors, "errorstat_CROSSSLOT"),
        Some("count=1"),
        "{errors}"
    );
    assert_eq!(field(&errors, "errorstat_ERR"), Some("count=3"), "{errors}");

    let latency = info(&mut conn, "latencystats");
    let set = field(&latency, "latency_percentiles_usec_set").unwrap();
    assert!(set.starts_with("p50=") && set.contains(",p99=") && set.contains(",p99.9="));

    // Both shards' keys, added up; the TTL weighted by the keys that have one (redis-server
    // estimates avg_ttl in its expiry cycle, so it may read 0 for a moment).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let keyspace = info(&mut conn, "keyspace");
        let db0 = field(&keyspace, "db0").unwrap().to_owned();
        assert!(db0.starts_with("keys=10,expires=2,avg_ttl="), "{db0}");
        let ttl: u64 = db0.rsplit('=').next().unwrap().parse().unwrap();
        assert!(ttl <= 1_000_000, "{ttl}");
        if ttl > 900_000 {
            break;
        }
        assert!(Instant::now() < deadline, "avg_ttl stayed {ttl}");
        thread::sleep(Duration::from_millis(100));
    }

    // The default set leaves out commandstats and latencystats, as redis-server does; `all`
    // has every section.
    let server = info(&mut conn, "server");
    assert_eq!(
        field(&server, "process_id"),
        Some(proxy.pid().to_string().as_str())
    );
    assert!(field(&server, "uptime_in_seconds").is_some_and(|s| s.parse::<u64>().is_ok()));
    let default = info(&mut conn, "");
    let all = info(&mut conn, "all");
    for section in [
        "# Server",
        "# Clients",
        "# Memory",
        "# CPU",
        "# Stats",
        "# Errorstats",
        "# Keyspace",
    ] {
        assert!(
            default.contains(section) && all.contains(section),
            "{section}"
        );
    }
    assert!(!default.contains("# Commandstats") && !default.contains("# Latencystats"));
    assert!(all.contains("# Commandstats") && all.contains("# Latencystats"));
}

#[test]
fn prometheus_metrics_are_scraped_with_curl() {
    let servers = [RedisServer::start(), RedisServer::start()];
    let proxy = Proxy::start_with(
        &[servers[0].port(), servers[1].port()],
        &["--metrics-listen", "127.0.0.1:0"],
    );
    // The address it bound, from its log.
    let deadline = Instant::now() + Duration::from_secs(5);
    let url = loop {
        let log = proxy.stderr();
        if let Some(url) = log
            .lines()
            .find_map(|l| l.strip_prefix("db-proxy: metrics at "))
        {
            break url.trim().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no metrics address in the log:\n{log}"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let mut conn = proxy.conn();
    for i in 0..5 {
        assert_eq!(conn.cmd(&["SET", &format!("m{i}"), "v"]), Reply::ok());
    }
    assert!(conn.cmd(&["INCR", "m0"]).error_text().starts_with("ERR"));
    let scrape = run_tool(
        "curl",
        &["-sS", "--max-time", "10", "-D", "-", &url],
        None,
        Duration::from_secs(20),
    );
    assert!(scrape.status.success(), "{}", scrape.stderr);
    let text = scrape.stdout;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("Content-Type: text/plain; version=0.0.4"));
    for line in [
        "dbproxy_commands_total{cmd=\"set\"} 5",
        "dbproxy_command_errors_total{cmd=\"incr\",kind=\"failed\"} 1",
        "dbproxy_errors_total{kind=\"ERR\"} 1",
        "dbproxy_command_duration_seconds_bucket{cmd=\"set\",le=\"+Inf\"} 5",
        "dbproxy_command_duration_seconds_count{cmd=\"set\"} 5",
        "dbproxy_pinned_connections 0",
        "# TYPE dbproxy_upstream_latency_seconds histogram",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    // Per core and per upstream, with labels.
    assert!(text.contains("dbproxy_clients{core=\"0\"}"));
    assert!(text.contains("dbproxy_requests_inflight{core=\"1\"} 0"));
    assert!(text
        .lines()
        .any(|l| l.starts_with("dbproxy_upstream_up{") && l.ends_with(" 1")));
    assert!(text.lines().any(|l| l.starts_with("dbproxy_runtime_")));
    // Buckets never decrease.
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("dbproxy_command_duration_seconds_bucket{cmd=\"set\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        buckets.len() > 5 && buckets.windows(2).all(|w| w[0] <= w[1]),
        "{buckets:?}"
    );
    // Elsewhere: 404.
    let other = run_tool(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url.replace("/metrics", "/nope"),
        ],
        None,
        Duration::from_secs(20),
    );
    assert_eq!(other.stdout, "404");
}
