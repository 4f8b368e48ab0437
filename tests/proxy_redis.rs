//! The db-proxy example in front of two real redis-server processes: keys land on the server
//! that owns their Redis Cluster hash slot, and a stopped server fails only its own keys.
//!
//! Builds the example itself on first use (see `support::db_proxy_path`); needs
//! redis-server installed (`apt-get install -y redis-server redis-tools`).

mod support;

use support::{crc16, encode, key_slot, shard_of, two_shards, Proxy, RedisServer, Reply};

fn nil() -> Reply {
    Reply::Bulk(None)
}

#[test]
fn keys_land_on_the_server_that_owns_their_slot() {
    let (servers, proxy) = two_shards();
    let mut conn = proxy.conn();
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            conn.cmd(&["SET", key, &format!("v{i}")]),
            Reply::ok(),
            "SET {key}"
        );
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            conn.cmd(&["GET", key]),
            Reply::bulk(&format!("v{i}")),
            "GET {key} via proxy"
        );
    }

    let mut direct = [servers[0].conn(), servers[1].conn()];
    let mut per_shard = [0i64; 2];
    for (i, key) in keys.iter().enumerate() {
        let owner = shard_of(key, 2);
        per_shard[owner] += 1;
        let slot = key_slot(key.as_bytes());
        let on_owner = direct[owner].cmd(&["GET", key]);
        assert_eq!(
            on_owner,
            Reply::bulk(&format!("v{i}")),
            "{key} (slot {slot}) on shard {owner}"
        );
        let on_other = direct[1 - owner].cmd(&["GET", key]);
        assert_eq!(
            on_other,
            nil(),
            "{key} (slot {slot}) must not be on shard {}",
            1 - owner
        );
    }
    assert!(
        per_shard[0] > 0 && per_shard[1] > 0,
        "keys per shard: {per_shard:?}"
    );
    // Nothing else was written anywhere.
    assert_eq!(direct[0].cmd(&["DBSIZE"]), Reply::Integer(per_shard[0]));
    assert_eq!(direct[1].cmd(&["DBSIZE"]), Reply::Integer(per_shard[1]));
}

#[test]
fn hash_tagged_keys_share_a_server() {
    let (servers, proxy) = two_shards();
    // A tag whose two keys would land on different shards if the tag were ignored.
    let whole_key_shard = |key: &str| usize::from(crc16(key.as_bytes()) & 16383) * 2 / 16384;
    let (a, b) = (0..1000)
        .map(|t| {
            (
                format!("{{user{t}}}.following"),
                format!("{{user{t}}}.followers"),
            )
        })
        .find(|(a, b)| whole_key_shard(a) != whole_key_shard(b))
        .expect("some tag splits when hashed whole");
    assert_eq!(key_slot(a.as_bytes()), key_slot(b.as_bytes()));
    let owner = shard_of(&a, 2);

    let mut conn = proxy.conn();
    assert_eq!(conn.cmd(&["SET", &a, "A"]), Reply::ok());
    assert_eq!(conn.cmd(&["SET", &b, "B"]), Reply::ok());
    let mut on_owner = servers[owner].conn();
    let mut on_other = servers[1 - owner].conn();
    assert_eq!(
        (on_owner.cmd(&["GET", &a]), on_owner.cmd(&["GET", &b])),
        (Reply::bulk("A"), Reply::bulk("B"))
    );
    assert_eq!(
        (on_other.cmd(&["GET", &a]), on_other.cmd(&["GET", &b])),
        (nil(), nil())
    );
}

#[test]
fn pipelined_requests_across_both_servers_reply_in_order() {
    let (_servers, proxy) = two_shards();
    let mut conn = proxy.conn();
    let keys: Vec<String> = (0..200).map(|i| format!("pipe{i}")).collect();
    let sets: Vec<u8> = keys
        .iter()
        .enumerate()
        .flat_map(|(i, k)| encode(&["SET", k, &format!("value{i}")]))
        .collect();
    conn.send_raw(&sets);
    assert_eq!(conn.read_replies(200), vec![Reply::ok(); 200]);
    let gets: Vec<u8> = keys.iter().flat_map(|k| encode(&["GET", k])).collect();
    conn.send_raw(&gets);
    for (i, reply) in conn.read_replies(200).into_iter().enumerate() {
        assert_eq!(
            reply,
            Reply::bulk(&format!("value{i}")),
            "reply {i} is for {}",
            keys[i]
        );
    }
}

#[test]
fn a_stopped_server_fails_its_keys_and_the_other_keeps_working() {
    let [s0, s1] = [RedisServer::start(), RedisServer::start()];
    let proxy = Proxy::start(&[s0.port(), s1.port()]);
    let first_key_on = |shard: usize| {
        (0..1000)
            .map(|i| format!("k{i}"))
            .find(|k| shard_of(k, 2) == shard)
            .expect("a key")
    };
    let (dead_key, live_key) = (first_key_on(0), first_key_on(1));

    let mut conn = proxy.conn();
    assert_eq!(conn.cmd(&["SET", &dead_key, "on0"]), Reply::ok());
    assert_eq!(conn.cmd(&["SET", &live_key, "on1"]), Reply::ok());
    assert_eq!(conn.cmd(&["GET", &dead_key]), Reply::bulk("on0"));

    drop(s0); // killed and reaped: its connections are closed, its port refuses

    // Each read waits at most 5 s, so a hang fails the test instead of blocking it.
    for _ in 0..3 {
        let reply = conn.cmd(&["GET", &dead_key]);
        assert!(
            matches!(reply, Reply::Error(_)),
            "GET on the stopped shard gave {reply:?}"
        );
        assert_eq!(conn.cmd(&["GET", &live_key]), Reply::bulk("on1"));
    }
    // In one pipeline, the error takes its place in order.
    let batch = [
        encode(&["GET", &dead_key]),
        encode(&["GET", &live_key]),
        encode(&["SET", &dead_key, "x"]),
        encode(&["SET", &live_key, "still here"]),
        encode(&["PING"]),
    ]
    .concat();
    conn.send_raw(&batch);
    let replies = conn.read_replies(5);
    assert!(matches!(replies[0], Reply::Error(_)), "{replies:?}");
    assert_eq!(replies[1], Reply::bulk("on1"), "{replies:?}");
    assert!(matches!(replies[2], Reply::Error(_)), "{replies:?}");
    assert_eq!(
        replies[3..],
        [Reply::ok(), Reply::Simple("PONG".into())],
        "{replies:?}"
    );

    // A new client sees the same, and the surviving server holds the write.
    let mut fresh = proxy.conn();
    assert!(matches!(fresh.cmd(&["GET", &dead_key]), Reply::Error(_)));
    assert_eq!(fresh.cmd(&["GET", &live_key]), Reply::bulk("still here"));
    assert_eq!(
        s1.conn().cmd(&["GET", &live_key]),
        Reply::bulk("still here")
    );
}

#[test]
fn passwords_on_both_sides() {
    let redis = RedisServer::start();
    let mut direct = redis.conn();
    let set = direct.cmd(&["CONFIG", "SET", "requirepass", "s3cret"]);
    assert_eq!(set, Reply::Simple("OK".into()));
    let proxy = Proxy::start_with(
        &[redis.port()],
        &["--upstream-password", "s3cret", "--requirepass", "front"],
    );
    let mut client = proxy.conn();
    let Reply::Error(noauth) = client.cmd(&["GET", "k"]) else {
        panic!("a command before AUTH is refused")
    };
    assert!(noauth.starts_with("NOAUTH"), "{noauth}");
    let Reply::Error(wrong) = client.cmd(&["AUTH", "nope"]) else {
        panic!("a wrong password is refused")
    };
    assert!(wrong.starts_with("WRONGPASS"), "{wrong}");
    assert_eq!(client.cmd(&["AUTH", "front"]), Reply::Simple("OK".into()));
    // The proxy authenticated to the upstream with --upstream-password.
    assert_eq!(client.cmd(&["SET", "k", "v"]), Reply::Simple("OK".into()));
    assert_eq!(client.cmd(&["GET", "k"]), Reply::bulk("v"));
    let mut other = proxy.conn();
    assert_eq!(
        other.cmd(&["AUTH", "default", "front"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(other.cmd(&["GET", "k"]), Reply::bulk("v"));
}

#[test]
fn an_upstream_going_down_and_coming_back_is_logged_once_each() {
    use std::io::{Read, Write};
    let port = support::free_port();
    let proxy = Proxy::start_with(&[port], &[]);
    let mut client = proxy.conn();
    // Nothing listens on the upstream's port: requests fail, retries back off.
    for _ in 0..3 {
        let reply = client.cmd(&["GET", "k"]);
        assert!(reply.error_text().starts_with("ERR upstream"), "{reply:?}");
        std::thread::sleep(std::time::Duration::from_millis(60));
    }
    // A stand-in upstream answers every request with a nil.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(support::IO_TIMEOUT)).unwrap();
        let mut buf = [0u8; 1024];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || stream.write_all(b"$-1\r\n").is_err() {
                break;
            }
        }
    });
    let mut back = false;
    for _ in 0..100 {
        if client.cmd(&["GET", "k"]) == Reply::Bulk(None) {
            back = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(back, "the upstream never came back: {}", proxy.stderr());
    drop(client);
    // The proxy's stderr reaches the test through a pipe drained by a thread: wait (bounded)
    // for the line rather than racing it.
    let back_line = format!("upstream 127.0.0.1:{port} is back");
    let mut log = proxy.stderr();
    for _ in 0..100 {
        if log.contains(&back_line) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        log = proxy.stderr();
    }
    let down = log.matches("unavailable: connect failed").count();
    assert_eq!(down, 1, "one line for the outage:\n{log}");
    assert!(log.contains(&back_line), "{log}");
    drop(proxy);
    server.join().unwrap();
}

#[test]
fn multi_key_commands_on_one_shard_are_forwarded_and_across_shards_get_crossslot() {
    let (_servers, proxy) = two_shards();
    let mut conn = proxy.conn();
    let crossslot = Reply::Error("CROSSSLOT Keys in request don't hash to the same slot".into());
    assert_eq!(conn.cmd(&["SET", "{t}a", "1"]), Reply::ok());
    assert_eq!(conn.cmd(&["RENAME", "{t}a", "{t}b"]), Reply::ok());
    assert_eq!(conn.cmd(&["GET", "{t}b"]), Reply::bulk("1"));
    assert_eq!(
        conn.cmd(&["MSETNX", "{t}x", "1", "{t}y", "2"]),
        Reply::Integer(1)
    );
    assert_eq!(conn.cmd(&["LPUSH", "{t}l", "v"]), Reply::Integer(1));
    assert_eq!(
        conn.cmd(&["LMOVE", "{t}l", "{t}m", "LEFT", "RIGHT"]),
        Reply::bulk("v")
    );
    // With --upstream shards the rule is one shard, not one slot: two keys of different
    // slots on the same shard are forwarded too.
    let (a, b) = (0..1000)
        .map(|i| format!("k{i}"))
        .filter(|k| shard_of(k, 2) == 0)
        .take(2)
        .fold((String::new(), String::new()), |(a, b), k| {
            if a.is_empty() {
                (k, b)
            } else {
                (a, k)
            }
        });
    assert_ne!(
        support::key_slot(a.as_bytes()),
        support::key_slot(b.as_bytes())
    );
    assert_eq!(conn.cmd(&["MSETNX", &a, "1", &b, "2"]), Reply::Integer(1));
    let other = (0..1000)
        .map(|i| format!("k{i}"))
        .find(|k| shard_of(k, 2) == 1)
        .unwrap();
    assert_eq!(conn.cmd(&["RENAME", &a, &other]), crossslot);
    assert_eq!(
        conn.cmd(&["EVAL", "return KEYS[1]", "2", &a, &other]),
        crossslot
    );
    assert_eq!(conn.cmd(&["EVAL", "return #KEYS", "0"]), Reply::Integer(0));
    assert_eq!(
        conn.cmd(&["EVAL", "return KEYS[1]", "1", &a]),
        Reply::bulk(&a)
    );
}

#[test]
fn admin_commands_fan_out_to_every_shard_with_merged_replies() {
    let (servers, proxy) = two_shards();
    let mut conn = proxy.conn();
    let keys: Vec<String> = (0..40).map(|i| format!("adm:{i}")).collect();
    for key in &keys {
        assert_eq!(conn.cmd(&["SET", key, "v"]), Reply::ok());
    }
    // KEYS: both shards' keys in one list.
    let Reply::Array(Some(found)) = conn.cmd(&["KEYS", "adm:*"]) else {
        panic!("KEYS is an array")
    };
    let mut found: Vec<String> = found
        .into_iter()
        .map(|k| match k {
            Reply::Bulk(Some(b)) => String::from_utf8(b).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    found.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(found, expected);
    assert!(matches!(conn.cmd(&["RANDOMKEY"]), Reply::Bulk(Some(_))));
    assert!(matches!(conn.cmd(&["TIME"]), Reply::Array(Some(t)) if t.len() == 2));
    // CONFIG SET reaches every shard; CONFIG GET reads the first.
    assert_eq!(
        conn.cmd(&["CONFIG", "SET", "maxmemory-samples", "7"]),
        Reply::ok()
    );
    for server in &servers {
        let direct = server.conn().cmd(&["CONFIG", "GET", "maxmemory-samples"]);
        assert_eq!(
            direct,
            Reply::Array(Some(vec![
                Reply::bulk("maxmemory-samples"),
                Reply::bulk("7")
            ]))
        );
    }
    let got = conn.cmd(&["CONFIG", "GET", "maxmemory-samples"]);
    assert_eq!(
        got,
        Reply::Array(Some(vec![
            Reply::bulk("maxmemory-samples"),
            Reply::bulk("7")
        ]))
    );
    // SCRIPT LOAD on every shard, so EVALSHA works on keys of either.
    let script = "return redis.call('GET', KEYS[1])";
    let Reply::Bulk(Some(sha)) = conn.cmd(&["SCRIPT", "LOAD", script]) else {
        panic!("SCRIPT LOAD gives a sha")
    };
    let sha = String::from_utf8(sha).unwrap();
    for key in keys.iter().take(6) {
        assert_eq!(conn.cmd(&["EVALSHA", &sha, "1", key]), Reply::bulk("v"));
    }
    let exists = conn.cmd(&["SCRIPT", "EXISTS", &sha, "0000"]);
    assert_eq!(
        exists,
        Reply::Array(Some(vec![Reply::Integer(1), Reply::Integer(0)]))
    );
    let library = "#!lua name=adm\nredis.register_function('adm_get', function(keys) \
                   return redis.call('GET', keys[1]) end)";
    assert_eq!(conn.cmd(&["FUNCTION", "LOAD", library]), Reply::bulk("adm"));
    for key in keys.iter().take(6) {
        assert_eq!(conn.cmd(&["FCALL", "adm_get", "1", key]), Reply::bulk("v"));
    }
    assert_eq!(conn.cmd(&["FUNCTION", "FLUSH"]), Reply::ok());
    let refused = conn.cmd(&["SCRIPT", "KILL"]);
    assert!(
        refused
            .error_text()
            .contains("'script|kill' is not supported"),
        "{refused:?}"
    );
    // FLUSHALL empties every shard.
    assert_eq!(conn.cmd(&["DBSIZE"]), Reply::Integer(40));
    assert_eq!(conn.cmd(&["FLUSHALL"]), Reply::ok());
    assert_eq!(conn.cmd(&["DBSIZE"]), Reply::Integer(0));
    assert_eq!(conn.cmd(&["RANDOMKEY"]), Reply::Bulk(None));
    for server in &servers {
        assert_eq!(server.conn().cmd(&["DBSIZE"]), Reply::Integer(0));
    }
}

/// Every key a SCAN loop through the proxy returns, with `extra` arguments (MATCH, COUNT...).
fn scan_all(conn: &mut support::RespConn, extra: &[&str]) -> (Vec<String>, usize) {
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    let mut calls = 0;
    loop {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(extra);
        let Reply::Array(Some(reply)) = conn.cmd(&args) else {
            panic!("SCAN is an array")
        };
        calls += 1;
        assert!(calls < 10_000, "SCAN never ended");
        let [Reply::Bulk(Some(next)), Reply::Array(Some(batch))] = &reply[..] else {
            panic!("SCAN reply: {reply:?}")
        };
        for key in batch {
            let Reply::Bulk(Some(key)) = key else {
                panic!("{key:?}")
            };
            keys.push(String::from_utf8(key.clone()).unwrap());
        }
        cursor = String::from_utf8(next.clone()).unwrap();
        if cursor == "0" {
            return (keys, calls);
        }
    }
}

#[test]
fn scan_visits_every_key_of_every_shard_exactly_once() {
    let (_servers, proxy) = two_shards();
    let mut conn = proxy.conn();
    let keys: Vec<String> = (0..2000).map(|i| format!("scan:{i}")).collect();
    let mut pipeline = Vec::new();
    for key in &keys {
        pipeline.extend(support::encode(&["SET", key, "v"]));
    }
    conn.send_raw(&pipeline);
    conn.read_replies(keys.len());
    assert_eq!(conn.cmd(&["SET", "other", "v"]), Reply::ok());
    let (mut found, calls) = scan_all(&mut conn, &["MATCH", "scan:*", "COUNT", "100"]);
    found.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(found.len(), 2000, "every key once ({calls} calls)");
    assert_eq!(found, expected);
    assert!(matches!(conn.cmd(&["SCAN", "x"]), Reply::Error(e) if e == "ERR invalid cursor"));
}
