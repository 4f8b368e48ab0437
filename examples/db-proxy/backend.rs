//! The embedded backends: real RESP servers on loopback ports, served by corio, keeping their
//! data in a `Sharded` store. With no `--upstream`, the proxy starts two and fronts them exactly
//! as it would front redis-servers, so `cargo run --example db-proxy` works on a fresh machine.
//!
//! Every core accepts on every backend's port (SO_REUSEPORT). Backend `i`'s [`Store`] lives in
//! core `i % cores`'s slot of a [`Sharded`] set of stores, so it needs no lock: a connection
//! parses what it read and sends the whole batch of requests to the owning core with
//! `Sharded::on`, one cross-core hop per batch (none of the data is shared).

use std::time::{Duration, Instant};

use corio::mesh::Sharded;
use corio::net::{TcpListener, TcpStream};
use corio::rt::{spawn, time, CoreId};

use crate::accept::AcceptErrors;
use crate::resp::{self, Limits, Parsed};
use crate::store::{Outcome, Store};

/// Every embedded backend's store, one set per core (only the owner's entry holds data).
pub(crate) type Stores = Sharded<Vec<Store>>;

/// Keys examined per active-expiry round (every 100 ms), as redis-server's cron does.
const EXPIRE_PER_ROUND: usize = 64;

/// Where backend `index`'s data lives.
#[derive(Clone)]
pub(crate) struct Backend {
    pub(crate) index: usize,
    pub(crate) owner: CoreId,
    pub(crate) stores: Stores,
}

/// Accepts clients of one backend on this core forever, each served by its own task. The
/// owner core also runs the backend's active expiry.
pub(crate) async fn serve(listener: TcpListener, backend: Backend) {
    if corio::current_core() == backend.owner {
        spawn(expire(backend.clone())).detach();
    }
    let mut incoming = listener.incoming();
    let mut errors = AcceptErrors::new(format!(
        "embedded backend {} on {}",
        backend.index,
        corio::current_core()
    ));
    loop {
        match incoming.next().await {
            Ok(stream) => {
                errors.accepted();
                let _ = stream.set_nodelay(true);
                spawn(connection(stream, backend.clone())).detach();
            }
            Err(err) => errors.failed(&err).await,
        }
    }
}

async fn expire(backend: Backend) {
    let mut every = time::interval(Duration::from_millis(100));
    loop {
        every.tick().await;
        let index = backend.index;
        let expired = backend.stores.on(backend.owner, move |stores| {
            stores[index].expire_some(Instant::now(), EXPIRE_PER_ROUND)
        });
        if expired.await.is_err() {
            return; // the owner core has shut down
        }
    }
}

/// Serves one connection: every complete request in what was read goes to the owner core as
/// one batch, and the replies come back to be written in one write.
async fn connection(stream: TcpStream, backend: Backend) {
    let limits = Limits::default();
    let mut input = Vec::with_capacity(16 * 1024);
    loop {
        if input.capacity() - input.len() < 4096 {
            input.reserve(input.len().max(16 * 1024));
        }
        let (res, back) = stream.read(input).await;
        input = back;
        if !matches!(res, Ok(n) if n > 0) {
            return;
        }
        let (consumed, batch, protocol_error) = parse_all(&input, &limits);
        input.drain(..consumed);
        let (mut output, mut close) = match execute(&backend, batch).await {
            Some(done) => done,
            None => return, // the owner core has shut down
        };
        if let Some(error) = protocol_error {
            resp::write_error(&mut output, &format!("ERR {error}"));
            close = true;
        }
        let (res, _) = stream.write_all(output).await;
        if res.is_err() || close {
            return;
        }
    }
}

/// The complete requests at the front of `input` as owned argument lists, the bytes they
/// span, and the protocol error that stopped parsing, if any.
fn parse_all(input: &[u8], limits: &Limits) -> (usize, Vec<Vec<Vec<u8>>>, Option<String>) {
    let mut start = 0;
    let mut batch = Vec::new();
    loop {
        match resp::parse_request(&input[start..], limits) {
            Ok(Parsed::Complete { request, consumed }) => {
                let buf = &input[start..];
                if request.len() > 0 {
                    batch.push(request.args(buf).map(<[u8]>::to_vec).collect());
                }
                start += consumed;
            }
            Ok(Parsed::Incomplete { .. }) => return (start, batch, None),
            Err(err) => return (start, batch, Some(err.to_string())),
        }
    }
}

/// Runs a batch on the owner core; returns the replies and whether the client sent QUIT.
async fn execute(backend: &Backend, batch: Vec<Vec<Vec<u8>>>) -> Option<(Vec<u8>, bool)> {
    let index = backend.index;
    let run = backend.stores.on(backend.owner, move |stores| {
        let store = &mut stores[index];
        let (mut output, now) = (Vec::new(), Instant::now());
        for args in &batch {
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            if let Outcome::Close = store.execute(&args, now, &mut output) {
                return (output, true);
            }
        }
        (output, false)
    });
    run.await.ok()
}
