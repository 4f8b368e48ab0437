//! The open-loop schedule: when each request of a connection is due.
//!
//! A connection sending `rate` requests per second has request `i` due at
//! `start + (i + phase) / rate`. The phase (0..1) staggers connections so that together they
//! send evenly rather than in bursts. Latency is measured from the due time, not from when the
//! request was written, so a server that stalls is charged for every request it delayed, also
//! those the load generator could not send while waiting (coordinated omission, as wrk2
//! corrects it).

use std::time::{Duration, Instant};

/// The furthest a due time may lie from the start, in seconds (about 30 years): keeps tiny
/// rates from overflowing `Instant`.
const MAX_OFFSET_SECS: f64 = 1e9;

/// The due times of one connection's requests.
#[derive(Clone, Debug)]
pub struct Schedule {
    start: Instant,
    /// Seconds between two requests.
    interval: f64,
    phase: f64,
    next: u64,
}

impl Schedule {
    /// `rate` requests per second (must be > 0) from `start`, offset by `phase` intervals.
    pub fn new(start: Instant, rate: f64, phase: f64) -> Schedule {
        assert!(rate > 0.0, "an open-loop rate must be positive");
        Schedule {
            start,
            interval: 1.0 / rate,
            phase: phase.clamp(0.0, 1.0),
            next: 0,
        }
    }

    /// When request `i` is due (at most about 30 years from the start).
    pub fn due(&self, i: u64) -> Instant {
        let secs = ((i as f64 + self.phase) * self.interval).min(MAX_OFFSET_SECS);
        self.start + Duration::from_secs_f64(secs)
    }

    /// How many requests are due strictly before `t`.
    pub fn due_before(&self, t: Instant) -> u64 {
        let secs = t.saturating_duration_since(self.start).as_secs_f64();
        let count = (secs / self.interval - self.phase).ceil();
        if count <= 0.0 {
            0
        } else {
            count.min(u64::MAX as f64) as u64
        }
    }

    /// How many requests have been taken.
    pub fn taken(&self) -> u64 {
        self.next
    }

    /// Passes over the next `n` requests without taking them.
    pub fn skip(&mut self, n: u64) {
        self.next = self.next.saturating_add(n);
    }

    /// When the next request not yet taken is due.
    pub fn peek(&self) -> Instant {
        self.due(self.next)
    }

    /// Takes the next request: its due time.
    pub fn take(&mut self) -> Instant {
        let due = self.peek();
        self.next += 1;
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_due_at_the_rate_from_the_start() {
        let start = Instant::now();
        let mut s = Schedule::new(start, 1000.0, 0.0);
        assert_eq!(s.take(), start);
        assert_eq!(s.take(), start + Duration::from_millis(1));
        assert_eq!(s.due(1000), start + Duration::from_secs(1));
    }

    #[test]
    fn due_times_do_not_drift_however_late_they_are_taken() {
        // The schedule is a function of the index: taking late does not shift later requests.
        let start = Instant::now();
        let mut s = Schedule::new(start, 3.0, 0.5);
        for _ in 0..299 {
            s.take();
        }
        let due = s.take();
        let want = start + Duration::from_secs_f64(299.5 / 3.0);
        let diff = if due > want { due - want } else { want - due };
        assert!(diff < Duration::from_micros(1), "{diff:?}");
    }

    #[test]
    fn due_before_counts_requests_due_strictly_before() {
        let start = Instant::now();
        let s = Schedule::new(start, 1000.0, 0.5);
        // Due at 0.5 ms, 1.5 ms, 2.5 ms...
        assert_eq!(s.due_before(start), 0);
        assert_eq!(s.due_before(start + Duration::from_micros(500)), 0);
        assert_eq!(s.due_before(start + Duration::from_micros(501)), 1);
        assert_eq!(s.due_before(start + Duration::from_millis(1000)), 1000);
        let mut s = s;
        s.skip(3);
        assert_eq!(s.taken(), 3);
        assert_eq!(s.peek(), s.due(3));
    }

    #[test]
    fn tiny_rates_do_not_overflow() {
        let start = Instant::now();
        let s = Schedule::new(start, 1e-300, 0.0);
        assert!(s.due(5) > start);
        assert_eq!(s.due_before(start + Duration::from_secs(3600)), 1);
    }

    #[test]
    fn phases_stagger_connections_within_one_interval() {
        let start = Instant::now();
        let a = Schedule::new(start, 10.0, 0.0);
        let b = Schedule::new(start, 10.0, 0.5);
        assert_eq!(b.due(0) - a.due(0), Duration::from_millis(50));
    }
}
