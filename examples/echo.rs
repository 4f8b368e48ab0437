//! A TCP echo server on every core: the asyncio `start_server` idea, one listener per core on
//! one port (SO_REUSEPORT), each connection a task, bytes received into a shared provided-buffer
//! ring (an idle connection holds no buffer) and written back straight from it.
//!
//! Run: `cargo run --release --example echo -- --port 7000 --cores 2`, then
//! `redis-benchmark`-free check: `printf hello | nc 127.0.0.1 7000`. Prints `listening on ADDR`
//! first; raises its open-file limit to the hard limit so it can hold many connections.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use clap::Parser;
use corio::io::buf::BufRing;
use corio::net::{reuseport_listeners, TcpListener, TcpStream};

/// TCP echo server, one event loop per core.
#[derive(Parser, Debug)]
struct Args {
    /// Port to listen on (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 7000)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Number of cores. Default: every CPU.
    #[arg(long)]
    cores: Option<usize>,
    /// Provided buffers per core, and their size in bytes.
    #[arg(long, default_value_t = 512)]
    buffers: u16,
    #[arg(long, default_value_t = 4096)]
    buffer_size: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("echo: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> std::io::Result<()> {
    let _ = corio::raise_fd_limit();
    let cores = args
        .cores
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let listeners = reuseport_listeners(SocketAddr::new(args.host, args.port), cores)?;
    let addr = listeners[0].local_addr()?;
    let runtime = corio::Runtime::builder().cores(cores).build()?;
    let (buffers, size) = (args.buffers, args.buffer_size);
    // A core that cannot start (out of fds for its ring, say) ends the run with its error
    // instead of leaving the others serving without it. The last core to be ready says
    // "listening"; no core waits for the others (a blocked core could not be stopped).
    let listening = Arc::new(AtomicUsize::new(0));
    runtime.try_run_with(listeners, move |core, listener| {
        let listening = listening.clone();
        async move {
            let listener = TcpListener::from_std(listener)?;
            let ring = BufRing::new(buffers, size)?;
            if listening.fetch_add(1, Ordering::SeqCst) + 1 == cores {
                println!("listening on {addr}");
                std::io::stdout().flush()?;
            }
            serve(core, listener, ring).await
        }
    })?;
    Ok(())
}

/// Accepts connections on one core's listener, each echoed by its own task.
async fn serve(core: corio::CoreId, listener: TcpListener, ring: BufRing) -> std::io::Result<()> {
    let mut incoming = listener.incoming();
    loop {
        match incoming.next().await {
            Ok(stream) => corio::spawn(echo(stream, ring.clone())).detach(),
            Err(err) => {
                eprintln!("echo: accept on {core}: {err}");
                corio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Echoes one connection until EOF or an error.
async fn echo(stream: TcpStream, ring: BufRing) {
    let _ = stream.set_nodelay(true);
    let mut received = stream.recv_stream(&ring);
    while let Some(Ok(chunk)) = received.next().await {
        let (res, _) = stream.write_all(chunk).await;
        if res.is_err() {
            return;
        }
    }
}
