//! The commands that only read a key, which `--read-from replica|prefer-replica` sends to a
//! master's replicas in cluster mode (those marked `readonly` in redis 7.0's `COMMAND INFO`,
//! among the single-key commands the proxy routes, and MGET).

/// How reads are routed in cluster mode (`--read-from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReadFrom {
    /// Every request to the slot's master.
    Master,
    /// Reads to the master's replicas, in turn; a read of a slot whose master has no online
    /// replica gets an error.
    Replica,
    /// Reads to the master's replicas, in turn; to the master when it has none.
    PreferReplica,
}

/// Read-only commands, lowercase, sorted for binary search.
const READS: &[&str] = &[
    "bitcount",
    "bitfield_ro",
    "bitpos",
    "dump",
    "exists",
    "geodist",
    "geohash",
    "geopos",
    "georadius_ro",
    "georadiusbymember_ro",
    "geosearch",
    "get",
    "getbit",
    "getrange",
    "hexists",
    "hget",
    "hgetall",
    "hkeys",
    "hlen",
    "hmget",
    "hrandfield",
    "hscan",
    "hstrlen",
    "hvals",
    "lindex",
    "llen",
    "lpos",
    "lrange",
    "mget",
    "pttl",
    "scard",
    "sismember",
    "smembers",
    "smismember",
    "srandmember",
    "sscan",
    "strlen",
    "substr",
    "ttl",
    "type",
    "xlen",
    "xrange",
    "xrevrange",
    "zcard",
    "zcount",
    "zlexcount",
    "zmscore",
    "zrandmember",
    "zrange",
    "zrangebylex",
    "zrangebyscore",
    "zrank",
    "zrevrange",
    "zrevrangebylex",
    "zrevrangebyscore",
    "zrevrank",
    "zscan",
    "zscore",
];

/// Whether command `name` (any case) only reads.
pub(crate) fn is_read(name: &[u8]) -> bool {
    let Some(name) = crate::command::CommandName::new(name) else {
        return false;
    };
    READS
        .binary_search_by(|read| read.as_bytes().cmp(name.as_bytes()))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_known_in_any_case_and_writes_are_not() {
        assert!(
            READS.windows(2).all(|w| w[0] < w[1]),
            "sorted for binary search"
        );
        assert!(is_read(b"GET") && is_read(b"zRangeByScore") && is_read(b"mget"));
        assert!(!is_read(b"SET") && !is_read(b"DEL") && !is_read(b"getdel") && !is_read(b""));
    }
}
