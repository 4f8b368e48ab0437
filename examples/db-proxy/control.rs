//! Blocking RESP connections for the proxy's own control requests, made outside the cores'
//! event loops (the cluster refresh thread, learning `COMMAND` at start), and a small RESP2
//! value parser for their replies. Client traffic never comes here.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::resp;

/// The longest reply a control request accepts.
const MAX_REPLY: usize = 64 << 20;

/// A blocking connection, with a timeout on every read and write.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects to `addr`; `timeout` bounds the connect and each read and write.
    pub(crate) fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends one command and reads its reply.
    pub(crate) fn call(&mut self, args: &[&[u8]]) -> io::Result<Value> {
        self.call_raw(args).map(|raw| Value::parse(&raw).0)
    }

    /// Sends one command and returns its reply's bytes, whole (at most [`MAX_REPLY`]).
    pub(crate) fn call_raw(&mut self, args: &[&[u8]]) -> io::Result<Vec<u8>> {
        let mut request = Vec::new();
        resp::encode_command(&mut request, args.iter().copied());
        self.stream.write_all(&request)?;
        loop {
            match resp::scan_reply(&self.buf, 16).map_err(|e| io::Error::other(e.to_string()))? {
                Some(len) => {
                    let rest = self.buf.split_off(len);
                    return Ok(std::mem::replace(&mut self.buf, rest));
                }
                None if self.buf.len() > MAX_REPLY => {
                    return Err(io::Error::other("reply longer than 64 MiB"));
                }
                None => {
                    let mut chunk = [0u8; 16 * 1024];
                    let n = self.stream.read(&mut chunk)?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }
}

/// A parsed RESP2 reply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

impl Value {
    /// Parses one complete reply (checked by `resp::scan_reply` first); the value and its
    /// length.
    pub(crate) fn parse(buf: &[u8]) -> (Value, usize) {
        let line_end = buf
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(buf.len());
        let line = String::from_utf8_lossy(buf.get(1..line_end).unwrap_or_default()).into_owned();
        let after = (line_end + 2).min(buf.len());
        match buf.first() {
            Some(b'+') => (Value::Simple(line), after),
            Some(b'-') => (Value::Error(line), after),
            Some(b':') => (Value::Int(line.parse().unwrap_or(0)), after),
            Some(b'$') => match line.parse::<usize>() {
                Ok(n) => {
                    let end = (after + n).min(buf.len());
                    (
                        Value::Bulk(Some(buf[after..end].to_vec())),
                        (end + 2).min(buf.len()),
                    )
                }
                Err(_) => (Value::Bulk(None), after),
            },
            Some(b'*') => match line.parse::<usize>() {
                Ok(n) => {
                    let mut items = Vec::with_capacity(n.min(1024));
                    let mut pos = after;
                    for _ in 0..n {
                        let (item, len) = Value::parse(&buf[pos..]);
                        items.push(item);
                        pos += len;
                    }
                    (Value::Array(Some(items)), pos)
                }
                Err(_) => (Value::Array(None), after),
            },
            _ => (Value::Error("unparsable reply".into()), buf.len()),
        }
    }

    pub(crate) fn array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(Some(items)) => Some(items),
            _ => None,
        }
    }

    pub(crate) fn int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => self.text()?.parse().ok(),
        }
    }

    pub(crate) fn text(&self) -> Option<String> {
        match self {
            Value::Simple(s) => Some(s.clone()),
            Value::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The value after the bulk or simple string `key` in a flat key/value array (RESP2's
    /// maps).
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.array()?
            .chunks(2)
            .find(|kv| kv[0].text().as_deref() == Some(key))
            .and_then(|kv| kv.get(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_or_hostile_replies_parse_without_panicking() {
        for buf in [
            &b""[..],
            b"\r\n",
            b"*3\r\n:1\r\n",
            b"$10\r\nabc",
            b"*x\r\n",
            b"$-5\r\n",
            b"?",
        ] {
            let (_, len) = Value::parse(buf);
            assert!(len <= buf.len());
        }
    }
}
