//! Integration tests of corio-io's UDP and Unix-domain sockets, and of name resolution.

mod support;

use corio::net::{lookup_host, UdpSocket, UnixListener, UnixStream};
use corio::rt::{block_on, spawn};
use support::pattern;

#[test]
fn a_mebibyte_echoed_over_udp_in_datagrams() {
    block_on(async {
        let server = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let server_addr = server.local_addr().unwrap();
        let echo = spawn(async move {
            let mut buf = Vec::with_capacity(65_536);
            for _ in 0..128 {
                buf.clear();
                let (res, back) = server.recv_from(buf).await;
                let (_, peer) = res.unwrap();
                let (sent, back) = server.send_to(back, peer).await;
                sent.unwrap();
                buf = back;
            }
        });
        let client = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        client.connect(server_addr).unwrap();
        let data = pattern(1 << 20, 0);
        let mut echoed = Vec::with_capacity(data.len());
        for chunk in data.chunks(8192) {
            let (sent, _) = client.send(chunk.to_vec()).await;
            assert_eq!(sent.unwrap(), chunk.len());
            let (n, buf) = client.recv(Vec::with_capacity(65_536)).await;
            assert_eq!(
                n.unwrap(),
                chunk.len(),
                "one datagram back per datagram sent"
            );
            echoed.extend_from_slice(&buf);
        }
        echo.await.unwrap();
        assert!(echoed == data);
        assert_eq!(client.peer_addr().unwrap(), server_addr);
    });
}

#[test]
fn a_mebibyte_echoed_over_a_unix_socket() {
    let path = std::env::temp_dir().join(format!("corio-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    block_on(async {
        let listener = UnixListener::bind(&path).unwrap();
        let server = spawn(async move {
            let stream = listener.accept().await.unwrap();
            let mut buf = Vec::with_capacity(65_536);
            loop {
                buf.clear();
                let (n, back) = stream.read(buf).await;
                if n.unwrap() == 0 {
                    return;
                }
                let (res, back) = stream.write_all(back).await;
                res.unwrap();
                buf = back;
            }
        });
        let client = UnixStream::connect(&path).await.unwrap();
        let data = pattern(1 << 20, 0);
        let mut echoed = Vec::with_capacity(data.len());
        let mut sent = 0;
        // Alternate bounded writes and reads so neither side's socket buffer fills up.
        while echoed.len() < data.len() {
            if sent < data.len() {
                let end = (sent + 32 * 1024).min(data.len());
                let (res, _) = client.write_all(data[sent..end].to_vec()).await;
                res.unwrap();
                sent = end;
            }
            while echoed.len() < sent {
                echoed.reserve(65_536);
                let (n, back) = client.read(echoed).await;
                assert_ne!(n.unwrap(), 0);
                echoed = back;
            }
        }
        client.shutdown(std::net::Shutdown::Write).unwrap();
        server.await.unwrap();
        assert!(echoed == data);
    });
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_unix_peer_that_disconnects_gives_eof_then_an_error() {
    block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let (n, _) = a.read(Vec::with_capacity(8)).await;
        assert_eq!(n.unwrap(), 0);
        let (res, _) = a.write(&b"x"[..]).await;
        assert_eq!(res.unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
    });
}

#[test]
fn names_resolve_off_the_loop_and_literals_in_place() {
    block_on(async {
        let addrs = lookup_host("localhost:80").await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
        let v6 = lookup_host("[::1]:9").await.unwrap();
        assert_eq!(v6, vec!["[::1]:9".parse().unwrap()]);
        let err = lookup_host("no-such-host.invalid:1").await.unwrap_err();
        assert_ne!(err.kind(), std::io::ErrorKind::Other, "{err}");
    });
}
