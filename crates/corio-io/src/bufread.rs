//! [`BufReader`]: buffered reading on top of any [`OwnedRead`] source, for protocols made of
//! lines or delimited records: [`read_until`](BufReader::read_until),
//! [`read_line`](BufReader::read_line), [`lines`](BufReader::lines).
//!
//! The reader owns one buffer that it lends to the source for each refill and then hands out
//! in slices, so a line costs one copy (buffer to the caller's `Vec` or `String`), as with
//! `std::io::BufReader`.

use std::io;

use crate::buf::IoBuf;
use crate::OwnedRead;

/// Default buffer size: 8 KiB, as std's.
const DEFAULT_CAPACITY: usize = 8 * 1024;

/// Adds a buffer to an [`OwnedRead`] source: refills of up to `capacity` bytes, consumed a
/// record at a time.
///
/// # Cancellation
/// Cancel-safe over a socket: if a `read_until`/`read_line`/`next_line` future is dropped, the
/// bytes it had appended to the caller's buffer stay there, buffered bytes stay buffered, and
/// bytes of a refill in flight are kept by the socket for the next read. Over a pipe or
/// terminal (a [`File`](crate::fs::File)), a refill dropped after its bytes arrived loses them.
///
/// # Examples
/// A line-based chat client reading what the server says:
/// ```no_run
/// use corio::io::BufReader;
/// # corio::block_on(async {
/// let stream = corio::net::TcpStream::connect("127.0.0.1:7000").await?;
/// let mut lines = BufReader::new(&stream).lines();
/// while let Some(line) = lines.next_line().await? {
///     println!("server: {line}");
/// }
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct BufReader<R> {
    inner: R,
    /// The buffer; `None` only while a refill future that was dropped held it.
    buf: Option<Vec<u8>>,
    /// Bytes of `buf` already handed out.
    pos: usize,
    capacity: usize,
    /// The start of a line whose `read_line` or `next_line` future was dropped: kept here so
    /// that the next call goes on from it.
    line: Vec<u8>,
}

impl<R: OwnedRead> BufReader<R> {
    /// A reader with an 8 KiB buffer.
    pub fn new(inner: R) -> BufReader<R> {
        BufReader::with_capacity(DEFAULT_CAPACITY, inner)
    }

    /// A reader whose refills read up to `capacity` bytes (at least 1).
    pub fn with_capacity(capacity: usize, inner: R) -> BufReader<R> {
        let capacity = capacity.max(1);
        BufReader {
            inner,
            buf: Some(Vec::with_capacity(capacity)),
            pos: 0,
            capacity,
            line: Vec::new(),
        }
    }

    /// The source.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The bytes buffered and not yet consumed.
    pub fn buffer(&self) -> &[u8] {
        match &self.buf {
            Some(buf) => &buf[self.pos..],
            None => &[],
        }
    }

    /// The source and the bytes read from it but not consumed: a partial line a dropped
    /// `read_line` kept, then the buffered bytes (which the source will not return again).
    pub fn into_parts(self) -> (R, Vec<u8>) {
        let mut rest = self.line.clone();
        rest.extend_from_slice(self.buffer());
        (self.inner, rest)
    }

    /// The buffered bytes, refilling from the source first if none are left: an empty slice
    /// means EOF.
    ///
    /// # Errors
    /// The source's read error.
    pub async fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.buffer().is_empty() {
            let mut buf = self
                .buf
                .take()
                .unwrap_or_else(|| Vec::with_capacity(self.capacity));
            buf.clear();
            if buf.capacity() > self.capacity.saturating_mul(4) {
                // A reader that once held a giant record does not keep its memory.
                buf = Vec::with_capacity(self.capacity);
            }
            let limit = self.capacity.min(buf.capacity());
            let (res, back) = self.inner.read(buf.slice(..limit)).await;
            self.buf = Some(back.into_inner());
            self.pos = 0;
            res?;
        }
        Ok(self.buffer())
    }

    /// Marks `n` buffered bytes as consumed (clamped to what is buffered).
    pub fn consume(&mut self, n: usize) {
        self.pos += n.min(self.buffer().len());
    }

    /// Appends bytes to `out` up to and including the first `byte` (or up to EOF); the count
    /// appended, 0 at EOF.
    ///
    /// # Errors
    /// The source's read error (what was read before it stays in `out`).
    pub async fn read_until(&mut self, byte: u8, out: &mut Vec<u8>) -> io::Result<usize> {
        self.read_until_limit(byte, out, usize::MAX).await
    }

    /// As [`read_until`](Self::read_until), but fails with `InvalidData` once more than `limit`
    /// bytes have been appended without finding `byte`: a peer cannot make a server buffer an
    /// endless line.
    ///
    /// # Errors
    /// `InvalidData` past the limit (the bytes up to it are in `out`); the source's errors.
    pub async fn read_until_limit(
        &mut self,
        byte: u8,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> io::Result<usize> {
        let mut total = 0;
        loop {
            let available = self.fill_buf().await?;
            if available.is_empty() {
                return Ok(total);
            }
            let room = limit - total;
            match available.iter().position(|&b| b == byte) {
                Some(at) if at < room => {
                    out.extend_from_slice(&available[..=at]);
                    self.consume(at + 1);
                    return Ok(total + at + 1);
                }
                _ => {
                    let used = available.len().min(room);
                    out.extend_from_slice(&available[..used]);
                    self.consume(used);
                    total += used;
                    if total >= limit {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("no delimiter within {limit} bytes"),
                        ));
                    }
                }
            }
        }
    }

    /// Appends one line, with its `\n`, to `out`; the count appended, 0 at EOF.
    ///
    /// # Errors
    /// `InvalidData` if the line is not UTF-8 (then nothing is appended, as with std, and the
    /// line is dropped); the source's errors.
    ///
    /// # Cancellation
    /// Cancel-safe over a socket: the part of a line read by a dropped call is kept and
    /// completed by the next call.
    pub async fn read_line(&mut self, out: &mut String) -> io::Result<usize> {
        self.read_line_bytes(usize::MAX).await?;
        let line = std::mem::take(&mut self.line);
        let n = line.len();
        let line = String::from_utf8(line)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "line is not UTF-8"))?;
        out.push_str(&line);
        Ok(n)
    }

    /// Appends to `self.line` up to and including the next `\n` (or up to EOF), failing with
    /// `InvalidData` once the line holds `limit` bytes without one. What was appended stays in
    /// `self.line` if the future is dropped or fails.
    async fn read_line_bytes(&mut self, limit: usize) -> io::Result<()> {
        loop {
            if self.fill_buf().await?.is_empty() {
                return Ok(());
            }
            let available = match &self.buf {
                Some(buf) => &buf[self.pos..],
                None => &[],
            };
            let room = limit.saturating_sub(self.line.len());
            match available.iter().position(|&b| b == b'\n') {
                Some(at) if at < room => {
                    self.line.extend_from_slice(&available[..=at]);
                    self.pos += at + 1;
                    return Ok(());
                }
                _ => {
                    let used = available.len().min(room);
                    self.line.extend_from_slice(&available[..used]);
                    self.pos += used;
                    if self.line.len() >= limit {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("no line end within {limit} bytes"),
                        ));
                    }
                }
            }
        }
    }

    /// The lines of the source, without their `\n` or `\r\n`, each at most 64 KiB unless
    /// [`Lines::max_len`] says otherwise.
    pub fn lines(self) -> Lines<R> {
        Lines {
            reader: self,
            max_len: 64 * 1024,
        }
    }
}

/// The lines of a [`BufReader`], one [`next_line`](Lines::next_line) at a time.
#[derive(Debug)]
pub struct Lines<R> {
    reader: BufReader<R>,
    max_len: usize,
}

impl<R: OwnedRead> Lines<R> {
    /// Sets the longest line accepted, in bytes without its end (default 64 KiB).
    pub fn max_len(mut self, bytes: usize) -> Lines<R> {
        self.max_len = bytes;
        self
    }

    /// The next line without its `\n` or `\r\n`; `None` at EOF. A last line without `\n` is
    /// returned as a line.
    ///
    /// # Errors
    /// `InvalidData` for a line longer than the limit or not UTF-8 (that line is skipped up to
    /// the limit; the connection is usually best closed); the source's errors.
    ///
    /// # Cancellation
    /// Cancel-safe over a socket: a dropped call's partial line is kept for the next.
    pub async fn next_line(&mut self) -> io::Result<Option<String>> {
        // Room for the longest line plus its "\r\n".
        let limit = self.max_len.saturating_add(2);
        match self.reader.read_line_bytes(limit).await {
            Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                self.reader.line.clear();
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("line longer than {} bytes", self.max_len),
                ));
            }
            // The partial line stays in the reader for the next call.
            Err(err) => return Err(err),
            Ok(()) => {}
        }
        let mut line = std::mem::take(&mut self.reader.line);
        if line.is_empty() {
            return Ok(None);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        if line.len() > self.max_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line longer than {} bytes", self.max_len),
            ));
        }
        String::from_utf8(line)
            .map(Some)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "line is not UTF-8"))
    }

    /// The reader, with what it buffered.
    pub fn into_inner(self) -> BufReader<R> {
        self.reader
    }
}
