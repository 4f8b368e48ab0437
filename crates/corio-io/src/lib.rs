//! corio-io: async files and sockets on corio-rt's io_uring ops.
//!
//! Every operation takes its buffer by value and returns it with the result, as in
//! `read(buf) -> (io::Result<usize>, B)`: the kernel may use a buffer until the op's final CQE,
//! so the op owns it until then, even if its future is dropped.
//!
//! Crate map:
//! - [`buf`]: the [`IoBuf`](buf::IoBuf) and [`IoBufMut`](buf::IoBufMut) traits and their impls;
//!   [`Slice`](buf::Slice) windows and [`AlignedBuf`](buf::AlignedBuf) for `O_DIRECT`.
//! - `op`: the opcodes (ACCEPT, CONNECT, RECV, SEND; OPENAT, READ, WRITE, READV, WRITEV, FSYNC,
//!   FALLOCATE, STATX, CLOSE, UNLINKAT, RENAMEAT, MKDIRAT), one small `OpCode` impl each.
//! - [`fs`]: [`File`](fs::File), [`OpenOptions`](fs::OpenOptions), [`Metadata`](fs::Metadata)
//!   and std-like helpers ([`fs::read`], [`fs::write`], [`fs::rename`], ...).
//! - [`net`]: [`TcpListener`](net::TcpListener) and [`TcpStream`](net::TcpStream).
//!
//! Not yet here (see the README's status table): UDP and Unix sockets, vectored socket I/O,
//! provided-buffer rings and multishot receive, registered buffers, zero-copy send, splice.

#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs, unreachable_pub)]

pub mod buf;
mod bufread;
pub mod compat;
mod error;
pub mod fs;
pub mod net;
mod op;
mod read;

pub use bufread::{BufReader, Lines};
pub use read::OwnedRead;
