//! The owned-buffer I/O helpers: read_exact, read_to_end, BufReader lines (cancel-safe over a
//! socket), shared buffers written to many sockets without a copy, a timed-out read that gives
//! its buffer back, and files that are streams (pipes) read at their position.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use corio::io::buf::IoBuf;
use corio::io::{BufReader, OwnedRead};
use corio::net::{TcpListener, TcpStream};

/// A listener on a free port and a std client thread that runs `client` on the accepted peer.
async fn pair<F>(client: F) -> (TcpStream, std::thread::JoinHandle<()>)
where
    F: FnOnce(std::net::TcpStream) + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(support::IO_TIMEOUT)).unwrap();
        client(stream);
    });
    let (stream, _) = listener.accept().await.unwrap();
    (stream, thread)
}

#[test]
fn read_exact_fills_across_small_writes_and_reports_early_eof() {
    let data = support::pattern(100_000, 7);
    let sent = data.clone();
    corio::block_on(async move {
        let (stream, peer) = pair(move |mut s| {
            for piece in sent.chunks(997) {
                s.write_all(piece).unwrap();
            }
        })
        .await;
        // An exact window: Vec::with_capacity(n) may hold more than n.
        let (res, buf) = stream
            .read_exact(Vec::with_capacity(60_000).slice(..60_000))
            .await;
        res.unwrap();
        assert_eq!(&buf.into_inner()[..], &data[..60_000]);
        let (res, rest) = stream
            .read_exact(Vec::with_capacity(50_000).slice(..50_000))
            .await;
        assert_eq!(res.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
        assert_eq!(&rest.into_inner()[..], &data[60_000..]);
        peer.join().unwrap();
    });
}

#[test]
fn read_to_end_reads_a_socket_and_a_pipe() {
    let data = support::pattern(300_000, 3);
    let sent = data.clone();
    corio::block_on(async move {
        let (stream, peer) = pair(move |mut s| s.write_all(&sent).unwrap()).await;
        let (res, got) = stream.read_to_end(b"head".to_vec()).await;
        assert_eq!(res.unwrap(), data.len());
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..], &data[..]);
        peer.join().unwrap();
    });

    let (reader, mut writer) = std::io::pipe().unwrap();
    let data = support::pattern(1 << 20, 9);
    let sent = data.clone();
    let feeder = std::thread::spawn(move || {
        for piece in sent.chunks(4093) {
            writer.write_all(piece).unwrap();
        }
    });
    corio::block_on(async move {
        let file = corio::fs::File::from_std(OwnedFd::from(reader).into());
        let (res, got) = file.read_to_end(Vec::new()).await;
        assert_eq!(res.unwrap(), data.len());
        assert!(got == data, "pipe bytes differ");
    });
    feeder.join().unwrap();
}

#[test]
fn lines_split_on_lf_and_crlf_and_bound_their_length() {
    corio::block_on(async {
        let (stream, peer) = pair(|mut s| {
            s.write_all(b"one\r\ntwo\n\nthr").unwrap();
            std::thread::sleep(Duration::from_millis(20));
            s.write_all(b"ee\nlast without newline").unwrap();
        })
        .await;
        let mut lines = BufReader::with_capacity(4, &stream).lines();
        let mut got = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            got.push(line);
        }
        assert_eq!(got, ["one", "two", "", "three", "last without newline"]);
        peer.join().unwrap();

        let (stream, peer) = pair(|mut s| s.write_all(&[b'x'; 100]).unwrap()).await;
        let mut lines = BufReader::new(&stream).lines().max_len(10);
        let err = lines.next_line().await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("longer than 10"), "{err}");
        peer.join().unwrap();
    });
}

#[test]
fn dropped_next_line_calls_lose_nothing() {
    let expected: Vec<String> = (0..2_000)
        .map(|i| format!("line {i} {}", "y".repeat(i % 50)))
        .collect();
    let text: String = expected.iter().map(|l| format!("{l}\n")).collect();
    corio::block_on(async move {
        let (stream, peer) = pair(move |mut s| {
            for piece in text.as_bytes().chunks(61) {
                s.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_micros(50));
            }
        })
        .await;
        let mut lines = BufReader::with_capacity(64, &stream).lines();
        let mut got = Vec::new();
        let mut dropped = 0;
        loop {
            // Give each call a few microseconds: many are dropped mid-line.
            match corio::time::timeout(Duration::from_micros(30), lines.next_line()).await {
                Ok(Ok(Some(line))) => got.push(line),
                Ok(Ok(None)) => break,
                Ok(Err(err)) => panic!("{err}"),
                Err(_) => dropped += 1,
            }
        }
        assert!(dropped > 10, "only {dropped} calls were dropped");
        assert_eq!(got, expected);
        peer.join().unwrap();
    });
}

#[test]
fn one_shared_buffer_goes_to_many_sockets() {
    let payload: Arc<[u8]> = Arc::from(support::pattern(200_000, 5));
    let bytes = bytes::Bytes::from(support::pattern(50_000, 6));
    corio::block_on(async move {
        let mut peers = Vec::new();
        for _ in 0..4 {
            let expect = payload.clone();
            let expect_bytes = bytes.clone();
            let (stream, peer) = pair(move |mut s| {
                let mut got = Vec::new();
                s.read_to_end(&mut got).unwrap();
                assert_eq!(&got[..expect.len()], &expect[..]);
                assert_eq!(&got[expect.len()..], &expect_bytes[..]);
            })
            .await;
            let (res, back) = stream.write_all(payload.clone()).await;
            res.unwrap();
            assert!(
                Arc::ptr_eq(&back, &payload),
                "the same allocation came back"
            );
            let (res, _) = stream.write_all(bytes.clone()).await;
            res.unwrap();
            drop(stream);
            peers.push(peer);
        }
        for peer in peers {
            peer.join().unwrap();
        }
    });
}

#[test]
fn a_timed_out_read_gives_its_buffer_back() {
    corio::block_on(async {
        let (stream, peer) = pair(|mut s| {
            std::thread::sleep(Duration::from_millis(100));
            s.write_all(b"late").unwrap();
        })
        .await;
        let buf = Vec::with_capacity(4096);
        let ptr = buf.as_ptr();
        let buf = match corio::time::timeout_or_cancel(Duration::from_millis(10), stream.read(buf))
            .await
        {
            Ok(_) => panic!("the read should time out"),
            Err(timed_out) => {
                let (res, buf) = timed_out.into_inner();
                assert!(res.is_err());
                buf
            }
        };
        assert_eq!(buf.as_ptr(), ptr, "the same buffer came back");
        let (res, buf) = stream.read(buf).await;
        assert_eq!(res.unwrap(), 4);
        assert_eq!(&buf[..], b"late");
        peer.join().unwrap();
    });
}

#[test]
fn file_write_goes_to_a_pipe_in_order() {
    let (mut reader, writer) = std::io::pipe().unwrap();
    let data = support::pattern(500_000, 11);
    let expect = data.clone();
    let drain = std::thread::spawn(move || {
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        assert!(got == expect, "pipe bytes differ");
    });
    corio::block_on(async move {
        let file = corio::fs::File::from_std(OwnedFd::from(writer).into());
        for piece in data.chunks(65_536) {
            let (res, _) = file.write_all(piece.to_vec()).await;
            res.unwrap();
        }
    });
    drain.join().unwrap();
}

#[test]
fn dropped_read_line_calls_lose_nothing() {
    let expected: Vec<String> = (0..1_000)
        .map(|i| format!("line {i} {}\n", "z".repeat(i % 40)))
        .collect();
    let text: String = expected.concat();
    corio::block_on(async move {
        let (stream, peer) = pair(move |mut s| {
            for piece in text.as_bytes().chunks(53) {
                s.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_micros(50));
            }
        })
        .await;
        let mut reader = BufReader::with_capacity(32, &stream);
        let (mut got, mut dropped) = (Vec::new(), 0);
        loop {
            let mut line = String::new();
            match corio::time::timeout(Duration::from_micros(30), reader.read_line(&mut line)).await
            {
                Ok(Ok(0)) => break,
                Ok(Ok(_)) => got.push(line),
                Ok(Err(err)) => panic!("{err}"),
                Err(_) => {
                    assert!(line.is_empty(), "a dropped call appended {line:?}");
                    dropped += 1;
                }
            }
        }
        assert!(dropped > 10, "only {dropped} calls were dropped");
        assert_eq!(got, expected);
        peer.join().unwrap();
    });
}
