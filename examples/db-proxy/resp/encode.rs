//! Encoders: the replies the proxy makes itself (`write_*`), and the multibulk requests it sends
//! upstream ([`encode_command`]: re-encoded inline commands, split multi-key commands).

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
