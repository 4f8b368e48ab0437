//! db-proxy bounded by bytes and fair between clients (README, "Limits"): one client's big
//! pipeline, slow reads, large values or many connections neither delay other clients nor
//! leave memory behind, and every limit refuses at the length line, before buffering.
//!
//! Each test measures what its limit promises (latency, resident memory, bytes received) on a
//! real redis-server or a stand-in upstream, and prints the figures.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use support::{encode, Proxy, RedisServer, Reply, IO_TIMEOUT};

/// A raw client with the tests' usual timeouts.
fn raw(proxy: &Proxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).expect("connect to the proxy");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Polls `f` every 100 ms for up to `secs` seconds until it is true; its last value.
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 10 {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// A redis-server, a proxy in front of it started with `extra` arguments, and a client that
/// has set `{t}big` (1 MiB) and `{t}small` (`v`): both keys on one shard, so on one upstream
/// connection per core.
fn big_and_small(extra: &[&str]) -> (RedisServer, Proxy, support::RespConn) {
    let redis = RedisServer::start();
    let proxy = Proxy::start_with(&[redis.port()], extra);
    let mut client = proxy.conn();
    let big = "x".repeat(1 << 20);
    assert_eq!(client.cmd(&["SET", "{t}big", &big]), Reply::ok());
    assert_eq!(client.cmd(&["SET", "{t}small", "v"]), Reply::ok());
    (redis, proxy, client)
}

#[test]
fn a_pipeline_of_large_replies_never_read_does_not_delay_another_client_or_grow_memory() {
    let _serial = support::serial();
    let (_redis, proxy, mut victim) = big_and_small(&["--client-write-timeout-ms", "3000"]);
    let base = proxy.rss_mib();

    // Four clients pipeline 2,000 GETs of the 1 MiB value each (8 GB of replies) and never
    // read a byte.
    let gets: Vec<u8> = (0..2000).flat_map(|_| encode(&["GET", "{t}big"])).collect();
    let attackers: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = raw(&proxy);
            stream.write_all(&gets).unwrap();
            stream
        })
        .collect();

    let mut latencies = Vec::new();
    let mut peak = base;
    for _ in 0..30 {
        let start = Instant::now();
        assert_eq!(victim.cmd(&["GET", "{t}small"]), Reply::bulk("v"));
        latencies.push(start.elapsed());
        peak = peak.max(proxy.rss_mib());
        thread::sleep(Duration::from_millis(50));
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let max = latencies[latencies.len() - 1];
    println!(
        "victim GET: median {median:?}, max {max:?}; proxy RSS {base} MiB before, peak {peak} MiB"
    );
    // Before the window, the victim's GET waited behind gigabytes of replies and timed out
    // after 5 s, and the proxy grew by 681 MB.
    assert!(max < Duration::from_secs(1), "the victim waited {max:?}");
    assert!(
        peak < base + 200,
        "the proxy grew from {base} to {peak} MiB while four clients did not read"
    );

    // The attackers are closed once writing to them made no progress for 3 s; what was held
    // for them is given back.
    // Connected: the victim and the INFO connection.
    let gone = eventually(15, || proxy.info_field("connected_clients") == 2);
    assert!(gone, "the stalled clients were not closed");
    let drained = eventually(5, || proxy.info_field("buffer_memory") < 1 << 20);
    assert!(
        drained,
        "buffer_memory {} after the clients left",
        proxy.info_field("buffer_memory")
    );
    let settled = eventually(5, || proxy.rss_mib() < base + 24);
    println!("proxy RSS after they left: {} MiB", proxy.rss_mib());
    assert!(settled, "RSS stayed at {} MiB", proxy.rss_mib());
    drop(attackers);
}

#[test]
fn clients_reading_large_values_as_fast_as_they_can_take_turns_and_small_requests_pass() {
    let _serial = support::serial();
    let (_redis, proxy, mut victim) = big_and_small(&["--cores", "1"]);

    // Twelve clients GET the 1 MiB value in pipelines of 32 and read every reply, for 3 s:
    // about 16 of each one's requests are in flight at a time, and the shard's connection
    // lets at most 64 MiB of expected replies queue before these clients take turns.
    let stop = Instant::now() + Duration::from_secs(3);
    let readers: Vec<_> = (0..12)
        .map(|_| {
            let mut conn = proxy.conn();
            thread::spawn(move || {
                let batch: Vec<u8> = (0..32).flat_map(|_| encode(&["GET", "{t}big"])).collect();
                let mut replies = 0u64;
                while Instant::now() < stop {
                    conn.send_raw(&batch);
                    for reply in conn.read_replies(32) {
                        assert!(matches!(reply, Reply::Bulk(Some(ref v)) if v.len() == 1 << 20));
                        replies += 1;
                    }
                }
                replies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    while Instant::now() < stop {
        let start = Instant::now();
        assert_eq!(victim.cmd(&["GET", "{t}small"]), Reply::bulk("v"));
        latencies.push(start.elapsed());
        thread::sleep(Duration::from_millis(50));
    }
    let replies: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let max = latencies[latencies.len() - 1];
    println!(
        "{replies} 1 MiB replies in 3 s; small GET beside them: median {median:?}, max {max:?}"
    );
    assert!(replies > 100, "the readers were served: {replies}");
    assert!(max < Duration::from_secs(2), "the small GET waited {max:?}");
}

#[test]
fn an_upstream_dying_under_clients_waiting_for_it_to_drain_leaves_the_core_serving() {
    let _serial = support::serial();
    let (redis, proxy, mut victim) = big_and_small(&["--cores", "1"]);
    // Twelve clients keep the connection past its bound, so some of them wait for it to drain.
    let readers: Vec<_> = (0..12)
        .map(|_| {
            let mut conn = proxy.conn();
            thread::spawn(move || {
                let batch: Vec<u8> = (0..32).flat_map(|_| encode(&["GET", "{t}big"])).collect();
                let mut errors = 0;
                for _ in 0..200 {
                    conn.send_raw(&batch);
                    for reply in conn.read_replies(32) {
                        if matches!(reply, Reply::Error(_)) {
                            errors += 1;
                        }
                    }
                    if errors > 0 {
                        break;
                    }
                }
                errors
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    drop(redis); // killed: the connection fails under the waiting clients
    let killed = Instant::now();
    let errors: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    println!(
        "every reader saw the upstream go within {:?}",
        killed.elapsed()
    );
    assert!(errors > 0, "the readers saw the upstream go");
    // The core still serves: its own answers at once, the dead shard's requests with an error.
    assert_eq!(victim.cmd(&["PING"]), Reply::Simple("PONG".into()));
    let reply = victim.cmd(&["GET", "{t}big"]);
    assert!(reply.error_text().starts_with("ERR upstream"), "{reply:?}");
    assert!(proxy.info_field("buffer_memory") < 1 << 20);
}

#[test]
fn a_client_reading_slowly_but_steadily_gets_a_whole_reply_longer_than_the_write_timeout() {
    let _serial = support::serial();
    let redis = RedisServer::start();
    let proxy = Proxy::start_with(&[redis.port()], &["--client-write-timeout-ms", "1000"]);
    let value = support::pattern(16 << 20, 7);
    let mut setter = raw(&proxy);
    let mut request = b"*3\r\n$3\r\nSET\r\n$4\r\nslow\r\n$16777216\r\n".to_vec();
    request.extend_from_slice(&value);
    request.extend_from_slice(b"\r\n");
    setter.write_all(&request).unwrap();
    let mut ok = [0u8; 5];
    setter.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"+OK\r\n");

    // 64 KiB every 10 ms: about 6 MB/s, so the 16 MiB reply takes over 2.5 s, more than
    // twice the write timeout. (The kernel wakes a blocked sender only once a third of its
    // send buffer is free, so each stall lasts up to ~200 ms at this pace.)
    let mut reader = raw(&proxy);
    reader.write_all(&encode(&["GET", "slow"])).unwrap();
    let header = b"$16777216\r\n";
    let mut got = Vec::with_capacity(value.len() + 12);
    let start = Instant::now();
    let mut chunk = vec![0u8; 64 * 1024];
    while got.len() < header.len() + value.len() + 2 {
        let n = reader.read(&mut chunk).expect("the proxy keeps writing");
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&chunk[..n]);
        thread::sleep(Duration::from_millis(10));
    }
    println!("received {} bytes in {:?}", got.len(), start.elapsed());
    assert!(start.elapsed() > Duration::from_millis(1000));
    assert_eq!(&got[..header.len()], header);
    assert!(got[header.len()..header.len() + value.len()] == value[..]);
    assert_eq!(&got[header.len() + value.len()..], b"\r\n");
}

#[test]
fn a_large_value_leaves_no_memory_behind() {
    let _serial = support::serial();
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[redis.port()]);
    let base = proxy.rss_mib();
    let size = 100 << 20;
    let mut client = raw(&proxy);
    let value = vec![b'v'; size];
    let mut header = format!("*3\r\n$3\r\nSET\r\n$5\r\nlarge\r\n${size}\r\n").into_bytes();
    header.extend_from_slice(&value);
    header.extend_from_slice(b"\r\n");
    client.write_all(&header).unwrap();
    let mut ok = [0u8; 5];
    client.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"+OK\r\n");
    client.write_all(&encode(&["GET", "large"])).unwrap();
    let expected = size + format!("${size}\r\n").len() + 2;
    let mut got = 0;
    let mut chunk = vec![0u8; 1 << 20];
    let mut peak = 0;
    while got < expected {
        let n = client.read(&mut chunk).unwrap();
        assert!(n > 0);
        got += n;
        if got % (16 << 20) < n {
            peak = peak.max(proxy.rss_mib());
        }
    }
    drop(client);
    let settled = eventually(5, || proxy.rss_mib() < base + 24);
    println!(
        "100 MiB SET + GET: RSS {base} MiB before, {peak} MiB during, {} MiB after",
        proxy.rss_mib()
    );
    // Before, the upstream connection's batch and reply buffers kept 199 MB until it reset.
    assert!(settled, "RSS stayed at {} MiB", proxy.rss_mib());
    assert_eq!(proxy.info_field("buffer_memory"), 0);
}

#[test]
fn many_connections_with_large_requests_give_their_memory_back() {
    let _serial = support::serial();
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[redis.port()]);
    let base = proxy.rss_mib();
    let value = "w".repeat(200 * 1024);
    let request = encode(&["SET", "wide", &value]);
    let mut peaks = Vec::new();
    let mut after = Vec::new();
    for _ in 0..4 {
        // 400 clients at once each send a 200 KiB request, so each session's buffer grows.
        let mut clients: Vec<TcpStream> = (0..400).map(|_| raw(&proxy)).collect();
        for client in &mut clients {
            client.write_all(&request).unwrap();
        }
        for client in &mut clients {
            let mut ok = [0u8; 5];
            client.read_exact(&mut ok).unwrap();
            assert_eq!(&ok, b"+OK\r\n");
        }
        peaks.push(proxy.rss_mib());
        drop(clients);
        eventually(5, || proxy.info_field("connected_clients") == 1);
        eventually(3, || proxy.rss_mib() < base + 24);
        after.push(proxy.rss_mib());
    }
    println!("RSS {base} MiB at start; peaks {peaks:?}, after each round {after:?}");
    // Before, rounds like these grew RSS round after round (92 to 228 MB for 10,000 clients).
    assert!(
        after.iter().all(|&rss| rss < base + 24),
        "memory was not given back: {after:?} (base {base})"
    );
}

#[test]
fn a_bulk_of_exactly_proto_max_bulk_len_is_accepted_and_one_byte_more_is_refused_unbuffered() {
    let _serial = support::serial();
    let redis = RedisServer::start();
    let proxy = Proxy::start(&[redis.port()]);
    let base = proxy.rss_mib();

    // One byte more than redis-server's proto-max-bulk-len (512 MiB): refused at the length
    // line, with redis-server's text, nothing buffered.
    let mut over = raw(&proxy);
    over.write_all(b"*3\r\n$3\r\nSET\r\n$4\r\nhuge\r\n$536870913\r\n")
        .unwrap();
    let mut reply = Vec::new();
    over.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"-ERR Protocol error: invalid bulk length\r\n");
    assert!(proxy.rss_mib() < base + 16);

    // Exactly 512 MiB is accepted, as redis-server accepts it, and arrives whole.
    let size = 512usize << 20;
    let mut client = raw(&proxy);
    client
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    client
        .write_all(format!("*3\r\n$3\r\nSET\r\n$4\r\nhuge\r\n${size}\r\n").as_bytes())
        .unwrap();
    let chunk = vec![b'h'; 1 << 20];
    for _ in 0..size >> 20 {
        client.write_all(&chunk).unwrap();
    }
    client.write_all(b"\r\n").unwrap();
    let mut ok = [0u8; 5];
    client.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"+OK\r\n");
    let mut direct = redis.conn();
    assert_eq!(direct.cmd(&["STRLEN", "huge"]), Reply::Integer(size as i64));
    assert_eq!(direct.cmd(&["DEL", "huge"]), Reply::Integer(1));
    drop(client);
    let settled = eventually(5, || proxy.rss_mib() < base + 24);
    println!(
        "after the 512 MiB SET: RSS {} MiB (base {base})",
        proxy.rss_mib()
    );
    assert!(settled, "RSS stayed at {} MiB", proxy.rss_mib());
}

#[test]
fn the_process_budget_refuses_a_request_that_cannot_fit_at_its_length_line() {
    let _serial = support::serial();
    let redis = RedisServer::start();
    let proxy = Proxy::start_with(&[redis.port()], &["--max-buffer-memory", "4194304"]);
    assert_eq!(proxy.info_field("max_buffer_memory"), 4 << 20);
    // An 8 MiB value cannot fit a 4 MiB budget: refused before any of it is sent.
    let mut big = raw(&proxy);
    big.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$8388608\r\n")
        .unwrap();
    let mut reply = Vec::new();
    big.read_to_end(&mut reply).unwrap();
    assert_eq!(
        reply,
        b"-OOM command not allowed when the proxy's buffers exceed --max-buffer-memory\r\n"
    );
    // One that fits is served, and so is everyone else.
    let value = "m".repeat(2 << 20);
    let mut conn = proxy.conn();
    assert_eq!(conn.cmd(&["SET", "k", &value]), Reply::ok());
    assert_eq!(conn.cmd(&["STRLEN", "k"]), Reply::Integer(2 << 20));
    assert_eq!(proxy.info_field("buffer_memory"), 0);
}

#[test]
fn past_the_budget_requests_wait_for_memory_and_are_served_once_the_hog_is_closed() {
    let _serial = support::serial();
    let (_redis, proxy, mut victim) = big_and_small(&[
        "--max-buffer-memory",
        "2097152",
        "--client-write-timeout-ms",
        "2000",
        "--cores",
        "1",
    ]);
    // A client that never reads makes the proxy hold what of its window of 1 MiB replies the
    // sockets' buffers do not take: past the 2 MiB budget.
    let mut hog = raw(&proxy);
    let gets: Vec<u8> = (0..100).flat_map(|_| encode(&["GET", "{t}big"])).collect();
    hog.write_all(&gets).unwrap();
    let over = eventually(5, || proxy.info_field("buffer_memory") > 2 << 20);
    assert!(over, "buffer_memory {}", proxy.info_field("buffer_memory"));
    // The proxy's own answers go on; a forwarded request waits for memory rather than
    // failing, and is served once the hog is closed for not reading (2 s).
    assert_eq!(victim.cmd(&["PING"]), Reply::Simple("PONG".into()));
    let start = Instant::now();
    assert_eq!(victim.cmd(&["GET", "{t}small"]), Reply::bulk("v"));
    let waited = start.elapsed();
    println!("GET past the budget answered after {waited:?}");
    assert!(
        waited > Duration::from_millis(300),
        "the GET did not wait for memory: {waited:?}"
    );
    assert!(proxy.info_field("buffer_memory") < 1 << 20);
    drop(hog);
}

/// A stand-in upstream on one connection: `GET slow` is answered one byte per 100 ms (15
/// bytes, 1.5 s), anything else with `$4 fast` at once, strictly in order. Returns its port
/// and a handle giving the number of connections that carried GETs.
fn dribbling_upstream() -> (u16, thread::JoinHandle<usize>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let handle = thread::spawn(move || {
        let served = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Long enough for the test's first use to build the proxy.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut conns = Vec::new();
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(3)))
                        .unwrap();
                    let served = served.clone();
                    conns.push(thread::spawn(move || {
                        let got_gets = serve_dribbling(stream);
                        served.fetch_or(got_gets, std::sync::atomic::Ordering::SeqCst);
                        got_gets
                    }));
                }
                Err(_)
                    if conns
                        .iter()
                        .all(|c: &thread::JoinHandle<bool>| c.is_finished())
                        && served.load(std::sync::atomic::Ordering::SeqCst) =>
                {
                    break
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
        // Connections that carried GETs (not the proxy's COMMAND at start, which this
        // stand-in never answers).
        conns
            .into_iter()
            .filter_map(|c| c.join().ok())
            .filter(|&served| served)
            .count()
    });
    (port, handle)
}

/// Serves GETs until the connection ends; whether it served any.
fn serve_dribbling(mut stream: TcpStream) -> bool {
    // Every request is `*2 $3 GET $4 <key>`: 23 bytes, the key at 17..21.
    let mut request = [0u8; 23];
    let mut served = false;
    while stream.read_exact(&mut request).is_ok() {
        if !request.starts_with(b"*2\r\n$3\r\nGET") {
            return served;
        }
        served = true;
        if &request[17..21] == b"slow" {
            let reply = b"$9\r\nslowreply\r\n";
            for byte in reply.iter().take(reply.len() - 1) {
                if stream.write_all(&[*byte]).is_err() {
                    return served;
                }
                thread::sleep(Duration::from_millis(100));
            }
            let _ = stream.write_all(&reply[reply.len() - 1..]);
        } else if stream.write_all(b"$4\r\nfast\r\n").is_err() {
            return served;
        }
    }
    served
}

#[test]
fn a_request_timeout_fails_that_request_not_the_connection_others_share() {
    let _serial = support::serial();
    let (port, upstream) = dribbling_upstream();
    let proxy = Proxy::start_with(&[port], &["--cores", "1", "--request-timeout-ms", "1000"]);
    let mut slow = proxy.conn();
    let mut fast = proxy.conn();
    slow.send(&["GET", "slow"]);
    let timed_out = slow.read_reply();
    assert!(
        timed_out.error_text().starts_with("ERR upstream")
            && timed_out.error_text().contains("timed out"),
        "{timed_out:?}"
    );
    // The upstream kept sending, so the connection is not given up: a request queued behind
    // the slow reply (still 500 ms from done) gets its own reply, and later ones theirs.
    assert_eq!(fast.cmd(&["GET", "fast"]), Reply::bulk("fast"));
    assert_eq!(slow.cmd(&["GET", "next"]), Reply::bulk("fast"));
    drop((slow, fast, proxy));
    assert_eq!(
        upstream.join().unwrap(),
        1,
        "one upstream connection, never reset"
    );
}

#[test]
fn the_default_client_limit_fits_the_open_file_limit_and_is_said_at_start() {
    let _serial = support::serial();
    let proxy = Proxy::start_limited(&[], &[], Some(1000));
    let mut line = String::new();
    let said = eventually(3, || {
        line = proxy
            .stderr()
            .lines()
            .find(|l| l.contains("clients per core"))
            .unwrap_or_default()
            .to_owned();
        !line.is_empty()
    });
    assert!(said, "{}", proxy.stderr());
    let per_core: u64 = line
        .split("up to ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(line.contains("open-file limit 1000"), "{line}");
    // Two cores' clients and the proxy's own descriptors fit in 1000.
    // 1000 less the proxy's own (32 + 2 cores x (2 x 2 shards + 8)), shared by 2 cores.
    assert_eq!(per_core, 472, "{line}");
    assert_eq!(proxy.conn().cmd(&["PING"]), Reply::Simple("PONG".into()));
}
