//! An HTTP/1.1 server on every core with hyper 1.x over corio: each core binds its own
//! listener on the port (`TcpListener::bind`), and each connection is served by hyper through
//! `corio::io::compat::Compat`, with `HyperTimer` so a request whose headers do not arrive in
//! time (`--header-timeout-ms`) is dropped.
//!
//! Routes: `GET /` answers `hello from core N`; `POST /echo` answers with the request body;
//! anything else is a 404.
//!
//! Run: `cargo run --release --example hyper_server -- --port 8080`, then
//! `curl http://127.0.0.1:8080/` or `wrk -c 64 http://127.0.0.1:8080/`. Prints
//! `listening on ADDR` once every core listens.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use corio::io::compat::{Compat, HyperTimer};
use corio::net::TcpListener;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};

/// hyper's HTTP/1.1 server on every core.
#[derive(Parser, Debug)]
struct Args {
    /// Port to listen on (0: a free port, printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Number of cores. Default: every CPU.
    #[arg(long)]
    cores: Option<usize>,
    /// How long a client may take to send a request's headers, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hyper_server: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> std::io::Result<()> {
    let _ = corio::raise_fd_limit();
    let mut builder = corio::Runtime::builder();
    if let Some(cores) = args.cores {
        builder.cores(cores);
    }
    let runtime = builder.build()?;
    // Core 0 binds first, so that port 0 picks one port every core then shares.
    let first = corio::block_on(async {
        let listener = TcpListener::bind(SocketAddr::new(args.host, args.port))?;
        listener.local_addr()
    })?;
    let addr = SocketAddr::new(args.host, first.port());
    let header_timeout = Duration::from_millis(args.header_timeout_ms);
    // The last core to listen says so; a core that fails first ends the run with its error
    // (no core waits for the others: a blocked core could not be stopped).
    let cores = runtime.cores();
    let listening = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    runtime.try_run(move |core| {
        let listening = listening.clone();
        async move {
            let listener = TcpListener::bind(addr)?;
            if listening.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == cores {
                println!("listening on {}", listener.local_addr()?);
                use std::io::Write;
                std::io::stdout().flush()?;
            }
            serve(core, listener, header_timeout).await
        }
    })?;
    Ok(())
}

/// Accepts connections on one core, each served by hyper in its own task.
async fn serve(
    core: corio::CoreId,
    listener: TcpListener,
    header_timeout: Duration,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(HyperTimer).header_read_timeout(header_timeout);
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of fds, say: the listener stays usable; try again shortly.
                eprintln!("hyper_server: accept on {core}: {err}");
                corio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(
            Compat::new(stream),
            hyper::service::service_fn(move |request| handle(core, request)),
        );
        corio::spawn(async move {
            // A client that leaves or times out ends its connection; nothing to report.
            let _ = connection.await;
        })
        .detach();
    }
}

async fn handle(
    core: corio::CoreId,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => {
            Response::new(Full::new(Bytes::from(format!("hello from {core}\n"))))
        }
        (&Method::POST, "/echo") => match request.into_body().collect().await {
            Ok(body) => Response::new(Full::new(body.to_bytes())),
            Err(err) => status(StatusCode::BAD_REQUEST, &format!("{err}\n")),
        },
        _ => status(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(response)
}

fn status(code: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = code;
    response
}
