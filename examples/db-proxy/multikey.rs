//! Multi-key commands across shards: splitting `MGET`, `MSET`, `DEL`, `EXISTS`, `UNLINK`,
//! `TOUCH` (and fanning out `DBSIZE`) into one sub-request per shard, and merging the
//! sub-replies into the one reply the client expects, in the client's key order.

use crate::command::MultiKind;
use crate::resp;
use std::collections::BTreeMap;

/// The sub-request for one group of keys (a shard, or in a cluster a hash slot): its encoded
/// command, and which of the client's keys (by ordinal: 0 for the first key) it carries, in
/// order.
pub(crate) struct Part {
    /// The group: a shard number, or a cluster's hash slot.
    pub(crate) shard: usize,
    pub(crate) request: Vec<u8>,
    pub(crate) keys: Vec<usize>,
}

/// Splits a multi-key request by the group `group_of` puts each key in (its shard, or in a
/// cluster its slot). Keys sit at `first, first + step, ..`; with `step` 2 (MSET) each key's
/// value follows it. Returns one part per group, in group order. A request whose keys all
/// fall in one group yields one part.
pub(crate) fn split(
    args: &[&[u8]],
    first: usize,
    step: usize,
    group_of: impl Fn(&[u8]) -> usize,
) -> Vec<Part> {
    // Per group: the sub-request's arguments, and the ordinals of the keys it carries.
    let mut groups: BTreeMap<usize, (Vec<&[u8]>, Vec<usize>)> = BTreeMap::new();
    for (ordinal, index) in (first..args.len()).step_by(step).enumerate() {
        let (part_args, keys) = groups
            .entry(group_of(args[index]))
            .or_insert_with(|| (vec![args[0]], Vec::new()));
        part_args.extend_from_slice(&args[index..index + step]);
        keys.push(ordinal);
    }
    groups
        .into_iter()
        .map(|(shard, (part_args, keys))| {
            let mut request = Vec::new();
            resp::encode_command(&mut request, part_args.iter().copied());
            Part {
                shard,
                request,
                keys,
            }
        })
        .collect()
}

/// The first error among the sub-replies, as the client should see it.
fn first_error(replies: &[Result<Vec<u8>, String>]) -> Option<Vec<u8>> {
    replies.iter().find_map(|reply| match reply {
        Err(text) => {
            let mut out = Vec::new();
            resp::write_error(&mut out, text);
            Some(out)
        }
        Ok(bytes) if bytes.first() == Some(&b'-') => Some(bytes.clone()),
        Ok(_) => None,
    })
}

/// Merges the sub-replies of `parts` (same order) into one reply for a client that sent
/// `nkeys` keys.
pub(crate) fn merge(
    kind: MultiKind,
    parts: &[Part],
    replies: &[Result<Vec<u8>, String>],
    nkeys: usize,
) -> Vec<u8> {
    if let Some(error) = first_error(replies) {
        return error;
    }
    let mut out = Vec::new();
    let bad = |mut out: Vec<u8>| {
        out.clear();
        resp::write_error(&mut out, "ERR unexpected reply from upstream");
        out
    };
    let ok = |r: &Result<Vec<u8>, String>| r.as_ref().ok().cloned().unwrap_or_default();
    match kind {
        MultiKind::Mset => resp::write_simple(&mut out, "OK"),
        MultiKind::First => return replies.first().map(ok).unwrap_or_else(|| bad(out)),
        MultiKind::FirstNonNil => {
            let found = replies
                .iter()
                .map(ok)
                .find(|r| r != b"$-1\r\n" && r != b"*-1\r\n" && r != b"_\r\n");
            return found.unwrap_or_else(|| b"$-1\r\n".to_vec());
        }
        MultiKind::Concat => {
            let mut elements = Vec::new();
            for reply in replies {
                let Some(part) = reply.as_ref().ok().and_then(|r| array_elements(r)) else {
                    return bad(out);
                };
                elements.extend(part);
            }
            resp::write_array_len(&mut out, elements.len());
            for element in elements {
                out.extend_from_slice(element);
            }
        }
        MultiKind::AllOf => {
            let arrays: Option<Vec<Vec<&[u8]>>> = replies
                .iter()
                .map(|r| r.as_ref().ok().and_then(|r| array_elements(r)))
                .collect();
            let Some(arrays) = arrays else {
                return bad(out);
            };
            let len = arrays.first().map_or(0, Vec::len);
            if arrays.iter().any(|a| a.len() != len) {
                return bad(out);
            }
            resp::write_array_len(&mut out, len);
            for i in 0..len {
                let all = arrays.iter().all(|a| a[i] == b":1\r\n");
                resp::write_integer(&mut out, i64::from(all));
            }
        }
        MultiKind::SumPairs => {
            let mut sums: Vec<(&[u8], i64)> = Vec::new();
            for (i, reply) in replies.iter().enumerate() {
                let Some(pairs) = reply.as_ref().ok().and_then(|r| pair_elements(r)) else {
                    return bad(out);
                };
                if i == 0 {
                    sums = pairs.chunks(2).map(|kv| (kv[0], 0)).collect();
                }
                if pairs.len() != sums.len() * 2 {
                    return bad(out);
                }
                for (sum, kv) in sums.iter_mut().zip(pairs.chunks(2)) {
                    let count = kv[1]
                        .strip_prefix(b":")
                        .and_then(|n| n.strip_suffix(b"\r\n"))
                        .and_then(resp::parse_i64);
                    let Some(count) = count else {
                        return bad(out);
                    };
                    sum.1 = sum.1.saturating_add(count);
                }
            }
            // The first reply's shape: a map for a RESP3 client, a flat array for RESP2.
            let map = replies
                .first()
                .and_then(|r| r.as_ref().ok())
                .is_some_and(|r| r.first() == Some(&b'%'));
            if map {
                out.extend_from_slice(format!("%{}\r\n", sums.len()).as_bytes());
            } else {
                resp::write_array_len(&mut out, sums.len() * 2);
            }
            for (channel, count) in sums {
                out.extend_from_slice(channel);
                resp::write_integer(&mut out, count);
            }
        }
        MultiKind::SumIntegers => match sum_integers(replies) {
            Some(total) => resp::write_integer(&mut out, total),
            None => resp::write_error(&mut out, "ERR unexpected reply from upstream"),
        },
        MultiKind::Mget => {
            let mut values: Vec<Option<&[u8]>> = vec![None; nkeys];
            for (part, reply) in parts.iter().zip(replies) {
                let Some(elements) = reply.as_ref().ok().and_then(|r| array_elements(r)) else {
                    resp::write_error(&mut out, "ERR unexpected reply from upstream");
                    return out;
                };
                if elements.len() != part.keys.len() {
                    resp::write_error(&mut out, "ERR unexpected reply from upstream");
                    return out;
                }
                for (&key, element) in part.keys.iter().zip(elements) {
                    values[key] = Some(element);
                }
            }
            resp::write_array_len(&mut out, nkeys);
            for value in values {
                match value {
                    Some(bytes) => out.extend_from_slice(bytes),
                    None => resp::write_null(&mut out),
                }
            }
        }
    }
    out
}

/// Sums `:n` replies; `None` if one is not an integer reply.
pub(crate) fn sum_integers(replies: &[Result<Vec<u8>, String>]) -> Option<i64> {
    replies.iter().try_fold(0i64, |total, reply| {
        let bytes = reply.as_ref().ok()?;
        let digits = bytes.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
        total.checked_add(resp::parse_i64(digits)?)
    })
}

/// The encoded elements of an array reply (`*N\r\n` then N replies).
/// The elements of a flat `[key, value, ...]` array, or of a RESP3 map (keys and values in
/// turn).
fn pair_elements(reply: &[u8]) -> Option<Vec<&[u8]>> {
    let Some(rest) = reply.strip_prefix(b"%") else {
        return array_elements(reply).filter(|e| e.len() % 2 == 0);
    };
    let header_end = rest.windows(2).position(|w| w == b"\r\n")?;
    let pairs = usize::try_from(resp::parse_i64(&rest[..header_end])?).ok()?;
    let mut rest = &rest[header_end + 2..];
    let mut elements = Vec::with_capacity(pairs.min(512) * 2);
    for _ in 0..pairs.checked_mul(2)? {
        let len = resp::scan_reply(rest, 64).ok()??;
        elements.push(&rest[..len]);
        rest = &rest[len..];
    }
    Some(elements)
}

fn array_elements(reply: &[u8]) -> Option<Vec<&[u8]>> {
    let header_end = reply.windows(2).position(|w| w == b"\r\n")?;
    let count = resp::parse_i64(reply.strip_prefix(b"*")?.get(..header_end - 1)?)?;
    let mut rest = &reply[header_end + 2..];
    let mut elements = Vec::with_capacity(usize::try_from(count).ok()?.min(1024));
    for _ in 0..count {
        let len = resp::scan_reply(rest, 64).ok()??;
        elements.push(&rest[..len]);
        rest = &rest[len..];
    }
    Some(elements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::ShardMap;

    #[test]
    fn mget_across_shards_is_merged_in_key_order() {
        let shards = ShardMap::new(2);
        let keys: [&[u8]; 4] = [b"foo", b"bar", b"hello", b"x"];
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(keys);
        let parts = split(&args, 1, 1, |k| shards.shard_of_key(k));
        assert_eq!(parts.iter().map(|p| p.keys.len()).sum::<usize>(), 4);
        let replies: Vec<_> = parts
            .iter()
            .map(|part| {
                let mut r = Vec::new();
                resp::write_array_len(&mut r, part.keys.len());
                for &k in &part.keys {
                    resp::write_bulk(&mut r, keys[k]);
                }
                Ok(r)
            })
            .collect();
        let merged = merge(MultiKind::Mget, &parts, &replies, 4);
        assert_eq!(
            merged,
            b"*4\r\n$3\r\nfoo\r\n$3\r\nbar\r\n$5\r\nhello\r\n$1\r\nx\r\n".to_vec()
        );
    }

    #[test]
    fn counts_are_summed_and_errors_win() {
        let parts = split(&[b"DEL", b"foo", b"bar"], 1, 1, |k| {
            ShardMap::new(2).shard_of_key(k)
        });
        let ok = vec![Ok(b":1\r\n".to_vec()), Ok(b":2\r\n".to_vec())];
        assert_eq!(merge(MultiKind::SumIntegers, &parts, &ok, 2), b":3\r\n");
        let failed = vec![Ok(b":1\r\n".to_vec()), Err("ERR upstream down".to_owned())];
        assert_eq!(
            merge(MultiKind::SumIntegers, &parts, &failed, 2),
            b"-ERR upstream down\r\n"
        );
    }

    #[test]
    fn mset_keeps_values_with_their_keys() {
        let shards = ShardMap::new(2);
        let parts = split(&[b"MSET", b"foo", b"1", b"bar", b"2"], 1, 2, |k| {
            shards.shard_of_key(k)
        });
        let mut requests: Vec<&[u8]> = parts.iter().map(|p| p.request.as_slice()).collect();
        requests.sort();
        if shards.shard_of_key(b"foo") != shards.shard_of_key(b"bar") {
            assert_eq!(requests.len(), 2);
            assert!(requests.contains(&&b"*3\r\n$4\r\nMSET\r\n$3\r\nfoo\r\n$1\r\n1\r\n"[..]));
        }
    }
}
