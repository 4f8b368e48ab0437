//! Atomics from std, or from loom under `--cfg loom`, so that the cross-thread handshakes
//! (the doorbell's park flag against a remote queue) can be model-checked.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, Ordering};
