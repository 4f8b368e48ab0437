//! What a run measured: per-core [`Stats`] (counts and an HDR latency histogram), merged into
//! one [`Report`] printed as a table or as JSON.
//!
//! Latencies are recorded in nanoseconds into an `hdrhistogram` with 3 significant digits
//! (every percentile within 0.1% of the exact value) from 1 ns to 1 hour, and shown in
//! microseconds.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Longest latency the histogram holds (larger values are clamped to it): one hour in ns.
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// The percentiles every report shows, as (label, quantile).
pub const PERCENTILES: [(&str, f64); 4] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
];

/// What one core measured.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Latency of every answered request (error replies included), in nanoseconds.
    pub latency: Histogram<u64>,
    /// Requests answered with a reply that is not an error.
    pub ok: u64,
    /// Requests answered with an error reply (RESP `-ERR`, HTTP status >= 400).
    pub error_replies: u64,
    /// Connection attempts that failed (refused, unreachable, timed out).
    pub connect_errors: u64,
    /// Established connections the server closed or reset while requests were in flight or
    /// being written.
    pub dropped: u64,
    /// Requests with no reply within the request timeout (their connection is then closed).
    pub timeouts: u64,
    /// Replies that did not parse; their connection is closed, as the stream is lost.
    pub protocol_errors: u64,
    /// Requests sent whose reply never came because their connection failed.
    pub lost: u64,
    /// Open loop: requests due before the end that were never sent, because the server (or
    /// the connection) fell behind the schedule.
    pub unsent: u64,
    /// The first error of each kind seen, for the message shown to the user.
    pub first_errors: Vec<String>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("valid histogram bounds"),
            ok: 0,
            error_replies: 0,
            connect_errors: 0,
            dropped: 0,
            timeouts: 0,
            protocol_errors: 0,
            lost: 0,
            unsent: 0,
            first_errors: Vec::new(),
        }
    }
}

impl Stats {
    /// Records one answered request that took `latency`.
    pub fn record(&mut self, latency: Duration, error_reply: bool) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency.saturating_record(ns.clamp(1, MAX_LATENCY_NS));
        if error_reply {
            self.error_replies += 1;
        } else {
            self.ok += 1;
        }
    }

    /// Keeps `message` if no error of this `kind` has been kept yet.
    pub fn note_error(&mut self, kind: &str, message: impl std::fmt::Display) {
        let prefix = format!("{kind}: ");
        if !self.first_errors.iter().any(|e| e.starts_with(&prefix)) {
            self.first_errors.push(format!("{prefix}{message}"));
        }
    }

    /// Adds `other`'s counts and latencies to these.
    pub fn merge(&mut self, other: &Stats) {
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds");
        self.ok += other.ok;
        self.error_replies += other.error_replies;
        self.connect_errors += other.connect_errors;
        self.dropped += other.dropped;
        self.timeouts += other.timeouts;
        self.protocol_errors += other.protocol_errors;
        self.lost += other.lost;
        self.unsent += other.unsent;
        for e in &other.first_errors {
            let kind = e.split(": ").next().unwrap_or("");
            self.note_error(kind, e.split_once(": ").map_or(e.as_str(), |(_, m)| m));
        }
    }

    /// Answered requests, error replies included.
    pub fn answered(&self) -> u64 {
        self.ok + self.error_replies
    }

    /// Every failure counted, of any kind: connection events (failed connects, dropped
    /// connections, unparsable replies) plus requests (error replies, timeouts, requests lost
    /// in flight, requests never sent). A dropped connection with one request in flight is two.
    pub fn errors(&self) -> u64 {
        self.error_replies
            + self.connect_errors
            + self.dropped
            + self.timeouts
            + self.protocol_errors
            + self.lost
            + self.unsent
    }
}

/// How the run was set up, for the report's header.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The address loaded.
    pub target: String,
    /// `echo 64B`, `http GET /`, `resp get 3B`...
    pub protocol: String,
    pub connections: usize,
    pub cores: usize,
    pub pipeline: usize,
    /// Requests per second asked for (open loop), or `None` (closed loop).
    pub rate: Option<f64>,
}

/// A finished run: its setup, how long it took, and every core's stats merged.
#[derive(Clone, Debug)]
pub struct Report {
    pub setup: Setup,
    pub elapsed: Duration,
    pub stats: Stats,
}

impl Report {
    /// Answered requests per second over the run.
    pub fn rate(&self) -> f64 {
        self.stats.answered() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at quantile `q` (0..=1) in microseconds; 0 with no sample.
    pub fn latency_us(&self, q: f64) -> f64 {
        if self.stats.latency.is_empty() {
            return 0.0;
        }
        self.stats.latency.value_at_quantile(q) as f64 / 1000.0
    }

    fn max_us(&self) -> f64 {
        self.stats.latency.max() as f64 / 1000.0
    }

    fn mean_us(&self) -> f64 {
        self.stats.latency.mean() / 1000.0
    }

    /// The report as a human-readable table.
    pub fn table(&self) -> String {
        let s = &self.setup;
        let st = &self.stats;
        let mode = match s.rate {
            Some(rate) if rate < 100.0 => format!("open loop at {rate:.2} req/s"),
            Some(rate) => format!("open loop at {rate:.0} req/s"),
            None => "closed loop".to_string(),
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "target {}  {}  {} connection{} on {} core{}  pipeline {}  {}",
            s.target,
            s.protocol,
            s.connections,
            if s.connections == 1 { "" } else { "s" },
            s.cores,
            if s.cores == 1 { "" } else { "s" },
            s.pipeline,
            mode
        );
        let _ = writeln!(
            out,
            "{} requests in {:.2} s: {:.0} req/s",
            st.answered(),
            self.elapsed.as_secs_f64(),
            self.rate()
        );
        if st.latency.is_empty() {
            let _ = writeln!(out, "latency (us)    - (no reply)");
        } else {
            let _ = writeln!(
                out,
                "latency (us)    p50 {:>10.1}  p90 {:>10.1}  p99 {:>10.1}  p99.9 {:>10.1}  max {:>10.1}  mean {:>10.1}",
                self.latency_us(0.5),
                self.latency_us(0.9),
                self.latency_us(0.99),
                self.latency_us(0.999),
                self.max_us(),
                self.mean_us(),
            );
        }
        let _ = writeln!(
            out,
            "errors {}: {} error replies, {} connect errors, {} dropped connections, {} timeouts, \
             {} protocol errors, {} requests lost in flight, {} due but never sent",
            st.errors(),
            st.error_replies,
            st.connect_errors,
            st.dropped,
            st.timeouts,
            st.protocol_errors,
            st.lost,
            st.unsent
        );
        for e in &st.first_errors {
            let _ = writeln!(out, "  first {e}");
        }
        out
    }

    /// The report as one JSON object (latencies in microseconds, rates per second).
    pub fn json(&self) -> serde_json::Value {
        let s = &self.setup;
        let st = &self.stats;
        // Every latency is null when nothing was answered.
        let answered = !st.latency.is_empty();
        let value = |v: f64| answered.then_some(v);
        let mut latency = serde_json::Map::new();
        for (label, q) in PERCENTILES {
            latency.insert(label.to_string(), value(self.latency_us(q)).into());
        }
        latency.insert("max".into(), value(self.max_us()).into());
        latency.insert("mean".into(), value(self.mean_us()).into());
        serde_json::json!({
            "target": s.target,
            "protocol": s.protocol,
            "connections": s.connections,
            "cores": s.cores,
            "pipeline": s.pipeline,
            "mode": if s.rate.is_some() { "open" } else { "closed" },
            "rate_requested": s.rate,
            "duration_s": self.elapsed.as_secs_f64(),
            "requests": st.answered(),
            "requests_per_s": self.rate(),
            "latency_us": latency,
            "errors": {
                "total": st.errors(),
                "error_replies": st.error_replies,
                "connect": st.connect_errors,
                "dropped": st.dropped,
                "timeouts": st.timeouts,
                "protocol": st.protocol_errors,
                "lost": st.lost,
                "unsent": st.unsent,
                "first": st.first_errors,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(stats: Stats) -> Report {
        Report {
            setup: Setup {
                target: "t".into(),
                protocol: "echo".into(),
                connections: 1,
                cores: 1,
                pipeline: 1,
                rate: None,
            },
            elapsed: Duration::from_secs(1),
            stats,
        }
    }

    #[test]
    fn percentiles_of_a_uniform_distribution_within_a_tenth_of_a_percent() {
        // 1..=100_000 us, once each, split over two "cores" and merged.
        let (mut a, mut b) = (Stats::default(), Stats::default());
        for us in 1..=100_000u64 {
            let stats = if us % 2 == 0 { &mut a } else { &mut b };
            stats.record(Duration::from_micros(us), false);
        }
        a.merge(&b);
        let r = report(a);
        for (q, exact) in [
            (0.5, 50_000.0),
            (0.9, 90_000.0),
            (0.99, 99_000.0),
            (0.999, 99_900.0),
        ] {
            let got = r.latency_us(q);
            assert!(
                (got - exact).abs() <= exact * 0.001,
                "q{q}: {got} us, exact {exact} us"
            );
        }
        assert!((r.max_us() - 100_000.0).abs() <= 100.0);
        assert!((r.mean_us() - 50_000.5).abs() <= 50.0);
        assert_eq!(r.stats.answered(), 100_000);
        assert_eq!(r.rate(), 100_000.0);
    }

    #[test]
    fn a_slow_tail_shows_in_the_high_percentiles_only() {
        // 99% at 100 us, 1% at 50 ms: p50 and p90 stay at 100 us, p99.9 is 50 ms.
        let mut s = Stats::default();
        for i in 0..10_000 {
            let us = if i % 100 == 0 { 50_000 } else { 100 };
            s.record(Duration::from_micros(us), false);
        }
        let r = report(s);
        assert!((r.latency_us(0.5) - 100.0).abs() < 0.1);
        assert!((r.latency_us(0.9) - 100.0).abs() < 0.1);
        assert!((r.latency_us(0.999) - 50_000.0).abs() < 50.0);
    }

    #[test]
    fn errors_are_counted_by_kind_and_shown() {
        let mut s = Stats::default();
        s.record(Duration::from_micros(5), true);
        s.connect_errors += 2;
        s.note_error("connect", "Connection refused (os error 111)");
        s.note_error("connect", "a second one is not kept");
        let mut total = Stats::default();
        total.merge(&s);
        total.merge(&s);
        assert_eq!(total.errors(), 6);
        assert_eq!(total.first_errors.len(), 1);
        let r = report(total);
        let json = r.json();
        assert_eq!(json["errors"]["connect"], 4);
        assert_eq!(json["errors"]["error_replies"], 2);
        assert!(r.table().contains("first connect: Connection refused"));
    }
}
