//! db-proxy's pub/sub in front of two real redis-servers: SUBSCRIBE, PSUBSCRIBE and
//! SSUBSCRIBE answered as one redis-server answers them, and messages published through any
//! client reaching the subscribers, whichever shard their channel hashes to.
//!
//! Needs redis-server installed (`apt-get install -y redis-server redis-tools`).

mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::{key_on, two_shards, Proxy, Reply, RespConn};

fn push(kind: &str, name: Option<&str>, n: i64) -> Reply {
    Reply::Array(Some(vec![
        Reply::bulk(kind),
        name.map_or(Reply::Bulk(None), Reply::bulk),
        Reply::Integer(n),
    ]))
}

fn array(items: &[&str]) -> Reply {
    Reply::Array(Some(items.iter().map(|i| Reply::bulk(i)).collect()))
}

/// Waits (bounded) until INFO's `pinned_connections` is `n`.
fn wait_pinned(proxy: &Proxy, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.info_field("pinned_connections") != n && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(proxy.info_field("pinned_connections"), n);
}

#[test]
fn subscribed_mode_answers_as_one_redis_server() {
    let (servers, proxy) = two_shards();
    let (a, b) = (key_on(0, "chan"), key_on(1, "chan"));
    for port in [servers[0].port(), proxy.port()] {
        let mut conn = RespConn::connect(port);
        assert_eq!(conn.cmd(&["UNSUBSCRIBE"]), push("unsubscribe", None, 0));
        assert_eq!(conn.cmd(&["GET", "x"]), Reply::Bulk(None), "back to normal");
        conn.send(&["SUBSCRIBE", &a, &b, &a]);
        assert_eq!(
            conn.read_replies(3),
            vec![
                push("subscribe", Some(&a), 1),
                push("subscribe", Some(&b), 2),
                push("subscribe", Some(&a), 2)
            ],
            "port {port}"
        );
        assert_eq!(
            conn.cmd(&["PSUBSCRIBE", "news.*"]),
            push("psubscribe", Some("news.*"), 3)
        );
        assert_eq!(conn.cmd(&["PING"]), array(&["pong", ""]));
        assert_eq!(conn.cmd(&["PING", "hi"]), array(&["pong", "hi"]));
        assert_eq!(
            conn.cmd(&["GET", "x"]),
            Reply::Error(
                "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
                 RESET are allowed in this context"
                    .into()
            )
        );
        assert_eq!(
            conn.cmd(&["UNSUBSCRIBE", "never"]),
            push("unsubscribe", Some("never"), 3)
        );
        assert_eq!(
            conn.cmd(&["UNSUBSCRIBE", &a]),
            push("unsubscribe", Some(&a), 2)
        );
        conn.send(&["UNSUBSCRIBE"]);
        assert_eq!(conn.read_reply(), push("unsubscribe", Some(&b), 1));
        assert_eq!(
            conn.cmd(&["PUNSUBSCRIBE"]),
            push("punsubscribe", Some("news.*"), 0)
        );
        // Out of subscribed mode: ordinary commands again, pipelined right after. (redis 7.0
        // itself stays in subscribed mode here until the connection's next command: its
        // PING answers `pong` as an array; redis 7.2 and the proxy answer `+PONG`.)
        if port == servers[0].port() {
            continue;
        }
        conn.send_raw(
            &[
                support::encode(&["SUBSCRIBE", &a]),
                support::encode(&["UNSUBSCRIBE"]),
                support::encode(&["PING"]),
            ]
            .concat(),
        );
        assert_eq!(
            conn.read_replies(3),
            vec![
                push("subscribe", Some(&a), 1),
                push("unsubscribe", Some(&a), 0),
                Reply::Simple("PONG".into())
            ]
        );
        // RESET leaves subscribed mode too.
        assert_eq!(
            conn.cmd(&["SSUBSCRIBE", &a]),
            push("ssubscribe", Some(&a), 1)
        );
        assert_eq!(conn.cmd(&["RESET"]), Reply::Simple("RESET".into()));
        assert_eq!(conn.cmd(&["PING"]), Reply::Simple("PONG".into()));
    }
    wait_pinned(&proxy, 0);
}

#[test]
fn messages_published_through_any_client_reach_every_subscriber() {
    let (_servers, proxy) = two_shards();
    let (a, b) = (key_on(0, "room"), key_on(1, "room"));
    let mut sub = proxy.conn();
    sub.send(&["SUBSCRIBE", &a, &b]);
    assert_eq!(sub.read_replies(2).len(), 2);
    assert_eq!(
        sub.cmd(&["PSUBSCRIBE", "room*"]),
        push("psubscribe", Some("room*"), 3)
    );
    assert_eq!(
        sub.cmd(&["SSUBSCRIBE", &b]),
        push("ssubscribe", Some(&b), 1)
    );
    // One connection per shard for the channels and the pattern.
    assert_eq!(proxy.info_field("pinned_connections"), 2);
    let mut publisher = proxy.conn();
    // Each PUBLISH reaches the channel subscription and the pattern: 2 receivers.
    assert_eq!(publisher.cmd(&["PUBLISH", &a, "hello"]), Reply::Integer(2));
    assert_eq!(publisher.cmd(&["PUBLISH", &b, "world"]), Reply::Integer(2));
    assert_eq!(
        publisher.cmd(&["SPUBLISH", &b, "sharded"]),
        Reply::Integer(1)
    );
    let mut got: Vec<Reply> = sub.read_replies(5);
    got.sort_by_key(|r| format!("{r:?}"));
    let mut want = vec![
        array(&["message", &a, "hello"]),
        array(&["pmessage", "room*", &a, "hello"]),
        array(&["message", &b, "world"]),
        array(&["pmessage", "room*", &b, "world"]),
        array(&["smessage", &b, "sharded"]),
    ];
    want.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(got, want);
    // Many messages, in order per channel.
    for i in 0..500 {
        publisher.send(&["PUBLISH", &a, &i.to_string()]);
    }
    let acks = publisher.read_replies(500);
    assert!(acks.iter().all(|r| *r == Reply::Integer(2)));
    let mut seen = Vec::new();
    for reply in sub.read_replies(1000) {
        let Reply::Array(Some(items)) = reply else {
            panic!()
        };
        if items[0] == Reply::bulk("message") {
            seen.push(items[2].clone());
        }
    }
    let expected: Vec<Reply> = (0..500).map(|i| Reply::bulk(&i.to_string())).collect();
    assert_eq!(seen, expected);
    // The subscriber leaves: its connections are closed, and PUBLISH reaches nobody.
    drop(sub);
    wait_pinned(&proxy, 0);
    assert_eq!(publisher.cmd(&["PUBLISH", &a, "gone"]), Reply::Integer(0));
}

#[test]
fn reset_and_quit_wait_for_the_confirmations_before_them() {
    let (_servers, proxy) = two_shards();
    let (a, b) = (key_on(0, "c"), key_on(1, "c"));
    let mut conn = proxy.conn();
    let pipeline = [
        support::encode(&["SUBSCRIBE", &a, &b]),
        support::encode(&["RESET"]),
        support::encode(&["GET", "x"]),
    ]
    .concat();
    conn.send_raw(&pipeline);
    assert_eq!(
        conn.read_replies(4),
        vec![
            push("subscribe", Some(&a), 1),
            push("subscribe", Some(&b), 2),
            Reply::Simple("RESET".into()),
            Reply::Bulk(None)
        ]
    );
    let pipeline = [
        support::encode(&["PSUBSCRIBE", "p*"]),
        support::encode(&["QUIT"]),
    ]
    .concat();
    conn.send_raw(&pipeline);
    assert_eq!(
        conn.read_replies(2),
        vec![push("psubscribe", Some("p*"), 1), Reply::ok()]
    );
    conn.expect_closed();
    wait_pinned(&proxy, 0);
}

#[test]
fn pubsub_introspection_counts_every_shards_subscribers() {
    let (_servers, proxy) = two_shards();
    let (a, b) = (key_on(0, "topic"), key_on(1, "topic"));
    let mut first = proxy.conn();
    first.send(&["SUBSCRIBE", &a, &b]);
    first.read_replies(2);
    let mut second = proxy.conn();
    second.send(&["SUBSCRIBE", &b]);
    second.read_reply();
    assert_eq!(
        second.cmd(&["PSUBSCRIBE", "topic*"]),
        push("psubscribe", Some("topic*"), 2)
    );
    let mut conn = proxy.conn();
    assert_eq!(
        conn.cmd(&["PUBSUB", "NUMSUB", &a, &b, "nobody"]),
        Reply::Array(Some(vec![
            Reply::bulk(&a),
            Reply::Integer(1),
            Reply::bulk(&b),
            Reply::Integer(2),
            Reply::bulk("nobody"),
            Reply::Integer(0),
        ]))
    );
    assert_eq!(conn.cmd(&["PUBSUB", "NUMPAT"]), Reply::Integer(1));
    let Reply::Array(Some(mut channels)) = conn.cmd(&["PUBSUB", "CHANNELS"]) else {
        panic!("PUBSUB CHANNELS")
    };
    channels.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(channels, vec![Reply::bulk(&a), Reply::bulk(&b)]);
    assert!(conn
        .cmd(&["PUBSUB", "NOSUCH"])
        .error_text()
        .contains("not supported by this proxy"));
}
