//! Pipelined connections from one core to each upstream shard, with reconnection and backoff.
//!
//! Each core keeps one connection per upstream. Sessions append their requests to the
//! connection's output buffer and get a [`ReplySlot`] back; a writer task sends the buffer in
//! batches (every request queued since its last write, from every client), and a reader task
//! matches replies to slots in FIFO order. A slot whose client went away is still filled, then
//! dropped, so the FIFO never shifts and no reply reaches the wrong client.
//!
//! A request that times out fails alone: its slot is abandoned (its reply, when it comes, is
//! dropped) and the connection goes on, since other clients' requests are on it and replies
//! still arrive in order. Only a connection that is *stuck* (nothing read from it for a whole
//! request timeout while requests wait) is given up. Replies are counted against their
//! client's share of memory ([`flow`](crate::flow)) as they are read.
//!
//! When the connection fails (refused, reset, EOF, stuck), every pending slot gets an error,
//! the socket is shut down, and the upstream is *down* for a backoff (50 ms doubling to 2 s):
//! requests made meanwhile fail at once with the last error rather than piling up. The next
//! request after the backoff reconnects.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use corio::io::buf::IoBuf;
use corio::net::TcpStream;
use corio::rt::{spawn, time};

use crate::flow::{self, Held, ReplyBytes, UPSTREAM_INFLIGHT};
use crate::{resp, stats};

/// The reply to one request, or the error text (without `-`) to send instead.
pub(crate) type Reply = Result<ReplyBytes, String>;

/// The error a client past its output buffer limit gets (it is closed right after).
const CUT: &str = "ERR client output buffer limit reached (--client-output-buffer-limit)";
/// Buffers above this capacity are given back once their large contents are gone.
const SHRINK_ABOVE: usize = 256 * 1024;
/// The capacity connection buffers start with and shrink back to.
const BUF_SIZE: usize = 16 * 1024;

/// Where one request's reply will land.
#[derive(Default)]
pub(crate) struct ReplySlot {
    reply: RefCell<Option<Reply>>,
    waker: RefCell<Option<Waker>>,
    /// When the request was queued on its upstream connection (for the latency histogram).
    queued: Cell<Option<Instant>>,
    /// The client whose share the reply counts against (none for the proxy's own requests).
    owner: Option<Rc<Held>>,
    /// Set when the request timed out: its reply is dropped when it comes.
    abandoned: Cell<bool>,
    /// The reply's expected size, counted in its connection's `inflight` until it comes.
    estimate: usize,
}

impl ReplySlot {
    /// Fills the slot with an upstream's reply, counted against the slot's client.
    fn fill_bytes(&self, bytes: Vec<u8>) {
        let reply = match &self.owner {
            Some(held) => ReplyBytes::admit(bytes, held).ok_or_else(|| CUT.to_owned()),
            None => Ok(ReplyBytes::unowned(bytes)),
        };
        self.fill(reply);
    }

    fn fill(&self, reply: Reply) {
        if self.abandoned.get() {
            return;
        }
        *self.reply.borrow_mut() = Some(reply);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// A slot that already holds `reply` (a request that failed before being sent).
    pub(crate) fn ready(reply: Reply) -> Rc<ReplySlot> {
        let slot = Rc::new(ReplySlot::default());
        slot.fill(reply);
        slot
    }

    /// Gives up on the reply (the request timed out): it is dropped when it comes.
    pub(crate) fn abandon(&self) {
        self.abandoned.set(true);
        self.reply.borrow_mut().take();
    }

    /// The reply, if it has come.
    pub(crate) fn try_take(&self) -> Option<Reply> {
        self.reply.borrow_mut().take()
    }

    /// Waits for the reply.
    pub(crate) async fn wait(&self) -> Reply {
        poll_fn(|cx| {
            if let Some(reply) = self.reply.borrow_mut().take() {
                return Poll::Ready(reply);
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// Timeouts and limits of upstream connections.
#[derive(Clone, Debug)]
pub(crate) struct UpstreamConfig {
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    /// Sent as `AUTH <password>` on every new connection (`--upstream-password`).
    pub(crate) password: Option<std::sync::Arc<str>>,
    /// Whether every new connection sends `READONLY` (cluster mode, reads from replicas).
    pub(crate) readonly: bool,
    /// Whether every new connection sends `HELLO 3`: the connections of RESP3 clients, whose
    /// replies then come from the upstream in RESP3 as they are.
    pub(crate) resp3: bool,
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Deepest reply nesting accepted from an upstream.
const MAX_REPLY_DEPTH: usize = 128;

/// One upstream shard, as seen from one core.
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    /// This upstream's shard index.
    shard: usize,
    config: UpstreamConfig,
    state: RefCell<State>,
    backoff: Cell<Duration>,
    /// Whether this core has logged the upstream as down (and not yet as back).
    logged_down: Cell<bool>,
    /// A connection pinned to one client (see `session/pinned.rs`): it is not logged, and
    /// is closed by [`close`](Self::close) when the client is done with it.
    dedicated: bool,
}

enum State {
    /// No connection; a request connects.
    Idle,
    /// Down until `until`; requests fail with `error` meanwhile.
    Down { until: Instant, error: String },
    /// Connecting or connected: requests queue on it.
    Up(Rc<Conn>),
}

impl Upstream {
    pub(crate) fn new(shard: usize, addr: SocketAddr, config: UpstreamConfig) -> Rc<Upstream> {
        Upstream::with(shard, addr, config, false)
    }

    fn with(
        shard: usize,
        addr: SocketAddr,
        config: UpstreamConfig,
        dedicated: bool,
    ) -> Rc<Upstream> {
        Rc::new(Upstream {
            addr,
            shard,
            config,
            state: RefCell::new(State::Idle),
            backoff: Cell::new(MIN_BACKOFF),
            logged_down: Cell::new(false),
            dedicated,
        })
    }

    /// A connection of its own for one client (a transaction with WATCH, a blocking
    /// command), to the same upstream as `self`; it connects on its first request.
    pub(crate) fn dedicated(&self) -> Rc<Upstream> {
        Upstream::with(self.shard, self.addr, self.config.clone(), true)
    }

    /// Closes the connection (its pending requests fail): the upstream sees the client of a
    /// dedicated connection leave, and drops its WATCH or ends its blocking command.
    pub(crate) fn close(&self) {
        if let State::Up(conn) = &*self.state.borrow() {
            conn.abort("connection closed by the proxy");
        }
    }

    /// Whether the connection has failed or is down (a dedicated one is then replaced).
    pub(crate) fn is_down(&self) -> bool {
        match &*self.state.borrow() {
            State::Up(conn) => conn.failed.borrow().is_some(),
            State::Down { .. } => true,
            State::Idle => false,
        }
    }

    /// Queues one encoded request; its reply lands in the returned slot, counted against
    /// `owner`'s share of memory (the client that sent it). `estimate` is the reply's expected
    /// size in bytes (0 if unknown), counted in the connection's bytes in flight.
    pub(crate) fn send(
        self: &Rc<Self>,
        request: &[u8],
        owner: Option<&Rc<Held>>,
        estimate: usize,
    ) -> Rc<ReplySlot> {
        match self.conn() {
            Ok(conn) => conn.queue(request, owner, estimate),
            Err(error) => ReplySlot::ready(Err(error)),
        }
    }

    /// Whether the live connection expects more than [`UPSTREAM_INFLIGHT`] bytes of replies.
    pub(crate) fn congested(&self) -> bool {
        match &*self.state.borrow() {
            State::Up(conn) => conn.congested(),
            _ => false,
        }
    }

    /// Waits until the connection is no longer [`congested`](Self::congested) (or is gone).
    pub(crate) async fn uncongested(&self) {
        let conn = match &*self.state.borrow() {
            State::Up(conn) => conn.clone(),
            _ => return,
        };
        poll_fn(|cx| {
            if !conn.congested() {
                return Poll::Ready(());
            }
            let mut drained = conn.drained.borrow_mut();
            if !drained.iter().any(|w| w.will_wake(cx.waker())) {
                drained.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// A request on this upstream timed out (its slot is abandoned). The connection is given
    /// up only if it is stuck: nothing was read from it for a whole request timeout while
    /// requests waited. A slow reply behind other clients' large ones is not a reason to fail
    /// their requests too.
    pub(crate) fn timed_out(&self) {
        let timeout = self.config.request_timeout;
        if let State::Up(conn) = &*self.state.borrow() {
            if conn.progress.get().elapsed() >= timeout {
                conn.abort(&format!(
                    "no reply for {} ms (upstream stuck)",
                    timeout.as_millis()
                ));
            }
        }
    }

    /// The live connection, starting one if none is, or the error while down.
    fn conn(self: &Rc<Self>) -> Result<Rc<Conn>, String> {
        let mut state = self.state.borrow_mut();
        match &*state {
            State::Up(conn) => return Ok(conn.clone()),
            State::Down { until, error } if Instant::now() < *until => return Err(error.clone()),
            State::Down { .. } | State::Idle => {}
        }
        let conn = Rc::new(Conn::new(&self.addr.to_string()));
        *state = State::Up(conn.clone());
        spawn(self.clone().run(conn.clone())).detach();
        Ok(conn)
    }

    /// Connects, then writes and reads until the connection fails.
    async fn run(self: Rc<Self>, conn: Rc<Conn>) {
        let error = match self.connect().await {
            Ok(stream) => {
                if !self.dedicated {
                    stats::upstream_state(self.shard, true);
                }
                self.backoff.set(MIN_BACKOFF);
                if self.logged_down.replace(false) {
                    eprintln!("{}: upstream {} is back", self.who(), self.addr);
                }
                let stream = Rc::new(stream);
                *conn.stream.borrow_mut() = Some(stream.clone());
                let reader = spawn(read_replies(conn.clone(), stream.clone(), self.shard));
                write_requests(&conn, &stream).await;
                let _ = stream.shutdown(Shutdown::Both);
                let _ = reader.await;
                let failed = conn.failed.borrow_mut().take();
                failed.unwrap_or_else(|| conn.error_text("connection ended"))
            }
            Err(err) => conn.error_text(&format!("connect failed: {err}")),
        };
        conn.fail_all(&error);
        if !self.dedicated {
            stats::upstream_state(self.shard, false);
        }
        // Once per outage per core: a log line per failed retry would flood.
        if !self.dedicated && !self.logged_down.replace(true) {
            eprintln!("{}: {error}", self.who());
        }
        let backoff = self.backoff.get();
        self.backoff.set((backoff * 2).min(MAX_BACKOFF));
        let mut state = self.state.borrow_mut();
        if matches!(&*state, State::Up(current) if Rc::ptr_eq(current, &conn)) {
            *state = State::Down {
                until: Instant::now() + backoff,
                error,
            };
        }
    }

    /// Who logs: this core and shard.
    fn who(&self) -> String {
        let core = corio::rt::try_current_core().map_or(0, |c| c.0);
        format!("db-proxy: core {core} shard {}", self.shard)
    }

    /// A new connection to this upstream, after its handshake (AUTH, READONLY): for the
    /// sessions' subscriber connections, which are not pipelined.
    pub(crate) async fn connect(&self) -> io::Result<TcpStream> {
        let stream = time::timeout(self.config.connect_timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        if let Some(password) = &self.config.password {
            let auth = [&b"AUTH"[..], password.as_bytes()];
            let auth = time::timeout(self.config.connect_timeout, handshake(&stream, &auth));
            auth.await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "AUTH timed out"))??;
        }
        if self.config.readonly {
            // A replica then answers reads of its master's slots (masters accept it too).
            let readonly = time::timeout(
                self.config.connect_timeout,
                handshake(&stream, &[b"READONLY"]),
            );
            readonly
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "READONLY timed out"))??;
        }
        if self.config.resp3 {
            let hello = time::timeout(
                self.config.connect_timeout,
                handshake(&stream, &[b"HELLO", b"3"]),
            );
            hello
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "HELLO 3 timed out"))??;
        }
        Ok(stream)
    }
}

/// One connection's queues.
struct Conn {
    /// The upstream's address, for error replies.
    upstream: String,
    /// Requests not yet written.
    out: RefCell<Vec<u8>>,
    /// Slots of written or queued requests, oldest first.
    pending: RefCell<VecDeque<Rc<ReplySlot>>>,
    writer: RefCell<Option<Waker>>,
    stream: RefCell<Option<Rc<TcpStream>>>,
    /// Set when the connection must end: the error reply its requests get (see `error_text`).
    failed: RefCell<Option<String>>,
    /// When bytes last came from the upstream, or requests started waiting on an idle
    /// connection: a connection with requests waiting and no progress for a request timeout
    /// is stuck.
    progress: Cell<Instant>,
    /// Expected bytes of the replies still to come (the sum of their slots' estimates).
    inflight: Cell<usize>,
    /// Sessions waiting for `inflight` to drop to [`UPSTREAM_INFLIGHT`].
    drained: RefCell<Vec<Waker>>,
}

impl Conn {
    fn new(upstream: &str) -> Conn {
        Conn {
            upstream: upstream.to_owned(),
            out: RefCell::default(),
            pending: RefCell::default(),
            writer: RefCell::default(),
            stream: RefCell::default(),
            failed: RefCell::default(),
            progress: Cell::new(Instant::now()),
            inflight: Cell::new(0),
            drained: RefCell::default(),
        }
    }

    /// Whether more than [`UPSTREAM_INFLIGHT`] bytes of replies are expected (never once the
    /// connection has failed: its requests are about to fail, and waiting on it would wait
    /// for the task that fails them).
    fn congested(&self) -> bool {
        self.inflight.get() > UPSTREAM_INFLIGHT && self.failed.borrow().is_none()
    }

    /// Wakes the sessions waiting for this connection to drain.
    fn wake_drained(&self) {
        for waker in self.drained.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// A slot left the FIFO (answered or failed): its estimate is no longer in flight.
    fn settle(&self, slot: &ReplySlot) {
        stats::inflight(-1);
        let inflight = self.inflight.get() - slot.estimate;
        self.inflight.set(inflight);
        if inflight <= UPSTREAM_INFLIGHT && slot.estimate > 0 {
            self.wake_drained();
        }
    }

    /// The one error reply (without its `-`) for requests this connection cannot answer:
    /// `ERR upstream ADDR unavailable: WHY`, so clients that classify errors by their first
    /// word see `ERR`, and every request that failed the same way gets the same text.
    fn error_text(&self, why: &str) -> String {
        format!("ERR upstream {} unavailable: {why}", self.upstream)
    }

    fn queue(&self, request: &[u8], owner: Option<&Rc<Held>>, estimate: usize) -> Rc<ReplySlot> {
        if let Some(error) = &*self.failed.borrow() {
            return ReplySlot::ready(Err(error.clone()));
        }
        let now = Instant::now();
        let slot = Rc::new(ReplySlot {
            queued: Cell::new(Some(now)),
            owner: owner.cloned(),
            estimate,
            ..ReplySlot::default()
        });
        self.inflight.set(self.inflight.get() + estimate);
        stats::inflight(1);
        // Counted until written (or failed): a slow upstream holds these bytes.
        flow::take(request.len());
        self.out.borrow_mut().extend_from_slice(request);
        let mut pending = self.pending.borrow_mut();
        if pending.is_empty() {
            self.progress.set(now); // an idle connection is not stuck
        }
        pending.push_back(slot.clone());
        drop(pending);
        if let Some(waker) = self.writer.borrow_mut().take() {
            waker.wake();
        }
        slot
    }

    /// Ends the connection for `why` (a reason without prefix, such as "write failed: ...").
    fn abort(&self, why: &str) {
        self.failed
            .borrow_mut()
            .get_or_insert_with(|| self.error_text(why));
        if let Some(stream) = &*self.stream.borrow() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if let Some(waker) = self.writer.borrow_mut().take() {
            waker.wake();
        }
        self.wake_drained();
    }

    /// Fails every request still waiting with `error`, the connection's error reply.
    fn fail_all(&self, error: &str) {
        self.failed
            .borrow_mut()
            .get_or_insert_with(|| error.to_owned());
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for slot in pending {
            self.settle(&slot);
            slot.fill(Err(error.to_owned()));
        }
        let mut out = self.out.borrow_mut();
        flow::give_back(out.len());
        out.clear();
        drop(out);
        self.wake_drained();
    }
}

/// Sends queued requests in batches until the connection fails (`conn.failed` says why).
async fn write_requests(conn: &Conn, stream: &TcpStream) {
    let mut batch = Vec::with_capacity(BUF_SIZE);
    loop {
        poll_fn(|cx| {
            if conn.failed.borrow().is_some() || !conn.out.borrow().is_empty() {
                return Poll::Ready(());
            }
            *conn.writer.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if conn.failed.borrow().is_some() {
            return;
        }
        batch.clear();
        std::mem::swap(&mut batch, &mut *conn.out.borrow_mut());
        let res = write_batch(conn, stream, &mut batch).await;
        flow::give_back(batch.len());
        if batch.capacity() > SHRINK_ABOVE {
            // One large request: do not keep its buffer for the connection's lifetime.
            crate::flow::freed(batch.capacity());
            batch = Vec::with_capacity(BUF_SIZE);
        }
        if let Err(err) = res {
            conn.abort(&format!("write failed: {err}"));
            return;
        }
    }
}

/// Writes all of `batch`. A partial write means the socket's buffers were full and the
/// upstream took some bytes: that is progress, so a long write of a large request to a slow
/// upstream is not mistaken for a stuck one.
async fn write_batch(conn: &Conn, stream: &TcpStream, batch: &mut Vec<u8>) -> io::Result<()> {
    let mut sent = 0;
    while sent < batch.len() {
        let (res, back) = stream.write(std::mem::take(batch).slice(sent..)).await;
        *batch = back.into_inner();
        match res? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => sent += n,
        }
        if sent < batch.len() {
            conn.progress.set(Instant::now());
        }
    }
    Ok(())
}

/// Reads replies and fills slots in FIFO order until EOF or an error, then ends the
/// connection (`conn.failed` says why).
async fn read_replies(conn: Rc<Conn>, stream: Rc<TcpStream>, shard: usize) {
    let why = read_until_failure(&conn, &stream, shard).await;
    conn.abort(&why);
}

async fn read_until_failure(conn: &Conn, stream: &TcpStream, shard: usize) -> String {
    let mut buf: Vec<u8> = Vec::with_capacity(BUF_SIZE);
    // The buffer's growth for a reply still arriving counts against the budget.
    let mut counted = flow::Counted::default();
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(buf.len().max(BUF_SIZE));
            counted.set(buf.capacity().saturating_sub(BUF_SIZE));
        }
        let (res, back) = stream.read(buf).await;
        buf = back;
        match res {
            Ok(0) => return "connection closed by upstream".to_owned(),
            Ok(_) => conn.progress.set(Instant::now()),
            Err(err) => return format!("read failed: {err}"),
        }
        let mut start = 0;
        loop {
            let len = match resp::scan_reply(&buf[start..], MAX_REPLY_DEPTH) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(err) => return format!("bad reply from upstream: {err}"),
            };
            let Some(slot) = conn.pending.borrow_mut().pop_front() else {
                return "reply from upstream with no request pending".to_owned();
            };
            conn.settle(&slot);
            if let Some(queued) = slot.queued.get() {
                stats::record_latency(shard, queued.elapsed());
            }
            if Rc::strong_count(&slot) == 1 || slot.abandoned.get() {
                // Nobody waits for this reply (its client left or timed out): drop it here.
            } else if start == 0 && len == buf.len() && len >= SHRINK_ABOVE {
                // A large reply that is all of the buffer: hand the buffer over, no copy.
                slot.fill_bytes(std::mem::replace(&mut buf, Vec::with_capacity(BUF_SIZE)));
                start = 0;
                break;
            } else {
                slot.fill_bytes(buf[start..start + len].to_vec());
            }
            start += len;
        }
        buf.drain(..start);
        if buf.capacity() > SHRINK_ABOVE && buf.len() < BUF_SIZE {
            crate::flow::freed(buf.capacity());
            buf.shrink_to(BUF_SIZE);
        }
        counted.set(buf.capacity().saturating_sub(BUF_SIZE));
    }
}

/// Sends `command` (AUTH, READONLY, HELLO 3) and reads its one reply, which must not be an
/// error, before any request is pipelined.
async fn handshake(stream: &TcpStream, command: &[&[u8]]) -> io::Result<()> {
    let mut request = Vec::new();
    resp::encode_command(&mut request, command.iter().copied());
    let name = String::from_utf8_lossy(command[0]).into_owned();
    let (res, _) = stream.write_all(request).await;
    res?;
    let mut reply = Vec::with_capacity(256);
    loop {
        let scanned = resp::scan_reply(&reply, 4).map_err(|e| io::Error::other(e.to_string()))?;
        if let Some(len) = scanned {
            return match reply.first() {
                Some(b'+' | b'%' | b'*') => Ok(()),
                _ => Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{name} refused: {}",
                        String::from_utf8_lossy(&reply[..len]).trim_end()
                    ),
                )),
            };
        }
        if reply.len() > 64 * 1024 {
            return Err(io::Error::other(format!("{name} reply too long")));
        }
        reply.reserve(256);
        let (n, back) = stream.read(reply).await;
        reply = back;
        if n? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("closed during {name}"),
            ));
        }
    }
}
