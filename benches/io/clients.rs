//! Echo load generators, each on its own thread pinned to one CPU, holding its connections for
//! the whole benchmark: a minimal epoll loop (no runtime: one `epoll_wait` per batch of ready
//! connections, one recv and one send per round trip) and a tokio current-thread client (one
//! task per connection).
//!
//! Every connection keeps exactly one message in flight: send it, wait for all of its echo, send
//! again. A run of `n` round trips starts with every connection idle and ends the same way. The
//! first round trip of each connection, at connect time, checks the echoed bytes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the epoll client waits for any echo before declaring the server stuck.
const STUCK: Duration = Duration::from_secs(10);

/// Which client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    Epoll,
    Tokio,
}

impl ClientKind {
    pub const ALL: [ClientKind; 2] = [ClientKind::Epoll, ClientKind::Tokio];

    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Epoll => "epoll_client",
            ClientKind::Tokio => "tokio_client",
        }
    }
}

/// A client thread with its connections open; dropping it closes them and joins the thread.
pub struct ClientThread {
    runs: Option<mpsc::Sender<u64>>,
    elapsed: mpsc::Receiver<Duration>,
    thread: Option<JoinHandle<()>>,
}

impl ClientThread {
    /// Opens `conns` connections to `addr` from a thread pinned to `cpu`, each echoing one
    /// `size`-byte message to check the server, and returns once all are open.
    pub fn start(
        kind: ClientKind,
        addr: SocketAddr,
        conns: usize,
        size: usize,
        cpu: usize,
    ) -> ClientThread {
        let (runs_tx, runs_rx) = mpsc::channel::<u64>();
        let (elapsed_tx, elapsed_rx) = mpsc::channel::<Duration>();
        let thread = std::thread::Builder::new()
            .name(kind.name().to_owned())
            .spawn(move || {
                crate::pin_to_cpu(cpu);
                let message = message(size);
                let streams = connect(addr, conns, &message);
                // An empty "run" says the connections are open.
                elapsed_tx.send(Duration::ZERO).expect("start() waits");
                match kind {
                    ClientKind::Epoll => {
                        let mut client = EpollClient::new(streams, message);
                        for n in runs_rx {
                            let _ = elapsed_tx.send(client.run(n));
                        }
                    }
                    ClientKind::Tokio => {
                        let mut client = TokioClient::new(streams, message);
                        for n in runs_rx {
                            let _ = elapsed_tx.send(client.run(n));
                        }
                    }
                }
            })
            .expect("spawn the client thread");
        elapsed_rx
            .recv()
            .expect("the echo client failed to connect (see its panic above)");
        ClientThread {
            runs: Some(runs_tx),
            elapsed: elapsed_rx,
            thread: Some(thread),
        }
    }

    /// Runs `round_trips` round trips over all connections; returns the time they took.
    pub fn run(&self, round_trips: u64) -> Duration {
        let runs = self.runs.as_ref().expect("open until dropped");
        runs.send(round_trips).expect("the echo client has died");
        self.elapsed
            .recv()
            .expect("the echo client has died (see its panic above)")
    }
}

impl Drop for ClientThread {
    fn drop(&mut self) {
        drop(self.runs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn message(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// Opens `conns` blocking, no-delay connections, each checked by one echo of `message`.
fn connect(addr: SocketAddr, conns: usize, message: &[u8]) -> Vec<TcpStream> {
    let mut echo = vec![0u8; message.len()];
    (0..conns)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).expect("connect to the echo server");
            stream.set_nodelay(true).expect("TCP_NODELAY");
            stream.write_all(message).expect("send the first message");
            stream
                .read_exact(&mut echo)
                .expect("receive the first echo");
            assert_eq!(echo, message, "the server echoed other bytes");
            stream
        })
        .collect()
}

/// One thread, nonblocking sockets, one epoll: send, receive until the whole echo is back,
/// send again.
struct EpollClient {
    epoll: OwnedFd,
    conns: Vec<EpollConn>,
    message: Vec<u8>,
    events: Vec<libc::epoll_event>,
}

struct EpollConn {
    stream: TcpStream,
    buf: Vec<u8>,
    received: usize,
}

impl EpollClient {
    fn new(streams: Vec<TcpStream>, message: Vec<u8>) -> EpollClient {
        // SAFETY: no pointers are passed; a non-negative result is a new fd that we own.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(epoll >= 0, "epoll_create1: {}", io::Error::last_os_error());
        // SAFETY: `epoll` was just created and is owned by nothing else.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        let conns: Vec<EpollConn> = streams
            .into_iter()
            .enumerate()
            .map(|(index, stream)| {
                stream.set_nonblocking(true).expect("O_NONBLOCK");
                let mut event = libc::epoll_event {
                    events: libc::EPOLLIN as u32,
                    u64: index as u64,
                };
                // SAFETY: both fds are open; `event` is a live epoll_event the kernel copies.
                let rc = unsafe {
                    libc::epoll_ctl(
                        epoll.as_raw_fd(),
                        libc::EPOLL_CTL_ADD,
                        stream.as_raw_fd(),
                        &mut event,
                    )
                };
                assert_eq!(rc, 0, "epoll_ctl: {}", io::Error::last_os_error());
                EpollConn {
                    stream,
                    buf: vec![0; message.len()],
                    received: 0,
                }
            })
            .collect();
        let events = vec![libc::epoll_event { events: 0, u64: 0 }; conns.len()];
        EpollClient {
            epoll,
            conns,
            message,
            events,
        }
    }

    fn run(&mut self, round_trips: u64) -> Duration {
        let start = Instant::now();
        let mut sent = 0;
        let mut done = 0;
        for conn in &mut self.conns {
            if sent == round_trips {
                break;
            }
            send(&mut conn.stream, &self.message);
            sent += 1;
        }
        while done < round_trips {
            for i in 0..self.wait() {
                let conn = &mut self.conns[self.events[i].u64 as usize];
                if !conn.receive() {
                    continue;
                }
                done += 1;
                if sent < round_trips {
                    send(&mut conn.stream, &self.message);
                    sent += 1;
                }
            }
        }
        start.elapsed()
    }

    /// Waits for readable connections; returns how many events were stored.
    fn wait(&mut self) -> usize {
        loop {
            // SAFETY: `events` is a live array of `events.len()` entries the kernel fills.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    self.events.as_mut_ptr(),
                    self.events.len() as i32,
                    STUCK.as_millis() as i32,
                )
            };
            match n {
                0 => panic!("no echo for {STUCK:?}: the server is stuck"),
                1.. => return n as usize,
                _ => {
                    let err = io::Error::last_os_error();
                    assert_eq!(err.kind(), io::ErrorKind::Interrupted, "epoll_wait: {err}");
                }
            }
        }
    }
}

impl EpollConn {
    /// Reads what has arrived; true once the whole echo is back (then it is reset).
    fn receive(&mut self) -> bool {
        match self.stream.read(&mut self.buf[self.received..]) {
            Ok(0) => panic!("the server closed a connection"),
            Ok(n) => self.received += n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return false,
            Err(err) => panic!("recv: {err}"),
        }
        if self.received < self.buf.len() {
            return false;
        }
        self.received = 0;
        true
    }
}

/// Sends all of `message`; the socket buffer is empty (one message in flight), so a short
/// send is rare and then the rest is sent blocking.
fn send(stream: &mut TcpStream, message: &[u8]) {
    let n = match stream.write(message) {
        Ok(n) => n,
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
        Err(err) => panic!("send: {err}"),
    };
    if n < message.len() {
        stream.set_nonblocking(false).expect("clear O_NONBLOCK");
        stream.write_all(&message[n..]).expect("send");
        stream.set_nonblocking(true).expect("O_NONBLOCK");
    }
}

/// A tokio current-thread runtime, one task per connection for each run.
struct TokioClient {
    runtime: tokio::runtime::Runtime,
    streams: Vec<tokio::net::TcpStream>,
    message: Arc<[u8]>,
}

impl TokioClient {
    fn new(streams: Vec<TcpStream>, message: Vec<u8>) -> TokioClient {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("tokio runtime");
        let streams = runtime.block_on(async {
            streams
                .into_iter()
                .map(|stream| {
                    stream.set_nonblocking(true).expect("O_NONBLOCK");
                    tokio::net::TcpStream::from_std(stream).expect("tokio stream")
                })
                .collect()
        });
        TokioClient {
            runtime,
            streams,
            message: message.into(),
        }
    }

    fn run(&mut self, round_trips: u64) -> Duration {
        let streams = std::mem::take(&mut self.streams);
        let message = self.message.clone();
        let (elapsed, streams) = self.runtime.block_on(async move {
            let remaining = Arc::new(AtomicU64::new(round_trips));
            let start = Instant::now();
            let tasks: Vec<_> = streams
                .into_iter()
                .map(|stream| {
                    tokio::spawn(round_trips_on(stream, remaining.clone(), message.clone()))
                })
                .collect();
            let mut streams = Vec::with_capacity(tasks.len());
            for task in tasks {
                streams.push(task.await.expect("a tokio client task panicked"));
            }
            (start.elapsed(), streams)
        });
        self.streams = streams;
        elapsed
    }
}

async fn round_trips_on(
    mut stream: tokio::net::TcpStream,
    remaining: Arc<AtomicU64>,
    message: Arc<[u8]>,
) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut echo = vec![0u8; message.len()];
    while crate::take_one(&remaining) {
        stream.write_all(&message).await.expect("send");
        stream
            .read_exact(&mut echo)
            .await
            .expect("receive the echo");
    }
    stream
}
