//! The waiting half of the channel's handshake: a side that must wait registers its waker
//! here, and the other side, after changing the queue, wakes whoever registered. Written once
//! for the receiver (waiting for a message) and the senders (waiting for room).
//!
//! The handshake is a Dekker pattern over SeqCst fences: a waiter registers (waker, then the
//! flag), fences, and looks at the queue once more before it returns `Pending`; a waker changes
//! the queue, fences, and looks at the flag. One of the two always sees the other's write, so a
//! waiter never sleeps on a queue that changed under it. A flag nobody set costs the waking
//! side one load and no lock. The loom models below check it against a queue modelled as a
//! counter (run with `RUSTFLAGS="--cfg loom" cargo test -p corio-mesh --lib --release loom`).

use std::task::Waker;

use crate::sync::{fence, AtomicBool, Mutex, Ordering};

/// The wakers of the tasks waiting for one side of a channel, behind a flag.
#[derive(Default)]
pub(crate) struct Waiters {
    waiting: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Waiters {
    /// Registers `waker` (once per task) and publishes that someone waits. The caller must
    /// look at the queue once more afterwards and wait only if it is still unchanged.
    pub(crate) fn register(&self, waker: &Waker) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
        drop(wakers);
        self.publish();
    }

    /// As [`register`](Self::register), for a side with one task (the receiver): `waker`
    /// replaces whatever was registered, so a task that moves leaves no stale waker behind.
    pub(crate) fn register_sole(&self, waker: &Waker) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        match wakers.as_mut_slice() {
            [only] if only.will_wake(waker) => {}
            _ => {
                wakers.clear();
                wakers.push(waker.clone());
            }
        }
        drop(wakers);
        self.publish();
    }

    /// Raises the flag and orders it before the caller's second look at the queue.
    fn publish(&self) {
        self.waiting.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Wakes every registered waiter, if any registered since the last wake. Call after
    /// changing the queue.
    pub(crate) fn wake(&self) {
        fence(Ordering::SeqCst);
        // A plain load first: while messages stream, nobody waits, and the flag's cache line
        // stays shared instead of bouncing between cores on every message. Then a
        // compare-exchange, not a swap: the same effect, and loom models it correctly (a swap
        // racing a store is mis-modelled in loom 0.7: tokio-rs/loom#254).
        if self.waiting.load(Ordering::SeqCst)
            && self
                .waiting
                .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            self.wake_all();
        }
    }

    /// Wakes every registered waiter, flag or not (the other side is gone for good).
    pub(crate) fn wake_all(&self) {
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|e| e.into_inner()));
        for waker in wakers {
            waker.wake();
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use std::sync::Arc as StdArc;
    use std::task::{Wake, Waker};

    use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use loom::sync::Arc;

    use super::Waiters;

    /// A waker that records that it was woken.
    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: StdArc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A receiver finds the queue empty, registers and looks again; a sender pushes and wakes.
    /// In every interleaving the receiver either sees the message or is woken.
    #[test]
    fn loom_a_waiting_receiver_sees_the_message_or_is_woken() {
        loom::model(|| {
            let queue = Arc::new(AtomicUsize::new(0));
            let waiters = Arc::new(Waiters::default());
            let sender = {
                let (queue, waiters) = (queue.clone(), waiters.clone());
                loom::thread::spawn(move || {
                    queue.fetch_add(1, Ordering::SeqCst); // try_send succeeded
                    waiters.wake();
                })
            };
            let flag = StdArc::new(Flag(AtomicBool::new(false)));
            let waker = Waker::from(flag.clone());
            let sleeps = if queue.load(Ordering::SeqCst) > 0 {
                false
            } else {
                waiters.register_sole(&waker);
                queue.load(Ordering::SeqCst) == 0 // still empty: Pending
            };
            sender.join().unwrap();
            assert!(
                !sleeps || flag.0.load(Ordering::SeqCst),
                "slept through a message"
            );
        });
    }

    /// Two senders find a full queue and wait; the receiver pops one message and wakes. Each
    /// sender either sees room or is woken.
    #[test]
    fn loom_waiting_senders_see_room_or_are_woken() {
        loom::model(|| {
            let queue = Arc::new(AtomicUsize::new(1)); // capacity 1, full
            let waiters = Arc::new(Waiters::default());
            let receiver = {
                let (queue, waiters) = (queue.clone(), waiters.clone());
                loom::thread::spawn(move || {
                    queue.fetch_sub(1, Ordering::SeqCst); // try_recv took the message
                    waiters.wake();
                })
            };
            let flags: Vec<_> = (0..2)
                .map(|_| StdArc::new(Flag(AtomicBool::new(false))))
                .collect();
            let mut sleeping = Vec::new();
            for flag in &flags {
                let waker = Waker::from(flag.clone());
                if queue.load(Ordering::SeqCst) == 1 {
                    waiters.register(&waker);
                    if queue.load(Ordering::SeqCst) == 1 {
                        sleeping.push(flag.clone());
                    }
                }
            }
            receiver.join().unwrap();
            for flag in sleeping {
                assert!(
                    flag.0.load(Ordering::SeqCst),
                    "a sender slept through the room"
                );
            }
        });
    }
}
