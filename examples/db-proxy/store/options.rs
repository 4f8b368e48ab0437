//! Option parsing for the store's commands: SET's `NX|XX|GET|EX|PX|EXAT|PXAT|KEEPTTL` and
//! EXPIRE's `NX|XX|GT|LT`, with redis-server's rules for which may go together.

use crate::command::sanitize;

/// How an expiry argument reads: its unit, and whether it is a Unix time or a duration.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct ExpiryKind {
    pub(super) seconds: bool,
    pub(super) absolute: bool,
}

pub(super) const EX: ExpiryKind = ExpiryKind {
    seconds: true,
    absolute: false,
};
pub(super) const PX: ExpiryKind = ExpiryKind {
    seconds: false,
    absolute: false,
};

fn expiry_kind(word: &[u8]) -> Option<ExpiryKind> {
    let (seconds, absolute) = match word.to_ascii_lowercase().as_slice() {
        b"ex" => (true, false),
        b"px" => (false, false),
        b"exat" => (true, true),
        b"pxat" => (false, true),
        _ => return None,
    };
    Some(ExpiryKind { seconds, absolute })
}

/// The options of `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`.
#[derive(Default)]
pub(super) struct SetOptions<'a> {
    pub(super) nx: bool,
    pub(super) xx: bool,
    pub(super) get: bool,
    pub(super) keep_ttl: bool,
    pub(super) expiry: Option<(ExpiryKind, &'a [u8])>,
}

impl<'a> SetOptions<'a> {
    /// Parses as redis-server does; `None` is a syntax error. An expiry option may repeat (the
    /// last wins) but not mix with another expiry kind or `KEEPTTL`, nor `NX` with `XX`.
    pub(super) fn parse(options: &[&'a [u8]]) -> Option<Self> {
        let mut parsed = SetOptions::default();
        let mut rest = options.iter();
        while let Some(option) = rest.next() {
            let is = |word: &str| option.eq_ignore_ascii_case(word.as_bytes());
            if is("nx") && !parsed.xx {
                parsed.nx = true;
            } else if is("xx") && !parsed.nx {
                parsed.xx = true;
            } else if is("get") {
                parsed.get = true;
            } else if is("keepttl") && parsed.expiry.is_none() {
                parsed.keep_ttl = true;
            } else {
                let kind = expiry_kind(option)?;
                if parsed.keep_ttl || parsed.expiry.is_some_and(|(seen, _)| seen != kind) {
                    return None;
                }
                parsed.expiry = Some((kind, rest.next()?));
            }
        }
        Some(parsed)
    }
}

/// `EXPIRE`'s `NX | XX | GT | LT` conditions.
#[derive(Default)]
pub(super) struct ExpireFlags {
    pub(super) nx: bool,
    pub(super) xx: bool,
    pub(super) gt: bool,
    pub(super) lt: bool,
}

impl ExpireFlags {
    /// Parses the options, with redis-server's errors for unknown or incompatible ones.
    pub(super) fn parse(options: &[&[u8]]) -> Result<Self, String> {
        let mut flags = ExpireFlags::default();
        for option in options {
            let flag = match option.to_ascii_lowercase().as_slice() {
                b"nx" => &mut flags.nx,
                b"xx" => &mut flags.xx,
                b"gt" => &mut flags.gt,
                b"lt" => &mut flags.lt,
                _ => return Err(format!("ERR Unsupported option {}", sanitize(option))),
            };
            *flag = true;
        }
        if flags.nx && (flags.xx || flags.gt || flags.lt) {
            let text = "ERR NX and XX, GT or LT options at the same time are not compatible";
            return Err(text.into());
        }
        if flags.gt && flags.lt {
            return Err("ERR GT and LT options at the same time are not compatible".into());
        }
        Ok(flags)
    }

    /// Whether a key expiring at `current` (Unix ms; `None`: never) may be set to `when`.
    pub(super) fn allow(&self, when: i64, current: Option<i64>) -> bool {
        !((self.nx && current.is_some())
            || (self.xx && current.is_none())
            || (self.gt && current.is_none_or(|current| when <= current))
            || (self.lt && current.is_some_and(|current| when >= current)))
    }
}
