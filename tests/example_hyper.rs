//! The hyper examples on real sockets: hyper_server on two cores answered by curl and by the
//! hyper_client example, a request whose headers never finish timed out by hyper through
//! corio's timer, and a second copy of the server refused its port.

mod support;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{example_path, run_tool, ExampleServer, CLI_TIMEOUT, IO_TIMEOUT};

fn server(header_timeout_ms: &str) -> ExampleServer {
    ExampleServer::start(
        "hyper_server",
        &[
            "--port",
            "0",
            "--cores",
            "2",
            "--header-timeout-ms",
            header_timeout_ms,
        ],
        &[],
    )
}

#[test]
fn curl_gets_answers_from_hyper_on_corio() {
    let server = server("5000");
    let url = format!("http://{}/", server.addr);
    for _ in 0..20 {
        let out = run_tool("curl", &["-sS", "--max-time", "5", &url], None, CLI_TIMEOUT);
        assert!(
            out.stdout.starts_with("hello from core "),
            "{}{}",
            out.stdout,
            out.stderr
        );
    }
    let echo = format!("http://{}/echo", server.addr);
    let body = "x".repeat(100_000);
    let out = run_tool(
        "curl",
        &["-sS", "--max-time", "5", "--data-binary", "@-", &echo],
        Some(body.as_bytes()),
        CLI_TIMEOUT,
    );
    assert_eq!(out.stdout, body);
    let missing = format!("http://{}/nothing", server.addr);
    let out = run_tool(
        "curl",
        &[
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &missing,
        ],
        None,
        CLI_TIMEOUT,
    );
    assert_eq!(out.stdout, "404");
}

#[test]
fn the_hyper_client_example_fetches_concurrently() {
    let server = server("5000");
    let out = Command::new(example_path("hyper_client"))
        .args(["--url", &format!("http://{}/", server.addr)])
        .args(["--requests", "3000", "--connections", "24"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3000 x 200"), "{stdout}");
}

#[test]
fn a_request_whose_headers_stall_is_timed_out() {
    let server = server("300");
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    // hyper answers 408 or just closes; either way the connection ends, well before IO_TIMEOUT.
    let mut answer = Vec::new();
    let res = stream.read_to_end(&mut answer);
    let took = started.elapsed();
    assert!(
        res.is_ok(),
        "the connection was not closed: {res:?} after {took:?}"
    );
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(4), "closed late: {took:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // A client that sends its headers in time is still served on the same server.
    let mut ok = std::net::TcpStream::connect(server.addr).unwrap();
    ok.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    ok.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    ok.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
}

#[test]
fn a_second_copy_cannot_take_the_port() {
    let server = server("5000");
    let out = Command::new(example_path("hyper_server"))
        .args(["--port", &server.addr.port().to_string(), "--cores", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use"), "{stderr}");
}
