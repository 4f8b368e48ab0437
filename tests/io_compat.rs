//! corio::io::compat on real sockets: tokio's and futures-io's traits byte-exact under
//! back-pressure, a write re-polled with different bytes after `Pending` (as h2 does), bytes a
//! dropped native read kept returned first, and hyper's HTTP/2 (client and server on corio,
//! with HyperExecutor and HyperTimer) echoing concurrent requests.

mod support;

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use corio::io::compat::{Compat, HyperExecutor, HyperTimer};
use corio::net::{TcpListener, TcpStream};
use support::pattern;

/// A connected pair of corio streams on loopback.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connect = corio::spawn(async move { TcpStream::connect(addr).await.unwrap() });
    let (server, _) = listener.accept().await.unwrap();
    (server, connect.await.unwrap())
}

#[test]
fn tokio_traits_are_byte_exact_under_back_pressure() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let data = pattern(8 << 20, 1);
    corio::block_on(async move {
        let (a, b) = pair().await;
        let (mut a, mut b) = (Compat::new(a), Compat::new(b));
        let sent = data.clone();
        // The writer outruns the reader, which sleeps now and then: writes hit EAGAIN and wait
        // on POLL_ADD.
        let writer = corio::spawn(async move {
            for piece in sent.chunks(100_003) {
                a.write_all(piece).await.unwrap();
            }
            a.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        loop {
            let n = b.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.len() % 7 == 0 {
                corio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        writer.await.unwrap();
        assert!(got == data, "bytes differ");
    });
}

#[test]
fn futures_io_traits_round_trip() {
    use futures::{AsyncReadExt, AsyncWriteExt};
    let data = pattern(1 << 20, 2);
    corio::block_on(async move {
        let (a, b) = pair().await;
        let (mut a, mut b) = (Compat::new(a), Compat::new(b));
        let sent = data.clone();
        let writer = corio::spawn(async move {
            a.write_all(&sent).await.unwrap();
            a.close().await.unwrap();
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert!(got == data);
    });
}

#[test]
fn a_write_re_polled_with_other_bytes_after_pending_sends_only_what_it_accepted() {
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    corio::block_on(async {
        let (a, b) = pair().await;
        let (mut a, mut b) = (Compat::new(a), Compat::new(b));
        // Fill the socket until a write is Pending, noting every accepted byte.
        let mut expected = Vec::new();
        let first = vec![b'A'; 256 * 1024];
        loop {
            let polled = poll_fn(|cx| Poll::Ready(Pin::new(&mut a).poll_write(cx, &first))).await;
            match polled {
                Poll::Ready(Ok(n)) => expected.extend_from_slice(&first[..n]),
                Poll::Ready(Err(err)) => panic!("{err}"),
                Poll::Pending => break,
            }
        }
        // Now poll with different bytes, as h2 does when it has re-framed its queue; the 'A's
        // of the Pending poll were not taken.
        let second = vec![b'B'; 100];
        let reader = corio::spawn(async move {
            let mut got = Vec::new();
            let mut storage = vec![0u8; 65_536];
            loop {
                let mut buf = ReadBuf::new(&mut storage);
                poll_fn(|cx| Pin::new(&mut b).poll_read(cx, &mut buf))
                    .await
                    .unwrap();
                if buf.filled().is_empty() {
                    return got;
                }
                got.extend_from_slice(buf.filled());
            }
        });
        let mut sent_second = 0;
        while sent_second < second.len() {
            let n = poll_fn(|cx| Pin::new(&mut a).poll_write(cx, &second[sent_second..]))
                .await
                .unwrap();
            sent_second += n;
        }
        expected.extend_from_slice(&second);
        poll_fn(|cx| Pin::new(&mut a).poll_shutdown(cx))
            .await
            .unwrap();
        let got = reader.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(
            got == expected,
            "the peer got bytes the Pending poll never accepted"
        );
    });
}

#[test]
fn bytes_a_dropped_native_read_kept_come_first() {
    use tokio::io::AsyncReadExt;
    corio::block_on(async {
        let (a, b) = pair().await;
        let (res, _) = a.write_all(b"first".to_vec()).await;
        res.unwrap();
        // A native read that completes but is dropped unawaited keeps its bytes in the stash.
        let mut read = b.read(Vec::with_capacity(64));
        // Submitted by its first poll; its CQE lands during the sleep; nobody awaits it.
        let _ = support::poll_once(&mut read);
        corio::time::sleep(Duration::from_millis(20)).await;
        drop(read);
        let (res, _) = a.write_all(b" second".to_vec()).await;
        res.unwrap();
        drop(a);
        let mut b = Compat::new(b);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"first second");
    });
}

#[test]
fn hyper_http2_echo_between_two_corio_tasks() {
    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response};

    async fn echo(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
        let body = request.into_body().collect().await?.to_bytes();
        Ok(Response::new(Full::new(body)))
    }

    corio::block_on(async {
        let (server, client) = pair().await;
        corio::spawn(async move {
            let _ = hyper::server::conn::http2::Builder::new(HyperExecutor)
                .timer(HyperTimer)
                .serve_connection(Compat::new(server), hyper::service::service_fn(echo))
                .await;
        })
        .detach();
        let (sender, connection) = hyper::client::conn::http2::Builder::new(HyperExecutor)
            .timer(HyperTimer)
            .handshake(Compat::new(client))
            .await
            .unwrap();
        corio::spawn(async move {
            let _ = connection.await;
        })
        .detach();
        // 40 concurrent streams with bodies big enough to need flow control.
        let requests = (0..40u64).map(|i| {
            let mut sender = sender.clone();
            async move {
                let body = pattern(200_000, i);
                let request = Request::post("http://corio.test/echo")
                    .body(Full::new(Bytes::from(body.clone())))
                    .unwrap();
                let response = sender.send_request(request).await.unwrap();
                let got = response.into_body().collect().await.unwrap().to_bytes();
                got == body
            }
        });
        let results = corio::join_all(requests).await;
        assert!(results.iter().all(|&same| same), "an echoed body differs");
    });
}

#[test]
fn eof_after_a_short_read_is_seen_every_time() {
    use tokio::io::AsyncReadExt;
    // A short read marks the socket empty; an EOF (or reset) that came with the last bytes
    // must still end the read, whatever the timing.
    corio::block_on(async {
        for round in 0..200u64 {
            let (a, b) = pair().await;
            let writer = corio::spawn(async move {
                let (res, _) = a.write_all(b"abc".to_vec()).await;
                res.unwrap();
                if round % 3 == 0 {
                    corio::time::sleep(Duration::from_micros(200)).await;
                }
                let (res, _) = a.write_all(b"def".to_vec()).await;
                res.unwrap();
                if round % 2 == 0 {
                    corio::yield_now().await;
                }
                drop(a);
            });
            let mut b = Compat::new(b);
            let mut got = Vec::new();
            let read = corio::time::timeout(Duration::from_secs(5), b.read_to_end(&mut got));
            read.await.expect("EOF not seen").unwrap();
            assert_eq!(got, b"abcdef", "round {round}");
            writer.await.unwrap();
        }
    });
}

#[test]
fn eof_whose_edge_was_queued_before_the_last_short_read_is_seen() {
    use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
    corio::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            std::io::Write::write_all(&mut stream, b"abcdef").unwrap();
            // Dropped: FIN right behind the bytes.
        });
        let (server, _) = listener.accept().await.unwrap();
        let mut b = Compat::new(server);
        // One poll while nothing has come: the read arms its readiness wait.
        let mut storage = [0u8; 64];
        let mut buf = ReadBuf::new(&mut storage);
        let first = poll_fn(|cx| Poll::Ready(Pin::new(&mut b).poll_read(cx, &mut buf))).await;
        assert!(first.is_pending());
        // The bytes and the FIN arrive, and their readiness edges are reaped, while nobody
        // reads.
        peer.join().unwrap();
        corio::time::sleep(Duration::from_millis(20)).await;
        let mut got = Vec::new();
        let read = corio::time::timeout(Duration::from_secs(5), b.read_to_end(&mut got));
        read.await.expect("EOF not seen").unwrap();
        assert_eq!(got, b"abcdef");
    });
}

#[test]
fn unix_streams_work_through_compat_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let data = pattern(2 << 20, 5);
    corio::block_on(async move {
        let (a, b) = corio::net::UnixStream::pair().unwrap();
        let (mut a, mut b) = (Compat::new(a), Compat::new(b));
        let sent = data.clone();
        let writer = corio::spawn(async move {
            for piece in sent.chunks(70_001) {
                a.write_all(piece).await.unwrap();
            }
            a.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert!(got == data, "bytes differ");
    });
}
