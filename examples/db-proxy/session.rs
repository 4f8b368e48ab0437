//! One client session: read requests, route each to its shard, answer strictly in order.
//!
//! The session parses every complete request in what it has read (up to `max_pending` at a
//! time), queues each on its upstream connection (so a pipeline reaches each shard as one
//! batch), then awaits the replies in request order and writes them back in one write. A
//! protocol error is answered like redis-server does and ends the session; any other bad
//! request gets an error reply and the session goes on. Nothing here can disturb another
//! session: an upstream failure or timeout becomes an error reply for the requests it affects.

use std::collections::VecDeque;
use std::net::Shutdown;
use std::rc::Rc;
use std::time::Instant;

use corio::net::TcpStream;
use corio::rt::time;

use crate::command::{self, FanoutCmd, LocalCmd, MultiKind, Route};
use crate::multikey::{self, Part};
use crate::resp::{self, Parsed, Request};
use crate::upstream::{Reply, ReplySlot};
use crate::{shutdown, stats, Proxy};

/// A request's place in the reply order.
enum Pending {
    /// The proxy's own reply, already encoded.
    Ready(Vec<u8>),
    /// Forwarded whole to one shard.
    Forwarded { shard: usize, slot: Rc<ReplySlot> },
    /// INFO: every core's counters, gathered when its turn comes; the sections asked for
    /// (lowercase; empty for the default set).
    Info(Vec<String>),
    /// Split across shards; merged when every part has replied.
    Split {
        kind: MultiKind,
        nkeys: usize,
        parts: Vec<(Part, Rc<ReplySlot>)>,
    },
}

/// Per-client state that commands may change.
#[derive(Default)]
struct Client {
    name: Option<Vec<u8>>,
    closing: bool,
    /// Whether the client may run commands (always, unless `--requirepass` is set).
    authenticated: bool,
}

/// Serves one client until it disconnects, sends QUIT, or breaks the protocol.
pub(crate) async fn serve(stream: TcpStream, proxy: Rc<Proxy>) {
    let mut client = Client {
        authenticated: proxy.config.requirepass.is_none(),
        ..Client::default()
    };
    let mut input: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut output: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut need = 0;
    // The parse of the request at the front of `input`, kept between reads.
    let mut partial = resp::Partial::default();
    loop {
        let mut full = false;
        if input.len() >= need {
            let consumed;
            (consumed, need, full) =
                parse_batch(&input, &proxy, &mut client, &mut queue, &mut partial);
            input.drain(..consumed);
            need = need.saturating_sub(consumed);
        }
        if !queue.is_empty() {
            let _busy = shutdown::busy();
            answer(&proxy, &mut queue, &mut output).await;
            // A client that does not read its replies stalls this write once the socket's
            // buffers are full; past the timeout it is disconnected (its replies, at most
            // `max_pending` of them, are all this session ever buffers).
            let write = stream.write_all(std::mem::take(&mut output));
            match time::timeout(proxy.config.client_write_timeout, write).await {
                Ok((Ok(()), back)) => output = back,
                Ok((Err(_), _)) | Err(_) => break,
            }
            output.clear();
        }
        if client.closing || shutdown::draining() {
            break;
        }
        if full {
            continue; // more complete requests may wait in `input`
        }
        // Refused as soon as the request is known to be too big (a length line says so), not
        // after buffering all of it.
        if input.len() >= proxy.config.max_request_bytes || need > proxy.config.max_request_bytes {
            let mut out = Vec::new();
            resp::write_error(
                &mut out,
                "ERR Protocol error: request exceeds max-request-size",
            );
            let _ = stream.write_all(out).await;
            break;
        }
        // Grow by what has arrived, never by what a length line claims.
        if input.capacity() - input.len() < 4096 {
            input.reserve(input.len().clamp(16 * 1024, 1 << 20));
        }
        let read = stream.read(input);
        let (res, back) = match proxy.config.client_idle_timeout {
            None => read.await,
            Some(idle) => match time::timeout(idle, read).await {
                Ok(done) => done,
                Err(_) => break, // idle too long: close, as redis-server's `timeout` does
            },
        };
        input = back;
        match res {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Parses and dispatches the complete requests at the front of `input`.
///
/// Returns the bytes consumed, how long `input` must be before parsing again can make
/// progress, and whether the batch stopped at `max_pending` (more may be ready).
fn parse_batch(
    input: &[u8],
    proxy: &Proxy,
    client: &mut Client,
    queue: &mut VecDeque<Pending>,
    partial: &mut resp::Partial,
) -> (usize, usize, bool) {
    let mut start = 0;
    while !client.closing {
        if queue.len() >= proxy.config.max_pending {
            return (start, 0, true);
        }
        match resp::parse_request_resume(&input[start..], &proxy.limits, partial) {
            Ok(Parsed::Complete { request, consumed }) => {
                let buf = &input[start..];
                if let Some(pending) = dispatch(proxy, client, &request, buf, &buf[..consumed]) {
                    queue.push_back(pending);
                }
                start += consumed;
            }
            Ok(Parsed::Incomplete { need }) => return (start, start + need, false),
            Err(err) => {
                queue.push_back(error(&format!("ERR {err}")));
                stats::error();
                client.closing = true;
            }
        }
    }
    (start, 0, false)
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
    let route = match command::classify(&args) {
        Ok(route) => route,
        Err(text) => {
            stats::error();
            return Some(error(&text));
        }
    };
    Some(match route {
        Route::Single { key } => {
            let shard = proxy.shards.shard_of_key(args[key]);
            forward(proxy, shard, request, &args, raw)
        }
        Route::Multi { first, step, kind } => {
            let parts = multikey::split(&args, first, step, &proxy.shards);
            if let [part] = &parts[..] {
                forward(proxy, part.shard, request, &args, raw)
            } else {
                let nkeys = (args.len() - first) / step;
                let parts = parts
                    .into_iter()
                    .map(|part| {
                        let slot = proxy.upstreams[part.shard].send(&part.request);
                        (part, slot)
                    })
                    .collect();
                Pending::Split { kind, nkeys, parts }
            }
        }
        Route::Fanout(FanoutCmd::Dbsize) => {
            let mut request = Vec::new();
            resp::encode_command(&mut request, [&b"DBSIZE"[..]]);
            let parts = (0..proxy.upstreams.len())
                .map(|shard| {
                    let slot = proxy.upstreams[shard].send(&request);
                    let part = Part {
                        shard,
                        request: Vec::new(),
                        keys: Vec::new(),
                    };
                    (part, slot)
                })
                .collect();
            Pending::Split {
                kind: MultiKind::SumIntegers,
                nkeys: 0,
                parts,
            }
        }
        Route::Local(LocalCmd::Info) => Pending::Info(
            args[1..]
                .iter()
                .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
                .collect(),
        ),
        Route::Local(cmd) => {
            let out = local(proxy, client, cmd, &args);
            if out.first() == Some(&b'-') {
                stats::error();
            }
            Pending::Ready(out)
        }
    })
}

/// The commands a client may send before it has authenticated, as redis-server allows.
fn allowed_before_auth(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"auth") || name.eq_ignore_ascii_case(b"quit")
}

/// `AUTH [username] password` against `--requirepass` (user `default` only).
fn auth(proxy: &Proxy, client: &mut Client, out: &mut Vec<u8>, args: &[&[u8]]) {
    let Some(expected) = &proxy.config.requirepass else {
        return resp::write_error(
            out,
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        );
    };
    let given = match args {
        [_, password] => password,
        [_, user, password] if user.eq_ignore_ascii_case(b"default") => password,
        [_, _, _] => &&b""[..], // any other user cannot match
        _ => return resp::write_error(out, "ERR syntax error"),
    };
    if *given == expected.as_bytes() && !expected.is_empty() {
        client.authenticated = true;
        resp::write_simple(out, "OK");
    } else {
        resp::write_error(
            out,
            "WRONGPASS invalid username-password pair or user is disabled.",
        );
    }
}

/// Sends a request whole to `shard`, re-encoding inline commands as multibulk.
fn forward(proxy: &Proxy, shard: usize, request: &Request, args: &[&[u8]], raw: &[u8]) -> Pending {
    let upstream = &proxy.upstreams[shard];
    let slot = if request.inline {
        let mut encoded = Vec::new();
        resp::encode_command(&mut encoded, args.iter().copied());
        upstream.send(&encoded)
    } else {
        upstream.send(raw)
    };
    Pending::Forwarded { shard, slot }
}

/// Waits for every queued reply, in order, and appends them to `output`.
async fn answer(proxy: &Proxy, queue: &mut VecDeque<Pending>, output: &mut Vec<u8>) {
    let deadline = Instant::now() + proxy.config.upstream.request_timeout;
    while let Some(pending) = queue.pop_front() {
        match pending {
            Pending::Ready(bytes) => output.extend_from_slice(&bytes),
            Pending::Info(sections) => {
                let cores = corio::mesh::run_on_all(|core| async move { stats::snapshot(core) });
                match cores.await {
                    Ok(cores) => {
                        let text = info_sections(&proxy.info(&cores), &sections);
                        resp::write_bulk(output, text.as_bytes())
                    }
                    Err(err) => resp::write_error(output, &format!("ERR INFO: {err}")),
                }
            }
            Pending::Forwarded { shard, slot } => {
                let reply = wait(proxy, shard, &slot, deadline).await;
                write_reply(output, reply);
            }
            Pending::Split { kind, nkeys, parts } => {
                let mut replies = Vec::with_capacity(parts.len());
                for (part, slot) in &parts {
                    replies.push(wait(proxy, part.shard, slot, deadline).await);
                }
                let parts: Vec<Part> = parts.into_iter().map(|(part, _)| part).collect();
                let merged = multikey::merge(kind, &parts, &replies, nkeys);
                if merged.first() == Some(&b'-') {
                    stats::error();
                }
                output.extend_from_slice(&merged);
            }
        }
    }
}

/// Waits for one reply until `deadline`; on timeout the shard's connection is reset, since
/// where later replies stand in its FIFO is no longer known.
async fn wait(proxy: &Proxy, shard: usize, slot: &ReplySlot, deadline: Instant) -> Reply {
    match time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        slot.wait(),
    )
    .await
    {
        Ok(reply) => reply,
        Err(_) => {
            let upstream = &proxy.upstreams[shard];
            let why = format!(
                "timed out after {} ms",
                proxy.config.upstream.request_timeout.as_millis()
            );
            // Other requests on the connection get "ERR upstream ADDR unavailable: <why>".
            upstream.abort(&why);
            Err(format!("ERR upstream {} {why}", upstream.addr))
        }
    }
}

fn write_reply(output: &mut Vec<u8>, reply: Reply) {
    match reply {
        Ok(bytes) => {
            // An upstream's error reply (WRONGTYPE, a non-integer INCR...) is an error the
            // client got, as redis-server's total_error_replies counts it.
            if bytes.first() == Some(&b'-') {
                stats::error();
            }
            output.extend_from_slice(&bytes)
        }
        Err(text) => {
            stats::error();
            resp::write_error(output, &text);
        }
    }
}

/// Answers the commands the proxy handles itself.
fn local(proxy: &Proxy, client: &mut Client, cmd: LocalCmd, args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    match cmd {
        LocalCmd::Ping => match args.get(1) {
            Some(message) => resp::write_bulk(&mut out, message),
            None => resp::write_simple(&mut out, "PONG"),
        },
        LocalCmd::Echo => resp::write_bulk(&mut out, args[1]),
        LocalCmd::Quit => {
            client.closing = true;
            resp::write_simple(&mut out, "OK");
        }
        LocalCmd::Command => command_command(&mut out, args),
        LocalCmd::Reset => {
            // As redis-server: no name, database 0, and unauthenticated again if a password
            // is required.
            client.name = None;
            client.authenticated = proxy.config.requirepass.is_none();
            resp::write_simple(&mut out, "RESET");
        }
        LocalCmd::Select => match resp::parse_i64(args[1]) {
            Some(0) => resp::write_simple(&mut out, "OK"),
            Some(_) => resp::write_error(&mut out, "ERR DB index is out of range"),
            None => resp::write_error(&mut out, "ERR value is not an integer or out of range"),
        },
        LocalCmd::Hello => hello(&mut out, args),
        LocalCmd::Client => client_command(&mut out, client, args),
        // Routed to `Pending::Info` by `dispatch`, which gathers every core's counters.
        LocalCmd::Info => resp::write_error(&mut out, "ERR INFO is answered after gathering"),
        LocalCmd::Auth => auth(proxy, client, &mut out, args),
    }
    out
}

/// The `# Section` blocks of an INFO text that `sections` names (any case); all of them when
/// `sections` is empty or names `all`, `everything` or `default`, as redis-server does.
fn info_sections(text: &str, sections: &[String]) -> String {
    if sections.is_empty()
        || sections
            .iter()
            .any(|s| matches!(s.as_str(), "all" | "everything" | "default"))
    {
        return text.to_string();
    }
    let mut out = String::new();
    let mut keep = false;
    for line in text.split_inclusive("\r\n") {
        if let Some(name) = line.strip_prefix("# ") {
            keep = sections.contains(&name.trim_end().to_ascii_lowercase());
        }
        if keep {
            out.push_str(line);
        }
    }
    out
}

/// `COMMAND [COUNT | LIST | INFO name... | DOCS name...]`: what client libraries ask when they
/// start. INFO gives redis-server's 10-field entries (name, arity, flags, first key, last key,
/// step, ACL categories, tips, key specs, subcommands) with the lists left empty, and a null
/// for a command the proxy does not serve; DOCS gives an empty map.
fn command_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let write_info = |out: &mut Vec<u8>, info: Option<command::CommandInfo>| match info {
        None => resp::write_null(out),
        Some(info) => {
            resp::write_array_len(out, 10);
            resp::write_bulk(out, info.name.as_bytes());
            resp::write_integer(out, i64::from(info.arity));
            resp::write_array_len(out, 0);
            resp::write_integer(out, info.keys.0);
            resp::write_integer(out, info.keys.1);
            resp::write_integer(out, info.keys.2);
            for _ in 0..4 {
                resp::write_array_len(out, 0);
            }
        }
    };
    let Some(sub) = args.get(1) else {
        let all: Vec<_> = command::served().collect();
        resp::write_array_len(out, all.len());
        for info in all {
            write_info(out, Some(info));
        }
        return;
    };
    match &sub.to_ascii_lowercase()[..] {
        b"count" if args.len() == 2 => {
            resp::write_integer(out, command::served().count() as i64);
        }
        b"list" if args.len() == 2 => {
            let names: Vec<_> = command::served().map(|i| i.name).collect();
            resp::write_array_len(out, names.len());
            for name in names {
                resp::write_bulk(out, name.as_bytes());
            }
        }
        b"info" if args.len() == 2 => command_command(out, &args[..1]),
        b"info" => {
            resp::write_array_len(out, args.len() - 2);
            for name in &args[2..] {
                write_info(out, command::info(name));
            }
        }
        b"docs" => resp::write_array_len(out, 0),
        _ => resp::write_error(
            out,
            &format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try COMMAND HELP.",
                command::sanitize(sub)
            ),
        ),
    }
}

/// `HELLO [protover]`: RESP2 only; the reply mirrors redis-server's, as a flat array.
fn hello(out: &mut Vec<u8>, args: &[&[u8]]) {
    if let Some(version) = args.get(1) {
        match resp::parse_i64(version) {
            Some(2) => {}
            Some(3) => return resp::write_error(out, "NOPROTO unsupported protocol version"),
            _ => {
                return resp::write_error(
                    out,
                    "ERR Protocol version is not an integer or out of range",
                )
            }
        }
    }
    if args.len() > 2 {
        return resp::write_error(
            out,
            "ERR HELLO options (AUTH, SETNAME) are not supported by this proxy",
        );
    }
    resp::write_array_len(out, 14);
    for (key, value) in [
        ("server", "redis"),
        ("version", "7.0.0"),
        ("proto", ""),
        ("id", ""),
        ("mode", "standalone"),
        ("role", "master"),
        ("modules", ""),
    ] {
        resp::write_bulk(out, key.as_bytes());
        match key {
            "proto" => resp::write_integer(out, 2),
            "id" => resp::write_integer(out, 0),
            "modules" => resp::write_array_len(out, 0),
            _ => resp::write_bulk(out, value.as_bytes()),
        }
    }
}

/// `CLIENT SETNAME|GETNAME|SETINFO|ID`: what client libraries send when they connect.
fn client_command(out: &mut Vec<u8>, client: &mut Client, args: &[&[u8]]) {
    let sub = args[1].to_ascii_lowercase();
    match (&sub[..], args.len()) {
        (b"setname", 3) => {
            if args[2].iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
                return resp::write_error(
                    out,
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            client.name = (!args[2].is_empty()).then(|| args[2].to_vec());
            resp::write_simple(out, "OK");
        }
        (b"getname", 2) => match &client.name {
            Some(name) => resp::write_bulk(out, name),
            None => resp::write_null(out),
        },
        (b"setinfo", 4) => resp::write_simple(out, "OK"),
        (b"id", 2) => resp::write_integer(out, 0),
        _ => resp::write_error(
            out,
            &format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
                command::sanitize(args[1])
            ),
        ),
    }
}
