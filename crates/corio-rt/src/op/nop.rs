//! The `Nop` opcode: a round trip through the ring that does nothing, for tests and for
//! measuring the per-op cost of the driver.

use std::io;

use io_uring::{opcode, squeue};

use super::{Cqe, Op, OpCode};

/// `IORING_OP_NOP`.
pub struct Nop;

// SAFETY: a NOP SQE carries no pointers.
unsafe impl OpCode for Nop {
    const CODE: u8 = opcode::Nop::CODE;
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Nop::new().build()
    }

    fn complete(self, cqe: Cqe) -> io::Result<()> {
        cqe.result().map(drop)
    }
}

/// Submits an `IORING_OP_NOP` and waits for its CQE.
///
/// # Errors
/// None in practice; the kernel's result is returned as is.
///
/// # Cancellation
/// Dropping the future before completion cancels nothing costly: the NOP completes anyway.
///
/// # Examples
/// ```
/// corio::block_on(async { corio::rt::nop().await.unwrap() });
/// ```
pub fn nop() -> Op<Nop> {
    Op::new(Nop)
}
