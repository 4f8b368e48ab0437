//! Resident memory per idle connection: each echo server in its own process (this binary,
//! re-run with [`SERVER_ENV`] set), measured from `/proc/<pid>/status` VmRSS before and after
//! 10,000 connections that have each echoed one 4 KiB message and then stay idle.
//!
//! The child prints its address once it accepts, and exits when its stdin closes. Both
//! processes raise their open-file limit to the hard limit (10,000 sockets each).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use crate::servers::{self, Server, ServerKind};

/// Set to a server's name, it makes this binary serve instead of benchmarking.
pub const SERVER_ENV: &str = "CORIO_IO_BENCH_SERVER";

const CONNECTIONS: usize = 10_000;
const MESSAGE: usize = 4096;
const SERVERS: [ServerKind; 3] = [ServerKind::Corio, ServerKind::Tokio, ServerKind::Monoio];

/// The child's main: serve `kind` until stdin closes.
pub fn serve(kind: &str) {
    let kind = ServerKind::from_name(kind)
        .unwrap_or_else(|| panic!("{SERVER_ENV}={kind}: not a server this bench knows"));
    let _ = corio::raise_fd_limit();
    let server = Server::start(kind, crate::SERVER_CPU);
    println!("{}", server.addr());
    std::io::stdout().flush().expect("stdout");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(server);
}

/// Measures every server and prints one `rss-per-connection <server> <bytes>` line each.
pub fn run() {
    let _ = corio::raise_fd_limit();
    println!(
        "\nrss-per-connection: VmRSS growth / {CONNECTIONS} idle connections, \
         each having echoed {MESSAGE} bytes (server on CPU {})",
        crate::SERVER_CPU
    );
    for kind in SERVERS {
        let (before, after) = measure(kind);
        let per_conn = after.saturating_sub(before) / CONNECTIONS as u64;
        println!(
            "rss-per-connection {} {per_conn}    (VmRSS {} KiB -> {} KiB)",
            kind.name(),
            before / 1024,
            after / 1024
        );
    }
    let pool = u64::from(servers::CORIO_BUFFERS) * u64::from(servers::CORIO_BUFFER_SIZE);
    println!(
        "(corio's figure includes its provided-buffer pool, {} KiB for all connections, which \
         the warm-up touches: {} bytes per connection here)",
        pool / 1024,
        pool / CONNECTIONS as u64
    );
}

/// The server's VmRSS in bytes, before and after the connections.
fn measure(kind: ServerKind) -> (u64, u64) {
    let exe = std::env::current_exe().expect("this bench's path");
    let mut child = Command::new(exe)
        .env(SERVER_ENV, kind.name())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the server's address");
    let addr: SocketAddr = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the {} server printed {line:?}", kind.name()));
    let before = vm_rss(child.id());
    let message: Vec<u8> = (0..MESSAGE).map(|i| (i % 251) as u8).collect();
    let mut echo = vec![0u8; MESSAGE];
    let conns: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).expect("connect to the server");
            stream.set_nodelay(true).expect("TCP_NODELAY");
            stream.write_all(&message).expect("send");
            stream.read_exact(&mut echo).expect("receive the echo");
            assert_eq!(echo, message, "the server echoed other bytes");
            stream
        })
        .collect();
    let after = vm_rss(child.id());
    drop(conns);
    drop(child.stdin.take());
    let status = child.wait().expect("wait for the server process");
    assert!(
        status.success(),
        "the {} server exited with {status}",
        kind.name()
    );
    (before, after)
}

/// VmRSS of process `pid`, in bytes.
fn vm_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}
