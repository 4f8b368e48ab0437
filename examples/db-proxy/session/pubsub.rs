//! A client in subscribed mode: SUBSCRIBE, PSUBSCRIBE and SSUBSCRIBE, with the messages
//! published through any client relayed to it.
//!
//! A session enters this mode at its first subscribe command and leaves it when it has no
//! subscription left (RESP2's rule), or closes. The proxy keeps one subscriber connection per
//! shard it needs, pinned to the client (counted in `--max-pinned`):
//! - a channel is subscribed on the shard its name hashes to, where PUBLISH sends it (PUBLISH
//!   and SPUBLISH route by the channel as by a key); SSUBSCRIBE likewise;
//! - a pattern can match a channel of any shard: it is subscribed on every shard. In a Redis
//!   Cluster, where every node sees every PUBLISH, one node is enough, so a pattern goes to
//!   the first master only (and no message comes twice).
//!
//! Confirmations (`subscribe`, `unsubscribe`...) are written in the order of the client's
//! commands with the counts the client would get from one redis-server (its channels and
//! patterns in all; its shard channels for SSUBSCRIBE), whichever shard answered first.
//! Messages are relayed as the upstream sent them. As in redis-server's subscribed mode, only
//! the (P|S)(UN)SUBSCRIBE commands, PING, QUIT and RESET are accepted.
//!
//! If a subscriber connection fails, the client is closed: its subscriptions are gone, and a
//! client library reconnects and subscribes again (a silent loss of messages would be worse).
//! A client that does not read is closed past 32 MiB of messages held for it, as redis-server's
//! default `client-output-buffer-limit pubsub 32mb`.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::poll_fn;
use std::net::Shutdown;
use std::rc::Rc;
use std::task::{Poll, Waker};

use corio::net::TcpStream;
use corio::rt::{spawn, time};
use futures_util::future::{select, Either};

use super::input::Input;
use super::output::flush;
use super::pinned;
use crate::resp::{self, Parsed};
use crate::{command, stats, Proxy};

/// Messages held for a client that does not read, past which it is closed.
const HELD_LIMIT: usize = 32 << 20;
/// The deepest reply nesting accepted from a subscriber connection.
const MAX_DEPTH: usize = 8;

/// How a subscribed session ended.
pub(super) enum End {
    /// No subscription left: back to ordinary commands.
    Unsubscribed,
    /// Close the client (QUIT, it left, a write stalled, a subscriber connection failed).
    Close,
}

/// What a session left subscribed mode with: `RESET` was among the commands.
pub(super) struct Reset(pub(super) bool);

/// Serves the client in subscribed mode, starting with the command `first`.
pub(super) async fn serve(
    proxy: &Proxy,
    stream: &TcpStream,
    input: &mut Input,
    first: Vec<Vec<u8>>,
    resp3: bool,
) -> (End, Reset) {
    let mut sub = Subscriber::default();
    sub.resp3 = resp3;
    let mut output = Vec::new();
    let first: Vec<&[u8]> = first.iter().map(Vec::as_slice).collect();
    if sub.command(proxy, &first, &mut output).await.is_err() {
        return (End::Close, Reset(false));
    }
    let end = loop {
        if let Some(why) = sub.inbox.borrow_mut().failed.take() {
            eprintln!("db-proxy: closing a subscriber: {why}");
            break End::Close;
        }
        sub.take_inbox();
        sub.flush_ready(&mut output);
        if sub.held > HELD_LIMIT {
            break End::Close; // messages pile up behind a confirmation that never came
        }
        if flush(proxy, stream, &mut output).await.is_err() {
            break End::Close;
        }
        if sub.done() {
            break End::Unsubscribed;
        }
        // Commands the client has sent, in order.
        // Once no subscription is wanted, the commands after wait for subscribed mode to end
        // (they are ordinary commands then, as in redis-server).
        let mut consumed = 0;
        let mut stop = None;
        while stop.is_none() && !sub.wants_nothing() {
            let parsed = resp::parse_request(&input.buf[consumed..], &proxy.limits);
            match parsed {
                Ok(Parsed::Complete {
                    request,
                    consumed: len,
                }) => {
                    let buf = &input.buf[consumed..];
                    let args: Vec<&[u8]> = request.args(buf).collect();
                    let ends = args.first().is_some_and(|name| {
                        name.eq_ignore_ascii_case(b"quit") || name.eq_ignore_ascii_case(b"reset")
                    });
                    if ends && !sub.pending.is_empty() {
                        // QUIT and RESET wait for the confirmations still due, so the client
                        // gets every reply before theirs.
                        break;
                    }
                    consumed += len;
                    if args.is_empty() {
                        continue;
                    }
                    stats::request();
                    match sub.command(proxy, &args, &mut output).await {
                        Ok(None) => {}
                        Ok(Some(end)) => stop = Some(end),
                        Err(()) => stop = Some((End::Close, Reset(false))),
                    }
                }
                Ok(Parsed::Incomplete { .. }) => break,
                Err(err) => {
                    resp::write_error(&mut output, &format!("ERR {err}"));
                    stop = Some((End::Close, Reset(false)));
                }
            }
        }
        input.buf.drain(..consumed);
        if let Some((end, reset)) = stop {
            sub.flush_ready(&mut output);
            if let Some(fatal) = sub.fatal.take() {
                output.extend_from_slice(&fatal);
            }
            let _ = flush(proxy, stream, &mut output).await;
            sub.close_all();
            return (end, reset);
        }
        if sub.front_ready() {
            continue; // replies to write
        }
        if input.buf.len() > proxy.config.query_buffer_limit {
            break End::Close;
        }
        // Wait for a message from a shard or a command from the client.
        let inbox = sub.inbox.clone();
        let message = poll_fn(|cx| {
            let mut inbox = inbox.borrow_mut();
            if inbox.frames.is_empty() && inbox.failed.is_none() {
                inbox.waker = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        });
        let read = stream.read(Vec::with_capacity(16 * 1024));
        match select(std::pin::pin!(message), read).await {
            Either::Left(((), _)) => {}
            Either::Right(((Ok(n), buf), _)) if n > 0 => input.buf.extend_from_slice(&buf[..n]),
            Either::Right(_) => break End::Close,
        }
    };
    sub.close_all();
    (end, Reset(false))
}

/// One reply to write, in order.
enum Out {
    Ready(Vec<u8>),
    /// A (un)subscribe confirmation, written once every shard it went to has confirmed.
    Confirm {
        kind: Kind,
        channel: Option<Vec<u8>>,
        waiting: usize,
    },
}

/// What a confirmation confirms.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Subscribe,
    Unsubscribe,
    Psubscribe,
    Punsubscribe,
    Ssubscribe,
    Sunsubscribe,
}

impl Kind {
    fn name(self) -> &'static [u8] {
        match self {
            Kind::Subscribe => b"subscribe",
            Kind::Unsubscribe => b"unsubscribe",
            Kind::Psubscribe => b"psubscribe",
            Kind::Punsubscribe => b"punsubscribe",
            Kind::Ssubscribe => b"ssubscribe",
            Kind::Sunsubscribe => b"sunsubscribe",
        }
    }

    fn of(name: &[u8]) -> Option<Kind> {
        Some(match &name.to_ascii_lowercase()[..] {
            b"subscribe" => Kind::Subscribe,
            b"unsubscribe" => Kind::Unsubscribe,
            b"psubscribe" => Kind::Psubscribe,
            b"punsubscribe" => Kind::Punsubscribe,
            b"ssubscribe" => Kind::Ssubscribe,
            b"sunsubscribe" => Kind::Sunsubscribe,
            _ => return None,
        })
    }
}

/// Frames read from the subscriber connections, by node.
#[derive(Default)]
struct Inbox {
    frames: VecDeque<(usize, Vec<u8>)>,
    bytes: usize,
    failed: Option<String>,
    waker: Option<Waker>,
}

/// One subscriber connection.
struct SubConn {
    stream: Rc<TcpStream>,
}

#[derive(Default)]
struct Subscriber {
    conns: HashMap<usize, SubConn>,
    inbox: Rc<RefCell<Inbox>>,
    /// Replies in the client's order; `base` is the number already written.
    pending: VecDeque<Out>,
    base: usize,
    /// Per node, the positions (counted from the first reply) of the confirmations it owes.
    owed: HashMap<usize, VecDeque<usize>>,
    /// Subscriptions as the client has asked for them, with the nodes each went to.
    want: [HashMap<Vec<u8>, Vec<usize>>; 3],
    /// Subscriptions confirmed to the client (for the counts).
    confirmed: [HashSet<Vec<u8>>; 3],
    /// A RESP3 client: confirmations are push messages, PING answers `+PONG`, and the
    /// subscriber connections speak RESP3 (their messages come as pushes).
    resp3: bool,
    /// Bytes of messages in `pending`.
    held: usize,
    /// The error the client gets before it is closed (no pinned connection was left).
    fatal: Option<Vec<u8>>,
}

/// Index of channels, patterns and shard channels in `want` and `confirmed`.
const CHANNELS: usize = 0;
const PATTERNS: usize = 1;
const SHARD: usize = 2;

impl Subscriber {
    /// Runs one client command in subscribed mode; `Some` when the mode ends with it.
    async fn command(
        &mut self,
        proxy: &Proxy,
        args: &[&[u8]],
        output: &mut Vec<u8>,
    ) -> Result<Option<(End, Reset)>, ()> {
        let name = args[0].to_ascii_lowercase();
        let Some(kind) = Kind::of(&name) else {
            let mut out = Vec::new();
            match &name[..] {
                b"ping" if self.resp3 && args.len() == 1 => resp::write_simple(&mut out, "PONG"),
                b"ping" if self.resp3 && args.len() == 2 => resp::write_bulk(&mut out, args[1]),
                b"ping" if args.len() <= 2 => {
                    resp::write_array_len(&mut out, 2);
                    resp::write_bulk(&mut out, b"pong");
                    resp::write_bulk(&mut out, args.get(1).copied().unwrap_or_default());
                }
                b"ping" => resp::write_error(&mut out, &command::wrong_arity("ping")),
                b"quit" => {
                    self.flush_ready(output);
                    resp::write_simple(output, "OK");
                    return Ok(Some((End::Close, Reset(false))));
                }
                b"reset" => {
                    // Unsubscribed from everything, and the client's state as new.
                    self.flush_ready(output);
                    resp::write_simple(output, "RESET");
                    return Ok(Some((End::Unsubscribed, Reset(true))));
                }
                _ => {
                    stats::error();
                    resp::write_error(
                        &mut out,
                        &format!(
                            "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / \
                             PING / QUIT / RESET are allowed in this context",
                            command::sanitize(&name)
                        ),
                    );
                }
            }
            self.pending.push_back(Out::Ready(out));
            return Ok(None);
        };
        let subscribing = matches!(kind, Kind::Subscribe | Kind::Psubscribe | Kind::Ssubscribe);
        if subscribing && args.len() < 2 {
            stats::error();
            let mut out = Vec::new();
            resp::write_error(
                &mut out,
                &command::wrong_arity(&String::from_utf8_lossy(&name)),
            );
            self.pending.push_back(Out::Ready(out));
            return Ok(None);
        }
        let set = set_of(kind);
        // The names: those given, or for an unsubscribe without any, every one subscribed.
        let names: Vec<Vec<u8>> = if args.len() > 1 {
            args[1..].iter().map(|a| a.to_vec()).collect()
        } else {
            self.want[set].keys().cloned().collect()
        };
        if names.is_empty() {
            // Nothing to unsubscribe from: redis-server answers with a nil name.
            self.pending.push_back(Out::Confirm {
                kind,
                channel: None,
                waiting: 0,
            });
            return Ok(None);
        }
        // Requests per node, in order.
        let mut requests: Vec<(usize, Vec<&[u8]>)> = Vec::new();
        for name in &names {
            let nodes = if subscribing {
                let nodes = match self.want[set].get(name) {
                    Some(nodes) => nodes.clone(),
                    None => targets(proxy, set, name).ok_or(())?,
                };
                self.want[set].insert(name.clone(), nodes.clone());
                nodes
            } else {
                // Only where it was subscribed (a channel never subscribed is confirmed
                // by the proxy, as redis-server confirms it).
                self.want[set].remove(name).unwrap_or_default()
            };
            let position = self.base + self.pending.len();
            self.pending.push_back(Out::Confirm {
                kind,
                channel: Some(name.clone()),
                waiting: nodes.len(),
            });
            for node in nodes {
                self.owed.entry(node).or_default().push_back(position);
                // Shard channels one per command: a cluster node refuses shard channels of
                // several slots in one SSUBSCRIBE (CROSSSLOT).
                match requests
                    .iter_mut()
                    .find(|(n, _)| *n == node && set != SHARD)
                {
                    Some((_, names)) => names.push(name),
                    None => requests.push((node, vec![name])),
                }
            }
        }
        for (node, names) in requests {
            let mut request = Vec::new();
            let mut command = vec![kind.name()];
            command.extend(names);
            resp::encode_command(&mut request, command);
            self.send(proxy, node, request).await?;
        }
        Ok(None)
    }

    /// Writes `request` on the subscriber connection to `node`, connecting it first.
    async fn send(&mut self, proxy: &Proxy, node: usize, request: Vec<u8>) -> Result<(), ()> {
        if !self.conns.contains_key(&node) {
            if !pinned::acquire(proxy.config.max_pinned) {
                let mut out = Vec::new();
                resp::write_error(
                    &mut out,
                    "ERR max number of pinned upstream connections reached (--max-pinned)",
                );
                self.fatal = Some(out);
                return Err(());
            }
            let stream = match proxy.upstream_for(node, self.resp3).connect().await {
                Ok(stream) => Rc::new(stream),
                Err(err) => {
                    pinned::release();
                    eprintln!("db-proxy: subscriber connection to node {node}: {err}");
                    return Err(());
                }
            };
            spawn(read_frames(node, stream.clone(), self.inbox.clone())).detach();
            self.conns.insert(node, SubConn { stream });
        }
        let stream = self.conns[&node].stream.clone();
        let timeout = proxy.config.upstream.request_timeout;
        match time::timeout(timeout, stream.write_all(request)).await {
            Ok((Ok(()), _)) => Ok(()),
            _ => Err(()),
        }
    }

    /// Moves what the subscriber connections read into the reply order: messages at the
    /// back, confirmations to the command they confirm.
    fn take_inbox(&mut self) {
        let frames = {
            let mut inbox = self.inbox.borrow_mut();
            inbox.bytes = 0;
            std::mem::take(&mut inbox.frames)
        };
        for (node, frame) in frames {
            let kind = head(&frame).and_then(Kind::of);
            if kind.is_none() && frame.first() != Some(&b'-') {
                self.held += frame.len();
                self.pending.push_back(Out::Ready(frame)); // a message
                continue;
            }
            let owed = self.owed.get_mut(&node).and_then(VecDeque::pop_front);
            let at = owed.and_then(|p| p.checked_sub(self.base));
            let Some(entry) = at.and_then(|at| self.pending.get_mut(at)) else {
                continue; // not owed (a shard's own unsubscribe after a slot moved)
            };
            match (kind, &mut *entry) {
                (Some(_), Out::Confirm { waiting, .. }) => *waiting = waiting.saturating_sub(1),
                // The shard refused the subscription (CROSSSLOT...): the client gets the
                // error in its place, and is not subscribed.
                (None, Out::Confirm { kind, channel, .. }) => {
                    if let Some(name) = channel {
                        self.want[set_of(*kind)].remove(name.as_slice());
                    }
                    *entry = Out::Ready(frame);
                }
                _ => {}
            }
        }
    }

    /// Writes the replies at the front whose confirmations are all in.
    fn flush_ready(&mut self, output: &mut Vec<u8>) {
        while let Some(front) = self.pending.front() {
            match front {
                Out::Confirm { waiting, .. } if *waiting > 0 => break,
                _ => {}
            }
            self.base += 1;
            match self.pending.pop_front().expect("front exists") {
                Out::Ready(bytes) => {
                    self.held = self.held.saturating_sub(bytes.len());
                    output.extend_from_slice(&bytes)
                }
                Out::Confirm { kind, channel, .. } => {
                    let set = set_of(kind);
                    if let Some(name) = &channel {
                        match kind {
                            Kind::Subscribe | Kind::Psubscribe | Kind::Ssubscribe => {
                                self.confirmed[set].insert(name.clone());
                            }
                            _ => {
                                self.confirmed[set].remove(name);
                            }
                        }
                    }
                    let count = if set == SHARD {
                        self.confirmed[SHARD].len()
                    } else {
                        self.confirmed[CHANNELS].len() + self.confirmed[PATTERNS].len()
                    };
                    if self.resp3 {
                        output.extend_from_slice(b">3\r\n");
                    } else {
                        resp::write_array_len(output, 3);
                    }
                    resp::write_bulk(output, kind.name());
                    match &channel {
                        Some(name) => resp::write_bulk(output, name),
                        None => resp::write_null(output),
                    }
                    resp::write_integer(output, count as i64);
                }
            }
        }
    }

    /// Whether the next reply can be written.
    fn front_ready(&self) -> bool {
        match self.pending.front() {
            Some(Out::Confirm { waiting, .. }) => *waiting == 0,
            Some(Out::Ready(_)) => true,
            None => false,
        }
    }

    /// Whether the client's commands have left it no subscription.
    fn wants_nothing(&self) -> bool {
        self.want.iter().all(HashMap::is_empty)
    }

    /// Whether the client has no subscription left and nothing is owed to it.
    fn done(&self) -> bool {
        self.pending.is_empty()
            && self.want.iter().all(HashMap::is_empty)
            && self.confirmed.iter().all(HashSet::is_empty)
    }

    fn close_all(&mut self) {
        for (_, conn) in self.conns.drain() {
            let _ = conn.stream.shutdown(Shutdown::Both);
            pinned::release();
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.close_all();
    }
}

/// Which set of subscriptions a command changes: channels, patterns or shard channels.
fn set_of(kind: Kind) -> usize {
    match kind {
        Kind::Subscribe | Kind::Unsubscribe => CHANNELS,
        Kind::Psubscribe | Kind::Punsubscribe => PATTERNS,
        Kind::Ssubscribe | Kind::Sunsubscribe => SHARD,
    }
}

/// Where a subscription goes: a channel to its shard (where PUBLISH sends it), a pattern to
/// every shard (one node of a cluster, which sees every PUBLISH).
fn targets(proxy: &Proxy, set: usize, name: &[u8]) -> Option<Vec<usize>> {
    if set == PATTERNS {
        let mut nodes = proxy.fanout_nodes();
        if proxy.is_cluster() {
            nodes.truncate(1);
        }
        return (!nodes.is_empty()).then_some(nodes);
    }
    proxy.node_of_key(name).map(|node| vec![node])
}

/// The first element of a push frame (`*3\r\n$7\r\nmessage\r\n...`, or `>3...` in RESP3):
/// its kind.
fn head(frame: &[u8]) -> Option<&[u8]> {
    let rest = frame
        .strip_prefix(b"*")
        .or_else(|| frame.strip_prefix(b">"))?;
    let line = rest.iter().position(|&b| b == b'\r')?;
    let rest = rest.get(line + 2..)?.strip_prefix(b"$")?;
    let line = rest.iter().position(|&b| b == b'\r')?;
    let len: usize = std::str::from_utf8(&rest[..line]).ok()?.parse().ok()?;
    rest.get(line + 2..line + 2 + len)
}

/// Reads frames from one subscriber connection into `inbox` until it closes.
async fn read_frames(node: usize, stream: Rc<TcpStream>, inbox: Rc<RefCell<Inbox>>) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let why = loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(buf.len().max(16 * 1024));
        }
        let (res, back) = stream.read(buf).await;
        buf = back;
        match res {
            Ok(0) => break "connection closed by upstream".to_owned(),
            Ok(_) => {}
            Err(err) => break format!("read failed: {err}"),
        }
        let mut start = 0;
        let mut inbox_ref = inbox.borrow_mut();
        loop {
            match resp::scan_reply(&buf[start..], MAX_DEPTH) {
                Ok(Some(len)) => {
                    inbox_ref.bytes += len;
                    inbox_ref
                        .frames
                        .push_back((node, buf[start..start + len].to_vec()));
                    start += len;
                }
                Ok(None) => break,
                Err(err) => {
                    inbox_ref.failed = Some(format!("bad reply from upstream: {err}"));
                    break;
                }
            }
        }
        if inbox_ref.bytes > HELD_LIMIT {
            inbox_ref.failed = Some("client output buffer limit reached (pubsub 32 MiB)".into());
        }
        if let Some(waker) = inbox_ref.waker.take() {
            waker.wake();
        }
        let failed = inbox_ref.failed.is_some();
        drop(inbox_ref);
        buf.drain(..start);
        if failed {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    };
    let mut inbox = inbox.borrow_mut();
    // A connection the proxy closed itself is not a failure.
    if Rc::strong_count(&stream) > 1 {
        inbox.failed.get_or_insert(why);
    }
    if let Some(waker) = inbox.waker.take() {
        waker.wake();
    }
}
