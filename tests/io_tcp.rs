//! Integration tests of corio-io's TCP sockets over loopback.

mod support;

use std::time::Duration;

use corio::net::{TcpListener, TcpStream};
use corio::rt::{block_on, spawn, time};
use support::serial;

#[test]
fn echoes_a_mebibyte_over_loopback() {
    let _serial = serial();
    block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut buf = Vec::with_capacity(64 * 1024);
            loop {
                buf.clear();
                let (res, back) = stream.read(buf).await;
                buf = back;
                if res.unwrap() == 0 {
                    return;
                }
                let (res, back) = stream.write_all(buf).await;
                buf = back;
                res.unwrap();
            }
        });
        let client = TcpStream::connect(addr).await.unwrap();
        client.set_nodelay(true).unwrap();
        let data: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        let writer = {
            let data = data.clone();
            let client = TcpStream::from_std(dup(&client)).unwrap();
            spawn(async move {
                let (res, _) = client.write_all(data).await;
                res.unwrap();
                client.shutdown(std::net::Shutdown::Write).unwrap();
            })
        };
        let mut received = Vec::with_capacity(data.len());
        while received.len() < data.len() {
            received.reserve(64 * 1024);
            let (res, back) = client.read(received).await;
            received = back;
            assert_ne!(res.unwrap(), 0, "early EOF at {}", received.len());
        }
        writer.await.unwrap();
        assert!(received == data, "echoed bytes differ");
        server.await.unwrap();
    });
}

#[test]
fn a_refused_connect_and_a_peer_that_disconnects_give_errors_not_panics() {
    let _serial = serial();
    block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server_side, _) = listener.accept().await.unwrap();
        drop(server_side);
        let (res, _) = client.read(Vec::with_capacity(16)).await;
        assert_eq!(res.unwrap(), 0, "EOF after the peer closed");
        // Writing to a closed peer ends in EPIPE or ECONNRESET, never a SIGPIPE.
        let mut failed = false;
        for _ in 0..100 {
            let (res, _) = client.write(vec![0u8; 4096]).await;
            if res.is_err() {
                failed = true;
                break;
            }
            time::sleep(Duration::from_millis(1)).await;
        }
        assert!(failed, "writes to a closed peer must fail");
    });
}

#[test]
fn a_read_with_no_spare_capacity_is_an_error_not_eof() {
    let _serial = serial();
    block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (res, _) = client.read(Vec::new()).await;
        assert_eq!(res.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
    });
}

fn dup(stream: &TcpStream) -> std::net::TcpStream {
    use std::os::fd::AsFd;
    std::net::TcpStream::from(stream.as_fd().try_clone_to_owned().unwrap())
}

#[test]
fn a_tiny_buffer_ring_still_receives_every_byte_in_order() {
    let _serial = serial();
    use corio::io::buf::BufRing;
    block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let data: Vec<u8> = (0..64 * 1024).map(|i| (i % 253) as u8).collect();
        let writer = spawn({
            let data = data.clone();
            async move {
                let (res, _) = client.write_all(data).await;
                res.unwrap();
                client.shutdown(std::net::Shutdown::Write).unwrap();
            }
        });
        // Two 16-byte buffers: the ring runs dry (ENOBUFS) again and again and must re-arm.
        let ring = BufRing::new(2, 16).unwrap();
        let mut received = Vec::new();
        let mut stream = server.recv_stream(&ring);
        while let Some(chunk) = stream.next().await {
            received.extend_from_slice(&chunk.unwrap());
        }
        writer.await.unwrap();
        assert!(
            received == data,
            "got {} of {} bytes",
            received.len(),
            data.len()
        );
        assert_eq!(ring.free(), 2);
    });
}

#[test]
fn dropped_receives_leak_no_fd_and_no_buffer() {
    let _serial = serial();
    use corio::io::buf::BufRing;
    use std::future::Future;
    use std::task::{Context, Waker};
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let ring = BufRing::new(64, 4096).unwrap();
        let fds_before = fds();
        for i in 0..1_000 {
            if i % 2 == 0 {
                let mut read = Box::pin(server.read(Vec::with_capacity(64)));
                let mut cx = Context::from_waker(Waker::noop());
                assert!(read.as_mut().poll(&mut cx).is_pending());
            } else {
                let mut stream = server.recv_stream(&ring);
                let mut next = Box::pin(stream.next());
                let mut cx = Context::from_waker(Waker::noop());
                assert!(next.as_mut().poll(&mut cx).is_pending());
            }
        }
        while corio::rt::in_flight() > 0 {
            corio::yield_now().await;
        }
        assert_eq!((fds(), ring.free()), (fds_before, 64));
        // The socket still works afterwards.
        let (res, _) = client.write_all(&b"ok"[..]).await;
        res.unwrap();
        let (n, buf) = server.read(Vec::with_capacity(8)).await;
        assert_eq!((n.unwrap(), &buf[..]), (2, &b"ok"[..]));
    });
}

#[test]
fn incoming_accepts_many_connections() {
    let _serial = serial();
    block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Vec<_> = (0..50).map(|_| spawn(TcpStream::connect(addr))).collect();
        let mut incoming = listener.incoming();
        let mut accepted = Vec::new();
        for _ in 0..50 {
            accepted.push(incoming.next().await.unwrap());
        }
        for client in clients {
            client.await.unwrap().unwrap();
        }
        assert_eq!(accepted.len(), 50);
        assert!(accepted
            .iter()
            .all(|s| s.peer_addr().unwrap().ip().is_loopback()));
    });
}

#[test]
fn copy_bidirectional_splices_both_ways_and_passes_on_eof() {
    use corio::net::copy_bidirectional;
    let _serial = serial();
    block_on(async {
        // An echo server, and a splicing proxy in front of it.
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let echo_addr = echo.local_addr().unwrap();
        spawn(async move {
            let (stream, _) = echo.accept().await.unwrap();
            let mut buf = Vec::with_capacity(65_536);
            loop {
                buf.clear();
                let (n, back) = stream.read(buf).await;
                if n.unwrap() == 0 {
                    stream.shutdown(std::net::Shutdown::Write).unwrap();
                    return;
                }
                let (res, back) = stream.write_all(back).await;
                res.unwrap();
                buf = back;
            }
        })
        .detach();
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let front_addr = front.local_addr().unwrap();
        let proxy = spawn(async move {
            let (client, _) = front.accept().await.unwrap();
            let upstream = TcpStream::connect(echo_addr).await.unwrap();
            copy_bidirectional(&client, &upstream).await.unwrap()
        });
        let client = TcpStream::connect(front_addr).await.unwrap();
        let data: Vec<u8> = (0..1 << 20).map(|i| (i % 241) as u8).collect();
        let writer = {
            let client = TcpStream::from_std(dup(&client)).unwrap();
            let data = data.clone();
            spawn(async move {
                let (res, _) = client.write_all(data).await;
                res.unwrap();
                client.shutdown(std::net::Shutdown::Write).unwrap();
            })
        };
        let mut received = Vec::with_capacity(data.len());
        loop {
            received.reserve(65_536);
            let (n, back) = client.read(received).await;
            received = back;
            if n.unwrap() == 0 {
                break;
            }
        }
        writer.await.unwrap();
        assert!(
            received == data,
            "{} of {} bytes",
            received.len(),
            data.len()
        );
        assert_eq!(proxy.await.unwrap(), (1 << 20, 1 << 20));
    });
}

#[test]
fn zero_copy_writes_arrive_intact() {
    let _serial = serial();
    block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let data: Vec<u8> = (0..1 << 20).map(|i| (i % 239) as u8).collect();
        let writer = spawn({
            let data = data.clone();
            async move {
                let (res, back) = client.write_all_zc(data).await;
                res.unwrap();
                client.shutdown(std::net::Shutdown::Write).unwrap();
                back.len()
            }
        });
        let mut received = Vec::with_capacity(data.len());
        loop {
            received.reserve(65_536);
            let (n, back) = server.read(received).await;
            received = back;
            if n.unwrap() == 0 {
                break;
            }
        }
        assert_eq!(
            writer.await.unwrap(),
            data.len(),
            "the buffer comes back whole"
        );
        assert!(received == data);
        assert_eq!(corio::rt::in_flight(), 0);
    });
}

#[test]
fn vectored_socket_io_keeps_buffer_order() {
    let _serial = serial();
    block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let parts = vec![b"alpha ".to_vec(), b"beta ".to_vec(), b"gamma".to_vec()];
        let (n, parts) = client.writev(parts).await;
        assert_eq!(n.unwrap(), 16);
        assert_eq!(parts.len(), 3, "the buffers come back");
        let mut got = Vec::new();
        while got.len() < 16 {
            let bufs = vec![Vec::with_capacity(4), Vec::with_capacity(64)];
            let (n, bufs) = server.readv(bufs).await;
            assert_ne!(n.unwrap(), 0);
            assert!(
                bufs[1].is_empty() || bufs[0].len() == 4,
                "the first fills first"
            );
            got.extend(bufs.concat());
        }
        assert_eq!(got, b"alpha beta gamma");
        drop(server);
        // A write to a closed peer fails; it never raises SIGPIPE.
        let mut failed = false;
        for _ in 0..100 {
            let (res, _) = client.writev(vec![vec![0u8; 4096]]).await;
            if res.is_err() {
                failed = true;
                break;
            }
            time::sleep(Duration::from_millis(1)).await;
        }
        assert!(failed);
    });
}

#[test]
fn ipv6_loopback_works_like_ipv4() {
    let _serial = serial();
    block_on(async {
        let listener = match TcpListener::bind("[::1]:0") {
            Ok(listener) => listener,
            Err(err) => panic!("IPv6 loopback unavailable here: {err}"),
        };
        let addr = listener.local_addr().unwrap();
        assert!(addr.is_ipv6());
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        assert!(peer.is_ipv6());
        let (res, _) = client.write_all(&b"six"[..]).await;
        res.unwrap();
        let (n, buf) = server.read(Vec::with_capacity(8)).await;
        assert_eq!(&buf[..n.unwrap()], b"six");
    });
}

#[test]
fn a_peer_vanishing_mid_transfer_fails_only_its_own_connection() {
    let _serial = serial();
    block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let doomed = TcpStream::connect(addr).await.unwrap();
        let (doomed_server, _) = listener.accept().await.unwrap();
        let healthy = TcpStream::connect(addr).await.unwrap();
        let (healthy_server, _) = listener.accept().await.unwrap();
        // A write far larger than the socket buffers is in flight when its peer resets.
        let writer = spawn(async move {
            let (res, _) = doomed_server.write_all(vec![1u8; 32 << 20]).await;
            res
        });
        time::sleep(Duration::from_millis(5)).await;
        socket2::SockRef::from(&doomed)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(doomed); // RST
        let err = writer.await.unwrap().unwrap_err();
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "{err}"
        );
        // The other connection is untouched.
        let (res, _) = healthy.write_all(&b"still here"[..]).await;
        res.unwrap();
        let (n, buf) = healthy_server.read(Vec::with_capacity(32)).await;
        assert_eq!(&buf[..n.unwrap()], b"still here");
    });
}
