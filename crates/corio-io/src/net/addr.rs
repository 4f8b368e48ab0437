//! Socket addresses: what `connect` and `lookup_host` accept, and name resolution off the
//! event loop.
//!
//! A literal address (`"127.0.0.1:6379"`, `"[::1]:80"`, a `SocketAddr`) is parsed in place. A
//! name (`"localhost:6379"`) is resolved by the standard library's `getaddrinfo` on a helper
//! thread, so a slow DNS server never stalls the core; the waiting task is woken from that
//! thread.

use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

/// Something that names one or more socket addresses: a `SocketAddr`, an `(ip, port)` pair, or
/// a `"host:port"` string. Sealed: implemented only here.
pub trait ToSocketAddrs: sealed::Sealed {}

mod sealed {
    use super::Target;

    /// How the address is obtained.
    pub trait Sealed {
        fn target(self) -> Target;
    }
}

/// An address known now, or a name to resolve.
#[doc(hidden)]
pub enum Target {
    Ready(Vec<SocketAddr>),
    Name(String),
}

macro_rules! ready_addr {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {
            fn target(self) -> Target {
                Target::Ready(vec![SocketAddr::from(self)])
            }
        }
        impl ToSocketAddrs for $t {}
    )*};
}

ready_addr!(
    SocketAddr,
    SocketAddrV4,
    SocketAddrV6,
    (IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16)
);

impl sealed::Sealed for &str {
    fn target(self) -> Target {
        match self.parse::<SocketAddr>() {
            Ok(addr) => Target::Ready(vec![addr]),
            Err(_) => Target::Name(self.to_owned()),
        }
    }
}
impl ToSocketAddrs for &str {}

impl sealed::Sealed for String {
    fn target(self) -> Target {
        self.as_str().target()
    }
}
impl ToSocketAddrs for String {}

impl sealed::Sealed for &String {
    fn target(self) -> Target {
        self.as_str().target()
    }
}
impl ToSocketAddrs for &String {}

impl sealed::Sealed for (&str, u16) {
    fn target(self) -> Target {
        match self.0.parse::<IpAddr>() {
            Ok(ip) => Target::Ready(vec![SocketAddr::new(ip, self.1)]),
            Err(_) => Target::Name(format!("{}:{}", self.0, self.1)),
        }
    }
}
impl ToSocketAddrs for (&str, u16) {}

impl sealed::Sealed for &[SocketAddr] {
    fn target(self) -> Target {
        Target::Ready(self.to_vec())
    }
}
impl ToSocketAddrs for &[SocketAddr] {}

/// Resolves `addr` to its socket addresses: at once for a literal, on a helper thread (with
/// the standard library's resolver) for a name.
///
/// # Errors
/// The resolver's error, e.g. for an unknown host; `InvalidInput` when `addr` has no port or
/// resolves to nothing.
///
/// # Examples
/// ```
/// corio::block_on(async {
///     let addrs = corio::net::lookup_host("localhost:6379").await.unwrap();
///     assert!(addrs.iter().all(|a| a.port() == 6379 && a.ip().is_loopback()));
/// });
/// ```
pub async fn lookup_host(addr: impl ToSocketAddrs) -> io::Result<Vec<SocketAddr>> {
    let addrs = match addr.target() {
        Target::Ready(addrs) => addrs,
        Target::Name(name) => resolve_off_loop(name).await?,
    };
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "address resolved to nothing",
        ));
    }
    Ok(addrs)
}

type Slot = Arc<Mutex<(Option<io::Result<Vec<SocketAddr>>>, Option<Waker>)>>;

async fn resolve_off_loop(name: String) -> io::Result<Vec<SocketAddr>> {
    let slot: Slot = Arc::new(Mutex::new((None, None)));
    let theirs = slot.clone();
    std::thread::Builder::new()
        .name("corio-resolve".to_owned())
        .spawn(move || {
            let result = std::net::ToSocketAddrs::to_socket_addrs(&name).map(Iterator::collect);
            let mut slot = theirs.lock().unwrap_or_else(|e| e.into_inner());
            slot.0 = Some(result);
            if let Some(waker) = slot.1.take() {
                waker.wake();
            }
        })?;
    poll_fn(|cx| {
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        match slot.0.take() {
            Some(result) => Poll::Ready(result),
            None => {
                slot.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    })
    .await
}
