//! Replies: [`scan_reply`] finds where an upstream's reply ends (framing only, nothing
//! decoded), and the `write_*` encoders and [`encode_command`] build what the proxy sends
//! itself: its own replies, and the requests it re-encodes for upstreams.

use super::{parse_i64, ProtocolError};

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
