//! corio: a thread-per-core async runtime for Linux, built on io_uring.
//!
//! One event loop per CPU core, each on its own pinned thread with its own io_uring; nothing is
//! shared between cores unless sent as a message. The ideas are asyncio's: coroutines
//! (`async fn`), an event loop, tasks ([`spawn`]), gathering ([`join!`]) and non-blocking I/O.
//!
//! This crate re-exports: [`rt`] (corio-rt: the loop, tasks, timers, the runtime builder,
//! [`signal`]), [`io`], [`fs`] and [`net`] (corio-io: sockets, files, [`io::BufReader`],
//! [`io::OwnedRead`], and [`io::compat`] for tokio, futures-io and hyper behind the cargo
//! features `tokio`, `futures-io`, `hyper`), [`mesh`] (corio-mesh: `spawn_on`, channels,
//! `Sharded`), and the `#[corio::main]` / `#[corio::test]` attributes and [`select!`].
//!
//! New here? Read [`guide::from_asyncio`] or [`guide::from_tokio`].
//!
//! # Examples
//! ```
//! use std::time::Duration;
//! corio::block_on(async {
//!     let tasks: Vec<_> = (0..3u64)
//!         .map(|i| corio::spawn(async move {
//!             corio::time::sleep(Duration::from_millis(i)).await;
//!             i * 10
//!         }))
//!         .collect();
//!     let results = corio::join_all(tasks).await;
//!     let sum: u64 = results.into_iter().map(Result::unwrap).sum();
//!     assert_eq!(sum, 30);
//! });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use corio_io as io;
pub use corio_io::fs;
pub use corio_io::net;
pub use corio_macros::{main, test};
pub use corio_mesh as mesh;
pub use corio_rt as rt;
pub use corio_rt::{
    block_on, current_core, join, join_all, pin, raise_fd_limit, select, signal, spawn, time,
    try_join, try_join_all, yield_now, CoreId, Either, JoinError, JoinHandle, RunError, Runtime,
};

/// Guides for people arriving from other async runtimes; every example in them is compiled and
/// run as a test.
pub mod guide {
    #[doc = include_str!("../docs/from_asyncio.md")]
    pub mod from_asyncio {}

    #[doc = include_str!("../docs/from_tokio.md")]
    pub mod from_tokio {}
}

/// The README's examples, compiled as doc tests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
