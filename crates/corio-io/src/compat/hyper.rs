//! hyper 1.x on corio (feature `hyper`): `rt::Read`/`rt::Write` for [`Compat`], an
//! [`HyperExecutor`] that spawns hyper's background futures on the current core, and a
//! [`HyperTimer`] on corio's timers, so hyper's timeouts (`header_read_timeout`, keep-alive)
//! work.
//!
//! # Examples
//! An HTTP/1 server on one core, with a 5 s limit for a request's headers:
//! ```no_run
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use corio::io::compat::{Compat, HyperTimer};
//! use hyper::{body::Incoming, Request, Response};
//!
//! async fn hello(_: Request<Incoming>) -> Result<Response<String>, Infallible> {
//!     Ok(Response::new("hello\n".to_owned()))
//! }
//!
//! # corio::block_on(async {
//! let listener = corio::net::TcpListener::bind("127.0.0.1:8080")?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     corio::spawn(async move {
//!         let served = hyper::server::conn::http1::Builder::new()
//!             .timer(HyperTimer)
//!             .header_read_timeout(Duration::from_secs(5))
//!             .serve_connection(Compat::new(stream), hyper::service::service_fn(hello))
//!             .await;
//!         if let Err(err) = served {
//!             eprintln!("connection: {err}");
//!         }
//!     })
//!     .detach();
//! }
//! # #[allow(unreachable_code)]
//! # std::io::Result::Ok(()) }).unwrap();
//! ```

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use super::{Compat, CompatStream};

impl<S: CompatStream> hyper::rt::Read for Compat<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // SAFETY: `poll_recv` only writes bytes into the cursor's unfilled part, never
        // de-initialising any.
        let n = ready!(this.poll_recv(cx, unsafe { buf.as_mut() }))?;
        // SAFETY: the first `n` bytes of the unfilled part were just written.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl<S: CompatStream> hyper::rt::Write for Compat<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown_write())
    }
}

/// hyper's executor on corio: each future hyper hands it (an HTTP/2 stream, a client
/// connection's background task) becomes a task of the current core, `!Send` allowed.
///
/// # Panics
/// `execute` panics outside a corio core, as [`corio::spawn`](corio_rt::spawn) does.
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperExecutor;

impl<F> hyper::rt::Executor<F> for HyperExecutor
where
    F: Future + 'static,
{
    fn execute(&self, future: F) {
        corio_rt::spawn(async move {
            future.await;
        })
        .detach();
    }
}

/// hyper's timer on corio's per-core timers: what `header_read_timeout`, keep-alive timeouts
/// and HTTP/2 keep-alive pings wait on. Its sleeps register with the core that polls them.
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperTimer;

impl hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(corio_rt::time::sleep(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(corio_rt::time::sleep_until(deadline)))
    }
}

/// A corio sleep as hyper's `Sleep`.
struct HyperSleep(corio_rt::time::Sleep);

impl Future for HyperSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl hyper::rt::Sleep for HyperSleep {}
