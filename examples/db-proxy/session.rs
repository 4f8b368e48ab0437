//! One client session: read requests, route each to its shard, answer strictly in order.
//!
//! The session parses the complete requests in what it has read (up to its window, see
//! [`flow::Window`]), queues each on its upstream connection (so a pipeline reaches each shard
//! as one batch), then awaits the replies in request order and writes them back as they come,
//! small ones gathered into one write. A protocol error is answered like redis-server does and
//! ends the session; any other bad request gets an error reply and the session goes on.
//! Nothing here can disturb another session: an upstream failure or timeout becomes an error
//! reply for the requests it affects, and what a client holds in memory is bounded
//! ([`flow`]). Transactions and blocking commands go through `pinned.rs`, subscribed mode
//! through `pubsub.rs`, the replies through `answer.rs`.

use std::collections::VecDeque;
use std::net::Shutdown;
use std::rc::Rc;
use std::time::{Duration, Instant};

use corio::net::TcpStream;
use corio::rt::time;

use crate::command::{self, LocalCmd, MultiKind, Route, Targets};
use crate::flow::{self, Held, Window};
use crate::keys::CROSSSLOT;
use crate::multikey::{self, Part};
use crate::reads;
use crate::resp::{self, Parsed, Request};
use crate::upstream::ReplySlot;
use crate::{scan, shutdown, stats, Proxy};

mod answer;
mod input;
mod local;
mod output;
pub(crate) mod pinned;
mod pubsub;
mod redirect;

use answer::answer;
use input::Input;

use local::allowed_before_auth;

/// The capacity session buffers start with and shrink back to.
const BUF_SIZE: usize = 16 * 1024;
/// Buffers above this capacity are given back once their large contents are gone.
const SHRINK_ABOVE: usize = 256 * 1024;
/// Replies are gathered into one write up to this many bytes; a larger reply is written
/// from its own buffer.
const GATHER: usize = 64 * 1024;

/// A request's place in the reply order.
enum Pending {
    /// The proxy's own reply, already encoded.
    Ready(Vec<u8>),
    /// Forwarded whole to one shard or node. In a cluster the request is kept, to follow a
    /// MOVED or ASK with it.
    Forwarded {
        shard: usize,
        slot: Rc<ReplySlot>,
        resend: Option<redirect::Resend>,
    },
    /// SCAN on one shard: its reply's cursor is rewritten (see `scan.rs`). `shard` is the
    /// position in the shard list, `shards` its length.
    Scan {
        node: usize,
        slot: Rc<ReplySlot>,
        shard: usize,
        shards: usize,
    },
    /// INFO: every core's counters, gathered when its turn comes; the sections asked for
    /// (lowercase; empty for the default set).
    Info(Vec<String>),
    /// Split across shards (or a cluster's slots); merged when every part has replied. Each
    /// part with the node it went to.
    Split {
        kind: MultiKind,
        nkeys: usize,
        parts: Vec<(Part, usize, Rc<ReplySlot>)>,
    },
    /// Requests sent as one piece in their turn (see [`pinned::Exclusive`]).
    Exclusive(pinned::Exclusive),
}

/// Per-client state that commands may change.
struct Client {
    name: Option<Vec<u8>>,
    closing: bool,
    /// Whether the client may run commands (always, unless `--requirepass` is set).
    authenticated: bool,
    /// The bytes of replies this client holds in the proxy.
    held: Rc<Held>,
    /// Whether forwarded requests get `-OOM` (the process stayed past its budget for a whole
    /// request timeout): set for one batch.
    oom: bool,
    /// The expected size of this client's replies (its window's average; 0 while unknown).
    estimate: usize,
    /// Bytes of the budget this client's own input buffer takes (not a reason for it to wait).
    own: usize,
    /// Pinned connections, WATCH and MULTI state (see `pinned.rs`).
    pins: pinned::Pins,
    /// The user the client authenticated as (`default` until AUTH names another).
    user: String,
    /// Whether the client chose RESP3 (`HELLO 3`): its requests go over connections that
    /// speak RESP3 to the upstream.
    resp3: bool,
    /// Requests answered in the batch being written, for the counters (kept between batches).
    done: Vec<(stats::Started, stats::Outcome)>,
    /// A subscribe command that puts the session in subscribed mode once the replies before
    /// it are written (see `pubsub.rs`).
    subscribe: Option<Vec<Vec<u8>>>,
}

/// Why a batch of requests stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The next request is incomplete: read more.
    Incomplete,
    /// The window is full: answer, then parse again.
    Full,
    /// The next request expects a large reply and its shard's connection already has
    /// [`flow::UPSTREAM_INFLIGHT`] bytes of replies in flight: answer, wait for it to drain,
    /// then parse again.
    Congested(usize),
    /// The next request goes upstream and the process is past its memory budget: answer,
    /// wait for memory, then parse again.
    OverBudget,
}

/// Serves one client until it disconnects, sends QUIT, or breaks the protocol.
pub(crate) async fn serve(stream: TcpStream, proxy: Rc<Proxy>) {
    let mut client = Client {
        name: None,
        closing: false,
        authenticated: proxy.config.requirepass.is_none(),
        held: Held::new(proxy.config.client_output_limit),
        oom: false,
        estimate: 0,
        own: 0,
        pins: pinned::Pins::default(),
        user: "default".to_owned(),
        resp3: false,
        done: Vec::new(),
        subscribe: None,
    };
    let mut input = Input {
        buf: Vec::with_capacity(BUF_SIZE),
        taken: 0,
    };
    let mut output: Vec<u8> = Vec::with_capacity(BUF_SIZE);
    let mut queue: VecDeque<(Option<stats::Started>, Pending)> = VecDeque::new();
    let mut window = Window::new(proxy.config.max_pending);
    let mut need = 0;
    // Set when a congested shard did not drain in time: the next batch is sent regardless.
    let mut force_next = false;
    // The parse of the request at the front of `input`, kept between reads.
    let mut partial = resp::Partial::default();
    loop {
        let mut stop = Stop::Incomplete;
        if input.buf.len() >= need {
            client.estimate = if std::mem::take(&mut force_next) {
                0
            } else {
                window.estimate()
            };
            client.own = input.taken;
            let consumed;
            (consumed, need, stop) = parse_batch(
                &input.buf,
                &proxy,
                &mut client,
                &mut queue,
                &mut partial,
                window.requests(),
            );
            input.buf.drain(..consumed);
            input.shrink();
            need = need.saturating_sub(consumed);
            client.oom = false;
        }
        if !queue.is_empty() {
            let _busy = shutdown::busy();
            let sent = queue.len();
            let io = (&stream, &mut input);
            match answer(&proxy, io, &mut client, &mut queue, &mut output).await {
                Ok(bytes) => window.update(sent, bytes),
                // The client stalled past the write timeout, went away, or passed its
                // output buffer limit: close it. Its replies still coming are dropped.
                Err(()) => break,
            }
        }
        if let Some(first) = client.subscribe.take() {
            let (end, reset) =
                pubsub::serve(&proxy, &stream, &mut input, first, client.resp3).await;
            if reset.0 {
                local::reset(&proxy, &mut client);
            }
            match end {
                pubsub::End::Close => break,
                // Commands after the last UNSUBSCRIBE may already be in `input`.
                pubsub::End::Unsubscribed => continue,
            }
        }
        if client.closing || shutdown::draining() {
            break;
        }
        match stop {
            Stop::Full => continue, // more complete requests may wait in `input`
            Stop::Congested(shard) => {
                // This client's large replies wait for the shard's connection to drain, so
                // they never queue more than the bound ahead of other clients' requests.
                // Bounded: past the request timeout the request is sent anyway.
                let upstream = proxy.upstream_for(shard, client.resp3);
                let timeout = proxy.config.upstream.request_timeout;
                force_next = time::timeout(timeout, upstream.uncongested())
                    .await
                    .is_err();
                continue;
            }
            Stop::OverBudget => {
                // Wait for clients to read what the proxy holds for them; past the request
                // timeout, the waiting requests get -OOM.
                let own = input.taken;
                client.oom = !wait_for_memory(&proxy, || !flow::over_budget_besides(own)).await;
                continue;
            }
            Stop::Incomplete => {}
        }
        // Refused as soon as the request is known to be too big (a length line says so), not
        // after buffering all of it.
        let limit = proxy.config.query_buffer_limit;
        const OOM: &str =
            "OOM command not allowed when the proxy's buffers exceed --max-buffer-memory";
        let refusal = if input.buf.len() >= limit || need > limit {
            Some("ERR Protocol error: request exceeds --client-query-buffer-limit")
        } else if need > flow::budget() {
            Some(OOM) // the length lines say it can never fit
        } else if input.reserve(need) {
            None
        } else {
            // Other clients hold the memory now: wait for it (bounded), as requests do.
            let grow = input.growth(need);
            let freed = wait_for_memory(&proxy, || flow::fits(grow)).await;
            (!(freed && input.reserve(need))).then_some(OOM)
        };
        if let Some(text) = refusal {
            let mut out = Vec::new();
            resp::write_error(&mut out, text);
            stats::error();
            let _ = time::timeout(proxy.config.client_write_timeout, stream.write_all(out)).await;
            break;
        }
        let read = stream.read(std::mem::take(&mut input.buf));
        let (res, back) = match proxy.config.client_idle_timeout {
            None => read.await,
            Some(idle) => match time::timeout(idle, read).await {
                Ok(done) => done,
                Err(_) => break, // idle too long: close, as redis-server's `timeout` does
            },
        };
        input.buf = back;
        match res {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    flow::freed(output.capacity());
}

/// Waits, up to the request timeout, until `ready` says there is memory (other clients
/// read what the proxy holds for them, or are closed); `false` if there is not.
async fn wait_for_memory(proxy: &Proxy, ready: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + proxy.config.upstream.request_timeout;
    while !ready() {
        if Instant::now() >= deadline {
            return false;
        }
        time::sleep(Duration::from_millis(1)).await;
    }
    true
}

/// Parses and dispatches the complete requests at the front of `input`.
///
/// Returns the bytes consumed, how long `input` must be before parsing again can make
/// progress, and why the batch stopped.
fn parse_batch(
    input: &[u8],
    proxy: &Proxy,
    client: &mut Client,
    queue: &mut VecDeque<(Option<stats::Started>, Pending)>,
    partial: &mut resp::Partial,
    window: usize,
) -> (usize, usize, Stop) {
    let mut start = 0;
    // One clock reading for the batch's command timings.
    let batch_start = Instant::now();
    while !client.closing && client.subscribe.is_none() {
        if queue.len() >= window {
            return (start, 0, Stop::Full);
        }
        match resp::parse_request_resume(&input[start..], &proxy.limits, partial) {
            Ok(Parsed::Complete { request, consumed }) => {
                let buf = &input[start..];
                if let Some(stop) = hold_back(proxy, client, &request, buf) {
                    // Not consumed: parsed again after the wait.
                    return (start, 0, stop);
                }
                let name = request.args(buf).next();
                if !queue.is_empty() && name.is_some_and(|n| n.eq_ignore_ascii_case(b"reset")) {
                    // RESET closes pinned connections: only once what came before is answered.
                    return (start, 0, Stop::Full);
                }
                let started = name.and_then(|name| stats::Started::new(name, batch_start));
                let pending = dispatch(proxy, client, &request, buf, &buf[..consumed]);
                start += consumed;
                if let Some(pending) = pending {
                    // A blocking command ends the batch: what follows it is read after its
                    // reply, as redis-server would (a pipelined LPUSH must not wake it).
                    let blocks = matches!(&pending, Pending::Exclusive(e) if e.blocking);
                    queue.push_back((started, pending));
                    if blocks {
                        return (start, 0, Stop::Full);
                    }
                }
            }
            Ok(Parsed::Incomplete { need }) => return (start, start + need, Stop::Incomplete),
            Err(err) => {
                queue.push_back((None, error(&format!("ERR {err}"))));
                stats::error();
                client.closing = true;
            }
        }
    }
    (start, 0, Stop::Incomplete)
}

/// Whether a request must wait before it is sent upstream: the process is past its budget
/// (unless the client already waited a whole request timeout: it then gets -OOM), or the
/// client's replies are large and the request's shard connection is congested. Requests the
/// proxy answers itself (PING, INFO...) never wait.
fn hold_back(proxy: &Proxy, client: &Client, request: &Request, buf: &[u8]) -> Option<Stop> {
    let large = client.estimate >= flow::LARGE_REPLY;
    let over = !client.oom && flow::over_budget_besides(client.own);
    if !(large || over) || request.len() == 0 {
        return None;
    }
    let args: Vec<&[u8]> = request.args(buf).collect();
    let route = command::classify(&args).ok()?;
    match route {
        Route::Local(_) => None,
        _ if over => Some(Stop::OverBudget),
        Route::Single { key } => {
            let shard = proxy.node_of_key(args[key])?;
            proxy
                .upstream_for(shard, client.resp3)
                .congested()
                .then_some(Stop::Congested(shard))
        }
        _ => None,
    }
}

fn error(text: &str) -> Pending {
    let mut out = Vec::new();
    resp::write_error(&mut out, text);
    Pending::Ready(out)
}

/// Routes one request: forwards it, splits it, or answers it here.
fn dispatch(
    proxy: &Proxy,
    client: &mut Client,
    request: &Request,
    buf: &[u8],
    raw: &[u8],
) -> Option<Pending> {
    if request.len() == 0 {
        return None; // an empty request is ignored, as redis-server does
    }
    stats::request();
    let args: Vec<&[u8]> = request.args(buf).collect();
    if !client.authenticated && !allowed_before_auth(args[0]) {
        stats::error();
        return Some(error("NOAUTH Authentication required."));
    }
    if let Some(pending) = pinned::intercept(proxy, client, &args, (raw, request.inline)) {
        return Some(pending);
    }
    let route = match command::classify(&args) {
        Ok(route) => route,
        Err(text) => {
            stats::error();
            return Some(error(&text));
        }
    };
    if client.oom && !matches!(route, Route::Local(_)) {
        stats::error();
        return Some(error(
            "OOM command not allowed when the proxy's buffers exceed --max-buffer-memory",
        ));
    }
    let held = Some(&client.held);
    let estimate = client.estimate;
    let resp3 = client.resp3;
    let at = |node: usize| (held, estimate, node, resp3);
    Some(match route {
        Route::Single { key } => match proxy.node_of_key(args[key]) {
            Some(node) if proxy.reads_from_replicas() && reads::is_read(args[0]) => {
                match proxy.read_node(node) {
                    Some(node) => forward(proxy, at(node), Some(args[key]), request, &args, raw),
                    None => no_replica(),
                }
            }
            Some(node) => forward(proxy, at(node), Some(args[key]), request, &args, raw),
            None => unserved(),
        },
        Route::Multi { first, step, kind } => {
            let parts = multikey::split(&args, first, step, |k| proxy.group_of_key(k));
            let nodes: Option<Vec<usize>> =
                parts.iter().map(|p| proxy.node_of_group(p.shard)).collect();
            let Some(mut nodes) = nodes else {
                return Some(unserved());
            };
            if kind == MultiKind::Mget && proxy.reads_from_replicas() {
                match nodes.iter().map(|&n| proxy.read_node(n)).collect() {
                    Some(replicas) => nodes = replicas,
                    None => return Some(no_replica()),
                }
            }
            if let [node] = nodes[..] {
                forward(proxy, at(node), Some(args[first]), request, &args, raw)
            } else {
                let nkeys = (args.len() - first) / step;
                let parts = parts
                    .into_iter()
                    .zip(nodes)
                    .map(|(part, node)| {
                        let slot = proxy.upstream_for(node, resp3).send(&part.request, held, 0);
                        (part, node, slot)
                    })
                    .collect();
                Pending::Split { kind, nkeys, parts }
            }
        }
        Route::SameSlot(keys) => match proxy.same_slot_node(&keys, &args) {
            Ok(Some((node, key))) => forward(proxy, at(node), key, request, &args, raw),
            Ok(None) => unserved(),
            Err(()) => {
                stats::error();
                error(CROSSSLOT)
            }
        },
        Route::Fanout(cmd) => {
            let (kind, targets) = match command::fanout_plan(cmd, &args) {
                Ok(plan) => plan,
                Err(text) => {
                    stats::error();
                    return Some(error(&text));
                }
            };
            let mut nodes = proxy.fanout_nodes();
            if targets == Targets::First {
                nodes.truncate(1);
            }
            let mut request = Vec::new();
            resp::encode_command(&mut request, args.iter().copied());
            let parts = nodes
                .into_iter()
                .map(|node| {
                    let slot = proxy.upstream_for(node, resp3).send(&request, held, 0);
                    let part = Part {
                        shard: node,
                        request: request.clone(),
                        keys: Vec::new(),
                    };
                    (part, node, slot)
                })
                .collect();
            Pending::Split {
                kind,
                nkeys: 0,
                parts,
            }
        }
        Route::Blocking(keys) => {
            pinned::blocking(proxy, client, keys, &args, (raw, request.inline))
        }
        Route::Scan => {
            let nodes = proxy.fanout_nodes();
            let Some((shard, cursor)) = scan::decode(args[1], nodes.len()) else {
                stats::error();
                return Some(error("ERR invalid cursor"));
            };
            let Some(&node) = nodes.get(shard) else {
                return Some(unserved());
            };
            let cursor = cursor.to_string();
            let mut rewritten = args.clone();
            rewritten[1] = cursor.as_bytes();
            let mut request = Vec::new();
            resp::encode_command(&mut request, rewritten);
            let slot = proxy.upstream_for(node, resp3).send(&request, held, 0);
            Pending::Scan {
                node,
                slot,
                shard,
                shards: nodes.len(),
            }
        }
        Route::Local(LocalCmd::Subscribe) if proxy.config.embedded => {
            stats::error();
            error("ERR pub/sub is not supported by db-proxy's embedded backends; run it with --upstream or --cluster")
        }
        Route::Local(LocalCmd::Subscribe) => {
            client.subscribe = Some(args.iter().map(|a| a.to_vec()).collect());
            return None;
        }
        Route::Local(LocalCmd::Info) => Pending::Info(
            args[1..]
                .iter()
                .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
                .collect(),
        ),
        Route::Local(cmd) => {
            let out = local::local(proxy, client, cmd, &args);
            if out.first() == Some(&b'-') {
                stats::error();
            }
            Pending::Ready(out)
        }
    })
}

/// The reply to a read under `--read-from replica` whose slot's master has no online replica.
fn no_replica() -> Pending {
    stats::error();
    error("ERR no replica serves this key's slot (--read-from replica)")
}

/// The reply to a request whose cluster slot no node serves (as a cluster node answers it).
fn unserved() -> Pending {
    stats::error();
    error("CLUSTERDOWN Hash slot not served")
}

/// Sends a request whole to `shard`, re-encoding inline commands as multibulk; its reply
/// counts against `held`, and is expected to be `estimate` bytes long. In a cluster the
/// request is kept (counted against the budget) with the slot of `key`, to follow a MOVED or
/// ASK for that slot.
fn forward(
    proxy: &Proxy,
    (held, estimate, shard, resp3): (Option<&Rc<Held>>, usize, usize, bool),
    key: Option<&[u8]>,
    request: &Request,
    args: &[&[u8]],
    raw: &[u8],
) -> Pending {
    let upstream = proxy.upstream_for(shard, resp3);
    let encoded;
    let bytes = if request.inline {
        let mut inline = Vec::new();
        resp::encode_command(&mut inline, args.iter().copied());
        encoded = inline;
        &encoded[..]
    } else {
        raw
    };
    let slot = upstream.send(bytes, held, estimate);
    let resend = proxy.is_cluster().then(|| {
        let mut counted = flow::Counted::default();
        counted.set(bytes.len());
        redirect::Resend {
            request: bytes.to_vec(),
            slot: key.map(crate::shard::key_slot),
            _counted: counted,
        }
    });
    Pending::Forwarded {
        shard,
        slot,
        resend,
    }
}
