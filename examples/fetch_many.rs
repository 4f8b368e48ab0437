//! Many concurrent fetches gathered together: asyncio's `gather`, on corio.
//!
//! The example starts its own local server, which answers each request after a delay (a stand-in
//! for a slow backend), then fetches N resources twice: one after another, and all at once with
//! `join_all`. With N = 100 and a 20 ms delay the first takes about 2 s, the second about 20 ms.
//!
//! Run: `cargo run --release --example fetch_many -- --count 100 --delay-ms 20`

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use corio::net::{TcpListener, TcpStream};

/// Fetch N resources sequentially, then concurrently, from a local slow server.
#[derive(Parser, Debug)]
struct Args {
    /// Number of fetches.
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// The server's delay before each answer, in milliseconds.
    #[arg(long, default_value_t = 20)]
    delay_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = corio::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        corio::spawn(serve(listener, Duration::from_millis(args.delay_ms))).detach();

        let start = Instant::now();
        let mut sequential = Vec::with_capacity(args.count);
        for id in 0..args.count {
            sequential.push(fetch(addr, id).await?);
        }
        let one_by_one = start.elapsed();

        let start = Instant::now();
        let fetches = (0..args.count).map(|id| fetch(addr, id));
        let gathered = corio::try_join_all(fetches).await?;
        let together = start.elapsed();

        assert_eq!(sequential, gathered, "the same answers either way");
        println!("{} fetches, one after another: {one_by_one:?}", args.count);
        println!(
            "{} fetches, gathered with join_all: {together:?}",
            args.count
        );
        std::io::Result::Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fetch_many: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Sends `GET <id>\n` and returns the one-line answer.
async fn fetch(addr: std::net::SocketAddr, id: usize) -> std::io::Result<String> {
    let stream = TcpStream::connect(addr).await?;
    let (res, _) = stream.write_all(format!("GET {id}\n").into_bytes()).await;
    res?;
    let mut answer = Vec::with_capacity(64);
    while !answer.ends_with(b"\n") {
        let (n, back) = stream.read(answer).await;
        answer = back;
        if n? == 0 {
            break;
        }
        answer.reserve(64);
    }
    Ok(String::from_utf8_lossy(&answer).trim_end().to_owned())
}

/// Answers each connection's one request after `delay`, every connection concurrently.
async fn serve(listener: TcpListener, delay: Duration) {
    let mut incoming = listener.incoming();
    while let Ok(stream) = incoming.next().await {
        corio::spawn(async move {
            let (n, request) = stream.read(Vec::with_capacity(64)).await;
            if n.is_err() {
                return;
            }
            corio::time::sleep(delay).await;
            let name = String::from_utf8_lossy(&request).trim().to_owned();
            let _ = stream
                .write_all(format!("resource {name}\n").into_bytes())
                .await;
        })
        .detach();
    }
}
