//! Pacing an accept loop through failures such as EMFILE (out of file descriptors): the loop
//! keeps serving the clients it has, retries after a delay that doubles from 10 ms to 1 s while
//! accepts keep failing, and logs the first failure, then at most one line every 10 s with the
//! count, so a long outage cannot flood stderr.

use std::io;
use std::time::{Duration, Instant};

const FIRST_DELAY: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The failure state of one accept loop.
pub(crate) struct AcceptErrors {
    /// Names the loop in log lines (`core 0`, `embedded backend 1 on core 0`).
    place: String,
    delay: Duration,
    /// Failures since the last successful accept.
    failures: u64,
    /// Failures not yet reported in a log line.
    unlogged: u64,
    last_log: Option<Instant>,
}

impl AcceptErrors {
    pub(crate) fn new(place: String) -> AcceptErrors {
        AcceptErrors {
            place,
            delay: FIRST_DELAY,
            failures: 0,
            unlogged: 0,
            last_log: None,
        }
    }

    /// Records a successful accept; says so once if accepts had been failing.
    pub(crate) fn accepted(&mut self) {
        if self.failures > 0 {
            eprintln!(
                "db-proxy: accepting again on {} after {} failed accepts",
                self.place, self.failures
            );
        }
        self.delay = FIRST_DELAY;
        self.failures = 0;
        self.unlogged = 0;
        self.last_log = None;
    }

    /// Records a failed accept, logs it if due, and waits before the next try.
    pub(crate) async fn failed(&mut self, err: &io::Error) {
        self.failures += 1;
        self.unlogged += 1;
        let now = Instant::now();
        if self.last_log.is_none_or(|at| now - at >= LOG_EVERY) {
            eprintln!(
                "db-proxy: accept failed on {} ({} times since the last line): {err}; retrying \
                 every {:?} at most",
                self.place, self.unlogged, MAX_DELAY
            );
            self.unlogged = 0;
            self.last_log = Some(now);
        }
        corio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(MAX_DELAY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_to_a_ceiling_and_resets_on_success() {
        corio::block_on(async {
            let mut errors = AcceptErrors::new("test".into());
            let err = io::Error::from_raw_os_error(libc::EMFILE);
            for _ in 0..3 {
                errors.failed(&err).await;
            }
            assert_eq!(errors.delay, FIRST_DELAY * 8);
            assert_eq!(errors.failures, 3);
            // Only the first failure was logged; the next two wait for the next line.
            assert_eq!(errors.unlogged, 2);
            errors.accepted();
            assert_eq!(errors.delay, FIRST_DELAY);
            assert_eq!(errors.failures, 0);
        });
    }
}
