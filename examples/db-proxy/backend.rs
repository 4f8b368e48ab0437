//! The embedded backend: a real RESP server on a loopback port, served by corio, holding its
//! data in a [`Store`]. With no `--upstream`, the proxy starts two and fronts them exactly as
//! it would front redis-servers, so `cargo run --example db-proxy` works on a fresh machine.
//!
//! Each backend runs on one core (backend `i` on core `i % cores`), so its store needs no lock.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use corio::net::{TcpListener, TcpStream};
use corio::rt::{spawn, time};

use crate::resp::{self, Limits, Parsed};
use crate::store::{Outcome, Store};

/// Keys examined per active-expiry round (every 100 ms), as redis-server's cron does.
const EXPIRE_PER_ROUND: usize = 64;

/// Accepts clients forever, each served by its own task.
pub(crate) async fn serve(listener: TcpListener) {
    let store = Rc::new(RefCell::new(Store::new()));
    spawn(expire(store.clone())).detach();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                spawn(connection(stream, store.clone())).detach();
            }
            Err(err) => {
                eprintln!("db-proxy: embedded backend accept failed: {err}");
                time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn expire(store: Rc<RefCell<Store>>) {
    let mut every = time::interval(Duration::from_millis(100));
    loop {
        every.tick().await;
        store
            .borrow_mut()
            .expire_some(Instant::now(), EXPIRE_PER_ROUND);
    }
}

/// Serves one connection: every complete request in what was read is executed in order and
/// the replies written in one batch.
async fn connection(stream: TcpStream, store: Rc<RefCell<Store>>) {
    let limits = Limits::default();
    let mut input = Vec::with_capacity(16 * 1024);
    let mut output = Vec::with_capacity(16 * 1024);
    loop {
        if input.capacity() - input.len() < 4096 {
            input.reserve(input.len().max(16 * 1024));
        }
        let (res, back) = stream.read(input).await;
        input = back;
        if !matches!(res, Ok(n) if n > 0) {
            return;
        }
        let (consumed, close) = execute_all(&input, &limits, &store, &mut output);
        input.drain(..consumed);
        let (res, back) = stream.write_all(std::mem::take(&mut output)).await;
        output = back;
        output.clear();
        if res.is_err() || close {
            return;
        }
    }
}

/// Runs every complete request at the front of `input`; returns the bytes consumed and whether
/// the connection must close (QUIT, or a protocol error).
fn execute_all(
    input: &[u8],
    limits: &Limits,
    store: &RefCell<Store>,
    output: &mut Vec<u8>,
) -> (usize, bool) {
    let mut start = 0;
    let now = Instant::now();
    loop {
        match resp::parse_request(&input[start..], limits) {
            Ok(Parsed::Complete { request, consumed }) => {
                let buf = &input[start..];
                start += consumed;
                if request.len() == 0 {
                    continue;
                }
                let args: Vec<&[u8]> = request.args(buf).collect();
                if let Outcome::Close = store.borrow_mut().execute(&args, now, output) {
                    return (start, true);
                }
            }
            Ok(Parsed::Incomplete { .. }) => return (start, false),
            Err(err) => {
                resp::write_error(output, &format!("ERR {err}"));
                return (start, true);
            }
        }
    }
}
