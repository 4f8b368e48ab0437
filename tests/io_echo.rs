//! The echo example under load: 10,000 concurrent connections to one core, each gets its bytes
//! back. The server runs as its own process (the fd limit here is 20,000 per process).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use corio::net::TcpStream;
use corio::rt::{block_on, spawn, time};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} missing: run `cargo build --example {name}`",
        path.display()
    );
    path
}

fn start_echo(cores: usize) -> (Server, std::net::SocketAddr) {
    let mut child = Command::new(example("echo"))
        .args(["--port", "0", "--cores", &cores.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    (server, addr)
}

fn raise_fd_limit() {
    let fds = corio::raise_fd_limit().expect("raise the open-file limit");
    assert!(fds >= 10_100, "need 10,100 fds, hard limit is {fds}");
}

#[test]
fn ten_thousand_concurrent_connections_on_one_core_all_get_their_bytes_back() {
    raise_fd_limit();
    let (_server, addr) = start_echo(1);
    let echoed = block_on(async move {
        // Connect in waves so the listen backlog (1024) never overflows.
        let mut streams = Vec::with_capacity(10_000);
        for wave in 0..20 {
            let connects: Vec<_> = (0..500).map(|_| spawn(TcpStream::connect(addr))).collect();
            for (i, connect) in connects.into_iter().enumerate() {
                let stream = connect.await.unwrap();
                streams.push((wave * 500 + i, stream.unwrap()));
            }
        }
        // Every connection is open at once; now each sends its id and waits for it back.
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|(id, stream)| {
                spawn(async move {
                    let message = format!("hello {id:05}\n").into_bytes();
                    let (res, message) = stream.write_all(message).await;
                    res.unwrap();
                    let mut back = Vec::with_capacity(64);
                    while back.len() < message.len() {
                        let read = time::timeout(Duration::from_secs(20), stream.read(back));
                        let (n, buf) = read.await.expect("echo within 20 s");
                        assert_ne!(n.unwrap(), 0, "connection {id} closed early");
                        back = buf;
                    }
                    back == message
                })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            if task.await.unwrap() {
                ok += 1;
            }
        }
        ok
    });
    assert_eq!(echoed, 10_000);
}
