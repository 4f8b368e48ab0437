//! A chat server on every core: each line a client sends goes to every client, whichever core
//! serves it. The asyncio `start_server` chat, thread-per-core.
//!
//! Each core keeps its own clients (nothing shared); a line is turned into one `Arc<[u8]>`
//! message and sent once to every core (`corio::mesh::spawn_on`), where it is queued to each
//! local client. A client's writer task sends the same bytes to its socket as every other
//! client's (`Arc<[u8]>` is an I/O buffer: no copy per client). Lines are read with
//! `BufReader::lines`, at most 4 KiB each. A client too slow to keep up with 1,024 queued lines
//! is disconnected rather than let the server's memory grow.
//!
//! Protocol: the server greets with `welcome NAME`; `/nick NAME` renames; every other line is
//! broadcast as `NAME: line`; joins and leaves are announced.
//!
//! Run: `cargo run --release --example chat -- --port 7001`, then connect with
//! `telnet 127.0.0.1 7001` from two terminals. Prints `listening on ADDR`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clap::Parser;
use corio::io::BufReader;
use corio::mesh::channel::{Receiver, Sender};
use corio::net::{TcpListener, TcpStream};

/// Line-based chat, every core serving.
#[derive(Parser, Debug)]
struct Args {
    /// Port to listen on (0: a free port, printed).
    #[arg(long, default_value_t = 7001)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Number of cores. Default: every CPU.
    #[arg(long)]
    cores: Option<usize>,
}

/// Lines queued to one client before it is dropped as too slow.
const QUEUE: usize = 1024;
/// The longest line accepted.
const MAX_LINE: usize = 4096;

static NEXT_GUEST: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This core's clients by id: the queue of each one's writer task.
    static CLIENTS: RefCell<HashMap<u64, Sender<Arc<[u8]>>>> = RefCell::new(HashMap::new());
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chat: {err}");
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
    let listeners =
        corio::net::reuseport_listeners(SocketAddr::new(args.host, args.port), runtime.cores())?;
    println!("listening on {}", listeners[0].local_addr()?);
    use std::io::Write;
    std::io::stdout().flush()?;
    runtime.try_run_with(listeners, |_core, listener| async move {
        let listener = TcpListener::from_std(listener)?;
        loop {
            let (stream, _peer) = listener.accept().await?;
            corio::spawn(client(stream)).detach();
        }
        #[allow(unreachable_code)]
        std::io::Result::Ok(())
    })?;
    Ok(())
}

/// Serves one client: its writer task, then its lines until it leaves.
async fn client(stream: TcpStream) {
    let stream = Rc::new(stream);
    let (tx, rx) = corio::mesh::channel::<Arc<[u8]>>(QUEUE);
    let key = NEXT_GUEST.fetch_add(1, Ordering::Relaxed);
    CLIENTS.with(|clients| clients.borrow_mut().insert(key, tx));
    let writer = corio::spawn(write_queued(stream.clone(), rx));
    let mut name = format!("guest{key}");
    send_to(key, format!("welcome {name}\n"));
    broadcast(format!("* {name} joined\n"));
    let mut lines = BufReader::new(stream.clone()).lines().max_len(MAX_LINE);
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                if let Some(nick) = line.strip_prefix("/nick ") {
                    let nick = nick.trim();
                    if nick.is_empty() || nick.contains(char::is_whitespace) {
                        send_to(key, "* a name is one word\n".to_owned());
                        continue;
                    }
                    broadcast(format!("* {name} is now {nick}\n"));
                    name = nick.to_owned();
                } else {
                    broadcast(format!("{name}: {line}\n"));
                }
            }
            Ok(None) => break,
            Err(err) => {
                send_to(key, format!("* {err}; bye\n"));
                break;
            }
        }
    }
    CLIENTS.with(|clients| clients.borrow_mut().remove(&key));
    // The writer ends once its queue is closed and drained.
    let _ = writer.await;
    broadcast(format!("* {name} left\n"));
}

/// Writes one client's queued lines in order until its queue closes (it left, or was too slow)
/// or its socket fails; then shuts the socket, which also ends the client's reading.
async fn write_queued(stream: Rc<TcpStream>, rx: Receiver<Arc<[u8]>>) {
    while let Some(line) = rx.recv().await {
        let (res, _) = stream.write_all(line).await;
        if res.is_err() {
            break;
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Queues `text` to one client of this core.
fn send_to(key: u64, text: String) {
    let line: Arc<[u8]> = Arc::from(text.into_bytes());
    CLIENTS.with(|clients| {
        if let Some(tx) = clients.borrow().get(&key) {
            let _ = tx.try_send(line);
        }
    });
}

/// Sends `text` to every client on every core: one message per core, one shared buffer.
fn broadcast(text: String) {
    let line: Arc<[u8]> = Arc::from(text.into_bytes());
    for peer in corio::rt::peers().iter() {
        let line = line.clone();
        corio::mesh::spawn_on_handle(peer, move || async move { deliver(line) }).detach();
    }
}

/// Queues `line` to every client of this core; a client whose queue is full is dropped.
fn deliver(line: Arc<[u8]>) {
    CLIENTS.with(|clients| {
        // Dropping a slow client's sender closes its queue: its writer ends and shuts its
        // socket, which ends its reader too.
        clients
            .borrow_mut()
            .retain(|_, tx| tx.try_send(line.clone()).is_ok());
    });
}
