//! Sockets: TCP listeners and streams on the ring.

mod tcp;

pub use tcp::{TcpListener, TcpStream};
