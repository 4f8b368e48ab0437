//! Sockets: TCP listeners and streams on the ring.

mod recv;
mod tcp;

pub use recv::{Incoming, RecvStream};
pub use tcp::{TcpListener, TcpStream};
