//! Gathering and racing futures: `join!`, `try_join!`, `join_all`, `try_join_all`, `select`.
//!
//! These are the futures crate's, re-exported: they allocate nothing per poll (`join_all`
//! allocates once, for its list), and asyncio's `gather` maps onto `join!` and `join_all`.

pub use futures_util::future::{join_all, select, try_join_all, Either};
pub use futures_util::{join, pin_mut, try_join};
