//! Where a RESP reply ends: framing only, nothing decoded, so a reply is forwarded as the bytes
//! it came as. Self-contained (no other module of the proxy), so loadgen includes this very
//! file to frame the replies it measures.
//!
//! Source: the RESP specification (RESP2 and RESP3),
//! <https://redis.io/docs/latest/develop/reference/protocol-spec/>.

use std::fmt;

/// Why bytes are not a RESP reply. The connection cannot be resynchronised afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyError {
    /// A reply starting with a byte that is no RESP type.
    BadType(u8),
    /// A length or count that is not a number, or is negative where that means nothing.
    BadLength,
    /// A line or bulk string not followed by CRLF.
    MissingCrlf,
    /// Aggregates nested deeper than the caller allows.
    TooDeep,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::BadType(byte) => {
                let shown = if byte.is_ascii_graphic() || *byte == b' ' {
                    char::from(*byte)
                } else {
                    '?'
                };
                write!(f, "Protocol error: bad reply type '{shown}'")
            }
            ReplyError::BadLength => f.write_str("Protocol error: invalid reply length"),
            ReplyError::MissingCrlf => f.write_str("Protocol error: missing CRLF terminator"),
            ReplyError::TooDeep => f.write_str("Protocol error: reply nested too deeply"),
        }
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
/// A [`ReplyError`] for an unknown type byte, a bad length, a missing CRLF, or a reply with
/// aggregates nested more than `max_depth` deep (a bare `:1` has depth 0, `*0` depth 1).
pub(crate) fn scan_reply(buf: &[u8], max_depth: usize) -> Result<Option<usize>, ReplyError> {
    let mut open: Vec<u64> = Vec::new(); // values still due in each open aggregate, innermost last
    let mut pos = 0;
    loop {
        let Some((value, next)) = reply_header(buf, pos)? else {
            return Ok(None);
        };
        pos = next;
        if let Value::Aggregate(count) = value {
            if open.len() >= max_depth {
                return Err(ReplyError::TooDeep);
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
fn reply_header(buf: &[u8], pos: usize) -> Result<Option<(Value, usize)>, ReplyError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    if !REPLY_TYPES.contains(&kind) {
        return Err(ReplyError::BadType(kind));
    }
    let Some(cr) = buf[pos + 1..].iter().position(|&b| b == b'\r') else {
        return Ok(None);
    };
    let cr = pos + 1 + cr;
    match buf.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(ReplyError::MissingCrlf),
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
fn reply_len(line: &[u8], nullable: bool) -> Result<Option<u64>, ReplyError> {
    match parse_len(line) {
        Some(-1) if nullable => Ok(None),
        Some(n) => u64::try_from(n)
            .map(Some)
            .map_err(|_| ReplyError::BadLength),
        None => Err(ReplyError::BadLength),
    }
}

/// Skips the `len` bytes and CRLF of a bulk string whose data starts at `start`.
fn skip_blob(
    buf: &[u8],
    start: usize,
    len: Option<u64>,
) -> Result<Option<(Value, usize)>, ReplyError> {
    let Some(len) = len else {
        return Ok(Some((Value::Scalar, start)));
    };
    let len = usize::try_from(len).map_err(|_| ReplyError::BadLength)?;
    let end = start.saturating_add(len);
    let after = end.saturating_add(2);
    if buf.len() < after {
        return Ok(None);
    }
    if &buf[end..after] != b"\r\n" {
        return Err(ReplyError::MissingCrlf);
    }
    Ok(Some((Value::Scalar, after)))
}

/// Parses a decimal `i64` exactly as redis-server's `string2ll`: an optional `-`, then `0` or
/// digits without a leading zero; no `+`, no spaces, no `-0`, nothing out of range.
pub(crate) fn parse_len(text: &[u8]) -> Option<i64> {
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
