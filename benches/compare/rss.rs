//! Resident memory per idle connection: each echo server (1 core) in its own process (this
//! binary re-run with [`SERVER_ENV`] set), its VmRSS from `/proc/<pid>/status` read before and
//! after N connections that have each echoed one 4 KiB message and then stay open and idle.
//! The child prints its address when it accepts and exits when its stdin closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::servers::{App, Kind, Server};
use crate::{Measured, Row};

/// Set to a server's name, it makes this binary serve instead of benchmarking.
pub const SERVER_ENV: &str = "CORIO_COMPARE_RSS_SERVER";
const MESSAGE: usize = 4096;

/// The child's main: serve `kind` until stdin closes. `kind` may end in `:N` for N cores (1 by
/// default), which also makes this a way to run any of the echo servers alone, for profiling:
/// `CORIO_COMPARE_RSS_SERVER=tokio-ct:2 target/release/deps/compare-<hash>`.
pub fn serve(spec: &str) {
    let (name, cores) = match spec.split_once(':') {
        Some((name, cores)) => (name, cores.parse().unwrap_or(1)),
        None => (spec, 1),
    };
    let kind =
        Kind::from_name(name).unwrap_or_else(|| panic!("{SERVER_ENV}={spec}: unknown server"));
    let _ = corio::raise_fd_limit();
    let server = Server::start(kind, App::Echo, cores);
    println!("{}", server.addr());
    std::io::stdout().flush().expect("stdout");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(server);
}

pub fn run(connections: usize, rows: &mut Vec<Row>) -> Result<(), String> {
    let _ = corio::raise_fd_limit();
    let case = format!("RSS per idle connection, {connections} conns (4 KiB echoed each)");
    for kind in [Kind::TokioCt, Kind::Corio, Kind::CorioEpoll, Kind::Monoio] {
        let bytes = measure(kind, connections)?;
        rows.push(Row::new(
            "rss",
            &case,
            kind.name(),
            "bytes/conn",
            Measured {
                throughput: bytes,
                p99_us: None,
            },
        ));
    }
    Ok(())
}

fn measure(kind: Kind, connections: usize) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .env(SERVER_ENV, kind.name())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the {} server process: {e}", kind.name()))?;
    let pid = child.id();
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let addr: SocketAddr = line
        .trim()
        .parse()
        .map_err(|_| format!("the {} server printed {line:?}", kind.name()))?;
    let result = (|| {
        std::thread::sleep(Duration::from_millis(100));
        let before = vm_rss(pid)?;
        let message = vec![7u8; MESSAGE];
        let mut back = vec![0u8; MESSAGE];
        let mut streams = Vec::with_capacity(connections);
        for _ in 0..connections {
            let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            s.write_all(&message).map_err(|e| format!("write: {e}"))?;
            s.read_exact(&mut back).map_err(|e| format!("read: {e}"))?;
            streams.push(s);
        }
        std::thread::sleep(Duration::from_millis(300));
        let after = vm_rss(pid)?;
        drop(streams);
        Ok(after.saturating_sub(before) as f64 / connections as f64)
    })();
    drop(child.stdin.take());
    let _ = child.wait();
    result
}

/// VmRSS of `pid` in bytes.
fn vm_rss(pid: u32) -> Result<u64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| "no VmRSS line".to_string())
}
