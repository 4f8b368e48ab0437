//! The opcodes of corio-io, each a small `OpCode` impl: how to build its SQE from what it owns,
//! and what its CQE means.

pub(crate) mod fixed;
pub(crate) mod fs;
pub(crate) mod msg;
pub(crate) mod net;
pub(crate) mod rw;
pub(crate) mod splice;
