//! db-proxy's transactions (MULTI/EXEC/DISCARD, WATCH/UNWATCH) and blocking commands (BLPOP,
//! BLMOVE, XREAD BLOCK...) in front of two real redis-servers: replies match redis-server's
//! byte for byte, blocked clients hold up nobody, and a client that leaves while blocked
//! loses no data.
//!
//! Needs redis-server installed (`apt-get install -y redis-server redis-tools`).

mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::{encode, exchange, key_on, two_shards, Proxy, Reply};

fn ok() -> Reply {
    Reply::ok()
}

/// Runs `script` (one command per line, `{t}` keys) on a fresh connection, pipelined when
/// `pipelined`, and returns every reply.
fn run(port: u16, script: &[&[&str]], pipelined: bool) -> Vec<Reply> {
    let mut conn = support::RespConn::connect(port);
    if pipelined {
        let bytes: Vec<u8> = script.iter().flat_map(|args| encode(args)).collect();
        conn.send_raw(&bytes);
        conn.read_replies(script.len())
    } else {
        script.iter().map(|args| conn.cmd(args)).collect()
    }
}

#[test]
fn transactions_answer_as_redis_server_does() {
    let (servers, proxy) = two_shards();
    let scripts: &[&[&[&str]]] = &[
        &[
            &["MULTI"],
            &["SET", "{t}a", "1"],
            &["INCR", "{t}a"],
            &["GET", "{t}a"],
            &["EXEC"],
        ],
        // An unknown command or a wrong argument count while queuing: EXECABORT.
        &[
            &["MULTI"],
            &["SET", "{t}a", "1"],
            &["NOSUCH", "x"],
            &["EXEC"],
        ],
        &[&["MULTI"], &["SET", "{t}a"], &["EXEC"], &["GET", "{t}a"]],
        // A command that fails when run: its error inside EXEC's array.
        &[
            &["SET", "{t}s", "abc"],
            &["MULTI"],
            &["INCR", "{t}s"],
            &["SET", "{t}s", "x"],
            &["EXEC"],
        ],
        &[&["MULTI"], &["MULTI"], &["EXEC"]],
        &[&["EXEC"], &["DISCARD"], &["UNWATCH"]],
        &[&["MULTI"], &["WATCH", "{t}a"], &["EXEC"]],
        &[&["MULTI"], &["EXEC"]],
        &[&["MULTI"], &["PING"], &["ECHO", "hi"], &["EXEC"]],
        &[
            &["SET", "{t}a", "1"],
            &["MULTI"],
            &["SET", "{t}a", "2"],
            &["DISCARD"],
            &["GET", "{t}a"],
        ],
        &[&["WATCH", "{t}a"], &["MULTI"], &["INCR", "{t}a"], &["EXEC"]],
        &[&["WATCH", "{t}a"], &["UNWATCH"], &["MULTI"], &["EXEC"]],
        &[&["MULTI", "x"], &["EXEC", "x"], &["WATCH"]],
    ];
    for pipelined in [false, true] {
        for script in scripts {
            let direct = run(servers[0].port(), script, pipelined);
            let proxied = run(proxy.port(), script, pipelined);
            assert_eq!(proxied, direct, "{script:?} pipelined: {pipelined}");
        }
    }
}

#[test]
fn watch_aborts_the_transaction_when_another_client_writes_the_key() {
    let (_servers, proxy) = two_shards();
    for shard in 0..2 {
        let key = key_on(shard, "w");
        let mut a = proxy.conn();
        let mut b = proxy.conn();
        assert_eq!(a.cmd(&["SET", &key, "1"]), ok());
        assert_eq!(a.cmd(&["WATCH", &key]), ok());
        assert_eq!(b.cmd(&["SET", &key, "2"]), ok());
        assert_eq!(a.cmd(&["MULTI"]), ok());
        assert_eq!(a.cmd(&["INCR", &key]), Reply::Simple("QUEUED".into()));
        assert_eq!(a.cmd(&["EXEC"]), Reply::Array(None));
        assert_eq!(a.cmd(&["GET", &key]), Reply::bulk("2"));
        // Not touched: the transaction runs.
        assert_eq!(a.cmd(&["WATCH", &key]), ok());
        assert_eq!(a.cmd(&["MULTI"]), ok());
        assert_eq!(a.cmd(&["INCR", &key]), Reply::Simple("QUEUED".into()));
        assert_eq!(
            a.cmd(&["EXEC"]),
            Reply::Array(Some(vec![Reply::Integer(3)]))
        );
    }
    // Keys on two shards in one transaction or one WATCH: CROSSSLOT, then EXECABORT.
    let (x, y) = (key_on(0, "x"), key_on(1, "x"));
    let crossslot = Reply::Error("CROSSSLOT Keys in request don't hash to the same slot".into());
    let mut a = proxy.conn();
    assert_eq!(a.cmd(&["MULTI"]), ok());
    assert_eq!(a.cmd(&["SET", &x, "1"]), Reply::Simple("QUEUED".into()));
    assert_eq!(a.cmd(&["SET", &y, "1"]), crossslot);
    assert_eq!(
        a.cmd(&["EXEC"]),
        Reply::Error("EXECABORT Transaction discarded because of previous errors.".into())
    );
    assert_eq!(a.cmd(&["EXISTS", &x]), Reply::Integer(0));
    assert_eq!(a.cmd(&["WATCH", &x, &y]), crossslot);
    assert_eq!(a.cmd(&["WATCH", &x]), ok());
    assert_eq!(a.cmd(&["WATCH", &y]), crossslot);
    assert_eq!(proxy.info_field("pinned_connections"), 1);
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.info_field("pinned_connections") != 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(proxy.info_field("pinned_connections"), 0);
}

#[test]
fn blocking_commands_are_woken_by_other_clients_and_hold_up_nobody() {
    let (servers, proxy) = two_shards();
    let port = proxy.port();
    for shard in 0..2 {
        let list = key_on(shard, "queue");
        // Three clients block on the same shard; others keep being served meanwhile.
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let list = list.clone();
                thread::spawn(move || {
                    let mut conn = support::RespConn::connect(port);
                    conn.cmd(&["BLPOP", &list, "0"])
                })
            })
            .collect();
        let mut other = proxy.conn();
        let deadline = Instant::now() + Duration::from_secs(5);
        while proxy.info_field("blocked_clients") < 3 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(proxy.info_field("blocked_clients"), 3);
        let started = Instant::now();
        for i in 0..100 {
            assert_eq!(other.cmd(&["SET", &format!("{{{list}}}{i}"), "v"]), ok());
        }
        println!(
            "100 SETs on the shard of 3 blocked clients: {:?}",
            started.elapsed()
        );
        assert_eq!(
            other.cmd(&["RPUSH", &list, "a", "b", "c"]),
            Reply::Integer(3)
        );
        let mut got: Vec<Reply> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        got.sort_by_key(|r| format!("{r:?}"));
        let popped = |v: &str| Reply::Array(Some(vec![Reply::bulk(&list), Reply::bulk(v)]));
        assert_eq!(got, vec![popped("a"), popped("b"), popped("c")]);
        assert_eq!(proxy.info_field("blocked_clients"), 0);
        let _ = &servers;
    }
    let mut conn = proxy.conn();
    // A timeout: nil after it, not the proxy's request timeout.
    let started = Instant::now();
    assert_eq!(
        conn.cmd(&["BLPOP", &key_on(0, "empty"), "0.3"]),
        Reply::Array(None)
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    // BLMOVE on one slot; XREAD BLOCK woken by XADD; keys on two shards: CROSSSLOT.
    let (src, dst) = ("{q}src", "{q}dst");
    let mover = thread::spawn(move || {
        let mut conn = support::RespConn::connect(port);
        conn.cmd(&["BLMOVE", src, dst, "LEFT", "RIGHT", "5"])
    });
    let stream = key_on(1, "stream");
    let stream2 = stream.clone();
    let reader = thread::spawn(move || {
        let mut conn = support::RespConn::connect(port);
        conn.cmd(&["XREAD", "BLOCK", "5000", "STREAMS", &stream2, "$"])
    });
    thread::sleep(Duration::from_millis(200));
    assert_eq!(conn.cmd(&["LPUSH", src, "m"]), Reply::Integer(1));
    assert!(matches!(
        conn.cmd(&["XADD", &stream, "*", "f", "v"]),
        Reply::Bulk(Some(_))
    ));
    assert_eq!(mover.join().unwrap(), Reply::bulk("m"));
    assert_eq!(
        conn.cmd(&["LRANGE", dst, "0", "-1"]),
        Reply::Array(Some(vec![Reply::bulk("m")]))
    );
    let Reply::Array(Some(streams)) = reader.join().unwrap() else {
        panic!("XREAD")
    };
    assert_eq!(streams.len(), 1);
    assert_eq!(
        conn.cmd(&["BLPOP", &key_on(0, "a"), &key_on(1, "b"), "1"]),
        Reply::Error("CROSSSLOT Keys in request don't hash to the same slot".into())
    );
}

#[test]
fn a_client_that_leaves_while_blocked_pops_nothing() {
    let (servers, proxy) = two_shards();
    let list = key_on(1, "jobs");
    let mut blocked = proxy.conn();
    blocked.send(&["BRPOP", &list, "0"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.info_field("pinned_connections") < 1 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    drop(blocked);
    while proxy.info_field("pinned_connections") > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(proxy.info_field("pinned_connections"), 0);
    let mut conn = proxy.conn();
    assert_eq!(conn.cmd(&["LPUSH", &list, "job"]), Reply::Integer(1));
    thread::sleep(Duration::from_millis(100));
    // The job is still there for the next worker.
    assert_eq!(servers[1].conn().cmd(&["LLEN", &list]), Reply::Integer(1));
    assert_eq!(
        conn.cmd(&["BRPOP", &list, "1"]),
        Reply::Array(Some(vec![Reply::bulk(&list), Reply::bulk("job")]))
    );
    // Past --max-pinned, a command that needs a pinned connection is refused.
    let limited = Proxy::start_with(
        &[servers[0].port(), servers[1].port()],
        &["--max-pinned", "1"],
    );
    let mut first = limited.conn();
    first.send(&["BLPOP", &list, "2"]);
    thread::sleep(Duration::from_millis(200));
    let mut second = limited.conn();
    assert_eq!(
        second.cmd(&["BLPOP", &list, "1"]),
        Reply::Error("ERR max number of pinned upstream connections reached (--max-pinned)".into())
    );
    assert_eq!(second.cmd(&["PING"]), Reply::Simple("PONG".into()));
    assert_eq!(first.read_reply(), Reply::Array(None));
}

#[test]
fn pinned_commands_keep_the_clients_order_and_odd_timeouts_are_safe() {
    let (_servers, proxy) = two_shards();
    let q = key_on(0, "ordered");
    let mut conn = proxy.conn();
    // DEL then BLPOP in one write: the BLPOP is sent after the DEL's reply, so it finds the
    // list gone and times out, as on one redis-server.
    assert_eq!(conn.cmd(&["RPUSH", &q, "a"]), Reply::Integer(1));
    let pipeline = [encode(&["DEL", &q]), encode(&["BLPOP", &q, "0.2"])].concat();
    conn.send_raw(&pipeline);
    assert_eq!(
        conn.read_replies(2),
        vec![Reply::Integer(1), Reply::Array(None)]
    );
    // Replies before a blocking command reach the client while it blocks.
    let port = proxy.port();
    let q2 = q.clone();
    let waker = thread::spawn(move || {
        thread::sleep(Duration::from_millis(500));
        support::RespConn::connect(port).cmd(&["LPUSH", &q2, "late"])
    });
    conn.send_raw(&[encode(&["PING"]), encode(&["BLPOP", &q, "0"])].concat());
    let started = Instant::now();
    assert_eq!(conn.read_reply(), Reply::Simple("PONG".into()));
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "PONG held back"
    );
    assert_eq!(
        conn.read_reply(),
        Reply::Array(Some(vec![Reply::bulk(&q), Reply::bulk("late")]))
    );
    assert_eq!(waker.join().unwrap(), Reply::Integer(1));
    // A timeout too large for any clock does not crash the session (redis-server refuses it).
    let refused = conn.cmd(&["BLPOP", &q, "1e300"]);
    assert!(refused.error_text().starts_with("ERR"), "{refused:?}");
    assert_eq!(conn.cmd(&["PING"]), Reply::Simple("PONG".into()));
    // XREADGROUP with a group named "block": no BLOCK option, so it does not block.
    let s = key_on(1, "stream");
    assert_eq!(
        conn.cmd(&["XGROUP", "CREATE", &s, "block", "$", "MKSTREAM"]),
        Reply::ok()
    );
    assert_eq!(
        conn.cmd(&["XREADGROUP", "GROUP", "block", "c", "STREAMS", &s, ">"]),
        Reply::Array(None)
    );
    // A RESP3 client's pinned connection is not a RESP2 client's: the same client switching
    // protocols gets each one's null.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(exchange(&mut raw, &["HELLO", "3"]).starts_with(b"%7\r\n"));
    let none = key_on(0, "none");
    assert_eq!(exchange(&mut raw, &["BLPOP", &none, "0.1"]), b"_\r\n");
    assert!(exchange(&mut raw, &["HELLO", "2"]).starts_with(b"*14\r\n"));
    assert_eq!(exchange(&mut raw, &["BLPOP", &none, "0.1"]), b"*-1\r\n");
    // Clients counted out, pinned connections closed.
    drop(conn);
    drop(raw);
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.info_field("pinned_connections") != 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(proxy.info_field("pinned_connections"), 0);
    // Only the connection asking INFO.
    assert_eq!(proxy.info_field("connected_clients"), 1);
}
