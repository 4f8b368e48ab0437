//! A TLS echo server on every core: rustls through tokio-rustls over
//! `corio::io::compat::Compat`, the same code as on tokio. Each connection's handshake and
//! echo run as one task on the core that accepted it.
//!
//! With `--cert` and `--key` (PEM files) it serves that certificate; without, it makes a
//! self-signed one for `localhost` and `127.0.0.1` (written to `--write-cert PATH` for clients
//! to trust).
//!
//! Run: `cargo run --release --example tls_echo -- --port 7443 --write-cert /tmp/echo.pem`,
//! then `openssl s_client -connect 127.0.0.1:7443 -CAfile /tmp/echo.pem`. Prints
//! `listening on ADDR`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use corio::io::compat::Compat;
use corio::net::{reuseport_listeners, TcpListener, TcpStream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

/// TLS echo server, every core serving.
#[derive(Parser, Debug)]
struct Args {
    /// Port to listen on (0: a free port, printed).
    #[arg(long, default_value_t = 7443)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Number of cores. Default: every CPU.
    #[arg(long)]
    cores: Option<usize>,
    /// The certificate chain, PEM.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// The private key, PEM.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Where to write the self-signed certificate made when no --cert is given.
    #[arg(long)]
    write_cert: Option<PathBuf>,
    /// How long a client may take to finish its handshake, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    handshake_timeout_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tls_echo: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (chain, key) = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => (
            CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("{}: {e}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", cert.display()))?,
            PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?,
        ),
        _ => self_signed(args.write_cert.as_deref())?,
    };
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let _ = corio::raise_fd_limit();
    let mut builder = corio::Runtime::builder();
    if let Some(cores) = args.cores {
        builder.cores(cores);
    }
    let runtime = builder.build()?;
    let listeners = reuseport_listeners(SocketAddr::new(args.host, args.port), runtime.cores())?;
    println!("listening on {}", listeners[0].local_addr()?);
    use std::io::Write;
    std::io::stdout().flush()?;
    let handshake_timeout = Duration::from_millis(args.handshake_timeout_ms);
    runtime.try_run_with(listeners, move |core, listener| {
        let acceptor = acceptor.clone();
        async move {
            let listener = TcpListener::from_std(listener)?;
            loop {
                let (stream, peer) = listener.accept().await?;
                let acceptor = acceptor.clone();
                corio::spawn(async move {
                    if let Err(err) = echo(acceptor, stream, handshake_timeout).await {
                        eprintln!("tls_echo: {peer} on {core}: {err}");
                    }
                })
                .detach();
            }
            #[allow(unreachable_code)]
            std::io::Result::Ok(())
        }
    })?;
    Ok(())
}

/// The TLS handshake, then every decrypted byte back until the client closes.
async fn echo(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    handshake_timeout: Duration,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut tls = corio::time::timeout(handshake_timeout, acceptor.accept(Compat::new(stream)))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))??;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            return tls.shutdown().await;
        }
        tls.write_all(&buf[..n]).await?;
    }
}

/// A self-signed certificate for localhost and 127.0.0.1, written to `write_to` if given.
fn self_signed(
    write_to: Option<&std::path::Path>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Box<dyn std::error::Error>> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    if let Some(path) = write_to {
        std::fs::write(path, certified.cert.pem())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let key = PrivateKeyDer::try_from(certified.key_pair.serialize_der())?;
    Ok((vec![certified.cert.der().clone()], key))
}
