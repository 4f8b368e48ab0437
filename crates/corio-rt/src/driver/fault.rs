//! The fault plan: a seeded, reproducible schedule of the faults io_uring can produce, so that
//! users can test their own code against them.
//!
//! The driver consults it at four points, and only when a plan is set (a runtime without one
//! pays a single `Option` check per submission and per reap):
//! - submitting a single-shot op: instead of queueing its SQE, post a CQE of `-ECANCELED`,
//!   `-EAGAIN` or `-EINTR` for it (the op never ran, exactly what the kernel promises for these
//!   errors, so no byte is consumed or lost), or shorten a read's or write's length so the kernel
//!   transfers fewer bytes (a short read or write);
//! - queueing any SQE: take the SQ-full path (submit and reap first) as if the SQ had no room;
//! - reaping: leave the CQ unread for one tick, so completions pile up and, with enough ops in
//!   flight, overflow it (the kernel keeps them, `FEAT_NODROP`, and the driver flushes them);
//! - reaping: hand the batch of CQEs to their ops in another order (each op's own CQEs keep
//!   their order, as the kernel guarantees for one multishot op).
//!
//! Errors are injected into single-shot ops that a future waits for, never into detached ops
//! (a detached CLOSE that never ran would leak its fd) nor into multishot ops.

use std::fmt;
use std::io;

use io_uring::{opcode, squeue};

use super::sqe::Sqe;

/// Which faults to inject and how often, from a seed: the same seed and the same program give
/// the same faults. Each rate is a probability in `0.0..=1.0`, per submission or per reap.
///
/// Set it on a runtime with [`Builder::faults`](crate::Builder::faults), or for any corio
/// program without recompiling through the `CORIO_FAULTS` environment variable, read when a
/// runtime or [`block_on`](crate::block_on) loop starts: `CORIO_FAULTS="seed=7,eintr=0.05,short=0.3"`
/// (keys `seed`, `ecanceled`, `eagain`, `eintr`, `short`, `sq_full`, `cq_hold`, `reorder`).
///
/// What corio does with each: `EINTR` and `EAGAIN` mean the kernel did nothing, and an op
/// submits itself again (up to 16 times in a row, then the error is returned); `ECANCELED` is
/// returned to the caller, as a cancellation by another party would be; short reads and writes
/// are returned as such (`write_all` and `read_exact` loops go on); the SQ-full, CQ-hold and
/// reorder faults are absorbed by the driver.
///
/// # Examples
/// ```
/// use corio::rt::{FaultPlan, Runtime};
/// let plan = FaultPlan::new(42).eintr(0.1).short_io(0.5).reorder(0.5);
/// let rt = Runtime::builder().cores(1).pin(false).faults(plan).build()?;
/// let done = rt.run(|_| async {
///     for _ in 0..100 {
///         corio::rt::nop().await.unwrap(); // EINTR is retried: every NOP succeeds
///     }
///     corio::rt::metrics().faults_injected
/// });
/// assert!(done[0] > 0);
/// # std::io::Result::Ok(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultPlan {
    seed: u64,
    ecanceled: f64,
    eagain: f64,
    eintr: f64,
    short_io: f64,
    sq_full: f64,
    cq_hold: f64,
    reorder: f64,
}

impl FaultPlan {
    /// A plan that injects nothing yet, drawing from `seed`.
    pub fn new(seed: u64) -> FaultPlan {
        FaultPlan {
            seed,
            ..FaultPlan::default()
        }
    }

    /// Rate of single-shot ops completed with `ECANCELED` without running.
    pub fn ecanceled(mut self, rate: f64) -> FaultPlan {
        self.ecanceled = rate;
        self
    }

    /// Rate of single-shot ops completed with `EAGAIN` without running.
    pub fn eagain(mut self, rate: f64) -> FaultPlan {
        self.eagain = rate;
        self
    }

    /// Rate of single-shot ops completed with `EINTR` without running.
    pub fn eintr(mut self, rate: f64) -> FaultPlan {
        self.eintr = rate;
        self
    }

    /// Rate of reads and writes (READ, WRITE, RECV, SEND and their fixed-buffer forms) whose
    /// length is cut to a random shorter one, so the kernel transfers fewer bytes.
    pub fn short_io(mut self, rate: f64) -> FaultPlan {
        self.short_io = rate;
        self
    }

    /// Rate of SQEs queued through the SQ-full path (submit and reap first).
    pub fn sq_full(mut self, rate: f64) -> FaultPlan {
        self.sq_full = rate;
        self
    }

    /// Rate of reaps skipped for a tick, leaving CQEs to pile up in the CQ (and overflow it when
    /// enough ops are in flight); at most 3 in a row, so completions always get through.
    pub fn cq_hold(mut self, rate: f64) -> FaultPlan {
        self.cq_hold = rate;
        self
    }

    /// Rate of reaped batches handed to their ops in a shuffled order.
    pub fn reorder(mut self, rate: f64) -> FaultPlan {
        self.reorder = rate;
        self
    }

    /// Every fault at `rate`, but `ECANCELED` (which fails the op it hits) left out: a plan
    /// under which a correct program still produces exactly its normal output.
    pub fn transparent(seed: u64, rate: f64) -> FaultPlan {
        FaultPlan::new(seed)
            .eagain(rate)
            .eintr(rate)
            .short_io(rate)
            .sq_full(rate)
            .cq_hold(rate)
            .reorder(rate)
    }

    /// The plan for core `index` of a runtime: the same rates, the seed moved by `index`.
    pub(crate) fn for_core(mut self, index: usize) -> FaultPlan {
        self.seed = self.seed.wrapping_add(index as u64);
        self
    }

    /// Parses `key=value` pairs separated by commas (the `CORIO_FAULTS` format).
    ///
    /// # Errors
    /// `InvalidInput` naming the key or value that is not understood, or a rate outside
    /// `0.0..=1.0`.
    pub fn parse(text: &str) -> io::Result<FaultPlan> {
        let mut plan = FaultPlan::default();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = |why: &str| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("CORIO_FAULTS: {why} in `{pair}`"),
                )
            };
            let (key, value) = pair.split_once('=').ok_or_else(|| bad("no `=`"))?;
            if key == "seed" {
                plan.seed = value.parse().map_err(|_| bad("not a number"))?;
                continue;
            }
            let rate: f64 = value.parse().map_err(|_| bad("not a rate"))?;
            if !(0.0..=1.0).contains(&rate) {
                return Err(bad("rate outside 0..=1"));
            }
            match key {
                "ecanceled" => plan.ecanceled = rate,
                "eagain" => plan.eagain = rate,
                "eintr" => plan.eintr = rate,
                "short" => plan.short_io = rate,
                "sq_full" => plan.sq_full = rate,
                "cq_hold" => plan.cq_hold = rate,
                "reorder" => plan.reorder = rate,
                _ => return Err(bad("unknown key")),
            }
        }
        Ok(plan)
    }

    /// The plan in `CORIO_FAULTS`, if the variable is set.
    ///
    /// # Errors
    /// As [`parse`](Self::parse).
    pub fn from_env() -> io::Result<Option<FaultPlan>> {
        match std::env::var("CORIO_FAULTS") {
            Ok(text) => FaultPlan::parse(&text).map(Some),
            Err(_) => Ok(None),
        }
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed={},ecanceled={},eagain={},eintr={},short={},sq_full={},cq_hold={},reorder={}",
            self.seed,
            self.ecanceled,
            self.eagain,
            self.eintr,
            self.short_io,
            self.sq_full,
            self.cq_hold,
            self.reorder
        )
    }
}

/// A plan being carried out: the plan and its random state (xorshift64*, seeded).
pub(crate) struct Faults {
    plan: FaultPlan,
    state: u64,
    /// Reaps skipped in a row (at most `MAX_HELD`, so completions always get through).
    held: u8,
}

/// Reaps the CQ-hold fault may skip in a row.
const MAX_HELD: u8 = 3;

/// What to do with a single-shot op's SQE.
pub(crate) enum Submission {
    /// Queue it (perhaps with a shortened length).
    Queue(squeue::Entry),
    /// Do not queue it: complete the op with this `-errno` instead.
    Fail(i32),
}

impl Faults {
    pub(crate) fn new(plan: FaultPlan) -> Faults {
        // A zero state would stay zero; mix the seed so nearby seeds differ at once.
        let state = plan.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        Faults {
            plan,
            state,
            held: 0,
        }
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `rate`.
    fn roll(&mut self, rate: f64) -> bool {
        rate > 0.0 && ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < rate
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Decides the fate of a single-shot op's SQE.
    pub(crate) fn submission(&mut self, sqe: squeue::Entry) -> Submission {
        for (rate, errno) in [
            (self.plan.ecanceled, libc::ECANCELED),
            (self.plan.eagain, libc::EAGAIN),
            (self.plan.eintr, libc::EINTR),
        ] {
            if self.roll(rate) {
                return Submission::Fail(-errno);
            }
        }
        if !self.roll(self.plan.short_io) {
            return Submission::Queue(sqe);
        }
        Submission::Queue(self.shorten(sqe))
    }

    /// Cuts the length of a plain read or write to a random shorter one (at least 1 byte).
    fn shorten(&mut self, sqe: squeue::Entry) -> squeue::Entry {
        let mut raw = Sqe::from(sqe);
        let shortenable = [
            opcode::Read::CODE,
            opcode::Write::CODE,
            opcode::Recv::CODE,
            opcode::Send::CODE,
            opcode::ReadFixed::CODE,
            opcode::WriteFixed::CODE,
        ];
        let len = raw.len();
        if shortenable.contains(&raw.opcode()) && len > 1 {
            raw.set_len(1 + self.below(u64::from(len - 1)) as u32);
        }
        raw.into_entry()
    }

    pub(crate) fn sq_full(&mut self) -> bool {
        self.roll(self.plan.sq_full)
    }

    /// Whether to skip this reap: at the plan's rate, and never more than `MAX_HELD` in a row.
    pub(crate) fn cq_hold(&mut self) -> bool {
        let hold = self.held < MAX_HELD && self.roll(self.plan.cq_hold);
        self.held = if hold { self.held + 1 } else { 0 };
        hold
    }

    /// Shuffles a reaped batch when the plan says so (true then): a random rank per op, then a
    /// stable sort, so ops change order and each op's own CQEs keep the kernel's order.
    pub(crate) fn reorder(&mut self, batch: &mut [(u64, crate::driver::Cqe)]) -> bool {
        if batch.len() < 2 || !self.roll(self.plan.reorder) {
            return false;
        }
        let mut ranks = std::collections::HashMap::new();
        for (user_data, _) in batch.iter() {
            ranks.entry(*user_data).or_insert_with(|| self.next());
        }
        batch.sort_by_key(|(user_data, _)| ranks[user_data]);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_env_format_and_refuses_nonsense() {
        let plan = FaultPlan::parse("seed=7, eintr=0.5,short=1,reorder=0").unwrap();
        assert_eq!(plan, FaultPlan::new(7).eintr(0.5).short_io(1.0));
        for bad in ["eintr", "eintr=2", "what=0.1", "seed=x"] {
            let err = FaultPlan::parse(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
            assert!(err.to_string().contains(bad), "{err}");
        }
        let text = FaultPlan::transparent(3, 0.25).to_string();
        assert_eq!(
            FaultPlan::parse(&text).unwrap(),
            FaultPlan::transparent(3, 0.25)
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_faults() {
        let draw = |seed| {
            let mut faults = Faults::new(FaultPlan::new(seed).eintr(0.3));
            (0..200)
                .map(|_| {
                    matches!(
                        faults.submission(opcode::Nop::new().build()),
                        Submission::Fail(_)
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        let hits = draw(5).into_iter().filter(|&f| f).count();
        assert!((30..90).contains(&hits), "{hits} of 200 at rate 0.3");
    }

    #[test]
    fn short_io_cuts_only_read_and_write_lengths() {
        let mut faults = Faults::new(FaultPlan::new(1).short_io(1.0));
        let mut buf = [0u8; 100];
        for _ in 0..100 {
            let read = opcode::Read::new(io_uring::types::Fd(0), buf.as_mut_ptr(), 100).build();
            let Submission::Queue(read) = faults.submission(read) else {
                panic!("no error was asked for")
            };
            let len = Sqe::from(read).len();
            assert!((1..100).contains(&len), "{len}");
        }
        let nop = opcode::Nop::new().build();
        let Submission::Queue(nop) = faults.submission(nop) else {
            panic!("no error was asked for")
        };
        assert_eq!(Sqe::from(nop).opcode(), opcode::Nop::CODE);
    }
}
