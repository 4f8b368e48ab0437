//! corio's own programs under the fault plan (`CORIO_FAULTS`): the echo server, cat and
//! db-proxy, each given the faults io_uring produces (EINTR and EAGAIN to retry, short reads and
//! writes, forced SQ-full paths, CQs held until they overflow, CQEs in another order, and in the
//! last tests ECANCELED), checked byte for byte.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use support::{
    encode, example_path, parse_reply, pattern, ExampleServer, Proxy, Reply, TempDir, IO_TIMEOUT,
};

/// Faults a correct program absorbs without a visible difference.
const TRANSPARENT: &str =
    "seed=7,eagain=0.05,eintr=0.05,short=0.3,sq_full=0.05,cq_hold=0.2,reorder=0.5";
/// The same, plus 2% of ops failed with ECANCELED: the program may fail requests, but never
/// answers wrongly.
const WITH_ECANCELED: &str = "seed=9,eintr=0.05,short=0.3,cq_hold=0.2,reorder=0.5,ecanceled=0.02";

/// Sends `data` through the echo server on one connection (a writer thread, so neither side
/// blocks on a full socket) and returns what came back before EOF or an error.
fn echo_through(addr: std::net::SocketAddr, data: Vec<u8>) -> Vec<u8> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let len = data.len();
    let sending = std::thread::spawn(move || {
        for chunk in data.chunks(7_001) {
            if writer.write_all(chunk).is_err() {
                return;
            }
        }
    });
    let mut back = Vec::with_capacity(len);
    let mut reader = stream;
    let mut buf = vec![0u8; 65536];
    while back.len() < len {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => back.extend_from_slice(&buf[..n]),
        }
    }
    sending.join().unwrap();
    back
}

#[test]
fn echo_under_transparent_faults_is_byte_exact() {
    let server = ExampleServer::start(
        "echo",
        &["--port", "0", "--cores", "2"],
        &[("CORIO_FAULTS", TRANSPARENT)],
    );
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let data = pattern(512 * 1024, i);
                assert!(
                    echo_through(addr, data.clone()) == data,
                    "connection {i} differs"
                );
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
}

#[test]
fn echo_under_ecanceled_returns_a_prefix_never_a_wrong_byte() {
    let server = ExampleServer::start(
        "echo",
        &["--port", "0", "--cores", "2"],
        &[("CORIO_FAULTS", WITH_ECANCELED)],
    );
    let mut cut = 0;
    for i in 0..8 {
        let data = pattern(256 * 1024, i);
        let back = echo_through(server.addr, data.clone());
        assert!(
            data.starts_with(&back),
            "connection {i}: a wrong byte came back"
        );
        cut += usize::from(back.len() < data.len());
    }
    // The server is still serving after the connections it had to drop.
    let data = pattern(1000, 99);
    let back = echo_through(server.addr, data.clone());
    assert!(data.starts_with(&back));
    eprintln!("{cut} of 8 connections cut short by ECANCELED");
}

#[test]
fn cat_under_transparent_faults_is_byte_exact() {
    let dir = TempDir::new("rt-faults-cat");
    let path = dir.path().join("input.bin");
    let data = pattern(3 * 1024 * 1024 + 17, 5);
    std::fs::write(&path, &data).unwrap();
    for (chunk, depth) in [("65536", "4"), ("4096", "32"), ("1000", "1")] {
        let out = Command::new(example_path("cat"))
            .args(["--chunk", chunk, "--depth", depth])
            .arg(&path)
            .env("CORIO_FAULTS", TRANSPARENT)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == data,
            "cat --chunk {chunk} --depth {depth} differs"
        );
    }
}

#[test]
fn cat_under_ecanceled_fails_loudly_or_is_byte_exact() {
    let dir = TempDir::new("rt-faults-cat-ecanceled");
    let path = dir.path().join("input.bin");
    let data = pattern(1024 * 1024, 6);
    std::fs::write(&path, &data).unwrap();
    let out = Command::new(example_path("cat"))
        .args(["--chunk", "4096"])
        .arg(&path)
        .env("CORIO_FAULTS", WITH_ECANCELED)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if out.status.success() {
        assert!(out.stdout == data);
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("cancel"), "{stderr}");
        assert!(
            data.starts_with(&out.stdout),
            "a wrong byte before the error"
        );
    }
}

/// SET then GET 2,000 keys, pipelined in batches of 50, values of 1 to 3,000 bytes; returns
/// the exact answers and the failed ones.
fn set_get_round(proxy: &Proxy, tolerate_errors: bool) -> (usize, usize) {
    let mut conn = proxy.conn();
    let (mut ok, mut failed) = (0, 0);
    for batch in 0..40 {
        let keys: Vec<String> = (0..50).map(|i| format!("fault:{batch}:{i}")).collect();
        let values: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k}={}", "v".repeat(1 + (i * 61) % 3000)))
            .collect();
        for (k, v) in keys.iter().zip(&values) {
            conn.send(&["SET", k, v]);
        }
        for reply in conn.read_replies(keys.len()) {
            match reply {
                Reply::Simple(s) if s == "OK" => {}
                Reply::Error(e) if tolerate_errors => {
                    assert!(e.starts_with("ERR"), "{e}");
                }
                other => panic!("SET: {other:?}"),
            }
        }
        for k in &keys {
            conn.send(&["GET", k]);
        }
        for (reply, v) in conn.read_replies(keys.len()).into_iter().zip(&values) {
            match reply {
                Reply::Bulk(Some(got)) if got == v.as_bytes() => ok += 1,
                // A SET that failed leaves nothing, or an older value of this key never exists.
                Reply::Bulk(None) | Reply::Error(_) if tolerate_errors => failed += 1,
                other => panic!("GET returned a wrong reply: {other:?}"),
            }
        }
    }
    (ok, failed)
}

#[test]
fn db_proxy_under_transparent_faults_answers_every_request_exactly() {
    let proxy = Proxy::start_env(&[], &[], None, &[("CORIO_FAULTS", TRANSPARENT)]);
    let (ok, failed) = set_get_round(&proxy, false);
    assert_eq!((ok, failed), (2_000, 0));
    // INFO's runtime section shows the ring's counters, the injected faults among them.
    let Reply::Bulk(Some(info)) = proxy.conn().cmd(&["INFO", "runtime"]) else {
        panic!("INFO runtime is not a bulk string")
    };
    let info = String::from_utf8(info).unwrap();
    let field = |name: &str| -> u64 {
        let line = info
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{info}"));
        line[name.len() + 1..].parse().unwrap()
    };
    assert!(field("corio_sqes_submitted") > 4_000, "{info}");
    assert!(field("corio_faults_injected") > 100, "{info}");
    assert!(info.contains("core1_runtime:ticks="), "{info}");
    assert!(
        !info.contains("# Clients"),
        "INFO runtime shows only that section"
    );
}

/// Sends `requests` pipelined on a fresh connection and returns the replies that came back
/// before the proxy answered them all or closed the connection (which it may do when one of
/// its own socket ops was cancelled under it).
fn pipeline_until_closed(proxy: &Proxy, requests: &[Vec<&str>]) -> Vec<Reply> {
    let mut stream = TcpStream::connect_timeout(&proxy.addr(), IO_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let bytes: Vec<u8> = requests.iter().flat_map(|r| encode(r)).collect();
    let _ = stream.write_all(&bytes);
    let (mut replies, mut buf, mut chunk) = (Vec::new(), Vec::new(), vec![0u8; 65536]);
    while replies.len() < requests.len() {
        match parse_reply(&buf).expect("the proxy sent bad RESP") {
            Some((reply, used)) => {
                buf.drain(..used);
                replies.push(reply);
            }
            None => match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
        }
    }
    replies
}

#[test]
fn db_proxy_under_ecanceled_fails_requests_but_never_answers_wrongly() {
    let proxy = Proxy::start_env(&[], &[], None, &[("CORIO_FAULTS", WITH_ECANCELED)]);
    let (mut exact, mut failed, mut lost) = (0, 0, 0);
    for batch in 0..100 {
        let keys: Vec<String> = (0..40).map(|i| format!("fault:{batch}:{i}")).collect();
        let values: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k}={}", "v".repeat(1 + (i * 61) % 3000)))
            .collect();
        let mut requests: Vec<Vec<&str>> = Vec::new();
        for (k, v) in keys.iter().zip(&values) {
            requests.push(vec!["SET", k, v]);
        }
        for k in &keys {
            requests.push(vec!["GET", k]);
        }
        let replies = pipeline_until_closed(&proxy, &requests);
        lost += requests.len() - replies.len();
        for (i, reply) in replies.into_iter().enumerate() {
            let expected = if i < keys.len() {
                Reply::Simple("OK".into())
            } else {
                Reply::bulk(&values[i - keys.len()])
            };
            match reply {
                r if r == expected => exact += 1,
                Reply::Error(e) => {
                    assert!(
                        e.split(' ')
                            .next()
                            .is_some_and(|w| w.chars().all(|c| c.is_ascii_uppercase())),
                        "{e}"
                    );
                    failed += 1;
                }
                // The SET of this key failed (its reply was an error), so it holds nothing.
                Reply::Bulk(None) if i >= keys.len() => failed += 1,
                other => panic!("request {i} of batch {batch}: wrong reply {other:?}"),
            }
        }
    }
    assert_eq!(exact + failed + lost, 100 * 80);
    // Every ECANCELED on an upstream socket resets that connection and fails what was on it
    // (the proxy's rule for a broken upstream), so most requests fail here; none is wrong.
    assert!(exact > 0, "{exact} exact, {failed} failed, {lost} lost");
    eprintln!("{exact} exact, {failed} error replies, {lost} unanswered (connection closed)");
    // The proxy still serves a client after all that.
    let replies = pipeline_until_closed(&proxy, &[vec!["PING"]]);
    assert!(replies.is_empty() || replies[0] == Reply::Simple("PONG".into()));
}
