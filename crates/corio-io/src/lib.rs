//! corio-io: async files and sockets on corio-rt's io_uring ops.
//!
//! Every operation takes its buffer by value and returns it with the result, as in
//! `read(buf) -> (io::Result<usize>, B)`: the kernel may use a buffer until the op's final CQE,
//! so the op owns it until then, even if its future is dropped.
//!
//! Crate map:
//! - [`buf`]: the [`IoBuf`](buf::IoBuf) and [`IoBufMut`](buf::IoBufMut) traits and their impls
//!   (`Vec<u8>`, boxed slices, static slices, `Arc<[u8]>`, `Rc<[u8]>`, `bytes::Bytes` and
//!   `BytesMut`); [`Slice`](buf::Slice) windows, [`AlignedBuf`](buf::AlignedBuf) for
//!   `O_DIRECT`, provided-buffer rings ([`BufRing`](buf::BufRing)) and registered buffers
//!   ([`FixedBufPool`](buf::FixedBufPool)).
//! - [`fs`]: [`File`](fs::File) (positional reads and writes, and reads and writes at the file
//!   position for pipes, terminals and `/proc`), [`OpenOptions`](fs::OpenOptions),
//!   [`Metadata`](fs::Metadata) and std-like helpers ([`fs::read`], [`fs::write`],
//!   [`fs::rename`], ...).
//! - [`net`]: TCP ([`TcpListener`](net::TcpListener), [`TcpStream`](net::TcpStream)), UDP,
//!   Unix-domain sockets, multishot accept and receive streams, vectored and zero-copy sends,
//!   splice-based [`copy_bidirectional`](net::copy_bidirectional), name resolution off the loop.
//! - [`OwnedRead`] (with `read_exact`, `read_to_end`) over sockets and files, and
//!   [`BufReader`] for lines and delimited records.
//! - [`compat`]: [`Compat`](compat::Compat), tokio's, futures-io's and hyper's poll-based
//!   traits over corio streams (cargo features `tokio`, `futures-io`, `hyper`).
//! - `op`: the opcodes, one small `OpCode` impl each.
//!
//! Errors from connect, bind and file ops name the address or path they were about.

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
