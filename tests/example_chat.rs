//! examples/chat on two cores with real clients: every line reaches every client whichever
//! core serves it, names change with /nick, and a line over the limit ends only its sender.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use support::{ExampleServer, IO_TIMEOUT};

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    name: String,
}

impl Client {
    fn connect(server: &ExampleServer) -> Client {
        let stream = TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut client = Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
            name: String::new(),
        };
        let welcome = client.line();
        client.name = welcome.strip_prefix("welcome ").unwrap().trim().to_owned();
        client
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    /// Reads lines until one equals `want`; panics (after the read timeout) if none does.
    fn expect(&mut self, want: &str) {
        for _ in 0..1000 {
            let line = self.line();
            assert!(
                !line.is_empty(),
                "{}: closed while waiting for {want:?}",
                self.name
            );
            if line.trim_end() == want {
                return;
            }
        }
        panic!("{}: never saw {want:?}", self.name);
    }

    fn say(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
    }
}

#[test]
fn every_line_reaches_every_client_on_every_core() {
    let server = ExampleServer::start("chat", &["--port", "0", "--cores", "2"], &[]);
    let mut clients: Vec<Client> = (0..6).map(|_| Client::connect(&server)).collect();
    let names: Vec<String> = clients.iter().map(|c| c.name.clone()).collect();
    // Everyone has joined once each client saw the last join.
    for client in &mut clients {
        client.expect(&format!("* {} joined", names[5]));
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client.say(&format!("hello from {i}\r\n"));
    }
    for client in &mut clients {
        // Each sender's lines arrive in order; lines of different senders interleave.
        let mut seen = vec![false; names.len()];
        while seen.iter().any(|s| !s) {
            let line = client.line();
            assert!(!line.is_empty(), "closed early");
            for (i, name) in names.iter().enumerate() {
                if line.trim_end() == format!("{name}: hello from {i}") {
                    seen[i] = true;
                }
            }
        }
    }
    clients[0].say("/nick alice\n");
    clients[0].say("hi all\n");
    clients[3].expect(&format!("* {} is now alice", names[0]));
    clients[3].expect("alice: hi all");

    // A line over 4 KiB ends that client alone.
    let mut long = Client::connect(&server);
    long.say(&"x".repeat(10_000));
    long.say("\n");
    let mut reply = long.line();
    while reply.starts_with("* ") && reply.contains(" joined") {
        reply = long.line();
    }
    assert!(reply.contains("longer than 4096"), "{reply}");
    loop {
        // Lines broadcast before it was cut off may come first; then EOF.
        let line = long.line();
        if line.is_empty() {
            break;
        }
    }
    clients[1].say("still here\n");
    clients[2].expect(&format!("{}: still here", names[1]));
}
