//! Shared helpers for the integration tests: processes they start and stop themselves
//! (redis-server, the db-proxy example), a raw RESP client over std sockets, the redis-cli and
//! redis-benchmark tools, and the Redis Cluster key-to-slot rule the proxy shards by.
//!
//! Only `std` is used, so a test file can be built without cargo:
//! `rustc --edition 2021 --test tests/proxy_redis.rs -o /tmp/t_redis`. Every socket is on
//! loopback, every socket has a 5 s timeout, every wait is bounded, and every process started
//! here is killed and reaped by its guard's `Drop`, also when a test panics.

// Each test crate includes this module and uses a different part of it.
#![allow(dead_code)]

pub mod cluster;
pub mod seccomp;

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Read and write timeout of every socket the tests open.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a started redis-server may take to answer PING.
pub const REDIS_START_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the proxy may take to print its `listening on` line.
pub const PROXY_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one redis-cli run may take before it is killed.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(20);

const INSTALL_HINT: &str = "install it with `apt-get install -y redis-server redis-tools`";
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

// ---------------------------------------------------------------------------------------------
// Small helpers every test file may need

/// Serializes the tests of one test binary that count process-wide resources (open fds) or
/// must not overlap for another reason.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `len` bytes that depend on their position and on `salt`, so a lost, repeated or reordered
/// chunk shows in a comparison.
pub fn pattern(len: usize, salt: u64) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) ^ salt).rotate_right(13) as u8)
        .collect()
}

/// Polls `fut` once with a waker that does nothing (to put an op in flight, say).
pub fn poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> std::task::Poll<F::Output> {
    std::pin::Pin::new(fut).poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
}

// ---------------------------------------------------------------------------------------------
// Ports and processes

/// A loopback port that was free a moment ago: bound on `127.0.0.1:0`, read, released.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((LOOPBACK, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// Spawns `cmd`, turning a missing program into a panic that says how to install it.
#[track_caller]
fn spawn(cmd: &mut Command, what: &str, hint: &str) -> Child {
    match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            panic!("{what} is not installed ({e}): {hint}")
        }
        Err(e) => panic!("cannot start {what}: {e}"),
    }
}

/// Kills `child` (SIGKILL) and reaps it; an already exited child is only reaped.
fn kill_and_reap(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// A stream drained on a thread: what it collected, and `()` at its end.
type Drained = (Arc<Mutex<Vec<u8>>>, mpsc::Receiver<()>);

/// Drains `from` on a thread into a shared buffer; `done` receives `()` at end of stream.
fn drain<R: Read + Send + 'static>(mut from: R) -> Drained {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, done) = mpsc::channel();
    let sink = Arc::clone(&buf);
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match from.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
        let _ = done_tx.send(());
    });
    (buf, done)
}

/// The text a drained stream collected, after waiting (bounded) for its end of stream.
fn drained_text(buf: &Arc<Mutex<Vec<u8>>>, done: &mpsc::Receiver<()>) -> String {
    let _ = done.recv_timeout(Duration::from_secs(2));
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("corio-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// redis-server

/// A redis-server on a loopback port, killed and reaped on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: TempDir, // dropped after the process is killed
}

impl RedisServer {
    /// Starts a redis-server without persistence and waits until it answers PING.
    /// Panics if redis-server is not installed or does not answer within 5 s.
    #[track_caller]
    pub fn start() -> RedisServer {
        let mut failures = Vec::new();
        // Another process may take the free port before redis-server binds it: retry a little.
        for _ in 0..3 {
            let dir = TempDir::new("redis");
            let log = dir.path().join("redis.log");
            let port = free_port();
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--protected-mode", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let child = spawn(&mut cmd, "redis-server", INSTALL_HINT);
            let mut server = RedisServer { child, port, dir };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(why) => {
                    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                    failures.push(format!("{why}\n--- redis log ---\n{log_text}"));
                }
            } // a failed server is killed, reaped and its directory removed here
        }
        panic!(
            "redis-server did not start in 3 tries:\n{}",
            failures.join("\n")
        );
    }

    /// Polls PING until it gets PONG, the process exits, or 5 s pass.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + REDIS_START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!(
                    "redis-server on port {} exited: {status}",
                    self.port
                ));
            }
            if ping(self.port) {
                // The answer may come from another server that took the port first: ours
                // is the one that runs in our directory.
                let mut conn = RespConn::connect(self.port);
                let dir = conn.cmd(&["CONFIG", "GET", "dir"]);
                let ours = self
                    .dir
                    .path()
                    .canonicalize()
                    .unwrap_or_else(|_| self.dir.path().into());
                let expected = Reply::Array(Some(vec![
                    Reply::bulk("dir"),
                    Reply::bulk(&ours.to_string_lossy()),
                ]));
                if dir != expected {
                    return Err(format!(
                        "port {} answered by another server: {dir:?}",
                        self.port
                    ));
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server on port {} gave no PONG in 5 s",
                    self.port
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A fresh connection straight to this server.
    #[track_caller]
    pub fn conn(&self) -> RespConn {
        RespConn::connect(self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// One PING on a new connection; true if the answer is `+PONG`.
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((LOOPBACK, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut chunk = [0u8; 64];
    while got.len() < 7 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    got.starts_with(b"+PONG\r\n")
}

// ---------------------------------------------------------------------------------------------
// The db-proxy example

/// The db-proxy example binary: `CORIO_DB_PROXY` if set, otherwise built by [`example_path`].
pub fn db_proxy_path() -> PathBuf {
    if let Some(path) = std::env::var_os("CORIO_DB_PROXY").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    example_path("db-proxy")
}

/// The binary of example `name`, built once per test process and reused.
///
/// The example is built with `cargo build --example <name>` through the cargo running the
/// tests (`$CARGO`), in the profile of the test binary (`target/<profile>/deps/<test>-<hash>`),
/// so the tests always run what the current source builds. `cargo test` alone does not leave
/// that binary behind: examples with `test = true` get only their unit-test harness built.
///
/// # Panics
/// With cargo's output, if the build fails.
pub fn example_path(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let path = build_example(name).unwrap_or_else(|e| panic!("{e}"));
    built.push((name.to_string(), path.clone()));
    path
}

fn build_example(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("test binary has no grandparent directory")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(name) => name.to_string(),
    };
    let target_dir = profile_dir
        .parent()
        .ok_or("profile directory has no parent")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(["build", "--quiet", "--example", name, "--profile", &profile])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {cargo:?} build --example {name}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build --example {name} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        return Err(format!(
            "cargo built {name} but {} is missing",
            path.display()
        ));
    }
    Ok(path)
}

/// A running db-proxy, killed and reaped on drop. Its stderr is kept; a test that panics
/// while the guard is alive gets it printed.
pub struct Proxy {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_done: mpsc::Receiver<()>,
    stderr_shown: bool,
}

impl Proxy {
    /// Starts `db-proxy --listen 127.0.0.1:0 --cores 2 --upstream 127.0.0.1:P...` in this order,
    /// so shard `i` is `upstreams[i]`, and waits (20 s) for its `listening on` line.
    #[track_caller]
    pub fn start(upstreams: &[u16]) -> Proxy {
        Proxy::start_with(upstreams, &[])
    }

    /// As [`Proxy::start`], with `extra` arguments after the usual ones.
    #[track_caller]
    pub fn start_with(upstreams: &[u16], extra: &[&str]) -> Proxy {
        Proxy::start_limited(upstreams, extra, None)
    }

    /// As [`Proxy::start_with`], run under `prlimit --nofile=N:N` when `nofile` is given (the
    /// proxy may then open at most N file descriptors).
    #[track_caller]
    pub fn start_limited(upstreams: &[u16], extra: &[&str], nofile: Option<u32>) -> Proxy {
        Proxy::start_env(upstreams, extra, nofile, &[])
    }

    /// As [`Proxy::start_limited`], with environment variables set for the proxy (such as
    /// `CORIO_FAULTS`, corio's fault plan).
    #[track_caller]
    pub fn start_env(
        upstreams: &[u16],
        extra: &[&str],
        nofile: Option<u32>,
        env: &[(&str, &str)],
    ) -> Proxy {
        Proxy::start_prepared(upstreams, extra, nofile, env, |_| {})
    }

    /// As [`Proxy::start_env`], with `prepare` applied to the command last (a seccomp filter,
    /// say: [`seccomp::block_io_uring`]).
    #[track_caller]
    pub fn start_prepared(
        upstreams: &[u16],
        extra: &[&str],
        nofile: Option<u32>,
        env: &[(&str, &str)],
        prepare: impl FnOnce(&mut Command),
    ) -> Proxy {
        let path = db_proxy_path();
        let mut cmd = match nofile {
            Some(n) => {
                let mut cmd = Command::new("prlimit");
                cmd.arg(format!("--nofile={n}:{n}")).arg(&path);
                cmd
            }
            None => Command::new(&path),
        };
        cmd.args(["--listen", "127.0.0.1:0", "--cores", "2"]);
        for port in upstreams {
            cmd.arg("--upstream").arg(format!("127.0.0.1:{port}"));
        }
        cmd.args(extra);
        cmd.envs(env.iter().copied());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        prepare(&mut cmd);
        let mut child = spawn(
            &mut cmd,
            "db-proxy",
            "check that `cargo build --example db-proxy` works",
        );
        let stdout = child.stdout.take().expect("piped stdout");
        let (stderr, stderr_done) = drain(child.stderr.take().expect("piped stderr"));
        // Guard first, so a panic below still kills the process.
        let addr = SocketAddr::from((LOOPBACK, 0));
        let mut proxy = Proxy {
            child,
            addr,
            stderr,
            stderr_done,
            stderr_shown: false,
        };

        let (line_tx, line_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = line_tx.send(first);
            // Keep draining, so later prints never block the proxy on a full pipe.
            let _ = io::copy(&mut reader, &mut io::sink());
        });
        let line = match line_rx.recv_timeout(PROXY_START_TIMEOUT) {
            Ok(Ok(line)) if line.is_empty() => proxy.fail("stdout closed before any line"),
            Ok(Ok(line)) => line,
            Ok(Err(e)) => proxy.fail(&format!("reading its stdout failed: {e}")),
            Err(_) => proxy.fail("no `listening on` line on stdout within 20 s"),
        };
        let addr = line
            .trim_end_matches(['\r', '\n'])
            .strip_prefix("listening on ");
        match addr.map(str::parse::<SocketAddr>) {
            Some(Ok(addr)) if addr.ip().is_loopback() && addr.port() != 0 => proxy.addr = addr,
            _ => proxy.fail(&format!(
                "first stdout line is {line:?}, expected `listening on 127.0.0.1:PORT`"
            )),
        }
        proxy
    }

    /// Sends SIGTERM and waits (bounded, 20 s) for the proxy to exit; returns its status.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..400 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Starts db-proxy with no `--upstream`: two embedded backends in the same process.
    #[track_caller]
    pub fn embedded() -> Proxy {
        Proxy::start(&[])
    }

    /// Kills the proxy and panics with `why`, its exit status and its stderr.
    #[track_caller]
    fn fail(&mut self, why: &str) -> ! {
        // A proxy that closed its stdout may be exiting: give it a moment to report why.
        let mut status = None;
        for _ in 0..50 {
            status = self.child.try_wait().ok().flatten();
            if status.is_some() {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        kill_and_reap(&mut self.child);
        let status = status.map_or("still running, killed".to_string(), |s| s.to_string());
        self.stderr_shown = true;
        let stderr = drained_text(&self.stderr, &self.stderr_done);
        panic!("db-proxy failed to start: {why} ({status})\n--- stderr ---\n{stderr}");
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A fresh client connection to the proxy.
    #[track_caller]
    pub fn conn(&self) -> RespConn {
        RespConn::connect(self.port())
    }

    /// The proxy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The proxy's resident set size in MiB (`VmRSS` in `/proc/PID/status`).
    #[track_caller]
    pub fn rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the proxy's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line");
        kib / 1024
    }

    /// One field of the proxy's INFO, as a number (panics if it is missing).
    #[track_caller]
    pub fn info_field(&self, field: &str) -> u64 {
        let Reply::Bulk(Some(info)) = self.conn().cmd(&["INFO"]) else {
            panic!("INFO is a bulk string")
        };
        let info = String::from_utf8(info).expect("INFO is text");
        let prefix = format!("{field}:");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no numeric {field} in INFO:\n{info}"))
    }

    /// What the proxy wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
        if thread::panicking() && !self.stderr_shown {
            let stderr = drained_text(&self.stderr, &self.stderr_done);
            eprintln!(
                "--- db-proxy ({}) stderr ---\n{stderr}--- end ---",
                self.addr
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RESP

/// One RESP2 reply.
#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// `Bulk(Some(text))`.
    pub fn bulk(text: &str) -> Reply {
        Reply::Bulk(Some(text.as_bytes().to_vec()))
    }

    /// `Simple("OK")`.
    pub fn ok() -> Reply {
        Reply::Simple("OK".to_string())
    }

    /// The message of an error reply, or a panic naming what came instead.
    #[track_caller]
    pub fn error_text(&self) -> &str {
        match self {
            Reply::Error(text) => text,
            other => panic!("expected an error reply, got {other:?}"),
        }
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Simple(s) => write!(f, "+{s}"),
            Reply::Error(s) => write!(f, "-{s}"),
            Reply::Integer(n) => write!(f, ":{n}"),
            Reply::Bulk(None) => write!(f, "(nil)"),
            Reply::Bulk(Some(b)) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Reply::Array(None) => write!(f, "(nil array)"),
            Reply::Array(Some(items)) => f.debug_list().entries(items).finish(),
        }
    }
}

/// A command as a RESP array of bulk strings.
pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `args` (binary) as one RESP2 multibulk request.
pub fn encode_bytes(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses one reply from the front of `buf`: `Ok(Some((reply, bytes used)))`, `Ok(None)` if
/// `buf` holds only part of a reply, `Err` if it is not RESP2.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[1..line_end]).map_err(|e| format!("not UTF-8: {e}"))?;
    let after = line_end + 2;
    let number = || {
        line.parse::<i64>()
            .map_err(|_| format!("bad number {line:?}"))
    };
    let reply = match buf[0] {
        b'+' => (Reply::Simple(line.to_string()), after),
        b'-' => (Reply::Error(line.to_string()), after),
        b':' => (Reply::Integer(number()?), after),
        b'$' => match number()? {
            -1 => (Reply::Bulk(None), after),
            len if len >= 0 => {
                let end = after + len as usize;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(format!("bulk of {len} bytes not followed by CRLF"));
                }
                (Reply::Bulk(Some(buf[after..end].to_vec())), end + 2)
            }
            len => return Err(format!("bad bulk length {len}")),
        },
        b'*' => match number()? {
            -1 => (Reply::Array(None), after),
            len if len >= 0 => {
                let mut items = Vec::with_capacity(len as usize);
                let mut at = after;
                for _ in 0..len {
                    match parse_reply(&buf[at..])? {
                        Some((item, used)) => {
                            items.push(item);
                            at += used;
                        }
                        None => return Ok(None),
                    }
                }
                (Reply::Array(Some(items)), at)
            }
            len => return Err(format!("bad array length {len}")),
        },
        other => return Err(format!("unknown reply type byte {:?}", other as char)),
    };
    Ok(Some(reply))
}

/// A raw RESP client over a std `TcpStream` with 5 s read and write timeouts.
pub struct RespConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RespConn {
    /// Connects to `127.0.0.1:port` (5 s connect timeout) with Nagle off.
    #[track_caller]
    pub fn connect(port: u16) -> RespConn {
        let addr = SocketAddr::from((LOOPBACK, port));
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set_read_timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set_write_timeout");
        stream.set_nodelay(true).expect("set_nodelay");
        RespConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes` in one write call sequence and flushes.
    #[track_caller]
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
        self.stream.flush().expect("flush");
    }

    /// Sends one command as a RESP array.
    #[track_caller]
    pub fn send(&mut self, args: &[&str]) {
        self.send_raw(&encode(args));
    }

    /// Reads one whole reply; panics on a timeout (5 s), end of stream or bad RESP.
    #[track_caller]
    pub fn read_reply(&mut self) -> Reply {
        match self.try_read_reply() {
            Ok(Some(reply)) => reply,
            Ok(None) => panic!(
                "connection closed while waiting for a reply (buffered: {:?})",
                String::from_utf8_lossy(&self.buf)
            ),
            Err(e) => panic!(
                "no reply within {IO_TIMEOUT:?}: {e} (buffered: {:?})",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// One reply, `Ok(None)` at a clean end of stream, `Err` on a socket error or timeout.
    /// Panics on bytes that are not RESP2, or on a stream that ends inside a reply.
    #[track_caller]
    pub fn try_read_reply(&mut self) -> io::Result<Option<Reply>> {
        // Bounded: every pass reads at least one byte or returns, each read waits at most 5 s.
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(Some(reply));
                }
                Ok(None) => {}
                Err(e) => panic!(
                    "bad RESP from server: {e} in {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => panic!(
                    "connection closed inside a reply: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads `n` replies, in order.
    #[track_caller]
    pub fn read_replies(&mut self, n: usize) -> Vec<Reply> {
        let mut replies = Vec::with_capacity(n);
        for _ in 0..n {
            replies.push(self.read_reply());
        }
        replies
    }

    /// Sends a command and reads its reply.
    #[track_caller]
    pub fn cmd(&mut self, args: &[&str]) -> Reply {
        self.send(args);
        self.read_reply()
    }

    /// Asserts that the server closed the connection: the next read sees end of stream (or a
    /// reset) within 5 s, with no further reply before it.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        match self.try_read_reply() {
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected the server to close the connection, got: {e}"),
            Ok(Some(reply)) => panic!("expected the server to close the connection, got {reply:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Command-line tools

/// What a finished tool run printed.
pub struct ToolOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args`, feeding `stdin` if given, killing it after `timeout`. Panics if the
/// program is not installed or does not finish in time.
#[track_caller]
pub fn run_tool(
    program: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> ToolOutput {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(&mut cmd, program, INSTALL_HINT);
    let (stdout, stdout_done) = drain(child.stdout.take().expect("piped stdout"));
    let (stderr, stderr_done) = drain(child.stderr.take().expect("piped stderr"));
    if let Some(input) = stdin {
        // A thread, so a large input cannot deadlock against the program's full stdout pipe.
        let mut pipe: ChildStdin = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        }); // the pipe closes when the thread ends: end of input
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                kill_and_reap(&mut child);
                panic!(
                    "`{program} {}` did not finish within {timeout:?}\n--- stdout ---\n{}\n\
                     --- stderr ---\n{}",
                    args.join(" "),
                    drained_text(&stdout, &stdout_done),
                    drained_text(&stderr, &stderr_done)
                );
            }
            Err(e) => panic!("waiting for {program}: {e}"),
        }
    };
    ToolOutput {
        status,
        stdout: drained_text(&stdout, &stdout_done),
        stderr: drained_text(&stderr, &stderr_done),
    }
}

/// `redis-cli -h 127.0.0.1 -p PORT args...`: its stdout. Panics if it fails or takes 20 s.
#[track_caller]
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    redis_cli_run(port, args, None)
}

/// As `redis_cli`, with `input` on stdin (for `--pipe`).
#[track_caller]
pub fn redis_cli_stdin(port: u16, args: &[&str], input: &[u8]) -> String {
    redis_cli_run(port, args, Some(input))
}

#[track_caller]
fn redis_cli_run(port: u16, args: &[&str], input: Option<&[u8]>) -> String {
    let port = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", port.as_str()];
    all.extend_from_slice(args);
    let out = run_tool("redis-cli", &all, input, CLI_TIMEOUT);
    assert!(
        out.status.success(),
        "`redis-cli {}` failed: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        all.join(" "),
        out.status,
        out.stdout,
        out.stderr
    );
    out.stdout
}

// ---------------------------------------------------------------------------------------------
// Sharding: Redis Cluster hash slots

/// Number of Redis Cluster hash slots.
pub const SLOTS: u16 = 16384;

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), as Redis Cluster uses.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of `key`: if it holds `{...}` with at least one byte between the first `{`
/// and the first `}` after it, only those bytes are hashed.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) & (SLOTS - 1)
}

/// The shard that owns `key` among `nshards`: `slot * nshards / 16384`.
pub fn shard_of(key: &str, nshards: usize) -> usize {
    usize::from(key_slot(key.as_bytes())) * nshards / usize::from(SLOTS)
}

/// The first key named `prefix<n>` that lands on shard `shard` of two.
pub fn key_on(shard: usize, prefix: &str) -> String {
    (0..100_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| shard_of(k, 2) == shard)
        .expect("some key lands on each shard")
}

/// Two redis-servers and a proxy with `--upstream` in that order: shard `i` is `servers[i]`.
pub fn two_shards() -> ([RedisServer; 2], Proxy) {
    let servers = [RedisServer::start(), RedisServer::start()];
    let proxy = Proxy::start(&[servers[0].port(), servers[1].port()]);
    (servers, proxy)
}

/// Sends `args` on `stream` and returns the bytes that come back until the connection is
/// quiet for 300 ms (bounded: 5 s), whatever the protocol (RESP3 included).
pub fn exchange(stream: &mut TcpStream, args: &[&str]) -> Vec<u8> {
    stream.write_all(&encode(args)).expect("write");
    quiet_read(stream)
}

/// What `stream` receives until it is quiet for 300 ms (bounded: 5 s).
pub fn quiet_read(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("set_read_timeout");
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) if !out.is_empty() => break,
            Err(_) => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Other example servers

/// An example server (`echo`, say) started with its `listening on ADDR` line read, killed and
/// reaped on drop.
pub struct ExampleServer {
    child: Child,
    pub addr: SocketAddr,
    /// Its stderr, when captured ([`ExampleServer::start_prepared`]).
    stderr: Option<Drained>,
}

impl ExampleServer {
    /// Starts example `name` with `args` and `env`, and waits (20 s) for `listening on ADDR`.
    #[track_caller]
    pub fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> ExampleServer {
        ExampleServer::launch(name, args, env, None::<fn(&mut Command)>)
    }

    /// As [`ExampleServer::start`], with `prepare` applied to the command last and stderr
    /// captured (see [`ExampleServer::stderr`]).
    #[track_caller]
    pub fn start_prepared(
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        prepare: impl FnOnce(&mut Command),
    ) -> ExampleServer {
        ExampleServer::launch(name, args, env, Some(prepare))
    }

    #[track_caller]
    fn launch(
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        prepare: Option<impl FnOnce(&mut Command)>,
    ) -> ExampleServer {
        let mut cmd = Command::new(example_path(name));
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let captured = prepare.is_some();
        if let Some(prepare) = prepare {
            cmd.stderr(Stdio::piped());
            prepare(&mut cmd);
        }
        let mut child = spawn(&mut cmd, name, "check that `cargo build --example` works");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = captured.then(|| drain(child.stderr.take().expect("piped stderr")));
        let mut server = ExampleServer {
            child,
            addr: SocketAddr::from((LOOPBACK, 0)),
            stderr,
        };
        let (line_tx, line_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = line_tx.send(reader.read_line(&mut line).map(|_| line));
            let _ = io::copy(&mut reader, &mut io::sink());
        });
        let line = match line_rx.recv_timeout(PROXY_START_TIMEOUT) {
            Ok(Ok(line)) => line,
            other => panic!("{name} printed no `listening on` line: {other:?}"),
        };
        server.addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{name}'s first line is {line:?}"));
        server
    }

    /// What it wrote to stderr so far (empty unless started with `start_prepared`).
    pub fn stderr(&self) -> String {
        match &self.stderr {
            Some((buf, _)) => String::from_utf8_lossy(&buf.lock().unwrap()).into_owned(),
            None => String::new(),
        }
    }
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_and_slots_match_redis_cluster() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        // Hash tags: only the first non-empty {...} counts.
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") & 16383);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"{foo"), crc16(b"{foo") & 16383);
        assert_eq!((shard_of("foo", 2), shard_of("bar", 2)), (1, 0));
    }

    #[test]
    fn replies_parse_whole_and_wait_for_the_rest() {
        let wire = b"*3\r\n+OK\r\n$5\r\nhello\r\n*2\r\n:-7\r\n$-1\r\n-ERR x\r\n";
        let first = Reply::Array(Some(vec![
            Reply::ok(),
            Reply::bulk("hello"),
            Reply::Array(Some(vec![Reply::Integer(-7), Reply::Bulk(None)])),
        ]));
        let first_len = wire.len() - b"-ERR x\r\n".len();
        for cut in 0..first_len {
            assert_eq!(parse_reply(&wire[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse_reply(wire), Ok(Some((first, first_len))));
        let rest = &wire[first_len..];
        assert_eq!(
            parse_reply(rest),
            Ok(Some((Reply::Error("ERR x".into()), rest.len())))
        );
        assert_eq!(parse_reply(b"$0\r\n\r\n"), Ok(Some((Reply::bulk(""), 6))));
        assert_eq!(parse_reply(b"*-1\r\n"), Ok(Some((Reply::Array(None), 5))));
        assert!(parse_reply(b"?x\r\n").is_err());
        assert_eq!(
            encode(&["SET", "k", ""]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
        );
    }
}
