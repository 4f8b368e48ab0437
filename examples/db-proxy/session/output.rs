//! Writing replies to the client: small ones gathered into one write, large ones from their
//! own buffer, each write timed out per stall (`--client-write-timeout-ms` renewed by every
//! partial write).

use corio::io::buf::IoBuf;
use corio::net::TcpStream;
use corio::rt::time;

use super::{BUF_SIZE, GATHER, SHRINK_ABOVE};
use crate::{flow, Proxy};

/// Writes all of `buf` to the client; `None` if it fails or makes no progress for
/// `--client-write-timeout-ms` (each partial write renews the timeout, so a client that reads
/// slowly but steadily gets every byte, however long that takes).
pub(super) async fn write_out(
    proxy: &Proxy,
    stream: &TcpStream,
    mut buf: Vec<u8>,
) -> Option<Vec<u8>> {
    let mut sent = 0;
    while sent < buf.len() {
        let write = stream.write(buf.slice(sent..));
        match time::timeout(proxy.config.client_write_timeout, write).await {
            Ok((Ok(n), back)) if n > 0 => {
                buf = back.into_inner();
                sent += n;
            }
            Ok(_) | Err(_) => return None,
        }
    }
    Some(buf)
}

/// Writes what `output` has gathered, and gives back its capacity if a large reply grew it.
pub(super) async fn flush(
    proxy: &Proxy,
    stream: &TcpStream,
    output: &mut Vec<u8>,
) -> Result<(), ()> {
    if output.is_empty() {
        return Ok(());
    }
    let mut buf = write_out(proxy, stream, std::mem::take(output))
        .await
        .ok_or(())?;
    buf.clear();
    if buf.capacity() > SHRINK_ABOVE {
        flow::freed(buf.capacity());
        buf = Vec::with_capacity(BUF_SIZE);
    }
    *output = buf;
    Ok(())
}

/// Appends `bytes` to the client's output, writing when [`GATHER`] bytes are gathered.
pub(super) async fn push(
    proxy: &Proxy,
    stream: &TcpStream,
    output: &mut Vec<u8>,
    bytes: &[u8],
) -> Result<(), ()> {
    output.extend_from_slice(bytes);
    if output.len() >= GATHER {
        flush(proxy, stream, output).await?;
    }
    Ok(())
}
