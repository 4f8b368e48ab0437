//! Which shard owns a key: Redis Cluster's hash slots, spread over the shards in even ranges.
//!
//! A key hashes to one of 16384 slots exactly as in Redis Cluster: `CRC16(key) mod 16384`, with
//! CRC16-XMODEM (polynomial `0x1021`, initial value 0). A hash tag picks the hashed part: if the
//! key has a `{`, and a `}` somewhere after that first `{`, with at least one byte between them,
//! only the bytes between the first `{` and the first `}` after it are hashed, so
//! `{user1000}.following` and `{user1000}.followers` share a slot (and a shard). Otherwise the
//! whole key is hashed: `foo{}{bar}` hashes all of itself, `foo{{bar}}zap` hashes `{bar`.
//!
//! With `n` shards, slot `s` belongs to shard `s * n / 16384` (rounded down): each shard owns
//! one contiguous range of slots, and every shard owns either `floor(16384 / n)` or
//! `ceil(16384 / n)` slots. With 3 shards: shard 0 owns slots 0..5462, shard 1 owns
//! 5462..10923, shard 2 owns 10923..16384. Because the mapping goes through slots, keys that
//! share a hash tag always share a shard, whatever the shard count.

use std::ops::Range;

/// The number of hash slots, as in Redis Cluster.
const SLOTS: usize = 16384;

/// CRC16-XMODEM lookup table, one entry per value of the high byte, built at compile time.
const CRC16_TABLE: [u16; 256] = crc16_table();

const fn crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

/// Redis Cluster's CRC16: CRC16-XMODEM (CCITT polynomial `0x1021`, initial value 0, no
/// reflection, no final XOR). `crc16(b"123456789") == 0x31C3`.
pub(crate) fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ byte)]
    })
}

/// The hash slot of `key`, in `0..16384`, honouring hash tags (see the module docs).
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    crc16(hashed_part(key)) & (SLOTS as u16 - 1)
}

/// The bytes of `key` that are hashed: a non-empty hash tag, else the whole key.
fn hashed_part(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let tag = &key[open + 1..];
    match tag.iter().position(|&b| b == b'}') {
        Some(close) if close > 0 => &tag[..close],
        _ => key,
    }
}

/// Maps hash slots, and so keys, to `shards` shards in contiguous, even slot ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShardMap {
    shards: usize,
}

impl ShardMap {
    /// A map over `shards` shards, numbered `0..shards`.
    ///
    /// # Panics
    /// If `shards` is 0 or more than 16384 (a shard would own no slot); check it at start-up.
    pub(crate) fn new(shards: usize) -> Self {
        assert!(
            (1..=SLOTS).contains(&shards),
            "shard count {shards} must be in 1..=16384"
        );
        ShardMap { shards }
    }

    /// The shard owning `slot`: `slot * shards / 16384`. Only the low 14 bits of `slot` count,
    /// so the result is always below the shard count.
    pub(crate) fn shard_of_slot(&self, slot: u16) -> usize {
        usize::from(slot) % SLOTS * self.shards / SLOTS
    }

    /// The shard owning `key`.
    pub(crate) fn shard_of_key(&self, key: &[u8]) -> usize {
        self.shard_of_slot(key_slot(key))
    }

    /// The slots `shard` owns, as a contiguous range; empty if there is no such shard.
    pub(crate) fn slots_of(&self, shard: usize) -> Range<u16> {
        if shard >= self.shards {
            return SLOTS as u16..SLOTS as u16;
        }
        // Slot s is in shard i iff i * 16384 <= s * n < (i + 1) * 16384.
        let first_slot = |i: usize| (i * SLOTS).div_ceil(self.shards) as u16;
        first_slot(shard)..first_slot(shard + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-at-a-time CRC16-XMODEM, to check the table-driven one.
    fn crc16_bitwise(bytes: &[u8]) -> u16 {
        let mut crc = 0u16;
        for &byte in bytes {
            crc ^= u16::from(byte) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    #[test]
    fn crc16_is_xmodem() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
        let mut data = Vec::new();
        for i in 0..1000u32 {
            data.push((i.wrapping_mul(2_654_435_761) >> 13) as u8);
            assert_eq!(crc16(&data), crc16_bitwise(&data));
        }
    }

    #[test]
    fn key_slots_match_redis_cluster() {
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"hello"), 866);
        assert_eq!(key_slot(b""), 0);
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
    }

    #[test]
    fn hash_tags_follow_redis_cluster_rules() {
        assert_eq!(hashed_part(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hashed_part(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hashed_part(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hashed_part(b"foo{bar"), b"foo{bar");
        assert_eq!(hashed_part(b"foo}bar{"), b"foo}bar{");
        assert_eq!(hashed_part(b"}{x}"), b"x");
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") & 16383);
    }

    #[test]
    fn every_shard_owns_an_even_contiguous_range() {
        for shards in 1..=64 {
            let map = ShardMap::new(shards);
            let (low, high) = (SLOTS / shards, SLOTS.div_ceil(shards));
            let mut next = 0u16;
            for shard in 0..shards {
                let range = map.slots_of(shard);
                assert_eq!(range.start, next, "{shards} shards, shard {shard}");
                assert!(
                    (low..=high).contains(&range.len()),
                    "{shards} shards: {range:?}"
                );
                for slot in range.clone() {
                    assert_eq!(map.shard_of_slot(slot), shard);
                }
                next = range.end;
            }
            assert_eq!(usize::from(next), SLOTS);
            assert!(map.slots_of(shards).is_empty());
        }
    }

    #[test]
    fn the_documented_three_shard_layout_holds() {
        let map = ShardMap::new(3);
        assert_eq!(
            [map.slots_of(0), map.slots_of(1), map.slots_of(2)],
            [0..5462, 5462..10923, 10923..16384]
        );
    }

    #[test]
    fn shard_counts_at_the_edges_work() {
        let map = ShardMap::new(16384);
        assert_eq!((map.shard_of_slot(0), map.shard_of_slot(16383)), (0, 16383));
        assert_eq!(map.slots_of(16383), 16383..16384);
        assert_eq!(ShardMap::new(1).shard_of_slot(16383), 0);
        assert_eq!(ShardMap::new(7).shard_of_slot(u16::MAX), 6);
    }

    #[test]
    fn keys_go_to_their_slot_owner() {
        let map = ShardMap::new(4);
        assert_eq!(map.shard_of_key(b"foo"), 12182 * 4 / 16384);
        assert_eq!(map.shard_of_key(b"bar"), 1);
        assert_eq!(map.shard_of_key(b"{bar}baz"), map.shard_of_key(b"bar"));
    }

    #[test]
    #[should_panic(expected = "must be in 1..=16384")]
    fn zero_shards_is_refused() {
        ShardMap::new(0);
    }
}
