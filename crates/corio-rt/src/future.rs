//! Gathering and racing futures: `join!`, `try_join!`, `join_all`, `try_join_all`, `select`
//! (two futures, an [`Either`] back) and the [`select!`](crate::select!) macro (any number, each
//! with its own branch).
//!
//! The gathering helpers are the futures crate's, re-exported: they allocate nothing per poll
//! (`join_all` allocates once, for its list), and asyncio's `gather` maps onto `join!` and
//! `join_all`; `select!` is asyncio's `wait(..., return_when=FIRST_COMPLETED)`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use futures_util::future::{join_all, select, try_join_all, Either};

/// Waits for the first of several futures and runs that one's branch; the others are dropped
/// (cancelled) unfinished.
///
/// Each branch is `PATTERN = FUTURE => EXPRESSION,` (commas between branches). The futures are
/// polled in the order written (biased: when several are ready, the first one wins), pinned in
/// place (no `pin!` or `Box::pin` needed, no `FusedFuture`), and the branch runs after the
/// others are dropped, so it may `return`, `break`, `continue` or use `?`. Patterns must be
/// irrefutable (bind a name, then `match` in the branch).
///
/// # Cancellation
/// The losing futures are dropped: an op-backed future that is cancel-safe (a socket `read`,
/// `accept`, a channel `recv`) loses nothing; see each op's docs.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// corio::block_on(async {
///     let (tx, rx) = corio::mesh::channel::<u32>(4);
///     tx.send(7).await.unwrap();
///     let got = corio::select! {
///         value = rx.recv() => value,
///         () = corio::time::sleep(Duration::from_secs(1)) => None,
///     };
///     assert_eq!(got, Some(7));
/// });
/// ```
#[macro_export]
macro_rules! select {
    ($($pattern:pat = $future:expr => $branch:expr),+ $(,)?) => {{
        let __corio_select_output = $crate::select!(@race $($future),+).await;
        $crate::select!(@branch __corio_select_output; $($pattern => $branch),+)
    }};
    (@race $future:expr) => {
        ::core::pin::pin!($future)
    };
    (@race $future:expr, $($rest:expr),+) => {
        $crate::__private::Biased::new(
            ::core::pin::pin!($future),
            $crate::select!(@race $($rest),+),
        )
    };
    (@branch $output:ident; $pattern:pat => $branch:expr) => {{
        let $pattern = $output;
        $branch
    }};
    (@branch $output:ident; $pattern:pat => $branch:expr, $($rest:tt)+) => {
        match $output {
            $crate::Either::Left($pattern) => $branch,
            $crate::Either::Right(__corio_select_rest) => {
                $crate::select!(@branch __corio_select_rest; $($rest)+)
            }
        }
    };
}

/// What `select!` expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    /// Two futures raced, the first one polled first.
    pub struct Biased<A, B> {
        first: A,
        second: B,
    }

    impl<A, B> Biased<A, B> {
        pub fn new(first: A, second: B) -> Biased<A, B> {
            Biased { first, second }
        }
    }

    impl<A: Future + Unpin, B: Future + Unpin> Future for Biased<A, B> {
        type Output = Either<A::Output, B::Output>;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            if let Poll::Ready(output) = Pin::new(&mut self.first).poll(cx) {
                return Poll::Ready(Either::Left(output));
            }
            Pin::new(&mut self.second).poll(cx).map(Either::Right)
        }
    }
}
