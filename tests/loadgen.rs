//! The loadgen example against small servers on std threads that misbehave on purpose: one
//! that stalls (the open loop must charge the stall to every request it delayed), one that
//! drops connections, one that is not there, one that answers HTTP 500. Each server listens on
//! a free loopback port, every socket has a timeout, and every server thread ends on its own.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{example_path, run_tool, ToolOutput, IO_TIMEOUT};

/// How long one loadgen run may take before it is killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs loadgen with `args` (plus `--json --quiet`).
fn loadgen(args: &[&str]) -> ToolOutput {
    let path = example_path("loadgen");
    let mut all = args.to_vec();
    all.extend(["--json", "--quiet"]);
    run_tool(path.to_str().expect("utf-8 path"), &all, None, RUN_TIMEOUT)
}

fn report(out: &ToolOutput) -> Value {
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "loadgen printed no JSON ({e}):\n{}\n{}",
            out.stdout, out.stderr
        )
    })
}

/// A server that stops when dropped: it sets a flag and wakes its accept loop.
struct TestServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl TestServer {
    /// Accepts connections on a free port; each is served by `serve` on its own thread.
    fn start(serve: impl Fn(TcpStream) + Send + Sync + Clone + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("local_addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
                let serve = serve.clone();
                thread::spawn(move || serve(stream));
            }
        });
        TestServer {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Echoes 64-byte messages; a message read during `[stall_from, stall_until)` is held until
/// `stall_until`.
fn stalling_echo(stall_from: Instant, stall_until: Instant) -> TestServer {
    TestServer::start(move |mut stream| {
        let mut buf = [0u8; 64];
        loop {
            if stream.read_exact(&mut buf).is_err() {
                return;
            }
            let now = Instant::now();
            if now >= stall_from && now < stall_until {
                thread::sleep(stall_until - now);
            }
            if stream.write_all(&buf).is_err() {
                return;
            }
        }
    })
}

fn p(report: &Value, label: &str) -> f64 {
    report["latency_us"][label]
        .as_f64()
        .unwrap_or_else(|| panic!("no latency_us.{label} in {report}"))
}

#[test]
fn open_loop_charges_a_stall_to_every_request_it_delayed() {
    // Runs start ~20 ms after launch and last 2 s; the server stalls for 1 s from 0.5 s in.
    // Open loop at 2,000 req/s: half the requests are due during the stall and wait on average
    // 0.5 s, so p90 is about 0.8 s. Closed loop hides it: only the 4 requests caught in the
    // stall are slow, among thousands.
    // Build (or find) the binary first: the stall is timed from `start`, and a build or a
    // wait for another test's build after it would move the stall out of the run.
    example_path("loadgen");
    for (mode, rate) in [("open", Some("2000")), ("closed", None)] {
        let start = Instant::now();
        let server = stalling_echo(
            start + Duration::from_millis(500),
            start + Duration::from_millis(1500),
        );
        let addr = server.addr();
        let mut args = vec![addr.as_str(), "-c", "4", "-d", "2s", "--timeout", "5s"];
        if let Some(rate) = rate {
            args.extend(["--rate", rate]);
        }
        let out = loadgen(&args);
        assert!(out.status.success(), "{mode}: {}", out.stderr);
        let report = report(&out);
        assert_eq!(report["mode"], mode);
        assert_eq!(report["errors"]["total"], 0, "{report}");
        assert!(
            p(&report, "max") >= 800_000.0,
            "{mode}: the stall is the max: {report}"
        );
        if mode == "open" {
            assert!(
                p(&report, "p90") >= 400_000.0,
                "open loop hid the stall: {report}"
            );
            // The schedule kept its rate: every due request was sent, late or not.
            let requests = report["requests"].as_u64().unwrap();
            assert!(
                (3_600..=4_100).contains(&requests),
                "{requests} requests: {report}"
            );
        } else {
            assert!(p(&report, "p90") < 100_000.0, "closed loop p90: {report}");
        }
    }
}

#[test]
fn open_loop_that_falls_behind_ends_on_time_and_counts_what_it_never_sent() {
    // The server stalls from 0.5 s until 2.5 s; the run lasts 1 s at 2,000 req/s. From 0.5 s on
    // each connection has its one request (pipeline 1) stuck, so the ~1,000 requests due until
    // the end cannot be sent: they are counted as unsent, not forgotten, and the run ends once
    // the stuck replies come (no request timeout: 5 s).
    example_path("loadgen"); // built before the clock starts (see above)
    let start = Instant::now();
    let server = stalling_echo(
        start + Duration::from_millis(500),
        start + Duration::from_millis(2500),
    );
    let addr = server.addr();
    let out = loadgen(&[
        &addr,
        "-c",
        "2",
        "-d",
        "1s",
        "--rate",
        "2000",
        "--timeout",
        "5s",
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(start.elapsed() < Duration::from_secs(10), "the run overran");
    let report = report(&out);
    let requests = report["requests"].as_u64().unwrap();
    let unsent = report["errors"]["unsent"].as_u64().unwrap();
    assert!((800..=1_100).contains(&unsent), "{report}");
    assert!(
        (1_900..=2_100).contains(&(requests + unsent)),
        "every request due was answered or counted: {report}"
    );
    assert_eq!(report["errors"]["timeouts"], 0, "{report}");
}

#[test]
fn closed_loop_recovers_after_its_requests_time_out() {
    // A 200 ms request timeout against a 1 s stall: the stalled connections time out (and
    // reconnect into the stall again); after it, the run goes on at full speed.
    example_path("loadgen"); // built before the clock starts (see above)
    let start = Instant::now();
    let server = stalling_echo(
        start + Duration::from_millis(500),
        start + Duration::from_millis(1500),
    );
    let addr = server.addr();
    let out = loadgen(&[&addr, "-c", "2", "-d", "2500ms", "--timeout", "200ms"]);
    assert!(out.status.success(), "{}", out.stderr);
    let report = report(&out);
    assert!(
        report["errors"]["timeouts"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert_eq!(report["errors"]["dropped"], 0, "{report}");
    assert_eq!(report["errors"]["lost"], 0, "{report}");
    assert!(report["requests"].as_u64().unwrap() > 1_000, "{report}");
}

#[test]
fn dropped_connections_are_counted_and_the_run_goes_on() {
    // Each connection gets 10 replies, then the server closes it: its write side first (the
    // client reads EOF), then it drains what the client still sends until the client closes.
    // Closing at once with a request unread would make the kernel send a reset instead, and
    // the client would see "reset", not "closed", depending on a race.
    let server = TestServer::start(|mut stream| {
        let mut buf = [0u8; 64];
        for _ in 0..10 {
            if stream.read_exact(&mut buf).is_err() || stream.write_all(&buf).is_err() {
                return;
            }
        }
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = std::io::copy(&mut stream, &mut std::io::sink());
    });
    let addr = server.addr();
    let out = loadgen(&[&addr, "-c", "4", "-d", "1s"]);
    assert!(out.status.success(), "{}", out.stderr);
    let report = report(&out);
    let dropped = report["errors"]["dropped"].as_u64().unwrap();
    let requests = report["requests"].as_u64().unwrap();
    assert!(
        dropped >= 4,
        "every connection was dropped at least once: {report}"
    );
    assert!(
        requests >= 10 * dropped,
        "reconnected and went on: {report}"
    );
    // Each drop lost the request in flight on that connection.
    assert_eq!(
        report["errors"]["lost"].as_u64().unwrap(),
        dropped,
        "{report}"
    );
    let first = report["errors"]["first"].to_string();
    assert!(first.contains("closed"), "{first}");
}

#[test]
fn a_refused_target_is_a_clear_error_and_exit_status_1() {
    let port = support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let out = loadgen(&[&addr, "-c", "2", "-d", "300ms"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("refused"), "{}", out.stderr);
    let report = report(&out);
    assert!(
        report["errors"]["connect"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert_eq!(report["requests"], 0);
    assert!(
        report["latency_us"]["p50"].is_null(),
        "no reply, no latency: {report}"
    );
}

#[test]
fn http_error_statuses_are_error_replies_and_the_request_count_is_exact() {
    let server = TestServer::start(|mut stream| {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                buf.drain(..end + 4);
                let reply = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops";
                if stream.write_all(reply).is_err() {
                    return;
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    let addr = server.addr();
    let out = loadgen(&[
        &addr,
        "--protocol",
        "http",
        "-c",
        "3",
        "-n",
        "300",
        "-P",
        "2",
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    let report = report(&out);
    assert_eq!(report["requests"], 300, "{report}");
    assert_eq!(report["errors"]["error_replies"], 300, "{report}");
    assert_eq!(report["errors"]["total"], 300, "{report}");
}

#[test]
fn an_open_loop_against_a_refused_target_counts_every_due_request_as_unsent() {
    let port = support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let out = loadgen(&[&addr, "-c", "2", "-d", "500ms", "--rate", "1000"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let report = report(&out);
    let unsent = report["errors"]["unsent"].as_u64().unwrap();
    assert!((450..=510).contains(&unsent), "{report}");
}

#[test]
fn the_wrong_protocol_gets_a_hint() {
    // An echo server never answers an HTTP request with an HTTP reply.
    let server = TestServer::start(|mut stream| {
        let mut buf = [0u8; 1024];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || stream.write_all(b"not http at all\r\n\r\n").is_err() {
                return;
            }
        }
    });
    let addr = server.addr();
    let out = loadgen(&[&addr, "--protocol", "http", "-c", "1", "-d", "300ms"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("is --protocol right?"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for args in [
        &["127.0.0.1:1", "-c", "0"][..],
        &["127.0.0.1:1", "--rate=-5"][..],
        &["127.0.0.1:1", "--protocol", "gopher"][..],
        &["no-such-host.invalid:1"][..],
    ] {
        let out = loadgen(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
        // Ours start with "loadgen: ", clap's with "error: ".
        assert!(
            out.stderr.starts_with("loadgen: ") || out.stderr.starts_with("error: "),
            "{}",
            out.stderr
        );
    }
}
