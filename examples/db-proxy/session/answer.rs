//! Answering a batch: every queued request's reply awaited in order and written to the
//! client as it comes (small ones gathered into one write, large ones from their own buffer),
//! with split replies merged, SCAN cursors rewritten, redirections followed, and a blocked
//! client watched while it waits.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

use corio::net::TcpStream;
use corio::rt::time;

use super::input::Input;
use super::local::info_sections;
use super::output::{flush, push, write_out};
use super::{pinned, redirect, Client, Pending, GATHER};
use crate::multikey::{self, Part};
use crate::stats::{Outcome, Started};
use crate::upstream::{Reply, ReplySlot};
use crate::{flow, resp, scan, stats, Proxy};

/// Waits for every queued reply, in order, and writes them to the client as they come
/// (small ones gathered into one write). Returns the bytes of upstream replies written (for
/// the client's window); `Err` when the client must be closed: a write failed or stalled, or
/// the client passed its output buffer limit.
pub(super) async fn answer(
    proxy: &Proxy,
    (stream, input): (&TcpStream, &mut Input),
    client: &mut Client,
    queue: &mut VecDeque<(Option<Started>, Pending)>,
    output: &mut Vec<u8>,
) -> Result<usize, ()> {
    let held = &client.held.clone();
    let resp3 = client.resp3;
    let deadline = Instant::now() + proxy.config.upstream.request_timeout;
    let mut upstream_bytes = 0;
    // Outcomes, counted with one clock reading once the batch is answered (the vector is the
    // session's, kept between batches).
    let done = &mut client.done;
    done.clear();
    while let Some((started, pending)) = queue.pop_front() {
        // The error reply this request got, if any (its first bytes, for the counters), and
        // whether the proxy refused it before it ran.
        let mut failure: Option<Vec<u8>> = None;
        let mut rejected = false;
        match pending {
            Pending::Ready(bytes) => {
                failure = error_head(&bytes);
                rejected = true;
                push(proxy, stream, output, &bytes).await?
            }
            Pending::Info(sections) => {
                let wants = |name: &str| {
                    sections.is_empty()
                        || sections.iter().any(|s| {
                            s == name || matches!(&s[..], "all" | "everything" | "default")
                        })
                };
                let keyspace = if wants("keyspace") {
                    crate::info::keyspace(proxy).await
                } else {
                    String::new()
                };
                let cores = corio::mesh::run_on_all(|core| async move { stats::snapshot(core) });
                match cores.await {
                    Ok(cores) => {
                        let text = info_sections(&proxy.info(&cores, &keyspace), &sections);
                        resp::write_bulk(output, text.as_bytes())
                    }
                    Err(err) => {
                        let text = format!("ERR INFO: {err}");
                        resp::write_error(output, &text);
                        failure = Some(text.into_bytes());
                    }
                }
            }
            Pending::Forwarded {
                shard,
                slot,
                resend,
            } => {
                let mut reply = wait(proxy, (shard, resp3), &slot, deadline).await;
                if let Some(resend) = resend {
                    let request = (&resend.request[..], resend.slot);
                    reply = redirect::follow(proxy, (held, resp3), shard, reply, request, deadline)
                        .await;
                }
                if held.is_cut() {
                    return Err(());
                }
                match reply {
                    Ok(mut bytes) if bytes.len() >= GATHER => {
                        // Large: written from its own buffer, after what was gathered.
                        failure = error_head(&bytes);
                        upstream_bytes += bytes.len();
                        count_reply(&bytes);
                        flush(proxy, stream, output).await?;
                        let buf = bytes.take();
                        let buf = write_out(proxy, stream, buf).await.ok_or(())?;
                        flow::freed(buf.capacity());
                    }
                    Ok(bytes) => {
                        failure = error_head(&bytes);
                        upstream_bytes += bytes.len();
                        count_reply(&bytes);
                        push(proxy, stream, output, &bytes).await?;
                    }
                    Err(text) => {
                        stats::error();
                        resp::write_error(output, &text);
                        failure = Some(text.into_bytes());
                    }
                }
            }
            Pending::Exclusive(exclusive) => {
                let pinned::Exclusive {
                    upstream,
                    requests,
                    timeout,
                    dedicated,
                    blocking,
                    answer,
                } = exclusive;
                // Sent now, in turn: every earlier request of the client has its reply. The
                // replies gathered so far go out first (a blocked client must have them).
                let held_ref = Some(held);
                let slots: Vec<_> = requests
                    .iter()
                    .map(|request| upstream.send(request, held_ref, 0))
                    .collect();
                drop(requests);
                if blocking || slots.len() > 1 {
                    flush(proxy, stream, output).await?;
                }
                let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
                let _blocked = blocking.then(pinned::Blocked::new);
                let waited = exclusive_wait(stream, input, &slots, deadline, blocking).await;
                let reply = match waited {
                    Waited::Reply(reply) => reply,
                    Waited::ClientLeft => {
                        client.pins.close(&upstream);
                        return Err(());
                    }
                    Waited::TimedOut => {
                        slots.iter().for_each(|slot| slot.abandon());
                        if dedicated {
                            client.pins.close(&upstream);
                        } else {
                            upstream.timed_out();
                        }
                        Err(format!(
                            "ERR upstream {} timed out after {} ms",
                            upstream.addr,
                            proxy.config.upstream.request_timeout.as_millis()
                        ))
                    }
                };
                if held.is_cut() {
                    return Err(());
                }
                match (reply, answer) {
                    (Ok(_), Some(answer)) => {
                        failure = error_head(&answer);
                        push(proxy, stream, output, &answer).await?;
                    }
                    (Ok(bytes), None) => {
                        failure = error_head(&bytes);
                        upstream_bytes += bytes.len();
                        count_reply(&bytes);
                        push(proxy, stream, output, &bytes).await?;
                    }
                    (Err(text), _) => {
                        stats::error();
                        resp::write_error(output, &text);
                        failure = Some(text.into_bytes());
                    }
                }
            }
            Pending::Scan {
                node,
                slot,
                shard,
                shards,
            } => match wait(proxy, (node, resp3), &slot, deadline).await {
                Ok(bytes) => {
                    upstream_bytes += bytes.len();
                    match scan::rewrite(&bytes, shard, shards) {
                        Some(out) => push(proxy, stream, output, &out).await?,
                        // An error passes through; a shard cursor the proxy's cannot carry
                        // must not reach the client as if it were the proxy's.
                        None if bytes.first() == Some(&b'-') => {
                            failure = error_head(&bytes);
                            count_reply(&bytes);
                            push(proxy, stream, output, &bytes).await?
                        }
                        None => {
                            stats::error();
                            let text = "ERR SCAN reply the proxy cannot carry";
                            resp::write_error(output, text);
                            failure = Some(text.into());
                        }
                    }
                }
                Err(text) => {
                    stats::error();
                    resp::write_error(output, &text);
                    failure = Some(text.into_bytes());
                }
            },
            Pending::Split { kind, nkeys, parts } => {
                let mut replies = Vec::with_capacity(parts.len());
                let mut counted = Vec::with_capacity(parts.len());
                for (part, node, slot) in &parts {
                    let mut reply = wait(proxy, (*node, resp3), slot, deadline).await;
                    if proxy.is_cluster() {
                        let request = (&part.request[..], Some(part.shard as u16));
                        reply =
                            redirect::follow(proxy, (held, resp3), *node, reply, request, deadline)
                                .await;
                    }
                    if held.is_cut() {
                        return Err(());
                    }
                    upstream_bytes += reply.as_ref().map_or(0, |r| r.len());
                    // The bytes move out for the merge, but stay counted until written.
                    replies.push(reply.map(|mut r| {
                        let bytes = r.take();
                        counted.push(r);
                        bytes
                    }));
                }
                let parts: Vec<Part> = parts.into_iter().map(|(part, ..)| part).collect();
                let merged = multikey::merge(kind, &parts, &replies, nkeys);
                drop(replies);
                if merged.first() == Some(&b'-') {
                    stats::error();
                }
                failure = error_head(&merged);
                push(proxy, stream, output, &merged).await?;
                counted.clear();
            }
        }
        match (started, failure) {
            (Some(started), None) => done.push((started, Outcome::Ok)),
            (Some(started), Some(error)) if rejected => {
                done.push((started, Outcome::Rejected(error)))
            }
            (Some(started), Some(error)) => done.push((started, Outcome::Failed(error))),
            (None, Some(error)) => stats::error_kind(&error),
            (None, None) => {}
        }
    }
    flush(proxy, stream, output).await?;
    let now = Instant::now();
    for (started, outcome) in done.drain(..) {
        stats::command_done(&started, &outcome, now);
    }
    Ok(upstream_bytes)
}

/// Waits for one reply until `deadline`. On timeout this request fails alone: its reply is
/// dropped when it comes, and the connection is given up only if it is stuck
/// ([`Upstream::timed_out`](crate::upstream::Upstream::timed_out)).
pub(super) async fn wait(
    proxy: &Proxy,
    (shard, resp3): (usize, bool),
    slot: &ReplySlot,
    deadline: Instant,
) -> Reply {
    // A reply already in (most of a pipeline's) needs no timer.
    if let Some(reply) = slot.try_take() {
        return reply;
    }
    match time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        slot.wait(),
    )
    .await
    {
        Ok(reply) => reply,
        Err(_) => {
            slot.abandon();
            let upstream = proxy.upstream_for(shard, resp3);
            upstream.timed_out();
            Err(format!(
                "ERR upstream {} timed out after {} ms",
                upstream.addr,
                proxy.config.upstream.request_timeout.as_millis()
            ))
        }
    }
}

/// How waiting for an exclusive request ended.
enum Waited {
    Reply(Reply),
    TimedOut,
    /// The client closed its connection while a blocking command waited.
    ClientLeft,
}

/// Waits for an exclusive request's last reply until `deadline` (none: for ever). For a
/// blocking command the client is read meanwhile: what it sends is kept in `input`, and its
/// leaving ends the wait (the caller then closes the pinned connection, so the upstream
/// unblocks the command rather than pop a value for nobody).
async fn exclusive_wait(
    stream: &TcpStream,
    input: &mut Input,
    slots: &[Rc<ReplySlot>],
    deadline: Option<Instant>,
    blocking: bool,
) -> Waited {
    use futures_util::future::{select, Either};
    let reply = async {
        match deadline {
            None => Some(pinned::last_reply(slots).await),
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                time::timeout(left, pinned::last_reply(slots)).await.ok()
            }
        }
    };
    let watch = async {
        if blocking {
            client_left(stream, input, WATCH_LIMIT).await
        } else {
            std::future::pending().await
        }
    };
    match select(std::pin::pin!(reply), std::pin::pin!(watch)).await {
        Either::Left((Some(reply), _)) => Waited::Reply(reply),
        Either::Left((None, _)) => Waited::TimedOut,
        Either::Right(((), _)) => Waited::ClientLeft,
    }
}

/// What a blocked client may send before the proxy stops reading it (until the wait ends).
const WATCH_LIMIT: usize = 1 << 20;

/// Reads what the client sends (kept in `input`, for after the wait) until it closes (EOF or
/// an error). Past `limit` bytes held, it stops reading: the client is then noticed leaving
/// only when the wait ends.
async fn client_left(stream: &TcpStream, input: &mut Input, limit: usize) {
    loop {
        if input.buf.len() >= limit {
            return std::future::pending().await;
        }
        let (res, buf) = stream.read(Vec::with_capacity(4096)).await;
        match res {
            Ok(0) | Err(_) => return,
            Ok(n) => input.buf.extend_from_slice(&buf[..n]),
        }
    }
}

/// The first bytes of `reply` if it is an error (enough for its first word).
fn error_head(reply: &[u8]) -> Option<Vec<u8>> {
    (reply.first() == Some(&b'-')).then(|| reply[..reply.len().min(64)].to_vec())
}

/// Counts an upstream's error reply (WRONGTYPE, a non-integer INCR...) as an error the client
/// got, as redis-server's total_error_replies does.
fn count_reply(bytes: &[u8]) {
    if bytes.first() == Some(&b'-') {
        stats::error();
    }
}
