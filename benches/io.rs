//! corio-io benchmarks, each beside its references in the same run:
//!
//! - `echo_{64B,4KiB}_{16,256}conn`: TCP echo round trips per second. Servers (corio, tokio
//!   current-thread, monoio over io_uring, and a raw io-uring loop with no runtime) run on CPU 0;
//!   the client runs on CPU 1, either a minimal epoll loop (no runtime) or a tokio
//!   current-thread client. Each connection keeps one message in flight.
//! - `read_4KiB`: 4 KiB random reads from a page-cached 256 MiB file at depth 1, 32 and 128:
//!   corio, `tokio::fs` (seek + read), tokio `spawn_blocking` + pread, and a plain pread loop.
//! - `rss-per-connection`: each server, in its own process, holding 10,000 idle connections that
//!   have each echoed one 4 KiB message; prints the growth of its VmRSS per connection.
//!
//! Run: `cargo bench --bench io` (everything), `cargo bench --bench io -- echo_64B` (a filter;
//! the RSS part runs when the filter is a part of `rss-per-connection`, e.g. `-- rss`).
//! Pinning is done here: do not wrap it in `taskset`.

#[path = "io/clients.rs"]
mod clients;
#[path = "io/files.rs"]
mod files;
#[path = "io/raw_uring.rs"]
mod raw_uring;
#[path = "io/rss.rs"]
mod rss;
#[path = "io/servers.rs"]
mod servers;

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput};

use clients::{ClientKind, ClientThread};
use servers::{Server, ServerKind};

/// The CPU every server runs on.
const SERVER_CPU: usize = 0;
/// The CPU every load-generating client runs on.
const CLIENT_CPU: usize = 1;

fn main() {
    if let Ok(kind) = std::env::var(rss::SERVER_ENV) {
        rss::serve(&kind);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    echo(&mut c);
    files::reads(&mut c);
    c.final_summary();
    if wants_rss() {
        rss::run();
    }
}

/// Echo round trips: one group per message size and connection count; within a group each
/// server starts once and serves both clients, then stops.
fn echo(c: &mut Criterion) {
    for (size, size_name) in [(64, "64B"), (4096, "4KiB")] {
        for conns in [16, 256] {
            let mut group = c.benchmark_group(format!("echo_{size_name}_{conns}conn"));
            group.throughput(Throughput::Elements(1));
            for server_kind in ServerKind::ALL {
                // Started on first use, so a filter that skips this server starts nothing.
                let mut server: Option<Server> = None;
                for client_kind in ClientKind::ALL {
                    let id = BenchmarkId::new(server_kind.name(), client_kind.name());
                    let mut client: Option<ClientThread> = None;
                    group.bench_function(id, |b| {
                        let addr = server
                            .get_or_insert_with(|| Server::start(server_kind, SERVER_CPU))
                            .addr();
                        let client = client.get_or_insert_with(|| {
                            ClientThread::start(client_kind, addr, conns, size, CLIENT_CPU)
                        });
                        b.iter_custom(|round_trips| client.run(round_trips));
                    });
                }
            }
            group.finish();
        }
    }
}

/// Whether this run asked for the RSS part: a real bench run (`--bench`, not `--list`) whose
/// filter, if any, is a part of `rss-per-connection`.
fn wants_rss() -> bool {
    // Criterion's options that take a value; the first other argument not starting with `-` is
    // the filter.
    const WITH_VALUE: [&str; 20] = [
        "-c",
        "--color",
        "--colour",
        "-s",
        "--save-baseline",
        "-b",
        "--baseline",
        "--baseline-lenient",
        "--format",
        "--profile-time",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--list") {
        return false;
    }
    let mut filter = None;
    let mut skip_value = false;
    for arg in &args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        if arg.starts_with('-') {
            skip_value = WITH_VALUE.contains(&arg.as_str());
        } else if filter.is_none() {
            filter = Some(arg.as_str());
        }
    }
    filter.is_none_or(|f| "rss-per-connection".contains(f))
}

/// Takes one unit of work (a round trip, a read) shared between tasks; false once none is left.
fn take_one(remaining: &AtomicU64) -> bool {
    remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// Pins the calling thread to `cpu`.
///
/// # Panics
/// If the CPU does not exist or this process may not run on it.
fn pin_to_cpu(cpu: usize) {
    assert!(
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu }),
        "cannot pin a thread to CPU {cpu}: this bench needs CPUs {SERVER_CPU} and {CLIENT_CPU}"
    );
}
