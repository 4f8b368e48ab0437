//! RESP2 framing for the proxy: an incremental request parser, a reply scanner, and encoders.
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
//! newline has arrived, and a multibulk count below `-1` is an error (redis treats every count
//! `<= 0` as an empty request). A request split at any byte boundary parses identically once
//! all of it has arrived: a prefix of a valid request is always [`Parsed::Incomplete`].

use std::fmt;
use std::ops::Range;

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
    /// The arguments in order; empty for `*0`, `*-1` and blank inline lines, which redis ignores.
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
    /// A `*` count that is not a number, is below `-1`, or exceeds the array limit.
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
    match buf.first() {
        None => Ok(more(buf)),
        Some(b'*') => parse_multibulk(buf, limits),
        Some(_) => parse_inline(buf, limits),
    }
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

fn parse_multibulk(buf: &[u8], limits: &Limits) -> Result<Parsed, ProtocolError> {
    let too_long = ProtocolError::TooBigMultibulkCount;
    let Some(end) = header_line(buf, 0, limits.max_inline_len, too_long)? else {
        return Ok(more(buf));
    };
    let count = array_count(header_number(buf, 0, end), limits)?;
    let mut pos = end + 2;
    let mut args = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        match bulk(buf, pos, limits)? {
            Step::Done(range) => {
                pos = range.end + 2;
                args.push(Arg::Range(range));
            }
            Step::Need(need) => return Ok(Parsed::Incomplete { need }),
        }
    }
    let request = Request {
        args,
        inline: false,
    };
    Ok(Parsed::Complete {
        request,
        consumed: pos,
    })
}

/// The argument count of a `*` line: `*0` and `*-1` are empty requests.
fn array_count(count: Option<i64>, limits: &Limits) -> Result<usize, ProtocolError> {
    match count {
        Some(-1) => Ok(0),
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

/// Parses a decimal `i64` exactly as redis-server's `string2ll`: an optional `-`, then `0` or
/// digits without a leading zero; no `+`, no spaces, no `-0`, nothing out of range.
pub(crate) fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, text),
    };
    match digits {
        [b'0'] if !negative => return Some(0),
        [b'1'..=b'9', ..] => {}
        _ => return None,
    }
    let mut value: u64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(value)
    } else {
        i64::try_from(value).ok()
    }
}

fn parse_inline(buf: &[u8], limits: &Limits) -> Result<Parsed, ProtocolError> {
    let window = &buf[..buf.len().min(limits.max_inline_len.saturating_add(1))];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() > limits.max_inline_len {
            return Err(ProtocolError::TooBigInline);
        }
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

/// What one reply header introduces.
enum Value {
    /// A whole value: a line, or a bulk string already skipped.
    Scalar,
    /// An aggregate whose next `n` values belong to it.
    Aggregate(u64),
}

/// The length in bytes of the first complete reply in `buf`, or `None` if it is incomplete.
///
/// Knows RESP2 (`+ - : $ *`, with the nulls `$-1` and `*-1`) and, for robustness, RESP3's
/// length-prefixed types (`_ , # ( ! = % ~ > |`; an attribute `|` counts together with the value
/// it annotates). It checks framing only, lengths and CRLFs, not the text of lines. Bulk strings
/// are skipped by their length and nesting is tracked on a heap stack, so the cost is
/// proportional to the number of values, not bytes, and deep replies cannot overflow the stack.
///
/// # Errors
/// A [`ProtocolError`] for an unknown type byte, a bad length, a missing CRLF, or a reply with
/// aggregates nested more than `max_depth` deep (a bare `:1` has depth 0, `*0` depth 1).
pub(crate) fn scan_reply(buf: &[u8], max_depth: usize) -> Result<Option<usize>, ProtocolError> {
    let mut open: Vec<u64> = Vec::new(); // values still due in each open aggregate, innermost last
    let mut pos = 0;
    loop {
        let Some((value, next)) = reply_header(buf, pos)? else {
            return Ok(None);
        };
        pos = next;
        if let Value::Aggregate(count) = value {
            if open.len() >= max_depth {
                return Err(ProtocolError::ReplyTooDeep);
            }
            if count > 0 {
                open.push(count);
                continue;
            }
        }
        if value_done(&mut open) {
            return Ok(Some(pos));
        }
    }
}

/// Counts one finished value against the open aggregates, closing each one it completes;
/// true when the outermost value is complete.
fn value_done(open: &mut Vec<u64>) -> bool {
    while let Some(due) = open.last_mut() {
        *due -= 1;
        if *due > 0 {
            return false;
        }
        open.pop();
    }
    true
}

/// The reply type bytes: RESP2's, then RESP3's.
const REPLY_TYPES: &[u8] = b"+-:$*_,#(!=%~>|";

/// Reads the reply header at `pos`: what it introduces and where the next header starts.
fn reply_header(buf: &[u8], pos: usize) -> Result<Option<(Value, usize)>, ProtocolError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    if !REPLY_TYPES.contains(&kind) {
        return Err(ProtocolError::BadReplyType(kind));
    }
    let Some(cr) = buf[pos + 1..].iter().position(|&b| b == b'\r') else {
        return Ok(None);
    };
    let cr = pos + 1 + cr;
    match buf.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(ProtocolError::MissingCrlf),
    }
    let (line, next) = (&buf[pos + 1..cr], cr + 2);
    let count = |nullable| reply_len(line, nullable).map(|n| n.unwrap_or(0));
    let value = match kind {
        b'$' | b'=' | b'!' => return skip_blob(buf, next, reply_len(line, kind == b'$')?),
        b'*' | b'~' | b'>' => Value::Aggregate(count(kind == b'*')?),
        b'%' => Value::Aggregate(count(false)? * 2),
        b'|' => Value::Aggregate(count(false)? * 2 + 1), // attribute pairs, then their value
        _ => Value::Scalar,                              // a one-line type
    };
    Ok(Some((value, next)))
}

/// A reply length or count; `None` for `-1` where `nullable`.
fn reply_len(line: &[u8], nullable: bool) -> Result<Option<u64>, ProtocolError> {
    match parse_i64(line) {
        Some(-1) if nullable => Ok(None),
        Some(n) => u64::try_from(n)
            .map(Some)
            .map_err(|_| ProtocolError::BadReplyLength),
        None => Err(ProtocolError::BadReplyLength),
    }
}

/// Skips the `len` bytes and CRLF of a bulk string whose data starts at `start`.
fn skip_blob(
    buf: &[u8],
    start: usize,
    len: Option<u64>,
) -> Result<Option<(Value, usize)>, ProtocolError> {
    let Some(len) = len else {
        return Ok(Some((Value::Scalar, start)));
    };
    let len = usize::try_from(len).map_err(|_| ProtocolError::BadReplyLength)?;
    let end = start.saturating_add(len);
    let after = end.saturating_add(2);
    if buf.len() < after {
        return Ok(None);
    }
    if &buf[end..after] != b"\r\n" {
        return Err(ProtocolError::MissingCrlf);
    }
    Ok(Some((Value::Scalar, after)))
}

/// Appends a simple string reply, `+{text}\r\n`; a CR or LF in `text` becomes a space.
pub(crate) fn write_simple(out: &mut Vec<u8>, text: &str) {
    write_line(out, b'+', text);
}

/// Appends an error reply, `-{msg}\r\n`; `msg` is the whole text, e.g. `ERR unknown command`.
/// A CR or LF in `msg` becomes a space (as redis-server does), so the reply stays one line.
pub(crate) fn write_error(out: &mut Vec<u8>, msg: &str) {
    write_line(out, b'-', msg);
}

fn write_line(out: &mut Vec<u8>, kind: u8, text: &str) {
    out.push(kind);
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// Appends an integer reply, `:{n}\r\n`.
pub(crate) fn write_integer(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    if n < 0 {
        out.push(b'-');
    }
    push_decimal(out, n.unsigned_abs());
    out.extend_from_slice(b"\r\n");
}

/// Appends a bulk string reply, `${len}\r\n{data}\r\n`.
pub(crate) fn write_bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'$');
    push_decimal(out, data.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the RESP2 null bulk string, `$-1\r\n` (a missing key).
pub(crate) fn write_null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// Appends an array header, `*{len}\r\n`; the caller then appends `len` values.
pub(crate) fn write_array_len(out: &mut Vec<u8>, len: usize) {
    out.push(b'*');
    push_decimal(out, len as u64);
    out.extend_from_slice(b"\r\n");
}

/// Appends a multibulk request: an array of bulk strings, one per argument.
pub(crate) fn encode_command<'a, I>(out: &mut Vec<u8>, args: I)
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: ExactSizeIterator,
{
    let args = args.into_iter();
    write_array_len(out, args.len());
    for arg in args {
        write_bulk(out, arg);
    }
}

/// Appends `n` in decimal, formatted on the stack.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limits = Limits {
        max_bulk_len: 100,
        max_array_len: 8,
        max_inline_len: 16,
    };

    fn parse(buf: &[u8]) -> Result<Parsed, ProtocolError> {
        parse_request(buf, &Limits::default())
    }

    /// The arguments of the complete request at the start of `buf`, and its length.
    fn complete(buf: &[u8], limits: &Limits) -> (Vec<Vec<u8>>, usize) {
        match parse_request(buf, limits) {
            Ok(Parsed::Complete { request, consumed }) => {
                assert_eq!(request.len(), request.args(buf).len());
                (request.args(buf).map(<[u8]>::to_vec).collect(), consumed)
            }
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    fn args_of(buf: &[u8]) -> Vec<Vec<u8>> {
        complete(buf, &Limits::default()).0
    }

    fn strings(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    /// Every proper prefix of `buf` is incomplete, with a `need` between the prefix and the
    /// whole; the whole parses to the same request as parsing it with trailing bytes.
    fn assert_split_invariant(buf: &[u8], limits: &Limits) {
        let Ok(Parsed::Complete { request, consumed }) = parse_request(buf, limits) else {
            panic!("{buf:?} does not parse");
        };
        for cut in 0..consumed {
            match parse_request(&buf[..cut], limits) {
                Ok(Parsed::Incomplete { need }) => {
                    assert!(
                        need > cut && need <= consumed,
                        "need {need} at cut {cut} of {buf:?}"
                    )
                }
                other => panic!("prefix {cut} of {buf:?} gave {other:?}"),
            }
        }
        let mut longer = buf[..consumed].to_vec();
        longer.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        let again = parse_request(&longer, limits);
        assert_eq!(again, Ok(Parsed::Complete { request, consumed }));
    }

    #[test]
    fn multibulk_arguments_are_ranges_of_the_buffer() {
        let buf = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
        let Ok(Parsed::Complete { request, consumed }) = parse(buf) else {
            panic!("no request");
        };
        assert_eq!(consumed, buf.len());
        assert!(!request.inline);
        assert_eq!(request.args, vec![Arg::Range(8..11), Arg::Range(17..20)]);
        assert_eq!(
            (request.arg(buf, 0), request.arg(buf, 1)),
            (&b"GET"[..], &b"key"[..])
        );
    }

    #[test]
    fn bulk_strings_are_binary_safe() {
        let buf = b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\n\r\n\0\xff\r\n";
        assert_eq!(
            args_of(buf),
            vec![b"SET".to_vec(), vec![], b"\r\n\0\xff".to_vec()]
        );
    }

    #[test]
    fn zero_and_null_counts_are_empty_requests() {
        for buf in [&b"*0\r\n"[..], b"*-1\r\n"] {
            assert_eq!(complete(buf, &Limits::default()), (vec![], buf.len()));
        }
    }

    #[test]
    fn bad_counts_are_invalid_multibulk_length() {
        let cases: [&[u8]; 8] = [
            b"*-2\r\n",
            b"*abc\r\n",
            b"*+1\r\n",
            b"*01\r\n",
            b"*\r\n",
            b"* 1\r\n",
            b"*1\rx",
            b"*99999999999999999999\r\n",
        ];
        for buf in cases {
            assert_eq!(
                parse(buf),
                Err(ProtocolError::InvalidMultibulkLength),
                "{buf:?}"
            );
        }
        assert_eq!(
            parse_request(b"*9\r\n", &SMALL),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert!(matches!(
            parse_request(b"*8\r\n", &SMALL),
            Ok(Parsed::Incomplete { .. })
        ));
    }

    #[test]
    fn bad_bulk_lengths_are_refused_before_the_data_arrives() {
        let cases: [&[u8]; 6] = [
            b"*1\r\n$-1\r\n",
            b"*1\r\n$+3\r\n",
            b"*1\r\n$03\r\n",
            b"*1\r\n$x\r\n",
            b"*1\r\n$\r\n",
            b"*1\r\n$3\rX",
        ];
        for buf in cases {
            assert_eq!(parse(buf), Err(ProtocolError::InvalidBulkLength), "{buf:?}");
        }
        assert_eq!(
            parse_request(b"*1\r\n$101\r\n", &SMALL),
            Err(ProtocolError::InvalidBulkLength)
        );
        let huge = b"*1\r\n$536870913\r\n"; // one byte over 512 MiB
        assert_eq!(parse(huge), Err(ProtocolError::InvalidBulkLength));
    }

    #[test]
    fn an_argument_must_start_with_a_dollar() {
        assert_eq!(
            parse(b"*1\r\n:3\r\n"),
            Err(ProtocolError::ExpectedDollar(b':'))
        );
        assert_eq!(
            parse(b"*2\r\n$1\r\na\r\n\x01\r\n"),
            Err(ProtocolError::ExpectedDollar(1))
        );
        assert_eq!(
            ProtocolError::ExpectedDollar(b'x').to_string(),
            "Protocol error: expected '$', got 'x'"
        );
        assert_eq!(
            ProtocolError::ExpectedDollar(b'\r').to_string(),
            "Protocol error: expected '$', got '?'"
        );
    }

    #[test]
    fn bulk_data_must_end_in_crlf() {
        assert_eq!(parse(b"*1\r\n$3\r\nabcXY"), Err(ProtocolError::MissingCrlf));
        assert_eq!(
            parse(b"*1\r\n$3\r\nabc\n\r"),
            Err(ProtocolError::MissingCrlf)
        );
    }

    #[test]
    fn long_length_lines_are_refused_past_the_line_limit() {
        let mut count = b"*".to_vec();
        count.extend_from_slice(&[b'1'; 15]);
        assert!(matches!(
            parse_request(&count, &SMALL),
            Ok(Parsed::Incomplete { .. })
        ));
        count.push(b'1');
        assert_eq!(
            parse_request(&count, &SMALL),
            Err(ProtocolError::TooBigMultibulkCount)
        );

        let mut bulk = b"*1\r\n$".to_vec();
        bulk.extend_from_slice(&[b'1'; 15]);
        assert!(matches!(
            parse_request(&bulk, &SMALL),
            Ok(Parsed::Incomplete { .. })
        ));
        bulk.push(b'1');
        assert_eq!(
            parse_request(&bulk, &SMALL),
            Err(ProtocolError::TooBigBulkCount)
        );

        let junk = [b"*1\r\n".as_slice(), &[b'X'; 17]].concat();
        assert_eq!(
            parse_request(&junk, &SMALL),
            Err(ProtocolError::TooBigBulkCount)
        );
    }

    #[test]
    fn the_default_line_limit_is_64_kib() {
        let mut count = vec![b'1'; 64 * 1024];
        count[0] = b'*';
        assert!(matches!(parse(&count), Ok(Parsed::Incomplete { .. })));
        count.push(b'1');
        assert_eq!(parse(&count), Err(ProtocolError::TooBigMultibulkCount));
    }

    #[test]
    fn need_covers_a_whole_bulk_string() {
        assert_eq!(parse(b""), Ok(Parsed::Incomplete { need: 1 }));
        assert_eq!(
            parse(b"*2\r\n$100\r\nab"),
            Ok(Parsed::Incomplete { need: 4 + 6 + 102 })
        );
        assert_eq!(
            parse(b"*2\r\n$1\r\na\r\n"),
            Ok(Parsed::Incomplete { need: 12 })
        );
        assert_eq!(
            parse(b"*2\r\n$1\r\na\r\n$5"),
            Ok(Parsed::Incomplete { need: 14 })
        );
    }

    #[test]
    fn inline_commands_split_on_blanks() {
        assert_eq!(args_of(b"GET key\r\n"), strings(&["GET", "key"]));
        assert_eq!(args_of(b"  set \t a   b \n"), strings(&["set", "a", "b"]));
        assert_eq!(args_of(b"PING\r\r\n"), strings(&["PING"]));
        assert_eq!(args_of(b"a\x0bb \x0cc\n"), strings(&["a\x0bb", "c"]));
        let (args, consumed) = complete(b"PING\nPING\n", &Limits::default());
        assert_eq!((args, consumed), (strings(&["PING"]), 5));
        let Ok(Parsed::Complete { request, .. }) = parse(b"GET k\n") else {
            panic!("no request");
        };
        assert!(request.inline);
        assert_eq!(request.args, vec![Arg::Range(0..3), Arg::Range(4..5)]);
    }

    #[test]
    fn blank_inline_lines_are_empty_requests() {
        for buf in [&b"\r\n"[..], b"\n", b" \t \r\n"] {
            assert_eq!(complete(buf, &Limits::default()), (vec![], buf.len()));
        }
    }

    #[test]
    fn inline_quotes_follow_sdssplitargs() {
        assert_eq!(
            args_of(b"SET \"a b\" 'c d'\r\n"),
            strings(&["SET", "a b", "c d"])
        );
        assert_eq!(args_of(b"SET \"\" ''\r\n"), strings(&["SET", "", ""]));
        assert_eq!(args_of(b"x\"y z\" w\n"), strings(&["xy z", "w"]));
        assert_eq!(
            args_of(b"\"\\n\\r\\t\\b\\a\\\\\\\"\\q\"\n"),
            vec![b"\n\r\t\x08\x07\\\"q".to_vec()]
        );
        assert_eq!(
            args_of(b"\"\\x41\\x7a\\xFf\\x4g\"\n"),
            vec![b"Az\xffx4g".to_vec()]
        );
        assert_eq!(args_of(b"'it\\'s' '\\n'\n"), strings(&["it's", "\\n"]));
        assert_eq!(args_of(b"\"a\"\x0b'b'\n"), strings(&["a", "b"]));
    }

    #[test]
    fn unbalanced_quotes_are_errors() {
        let cases: [&[u8]; 6] = [
            b"ECHO \"abc\r\n",
            b"ECHO \"a\"b\r\n",
            b"ECHO 'a'b\n",
            b"ECHO 'abc\n",
            b"ECHO \"abc\\\"\n",
            b"ECHO \"\\\n",
        ];
        for buf in cases {
            assert_eq!(parse(buf), Err(ProtocolError::UnbalancedQuotes), "{buf:?}");
        }
        assert_eq!(
            ProtocolError::UnbalancedQuotes.to_string(),
            "Protocol error: unbalanced quotes in request"
        );
    }

    #[test]
    fn a_nul_byte_ends_an_inline_line() {
        assert_eq!(
            complete(b"GET a\0b c\r\n", &Limits::default()),
            (strings(&["GET", "a"]), 11)
        );
    }

    #[test]
    fn inline_lines_over_the_limit_are_refused() {
        let line = [b'a'; 16];
        assert!(matches!(
            parse_request(&line, &SMALL),
            Ok(Parsed::Incomplete { .. })
        ));
        let full = [&line[..], b"\n"].concat();
        assert_eq!(complete(&full, &SMALL).1, 17);
        let long = [&line[..], b"a"].concat();
        assert_eq!(
            parse_request(&long, &SMALL),
            Err(ProtocolError::TooBigInline)
        );
        assert_eq!(
            ProtocolError::TooBigInline.to_string(),
            "Protocol error: too big inline request"
        );
    }

    #[test]
    fn every_split_point_parses_the_same() {
        let requests: [&[u8]; 8] = [
            b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n",
            b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n",
            b"*0\r\n",
            b"*-1\r\n",
            b"*1\r\n$12\r\n\r\n\r\n*1\r\n$0\r\n\r\n",
            b"SET \"a\\x00b\" 'c\\'d' e\r\n",
            b"  PING  \n",
            b"\r\n",
        ];
        let small_lines = Limits {
            max_inline_len: 24,
            ..SMALL
        };
        for buf in requests {
            assert_split_invariant(buf, &Limits::default());
            assert_split_invariant(buf, &small_lines);
        }
    }

    /// xorshift64: a small deterministic generator for the randomized tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn bytes(&mut self, alphabet: &[u8], max_len: usize) -> Vec<u8> {
            let len = self.below(max_len + 1);
            (0..len)
                .map(|_| alphabet[self.below(alphabet.len())])
                .collect()
        }
    }

    const ALPHABET: &[u8] = b"ab*$\r\n\t \"'\\x0\x00\xff";

    /// Writes `arg` as an inline word: bare if that reads back unchanged, else double-quoted.
    fn quote_inline(arg: &[u8], out: &mut Vec<u8>) {
        let bare = |b: &u8| b.is_ascii_alphanumeric() || b"*$".contains(b);
        if !arg.is_empty() && arg.iter().all(bare) {
            out.extend_from_slice(arg);
            return;
        }
        out.push(b'"');
        for &b in arg {
            match b {
                b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                b'\n' => out.extend_from_slice(b"\\n"),
                b' '..=b'~' => out.push(b),
                _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            }
        }
        out.push(b'"');
    }

    /// A random request, as bytes, and its arguments.
    fn random_request(rng: &mut Rng) -> (Vec<u8>, Vec<Vec<u8>>) {
        let args: Vec<Vec<u8>> = (0..rng.below(5)).map(|_| rng.bytes(ALPHABET, 12)).collect();
        let mut buf = Vec::new();
        if rng.below(3) == 0 {
            for (i, arg) in args.iter().enumerate() {
                if i > 0 || arg.first() == Some(&b'*') {
                    buf.push(b' ');
                }
                quote_inline(arg, &mut buf);
            }
            buf.extend_from_slice(if rng.below(2) == 0 { b"\r\n" } else { b"\n" });
        } else {
            encode_command(&mut buf, args.iter().map(Vec::as_slice));
        }
        (buf, args)
    }

    #[test]
    fn random_requests_parse_the_same_at_every_split_point() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2_000 {
            let (buf, args) = random_request(&mut rng);
            assert_eq!(
                complete(&buf, &Limits::default()),
                (args, buf.len()),
                "{buf:?}"
            );
            assert_split_invariant(&buf, &Limits::default());
        }
    }

    #[test]
    fn a_random_pipelined_stream_parses_in_random_chunks() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let (mut stream, mut expected) = (Vec::new(), Vec::new());
        for _ in 0..3_000 {
            let (buf, args) = random_request(&mut rng);
            stream.extend_from_slice(&buf);
            expected.push(args);
        }
        let (mut buf, mut fed, mut need, mut parsed, mut parses) = (Vec::new(), 0, 1, vec![], 0);
        while fed < stream.len() {
            let chunk = (1 + rng.below(40)).min(stream.len() - fed);
            buf.extend_from_slice(&stream[fed..fed + chunk]);
            fed += chunk;
            while buf.len() >= need {
                parses += 1;
                match parse_request(&buf, &Limits::default()) {
                    Ok(Parsed::Complete { request, consumed }) => {
                        parsed.push(request.args(&buf).map(<[u8]>::to_vec).collect::<Vec<_>>());
                        buf.drain(..consumed);
                        need = 1;
                    }
                    Ok(Parsed::Incomplete { need: more }) => need = more,
                    Err(err) => panic!("{err} at request {}", parsed.len()),
                }
            }
        }
        assert!(buf.is_empty());
        assert_eq!(parsed, expected);
        assert!(parses < 2 * stream.len());
    }

    #[test]
    fn parse_i64_matches_string2ll() {
        let good: [(&[u8], i64); 6] = [
            (b"0", 0),
            (b"7", 7),
            (b"-7", -7),
            (b"1234567890", 1_234_567_890),
            (b"9223372036854775807", i64::MAX),
            (b"-9223372036854775808", i64::MIN),
        ];
        for (text, n) in good {
            assert_eq!(parse_i64(text), Some(n));
        }
        let bad: [&[u8]; 11] = [
            b"",
            b"-",
            b"+1",
            b"-0",
            b"01",
            b" 1",
            b"1 ",
            b"1a",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999",
        ];
        for text in bad {
            assert_eq!(parse_i64(text), None, "{text:?}");
        }
    }

    #[test]
    fn scan_reply_finds_each_type() {
        let replies: [&[u8]; 15] = [
            b"+OK\r\n",
            b"-ERR no\r\n",
            b":-12\r\n",
            b"$5\r\nhe\r\no\r\n",
            b"$0\r\n\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
            b"_\r\n",
            b",1.5\r\n",
            b"#t\r\n",
            b"(12345678901234567890\r\n",
            b"%2\r\n+a\r\n:1\r\n+b\r\n~1\r\n=7\r\ntxt:abc\r\n",
            b"|1\r\n+ttl\r\n:3\r\n>2\r\n+msg\r\n!3\r\nbad\r\n",
        ];
        for reply in replies {
            let stream = [reply, b"+NEXT\r\n"].concat();
            assert_eq!(scan_reply(&stream, 8), Ok(Some(reply.len())), "{reply:?}");
            for cut in 0..reply.len() {
                assert_eq!(
                    scan_reply(&reply[..cut], 8),
                    Ok(None),
                    "{reply:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn scan_reply_refuses_malformed_replies() {
        let cases: [(&[u8], ProtocolError); 8] = [
            (b"?x\r\n", ProtocolError::BadReplyType(b'?')),
            (b"$x\r\n", ProtocolError::BadReplyLength),
            (b"$-2\r\n", ProtocolError::BadReplyLength),
            (b"%-1\r\n", ProtocolError::BadReplyLength),
            (b"*-3\r\n", ProtocolError::BadReplyLength),
            (b"$3\r\nabcd\r\n", ProtocolError::MissingCrlf),
            (b"+OK\rX", ProtocolError::MissingCrlf),
            (b"*2\r\n:1\r\n\r\n", ProtocolError::BadReplyType(b'\r')),
        ];
        for (reply, err) in cases {
            assert_eq!(scan_reply(reply, 8), Err(err), "{reply:?}");
        }
    }

    #[test]
    fn scan_reply_bounds_nesting_without_recursion() {
        assert_eq!(scan_reply(b":1\r\n", 0), Ok(Some(4)));
        assert_eq!(scan_reply(b"*0\r\n", 0), Err(ProtocolError::ReplyTooDeep));
        assert_eq!(scan_reply(b"*1\r\n*0\r\n", 2), Ok(Some(8)));
        assert_eq!(
            scan_reply(b"*1\r\n*1\r\n*0\r\n", 2),
            Err(ProtocolError::ReplyTooDeep)
        );
        let deep = b"*1\r\n".repeat(1_000_000);
        assert_eq!(scan_reply(&deep, usize::MAX), Ok(None));
        let whole = [&deep[..], b":1\r\n"].concat();
        assert_eq!(scan_reply(&whole, usize::MAX), Ok(Some(whole.len())));
        assert_eq!(scan_reply(&whole, 64), Err(ProtocolError::ReplyTooDeep));
    }

    #[test]
    fn scan_reply_skips_bulk_data_by_length() {
        let mut reply = b"*2\r\n$1000000\r\n".to_vec();
        reply.extend(std::iter::repeat_n(b'\r', 1_000_000));
        reply.extend_from_slice(b"\r\n:7\r\n");
        assert_eq!(scan_reply(&reply, 4), Ok(Some(reply.len())));
        assert_eq!(scan_reply(&reply[..reply.len() - 1], 4), Ok(None));
    }

    #[test]
    fn encoders_write_exact_resp() {
        let mut out = Vec::new();
        write_simple(&mut out, "OK");
        write_error(&mut out, "ERR bad\r\nthing");
        write_integer(&mut out, 0);
        write_integer(&mut out, i64::MIN);
        write_integer(&mut out, i64::MAX);
        write_bulk(&mut out, b"a\r\nb");
        write_bulk(&mut out, b"");
        write_null(&mut out);
        write_array_len(&mut out, 12);
        let expected: &[u8] = b"+OK\r\n-ERR bad  thing\r\n:0\r\n:-9223372036854775808\r\n\
            :9223372036854775807\r\n$4\r\na\r\nb\r\n$0\r\n\r\n$-1\r\n*12\r\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn encode_command_round_trips_through_the_parser() {
        let mut out = Vec::new();
        encode_command(&mut out, [&b"SET"[..], b"k", b""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        let inline = b"SET \"a b\" c\r\n";
        let Ok(Parsed::Complete { request, .. }) = parse(inline) else {
            panic!("no request");
        };
        let mut encoded = Vec::new();
        encode_command(&mut encoded, request.args(inline));
        assert_eq!(args_of(&encoded), strings(&["SET", "a b", "c"]));
    }

    #[test]
    fn error_texts_match_redis_server() {
        let texts = [
            (
                ProtocolError::TooBigMultibulkCount,
                "too big mbulk count string",
            ),
            (ProtocolError::TooBigBulkCount, "too big bulk count string"),
            (
                ProtocolError::InvalidMultibulkLength,
                "invalid multibulk length",
            ),
            (ProtocolError::InvalidBulkLength, "invalid bulk length"),
            (ProtocolError::MissingCrlf, "missing CRLF terminator"),
            (ProtocolError::BadReplyType(0), "bad reply type '?'"),
            (ProtocolError::BadReplyLength, "invalid reply length"),
            (ProtocolError::ReplyTooDeep, "reply nested too deeply"),
        ];
        for (err, text) in texts {
            assert_eq!(err.to_string(), format!("Protocol error: {text}"));
        }
    }
}
