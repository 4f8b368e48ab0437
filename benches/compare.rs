//! `cargo bench --bench compare`: corio side by side with its peers, in one run, printing one
//! Markdown table per section (throughput, p99 latency, ratio to the first row of each case,
//! which is the reference).
//!
//! Sections: TCP echo servers and HTTP hello-world servers (corio, monoio, tokio
//! current-thread-per-core, tokio multi-thread; loaded by examples/loadgen), hyper 1.x's
//! server on corio (through `corio::io::compat`) and on tokio (loadgen and wrk), 4 KiB random file
//! reads (corio, tokio::fs, pread, fio), cross-core round trips (corio-mesh, crossbeam, tokio),
//! the Redis proxy (db-proxy, twemproxy, redis direct, loaded by loadgen), loadgen's agreement
//! with wrk and redis-benchmark, and idle-connection memory.
//!
//! ```sh
//! bash benches/compare/setup.sh            # wrk, fio, nutcracker, redis from Debian
//! cargo bench --bench compare              # the full table (about 10 minutes)
//! cargo bench --bench compare -- --quick   # every row once, short runs (under 2 minutes)
//! cargo bench --bench compare -- --only echo,proxy --runs 5
//! ```
//!
//! Servers run on CPU 0 and the load on CPU 1 unless a row says otherwise (2-core servers
//! share both CPUs with the load). Full runs repeat every row `--runs` times (default 3), rows
//! of one case alternating, and show the median. A row whose tool is missing is skipped with
//! the reason on stderr. Nothing here asserts anything about speed.

#[path = "compare/cluster.rs"]
mod cluster;
#[path = "compare/files.rs"]
mod files;
#[path = "compare/mesh.rs"]
mod mesh;
#[path = "compare/proxy.rs"]
mod proxy;
#[path = "compare/rss.rs"]
mod rss;
#[path = "compare/servers.rs"]
mod servers;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use servers::{App, Kind, Server};

/// What one row measured.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    /// Operations per second (or bytes per connection for memory rows).
    pub throughput: f64,
    /// 99th percentile latency of one operation, in microseconds, where measured.
    pub p99_us: Option<f64>,
}

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub section: &'static str,
    pub case: String,
    pub subject: String,
    pub unit: &'static str,
    pub m: Measured,
}

impl Row {
    pub fn new(
        section: &'static str,
        case: &str,
        subject: &str,
        unit: &'static str,
        m: Measured,
    ) -> Row {
        Row {
            section,
            case: case.to_string(),
            subject: subject.to_string(),
            unit,
            m,
        }
    }
}

/// The outside tools some rows need, all from Debian's packages.
#[derive(Clone, Copy, Debug)]
pub enum Tool {
    Wrk,
    Fio,
    Twemproxy,
    RedisServer,
    RedisBenchmark,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Wrk => "wrk",
            Tool::Fio => "fio",
            Tool::Twemproxy => "nutcracker",
            Tool::RedisServer => "redis-server",
            Tool::RedisBenchmark => "redis-benchmark",
        }
    }

    pub fn hint(self) -> &'static str {
        "install the bench's tools with `bash benches/compare/setup.sh`"
    }
}

struct Options {
    quick: bool,
    runs: usize,
    only: Option<Vec<String>>,
}

fn options() -> Options {
    let mut opts = Options {
        quick: false,
        runs: 3,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--runs" => {
                opts.runs = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n >= 1)
                    .unwrap_or_else(|| usage("--runs needs a number >= 1"))
            }
            "--only" => {
                let list = args
                    .next()
                    .unwrap_or_else(|| usage("--only needs a section list"));
                opts.only = Some(list.split(',').map(str::to_string).collect());
            }
            // cargo bench passes --bench; a criterion-style filter is not supported.
            "--bench" => {}
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if opts.quick {
        opts.runs = 1;
    }
    opts
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "compare: {msg}\nusage: cargo bench --bench compare -- [--quick] [--runs N] \
         [--only echo,http,hyper,files,mesh,proxy,cluster,rss]"
    );
    std::process::exit(2)
}

fn main() {
    if let Ok(kind) = std::env::var(rss::SERVER_ENV) {
        rss::serve(&kind);
        return;
    }
    let opts = options();
    let wants = |s: &str| opts.only.as_ref().is_none_or(|o| o.iter().any(|x| x == s));
    let started = Instant::now();
    let (case_time, file_size, rss_conns) = if opts.quick {
        (Duration::from_millis(500), 64 << 20, 1_000)
    } else {
        (Duration::from_secs(3), 256 << 20, 10_000)
    };
    build_examples();
    println!("{}", machine(&opts));
    let mut all: Vec<Row> = Vec::new();
    let file = wants("files").then(|| files::TestFile::create(file_size));
    for run in 0..opts.runs {
        eprintln!("compare: run {} of {}", run + 1, opts.runs);
        let mut rows = Vec::new();
        if wants("echo") {
            echo(case_time, &mut rows);
        }
        if wants("http") {
            http(case_time, &mut rows);
        }
        if wants("hyper") {
            hyper(case_time, &mut rows);
        }
        if let Some(file) = &file {
            files::run(file, case_time.min(Duration::from_secs(2)), &mut rows);
        }
        if wants("mesh") {
            mesh::run(case_time, &mut rows);
        }
        if wants("proxy") {
            if let Err(why) = proxy::run(case_time, &mut rows) {
                eprintln!("compare: skipping the proxy rows ({why})");
            }
        }
        if wants("cluster") {
            if let Err(why) = cluster::run(case_time, &mut rows) {
                eprintln!("compare: skipping the cluster rows ({why})");
            }
        }
        if wants("rss") {
            if let Err(why) = rss::run(rss_conns, &mut rows) {
                eprintln!("compare: skipping the memory rows ({why})");
            }
        }
        all.extend(rows);
    }
    print_tables(&all, opts.runs);
    println!(
        "\n(whole run: {:.0} s{})",
        started.elapsed().as_secs_f64(),
        if opts.quick {
            ", --quick: single short runs, for smoke-testing only"
        } else {
            ""
        }
    );
}

/// The servers of the echo and HTTP cases, the reference (tokio-ct) first.
const SERVERS: [Kind; 5] = [
    Kind::TokioCt,
    Kind::Corio,
    Kind::CorioEpoll,
    Kind::Monoio,
    Kind::TokioMt,
];

/// Echo: every server, 1 and 2 cores, 64 B and 4 KiB, 16 and 256 connections.
fn echo(duration: Duration, rows: &mut Vec<Row>) {
    for cores in [1, 2] {
        for size in [64, 4096] {
            for conns in [16, 256] {
                let size_name = if size == 64 { "64 B" } else { "4 KiB" };
                let case =
                    format!("TCP echo {size_name}, {conns} conns, server on {cores} core(s)");
                for kind in SERVERS {
                    let server = Server::start(kind, App::Echo, cores);
                    let (cpus, client_cores) = if cores == 1 { ("1", "1") } else { ("0-1", "2") };
                    let args = [
                        server.addr().to_string(),
                        "--size".into(),
                        size.to_string(),
                        "-c".into(),
                        conns.to_string(),
                        "--cores".into(),
                        client_cores.into(),
                        "-d".into(),
                        format!("{}ms", duration.as_millis()),
                    ];
                    match loadgen(cpus, &args) {
                        Ok(m) => {
                            rows.push(Row::new("echo", &case, kind.name(), "round trips/s", m))
                        }
                        Err(why) => eprintln!("compare: {case}, {}: {why}", kind.name()),
                    }
                }
            }
        }
    }
}

/// HTTP hello world on one core, 64 keep-alive connections; then wrk and loadgen on one server.
fn http(duration: Duration, rows: &mut Vec<Row>) {
    let conns = 64;
    let case = format!("HTTP/1.1 hello world, {conns} keep-alive conns, server on 1 core");
    let load = |addr: std::net::SocketAddr| {
        let args = [
            addr.to_string(),
            "--protocol".into(),
            "http".into(),
            "-c".into(),
            conns.to_string(),
            "-d".into(),
            format!("{}ms", duration.as_millis()),
        ];
        loadgen("1", &args)
    };
    for kind in SERVERS {
        let server = Server::start(kind, App::Http, 1);
        match load(server.addr()) {
            Ok(m) => rows.push(Row::new("http", &case, kind.name(), "req/s", m)),
            Err(why) => eprintln!("compare: {case}, {}: {why}", kind.name()),
        }
    }
    let case = format!("agreement: HTTP GET to the corio server, {conns} conns, 1 client thread");
    let server = Server::start(Kind::Corio, App::Http, 1);
    match wrk(server.addr(), conns, duration) {
        Ok(m) => rows.push(Row::new("agreement", &case, "wrk", "req/s", m)),
        Err(why) => eprintln!("compare: skipping wrk ({why})"),
    }
    match load(server.addr()) {
        Ok(m) => rows.push(Row::new("agreement", &case, "loadgen", "req/s", m)),
        Err(why) => eprintln!("compare: {case}, loadgen: {why}"),
    }
}

/// hyper 1.x's HTTP/1.1 server on each runtime (tokio current-thread, corio, tokio
/// multi-thread), one core, 64 keep-alive connections: loaded by loadgen, then by wrk.
fn hyper(duration: Duration, rows: &mut Vec<Row>) {
    let conns = 64;
    let kinds = [Kind::TokioCt, Kind::Corio, Kind::CorioEpoll, Kind::TokioMt];
    let case = format!("hyper hello world, {conns} keep-alive conns, server on 1 core, loadgen");
    for kind in kinds {
        let server = Server::start(kind, App::Hyper, 1);
        let args = [
            server.addr().to_string(),
            "--protocol".into(),
            "http".into(),
            "-c".into(),
            conns.to_string(),
            "-d".into(),
            format!("{}ms", duration.as_millis()),
        ];
        match loadgen("1", &args) {
            Ok(m) => rows.push(Row::new("hyper", &case, kind.name(), "req/s", m)),
            Err(why) => eprintln!("compare: {case}, {}: {why}", kind.name()),
        }
    }
    let case = format!("hyper hello world, {conns} keep-alive conns, server on 1 core, wrk");
    for kind in kinds {
        let server = Server::start(kind, App::Hyper, 1);
        match wrk(server.addr(), conns, duration) {
            Ok(m) => rows.push(Row::new("hyper", &case, kind.name(), "req/s", m)),
            Err(why) => eprintln!("compare: {case}, {}: {why}", kind.name()),
        }
    }
}

/// wrk with one thread on CPU 1: its requests/s and p99.
fn wrk(addr: std::net::SocketAddr, conns: usize, duration: Duration) -> Result<Measured, String> {
    let secs = duration.as_secs().max(1);
    let out = Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1", "--latency"])
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .arg(format!("http://{addr}/"))
        .output()
        .map_err(|e| format!("cannot run wrk: {e}; {}", Tool::Wrk.hint()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed: {}; {}",
            String::from_utf8_lossy(&out.stderr).trim(),
            Tool::Wrk.hint()
        ));
    }
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk's output: {text}"))?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| parse_wrk_time(v.trim()));
    Ok(Measured {
        throughput: rps,
        p99_us: p99,
    })
}

/// wrk's `1.23ms` / `456.00us` / `1.01s` in microseconds.
fn parse_wrk_time(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(v) = text.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = text.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = text.strip_suffix('s') {
        (v, 1e6)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// Runs loadgen pinned to `cpus` with `args` and `--json --quiet`.
pub fn loadgen(cpus: &str, args: &[String]) -> Result<Measured, String> {
    let path = example("loadgen");
    let mut child = Command::new("taskset")
        .args(["-c", cpus])
        .arg(&path)
        .args(args)
        .args(["--json", "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start loadgen: {e}"))?;
    // Bounded: the run's own duration limit, plus time to connect and drain.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("loadgen did not finish within 60 s".into());
            }
        }
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    let _ = child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout);
    let _ = child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr);
    if !status.success() {
        return Err(format!("loadgen failed ({status}): {}", stderr.trim()));
    }
    let json: serde_json::Value = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("loadgen printed no JSON ({e})"))?;
    let errors = json["errors"]["total"].as_u64().unwrap_or(0);
    if errors > 0 {
        eprintln!(
            "compare: loadgen counted {errors} errors: {}",
            json["errors"]
        );
    }
    Ok(Measured {
        throughput: json["requests_per_s"].as_f64().ok_or("no requests_per_s")?,
        p99_us: json["latency_us"]["p99"].as_f64(),
    })
}

/// The release binary of example `name` (built by [`build_examples`]).
pub fn example(name: &str) -> PathBuf {
    profile_dir().join("examples").join(name)
}

/// `target/release`: where this bench binary (`target/release/deps/compare-<hash>`) lives.
fn profile_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        exe.parent()
            .and_then(|p| p.parent())
            .expect("bench binary has no grandparent")
            .to_path_buf()
    })
    .clone()
}

/// Builds loadgen and db-proxy in the bench profile (same settings as release, same directory,
/// shared dependencies) through the cargo running this bench.
fn build_examples() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = profile_dir()
        .parent()
        .expect("target directory")
        .to_path_buf();
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--profile",
            "bench",
            "--example",
            "loadgen",
            "--example",
            "db-proxy",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "cargo build --profile bench --example loadgen --example db-proxy failed"
    );
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Runs `f` on a new thread pinned to `cpu` and returns its result, leaving the calling
/// thread's CPU mask alone: a runtime built later from the calling thread (corio pins its
/// cores to the CPUs its builder's thread may use) must still see every CPU.
pub fn on_cpu<T: Send>(cpu: usize, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                pin(cpu);
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        eprintln!("compare: cannot pin a thread to CPU {cpu}; this bench wants CPUs 0 and 1");
    }
}

/// The header: what machine, which versions, what mode.
fn machine(opts: &Options) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "# corio compare, {date}\n\nMachine: {cpus} CPUs ({cpu}), Linux {}. Mode: {}.",
        kernel.trim(),
        if opts.quick {
            "--quick (one short run per row)".to_string()
        } else {
            format!("median of {} runs per row", opts.runs)
        }
    )
}

/// One Markdown table per section; rows of a case keep their order, the first is the reference.
fn print_tables(rows: &[Row], runs: usize) {
    let mut order: Vec<(&'static str, String, String)> = Vec::new();
    let mut samples: BTreeMap<(&'static str, String, String), Vec<Measured>> = BTreeMap::new();
    let mut units: BTreeMap<(&'static str, String, String), &'static str> = BTreeMap::new();
    for row in rows {
        let key = (row.section, row.case.clone(), row.subject.clone());
        if !samples.contains_key(&key) {
            order.push(key.clone());
        }
        samples.entry(key.clone()).or_default().push(row.m);
        units.insert(key, row.unit);
    }
    // Sections in order of first appearance; within one, rows in order of first appearance.
    let mut sections: Vec<&'static str> = Vec::new();
    for (sec, _, _) in &order {
        if !sections.contains(sec) {
            sections.push(sec);
        }
    }
    order.sort_by_key(|(sec, _, _)| sections.iter().position(|s| s == sec));
    let mut section = "";
    let mut reference: Option<(String, f64)> = None;
    for key in &order {
        let (sec, case, subject) = key;
        if *sec != section {
            section = sec;
            println!("\n## {sec}\n");
            if *sec == "rss" {
                println!("Lower is better here: bytes of resident memory per connection.\n");
            }
            println!("| case | subject | result | p99 (µs) | vs first row |");
            println!("| --- | --- | --- | --- | --- |");
            reference = None;
        }
        let ms = &samples[key];
        let throughput = median(ms.iter().map(|m| m.throughput).collect());
        let p99 = {
            let v: Vec<f64> = ms.iter().filter_map(|m| m.p99_us).collect();
            (!v.is_empty()).then(|| median(v))
        };
        let ratio = match &reference {
            Some((c, base)) if c == case => throughput / base,
            _ => {
                reference = Some((case.clone(), throughput));
                1.0
            }
        };
        let runs_note = if ms.len() < runs {
            format!(" ({} of {runs} runs)", ms.len())
        } else {
            String::new()
        };
        println!(
            "| {case} | {subject}{runs_note} | {} {} | {} | {ratio:.2}x |",
            human(throughput),
            units[key],
            p99.map_or("-".to_string(), |p| format!("{p:.0}")),
        );
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// 1234567 as `1.23 M`, 12345 as `12.3 k`.
fn human(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}
