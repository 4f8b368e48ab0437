//! The Redis-protocol rows: db-proxy (1 core) vs twemproxy (nutcracker) vs redis direct, each
//! in front of the same two redis-servers, under loadgen's RESP mode (SET and GET alternately,
//! 50 connections, -P 1 and -P 16), and loadgen vs redis-benchmark against the same
//! redis-server with the same connections and pipelining (GET and SET).
//!
//! Servers and proxies run on CPU 0, the load on CPU 1 (../shared/BENCHMARKS.md). Every
//! process started here is killed and reaped when its guard drops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, loadgen, Measured, Row, Tool};

/// Connections every RESP load uses.
const CONNECTIONS: usize = 50;
/// Distinct keys (`redis-benchmark -r`).
const KEYSPACE: u64 = 100_000;

/// A child process, killed and reaped on drop.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(cmd: &mut Command, tool: Tool) -> Result<Process, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Process)
        .map_err(|e| format!("cannot start {}: {e}; {}", tool.name(), tool.hint()))
}

/// Waits (5 s at most) until `port` answers a RESP PING.
pub fn wait_ping(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut got = [0u8; 7];
            // RESP-encoded: twemproxy does not take inline commands.
            if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
                && s.read_exact(&mut got).is_ok()
                && &got == b"+PONG\r\n"
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing answered PING on port {port} within 5 s"))
}

fn redis_server() -> Result<(Process, u16), String> {
    let port = free_port();
    let process = spawn(
        Command::new("taskset")
            .args(["-c", "0", "redis-server", "--port"])
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]),
        Tool::RedisServer,
    )?;
    wait_ping(port)?;
    Ok((process, port))
}

/// db-proxy in front of `upstreams`, on the driver `driver` names (`CORIO_DRIVER`).
fn db_proxy(upstreams: &[u16], driver: &str) -> Result<(Process, u16), String> {
    let args: Vec<String> = upstreams
        .iter()
        .flat_map(|port| ["--upstream".to_string(), format!("127.0.0.1:{port}")])
        .collect();
    db_proxy_env(&args, driver)
}

/// db-proxy on CPU 0, one core, with `args`; its process and port.
pub fn db_proxy_with(args: &[String]) -> Result<(Process, u16), String> {
    db_proxy_env(args, "io_uring")
}

/// As [`db_proxy_with`], with `CORIO_DRIVER=driver`.
fn db_proxy_env(args: &[String], driver: &str) -> Result<(Process, u16), String> {
    let path = crate::example("db-proxy");
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0"])
        .arg(&path)
        .args(["--listen", "127.0.0.1:0", "--cores", "1"])
        .args(args)
        .env("CORIO_DRIVER", driver);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start db-proxy: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let process = Process(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("db-proxy: {e}"))?;
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("db-proxy printed {line:?}, not `listening on ADDR`"))?;
    wait_ping(port)?;
    Ok((process, port))
}

fn twemproxy(upstreams: &[u16], dir: &Path) -> Result<(Process, u16), String> {
    let port = free_port();
    let config = dir.join(format!("nutcracker-{}.yml", std::process::id()));
    let servers: String = upstreams
        .iter()
        .map(|p| format!("   - 127.0.0.1:{p}:1\n"))
        .collect();
    std::fs::write(
        &config,
        format!(
            "pool:\n  listen: 127.0.0.1:{port}\n  hash: fnv1a_64\n  distribution: ketama\n  \
             redis: true\n  server_connections: 1\n  servers:\n{servers}"
        ),
    )
    .map_err(|e| format!("writing {}: {e}", config.display()))?;
    let process = spawn(
        Command::new("taskset")
            .args(["-c", "0", "nutcracker", "-c"])
            .arg(&config)
            .args(["-o", "/dev/null"]),
        Tool::Twemproxy,
    )?;
    wait_ping(port)?;
    Ok((process, port))
}

fn resp_load(
    port: u16,
    command: &str,
    pipeline: usize,
    duration: Duration,
) -> Result<Measured, String> {
    let addr = format!("127.0.0.1:{port}");
    let args = [
        addr.as_str(),
        "--protocol",
        "resp",
        "--command",
        command,
        "--keyspace",
        &KEYSPACE.to_string(),
        "-c",
        &CONNECTIONS.to_string(),
        "-P",
        &pipeline.to_string(),
        "-d",
        &format!("{}ms", duration.as_millis()),
    ]
    .map(String::from);
    loadgen("1", &args)
}

/// redis-benchmark -t `test` with the same load: its requests/s and p99.
fn redis_benchmark(
    port: u16,
    test: &str,
    pipeline: usize,
    requests: u64,
) -> Result<Measured, String> {
    redis_benchmark_with(&[], port, test, pipeline, requests)
}

/// [`redis_benchmark`] with `extra` arguments first (`--cluster`).
pub fn redis_benchmark_with(
    extra: &[&str],
    port: u16,
    test: &str,
    pipeline: usize,
    requests: u64,
) -> Result<Measured, String> {
    let out = Command::new("taskset")
        .args(["-c", "1", "redis-benchmark"])
        .args(extra)
        .args(["-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(["-t", test, "-c"])
        .arg(CONNECTIONS.to_string())
        .arg("-r")
        .arg(KEYSPACE.to_string())
        .arg("-P")
        .arg(pipeline.to_string())
        .arg("-n")
        .arg(requests.to_string())
        .arg("--csv")
        .output()
        .map_err(|e| {
            format!(
                "cannot run redis-benchmark: {e}; {}",
                Tool::RedisBenchmark.hint()
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    // The result line is the one named after the test (`--cluster` prints more lines).
    let name = format!("\"{}\",", test.to_uppercase());
    let line = text
        .lines()
        .find(|l| l.starts_with(&name))
        .ok_or_else(|| format!("redis-benchmark printed no result: {text}"))?;
    let fields: Vec<f64> = line
        .split(',')
        .skip(1)
        .map(|f| f.trim_matches('"').parse().unwrap_or(f64::NAN))
        .collect();
    Ok(Measured {
        throughput: *fields
            .first()
            .ok_or_else(|| format!("redis-benchmark printed {line:?}"))?,
        p99_us: fields.get(5).map(|ms| ms * 1000.0),
    })
}

pub fn run(duration: Duration, rows: &mut Vec<Row>) -> Result<(), String> {
    let (_r1, p1) = redis_server()?;
    let (_r2, p2) = redis_server()?;
    let (_proxy, proxy_port) = db_proxy(&[p1, p2], "io_uring")?;
    let (_epoll_proxy, epoll_port) = db_proxy(&[p1, p2], "epoll")?;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::create_dir_all(dir);
    let twem = twemproxy(&[p1, p2], dir);
    if let Err(why) = &twem {
        eprintln!("compare: skipping twemproxy ({why})");
    }
    for pipeline in [1, 16] {
        let case = format!("RESP SET+GET, {CONNECTIONS} conns, -P {pipeline} (loadgen)");
        let mut targets = vec![
            ("redis direct", p1),
            ("db-proxy (corio)", proxy_port),
            ("db-proxy (corio, epoll)", epoll_port),
        ];
        if let Ok((_, port)) = &twem {
            targets.push(("twemproxy", *port));
        }
        for (subject, port) in targets {
            let m = resp_load(port, "mix", pipeline, duration)?;
            rows.push(Row::new("proxy", &case, subject, "req/s", m));
        }
    }
    // loadgen against redis-benchmark: same server, connections and pipelining. redis-benchmark
    // runs a request count; it gets about as many as loadgen answered in `duration`.
    for (test, command) in [("get", "get"), ("set", "set")] {
        let case = format!(
            "agreement: RESP {} to redis, {CONNECTIONS} conns, -P 16",
            test.to_uppercase()
        );
        let ours = resp_load(p1, command, 16, duration)?;
        let requests = (ours.throughput * duration.as_secs_f64()).max(10_000.0) as u64;
        let theirs = redis_benchmark(p1, test, 16, requests)?;
        rows.push(Row::new(
            "agreement",
            &case,
            "redis-benchmark",
            "req/s",
            theirs,
        ));
        rows.push(Row::new("agreement", &case, "loadgen", "req/s", ours));
    }
    Ok(())
}
