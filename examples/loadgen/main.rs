//! loadgen: a thread-per-core load generator built on corio, for echo, HTTP/1.1 and RESP
//! servers.
//!
//! Each core runs its share of the connections on its own ring. Closed loop (default): every
//! connection writes `--pipeline` requests and waits for their replies. Open loop (`--rate`):
//! requests are due on a fixed schedule and latency is measured from when each was due, so a
//! server that stalls cannot hide it (coordinated omission corrected, as wrk2 does).
//!
//! ```sh
//! cargo run --release --example loadgen -- 127.0.0.1:6379 --protocol resp -c 50 -P 16 -d 10s
//! cargo run --release --example loadgen -- 127.0.0.1:8080 --protocol http --rate 50000 --json
//! ```
//!
//! It prints requests per second and latency percentiles (p50, p90, p99, p99.9, max) from an
//! HDR histogram, as a table or as JSON (`--json`), with a progress line every second on
//! stderr. Errors (refused connections, connections the server dropped, timeouts, error
//! replies, replies that do not parse) are counted by kind and reported with the first message
//! of each kind; a connection that fails is reconnected after a short backoff. Exit status: 0
//! when requests were answered, 1 when none was (the first error says why), 2 on bad
//! arguments.

mod conn;
mod proto;
// The reply scanner db-proxy uses, shared so both frame RESP the same way.
mod report;
#[path = "../db-proxy/resp/scan.rs"]
mod scan;
mod schedule;

use std::cell::Cell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use conn::{Local, Plan, Progress};
use proto::{Protocol, RespCommand};
use report::{Report, Setup, Stats};

/// Command line; see the module docs.
#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Thread-per-core load generator (echo, HTTP/1.1, RESP) on corio"
)]
struct Args {
    /// Address to load, `host:port` (only this address is ever connected to).
    target: String,
    /// Protocol to speak.
    #[arg(long, value_enum, default_value_t = Proto::Echo)]
    protocol: Proto,
    /// Connections, spread over the cores (connection i on core i % cores).
    #[arg(short = 'c', long, default_value_t = 16)]
    connections: usize,
    /// Cores (threads, each with its own ring), pinned to the CPUs this process may use.
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// How long to send for (`10s`, `500ms`, `2m`).
    #[arg(short = 'd', long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Stop after this many requests in all (whichever of this and --duration comes first).
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Open loop: requests per second over all connections. Without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Requests written together per connection (closed loop), or most in flight per
    /// connection (open loop).
    #[arg(short = 'P', long, default_value_t = 1)]
    pipeline: usize,
    /// Echo: message size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// RESP: which command.
    #[arg(long, value_enum, default_value_t = RespCommand::Get)]
    command: RespCommand,
    /// RESP: number of distinct keys (`key:<n>`, uniformly random).
    #[arg(long, default_value_t = 100_000)]
    keyspace: u64,
    /// RESP: SET value size in bytes.
    #[arg(long, default_value_t = 3)]
    value_size: usize,
    /// HTTP: request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// How long a request may wait for its reply before its connection is closed.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    timeout: Duration,
    /// How long a connection attempt may take.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    connect_timeout: Duration,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress line.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Proto {
    Echo,
    Http,
    Resp,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (mut plan, setup) = match plan(&args) {
        Ok(plan) => plan,
        Err(msg) => {
            eprintln!("loadgen: {msg}");
            return ExitCode::from(2);
        }
    };
    let _ = corio::raise_fd_limit();
    let runtime = match corio::Runtime::builder()
        .cores(args.cores)
        .thread_name("loadgen")
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("loadgen: cannot start the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    // Connections start together a moment from now (more for many connections, which take
    // longer to open), so the open-loop schedule begins on time.
    plan.start = Instant::now()
        + Duration::from_millis(20)
        + Duration::from_micros(20) * u32::try_from(args.connections).unwrap_or(u32::MAX);
    plan.end = plan.start + args.duration;
    let plan = Arc::new(plan);
    let progress: Arc<[Arc<Progress>]> = (0..args.cores).map(|_| Arc::default()).collect();
    let done = Arc::new(AtomicBool::new(false));
    let reporter = (!args.quiet).then(|| spawn_progress(progress.clone(), done.clone()));
    let (cores, connections) = (args.cores, args.connections);
    let core_plan = plan.clone();
    let per_core = runtime.run(move |core| {
        let local = Rc::new(Local {
            plan: core_plan.clone(),
            stats: Default::default(),
            progress: progress[core.0].clone(),
            last_reply: Cell::new(None),
        });
        async move {
            let tasks: Vec<_> = (core.0..connections)
                .step_by(cores)
                .map(|index| {
                    let local = local.clone();
                    if local.plan.rate_per_conn.is_some() {
                        corio::spawn(conn::open_loop(local, index))
                    } else {
                        corio::spawn(conn::closed_loop(local, index))
                    }
                })
                .collect();
            for task in tasks {
                if let Err(err) = task.await {
                    local.stats.borrow_mut().note_error("internal", err);
                }
            }
            (local.stats.take(), local.last_reply.get())
        }
    });
    done.store(true, Ordering::Relaxed);
    if let Some(reporter) = reporter {
        let _ = reporter.join();
    }
    let mut stats = Stats::default();
    // The rate is measured up to the last reply, so a connection left waiting out its timeout
    // at the end does not dilute it; a run bounded by time offered its load until `end` even
    // if its last reply came sooner (an open loop whose next request was due after the end).
    let mut finished = plan.start;
    for (core_stats, last_reply) in &per_core {
        stats.merge(core_stats);
        if let Some(at) = last_reply {
            finished = finished.max(*at);
        }
    }
    if !plan.budget_spent() {
        finished = finished.max(plan.end);
    }
    let report = Report {
        setup,
        elapsed: finished.saturating_duration_since(plan.start),
        stats,
    };
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    if report.stats.answered() == 0 {
        let why = report
            .stats
            .first_errors
            .first()
            .cloned()
            .unwrap_or_else(|| "no request was sent".into());
        let st = &report.stats;
        // Timeouts or unparsable replies from a server that accepts connections usually mean
        // the wrong protocol (echo is the default).
        let hint = if st.timeouts + st.protocol_errors > 0 && st.connect_errors == 0 {
            format!(
                "; is --protocol right? this run spoke {}",
                report.setup.protocol
            )
        } else {
            String::new()
        };
        eprintln!(
            "loadgen: no request to {} was answered ({why}{hint})",
            plan.target
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// Checks the arguments and builds the run's plan.
fn plan(args: &Args) -> Result<(Plan, Setup), String> {
    let target: SocketAddr = args
        .target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", args.target))?
        .next()
        .ok_or_else(|| format!("{} resolves to no address", args.target))?;
    if args.connections == 0 || args.cores == 0 || args.pipeline == 0 {
        return Err("--connections, --cores and --pipeline must be at least 1".into());
    }
    if args.duration.is_zero() {
        return Err("--duration must be more than zero".into());
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate / args.connections as f64 >= 1e-6) {
            return Err(format!(
                "--rate {rate}: must be a number of requests/s of at least 1e-6 per connection"
            ));
        }
    }
    if args.protocol == Proto::Echo && args.size == 0 {
        return Err("--size must be at least 1 byte".into());
    }
    if args.protocol == Proto::Http && !args.path.starts_with('/') {
        return Err(format!("--path {:?} must start with '/'", args.path));
    }
    let protocol = match args.protocol {
        Proto::Echo => Protocol::Echo { size: args.size },
        Proto::Http => Protocol::Http {
            host: args.target.clone(),
            path: args.path.clone(),
        },
        Proto::Resp => Protocol::Resp {
            command: args.command,
            keyspace: args.keyspace,
            value_size: args.value_size,
        },
    };
    let described = match &protocol {
        Protocol::Echo { size } => format!("echo {size} B"),
        Protocol::Http { path, .. } => format!("http GET {path}"),
        Protocol::Resp { command, .. } => {
            let command = format!("{command:?}").to_lowercase();
            format!("resp {command} (value {} B)", args.value_size)
        }
    };
    // Set again once the runtime is up (see `main`).
    let start = Instant::now();
    let plan = Plan {
        target,
        protocol,
        pipeline: args.pipeline,
        rate_per_conn: args.rate.map(|r| r / args.connections as f64),
        start,
        end: start + args.duration,
        budget: args.requests.map(AtomicU64::new),
        request_timeout: args.timeout,
        connect_timeout: args.connect_timeout,
        connections: args.connections,
    };
    let setup = Setup {
        target: target.to_string(),
        protocol: described,
        connections: args.connections,
        cores: args.cores,
        pipeline: args.pipeline,
        rate: args.rate,
    };
    Ok((plan, setup))
}

/// Prints answered requests per second and errors so far, once a second, on stderr.
fn spawn_progress(
    progress: Arc<[Arc<Progress>]>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut last = 0;
        let mut tick = 1;
        while !done.load(Ordering::Relaxed) {
            let due = start + Duration::from_secs(tick);
            while Instant::now() < due {
                if done.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50).min(due - Instant::now()));
            }
            let answered: u64 = progress
                .iter()
                .map(|p| p.answered.load(Ordering::Relaxed))
                .sum();
            let errors: u64 = progress
                .iter()
                .map(|p| p.errors.load(Ordering::Relaxed))
                .sum();
            eprintln!(
                "[{tick:>4}s] {:>10} req/s  {answered:>12} answered  {errors} errors",
                answered - last
            );
            last = answered;
            tick += 1;
        }
    })
}
