//! examples/tls_echo (rustls through tokio-rustls over corio's compat stream) with real TLS
//! clients: byte-exact echoes on several connections at once, verified against the server's
//! own certificate, and a client that speaks no TLS is dropped without disturbing the others.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use support::{pattern, ExampleServer, TempDir, IO_TIMEOUT};

fn client_config(cert_path: &std::path::Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert_path).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

#[test]
fn tls_clients_get_their_bytes_back() {
    let dir = TempDir::new("example-tls");
    let cert = dir.path().join("cert.pem");
    let cert_arg = cert.to_str().unwrap().to_owned();
    let server = ExampleServer::start(
        "tls_echo",
        &["--port", "0", "--cores", "2", "--write-cert", &cert_arg],
        &[],
    );
    let config = client_config(&cert);

    // A plain-text client first: the server drops it, and serves the TLS clients after it.
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut junk = Vec::new();
    let _ = plain.read_to_end(&mut junk); // an alert, then EOF

    let clients: Vec<_> = (0..4u64)
        .map(|i| {
            let (config, addr) = (config.clone(), server.addr);
            std::thread::spawn(move || {
                let name = ServerName::try_from("localhost").unwrap();
                let connection = rustls::ClientConnection::new(config, name).unwrap();
                let tcp = TcpStream::connect(addr).unwrap();
                tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut tls = rustls::StreamOwned::new(connection, tcp);
                let data = pattern(128 * 1024 + i as usize, i);
                let mut got = vec![0u8; data.len()];
                // Write and read in turns, so neither side's buffers fill up.
                for (sent, back) in data.chunks(16 * 1024).zip(got.chunks_mut(16 * 1024)) {
                    tls.write_all(sent).unwrap();
                    tls.read_exact(back).unwrap();
                }
                tls.conn.send_close_notify();
                tls.flush().unwrap();
                got == data
            })
        })
        .collect();
    for client in clients {
        assert!(client.join().unwrap(), "an echoed stream differs");
    }
}
