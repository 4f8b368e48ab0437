//! Where the keys are in a command that must keep all of them in one hash slot (MSETNX,
//! RENAME, SINTER, SMOVE, BITOP, ZUNIONSTORE, EVAL...), as Redis Cluster requires: such a
//! command is forwarded whole when its keys share a slot (with `--upstream` shards: a shard)
//! and refused with Redis Cluster's own `CROSSSLOT` error otherwise. Positions follow each
//! command's key specification in `COMMAND INFO` (redis 7.0).

use crate::learned::Learned;

/// How to find a command's keys in its arguments (index 0 is the command name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keys {
    /// At `first`, `first + step`, ... up to `last` (negative: from the end, -1 being the
    /// last argument), as `COMMAND INFO`'s first/last/step.
    Range {
        first: usize,
        last: i32,
        step: usize,
    },
    /// Keys at `1..=fixed` (ZUNIONSTORE's destination), then a key count at `count`, then
    /// that many keys (EVAL, ZUNION, LMPOP, SINTERCARD...).
    Counted { fixed: usize, count: usize },
    /// As the upstream's `COMMAND` describes the command (see `learned.rs`).
    Learned(LearnedKeys),
}

/// A learned command, compared by identity.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LearnedKeys(pub(crate) &'static Learned);

impl PartialEq for LearnedKeys {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for LearnedKeys {}

/// Redis Cluster's error for keys in more than one slot.
pub(crate) const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

impl Keys {
    /// The argument indexes of the keys in `args`, or `None` when a key count is not a
    /// number that fits the arguments (the upstream then answers with its own error).
    pub(crate) fn positions(&self, args: &[&[u8]]) -> Option<Vec<usize>> {
        match *self {
            Keys::Range { first, last, step } => {
                let last = if last < 0 {
                    args.len().checked_sub(last.unsigned_abs() as usize)?
                } else {
                    (last as usize).min(args.len().saturating_sub(1))
                };
                Some((first..=last).step_by(step.max(1)).collect())
            }
            Keys::Counted { fixed, count } => {
                let n: usize = std::str::from_utf8(args.get(count)?).ok()?.parse().ok()?;
                let end = (count + 1).checked_add(n)?;
                if end > args.len() {
                    return None;
                }
                Some((1..=fixed).chain(count + 1..end).collect())
            }
            Keys::Learned(LearnedKeys(command)) => command.positions(args),
        }
    }

    /// `COMMAND INFO`'s first key, last key and step (0, 0, 0 for counted keys, which
    /// redis-server reports as movable).
    pub(crate) fn info(&self) -> (i64, i64, i64) {
        match *self {
            Keys::Range { first, last, step } => (first as i64, i64::from(last), step as i64),
            Keys::Counted { .. } | Keys::Learned(_) => (0, 0, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_as_command_info_describes_them() {
        let args: Vec<&[u8]> = vec![b"MSETNX", b"a", b"1", b"b", b"2"];
        let msetnx = Keys::Range {
            first: 1,
            last: -1,
            step: 2,
        };
        assert_eq!(msetnx.positions(&args), Some(vec![1, 3]));
        let rename = Keys::Range {
            first: 1,
            last: 2,
            step: 1,
        };
        assert_eq!(rename.positions(&[b"RENAME", b"a", b"b"]), Some(vec![1, 2]));
        let bitop = Keys::Range {
            first: 2,
            last: -1,
            step: 1,
        };
        let args: Vec<&[u8]> = vec![b"BITOP", b"AND", b"d", b"x", b"y"];
        assert_eq!(bitop.positions(&args), Some(vec![2, 3, 4]));
        let zunionstore = Keys::Counted { fixed: 1, count: 2 };
        let args: Vec<&[u8]> = vec![
            b"ZUNIONSTORE",
            b"d",
            b"2",
            b"x",
            b"y",
            b"WEIGHTS",
            b"1",
            b"2",
        ];
        assert_eq!(zunionstore.positions(&args), Some(vec![1, 3, 4]));
        let eval = Keys::Counted { fixed: 0, count: 2 };
        let args: Vec<&[u8]> = vec![b"EVAL", b"return 1", b"0"];
        assert_eq!(eval.positions(&args), Some(vec![]));
        let args: Vec<&[u8]> = vec![b"EVAL", b"s", b"3", b"k"];
        assert_eq!(eval.positions(&args), None);
        let args: Vec<&[u8]> = vec![b"EVAL", b"s", b"-1", b"k"];
        assert_eq!(eval.positions(&args), None);
    }
}
