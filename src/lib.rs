//! corio: a thread-per-core async runtime for Linux, built on io_uring.
//!
//! One event loop per CPU core, each on its own pinned thread with its own io_uring; nothing is
//! shared between cores unless sent as a message. The ideas are asyncio's: coroutines
//! (`async fn`), an event loop, tasks ([`spawn`]), gathering ([`join!`]) and non-blocking I/O.
//!
//! This crate only re-exports: [`rt`] (corio-rt: the loop, tasks, timers, the runtime
//! builder), [`io`], [`fs`] and [`net`] (corio-io) and [`mesh`] (corio-mesh).
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

/// The README's examples, compiled as doc tests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
