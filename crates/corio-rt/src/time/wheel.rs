//! The deadline store of one core: insert, cancel and re-arm in O(log n), the next deadline in
//! O(log n), expiry in deadline order.
//!
//! A `BTreeMap` keyed by `(deadline, sequence)` keeps timers sorted, so the loop can bound its
//! wait by the earliest one and fire them in order; the sequence number makes keys unique, so
//! two timers with one deadline fire in the order they were set.

use std::collections::BTreeMap;
use std::task::Waker;
use std::time::Instant;

/// The key of one registered timer.
pub(crate) type TimerKey = (Instant, u64);

/// Every pending timer of a core.
#[derive(Default)]
pub(crate) struct Wheel {
    timers: BTreeMap<TimerKey, Waker>,
    next_seq: u64,
}

impl Wheel {
    pub(crate) fn insert(&mut self, deadline: Instant, waker: Waker) -> TimerKey {
        let key = (deadline, self.next_seq);
        self.next_seq += 1;
        self.timers.insert(key, waker);
        key
    }

    /// Replaces the waker of a timer that is still pending; false if it has fired or gone.
    pub(crate) fn update(&mut self, key: TimerKey, waker: &Waker) -> bool {
        match self.timers.get_mut(&key) {
            Some(old) => {
                if !old.will_wake(waker) {
                    *old = waker.clone();
                }
                true
            }
            None => false,
        }
    }

    pub(crate) fn remove(&mut self, key: TimerKey) {
        self.timers.remove(&key);
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers
            .first_key_value()
            .map(|((deadline, _), _)| *deadline)
    }

    pub(crate) fn has_expired(&self, now: Instant) -> bool {
        self.next_deadline().is_some_and(|deadline| deadline <= now)
    }

    /// Removes every timer due at `now` and returns their wakers, earliest first.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Waker> {
        let mut due = Vec::new();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        due
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.timers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Duration;

    struct Flag(std::sync::atomic::AtomicUsize, usize);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(self.1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn waker(tag: usize) -> (Waker, Arc<Flag>) {
        let flag = Arc::new(Flag(Default::default(), tag));
        (Waker::from(flag.clone()), flag)
    }

    #[test]
    fn expires_in_deadline_order_and_cancels() {
        let base = Instant::now();
        let mut wheel = Wheel::default();
        let mut keys = Vec::new();
        for ms in [30u64, 10, 20, 10] {
            keys.push(wheel.insert(base + Duration::from_millis(ms), waker(ms as usize).0));
        }
        wheel.remove(keys[2]); // the 20 ms one
        assert_eq!(
            wheel.next_deadline(),
            Some(base + Duration::from_millis(10))
        );
        assert!(wheel.expire(base + Duration::from_millis(9)).is_empty());
        assert_eq!(wheel.expire(base + Duration::from_millis(25)).len(), 2);
        assert_eq!(
            wheel.next_deadline(),
            Some(base + Duration::from_millis(30))
        );
        assert!(!wheel.update(keys[1], &waker(0).0));
        assert!(wheel.update(keys[0], &waker(0).0));
    }
}
