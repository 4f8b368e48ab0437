//! The echo servers under test, each on its own thread pinned to one CPU: corio (as
//! examples/echo.rs: multishot receive into a shared provided-buffer ring, each chunk written
//! back from its ring buffer), tokio current-thread and monoio (a 4 KiB read buffer per
//! connection, as their echo examples do), and the raw io-uring loop of `raw_uring.rs`.
//!
//! A [`Server`] listens on a free 127.0.0.1 port from `start` until it is dropped. To stop, it
//! sets a flag and connects once: each accept loop checks the flag after every accept, so no
//! thread spins or polls while idle, and no cross-thread wake-up is needed from any runtime.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// Provided buffers in corio's ring, and their size (examples/echo.rs's defaults).
pub const CORIO_BUFFERS: u16 = 512;
pub const CORIO_BUFFER_SIZE: u32 = 4096;
/// The read buffer each tokio or monoio connection holds.
const READ_BUFFER: usize = 4096;

/// Which echo server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    Corio,
    Tokio,
    Monoio,
    Raw,
}

impl ServerKind {
    pub const ALL: [ServerKind; 4] = [
        ServerKind::Corio,
        ServerKind::Tokio,
        ServerKind::Monoio,
        ServerKind::Raw,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Corio => "corio",
            ServerKind::Tokio => "tokio",
            ServerKind::Monoio => "monoio",
            ServerKind::Raw => "raw_uring",
        }
    }

    pub fn from_name(name: &str) -> Option<ServerKind> {
        ServerKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A running echo server; dropping it stops the server and joins its thread.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts `kind` on a thread pinned to `cpu` and returns once it is accepting.
    ///
    /// # Panics
    /// If the port cannot be bound, or the server fails to set up (its thread's panic says why).
    pub fn start(kind: ServerKind, cpu: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free 127.0.0.1 port");
        let addr = listener.local_addr().expect("listener address");
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{}-server", kind.name()))
            .spawn(move || {
                crate::pin_to_cpu(cpu);
                let ready = move || ready_tx.send(()).expect("start() waits for ready");
                let stop = &thread_stop;
                match kind {
                    ServerKind::Corio => corio_server(listener, stop, ready),
                    ServerKind::Tokio => tokio_server(listener, stop, ready),
                    ServerKind::Monoio => monoio_server(listener, stop, ready),
                    ServerKind::Raw => {
                        crate::raw_uring::serve(listener, stop, ready).expect("raw io-uring server")
                    }
                }
            })
            .expect("spawn the server thread");
        ready_rx
            .recv()
            .unwrap_or_else(|_| panic!("the {} server failed to start", kind.name()));
        Server {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // The accept this connection completes makes the loop see the flag.
        let _wake = std::net::TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn corio_server(listener: TcpListener, stop: &AtomicBool, ready: impl FnOnce()) {
    corio::block_on(async move {
        let listener = corio::net::TcpListener::from_std(listener).expect("corio listener");
        let ring = corio::io::buf::BufRing::new(CORIO_BUFFERS, CORIO_BUFFER_SIZE)
            .expect("corio buffer ring");
        let mut incoming = listener.incoming();
        ready();
        loop {
            match incoming.next().await {
                Ok(_) if stop.load(Ordering::Acquire) => return,
                Ok(stream) => corio::spawn(corio_echo(stream, ring.clone())).detach(),
                Err(err) => {
                    eprintln!("corio server: accept: {err}");
                    corio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
}

/// examples/echo.rs's connection task.
async fn corio_echo(stream: corio::net::TcpStream, ring: corio::io::buf::BufRing) {
    let _ = stream.set_nodelay(true);
    let mut received = stream.recv_stream(&ring);
    while let Some(Ok(chunk)) = received.next().await {
        let (res, _) = stream.write_all(chunk).await;
        if res.is_err() {
            return;
        }
    }
}

fn tokio_server(listener: TcpListener, stop: &AtomicBool, ready: impl FnOnce()) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        ready();
        loop {
            match listener.accept().await {
                Ok(_) if stop.load(Ordering::Acquire) => return,
                Ok((stream, _)) => {
                    tokio::spawn(tokio_echo(stream));
                }
                Err(err) => {
                    eprintln!("tokio server: accept: {err}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
}

async fn tokio_echo(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn monoio_server(listener: TcpListener, stop: &AtomicBool, ready: impl FnOnce()) {
    let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("monoio runtime");
    runtime.block_on(async move {
        let listener = monoio::net::TcpListener::from_std(listener).expect("monoio listener");
        ready();
        loop {
            match listener.accept().await {
                Ok(_) if stop.load(Ordering::Acquire) => return,
                Ok((stream, _)) => {
                    monoio::spawn(monoio_echo(stream));
                }
                Err(err) => {
                    eprintln!("monoio server: accept: {err}");
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
}

async fn monoio_echo(mut stream: monoio::net::TcpStream) {
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(READ_BUFFER);
    loop {
        let (res, back) = stream.read(buf).await;
        buf = back;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (res, back) = stream.write_all(buf).await;
        buf = back;
        if res.is_err() {
            return;
        }
        buf.clear();
    }
}
