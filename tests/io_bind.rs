//! `TcpListener::bind` shares a port between the cores of one process but refuses a port that
//! another process listens on; `bind_shared` joins it on purpose. The other process is this
//! test binary run again on its `holder` test, which binds and waits.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use corio::net::TcpListener;

/// Run by the tests below in a child process (ignored otherwise): binds `CORIO_TEST_PORT` with
/// `TcpListener::bind`, says so, and holds it until its stdin closes.
#[test]
#[ignore = "run as a child process by the other tests"]
fn holder() {
    let Ok(port) = std::env::var("CORIO_TEST_PORT") else {
        return;
    };
    corio::block_on(async {
        let _listener = TcpListener::bind(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
        println!("bound");
        std::io::stdout().flush().unwrap();
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    });
}

#[test]
fn a_port_another_process_serves_is_refused() {
    let port = support::free_port();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "holder",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CORIO_TEST_PORT", port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("bound") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "holder exited early");
    }
    corio::block_on(async {
        let err = TcpListener::bind(("127.0.0.1", port)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        let text = err.to_string();
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        // Asked explicitly, sharing with the other process works.
        let shared = TcpListener::bind_shared(("127.0.0.1", port)).unwrap();
        assert_eq!(shared.local_addr().unwrap().port(), port);
    });
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    // The holder is gone: the port is free again.
    corio::block_on(async {
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    });
}

#[test]
fn every_core_of_one_process_shares_a_port() {
    let _serial = support::serial();
    let port = support::free_port();
    let rt = corio::Runtime::builder()
        .cores(2)
        .pin(false)
        .build()
        .unwrap();
    // Both cores bind before any client connects, and neither closes its listener before
    // every client has connected (a closing listener resets the connections queued on it).
    let bound = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let connected = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accepted = rt
        .try_run(move |_core| {
            let (bound, connected) = (bound.clone(), connected.clone());
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                let listener = TcpListener::bind(("127.0.0.1", port))?;
                let addr = listener.local_addr()?;
                bound.fetch_add(1, SeqCst);
                let client = std::thread::spawn(move || {
                    while bound.load(SeqCst) < 2 {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    let streams = (0..32)
                        .map(|_| std::net::TcpStream::connect(addr))
                        .collect::<std::io::Result<Vec<_>>>();
                    connected.fetch_add(1, SeqCst);
                    (streams, connected)
                });
                // The kernel spreads the 64 connections over both listeners: each accepts one.
                let (stream, _) = listener.accept().await?;
                drop(stream);
                let (streams, connected) = client.join().unwrap();
                for _ in 0..5_000 {
                    if connected.load(SeqCst) == 2 {
                        break;
                    }
                    corio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                streams.map(|streams| streams.len())
            }
        })
        .unwrap();
    assert_eq!(accepted, vec![32, 32]);
    // Every listener is closed: another bind of the port starts a new group.
    corio::block_on(async {
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    });
}

#[test]
fn connect_errors_name_the_address() {
    let port = support::free_port();
    corio::block_on(async {
        let err = corio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(
            err.to_string()
                .starts_with(&format!("connect to 127.0.0.1:{port}: ")),
            "{err}"
        );
        let err = corio::fs::File::open("/nonexistent/corio-test")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(err.to_string().contains("/nonexistent/corio-test"), "{err}");
        let err = corio::net::UnixStream::connect("/nonexistent/corio.sock")
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("connect to /nonexistent/corio.sock: "),
            "{err}"
        );
        let err = corio::fs::rename("/nonexistent/a", "/nonexistent/b")
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("rename /nonexistent/a to /nonexistent/b"),
            "{err}"
        );
    });
}

#[test]
fn a_socket_this_process_still_holds_is_joined_not_refused() {
    let _serial = support::serial();
    let port = support::free_port();
    corio::block_on(async move {
        // The listener handle is gone at once; its socket lives on in the stream.
        let mut incoming = TcpListener::bind(("127.0.0.1", port)).unwrap().incoming();
        let again = TcpListener::bind(("127.0.0.1", port)).expect("our own socket refused");
        let client = std::thread::spawn(move || {
            (0..16)
                .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)))
                .collect::<std::io::Result<Vec<_>>>()
        });
        // Either socket of the group may get each connection; one from each side is enough.
        let (a, b) = corio::join!(incoming.next(), again.accept());
        a.unwrap();
        b.unwrap();
        client.join().unwrap().unwrap();
    });
}
