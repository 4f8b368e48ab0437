//! The servers compared, each in this process on its own pinned threads: a TCP echo server and
//! an HTTP/1.1 hello-world server (keep-alive, pipelining answered in order), written the same
//! way for every runtime:
//!
//! - **corio**: one core per CPU, each with its own SO_REUSEPORT listener; echo through a
//!   multishot receive into a provided-buffer ring (as examples/echo.rs), HTTP through `read`
//!   into a per-connection buffer.
//! - **monoio**: one io_uring runtime thread per CPU, each with its own SO_REUSEPORT listener.
//! - **tokio-ct**: one current-thread tokio runtime per CPU, each with its own SO_REUSEPORT
//!   listener (tokio's thread-per-core shape).
//! - **tokio-mt**: one multi-thread tokio runtime with a worker per CPU and one listener.
//!
//! The hyper app is hyper 1.x's HTTP/1.1 server with a timer (so its header-read timeout is on)
//! answering hello world: over `corio::io::compat::Compat` with `HyperTimer` on corio, over
//! hyper-util's `TokioIo` with `TokioTimer` on tokio (monoio has no row).
//!
//! Server `i` of `n` cores runs on CPU `i`. A [`Server`] listens on a free 127.0.0.1 port until
//! dropped; to stop, it sets a flag and connects until every accept loop has seen it.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Provided buffers per corio core, and their size (examples/echo.rs's defaults).
const CORIO_BUFFERS: u16 = 512;
const CORIO_BUFFER_SIZE: u32 = 4096;
/// The read buffer of every other connection.
const READ_BUFFER: usize = 4096;
/// The HTTP reply to every request.
pub const HTTP_REPLY: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

/// Which runtime serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Corio,
    /// corio forced onto its epoll driver (what runs where io_uring is blocked).
    CorioEpoll,
    Monoio,
    TokioCt,
    TokioMt,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Corio,
        Kind::CorioEpoll,
        Kind::Monoio,
        Kind::TokioCt,
        Kind::TokioMt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Corio => "corio",
            Kind::CorioEpoll => "corio-epoll",
            Kind::Monoio => "monoio",
            Kind::TokioCt => "tokio-ct",
            Kind::TokioMt => "tokio-mt",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// What the server does with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    Echo,
    Http,
    Hyper,
}

/// A running server; dropping it stops every thread.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Starts `kind` serving `app` on CPUs `0..cores`; returns once every listener accepts.
    pub fn start(kind: Kind, app: App, cores: usize) -> Server {
        let listeners = reuseport_listeners(if kind == Kind::TokioMt { 1 } else { cores });
        let addr = listeners[0].local_addr().expect("listener address");
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let mut threads = Vec::new();
        match kind {
            Kind::Corio | Kind::CorioEpoll => {
                let stop = stop.clone();
                let ready_tx = ready_tx.clone();
                let driver = match kind {
                    Kind::CorioEpoll => corio::rt::DriverKind::Epoll,
                    _ => corio::rt::DriverKind::IoUring,
                };
                threads.push(std::thread::spawn(move || {
                    corio_server(listeners, app, driver, &stop, ready_tx)
                }));
            }
            Kind::TokioMt => {
                let stop = stop.clone();
                let ready_tx = ready_tx.clone();
                let listener = listeners.into_iter().next().expect("one listener");
                threads.push(std::thread::spawn(move || {
                    tokio_mt_server(listener, cores, app, &stop, ready_tx)
                }));
            }
            Kind::Monoio | Kind::TokioCt => {
                for (cpu, listener) in listeners.into_iter().enumerate() {
                    let stop = stop.clone();
                    let ready_tx = ready_tx.clone();
                    threads.push(std::thread::spawn(move || {
                        crate::pin(cpu);
                        if kind == Kind::Monoio {
                            monoio_server(listener, app, &stop, ready_tx)
                        } else {
                            tokio_ct_server(listener, app, &stop, ready_tx)
                        }
                    }));
                }
            }
        }
        drop(ready_tx);
        let expected = if kind == Kind::TokioMt { 1 } else { cores };
        for _ in 0..expected {
            ready_rx
                .recv()
                .unwrap_or_else(|_| panic!("the {} server failed to start", kind.name()));
        }
        Server {
            addr,
            stop,
            threads,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Each accept loop checks the flag after an accept; SO_REUSEPORT spreads these
        // connections over the listeners still open. Bounded: 10,000 tries.
        for _ in 0..10_000 {
            if self.threads.iter().all(|t| t.is_finished()) {
                break;
            }
            let _ = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
            std::thread::sleep(Duration::from_micros(200));
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// `n` listeners on one free 127.0.0.1 port, each with SO_REUSEPORT.
fn reuseport_listeners(n: usize) -> Vec<TcpListener> {
    let mut port = 0;
    (0..n)
        .map(|_| {
            let socket =
                Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
            socket.set_reuse_address(true).expect("SO_REUSEADDR");
            socket.set_reuse_port(true).expect("SO_REUSEPORT");
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            socket.bind(&addr.into()).expect("bind 127.0.0.1");
            socket.listen(4096).expect("listen");
            let listener: TcpListener = socket.into();
            port = listener.local_addr().expect("address").port();
            listener
        })
        .collect()
}

/// Answers every complete request head in `pending` (GET, no body) with [`HTTP_REPLY`]
/// appended to `out`; keeps an incomplete head in `pending`.
pub fn http_answer(pending: &mut Vec<u8>, out: &mut Vec<u8>) {
    let mut start = 0;
    while let Some(end) = pending[start..].windows(4).position(|w| w == b"\r\n\r\n") {
        out.extend_from_slice(HTTP_REPLY);
        start += end + 4;
    }
    pending.drain(..start);
}

fn corio_server(
    listeners: Vec<TcpListener>,
    app: App,
    driver: corio::rt::DriverKind,
    stop: &Arc<AtomicBool>,
    ready: mpsc::Sender<()>,
) {
    let cores = listeners.len();
    let runtime = corio::Runtime::builder()
        .cores(cores)
        .driver(driver)
        .thread_name("corio-server")
        .build()
        .expect("corio runtime");
    let stop = stop.clone();
    // Each core gets its own listener and its own copy of the ready sender.
    let per_core: Vec<_> = listeners.into_iter().map(|l| (l, ready.clone())).collect();
    drop(ready);
    runtime.run_with(per_core, move |_core, (listener, ready)| {
        let stop = stop.clone();
        async move {
            let listener = corio::net::TcpListener::from_std(listener).expect("corio listener");
            let ring = corio::io::buf::BufRing::new(CORIO_BUFFERS, CORIO_BUFFER_SIZE)
                .expect("corio buffer ring");
            let mut incoming = listener.incoming();
            let _ = ready.send(());
            loop {
                match incoming.next().await {
                    Ok(_) if stop.load(Ordering::Acquire) => return,
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        match app {
                            App::Echo => corio::spawn(corio_echo(stream, ring.clone())).detach(),
                            App::Http => corio::spawn(corio_http(stream)).detach(),
                            App::Hyper => corio::spawn(corio_hyper(stream)).detach(),
                        }
                    }
                    Err(err) => {
                        eprintln!("corio server: accept: {err}");
                        corio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
    });
}

async fn corio_echo(stream: corio::net::TcpStream, ring: corio::io::buf::BufRing) {
    let mut received = stream.recv_stream(&ring);
    while let Some(Ok(chunk)) = received.next().await {
        let (res, _) = stream.write_all(chunk).await;
        if res.is_err() {
            return;
        }
    }
}

/// hyper's hello world, the same service for every runtime.
async fn hyper_hello(
    _: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<hyper::body::Bytes>>, std::convert::Infallible> {
    let mut response = hyper::Response::new(http_body_util::Full::new(
        hyper::body::Bytes::from_static(b"Hello, World!"),
    ));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    Ok(response)
}

async fn corio_hyper(stream: corio::net::TcpStream) {
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(corio::io::compat::HyperTimer)
        .serve_connection(
            corio::io::compat::Compat::new(stream),
            hyper::service::service_fn(hyper_hello),
        )
        .await;
}

async fn tokio_hyper(stream: tokio::net::TcpStream) {
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(
            hyper_util::rt::TokioIo::new(stream),
            hyper::service::service_fn(hyper_hello),
        )
        .await;
}

async fn corio_http(stream: corio::net::TcpStream) {
    use corio::io::buf::IoBuf;
    let mut pending = Vec::with_capacity(READ_BUFFER);
    let mut out = Vec::with_capacity(READ_BUFFER);
    loop {
        if pending.capacity() - pending.len() < 512 {
            pending.reserve(READ_BUFFER);
        }
        let (len, cap) = (pending.len(), pending.capacity());
        let (res, slice) = stream.read(pending.slice(len..cap)).await;
        pending = slice.into_inner();
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        out.clear();
        http_answer(&mut pending, &mut out);
        if !out.is_empty() {
            let (res, back) = stream.write_all(out).await;
            out = back;
            if res.is_err() {
                return;
            }
        }
    }
}

fn monoio_server(listener: TcpListener, app: App, stop: &AtomicBool, ready: mpsc::Sender<()>) {
    let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("monoio runtime");
    runtime.block_on(async move {
        let listener = monoio::net::TcpListener::from_std(listener).expect("monoio listener");
        let _ = ready.send(());
        loop {
            match listener.accept().await {
                Ok(_) if stop.load(Ordering::Acquire) => return,
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    assert!(app != App::Hyper, "no hyper row for monoio");
                    monoio::spawn(monoio_conn(stream, app));
                }
                Err(err) => {
                    eprintln!("monoio server: accept: {err}");
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
}

async fn monoio_conn(mut stream: monoio::net::TcpStream, app: App) {
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    let mut buf = Vec::with_capacity(READ_BUFFER);
    // Grown only by HTTP: an echo connection holds just its read buffer.
    let mut pending = Vec::new();
    let mut out = Vec::new();
    loop {
        buf.clear();
        let (res, back) = stream.read(buf).await;
        buf = back;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let reply = match app {
            App::Echo => std::mem::take(&mut buf),
            App::Http | App::Hyper => {
                pending.extend_from_slice(&buf);
                out.clear();
                http_answer(&mut pending, &mut out);
                if out.is_empty() {
                    continue;
                }
                std::mem::take(&mut out)
            }
        };
        let (res, back) = stream.write_all(reply).await;
        match app {
            App::Echo => buf = back,
            App::Http | App::Hyper => out = back,
        }
        if res.is_err() {
            return;
        }
    }
}

fn tokio_ct_server(listener: TcpListener, app: App, stop: &AtomicBool, ready: mpsc::Sender<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(tokio_accept(listener, app, stop, ready));
}

fn tokio_mt_server(
    listener: TcpListener,
    workers: usize,
    app: App,
    stop: &AtomicBool,
    ready: mpsc::Sender<()>,
) {
    let next_cpu = std::sync::atomic::AtomicUsize::new(0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .on_thread_start(move || {
            // Workers (and blocking threads, which this server does not use) take CPUs in turn.
            let cpu = next_cpu.fetch_add(1, Ordering::Relaxed) % workers;
            crate::pin(cpu);
        })
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(tokio_accept(listener, app, stop, ready));
}

async fn tokio_accept(listener: TcpListener, app: App, stop: &AtomicBool, ready: mpsc::Sender<()>) {
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let _ = ready.send(());
    loop {
        match listener.accept().await {
            Ok(_) if stop.load(Ordering::Acquire) => return,
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                if app == App::Hyper {
                    tokio::spawn(tokio_hyper(stream));
                } else {
                    tokio::spawn(tokio_conn(stream, app));
                }
            }
            Err(err) => {
                eprintln!("tokio server: accept: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn tokio_conn(mut stream: tokio::net::TcpStream, app: App) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; READ_BUFFER];
    // Grown only by HTTP: an echo connection holds just its read buffer.
    let mut pending = Vec::new();
    let mut out = Vec::new();
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let reply = match app {
            App::Echo => &buf[..n],
            App::Http | App::Hyper => {
                pending.extend_from_slice(&buf[..n]);
                out.clear();
                http_answer(&mut pending, &mut out);
                if out.is_empty() {
                    continue;
                }
                &out[..]
            }
        };
        if stream.write_all(reply).await.is_err() {
            return;
        }
    }
}
