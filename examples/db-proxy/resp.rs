//! RESP framing for the proxy: the incremental request parser here, the reply scanner in
//! `scan.rs` (shared with loadgen), the encoders in `encode.rs`.
//!
//! A session hands [`parse_request`] every byte its client sent that is not yet consumed; it
//! answers with one whole request, or with how many bytes must arrive before a retry can
//! succeed. An upstream reader hands [`scan_reply`] what its Redis server sent, learns where the
//! first reply ends, and forwards those bytes to the session without decoding them. The `write_*`
//! encoders build the replies the proxy makes itself, and [`encode_command`] builds the multibulk
//! requests it sends upstream (re-encoded inline commands, split multi-key commands).
//!
//! Request parsing follows redis-server's `processMultibulkBuffer` and `processInlineBuffer`:
//! the same limits and the same error texts, decided as soon as a length line is complete and
//! before anything sized by a claimed length is allocated. Where this parser is stricter than
//! redis-server it says so: a length line or bulk string must end in exactly CRLF (redis skips
//! any two bytes), an inline line over [`Limits::max_inline_len`] is refused even when its
//! newline has arrived. As in redis-server, a multibulk count `<= 0` (`*0`, `*-1`, `*-10`) is
//! an empty request, ignored. A request split at any byte boundary parses identically once
//! all of it has arrived: a prefix of a valid request is always [`Parsed::Incomplete`].

use std::fmt;
use std::ops::Range;

mod encode;
mod scan;

pub(crate) use encode::*;

/// The length of the first complete reply in `buf` (see `scan.rs`), with the proxy's error
/// type.
///
/// # Errors
/// A [`ProtocolError`] for bytes that are not a RESP reply, or nest deeper than `max_depth`.
pub(crate) fn scan_reply(buf: &[u8], max_depth: usize) -> Result<Option<usize>, ProtocolError> {
    scan::scan_reply(buf, max_depth).map_err(|err| match err {
        scan::ReplyError::BadType(byte) => ProtocolError::BadReplyType(byte),
        scan::ReplyError::BadLength => ProtocolError::BadReplyLength,
        scan::ReplyError::MissingCrlf => ProtocolError::MissingCrlf,
        scan::ReplyError::TooDeep => ProtocolError::ReplyTooDeep,
    })
}

/// Caps on what a client may claim, checked as soon as a length line is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Largest bulk string argument, in bytes (redis-server's `proto-max-bulk-len`).
    pub(crate) max_bulk_len: usize,
    /// Most arguments in one multibulk request.
    pub(crate) max_array_len: usize,
    /// Longest inline request line, and longest `*`/`$` length line, in bytes.
    pub(crate) max_inline_len: usize,
}

impl Default for Limits {
    /// redis-server's defaults: 512 MiB bulk strings, 1 Mi arguments, 64 KiB inline lines.
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_array_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
        }
    }
}

/// One argument of a parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    /// The argument is these bytes of the parsed buffer, unchanged (every multibulk argument,
    /// and every unquoted inline one): no copy.
    Range(Range<usize>),
    /// An inline argument written with quotes or escapes, unescaped into its own bytes.
    Owned(Vec<u8>),
}

impl Arg {
    fn bytes<'a>(&'a self, buf: &'a [u8]) -> &'a [u8] {
        match self {
            Arg::Range(range) => &buf[range.clone()],
            Arg::Owned(bytes) => bytes,
        }
    }
}

/// A whole client request: the command name followed by its arguments.
///
/// [`Arg::Range`]s index the buffer given to [`parse_request`], so read the arguments with
/// that same buffer, before dropping the consumed bytes from its front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// The arguments in order; empty for counts `<= 0` and blank inline lines, which redis
    /// ignores.
    pub(crate) args: Vec<Arg>,
    /// True for an inline command (a bare text line), which must be re-encoded with
    /// [`encode_command`] before being forwarded.
    pub(crate) inline: bool,
}

impl Request {
    /// The number of arguments, command name included.
    pub(crate) fn len(&self) -> usize {
        self.args.len()
    }

    /// Argument `i`, read from `buf`, the buffer this request was parsed from.
    ///
    /// # Panics
    /// If `i >= self.len()`, or if `buf` is shorter than the buffer that was parsed.
    #[cfg(test)]
    pub(crate) fn arg<'a>(&'a self, buf: &'a [u8], i: usize) -> &'a [u8] {
        self.args[i].bytes(buf)
    }

    /// Every argument in order, read from `buf`, the buffer this request was parsed from.
    pub(crate) fn args<'a>(&'a self, buf: &'a [u8]) -> impl ExactSizeIterator<Item = &'a [u8]> {
        self.args.iter().map(move |arg| arg.bytes(buf))
    }
}

/// The outcome of [`parse_request`] on a buffer that holds no protocol error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// The first request in the buffer; it and its terminator span `consumed` bytes.
    Complete { request: Request, consumed: usize },
    /// The buffer holds only part of a request. Parsing again cannot succeed before the buffer
    /// (counted from the same start) is at least `need` bytes long; `need > buf.len()`. For a
    /// large bulk string `need` covers all of it, so the caller can skip re-parsing until then.
    Incomplete { need: usize },
}

/// Why a byte stream is not RESP. The stream cannot be resynchronised afterwards: reply with
/// the error (`-ERR {self}`) and close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtocolError {
    /// A `*` count line ran past the line limit without a CR.
    TooBigMultibulkCount,
    /// A `$` length line ran past the line limit without a CR.
    TooBigBulkCount,
    /// A `*` count that is not a number, or exceeds the array limit.
    InvalidMultibulkLength,
    /// A `$` length that is not a number, is negative, or exceeds the bulk limit.
    InvalidBulkLength,
    /// A multibulk argument that does not start with `$`: the byte found instead.
    ExpectedDollar(u8),
    /// An inline line ran past the line limit.
    TooBigInline,
    /// An inline line with an unterminated quote, or a closing quote followed by a non-space.
    UnbalancedQuotes,
    /// A bulk string or line not followed by CRLF.
    MissingCrlf,
    /// A reply starting with a byte that is no RESP type.
    BadReplyType(u8),
    /// A reply length or count that is not a number, or is negative where that means nothing.
    BadReplyLength,
    /// A reply nested deeper than the caller allows.
    ReplyTooDeep,
}

impl fmt::Display for ProtocolError {
    /// redis-server's text for the error, without the leading `-ERR `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            ProtocolError::TooBigMultibulkCount => "too big mbulk count string",
            ProtocolError::TooBigBulkCount => "too big bulk count string",
            ProtocolError::InvalidMultibulkLength => "invalid multibulk length",
            ProtocolError::InvalidBulkLength => "invalid bulk length",
            ProtocolError::ExpectedDollar(byte) => {
                return write!(
                    f,
                    "Protocol error: expected '$', got '{}'",
                    printable(*byte)
                );
            }
            ProtocolError::TooBigInline => "too big inline request",
            ProtocolError::UnbalancedQuotes => "unbalanced quotes in request",
            ProtocolError::MissingCrlf => "missing CRLF terminator",
            ProtocolError::BadReplyType(byte) => {
                return write!(f, "Protocol error: bad reply type '{}'", printable(*byte));
            }
            ProtocolError::BadReplyLength => "invalid reply length",
            ProtocolError::ReplyTooDeep => "reply nested too deeply",
        };
        write!(f, "Protocol error: {text}")
    }
}

/// The byte as a char if it is printable ASCII, else `?`, so an error text stays one clean line.
fn printable(byte: u8) -> char {
    if byte.is_ascii_graphic() || byte == b' ' {
        char::from(byte)
    } else {
        '?'
    }
}

/// Parses the first request in `buf`: multibulk if it starts with `*`, else an inline line.
///
/// # Errors
/// A [`ProtocolError`] as soon as the bytes seen cannot begin a valid request; never for a
/// prefix of a valid request.
pub(crate) fn parse_request(buf: &[u8], limits: &Limits) -> Result<Parsed, ProtocolError> {
    parse_request_resume(buf, limits, &mut Partial::default())
}

/// How far the parse of the request at the front of a client's buffer got, kept between reads
/// so that a request arriving in pieces is parsed once in all, not once per piece: the
/// arguments already parsed and where the next one starts (as redis-server's
/// `multibulklen`/`bulklen`), or how far an inline line was searched for its end.
#[derive(Debug, Default)]
pub(crate) struct Partial {
    /// The `*` count, once its line was parsed.
    count: Option<usize>,
    /// The arguments parsed so far.
    args: Vec<Arg>,
    /// Where the next argument starts (after the last parsed one's CRLF).
    pos: usize,
    /// Bytes of an inline line already searched for its `\n`.
    scanned: usize,
    /// Bulk arguments looked at, complete or not: the parser's work, for tests.
    pub(crate) bulks_examined: usize,
}

impl Partial {
    fn reset(&mut self) {
        self.count = None;
        self.args = Vec::new();
        self.pos = 0;
        self.scanned = 0;
    }
}

/// [`parse_request`] that goes on from `partial`, the state left by the previous call on the
/// same request (the same buffer start, more bytes). Offsets in `partial` are relative to
/// `buf`'s start, so the caller passes the request's bytes from its first byte each time and
/// keeps `partial` until the request completes (it is reset then, and on an error).
///
/// # Errors
/// As [`parse_request`].
pub(crate) fn parse_request_resume(
    buf: &[u8],
    limits: &Limits,
    partial: &mut Partial,
) -> Result<Parsed, ProtocolError> {
    let parsed = match buf.first() {
        None => Ok(more(buf)),
        Some(b'*') => parse_multibulk(buf, limits, partial),
        Some(_) => parse_inline(buf, limits, partial),
    };
    if !matches!(parsed, Ok(Parsed::Incomplete { .. })) {
        partial.reset();
    }
    parsed
}

/// Incomplete, with nothing known beyond "at least one more byte".
fn more(buf: &[u8]) -> Parsed {
    Parsed::Incomplete {
        need: buf.len() + 1,
    }
}

/// How far a multibulk parse got: a finished piece, or the buffer length it needs.
enum Step<T> {
    Done(T),
    Need(usize),
}

fn parse_multibulk(
    buf: &[u8],
    limits: &Limits,
    partial: &mut Partial,
) -> Result<Parsed, ProtocolError> {
    let count = match partial.count {
        Some(count) => count,
        None => {
            let too_long = ProtocolError::TooBigMultibulkCount;
            let Some(end) = header_line(buf, 0, limits.max_inline_len, too_long)? else {
                return Ok(more(buf));
            };
            let count = array_count(header_number(buf, 0, end), limits)?;
            partial.count = Some(count);
            partial.pos = end + 2;
            partial.args = Vec::with_capacity(count.min(1024));
            count
        }
    };
    while partial.args.len() < count {
        partial.bulks_examined += 1;
        match bulk(buf, partial.pos, limits)? {
            Step::Done(range) => {
                partial.pos = range.end + 2;
                partial.args.push(Arg::Range(range));
            }
            Step::Need(need) => return Ok(Parsed::Incomplete { need }),
        }
    }
    let request = Request {
        args: std::mem::take(&mut partial.args),
        inline: false,
    };
    Ok(Parsed::Complete {
        request,
        consumed: partial.pos,
    })
}

/// The argument count of a `*` line: any count `<= 0` is an empty request, as redis-server's
/// `processMultibulkBuffer` skips it.
fn array_count(count: Option<i64>, limits: &Limits) -> Result<usize, ProtocolError> {
    match count {
        Some(n) if n <= 0 => Ok(0),
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|&n| n <= limits.max_array_len)
            .ok_or(ProtocolError::InvalidMultibulkLength),
        None => Err(ProtocolError::InvalidMultibulkLength),
    }
}

/// One `$len\r\nbytes\r\n` argument starting at `start`: the range of its bytes.
fn bulk(buf: &[u8], start: usize, limits: &Limits) -> Result<Step<Range<usize>>, ProtocolError> {
    if start >= buf.len() {
        return Ok(Step::Need(buf.len() + 1));
    }
    let too_long = ProtocolError::TooBigBulkCount;
    let Some(end) = header_line(buf, start, limits.max_inline_len, too_long)? else {
        return Ok(Step::Need(buf.len() + 1));
    };
    if buf[start] != b'$' {
        return Err(ProtocolError::ExpectedDollar(buf[start]));
    }
    let len = header_number(buf, start, end)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n <= limits.max_bulk_len)
        .ok_or(ProtocolError::InvalidBulkLength)?;
    let data = end + 2;
    let data_end = data.saturating_add(len);
    let after = data_end.saturating_add(2);
    if buf.len() < after {
        return Ok(Step::Need(after));
    }
    if &buf[data_end..after] != b"\r\n" {
        return Err(ProtocolError::MissingCrlf);
    }
    Ok(Step::Done(data..data_end))
}

/// Finds the CR ending the length line that starts at `start` (`start < buf.len()`), once the
/// byte after it has arrived too. Like redis-server, a line still without a CR after `max`
/// bytes is `too_long`.
fn header_line(
    buf: &[u8],
    start: usize,
    max: usize,
    too_long: ProtocolError,
) -> Result<Option<usize>, ProtocolError> {
    let window_end = buf.len().min(start.saturating_add(max).saturating_add(1));
    match buf[start..window_end].iter().position(|&b| b == b'\r') {
        Some(i) if start + i + 1 < buf.len() => Ok(Some(start + i)),
        Some(_) => Ok(None),
        None if buf.len() - start > max => Err(too_long),
        None => Ok(None),
    }
}

/// The number between the type byte at `start` and the CR at `end`, if a LF follows the CR.
fn header_number(buf: &[u8], start: usize, end: usize) -> Option<i64> {
    if buf.get(end + 1) != Some(&b'\n') {
        return None;
    }
    parse_i64(&buf[start + 1..end])
}

pub(crate) use scan::parse_len as parse_i64;

fn parse_inline(
    buf: &[u8],
    limits: &Limits,
    partial: &mut Partial,
) -> Result<Parsed, ProtocolError> {
    let window = &buf[..buf.len().min(limits.max_inline_len.saturating_add(1))];
    // Search only what earlier calls have not searched.
    let from = partial.scanned.min(window.len());
    let Some(newline) = window[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| from + i)
    else {
        if buf.len() > limits.max_inline_len {
            return Err(ProtocolError::TooBigInline);
        }
        partial.scanned = window.len();
        return Ok(more(buf));
    };
    let line = &buf[..newline];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // redis-server splits the line as a C string, so a NUL byte ends it.
    let line = match line.iter().position(|&b| b == 0) {
        Some(nul) => &line[..nul],
        None => line,
    };
    let request = Request {
        args: split_inline(line)?,
        inline: true,
    };
    Ok(Parsed::Complete {
        request,
        consumed: newline + 1,
    })
}

/// C's `isspace`, which redis uses to skip the blanks between inline arguments.
fn is_blank(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

/// Splits an inline line into arguments as redis-server's `sdssplitargs` does.
fn split_inline(line: &[u8]) -> Result<Vec<Arg>, ProtocolError> {
    let mut args = Vec::new();
    let mut pos = 0;
    loop {
        while line.get(pos).is_some_and(|&b| is_blank(b)) {
            pos += 1;
        }
        if pos == line.len() {
            return Ok(args);
        }
        let (arg, next) = inline_token(line, pos)?;
        args.push(arg);
        pos = next;
    }
}

/// The argument starting at `start` and the index just past it. A bare word ends at a space,
/// tab, CR or LF; a quote opens a quoted part that ends the argument where it closes.
fn inline_token(line: &[u8], start: usize) -> Result<(Arg, usize), ProtocolError> {
    let mut pos = start;
    while let Some(&byte) = line.get(pos) {
        match byte {
            b' ' | b'\t' | b'\r' | b'\n' => return Ok((Arg::Range(start..pos), pos)),
            b'"' | b'\'' => {
                let mut owned = line[start..pos].to_vec();
                let next = if byte == b'"' {
                    double_quoted(line, pos + 1, &mut owned)?
                } else {
                    single_quoted(line, pos + 1, &mut owned)?
                };
                return Ok((Arg::Owned(owned), next));
            }
            _ => pos += 1,
        }
    }
    Ok((Arg::Range(start..pos), pos))
}

/// Unescapes a `"..."` part whose text starts at `pos` into `out`; returns the index past the
/// closing quote. Escapes: `\xHH`, `\n \r \t \b \a`, and `\` before any other byte is that byte.
fn double_quoted(line: &[u8], mut pos: usize, out: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    loop {
        match line.get(pos..) {
            Some([b'\\', b'x', high, low, ..])
                if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() =>
            {
                out.push((hex_value(*high) << 4) | hex_value(*low));
                pos += 4;
            }
            Some([b'\\', escaped, ..]) => {
                out.push(unescape(*escaped));
                pos += 2;
            }
            Some([b'"', ..]) => return after_quote(line, pos + 1),
            Some([byte, ..]) => {
                out.push(*byte);
                pos += 1;
            }
            _ => return Err(ProtocolError::UnbalancedQuotes),
        }
    }
}

/// Unescapes a `'...'` part whose text starts at `pos` into `out`; only `\'` is an escape.
fn single_quoted(line: &[u8], mut pos: usize, out: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    loop {
        match line.get(pos..) {
            Some([b'\\', b'\'', ..]) => {
                out.push(b'\'');
                pos += 2;
            }
            Some([b'\'', ..]) => return after_quote(line, pos + 1),
            Some([byte, ..]) => {
                out.push(*byte);
                pos += 1;
            }
            _ => return Err(ProtocolError::UnbalancedQuotes),
        }
    }
}

/// A closing quote must be followed by a blank or the end of the line.
fn after_quote(line: &[u8], pos: usize) -> Result<usize, ProtocolError> {
    match line.get(pos) {
        Some(&byte) if !is_blank(byte) => Err(ProtocolError::UnbalancedQuotes),
        _ => Ok(pos),
    }
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

fn unescape(byte: u8) -> u8 {
    match byte {
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'b' => 0x08,
        b'a' => 0x07,
        other => other,
    }
}

#[cfg(test)]
mod tests;
