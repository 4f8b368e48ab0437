//! One connection's load: connect, send requests, frame replies, record latencies, and after a
//! failure count what was lost and reconnect (after a short backoff) until the run ends.
//!
//! - **Closed loop** ([`closed_loop`]): write `pipeline` requests in one write, wait for all
//!   their replies, repeat. Latency runs from the write to each reply.
//! - **Open loop** ([`open_loop`]): a writer sends each request when its [`Schedule`] says it is
//!   due (up to `pipeline` in flight); a reader task frames replies. Latency runs from the due
//!   time, so delays the server caused are never hidden by requests not sent.
//!
//! A connection that gets no reply within the request timeout, or a reply that does not parse,
//! is closed (the stream cannot be resynchronised) and counted; the others go on.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use corio::io::buf::IoBuf;
use corio::net::TcpStream;
use corio::time::{sleep_until, timeout};

use crate::proto::{Framer, Protocol};
use crate::report::Stats;
use crate::schedule::Schedule;

/// Read-buffer capacity of a connection; grows when one reply is larger.
const READ_BUFFER: usize = 16 * 1024;
/// Wait before reconnecting after a failure, doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// What every connection of the run shares (across cores).
pub struct Plan {
    pub target: SocketAddr,
    pub protocol: Protocol,
    pub pipeline: usize,
    /// Requests per second per connection (open loop), or `None` (closed loop).
    pub rate_per_conn: Option<f64>,
    /// When the load starts (open loop: request 0 of phase 0 is due then).
    pub start: Instant,
    /// No request is sent after this.
    pub end: Instant,
    /// Requests left to send in the whole run, or `None` for no limit.
    pub budget: Option<AtomicU64>,
    /// How long a request may wait for its reply.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Total connections, for the open-loop phases.
    pub connections: usize,
}

impl Plan {
    /// Takes up to `want` requests from the budget; 0 when the run is over.
    fn take(&self, want: usize) -> usize {
        if Instant::now() >= self.end {
            return 0;
        }
        self.take_budget(want)
    }

    /// Takes up to `want` requests from the budget, whatever the time.
    fn take_budget(&self, want: usize) -> usize {
        let Some(budget) = &self.budget else {
            return want;
        };
        let mut taken = 0;
        let _ = budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            taken = left.min(want as u64) as usize;
            Some(left - taken as u64)
        });
        taken
    }
}

/// Progress counters a core publishes for the progress line: answered requests and errors.
#[derive(Default)]
#[repr(align(128))]
pub struct Progress {
    pub answered: AtomicU64,
    pub errors: AtomicU64,
}

/// One core's connections share this.
pub struct Local {
    pub plan: Arc<Plan>,
    pub stats: RefCell<Stats>,
    pub progress: Arc<Progress>,
    /// When this core framed its last reply (the run's rate is measured up to then).
    pub last_reply: Cell<Option<Instant>>,
}

impl Local {
    /// Records a reply framed at `now` to a request sent (closed loop) or due (open loop) at
    /// `since`.
    fn record(&self, now: Instant, since: Instant, error: bool) {
        self.last_reply.set(Some(now));
        self.stats
            .borrow_mut()
            .record(now.saturating_duration_since(since), error);
        self.progress.answered.fetch_add(1, Ordering::Relaxed);
        if error {
            self.progress.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn fail(&self, kind: &str, err: impl std::fmt::Display, lost: u64) {
        let mut stats = self.stats.borrow_mut();
        match kind {
            "connect" => stats.connect_errors += 1,
            "dropped" => stats.dropped += 1,
            "timeout" => stats.timeouts += 1,
            _ => stats.protocol_errors += 1,
        }
        // A timeout's requests are the timeouts themselves; the others lose what was in flight.
        if kind == "timeout" {
            stats.timeouts += lost.saturating_sub(1);
        } else {
            stats.lost += lost;
        }
        stats.note_error(kind, err);
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
    }
}

async fn connect(local: &Local, backoff: &mut Duration) -> Option<TcpStream> {
    let plan = &local.plan;
    while Instant::now() < plan.end {
        match TcpStream::connect_timeout(plan.target, plan.connect_timeout).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                *backoff = FIRST_BACKOFF;
                return Some(stream);
            }
            Err(err) => {
                local.fail("connect", format!("{}: {err}", plan.target), 0);
                let wake = (Instant::now() + *backoff).min(plan.end);
                sleep_until(wake).await;
                *backoff = (*backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    None
}

/// Incoming bytes of one connection: `buf[pos..]` is not yet framed.
struct Inbox {
    buf: Vec<u8>,
    pos: usize,
    /// When the last read completed: the arrival time of every reply framed from its bytes
    /// (one clock read per read, not per reply).
    received: Instant,
}

impl Inbox {
    fn new() -> Inbox {
        Inbox {
            buf: Vec::with_capacity(READ_BUFFER),
            pos: 0,
            received: Instant::now(),
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more bytes after those pending. `Ok(false)` on end of stream.
    async fn fill(&mut self, stream: &TcpStream) -> io::Result<bool> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < READ_BUFFER / 4 {
            // Also after a read abandoned by a timeout, which kept the buffer (it stays with
            // the kernel's op) and left an empty Vec here.
            self.buf.drain(..self.pos);
            self.pos = 0;
            self.buf.reserve(READ_BUFFER);
        }
        let buf = std::mem::take(&mut self.buf);
        let (len, cap) = (buf.len(), buf.capacity());
        let (res, slice) = stream.read(buf.slice(len..cap)).await;
        self.buf = slice.into_inner();
        self.received = Instant::now();
        Ok(res? > 0)
    }

    fn forget(&mut self) {
        self.buf.clear();
        self.pos = 0;
    }
}

/// Closed loop on one connection until the run ends or the budget is spent.
pub async fn closed_loop(local: Rc<Local>, index: usize) {
    let plan = local.plan.clone();
    let mut framer = Framer::new(&plan.protocol, index as u64 + 1);
    let mut out = Vec::new();
    let mut inbox = Inbox::new();
    let mut backoff = FIRST_BACKOFF;
    let mut stream = None;
    sleep_until(plan.start).await;
    loop {
        if Instant::now() >= plan.end {
            return;
        }
        let conn = match stream.take() {
            Some(conn) => conn,
            None => match connect(&local, &mut backoff).await {
                Some(conn) => {
                    inbox.forget();
                    conn
                }
                None => return,
            },
        };
        let batch = plan.take(plan.pipeline);
        if batch == 0 {
            return;
        }
        out.clear();
        for _ in 0..batch {
            framer.request(&mut out);
        }
        let sent = Instant::now();
        if let Err((kind, err)) = write(&plan, &conn, &mut out).await {
            local.fail(kind, err, batch as u64);
            backoff_sleep(&plan, &mut backoff).await;
            continue;
        }
        let mut answered = 0;
        let failure = loop {
            match framer.reply(inbox.pending()) {
                Ok(Some(reply)) => {
                    inbox.pos += reply.len;
                    local.record(inbox.received.max(sent), sent, reply.error);
                    answered += 1;
                    if answered == batch {
                        break None;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(err) => break Some(("protocol", err.to_string())),
            }
            let left = plan.request_timeout.saturating_sub(sent.elapsed());
            match timeout(left, inbox.fill(&conn)).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => break Some(("dropped", "server closed the connection".into())),
                Ok(Err(err)) => break Some(("dropped", err.to_string())),
                Err(_) => {
                    break Some((
                        "timeout",
                        format!("no reply within {:?}", plan.request_timeout),
                    ))
                }
            }
        };
        match failure {
            None => stream = Some(conn),
            Some((kind, err)) => {
                local.fail(kind, err, (batch - answered) as u64);
                backoff_sleep(&plan, &mut backoff).await;
            }
        }
    }
}

/// Writes `out` whole within the request timeout (a server that stops reading, or an echo
/// batch larger than both sides' socket buffers, would otherwise block for ever).
async fn write(
    plan: &Plan,
    conn: &TcpStream,
    out: &mut Vec<u8>,
) -> Result<(), (&'static str, String)> {
    let written = timeout(plan.request_timeout, conn.write_all(std::mem::take(out))).await;
    match written {
        Ok((res, back)) => {
            *out = back;
            res.map_err(|err| ("dropped", err.to_string()))
        }
        Err(_) => Err((
            "timeout",
            format!("a write did not finish within {:?}", plan.request_timeout),
        )),
    }
}

async fn backoff_sleep(plan: &Plan, backoff: &mut Duration) {
    sleep_until((Instant::now() + *backoff).min(plan.end)).await;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}

/// What the writer and the reader of one open-loop connection share.
struct Flight {
    /// Due and write times of each request written and not yet answered, oldest first.
    due: RefCell<VecDeque<(Instant, Instant)>>,
    /// Set by the reader when the connection failed.
    failed: Cell<Option<(&'static str, String)>>,
    /// The writer, waiting for room in flight or for the reader's failure.
    writer: Cell<Option<Waker>>,
}

impl Flight {
    /// When the oldest request still in flight was written.
    fn oldest_sent(&self) -> Option<Instant> {
        self.due.borrow().front().map(|&(_, sent)| sent)
    }

    fn wake_writer(&self) {
        if let Some(waker) = self.writer.take() {
            waker.wake();
        }
    }
}

/// Open loop on one connection (`index` of the run's `connections`) until the run ends.
pub async fn open_loop(local: Rc<Local>, index: usize) {
    let plan = local.plan.clone();
    let rate = plan.rate_per_conn.expect("open loop needs a rate");
    let phase = index as f64 / plan.connections.max(1) as f64;
    let mut schedule = Schedule::new(plan.start, rate, phase);
    let mut framer = Framer::new(&plan.protocol, index as u64 + 1);
    let mut backoff = FIRST_BACKOFF;
    let mut out = Vec::new();
    while Instant::now() < plan.end {
        let Some(conn) = connect(&local, &mut backoff).await else {
            break;
        };
        let conn = Rc::new(conn);
        let flight = Rc::new(Flight {
            due: RefCell::new(VecDeque::new()),
            failed: Cell::new(None),
            writer: Cell::new(None),
        });
        let reader = corio::spawn(read_replies(
            local.clone(),
            conn.clone(),
            flight.clone(),
            Framer::new(&plan.protocol, 0),
        ));
        let failure =
            write_on_schedule(&local, &conn, &flight, &mut schedule, &mut framer, &mut out).await;
        reader.abort();
        let in_flight = flight.due.borrow().len() as u64;
        match failure.or_else(|| flight.failed.take()) {
            Some((kind, err)) => {
                local.fail(kind, err, in_flight);
                backoff_sleep(&plan, &mut backoff).await;
            }
            None => return,
        }
    }
    // The run ended with the connection down: what fell due meanwhile was never sent.
    count_unsent(&local, &mut schedule);
}

/// Counts the requests due before the end that were never taken (the server fell behind, or
/// the connection was down), within what is left of the `-n` budget, and passes over them.
fn count_unsent(local: &Local, schedule: &mut Schedule) {
    let plan = &local.plan;
    let unsent = schedule
        .due_before(plan.end)
        .saturating_sub(schedule.taken());
    let unsent = plan.take_budget(usize::try_from(unsent).unwrap_or(usize::MAX)) as u64;
    if unsent > 0 {
        local.stats.borrow_mut().unsent += unsent;
        local.progress.errors.fetch_add(unsent, Ordering::Relaxed);
    }
    schedule.skip(unsent);
}

/// Writes each request when due; returns the failure that ended the connection, or `None`
/// when the run is over and every reply has come.
async fn write_on_schedule(
    local: &Local,
    conn: &TcpStream,
    flight: &Flight,
    schedule: &mut Schedule,
    framer: &mut Framer,
    out: &mut Vec<u8>,
) -> Option<(&'static str, String)> {
    let plan = &local.plan;
    loop {
        if let Some(failed) = flight.failed.take() {
            return Some(failed);
        }
        let now = Instant::now();
        let expiry = flight.oldest_sent().map(|sent| sent + plan.request_timeout);
        if expiry.is_some_and(|expiry| now >= expiry) {
            return Some((
                "timeout",
                format!("no reply within {:?}", plan.request_timeout),
            ));
        }
        let in_flight = flight.due.borrow().len();
        let next_due = schedule.peek();
        let done = now >= plan.end || next_due >= plan.end || plan.budget_spent();
        if done {
            count_unsent(local, schedule);
            if in_flight == 0 {
                return None;
            }
        }
        if done || in_flight >= plan.pipeline {
            // Wait for a reply (for room, or for the last one), or a request's timeout.
            let wake = expiry.unwrap_or(now + plan.request_timeout);
            let _ = timeout(wake - now, room(flight, plan.pipeline, done)).await;
            continue;
        }
        if next_due > now {
            sleep_until(expiry.map_or(next_due, |e| e.min(next_due))).await;
            continue;
        }
        out.clear();
        let mut batch = 0;
        while in_flight + batch < plan.pipeline && schedule.peek() <= now {
            if plan.take(1) == 0 {
                break;
            }
            framer.request(out);
            flight.due.borrow_mut().push_back((schedule.take(), now));
            batch += 1;
        }
        if batch == 0 {
            // The budget ran out between the checks above; the next pass sees it spent.
            continue;
        }
        if let Err(failed) = write(plan, conn, out).await {
            return Some(failed);
        }
    }
}

impl Plan {
    /// Whether `-n` was given and every request of it has been taken.
    pub fn budget_spent(&self) -> bool {
        self.budget
            .as_ref()
            .is_some_and(|b| b.load(Ordering::Relaxed) == 0)
    }
}

/// Resolves when fewer than `cap` requests are in flight (or none, once `draining`), or the
/// reader failed. Resolves at once if that is already so.
async fn room(flight: &Flight, cap: usize, draining: bool) {
    poll_fn(|cx| {
        let in_flight = flight.due.borrow().len();
        let failed = {
            let f = flight.failed.take();
            let is = f.is_some();
            flight.failed.set(f);
            is
        };
        let ready = if draining {
            in_flight == 0
        } else {
            in_flight < cap
        };
        if ready || failed {
            Poll::Ready(())
        } else {
            flight.writer.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    })
    .await;
}

/// Frames replies for the open-loop writer until the connection fails (then records why in
/// `flight.failed`); aborted by the writer when the run is over.
async fn read_replies(local: Rc<Local>, conn: Rc<TcpStream>, flight: Rc<Flight>, framer: Framer) {
    let mut inbox = Inbox::new();
    let failure = loop {
        match framer.reply(inbox.pending()) {
            Ok(Some(reply)) => {
                inbox.pos += reply.len;
                let Some((due, _sent)) = flight.due.borrow_mut().pop_front() else {
                    break ("protocol", "a reply to no request".to_string());
                };
                local.record(inbox.received, due, reply.error);
                flight.wake_writer();
                continue;
            }
            Ok(None) => {}
            Err(err) => break ("protocol", err.to_string()),
        }
        match inbox.fill(&conn).await {
            Ok(true) => {}
            Ok(false) => break ("dropped", "server closed the connection".into()),
            Err(err) => break ("dropped", err.to_string()),
        }
    };
    flight.failed.set(Some(failure));
    flight.wake_writer();
}
