//! The db-proxy example with its two embedded backends, driven by redis-cli, redis-benchmark
//! and raw sockets. Each test starts its own proxy and kills it at the end.
//!
//! Builds the example itself on first use (see `support::db_proxy_path`); needs
//! redis-cli / redis-benchmark installed (`apt-get install -y redis-server redis-tools`).

mod support;

use std::time::Duration;
use support::{encode, redis_cli, redis_cli_stdin, run_tool, shard_of, Proxy, Reply};

#[test]
fn redis_cli_set_get_ping_echo() {
    let proxy = Proxy::embedded();
    let port = proxy.port();
    assert_eq!(redis_cli(port, &["PING"]), "PONG\n");
    assert_eq!(redis_cli(port, &["SET", "cli:key", "cli value"]), "OK\n");
    assert_eq!(redis_cli(port, &["GET", "cli:key"]), "cli value\n");
    assert_eq!(redis_cli(port, &["GET", "cli:missing"]), "\n"); // nil prints as an empty line
    assert_eq!(redis_cli(port, &["ECHO", "hello proxy"]), "hello proxy\n");
}

#[test]
fn redis_cli_pipe_of_1000_sets() {
    let proxy = Proxy::embedded();
    let mut input = Vec::new();
    for i in 0..1000 {
        input.extend_from_slice(&encode(&[
            "SET",
            &format!("pipe:{i}"),
            &format!("value-{i}"),
        ]));
    }
    let out = redis_cli_stdin(proxy.port(), &["--pipe"], &input);
    assert!(
        out.contains("errors: 0, replies: 1000"),
        "redis-cli --pipe printed:\n{out}"
    );

    let mut conn = proxy.conn();
    for i in [0, 1, 2, 499, 500, 998, 999] {
        let reply = conn.cmd(&["GET", &format!("pipe:{i}")]);
        assert_eq!(reply, Reply::bulk(&format!("value-{i}")), "pipe:{i}");
    }
    assert_eq!(conn.cmd(&["GET", "pipe:1000"]), Reply::Bulk(None));
}

#[test]
fn redis_benchmark_set_get_pipelined() {
    let proxy = Proxy::embedded();
    let cmd = format!(
        "-h 127.0.0.1 -p {} -t set,get -n 20000 -P 16 -r 100000 -q",
        proxy.port()
    );
    let args: Vec<&str> = cmd.split(' ').collect();
    let out = run_tool("redis-benchmark", &args, None, Duration::from_secs(120));
    let text = format!("{}\n{}", out.stdout, out.stderr);
    assert!(
        out.status.success(),
        "redis-benchmark failed: {}\n{text}",
        out.status
    );
    // Progress lines end in '\r', results in '\n'.
    let lines: Vec<&str> = text.split(['\r', '\n']).map(str::trim).collect();
    let errors: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("ERR") || l.to_lowercase().contains("error"))
        .collect();
    assert!(
        errors.is_empty(),
        "redis-benchmark reported errors: {errors:?}\n{text}"
    );
    for test in ["SET", "GET"] {
        let result = lines
            .iter()
            .find_map(|l| {
                l.strip_prefix(&format!("{test}: "))?
                    .split_once(" requests per second")
            })
            .unwrap_or_else(|| panic!("no `{test}: N requests per second` line in:\n{text}"));
        let rps: f64 = result
            .0
            .parse()
            .unwrap_or_else(|_| panic!("bad rate {:?}", result.0));
        assert!(rps > 0.0, "{test}: {rps} requests per second");
    }
}

#[test]
fn request_split_byte_by_byte_gets_one_reply() {
    let proxy = Proxy::embedded();
    let mut conn = proxy.conn();
    for byte in encode(&["SET", "split:key", "split value"]) {
        conn.send_raw(&[byte]); // one write and flush per byte, Nagle off
    }
    assert_eq!(conn.read_reply(), Reply::ok());
    for byte in encode(&["GET", "split:key"]) {
        conn.send_raw(&[byte]);
    }
    assert_eq!(conn.read_reply(), Reply::bulk("split value"));
    // Had the split request produced a stray extra reply, this one would be out of step.
    assert_eq!(conn.cmd(&["ECHO", "in step"]), Reply::bulk("in step"));
}

#[test]
fn pipelined_requests_get_replies_in_order() {
    let proxy = Proxy::embedded();
    let mut conn = proxy.conn();
    let keys: Vec<String> = (0..100).map(|i| format!("order:{i}")).collect();
    let value = |i: usize| format!("value-{i}-{}", "x".repeat(i));
    let shards: Vec<usize> = keys.iter().map(|k| shard_of(k, 2)).collect();
    assert!(
        shards.contains(&0) && shards.contains(&1),
        "keys must span both backends"
    );

    conn.send_raw(&encode(&["PING"]).repeat(100));
    assert_eq!(
        conn.read_replies(100),
        vec![Reply::Simple("PONG".into()); 100]
    );

    let sets: Vec<u8> = keys
        .iter()
        .enumerate()
        .flat_map(|(i, k)| encode(&["SET", k, &value(i)]))
        .collect();
    conn.send_raw(&sets);
    assert_eq!(conn.read_replies(100), vec![Reply::ok(); 100]);

    // Reverse order, so consecutive GETs alternate between backends as the hash falls.
    let gets: Vec<u8> = keys
        .iter()
        .rev()
        .flat_map(|k| encode(&["GET", k]))
        .collect();
    conn.send_raw(&gets);
    for (n, reply) in conn.read_replies(100).into_iter().enumerate() {
        let i = 99 - n;
        assert_eq!(
            reply,
            Reply::bulk(&value(i)),
            "reply {n} is for {}",
            keys[i]
        );
    }

    // Replies the proxy makes itself (ECHO) interleaved with forwarded ones (GET).
    let mut mixed = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        mixed.extend(encode(&["GET", key]));
        mixed.extend(encode(&["ECHO", &format!("echo-{i}")]));
    }
    conn.send_raw(&mixed);
    let replies = conn.read_replies(200);
    for (i, pair) in replies.chunks(2).enumerate() {
        assert_eq!(
            pair,
            [Reply::bulk(&value(i)), Reply::bulk(&format!("echo-{i}"))]
        );
    }
}

#[test]
fn malformed_request_gets_protocol_error_and_close() {
    let proxy = Proxy::embedded();
    let mut bystander = proxy.conn();
    assert_eq!(bystander.cmd(&["SET", "bystander", "before"]), Reply::ok());
    let cases: [&[u8]; 3] = [b"*1\r\n$abc\r\n", b"*2\r\n$-5\r\n", b"*abc\r\n"];
    for (n, bad) in cases.into_iter().enumerate() {
        let mut conn = proxy.conn();
        assert_eq!(conn.cmd(&["PING"]), Reply::Simple("PONG".into()));
        conn.send_raw(bad);
        let reply = conn.read_reply();
        assert!(
            reply.error_text().starts_with("ERR Protocol error"),
            "{:?} got {reply:?}",
            String::from_utf8_lossy(bad)
        );
        conn.expect_closed();
        // The client that was open all along is untouched.
        let value = format!("after-{n}");
        assert_eq!(bystander.cmd(&["SET", "bystander", &value]), Reply::ok());
        assert_eq!(bystander.cmd(&["GET", "bystander"]), Reply::bulk(&value));
    }
    assert_eq!(
        proxy.conn().cmd(&["GET", "bystander"]),
        Reply::bulk("after-2")
    );
}

#[test]
fn unknown_command_and_wrong_arity_get_errors() {
    let proxy = Proxy::embedded();
    let mut conn = proxy.conn();
    let reply = conn.cmd(&["NOSUCHCOMMAND", "a", "b"]);
    assert!(
        reply.error_text().starts_with("ERR unknown command"),
        "{reply:?}"
    );
    let arity =
        |cmd: &str| Reply::Error(format!("ERR wrong number of arguments for '{cmd}' command"));
    assert_eq!(conn.cmd(&["GET"]), arity("get"));
    assert_eq!(conn.cmd(&["get"]), arity("get"));
    assert_eq!(conn.cmd(&["SET", "arity:key"]), arity("set"));
    // Error replies leave the connection usable.
    assert_eq!(conn.cmd(&["PING"]), Reply::Simple("PONG".into()));
    assert_eq!(conn.cmd(&["GET", "arity:key"]), Reply::Bulk(None));
}

#[test]
fn incr_del_exists() {
    let proxy = Proxy::embedded();
    let mut conn = proxy.conn();
    for n in 1..=5 {
        assert_eq!(conn.cmd(&["INCR", "counter"]), Reply::Integer(n));
    }
    assert_eq!(conn.cmd(&["GET", "counter"]), Reply::bulk("5"));
    assert_eq!(proxy.conn().cmd(&["INCR", "counter"]), Reply::Integer(6)); // any client, same key

    assert_eq!(conn.cmd(&["EXISTS", "doomed"]), Reply::Integer(0));
    assert_eq!(conn.cmd(&["SET", "doomed", "v"]), Reply::ok());
    assert_eq!(conn.cmd(&["EXISTS", "doomed"]), Reply::Integer(1));
    assert_eq!(conn.cmd(&["DEL", "doomed"]), Reply::Integer(1));
    assert_eq!(conn.cmd(&["EXISTS", "doomed"]), Reply::Integer(0));
    assert_eq!(conn.cmd(&["DEL", "doomed"]), Reply::Integer(0));
    assert_eq!(conn.cmd(&["GET", "doomed"]), Reply::Bulk(None));
}

#[test]
fn inline_commands() {
    let proxy = Proxy::embedded();
    let mut conn = proxy.conn();
    conn.send_raw(b"PING\r\n");
    assert_eq!(conn.read_reply(), Reply::Simple("PONG".into()));
    conn.send_raw(b"SET a b\r\n");
    assert_eq!(conn.read_reply(), Reply::ok());
    conn.send_raw(b"GET a\r\n");
    assert_eq!(conn.read_reply(), Reply::bulk("b"));
    // Inline and RESP requests mix on one connection, and in one write.
    assert_eq!(conn.cmd(&["GET", "a"]), Reply::bulk("b"));
    conn.send_raw(&[&b"SET a c\r\n"[..], &encode(&["GET", "a"]), b"PING\r\n"].concat());
    assert_eq!(
        conn.read_replies(3),
        [Reply::ok(), Reply::bulk("c"), Reply::Simple("PONG".into())]
    );
}

#[test]
fn info_gathers_every_core() {
    let proxy = Proxy::embedded();
    let mut conn = proxy.conn();
    for i in 0..10 {
        conn.cmd(&["SET", &format!("info-key-{i}"), "v"]);
    }
    let Reply::Bulk(Some(info)) = conn.cmd(&["INFO"]) else {
        panic!("INFO is a bulk string");
    };
    let info = String::from_utf8(info).unwrap();
    assert!(info.contains("cores:2\r\n"), "{info}");
    assert!(info.contains("core0:") && info.contains("core1:"), "{info}");
    let total: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(total >= 10, "{info}");
    assert!(
        info.contains("shard0:addr=") && info.contains("shard1:addr="),
        "{info}"
    );
    // The fields redis_exporter and dashboards read, as redis-server names them.
    let number = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no numeric {name}:\n{info}"))
    };
    assert!(number("used_memory") > 0.0);
    assert!(number("used_memory_rss") >= 1e6);
    assert!(number("used_cpu_user") + number("used_cpu_sys") > 0.0);
}

#[test]
fn every_error_reply_is_counted_and_embedded_gaps_are_named() {
    let proxy = Proxy::embedded();
    let mut conn = proxy.conn();
    let errors = |conn: &mut support::RespConn| -> u64 {
        let Reply::Bulk(Some(info)) = conn.cmd(&["INFO", "stats"]) else {
            panic!("INFO is a bulk string")
        };
        String::from_utf8(info)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("total_error_replies:"))
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = errors(&mut conn);
    conn.cmd(&["SET", "s", "text"]);
    // From a backend, from the proxy's own commands, and from the proxy's routing.
    assert!(matches!(conn.cmd(&["INCR", "s"]), Reply::Error(_)));
    assert!(matches!(conn.cmd(&["SELECT", "1"]), Reply::Error(_)));
    assert!(matches!(conn.cmd(&["SCAN", "0"]), Reply::Error(_)));
    let Reply::Error(text) = conn.cmd(&["HSET", "h", "f", "v"]) else {
        panic!("HSET is an error on the embedded backends")
    };
    assert!(
        text.contains("embedded backend") && text.contains("--upstream"),
        "{text}"
    );
    assert_eq!(errors(&mut conn), before + 4);
}

#[test]
fn a_client_that_never_reads_is_disconnected_and_others_keep_working() {
    let proxy = Proxy::start_with(
        &[],
        &["--client-write-timeout-ms", "300", "--max-pending", "64"],
    );
    let mut healthy = proxy.conn();
    let big = "x".repeat(1 << 20);
    assert_eq!(
        healthy.cmd(&["SET", "big", &big]),
        Reply::Simple("OK".into())
    );
    // A client pipelines 64 GETs of a 1 MiB value and never reads a byte of the replies.
    let mut stalled = std::net::TcpStream::connect(proxy.addr()).unwrap();
    let gets: Vec<u8> = (0..64).flat_map(|_| encode(&["GET", "big"])).collect();
    std::io::Write::write_all(&mut stalled, &gets).unwrap();
    let connected = |conn: &mut support::RespConn| -> u64 {
        let Reply::Bulk(Some(info)) = conn.cmd(&["INFO"]) else {
            panic!("INFO is a bulk string")
        };
        let info = String::from_utf8(info).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut clients = connected(&mut healthy);
    for _ in 0..100 {
        if clients == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        clients = connected(&mut healthy);
    }
    assert_eq!(
        clients, 1,
        "the stalled client is gone, the healthy one remains"
    );
    assert_eq!(healthy.cmd(&["PING"]), Reply::Simple("PONG".into()));
    drop(stalled);
}

#[test]
fn command_reset_and_info_sections_answer_as_client_libraries_expect() {
    let proxy = Proxy::embedded();
    let mut conn = proxy.conn();
    let Reply::Integer(count) = conn.cmd(&["COMMAND", "COUNT"]) else {
        panic!("COMMAND COUNT is an integer")
    };
    assert!(count > 50, "{count} commands served");
    let Reply::Array(Some(infos)) = conn.cmd(&["COMMAND", "INFO", "get", "MSET", "monitor"]) else {
        panic!("COMMAND INFO is an array")
    };
    assert_eq!(infos.len(), 3);
    let Reply::Array(Some(get)) = &infos[0] else {
        panic!("GET's entry: {:?}", infos[0])
    };
    assert_eq!(get.len(), 10);
    assert_eq!(get[0], Reply::Bulk(Some(b"get".to_vec())));
    assert_eq!(&get[1..2], &[Reply::Integer(2)]);
    assert_eq!(
        &get[3..6],
        &[Reply::Integer(1), Reply::Integer(1), Reply::Integer(1)]
    );
    let Reply::Array(Some(mset)) = &infos[1] else {
        panic!("MSET's entry: {:?}", infos[1])
    };
    assert_eq!(
        &mset[1..6],
        &[
            Reply::Integer(-3),
            Reply::Array(Some(vec![])),
            Reply::Integer(1),
            Reply::Integer(-1),
            Reply::Integer(2)
        ]
    );
    // MONITOR is refused by the proxy, so it has no entry.
    assert_eq!(infos[2], Reply::Bulk(None));
    let Reply::Array(Some(all)) = conn.cmd(&["COMMAND"]) else {
        panic!("COMMAND is an array")
    };
    assert_eq!(all.len() as i64, count);

    assert_eq!(
        conn.cmd(&["CLIENT", "SETNAME", "app"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(conn.cmd(&["RESET"]), Reply::Simple("RESET".into()));
    assert_eq!(conn.cmd(&["CLIENT", "GETNAME"]), Reply::Bulk(None));

    let Reply::Bulk(Some(info)) = conn.cmd(&["INFO", "clients", "LATENCY"]) else {
        panic!("INFO is a bulk string")
    };
    let info = String::from_utf8(info).unwrap();
    assert!(
        info.starts_with("# Clients\r\nconnected_clients:"),
        "{info}"
    );
    assert!(info.contains("# Latency\r\n"), "{info}");
    assert!(!info.contains("# Server"), "{info}");
    let Reply::Bulk(Some(all)) = conn.cmd(&["INFO", "all"]) else {
        panic!("INFO is a bulk string")
    };
    assert!(String::from_utf8(all).unwrap().contains("# Server"));
}

#[test]
fn reset_requires_auth_again_with_requirepass() {
    let proxy = Proxy::start_with(&[], &["--requirepass", "s3cret"]);
    let mut conn = proxy.conn();
    assert_eq!(conn.cmd(&["AUTH", "s3cret"]), Reply::Simple("OK".into()));
    assert_eq!(conn.cmd(&["SET", "k", "v"]), Reply::Simple("OK".into()));
    assert_eq!(conn.cmd(&["RESET"]), Reply::Simple("RESET".into()));
    let Reply::Error(text) = conn.cmd(&["GET", "k"]) else {
        panic!("GET after RESET needs AUTH again")
    };
    assert!(text.starts_with("NOAUTH"), "{text}");
}

#[test]
fn running_out_of_file_descriptors_keeps_serving_and_recovers() {
    // 64 descriptors: the proxy's own (rings, listeners, embedded backends and the connections
    // to them) leave room for a few dozen clients, fewer than the 80 that connect. An explicit
    // --max-clients past what fits is warned about, then accepts run out of descriptors.
    let proxy = Proxy::start_limited(&[], &["--max-clients", "10000"], Some(64));
    let warned = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        proxy
            .stderr()
            .contains("more than the open-file limit leaves room for")
    });
    assert!(warned, "{}", proxy.stderr());
    let mut first = proxy.conn();
    assert_eq!(first.cmd(&["SET", "k", "v"]), Reply::Simple("OK".into()));
    let mut crowd: Vec<std::net::TcpStream> = (0..80)
        .map(|_| std::net::TcpStream::connect(proxy.addr()).expect("the kernel queues the connect"))
        .collect();
    for stream in &mut crowd {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        std::io::Write::write_all(stream, b"PING\r\n").unwrap();
    }
    let mut answered = 0;
    for stream in &mut crowd {
        let mut buf = [0u8; 7];
        if std::io::Read::read_exact(stream, &mut buf).is_ok() && &buf == b"+PONG\r\n" {
            answered += 1;
        }
    }
    assert!(answered >= 5, "some of the crowd was served: {answered}");
    assert!(answered < 80, "the limit was reached: {answered}");
    // The client served before the crowd never noticed.
    assert_eq!(first.cmd(&["GET", "k"]), Reply::Bulk(Some(b"v".to_vec())));
    drop(crowd);
    // Accepting resumes within the longest backoff (1 s).
    let mut later = None;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(100));
        let mut conn = proxy.conn();
        if conn.cmd(&["PING"]) == Reply::Simple("PONG".into()) {
            later = Some(conn);
            break;
        }
    }
    assert!(
        later.is_some(),
        "a new client is served once descriptors are free"
    );
    let stderr = proxy.stderr();
    let failures = stderr.matches("accept failed").count();
    assert!(
        (1..=8).contains(&failures),
        "failed accepts are logged, but not once per retry: {failures} lines\n{stderr}"
    );
}

#[test]
fn sigterm_answers_what_is_in_flight_and_exits_0() {
    let mut proxy = Proxy::embedded();
    let mut conn = proxy.conn();
    assert_eq!(conn.cmd(&["SET", "k", "v"]), Reply::Simple("OK".into()));
    // A pipeline is in flight when the signal arrives; every reply still comes back.
    let pipeline: Vec<u8> = (0..500)
        .flat_map(|i| encode(&["SET", &format!("p{i}"), "v"]))
        .collect();
    conn.send_raw(&pipeline);
    let status = proxy
        .terminate()
        .expect("the proxy exits within 20 s of SIGTERM");
    assert!(status.success(), "exit status {status}");
    // Requests the proxy had read are answered; the connection then closes cleanly (no
    // half-written reply).
    let mut answered = 0;
    while let Ok(Some(reply)) = conn.try_read_reply() {
        assert_eq!(reply, Reply::Simple("OK".into()));
        answered += 1;
    }
    assert!(answered <= 500);
    assert!(
        std::net::TcpStream::connect(proxy.addr()).is_err(),
        "no longer listening"
    );
}

#[test]
fn a_request_too_big_is_refused_at_its_length_line_not_after_buffering_it() {
    let proxy = Proxy::start_with(&[], &["--client-query-buffer-limit", "1048576"]);
    let mut big = proxy.conn();
    // Announce a 1 MiB value (the request is then over 1 MiB) and send none of it.
    big.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048576\r\n");
    let reply = big.read_reply();
    assert!(
        reply
            .error_text()
            .contains("exceeds --client-query-buffer-limit"),
        "{reply:?}"
    );
    big.expect_closed();
    // Other clients are served as before.
    let mut other = proxy.conn();
    assert_eq!(other.cmd(&["SET", "k", "v"]), Reply::ok());
    assert_eq!(other.cmd(&["GET", "k"]), Reply::bulk("v"));
}

#[test]
fn an_idle_client_is_closed_after_the_idle_timeout_and_a_busy_one_is_not() {
    let proxy = Proxy::start_with(&[], &["--client-idle-timeout-secs", "1"]);
    let mut idle = proxy.conn();
    let mut busy = proxy.conn();
    assert_eq!(idle.cmd(&["PING"]), Reply::Simple("PONG".into()));
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1800) {
        assert_eq!(busy.cmd(&["SET", "k", "v"]), Reply::ok());
        std::thread::sleep(Duration::from_millis(200));
    }
    idle.expect_closed();
    assert_eq!(busy.cmd(&["GET", "k"]), Reply::bulk("v"));
}

#[test]
fn a_negative_multibulk_count_is_skipped_as_redis_server_does() {
    let proxy = Proxy::embedded();
    let mut conn = proxy.conn();
    conn.send_raw(b"*-10\r\n*0\r\n*1\r\n$4\r\nPING\r\n");
    assert_eq!(conn.read_reply(), Reply::Simple("PONG".into()));
    assert_eq!(conn.cmd(&["ECHO", "still here"]), Reply::bulk("still here"));
}
