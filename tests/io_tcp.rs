//! Integration tests of corio-io's TCP sockets over loopback.

use std::time::Duration;

use corio::net::{TcpListener, TcpStream};
use corio::rt::{block_on, spawn, time};

#[test]
fn echoes_a_mebibyte_over_loopback() {
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
