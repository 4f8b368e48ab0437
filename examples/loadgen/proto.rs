//! The three protocols loadgen speaks: how to encode a request and where a reply ends.
//!
//! - **echo**: a request is `size` bytes; its reply is the same `size` bytes back.
//! - **http**: `GET <path> HTTP/1.1` with keep-alive; a reply is a status line and headers
//!   (parsed with httparse) followed by a body framed by `Content-Length` or by
//!   `Transfer-Encoding: chunked` (RFC 9112 §6-7). A status of 400 or above counts as an error.
//! - **resp**: `GET key` / `SET key value` as RESP2 arrays of bulk strings over a key space
//!   of `key:<n>`; a reply is any complete RESP value (nested arrays included), framed by
//!   db-proxy's reply scanner (`examples/db-proxy/resp/scan.rs`, included as module `scan`);
//!   an error reply (`-ERR ...`) counts as an error. Source: <https://redis.io/docs/latest/develop/reference/protocol-spec/>.
//!
//! [`Framer::reply`] looks at the bytes received so far and says whether they start with a
//! whole reply, and how long it is: replies are never copied, only measured.

use std::fmt;

/// Longest reply header (HTTP status line and headers) accepted before the reply is malformed.
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed per HTTP reply.
const MAX_HEADERS: usize = 96;
/// Deepest RESP array nesting accepted.
const MAX_DEPTH: usize = 32;

/// What loadgen sends; see the module docs.
#[derive(Clone, Debug)]
pub enum Protocol {
    /// Fixed-size messages echoed back.
    Echo { size: usize },
    /// HTTP/1.1 GET with keep-alive.
    Http { host: String, path: String },
    /// RESP GET/SET over `keyspace` keys with `value_size`-byte values.
    Resp {
        command: RespCommand,
        keyspace: u64,
        value_size: usize,
    },
}

/// Which RESP command each request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RespCommand {
    /// `GET key`.
    Get,
    /// `SET key value`.
    Set,
    /// `SET` and `GET` alternately.
    Mix,
}

/// How a reply ended, as far as the load generator is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Bytes the reply takes in the stream.
    pub len: usize,
    /// Whether the server answered with an error (RESP `-`, HTTP status >= 400).
    pub error: bool,
}

/// A reply that cannot be framed: the stream cannot be followed any further.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Builds requests for one connection and frames its replies.
pub struct Framer {
    protocol: Protocol,
    /// The echo message, or the whole HTTP request: every request is the same bytes.
    fixed: Vec<u8>,
    /// The RESP value, written into every SET.
    value: Vec<u8>,
    rng: XorShift,
    sent: u64,
}

impl Framer {
    /// A framer for `protocol`; `seed` picks this connection's keys (RESP only).
    pub fn new(protocol: &Protocol, seed: u64) -> Framer {
        let fixed = match protocol {
            Protocol::Echo { size } => (0..*size).map(|i| b'a' + (i % 26) as u8).collect(),
            Protocol::Http { host, path } => {
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: corio-loadgen\r\n\r\n")
                    .into_bytes()
            }
            Protocol::Resp { .. } => Vec::new(),
        };
        let value = match protocol {
            Protocol::Resp { value_size, .. } => vec![b'x'; *value_size],
            _ => Vec::new(),
        };
        Framer {
            protocol: protocol.clone(),
            fixed,
            value,
            rng: XorShift::new(seed),
            sent: 0,
        }
    }

    /// Appends the next request to `out`.
    pub fn request(&mut self, out: &mut Vec<u8>) {
        let sent = self.sent;
        self.sent += 1;
        match &self.protocol {
            Protocol::Echo { .. } | Protocol::Http { .. } => out.extend_from_slice(&self.fixed),
            Protocol::Resp {
                command, keyspace, ..
            } => {
                let key = self.rng.next() % (*keyspace).max(1);
                let set = match command {
                    RespCommand::Get => false,
                    RespCommand::Set => true,
                    RespCommand::Mix => sent % 2 == 0,
                };
                let key = format!("key:{key:012}");
                if set {
                    out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
                    bulk(out, key.as_bytes());
                    bulk(out, &self.value);
                } else {
                    out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n");
                    bulk(out, key.as_bytes());
                }
            }
        }
    }

    /// Frames the first reply in `buf`: `Ok(None)` while it is incomplete.
    ///
    /// # Errors
    /// When `buf` cannot start a reply of this protocol (an echo that differs from what was
    /// sent, an HTTP head that does not parse or is over 64 KiB, a RESP type byte that does not
    /// exist or a length that is not a number).
    pub fn reply(&self, buf: &[u8]) -> Result<Option<Reply>, ProtocolError> {
        match &self.protocol {
            Protocol::Echo { size } => {
                let have = buf.len().min(*size);
                if buf[..have] != self.fixed[..have] {
                    return Err(ProtocolError(
                        "echo reply differs from the message sent".into(),
                    ));
                }
                Ok((have == *size).then_some(Reply {
                    len: *size,
                    error: false,
                }))
            }
            Protocol::Http { .. } => http_reply(buf),
            // Framed by db-proxy's own reply scanner (`examples/db-proxy/resp/scan.rs`).
            Protocol::Resp { .. } => match crate::scan::scan_reply(buf, MAX_DEPTH) {
                Ok(Some(len)) => Ok(Some(Reply {
                    len,
                    error: buf[0] == b'-',
                })),
                Ok(None) if buf.len() > MAX_HEAD && find_crlf(&buf[..MAX_HEAD]).is_none() => {
                    Err(ProtocolError("RESP line longer than 64 KiB".into()))
                }
                Ok(None) => Ok(None),
                Err(err) => Err(ProtocolError(err.to_string())),
            },
        }
    }
}

fn bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(data.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

fn http_reply(buf: &[u8]) -> Result<Option<Reply>, ProtocolError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(ProtocolError("HTTP reply head longer than 64 KiB".into()))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ProtocolError(format!("bad HTTP reply: {e}"))),
    };
    match response.code {
        // An interim reply (100 Continue, 103 Early Hints) precedes the real one: skip it.
        Some(100 | 102..=199) => {
            return Ok(http_reply(&buf[head..])?.map(|reply| Reply {
                len: head + reply.len,
                error: reply.error,
            }))
        }
        Some(101) => {
            return Err(ProtocolError(
                "the server switched protocols (101): not HTTP any more".into(),
            ))
        }
        _ => {}
    }
    let error = response.code.is_none_or(|code| code >= 400);
    let mut content_length = None;
    let mut chunked = false;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| ProtocolError("bad HTTP Content-Length".into()))?;
            content_length = Some(n);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = header
                .value
                .split(|&b| b == b',')
                .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
    }
    let body = if chunked {
        match chunked_len(&buf[head..])? {
            Some(n) => n,
            None => return Ok(None),
        }
    } else {
        // A reply with neither header (and not a 1xx/204/304) would be framed by closing the
        // connection, which a keep-alive load cannot follow.
        let no_body = matches!(response.code, Some(204 | 304));
        match content_length {
            Some(n) => n,
            None if no_body => 0,
            None => {
                return Err(ProtocolError(
                    "HTTP reply has neither Content-Length nor chunked encoding".into(),
                ))
            }
        }
    };
    Ok((buf.len() - head >= body).then_some(Reply {
        len: head + body,
        error,
    }))
}

/// Length of a chunked body (RFC 9112 §7.1) at the start of `buf`, trailers included.
fn chunked_len(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    let mut at = 0;
    loop {
        let Some(line_end) = find_crlf(&buf[at..]) else {
            return Ok(None);
        };
        let line = &buf[at..at + line_end];
        let size_part = line.split(|&b| b == b';').next().unwrap_or(line);
        let size = std::str::from_utf8(size_part)
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or_else(|| ProtocolError("bad HTTP chunk size".into()))?;
        at += line_end + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let Some(end) = find_crlf(&buf[at..]) else {
                    return Ok(None);
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some(at));
                }
            }
        }
        let next = at
            .checked_add(size)
            .and_then(|n| n.checked_add(2))
            .ok_or_else(|| ProtocolError("HTTP chunk size out of range".into()))?;
        if buf.len() < next {
            return Ok(None);
        }
        at = next;
    }
}

/// A xorshift64* generator: cheap, deterministic per seed.
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (any value; zero is replaced).
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next pseudo-random value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp() -> Framer {
        Framer::new(
            &Protocol::Resp {
                command: RespCommand::Mix,
                keyspace: 10,
                value_size: 3,
            },
            1,
        )
    }

    #[test]
    fn resp_requests_alternate_set_and_get_over_the_keyspace() {
        let mut framer = resp();
        let mut out = Vec::new();
        framer.request(&mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.starts_with("*3\r\n$3\r\nSET\r\n$16\r\nkey:0000000000"),
            "{text}"
        );
        assert!(text.ends_with("$3\r\nxxx\r\n"), "{text}");
        out.clear();
        framer.request(&mut out);
        assert!(out.starts_with(b"*2\r\n$3\r\nGET\r\n$16\r\nkey:"));
    }

    #[test]
    fn resp_replies_are_framed_whole_and_only_whole() {
        let framer = resp();
        let replies: [(&[u8], bool); 7] = [
            (b"+OK\r\n", false),
            (b"-ERR no\r\n", true),
            (b":42\r\n", false),
            (b"$-1\r\n", false),
            (b"$3\r\nabc\r\n", false),
            (b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", false),
            // Only a reply that is an error counts as one (not an error inside an array).
            (b"*2\r\n-ERR x\r\n+OK\r\n", false),
        ];
        for (reply, error) in replies {
            for cut in 0..reply.len() {
                assert_eq!(framer.reply(&reply[..cut]), Ok(None), "{reply:?} cut {cut}");
            }
            let mut stream = reply.to_vec();
            stream.extend_from_slice(b"+NEXT\r\n");
            let want = Reply {
                len: reply.len(),
                error,
            };
            assert_eq!(framer.reply(&stream), Ok(Some(want)), "{reply:?}");
        }
    }

    #[test]
    fn bad_resp_is_a_protocol_error() {
        let framer = resp();
        assert!(framer.reply(b"?what\r\n").is_err());
        assert!(framer.reply(b"$abc\r\n").is_err());
        assert!(framer.reply(b"$-5\r\n").is_err());
        assert!(framer.reply(b"$1\r\nabXY").is_err());
    }

    #[test]
    fn echo_reply_is_the_message() {
        let mut framer = Framer::new(&Protocol::Echo { size: 4 }, 0);
        let mut out = Vec::new();
        framer.request(&mut out);
        assert_eq!(out, b"abcd");
        assert_eq!(framer.reply(b"ab"), Ok(None));
        assert_eq!(
            framer.reply(b"abcdab"),
            Ok(Some(Reply {
                len: 4,
                error: false
            }))
        );
        assert!(framer.reply(b"abX").is_err());
    }

    fn http() -> Framer {
        Framer::new(
            &Protocol::Http {
                host: "h".into(),
                path: "/".into(),
            },
            0,
        )
    }

    #[test]
    fn http_replies_framed_by_length_or_chunks() {
        let framer = http();
        let cases: [(&[u8], bool); 4] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false),
            (b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", true),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\n\r\n",
                false,
            ),
            (b"HTTP/1.1 204 No Content\r\n\r\n", false),
        ];
        for (reply, error) in cases {
            for cut in 0..reply.len() {
                assert_eq!(framer.reply(&reply[..cut]), Ok(None), "cut {cut}");
            }
            let mut stream = reply.to_vec();
            stream.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            let want = Reply {
                len: reply.len(),
                error,
            };
            assert_eq!(framer.reply(&stream), Ok(Some(want)));
        }
        assert!(framer.reply(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        // An interim 103 is part of the reply that follows it.
        let early = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(framer.reply(&early[..40]), Ok(None));
        assert_eq!(
            framer.reply(early),
            Ok(Some(Reply {
                len: early.len(),
                error: false
            }))
        );
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffe\r\n";
        assert!(framer.reply(huge).is_err());
        assert!(framer.reply(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn http_request_is_keep_alive_get() {
        let mut framer = http();
        let mut out = Vec::new();
        framer.request(&mut out);
        assert_eq!(
            out,
            b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: corio-loadgen\r\n\r\n"
        );
    }
}
