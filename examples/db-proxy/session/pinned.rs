//! Commands that need the upstream connection to be the client's own for a while:
//! transactions (MULTI, EXEC, DISCARD, WATCH, UNWATCH) and blocking commands (BLPOP, BLMOVE,
//! BZPOPMIN, XREAD BLOCK...).
//!
//! - **MULTI** is answered by the proxy, which then queues the client's commands itself
//!   (`+QUEUED`), checking each as redis-server would: an unknown command, a wrong argument
//!   count or a key in another slot (Redis Cluster's `CROSSSLOT`) is an error that makes EXEC
//!   answer `EXECABORT`. EXEC sends `MULTI`, the commands and `EXEC` to the transaction's
//!   shard in one piece, so no other client's command comes between them even on a shared
//!   connection, and the client gets EXEC's reply.
//! - **WATCH** pins a connection of the client's own to the watched keys' shard (the keys must
//!   share a slot); the transaction then runs on it, and EXEC, DISCARD, UNWATCH or RESET end
//!   the watch as redis-server does.
//! - **Blocking commands** run on a pinned connection to their keys' shard, so they never hold
//!   up other clients' requests on the shared one. The proxy waits for the command's own
//!   timeout (0: forever) plus the request timeout, and watches the client meanwhile: a client
//!   that leaves closes the pinned connection, so the upstream unblocks it and nothing is
//!   popped for nobody.
//!
//! Pinned connections are kept for the client's next pinned command and closed when it leaves
//! or sends RESET. `--max-pinned` bounds them across the process; past it, a command that
//! needs one gets an error.

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::command::{self, CommandName, LocalCmd, Route};
use crate::flow;
use crate::keys::Keys;
use crate::keys::CROSSSLOT;
use crate::resp;
use crate::upstream::{ReplySlot, Upstream};
use crate::{stats, Proxy};

use super::{error, unserved, Client, Pending};

/// Pinned connections open in the process.
static PINNED: AtomicUsize = AtomicUsize::new(0);

/// How many pinned connections are open (for INFO).
pub(crate) fn pinned_connections() -> usize {
    PINNED.load(Ordering::Relaxed)
}

/// Clients waiting in a blocking command now.
static BLOCKED: AtomicUsize = AtomicUsize::new(0);

/// How many clients wait in a blocking command (INFO's `blocked_clients`).
pub(crate) fn blocked_clients() -> usize {
    BLOCKED.load(Ordering::Relaxed)
}

/// One client waiting in a blocking command, counted while the guard lives.
pub(super) struct Blocked(());

impl Blocked {
    pub(super) fn new() -> Blocked {
        BLOCKED.fetch_add(1, Ordering::Relaxed);
        Blocked(())
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        BLOCKED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one more pinned connection; `false` (and not counted) if `max` are open.
pub(super) fn acquire(max: usize) -> bool {
    if PINNED.fetch_add(1, Ordering::Relaxed) >= max {
        PINNED.fetch_sub(1, Ordering::Relaxed);
        return false;
    }
    true
}

/// A pinned connection was closed.
pub(super) fn release() {
    PINNED.fetch_sub(1, Ordering::Relaxed);
}

/// A client's pinned connections and transaction state.
#[derive(Default)]
pub(super) struct Pins {
    /// Connections of the client's own, by node and protocol (RESP3 or not).
    conns: Vec<((usize, bool), Rc<Upstream>)>,
    /// The watched keys' group and node, while a WATCH is in force.
    watch: Option<(usize, usize)>,
    /// The connection that held the WATCH failed or was closed: the watch is lost, so EXEC
    /// must not run the transaction unprotected (it answers as if a watched key changed).
    broken: bool,
    /// The transaction being queued, after MULTI.
    tx: Option<Tx>,
}

/// A transaction being queued.
#[derive(Default)]
struct Tx {
    requests: Vec<Vec<u8>>,
    /// The group (shard, or cluster slot) of its keys so far.
    group: Option<usize>,
    /// An error was answered while queuing: EXEC answers EXECABORT.
    dirty: bool,
    /// The queued bytes, counted against the process budget.
    counted: flow::Counted,
    bytes: usize,
}

impl Pins {
    /// The client's own connection to `node`, opened (lazily) if it has none.
    fn conn(&mut self, proxy: &Proxy, key: (usize, bool)) -> Result<Rc<Upstream>, Pending> {
        let node = key.0;
        if let Some(i) = self.conns.iter().position(|(k, _)| *k == key) {
            if !self.conns[i].1.is_down() {
                return Ok(self.conns[i].1.clone());
            }
            self.release(i); // failed: replaced below
            if self.watch.is_some_and(|(_, n)| n == node) {
                self.broken = true;
            }
        }
        if !acquire(proxy.config.max_pinned) {
            stats::error();
            return Err(error(
                "ERR max number of pinned upstream connections reached (--max-pinned)",
            ));
        }
        let upstream = proxy.upstream_for(node, key.1).dedicated();
        self.conns.push((key, upstream.clone()));
        Ok(upstream)
    }

    fn release(&mut self, i: usize) {
        let (_, upstream) = self.conns.swap_remove(i);
        upstream.close();
        release();
    }

    /// Forgets the transaction and the watch and closes every pinned connection (RESET).
    pub(super) fn reset(&mut self) {
        self.tx = None;
        self.watch = None;
        self.broken = false;
        while !self.conns.is_empty() {
            self.release(0);
        }
    }

    /// Closes the pinned connection `upstream` (its request timed out, or its client left).
    pub(super) fn close(&mut self, upstream: &Rc<Upstream>) {
        if let Some(i) = self.conns.iter().position(|(_, u)| Rc::ptr_eq(u, upstream)) {
            let ((node, _), _) = self.conns[i];
            self.release(i);
            if self.watch.is_some_and(|(_, n)| n == node) {
                self.broken = true;
            }
        }
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        self.reset();
    }
}

/// Handles MULTI, EXEC, DISCARD, WATCH and UNWATCH, and every command while a transaction is
/// queued; `None` for the others, which the session routes.
pub(super) fn intercept(
    proxy: &Proxy,
    client: &mut Client,
    args: &[&[u8]],
    request: Raw,
) -> Option<Pending> {
    let name = CommandName::new(args[0])?;
    let in_tx = client.pins.tx.is_some();
    let pinning = matches!(
        name.as_bytes(),
        b"multi" | b"exec" | b"discard" | b"watch" | b"unwatch"
    );
    if proxy.config.embedded && pinning {
        return Some(plain_error(&embedded(name.as_bytes())));
    }
    let reply = match name.as_bytes() {
        b"multi" if args.len() != 1 => arity_error(client, "multi"),
        // Not a queuing error: the transaction goes on, as in redis-server.
        b"multi" if in_tx => plain_error("ERR MULTI calls can not be nested"),
        b"multi" => {
            client.pins.tx = Some(Tx::default());
            simple("OK")
        }
        // A rejected EXEC discards the transaction (redis-server's `execCommandAbort`).
        b"exec" if args.len() != 1 => {
            client.pins.tx = None;
            stats::error();
            let text = "EXECABORT Transaction discarded because of: wrong number of arguments \
                        for 'exec' command";
            end_watch(proxy, client, error(text))
        }
        b"exec" if !in_tx => tx_error(client, "ERR EXEC without MULTI"),
        b"exec" => exec(proxy, client),
        b"discard" if args.len() != 1 => arity_error(client, "discard"),
        b"discard" if !in_tx => tx_error(client, "ERR DISCARD without MULTI"),
        b"discard" => {
            client.pins.tx = None;
            end_watch(proxy, client, simple("OK"))
        }
        b"watch" if args.len() < 2 => arity_error(client, "watch"),
        b"watch" if in_tx => plain_error("ERR WATCH inside MULTI is not allowed"),
        b"watch" => watch(proxy, client, args, request),
        b"unwatch" if args.len() != 1 => arity_error(client, "unwatch"),
        b"unwatch" => end_watch(proxy, client, simple("OK")),
        // Handled at once, as redis-server does inside a transaction too.
        b"quit" | b"reset" => return None,
        _ if in_tx => queue(proxy, client, args, request),
        _ => return None,
    };
    Some(reply)
}

fn simple(text: &str) -> Pending {
    let mut out = Vec::new();
    resp::write_simple(&mut out, text);
    Pending::Ready(out)
}

/// An error answered while queuing makes EXEC fail, as redis-server's `flagTransaction`.
fn tx_error(client: &mut Client, text: &str) -> Pending {
    if let Some(tx) = &mut client.pins.tx {
        tx.dirty = true;
    }
    stats::error();
    error(text)
}

fn plain_error(text: &str) -> Pending {
    stats::error();
    error(text)
}

fn arity_error(client: &mut Client, name: &str) -> Pending {
    tx_error(client, &command::wrong_arity(name))
}

/// Checks one command for the transaction and queues it.
fn queue(proxy: &Proxy, client: &mut Client, args: &[&[u8]], request: Raw) -> Pending {
    let route = match command::classify(args) {
        Ok(route) => route,
        Err(text) => return tx_error(client, &text),
    };
    match route {
        Route::Local(LocalCmd::Ping | LocalCmd::Echo) => {}
        Route::Local(_) => {
            let name = command::sanitize(args[0]).to_ascii_lowercase();
            return tx_error(
                client,
                &format!("ERR command '{name}' is not supported inside MULTI by this proxy"),
            );
        }
        Route::Fanout(_) | Route::Scan if proxy.fanout_nodes().len() > 1 => {
            let name = command::sanitize(args[0]).to_ascii_lowercase();
            return tx_error(
                client,
                &format!(
                    "ERR command '{name}' is not supported inside MULTI by this proxy: it \
                     would span shards"
                ),
            );
        }
        _ => {}
    }
    let keys = command::key_positions(args).unwrap_or_default();
    let watched = client.pins.watch.map(|(group, _)| group);
    let mut group = client.pins.tx.as_ref().and_then(|tx| tx.group).or(watched);
    for &i in &keys {
        let key_group = proxy.group_of_key(args[i]);
        if *group.get_or_insert(key_group) != key_group {
            return tx_error(client, CROSSSLOT);
        }
    }
    let encoded = encoded(args, request);
    let tx = client.pins.tx.as_mut().expect("queue runs inside MULTI");
    tx.group = group;
    if tx.bytes + encoded.len() > proxy.config.query_buffer_limit {
        return tx_error(
            client,
            "ERR transaction exceeds --client-query-buffer-limit",
        );
    }
    tx.bytes += encoded.len();
    tx.counted.set(tx.bytes);
    tx.requests.push(encoded);
    simple("QUEUED")
}

const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";
const UNWATCH: &[u8] = b"*1\r\n$7\r\nUNWATCH\r\n";

/// EXEC: the queued transaction, sent whole to its shard.
fn exec(proxy: &Proxy, client: &mut Client) -> Pending {
    let tx = client.pins.tx.take().expect("exec runs inside MULTI");
    if tx.dirty {
        stats::error();
        let aborted = error("EXECABORT Transaction discarded because of previous errors.");
        return end_watch(proxy, client, aborted);
    }
    if client.pins.watch.is_some() && std::mem::take(&mut client.pins.broken) {
        // The watch was lost with its connection: answer as redis-server does when a watched
        // key changed (a null array), rather than run the transaction unprotected.
        client.pins.watch = None;
        let null: &[u8] = if client.resp3 { b"_\r\n" } else { b"*-1\r\n" };
        return Pending::Ready(null.to_vec());
    }
    let (upstream, dedicated) = match client.pins.watch.take() {
        Some((_, node)) => match client.pins.conn(proxy, (node, client.resp3)) {
            Ok(upstream) => (upstream, true),
            Err(refused) => return refused,
        },
        None if tx.requests.is_empty() => return Pending::Ready(b"*0\r\n".to_vec()),
        None => {
            let node = match tx.group {
                Some(group) => proxy.node_of_group(group),
                None => proxy.fanout_nodes().first().copied(),
            };
            match node {
                Some(node) => (proxy.upstream_for(node, client.resp3), false),
                None => return unserved(),
            }
        }
    };
    let mut requests = Vec::with_capacity(tx.requests.len() + 2);
    requests.push(MULTI.to_vec());
    requests.extend(tx.requests);
    requests.push(EXEC.to_vec());
    Pending::Exclusive(Exclusive {
        upstream,
        requests,
        timeout: Some(proxy.config.upstream.request_timeout),
        dedicated,
        blocking: false,
        answer: None,
    })
}

/// Ends a WATCH in force: UNWATCH on its pinned connection, in its turn, with `reply` for
/// the client instead of UNWATCH's own; just `reply` when no WATCH is in force.
fn end_watch(proxy: &Proxy, client: &mut Client, reply: Pending) -> Pending {
    let Some((_, node)) = client.pins.watch.take() else {
        return reply;
    };
    client.pins.broken = false;
    let Pending::Ready(answer) = reply else {
        return reply;
    };
    match client.pins.conn(proxy, (node, client.resp3)) {
        Ok(upstream) => Pending::Exclusive(Exclusive {
            upstream,
            requests: vec![UNWATCH.to_vec()],
            timeout: Some(proxy.config.upstream.request_timeout),
            dedicated: true,
            blocking: false,
            answer: Some(answer),
        }),
        Err(_) => Pending::Ready(answer),
    }
}

/// WATCH: on a pinned connection to the keys' shard; every watched key must share a slot.
fn watch(proxy: &Proxy, client: &mut Client, args: &[&[u8]], request: Raw) -> Pending {
    let group = proxy.group_of_key(args[1]);
    let current = client.pins.watch.map(|(g, _)| g);
    if args[1..].iter().any(|key| proxy.group_of_key(key) != group)
        || current.is_some_and(|g| g != group)
    {
        stats::error();
        return error(CROSSSLOT);
    }
    let Some(node) = proxy.node_of_key(args[1]) else {
        return unserved();
    };
    let upstream = match client.pins.conn(proxy, (node, client.resp3)) {
        Ok(upstream) => upstream,
        Err(refused) => return refused,
    };
    client.pins.watch = Some((group, node));
    Pending::Exclusive(Exclusive {
        upstream,
        requests: vec![encoded(args, request)],
        timeout: Some(proxy.config.upstream.request_timeout),
        dedicated: true,
        blocking: false,
        answer: None,
    })
}

/// The refusal of transactions and blocking commands by the embedded backends.
fn embedded(name: &[u8]) -> String {
    format!(
        "ERR command '{}' is not supported by db-proxy's embedded backends; run it with \
         --upstream or --cluster",
        command::sanitize(name).to_ascii_lowercase()
    )
}

/// A blocking command, on a pinned connection to its keys' shard.
pub(super) fn blocking(
    proxy: &Proxy,
    client: &mut Client,
    keys: Keys,
    args: &[&[u8]],
    request: Raw,
) -> Pending {
    if proxy.config.embedded {
        return plain_error(&embedded(args[0]));
    }
    let node = match proxy.same_slot_node(&keys, args) {
        Ok(Some((node, _))) => node,
        Ok(None) => return unserved(),
        Err(()) => {
            stats::error();
            return error(CROSSSLOT);
        }
    };
    let upstream = match client.pins.conn(proxy, (node, client.resp3)) {
        Ok(upstream) => upstream,
        Err(refused) => return refused,
    };
    let request_timeout = proxy.config.upstream.request_timeout;
    let timeout = match block_timeout(args) {
        Some(Duration::ZERO) => None, // 0 blocks forever
        // Past what a Duration holds: as good as forever.
        Some(timeout) => timeout.checked_add(request_timeout),
        None => Some(request_timeout),
    };
    Pending::Exclusive(Exclusive {
        upstream,
        requests: vec![encoded(args, request)],
        timeout,
        dedicated: true,
        blocking: true,
        answer: None,
    })
}

/// How long a blocking command may block: its timeout argument (seconds; XREAD's BLOCK in
/// milliseconds); `None` when it is not a valid timeout (the upstream answers the error).
fn block_timeout(args: &[&[u8]]) -> Option<Duration> {
    let name = args[0].to_ascii_lowercase();
    let (arg, unit) = match &name[..] {
        b"blmpop" | b"bzmpop" => (*args.get(1)?, 1.0),
        b"xread" | b"xreadgroup" => (command::xread_block(args)?, 0.001),
        _ => (*args.last()?, 1.0),
    };
    let seconds: f64 = std::str::from_utf8(arg).ok()?.parse().ok()?;
    if !(seconds.is_finite() && seconds >= 0.0) {
        return None;
    }
    // A timeout too large for a Duration is as good as forever (0), not a panic.
    Some(Duration::try_from_secs_f64(seconds * unit).unwrap_or(Duration::ZERO))
}

/// A request's bytes as the client sent them, and whether they are an inline command.
pub(super) type Raw<'a> = (&'a [u8], bool);

/// The request as multibulk (an inline request re-encoded).
fn encoded(args: &[&[u8]], (request, inline): Raw) -> Vec<u8> {
    if !inline {
        return request.to_vec();
    }
    let mut out = Vec::new();
    resp::encode_command(&mut out, args.iter().copied());
    out
}

/// Requests sent as one piece when their turn comes (after every earlier request of the
/// client has its reply, so nothing of the client's is reordered across connections): a
/// transaction's MULTI, commands and EXEC; a blocking command; WATCH; UNWATCH. The client gets
/// the last reply, or `answer` instead when it is set and nothing failed.
pub(crate) struct Exclusive {
    pub(super) upstream: Rc<Upstream>,
    pub(super) requests: Vec<Vec<u8>>,
    /// How long the last reply may take once sent (none: as long as the client stays).
    pub(super) timeout: Option<Duration>,
    /// On a connection pinned to the client.
    pub(super) dedicated: bool,
    /// A blocking command: the client is watched while it waits.
    pub(super) blocking: bool,
    pub(super) answer: Option<Vec<u8>>,
}

/// Waits for every reply of an exclusive request and returns the last one (EXEC's, after
/// MULTI's `+OK` and the `+QUEUED`s); an error if a request failed on the way.
pub(super) async fn last_reply(slots: &[Rc<ReplySlot>]) -> crate::upstream::Reply {
    let mut last = Err("ERR no reply".to_owned());
    for slot in slots {
        last = slot.wait().await;
        if last.is_err() {
            break;
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_timeouts_are_read_where_each_command_has_them() {
        let t = |line: &str| {
            let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
            block_timeout(&args)
        };
        assert_eq!(t("BLPOP a b 1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(t("BLPOP a 0"), Some(Duration::ZERO));
        assert_eq!(t("BLMPOP 2 1 a LEFT"), Some(Duration::from_secs(2)));
        assert_eq!(
            t("XREAD COUNT 1 BLOCK 250 STREAMS s $"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(t("BLPOP a x"), None);
        assert_eq!(t("BLPOP a -1"), None);
        assert_eq!(t("BRPOP a inf"), None);
    }
}
