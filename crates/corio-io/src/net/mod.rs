//! Sockets on the ring: TCP listeners and streams, UDP sockets, Unix-domain listeners and
//! streams, multishot accept and receive streams, and name resolution off the event loop.

mod addr;
mod copy;
mod recv;
pub(crate) mod socket;
mod stash;
mod tcp;
mod udp;
mod unix;
mod write;

pub use addr::{lookup_host, ToSocketAddrs};
pub use copy::{copy_bidirectional, Spliceable};
pub use recv::{Incoming, RecvStream};
pub use stash::Read;
pub(crate) use stash::ReadStash;
pub use tcp::{reuseport_listeners, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixListener, UnixStream};
pub use write::Write;
