//! Concurrent HTTP/1.1 fetches with hyper's client over corio: `--connections` keep-alive
//! connections spread over every core, each sending its share of `--requests` GETs one after
//! another; each core gathers its connections with `join_all` (asyncio's concurrent fetches,
//! with a real HTTP client), and the run gathers the cores.
//!
//! Run against the hyper_server example:
//! `cargo run --release --example hyper_client -- --url http://127.0.0.1:8080/ --requests 1000`.
//! Prints the count of each status and of failures; the exit status is 1 if any failed.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use corio::io::compat::Compat;
use corio::net::TcpStream;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, Uri};

/// Fetch a URL many times over a few keep-alive connections.
#[derive(Parser, Debug)]
struct Args {
    /// The URL to GET (http only).
    #[arg(long, default_value = "http://127.0.0.1:8080/")]
    url: Uri,
    /// Requests in all.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Connections, each sending its share of the requests in turn.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Time limit for each request, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Number of cores (connection i runs on core i % cores). Default: every CPU.
    #[arg(long)]
    cores: Option<usize>,
}

fn main() -> ExitCode {
    let args = std::sync::Arc::new(Args::parse());
    let mut builder = corio::Runtime::builder();
    if let Some(cores) = args.cores {
        builder.cores(cores);
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hyper_client: {err}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let cores = runtime.cores();
    let shared = args.clone();
    let outcomes: Vec<Result<u16, String>> = runtime
        .run(move |core| {
            let args = shared.clone();
            async move { fetch_all(&args, core.0, cores).await }
        })
        .into_iter()
        .flatten()
        .collect();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = false;
    for outcome in outcomes {
        let key = match outcome {
            Ok(status) => status.to_string(),
            Err(err) => {
                failed = true;
                format!("error: {err}")
            }
        };
        *counts.entry(key).or_default() += 1;
    }
    for (what, count) in &counts {
        println!("{count} x {what}");
    }
    println!(
        "{} requests over {} connections in {:?}",
        args.requests,
        args.connections,
        started.elapsed()
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The status of every request of this core's connections (`i % cores == core`), or why it
/// failed.
async fn fetch_all(args: &Args, core: usize, cores: usize) -> Vec<Result<u16, String>> {
    let connections = args.connections.max(1);
    let per_connection = (0..connections).filter(|i| i % cores == core).map(|i| {
        let share = args.requests / connections + usize::from(i < args.requests % connections);
        fetch_on_one_connection(args, share)
    });
    corio::join_all(per_connection)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// `count` GETs on one keep-alive connection, one after another.
async fn fetch_on_one_connection(args: &Args, count: usize) -> Vec<Result<u16, String>> {
    let mut outcomes = Vec::with_capacity(count);
    let host = args.url.host().unwrap_or("127.0.0.1").to_owned();
    let port = args.url.port_u16().unwrap_or(80);
    let stream = match TcpStream::connect((host.as_str(), port)).await {
        Ok(stream) => stream,
        Err(err) => return vec![Err(err.to_string()); count],
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(Compat::new(stream)).await {
            Ok(pair) => pair,
            Err(err) => return vec![Err(err.to_string()); count],
        };
    // The connection's I/O runs as its own task on this core.
    corio::spawn(async move {
        let _ = connection.await;
    })
    .detach();
    let limit = Duration::from_millis(args.timeout_ms);
    for _ in 0..count {
        let request = Request::get(args.url.clone())
            .header(hyper::header::HOST, host.as_str())
            .body(Empty::<Bytes>::new())
            .expect("a GET with a host header is a valid request");
        let fetch = async {
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            response.into_body().collect().await?;
            Ok::<u16, hyper::Error>(status)
        };
        let outcome = match corio::time::timeout(limit, fetch).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("timed out after {limit:?}")),
        };
        let broken = outcome.is_err();
        outcomes.push(outcome);
        if broken {
            // The connection is in an unknown state: the rest of its share fails with it.
            let rest = count - outcomes.len();
            outcomes.extend(vec![Err("connection failed earlier".to_owned()); rest]);
            break;
        }
    }
    outcomes
}
