//! Bounded, typed channels between cores: many senders, one receiver, any cores.
//!
//! Messages travel through a crossbeam-channel array queue. A sender whose channel is full
//! awaits (its task parks; its thread goes on serving other tasks) and is woken when the
//! receiver takes a message; a receiver of an empty channel awaits until a message comes. Each
//! side registers its waker only when it has to wait, and the other side looks for one only
//! behind a flag, so a channel with no one waiting costs no lock. Dropping the receiver makes
//! every send fail with the message handed back, and hands the messages still queued back to
//! the senders ([`Sender::take_undelivered`]); dropping the last sender ends the receiver's
//! stream once it is drained.

use std::fmt;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use crossbeam_channel::{TryRecvError, TrySendError};

use crate::waiters::Waiters;

/// Creates a channel holding at most `capacity` messages (at least 1).
///
/// # Examples
/// ```
/// let rt = corio::Runtime::builder().cores(2).pin(false).build()?;
/// let (tx, rx) = corio::mesh::channel::<u64>(64);
/// let rx = std::sync::Mutex::new(Some(rx));
/// let tx = std::sync::Mutex::new(Some(tx));
/// let sums = rt.run(move |core| {
///     // Each core takes only its own end (a sender kept on core 1 would keep the stream open).
///     let (tx, rx) = match core.0 {
///         0 => (tx.lock().unwrap().take(), None),
///         _ => (None, rx.lock().unwrap().take()),
///     };
///     async move {
///         if core.0 == 0 {
///             let tx = tx.unwrap();
///             for i in 0..100 {
///                 tx.send(i).await.unwrap();
///             }
///             0
///         } else {
///             let rx = rx.unwrap();
///             let mut sum = 0;
///             while let Some(i) = rx.recv().await {
///                 sum += i;
///             }
///             sum
///         }
///     }
/// });
/// assert_eq!(sums, vec![0, 4950]);
/// # std::io::Result::Ok(())
/// ```
pub fn channel<T: Send>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let shared = Arc::new(Shared {
        tx,
        rx,
        senders: AtomicUsize::new(1),
        receiver_alive: AtomicBool::new(true),
        receiver_waiter: Waiters::default(),
        sender_waiters: Waiters::default(),
        undelivered: Mutex::new(Vec::new()),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    tx: crossbeam_channel::Sender<T>,
    rx: crossbeam_channel::Receiver<T>,
    senders: AtomicUsize,
    receiver_alive: AtomicBool,
    /// The receiver's task, while it waits for a message.
    receiver_waiter: Waiters,
    /// The senders' tasks, while they wait for room.
    sender_waiters: Waiters,
    /// Messages still queued when the receiver was dropped, for the senders to take back.
    undelivered: Mutex<Vec<T>>,
}

impl<T> Shared<T> {
    /// After a push: if the receiver was dropped meanwhile, its drain may have missed this
    /// message; move whatever is queued to the undelivered list so nothing is lost silently.
    fn after_push(&self) {
        if !self.receiver_alive.load(Ordering::SeqCst) {
            let mut undelivered = self.undelivered.lock().unwrap_or_else(|e| e.into_inner());
            undelivered.extend(self.rx.try_iter());
            return;
        }
        self.wake_receiver();
    }

    /// After a push: wake the receiver if it registered (Dekker with its re-check).
    fn wake_receiver(&self) {
        self.receiver_waiter.wake();
    }

    /// After a pop (or the receiver's drop): wake every waiting sender.
    fn wake_senders(&self) {
        self.sender_waiters.wake();
    }
}

/// The error of a send to a channel whose receiver is gone; it hands the message back.
#[derive(PartialEq, Eq)]
pub struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the receiving side of the channel is gone")
    }
}

impl<T> std::error::Error for SendError<T> {}

/// The sending side; clone it to send from several tasks or cores.
///
/// `Send + Sync` for `T: Send`, so it may go to any core or thread:
/// ```
/// fn send_sync<T: Send + Sync>() {}
/// send_sync::<corio::mesh::channel::Sender<String>>();
/// ```
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T: Send> Sender<T> {
    /// Sends `value`, waiting while the channel is full.
    ///
    /// # Errors
    /// [`SendError`] with the value when the receiver has been dropped (also while waiting).
    ///
    /// # Cancellation
    /// Dropping the future before it completes drops `value` unsent.
    pub async fn send(&self, value: T) -> Result<(), SendError<T>> {
        let mut value = Some(value);
        poll_fn(|cx| {
            let shared = &self.shared;
            loop {
                if !shared.receiver_alive.load(Ordering::SeqCst) {
                    return Poll::Ready(Err(SendError(value.take().expect("sent once"))));
                }
                match shared.tx.try_send(value.take().expect("sent once")) {
                    Ok(()) => {
                        shared.after_push();
                        return Poll::Ready(Ok(()));
                    }
                    Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => {
                        value = Some(back);
                    }
                }
                // Full: register, then look once more (the receiver may have just made room).
                shared.sender_waiters.register(cx.waker());
                if shared.tx.is_full() && shared.receiver_alive.load(Ordering::SeqCst) {
                    return Poll::Pending;
                }
            }
        })
        .await
    }

    /// Sends `value` if there is room now.
    ///
    /// # Errors
    /// `Err(value)` if the channel is full or the receiver is gone.
    pub fn try_send(&self, value: T) -> Result<(), T> {
        if !self.shared.receiver_alive.load(Ordering::SeqCst) {
            return Err(value);
        }
        match self.shared.tx.try_send(value) {
            Ok(()) => {
                self.shared.after_push();
                Ok(())
            }
            Err(TrySendError::Full(v) | TrySendError::Disconnected(v)) => Err(v),
        }
    }

    /// Takes back the messages that were sent but still queued when the receiver was dropped
    /// (its core shut down, say), oldest first; empty while the receiver lives. Nothing sent is
    /// lost silently: each message was received, is returned here, or came back in a
    /// [`SendError`].
    pub fn take_undelivered(&self) -> Vec<T> {
        std::mem::take(
            &mut *self
                .shared
                .undelivered
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Whether the receiver has been dropped.
    pub fn is_closed(&self) -> bool {
        !self.shared.receiver_alive.load(Ordering::SeqCst)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.shared.senders.fetch_add(1, Ordering::SeqCst);
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The last sender: a waiting receiver must see the end of the stream.
            self.shared.receiver_waiter.wake_all();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field(
                "closed",
                &!self.shared.receiver_alive.load(Ordering::SeqCst),
            )
            .finish()
    }
}

/// The receiving side. There is one; it may move to any core before it is first used.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T: Send> Receiver<T> {
    /// The next message, waiting while the channel is empty; `None` once every sender is gone
    /// and the channel is drained.
    pub async fn recv(&self) -> Option<T> {
        poll_fn(|cx| {
            let shared = &self.shared;
            loop {
                match shared.rx.try_recv() {
                    Ok(value) => {
                        shared.wake_senders();
                        return Poll::Ready(Some(value));
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => {}
                }
                if shared.senders.load(Ordering::SeqCst) == 0 {
                    // Every sender is gone; anything sent before is already in the queue.
                    return match shared.rx.try_recv() {
                        Ok(value) => Poll::Ready(Some(value)),
                        Err(_) => Poll::Ready(None),
                    };
                }
                shared.receiver_waiter.register_sole(cx.waker());
                if shared.rx.is_empty() && shared.senders.load(Ordering::SeqCst) > 0 {
                    return Poll::Pending;
                }
            }
        })
        .await
    }

    /// The next message if one is queued now.
    pub fn try_recv(&self) -> Option<T> {
        let value = self.shared.rx.try_recv().ok()?;
        self.shared.wake_senders();
        Some(value)
    }

    /// Messages queued now.
    pub fn len(&self) -> usize {
        self.shared.rx.len()
    }

    /// Whether no message is queued now.
    pub fn is_empty(&self) -> bool {
        self.shared.rx.is_empty()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.receiver_alive.store(false, Ordering::SeqCst);
        // Sends racing with this drain fail (the flag is down) or land in the queue before it
        // is drained; anything queued goes to the senders' undelivered list.
        let mut undelivered = self
            .shared
            .undelivered
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        undelivered.extend(self.shared.rx.try_iter());
        drop(undelivered);
        self.shared.sender_waiters.wake_all();
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("queued", &self.shared.rx.len())
            .finish()
    }
}
