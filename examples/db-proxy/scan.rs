//! `SCAN` across shards: one cursor that walks shard after shard (every master in a cluster),
//! so a client's ordinary SCAN loop visits every key of every shard, as SCAN promises on one
//! server (each key present for the whole scan is returned at least once; redis-server's
//! guarantees hold within each shard).
//!
//! The proxy's cursor is `upstream_cursor * shards + shard`: cursor 0 starts at shard 0 with
//! its cursor 0, and when a shard's scan ends (its cursor is 0 again) the next cursor is the
//! next shard's start; after the last shard the client gets 0. A cluster's map changing during
//! a scan can shift which master a cursor names (the scan may then repeat or skip a master's
//! keys); with `--upstream` shards the order never changes.

use crate::resp;

/// Where a proxy cursor points: the shard (by position in the shard list) and its cursor.
pub(crate) fn decode(cursor: &[u8], shards: usize) -> Option<(usize, u64)> {
    let cursor: u64 = std::str::from_utf8(cursor).ok()?.parse().ok()?;
    let shards = shards.max(1) as u64;
    Some(((cursor % shards) as usize, cursor / shards))
}

/// The proxy cursor after shard `shard` (of `shards`) answered with cursor `next`; `None`
/// if it does not fit 64 bits (a shard's cursor larger than any hash table makes).
pub(crate) fn encode(next: u64, shard: usize, shards: usize) -> Option<u64> {
    if next == 0 {
        return Some(if shard + 1 < shards {
            shard as u64 + 1
        } else {
            0
        });
    }
    next.checked_mul(shards as u64)?.checked_add(shard as u64)
}

/// The client's reply for a shard's SCAN reply (`*2`, the cursor, the keys), with the
/// shard's cursor replaced by the proxy's; `None` if the reply is not a SCAN reply.
pub(crate) fn rewrite(reply: &[u8], shard: usize, shards: usize) -> Option<Vec<u8>> {
    let rest = reply.strip_prefix(b"*2\r\n$")?;
    let line = rest.iter().position(|&b| b == b'\r')?;
    let len: usize = std::str::from_utf8(&rest[..line]).ok()?.parse().ok()?;
    let cursor = rest.get(line + 2..line + 2 + len)?;
    let keys = rest.get(line + 2 + len + 2..)?;
    let next: u64 = std::str::from_utf8(cursor).ok()?.parse().ok()?;
    let mut out = Vec::with_capacity(reply.len() + 8);
    resp::write_array_len(&mut out, 2);
    resp::write_bulk(
        &mut out,
        encode(next, shard, shards)?.to_string().as_bytes(),
    );
    out.extend_from_slice(keys);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_walks_shard_after_shard_and_ends_at_zero() {
        assert_eq!(decode(b"0", 3), Some((0, 0)));
        // Shard 0 goes on at its cursor 17, then ends; shard 1 starts; the last shard ends.
        let c = encode(17, 0, 3).unwrap();
        assert_eq!(decode(c.to_string().as_bytes(), 3), Some((0, 17)));
        assert_eq!(encode(0, 0, 3), Some(1));
        assert_eq!(decode(b"1", 3), Some((1, 0)));
        assert_eq!(encode(0, 2, 3), Some(0));
        assert_eq!(encode(u64::MAX, 1, 3), None);
        assert_eq!(decode(b"x", 3), None);
        assert_eq!(decode(b"-1", 3), None);
        let reply = b"*2\r\n$2\r\n17\r\n*1\r\n$1\r\nk\r\n";
        let rewritten = rewrite(reply, 1, 3).unwrap();
        assert_eq!(rewritten, b"*2\r\n$2\r\n52\r\n*1\r\n$1\r\nk\r\n");
        let last = rewrite(b"*2\r\n$1\r\n0\r\n*0\r\n", 2, 3).unwrap();
        assert_eq!(last, b"*2\r\n$1\r\n0\r\n*0\r\n");
        assert_eq!(rewrite(b"-ERR no\r\n", 0, 3), None);
    }
}
