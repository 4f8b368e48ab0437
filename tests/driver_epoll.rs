//! Where io_uring is blocked, corio runs on its epoll driver: db-proxy and the echo example,
//! started under a seccomp filter that makes `io_uring_setup` fail with EPERM (as Docker's
//! default profile does), say so once on stderr and serve real clients; forcing io_uring there
//! is an error that names the cause.
//!
//! (The rest of the suite runs on the epoll driver too, in CI's second pass with
//! `CORIO_DRIVER=epoll`.)

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use support::seccomp::block_io_uring;
use support::{example_path, pattern, ExampleServer, Proxy, RedisServer, Reply, IO_TIMEOUT};

/// A process as a container runs it: io_uring blocked, no driver asked for (CI's epoll pass
/// sets `CORIO_DRIVER`, which would skip the fallback under test).
fn in_container(cmd: &mut Command) {
    cmd.env_remove("CORIO_DRIVER");
    block_io_uring(cmd);
}

#[test]
fn db_proxy_serves_redis_clients_where_io_uring_is_blocked() {
    let shards = [RedisServer::start(), RedisServer::start()];
    let ports: Vec<u16> = shards.iter().map(RedisServer::port).collect();
    let proxy = Proxy::start_prepared(&ports, &[], None, &[], in_container);
    let mut conn = proxy.conn();
    let info = match conn.cmd(&["INFO", "server"]) {
        Reply::Bulk(Some(text)) => String::from_utf8(text).unwrap(),
        other => panic!("INFO: {other:?}"),
    };
    assert!(info.contains("driver:epoll\r\n"), "{info}");
    let said = proxy.stderr();
    assert!(
        said.contains("corio: using the epoll driver")
            && said.contains("Operation not permitted")
            && said.contains("seccomp"),
        "{said}"
    );
    assert_eq!(said.matches("using the epoll driver").count(), 1, "{said}");

    // 2,000 pipelined SETs and GETs over both shards, values up to 64 KiB.
    let values: Vec<Vec<u8>> = (0..2_000)
        .map(|i| pattern(i % 97 * 677, i as u64))
        .collect();
    let mut wire = Vec::new();
    for (i, value) in values.iter().enumerate() {
        wire.extend(support::encode_bytes(&[
            b"SET".to_vec(),
            format!("key:{i}").into_bytes(),
            value.clone(),
        ]));
    }
    conn.send_raw(&wire);
    assert!(conn
        .read_replies(values.len())
        .iter()
        .all(|r| *r == Reply::ok()));
    for i in 0..values.len() {
        conn.send(&["GET", &format!("key:{i}")]);
        if i % 100 == 99 || i == values.len() - 1 {
            let start = i - i % 100;
            for (j, reply) in conn.read_replies(i + 1 - start).into_iter().enumerate() {
                assert_eq!(
                    reply,
                    Reply::Bulk(Some(values[start + j].clone())),
                    "key:{}",
                    start + j
                );
            }
        }
    }
    // A multi-key command split over both shards, and a transaction.
    assert_eq!(
        conn.cmd(&["MGET", "key:0", "key:1", "key:2", "nokey"]),
        Reply::Array(Some(vec![
            Reply::Bulk(Some(values[0].clone())),
            Reply::Bulk(Some(values[1].clone())),
            Reply::Bulk(Some(values[2].clone())),
            Reply::Bulk(None),
        ]))
    );
    assert_eq!(conn.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(conn.cmd(&["INCR", "{t}n"]), Reply::Simple("QUEUED".into()));
    assert_eq!(conn.cmd(&["INCR", "{t}n"]), Reply::Simple("QUEUED".into()));
    assert_eq!(
        conn.cmd(&["EXEC"]),
        Reply::Array(Some(vec![Reply::Integer(1), Reply::Integer(2)]))
    );
    // A blocked client woken by another client's push.
    let mut waiter = proxy.conn();
    waiter.send(&["BLPOP", "jobs", "5"]);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(conn.cmd(&["LPUSH", "jobs", "j1"]), Reply::Integer(1));
    assert_eq!(
        waiter.read_reply(),
        Reply::Array(Some(vec![Reply::bulk("jobs"), Reply::bulk("j1")]))
    );
}

#[test]
fn echo_example_serves_where_io_uring_is_blocked() {
    let server =
        ExampleServer::start_prepared("echo", &["--port", "0", "--cores", "2"], &[], in_container);
    let clients: Vec<_> = (0..8u64)
        .map(|salt| {
            let addr = server.addr;
            thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                let sent = pattern(256 * 1024, salt);
                let mut reader = stream.try_clone().unwrap();
                let expect = sent.len();
                let read = thread::spawn(move || {
                    let mut got = vec![0u8; expect];
                    reader.read_exact(&mut got).map(|_| got)
                });
                stream.write_all(&sent).unwrap();
                assert_eq!(read.join().unwrap().unwrap(), sent);
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let said = server.stderr();
    assert!(said.contains("corio: using the epoll driver"), "{said}");
}

#[test]
fn forcing_io_uring_where_it_is_blocked_fails_naming_the_cause() {
    let mut cmd = Command::new(example_path("echo"));
    cmd.args(["--port", "0", "--cores", "1"])
        .env("CORIO_DRIVER", "io_uring")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    block_io_uring(&mut cmd);
    let child = cmd.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("echo neither served nor exited")
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "it must not listen");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("cannot set up io_uring") && said.contains("seccomp"),
        "{said}"
    );
    assert!(!said.contains("epoll driver"), "{said}");
}
