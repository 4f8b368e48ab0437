//! examples/echo (the README's server) never serves with a core missing: under open-file
//! limits from tight to normal it either exits with an error before saying `listening`, or
//! says it once every core listens, and then both listening sockets are up (and, with fds to
//! spare, echo).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{example_path, IO_TIMEOUT};

/// How many sockets listen on `port` (IPv4, /proc/net/tcp state 0A).
fn listeners_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let needle = format!(":{port:04X} ");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && format!("{} ", fields[1]).ends_with(&needle) && fields[3] == "0A"
        })
        .count()
}

#[test]
fn under_any_fd_limit_echo_serves_on_every_core_or_exits_with_the_error() {
    let mut served = 0;
    for nofile in [6, 8, 9, 10, 12, 16, 64] {
        let mut child = Command::new("prlimit")
            .arg(format!("--nofile={nofile}"))
            .arg(example_path("echo"))
            .args(["--port", "0", "--cores", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("prlimit (util-linux)");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // A clean exit ends stdout at once; a server that listens says so first.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = stdout.read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("no line, no exit");
        match line.trim().strip_prefix("listening on ") {
            None => {
                let status = child.wait().unwrap();
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                assert!(!status.success(), "nofile {nofile}: exit 0 without serving");
                assert!(err.starts_with("echo: "), "nofile {nofile}: {err}");
            }
            Some(addr) => {
                let addr: std::net::SocketAddr = addr.parse().unwrap();
                assert_eq!(
                    listeners_on(addr.port()),
                    2,
                    "nofile {nofile}: a core's listener is missing"
                );
                if nofile < 64 {
                    // Listening, but with too few fds left to accept: it says so on stderr
                    // (EMFILE on accept, retried) rather than failing; not checked here.
                    let _ = child.kill();
                    let _ = child.wait();
                    continue;
                }
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                stream.write_all(b"ping").unwrap();
                let mut back = [0u8; 4];
                stream.read_exact(&mut back).unwrap();
                assert_eq!(&back, b"ping");
                served += 1;
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    assert!(served >= 1, "echo never served, even with 64 fds");
}
