//! corio-io: async sockets (and, later, files) on corio-rt's io_uring ops.
//!
//! Every operation takes its buffer by value and returns it with the result, as in
//! `read(buf) -> (io::Result<usize>, B)`: the kernel may use a buffer until the op's final CQE,
//! so the op owns it until then, even if its future is dropped.
//!
//! Crate map:
//! - [`buf`]: the [`IoBuf`](buf::IoBuf) and [`IoBufMut`](buf::IoBufMut) traits and their impls.
//! - `op`: the opcodes (ACCEPT, CONNECT, RECV, SEND), one small `OpCode` impl each.
//! - [`net`]: [`TcpListener`](net::TcpListener) and [`TcpStream`](net::TcpStream).
//!
//! Not yet here (see the README's status table): files, UDP and Unix sockets, vectored I/O,
//! provided-buffer rings and multishot receive, registered buffers, zero-copy send, splice.

#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs, unreachable_pub)]

pub mod buf;
pub mod net;
mod op;
