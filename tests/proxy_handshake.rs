//! db-proxy's handshakes in front of two real redis-servers: `HELLO 3` gives the client RESP3
//! replies byte for byte as redis-server makes them (maps, sets, doubles, nulls, push
//! messages), and `AUTH user pass` / `HELLO 3 AUTH user pass` log in as a `--user`.
//!
//! Needs redis-server installed (`apt-get install -y redis-server redis-tools`).

mod support;

use std::net::TcpStream;

use support::{exchange, quiet_read, shard_of, Proxy, RedisServer, Reply};

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

#[test]
fn hello_3_gives_resp3_replies_as_redis_server_makes_them() {
    let servers = [RedisServer::start(), RedisServer::start()];
    let proxy = Proxy::start(&[servers[0].port(), servers[1].port()]);
    let key = |shard: usize, prefix: &str| {
        (0..1000)
            .map(|i| format!("{prefix}{i}"))
            .find(|k| shard_of(k, 2) == shard)
            .unwrap()
    };
    for (shard, server) in servers.iter().enumerate() {
        let mut direct = connect(server.port());
        let mut proxied = connect(proxy.port());
        for stream in [&mut direct, &mut proxied] {
            let hello = exchange(stream, &["HELLO", "3"]);
            assert!(
                hello.starts_with(b"%7\r\n"),
                "{:?}",
                String::from_utf8_lossy(&hello)
            );
            assert!(String::from_utf8_lossy(&hello).contains("proto\r\n:3\r\n"));
        }
        let (h, s, z, missing) = (
            key(shard, "hash"),
            key(shard, "set"),
            key(shard, "zset"),
            key(shard, "none"),
        );
        let script: &[&[&str]] = &[
            &["HSET", &h, "f", "v", "g", "w"],
            &["HGETALL", &h],
            &["SADD", &s, "a"],
            &["SMEMBERS", &s],
            &["ZADD", &z, "1.5", "m"],
            &["ZSCORE", &z, "m"],
            &["ZRANGE", &z, "0", "-1", "WITHSCORES"],
            &["GET", &missing],
            &["HGET", &h, "nope"],
            &["MULTI"],
            &["HGETALL", &h],
            &["EXEC"],
            &["PING"],
        ];
        let want: Vec<Vec<u8>> = script
            .iter()
            .map(|args| exchange(&mut direct, args))
            .collect();
        assert_eq!(exchange(&mut direct, &["FLUSHALL"]), b"+OK\r\n");
        for (args, want) in script.iter().zip(want) {
            let got = exchange(&mut proxied, args);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{args:?}"
            );
        }
        // Back to RESP2 on the same connection.
        assert!(exchange(&mut proxied, &["HELLO", "2"]).starts_with(b"*14\r\n"));
        assert_eq!(exchange(&mut proxied, &["HGET", &h, "nope"]), b"$-1\r\n");
    }
    // Pub/sub in RESP3: confirmations and messages are push messages.
    let channel = key(1, "chan");
    let mut sub = connect(proxy.port());
    exchange(&mut sub, &["HELLO", "3"]);
    let confirm = exchange(&mut sub, &["SUBSCRIBE", &channel]);
    assert_eq!(
        String::from_utf8_lossy(&confirm),
        format!(
            ">3\r\n$9\r\nsubscribe\r\n${}\r\n{channel}\r\n:1\r\n",
            channel.len()
        )
    );
    let mut publisher = proxy.conn();
    assert_eq!(
        publisher.cmd(&["PUBLISH", &channel, "hi"]),
        Reply::Integer(1)
    );
    let message = quiet_read(&mut sub);
    assert_eq!(
        String::from_utf8_lossy(&message),
        format!(
            ">3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n$2\r\nhi\r\n",
            channel.len()
        )
    );
    // Errors as redis-server gives them.
    let mut conn = proxy.conn();
    assert_eq!(
        conn.cmd(&["HELLO", "4"]),
        Reply::Error("NOPROTO unsupported protocol version".into())
    );
    assert_eq!(
        conn.cmd(&["HELLO", "3", "BOGUS"]),
        Reply::Error("ERR Syntax error in HELLO option 'BOGUS'".into())
    );
}

#[test]
fn auth_with_a_user_and_hello_auth_log_in() {
    let server = RedisServer::start();
    let proxy = Proxy::start_with(
        &[server.port()],
        &["--requirepass", "s3cret", "--user", "app:apppass"],
    );
    let mut conn = proxy.conn();
    let noauth = conn.cmd(&["GET", "k"]);
    assert!(noauth.error_text().starts_with("NOAUTH"), "{noauth:?}");
    let wrongpass =
        Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into());
    assert_eq!(conn.cmd(&["AUTH", "app", "bad"]), wrongpass);
    assert_eq!(conn.cmd(&["AUTH", "nobody", "apppass"]), wrongpass);
    assert_eq!(conn.cmd(&["AUTH", "app", "apppass"]), Reply::ok());
    assert_eq!(conn.cmd(&["ACL", "WHOAMI"]), Reply::bulk("app"));
    assert_eq!(conn.cmd(&["SET", "k", "v"]), Reply::ok());
    assert_eq!(conn.cmd(&["AUTH", "default", "s3cret"]), Reply::ok());
    assert_eq!(conn.cmd(&["ACL", "WHOAMI"]), Reply::bulk("default"));
    assert!(conn
        .cmd(&["ACL", "SETUSER", "x"])
        .error_text()
        .contains("not supported by this proxy"));
    // HELLO before authenticating: only with AUTH.
    let mut fresh = proxy.conn();
    let refused = fresh.cmd(&["HELLO", "3"]);
    assert!(
        refused
            .error_text()
            .starts_with("NOAUTH HELLO must be called"),
        "{refused:?}"
    );
    let mut stream = connect(proxy.port());
    let hello = exchange(
        &mut stream,
        &[
            "HELLO", "3", "AUTH", "app", "apppass", "SETNAME", "worker-1",
        ],
    );
    assert!(
        hello.starts_with(b"%7\r\n"),
        "{:?}",
        String::from_utf8_lossy(&hello)
    );
    assert_eq!(exchange(&mut stream, &["GET", "k"]), b"$1\r\nv\r\n");
    assert_eq!(
        exchange(&mut stream, &["CLIENT", "GETNAME"]),
        b"$8\r\nworker-1\r\n"
    );
    // RESET logs out.
    assert_eq!(exchange(&mut stream, &["RESET"]), b"+RESET\r\n");
    assert!(exchange(&mut stream, &["GET", "k"]).starts_with(b"-NOAUTH"));
}
