//! db-proxy: a thread-per-core Redis-protocol sharding proxy on corio.
//!
//! Every core accepts clients on the same port (SO_REUSEPORT) and keeps its own pipelined
//! connection to each upstream shard, so nothing on the request path is shared between cores.
//! Keys map to shards by Redis Cluster's CRC16 hash slot (`{hash tags}` included): the 16384
//! slots are split into equal contiguous ranges, shard `i` (the `i`-th `--upstream`) owning
//! slots `i*16384/n .. (i+1)*16384/n`.
//!
//! With no `--upstream`, two embedded RESP backends are started in-process on loopback ports
//! and proxied to exactly as redis-servers would be.
//!
//! Modules: `resp` (RESP parser, reply scanner, encoders), `command` (routing table),
//! `shard` (key -> slot -> shard), `multikey` (split and merge), `upstream` (per-core pipelined
//! connections), `session` (one client), `stats` (per-core counters gathered for INFO),
//! `backend` and `store` (the embedded backends).

mod accept;
mod backend;
mod cluster;
mod command;
mod control;
mod flow;
mod info;
mod keys;
mod learned;
mod metrics;
mod multikey;
mod proxy;
mod reads;
mod resp;
#[cfg(test)]
mod resp_props;
mod scan;
mod session;
mod shard;
mod shutdown;
mod stats;
mod store;
mod upstream;

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use corio::net::{reuseport_listeners, TcpListener};
use corio::rt::{spawn, CoreId, Runtime};

use proxy::{Config, Proxy, Router};
use shard::ShardMap;
use upstream::UpstreamConfig;

/// A Redis-protocol sharding proxy: one event loop per core, io_uring underneath.
///
/// Sizes are in bytes, or with redis-server's units: `k`, `m`, `g` (powers of 1000) and `kb`,
/// `mb`, `gb` (powers of 1024), any case: `--max-buffer-memory 4gb`.
#[derive(Parser, Debug)]
#[command(name = "db-proxy", version, args_override_self = true)]
struct Args {
    /// Address to accept clients on (every core listens on it with SO_REUSEPORT).
    #[arg(long, default_value = "127.0.0.1:6380")]
    listen: String,
    /// Number of cores (threads, each with its own io_uring). Default: every CPU.
    #[arg(long)]
    cores: Option<usize>,
    /// An upstream Redis server, HOST:PORT; repeat for more shards, in shard order. With none,
    /// two embedded backends are started.
    #[arg(long = "upstream", value_name = "HOST:PORT")]
    upstreams: Vec<String>,
    /// A Redis Cluster node, HOST:PORT, instead of `--upstream`: repeat for more seeds (any one
    /// reachable is enough). The proxy learns the slot map and follows MOVED and ASK itself.
    #[arg(
        long = "cluster",
        value_name = "HOST:PORT",
        conflicts_with = "upstreams"
    )]
    cluster: Vec<String>,
    /// How often the cluster's slot map is refreshed when nothing else triggers it, in ms.
    #[arg(long, default_value_t = 1000)]
    cluster_refresh_ms: u64,
    /// Where reads go in cluster mode: `master`; `replica` (the master's replicas, in turn,
    /// each connection sending READONLY; an error when a master has none); `prefer-replica`
    /// (replicas when there are, else the master). Writes always go to masters.
    #[arg(long, value_enum, default_value_t = reads::ReadFrom::Master)]
    read_from: reads::ReadFrom,
    /// How long connecting to an upstream may take, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    connect_timeout_ms: u64,
    /// How long a request may wait for its upstream's reply, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    request_timeout_ms: u64,
    /// Most clients connected at once, per core; more are refused with an error reply.
    /// Default: what the open-file limit leaves room for, shared by the cores (said at start).
    #[arg(long)]
    max_clients: Option<usize>,
    /// Most bytes one client's unparsed requests may take (redis-server's
    /// `client-query-buffer-limit`); a request that needs more is refused at its length line.
    #[arg(long, alias = "max-request-size", default_value_t = 1 << 30, value_parser = parse_size)]
    client_query_buffer_limit: usize,
    /// Largest bulk string argument, in bytes, inclusive (redis-server's `proto-max-bulk-len`).
    #[arg(long, default_value_t = 512 * 1024 * 1024, value_parser = parse_size)]
    proto_max_bulk_len: usize,
    /// Most bytes of replies the proxy holds for one client that has not read them; past it
    /// the client is closed, as redis-server does past its output buffer limit. One reply is
    /// never too big on its own. 0: no limit.
    #[arg(long, default_value_t = 1 << 30, value_parser = parse_size)]
    client_output_buffer_limit: usize,
    /// Most bytes all clients together may make the proxy hold (grown request buffers and
    /// replies not yet written). Past it, requests wait and then get `-OOM`. 0: half of the
    /// machine's memory.
    #[arg(long, default_value_t = 0, value_parser = parse_size)]
    max_buffer_memory: usize,
    /// Most requests of one client in flight before their replies are written (the window
    /// adapts below this to the size of the client's replies).
    #[arg(long, default_value_t = 1024)]
    max_pending: usize,
    /// Most upstream connections pinned to clients at once, in all (a WATCH, a blocking
    /// command such as BLPOP: each holds one to its shard until the client leaves). Past it,
    /// such commands get an error.
    #[arg(long, default_value_t = 4096)]
    max_pinned: usize,
    /// Clients must `AUTH <password>` (or `AUTH default <password>`) before anything else.
    #[arg(long)]
    requirepass: Option<String>,
    /// A user clients may `AUTH NAME PASSWORD` as (or `HELLO 3 AUTH NAME PASSWORD`), besides
    /// `default`; repeatable. The proxy checks it: upstreams see `--upstream-password`.
    #[arg(long = "user", value_name = "NAME:PASSWORD", value_parser = parse_user)]
    users: Vec<(String, String)>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (text format 0.0.4).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Password sent as `AUTH` on every connection to an upstream.
    #[arg(long)]
    upstream_password: Option<String>,
    /// How long writing replies to a client may stall (a client that does not read) before it
    /// is disconnected, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    client_write_timeout_ms: u64,
    /// Close a client connection that sends nothing for this many seconds (0: never, as
    /// redis-server's `timeout 0`), so idle connections do not hold file descriptors forever.
    #[arg(long, default_value_t = 0)]
    client_idle_timeout_secs: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("db-proxy: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `--user NAME:PASSWORD`.
fn parse_user(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, password)) if !name.is_empty() && name != "default" => {
            Ok((name.to_owned(), password.to_owned()))
        }
        Some(("default", _)) => Err("the default user's password is --requirepass".into()),
        _ => Err("expected NAME:PASSWORD".into()),
    }
}

fn run(args: Args) -> io::Result<()> {
    info::started();
    flow::tune_allocator();
    // As redis-server does, take every descriptor the hard limit allows: one per client.
    let _ = corio::raise_fd_limit();
    let cores = args
        .cores
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if cores == 0 {
        return Err(invalid("--cores must be at least 1"));
    }
    if args.max_pending == 0 || args.max_clients == Some(0) {
        return Err(invalid(
            "--max-pending and --max-clients must be at least 1",
        ));
    }
    if !args.upstreams.is_empty() && args.upstreams.len() > 16_384 {
        return Err(invalid(
            "at most 16384 --upstream shards (one per hash slot)",
        ));
    }
    let listen = resolve(&args.listen, "--listen")?;
    let listeners = reuseport_listeners(listen, cores)
        .map_err(|err| io::Error::new(err.kind(), format!("cannot listen on {listen}: {err}")))?;
    let local = listeners[0].local_addr()?;
    let metrics_listener = match &args.metrics_listen {
        Some(addr) => {
            let addr = resolve(addr, "--metrics-listen")?;
            let listener = std::net::TcpListener::bind(addr).map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("cannot listen on {addr} for metrics: {err}"),
                )
            })?;
            eprintln!(
                "db-proxy: metrics at http://{}/metrics",
                listener.local_addr()?
            );
            Some(listener)
        }
        None => None,
    };

    let seeds = args
        .cluster
        .iter()
        .map(|u| resolve(u, "--cluster"))
        .collect::<io::Result<Vec<_>>>()?;
    let (upstream_addrs, backends) = if !seeds.is_empty() {
        (Vec::new(), Vec::new())
    } else if args.upstreams.is_empty() {
        // Two embedded backends, each with one listener per core on its own loopback port.
        let backends = (0..2)
            .map(|_| reuseport_listeners("127.0.0.1:0".parse().expect("literal"), cores))
            .collect::<io::Result<Vec<_>>>()?;
        let addrs = backends
            .iter()
            .map(|per_core| per_core[0].local_addr())
            .collect::<io::Result<_>>()?;
        (addrs, backends)
    } else {
        let addrs = args
            .upstreams
            .iter()
            .map(|u| resolve(u, "--upstream"))
            .collect::<io::Result<Vec<_>>>()?;
        (addrs, Vec::new())
    };
    let config = Config {
        upstream: UpstreamConfig {
            connect_timeout: Duration::from_millis(args.connect_timeout_ms.max(1)),
            request_timeout: Duration::from_millis(args.request_timeout_ms.max(1)),
            password: args.upstream_password.as_deref().map(Arc::from),
            readonly: !seeds.is_empty() && args.read_from != reads::ReadFrom::Master,
            resp3: false,
        },
        read_from: args.read_from,
        max_clients: max_clients(
            args.max_clients,
            cores,
            upstream_addrs.len().max(seeds.len()),
        ),
        query_buffer_limit: args.client_query_buffer_limit.max(1024),
        // 0: no limit, as redis-server's `client-output-buffer-limit normal 0 0 0`.
        client_output_limit: match args.client_output_buffer_limit {
            0 => usize::MAX,
            bytes => bytes,
        },
        max_pending: args.max_pending,
        max_pinned: args.max_pinned,
        embedded: seeds.is_empty() && args.upstreams.is_empty(),
        client_write_timeout: Duration::from_millis(args.client_write_timeout_ms.max(1)),
        client_idle_timeout: (args.client_idle_timeout_secs > 0)
            .then(|| Duration::from_secs(args.client_idle_timeout_secs)),
        requirepass: args.requirepass.as_deref().map(Arc::from),
        users: args.users.clone().into(),
    };

    let proto_max_bulk_len = args.proto_max_bulk_len.max(1);
    let budget = match args.max_buffer_memory {
        0 => physical_memory() / 2,
        bytes => bytes,
    };
    flow::set_budget(budget);
    flow::trim_thread();

    let stop = shutdown::install()?;
    // Duplicates of the listening sockets, to end every core's accept at shutdown.
    let listener_dups = listeners
        .iter()
        .map(std::net::TcpListener::try_clone)
        .collect::<io::Result<Vec<_>>>()?;
    let runtime = Runtime::builder().cores(cores).build()?;
    // In cluster mode, the first slot map before any client: a cluster no seed describes is
    // an error at start, not a proxy that answers CLUSTERDOWN to everything.
    let cluster_map = if seeds.is_empty() {
        None
    } else {
        let interval = Duration::from_millis(args.cluster_refresh_ms.max(10));
        let map = cluster::start(seeds.clone(), interval, config.upstream.password.clone())?;
        let masters = map.masters();
        eprintln!(
            "db-proxy: {cores} cores, Redis Cluster: {} masters serving {} slots (map of {}, \
             epoch {}), refreshed every {} ms",
            masters.len(),
            masters.iter().map(|(_, n)| n).sum::<usize>(),
            map.source,
            map.epoch,
            interval.as_millis()
        );
        Some(map)
    };
    if backends.is_empty() {
        let addrs = if seeds.is_empty() {
            upstream_addrs.clone()
        } else {
            seeds.clone()
        };
        let timeout = config.upstream.connect_timeout.min(Duration::from_secs(1));
        learned::start(addrs, config.upstream.password.clone(), timeout);
    }
    println!("listening on {local}");
    io::stdout().flush()?;
    if cluster_map.is_none() {
        eprintln!(
            "db-proxy: {cores} cores, {} shards: {}{}",
            upstream_addrs.len(),
            upstream_addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            if backends.is_empty() {
                ""
            } else {
                " (embedded backends)"
            }
        );
    }
    eprintln!(
        "db-proxy: up to {} clients per core (open-file limit {}); buffers up to {} MiB in all",
        config.max_clients,
        fd_limit(),
        budget >> 20
    );

    let stores = embedded_stores(&runtime, backends.len())?;
    // What each core owns: its proxy listener and, for each embedded backend i, backend i's
    // listener for that core (backends[i][core]).
    let mut backends: Vec<std::vec::IntoIter<std::net::TcpListener>> =
        backends.into_iter().map(Vec::into_iter).collect();
    // Core 0 serves the metrics.
    let mut metrics_listener = metrics_listener;
    let per_core: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            let mine: Vec<_> = backends
                .iter_mut()
                .enumerate()
                .filter_map(|(i, per_core)| Some((i, per_core.next()?)))
                .collect();
            (listener, mine, metrics_listener.take())
        })
        .collect();
    let upstream_addrs = Arc::new(upstream_addrs);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        // try_run: a core that fails ends the whole proxy with that core's error, rather than
        // leaving the other cores serving without it.
        let results = runtime.try_run_with(per_core, move |core, (listener, mine, metrics)| {
            let upstream_addrs = upstream_addrs.clone();
            let cluster_map = cluster_map.clone();
            let stores = stores.clone();
            let config = config.clone();
            async move {
                for (index, listener) in mine {
                    let backend = backend::Backend {
                        index,
                        owner: CoreId(index % cores),
                        stores: stores.clone().expect("stores exist when backends do"),
                    };
                    spawn(backend::serve(TcpListener::from_std(listener)?, backend)).detach();
                }
                let listener = TcpListener::from_std(listener)?;
                let limits = resp::Limits {
                    max_bulk_len: proto_max_bulk_len,
                    ..resp::Limits::default()
                };
                let router = match &cluster_map {
                    Some(map) => Router::Cluster(cluster::CoreView::new(map.clone())),
                    None => Router::Shards(ShardMap::new(upstream_addrs.len())),
                };
                let proxy = Rc::new(Proxy::new(core, config, limits, router, &upstream_addrs));
                if let Some(metrics) = metrics {
                    let metrics = TcpListener::from_std(metrics)?;
                    spawn(metrics::serve(metrics, proxy.clone())).detach();
                }
                accept_loop(listener, proxy).await
            }
        });
        let _ = done_tx.send(results.map_err(io::Error::from));
        runtime
    });
    // Wait for a signal, or for the cores to stop on their own (an error).
    loop {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("db-proxy: signal received, draining");
            shutdown::drain(&listener_dups, Duration::from_secs(5));
            eprintln!("db-proxy: shut down");
            // Idle client connections and the cores end with the process.
            std::process::exit(0);
        }
        match done_rx.recv_timeout(Duration::from_millis(20)) {
            Ok(result) => {
                let _ = server.join();
                return result.map(drop);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(io::Error::other("the cores stopped unexpectedly"));
            }
        }
    }
}

/// Builds the embedded backends' sharded stores (none when upstreams are real servers).
fn embedded_stores(runtime: &Runtime, backends: usize) -> io::Result<Option<backend::Stores>> {
    if backends == 0 {
        return Ok(None);
    }
    let made = runtime.run(move |core| async move {
        if core.0 != 0 {
            return None;
        }
        let made = corio::mesh::Sharded::new(move |_| {
            (0..backends).map(|_| store::Store::new()).collect()
        });
        Some(made.await)
    });
    match made.into_iter().next().flatten() {
        Some(Ok(stores)) => Ok(Some(stores)),
        Some(Err(err)) => Err(io::Error::other(format!("embedded backends: {err}"))),
        None => Err(io::Error::other("embedded backends: no store was made")),
    }
}

/// Accepts clients on this core forever, refusing those over the limit with an error reply.
async fn accept_loop(listener: TcpListener, proxy: Rc<Proxy>) -> io::Result<()> {
    let mut errors = accept::AcceptErrors::new(proxy.core.to_string());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                errors.accepted();
                stream
            }
            Err(_) if shutdown::draining() => return Ok(()),
            Err(err) => {
                // EMFILE and friends: keep serving the clients we have, retry with backoff.
                errors.failed(&err).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if stats::clients() >= proxy.config.max_clients as u64 {
            spawn(async move {
                let _ = stream
                    .write_all(&b"-ERR max number of clients reached\r\n"[..])
                    .await;
            })
            .detach();
            continue;
        }
        let proxy = proxy.clone();
        spawn(async move {
            // Counted out even if the session ends by a panic (caught per task).
            let _connected = stats::Connected::new();
            session::serve(stream, proxy).await;
        })
        .detach();
    }
}

/// The soft open-file limit (after `raise_fd_limit`).
fn fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit to the valid, exclusive pointer it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_cur
}

/// Clients per core: `given`, or what the open-file limit leaves once every core's own
/// descriptors (its ring, listener, doorbell, one connection per shard and the embedded
/// backends') are set aside, shared by the cores. A `given` that cannot fit is kept (the
/// operator may know better) but warned about, since clients past the limit are refused
/// at accept.
fn max_clients(given: Option<usize>, cores: usize, shards: usize) -> usize {
    let reserved = 32 + cores as u64 * (shards as u64 * 2 + 8);
    let fits = (fd_limit().saturating_sub(reserved) / cores as u64).max(1);
    match given {
        Some(n) => {
            if n as u64 > fits {
                eprintln!(
                    "db-proxy: warning: --max-clients {n} per core is more than the open-file \
                     limit leaves room for ({fits} per core); accepts will fail past that"
                );
            }
            n
        }
        None => usize::try_from(fits).unwrap_or(usize::MAX),
    }
}

/// The machine's physical memory, in bytes (1 GiB if it cannot be read).
fn physical_memory() -> usize {
    // SAFETY: sysconf only reads system configuration.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    match (usize::try_from(pages), usize::try_from(size)) {
        (Ok(pages), Ok(size)) if pages > 0 && size > 0 => pages.saturating_mul(size),
        _ => 1 << 30,
    }
}

fn resolve(addr: &str, flag: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()
        .map_err(|err| invalid(&format!("{flag} {addr}: {err}")))?
        .next()
        .ok_or_else(|| invalid(&format!("{flag} {addr}: resolves to no address")))
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.to_owned())
}

/// A size in bytes as redis-server's config reads it: a number, optionally followed by `k`,
/// `m`, `g` (1000, 1000², 1000³) or `kb`, `mb`, `gb` (1024, 1024², 1024³), in any case.
fn parse_size(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let multiplier: usize = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return Err(format!("'{text}': use bytes or k, kb, m, mb, g, gb")),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("'{text}' is not a size"))
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes_read_like_redis_server_config() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("512mb"), Ok(512 << 20));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        assert_eq!(parse_size("1k"), Ok(1000));
        assert_eq!(parse_size("1kb"), Ok(1024));
        assert_eq!(parse_size("2g"), Ok(2_000_000_000));
        assert!(parse_size("12x").is_err());
        assert!(parse_size("mb").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999gb").is_err());
    }
}
