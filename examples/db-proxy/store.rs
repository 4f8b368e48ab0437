//! The embedded backend's data store: an in-memory, Redis-like map from keys to string values.
//!
//! The embedded backend server owns one [`Store`] and calls [`Store::execute`] for each request
//! it reads; the store appends exactly one RESP2 reply, with redis-server's reply and error
//! texts, so the proxy can be run and benchmarked without a real Redis. It holds string values
//! only, in one database (db 0). Time comes from the caller (`now`), which keeps it
//! deterministic under test. A key past its expiry is invisible: every access checks it (lazy
//! expiry), and [`Store::expire_some`] removes expired keys soonest-first (active expiry).
//!
//! Commands: `PING ECHO QUIT HELLO SELECT COMMAND CONFIG INFO DBSIZE FLUSHDB`, `GET SET SETNX
//! SETEX PSETEX GETSET GETDEL MGET MSET APPEND STRLEN INCR DECR INCRBY DECRBY`, `DEL UNLINK
//! EXISTS TOUCH`, `EXPIRE PEXPIRE TTL PTTL PERSIST`. Unknown commands and wrong argument counts
//! get the same errors as from the proxy (the formatters live in `command`).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::command::{arity_matches, sanitize, unknown_command, wrong_arity, CommandName};
use crate::resp::{parse_i64, write_array_len, write_bulk, write_error, write_integer};
use crate::resp::{write_null, write_simple};

const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";
/// redis-server's default `proto-max-bulk-len`: `APPEND` may not grow a value past it.
const MAX_VALUE_LEN: usize = 512 * 1024 * 1024;

/// What the connection does once the reply is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Keep reading requests.
    Continue,
    /// Close the connection after the reply (`QUIT`).
    Close,
}

struct Entry {
    value: Vec<u8>,
    expires_at: Option<Instant>,
}

impl Entry {
    fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// Pairs the caller's monotonic instants with Unix time, for `EXAT`, `PXAT` and `EXPIRE`.
struct Clock {
    origin: Instant,
    origin_unix_ms: i64,
}

impl Clock {
    /// Unix time in milliseconds at `at`.
    fn unix_ms(&self, at: Instant) -> i64 {
        match at.checked_duration_since(self.origin) {
            Some(since) => self.origin_unix_ms.saturating_add(millis(since)),
            None => self.origin_unix_ms.saturating_sub(millis(self.origin - at)),
        }
    }

    /// The instant at Unix time `unix_ms`, or `now` if that is already past.
    fn instant_at(&self, unix_ms: i64, now: Instant) -> Option<Instant> {
        let ahead = unix_ms.saturating_sub(self.unix_ms(now)).max(0);
        now.checked_add(Duration::from_millis(ahead.unsigned_abs()))
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The handler of one command: it appends exactly one reply to `out`.
type Handler = fn(&mut Store, &[&[u8]], Instant, &mut Vec<u8>);

/// The redis arity and handler of a lowercase command name (`QUIT` is handled before this).
fn handler(name: &[u8]) -> Option<(i32, Handler)> {
    let found: (i32, Handler) = match name {
        b"ping" => (-1, Store::ping),
        b"echo" => (2, Store::echo),
        b"hello" => (-1, Store::hello),
        b"select" => (2, Store::select),
        b"command" => (-1, Store::command),
        b"config" => (-2, Store::config),
        b"info" => (-1, Store::info),
        b"dbsize" => (1, Store::dbsize),
        b"flushdb" => (-1, Store::flushdb),
        b"get" => (2, Store::get),
        b"set" => (-3, Store::set),
        b"setnx" => (3, Store::setnx),
        b"setex" => (4, Store::setex),
        b"psetex" => (4, Store::psetex),
        b"getset" => (3, Store::getset),
        b"getdel" => (2, Store::getdel),
        b"mget" => (-2, Store::mget),
        b"mset" => (-3, Store::mset),
        b"append" => (3, Store::append),
        b"strlen" => (2, Store::strlen),
        b"incr" => (2, Store::incr),
        b"decr" => (2, Store::decr),
        b"incrby" => (3, Store::incrby),
        b"decrby" => (3, Store::decrby),
        b"del" | b"unlink" => (-2, Store::del),
        b"exists" | b"touch" => (-2, Store::exists),
        b"expire" => (-3, Store::expire),
        b"pexpire" => (-3, Store::pexpire),
        b"ttl" => (2, Store::ttl),
        b"pttl" => (2, Store::pttl),
        b"persist" => (2, Store::persist),
        _ => return None,
    };
    Some(found)
}

/// How an expiry argument reads: its unit, and whether it is a Unix time or a duration.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ExpiryKind {
    seconds: bool,
    absolute: bool,
}

const EX: ExpiryKind = ExpiryKind {
    seconds: true,
    absolute: false,
};
const PX: ExpiryKind = ExpiryKind {
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
struct SetOptions<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    expiry: Option<(ExpiryKind, &'a [u8])>,
}

impl<'a> SetOptions<'a> {
    /// Parses as redis-server does; `None` is a syntax error. An expiry option may repeat (the
    /// last wins) but not mix with another expiry kind or `KEEPTTL`, nor `NX` with `XX`.
    fn parse(options: &[&'a [u8]]) -> Option<Self> {
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
struct ExpireFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

impl ExpireFlags {
    /// Parses the options, with redis-server's errors for unknown or incompatible ones.
    fn parse(options: &[&[u8]]) -> Result<Self, String> {
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
    fn allow(&self, when: i64, current: Option<i64>) -> bool {
        !((self.nx && current.is_some())
            || (self.xx && current.is_none())
            || (self.gt && current.is_none_or(|current| when <= current))
            || (self.lt && current.is_some_and(|current| when >= current)))
    }
}

/// An in-memory string store with expiry, answering a subset of Redis commands.
pub(crate) struct Store {
    entries: HashMap<Vec<u8>, Entry>,
    /// Every entry that has an expiry, soonest first.
    deadlines: BTreeSet<(Instant, Vec<u8>)>,
    clock: Clock,
}

impl Store {
    /// An empty store.
    pub(crate) fn new() -> Self {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH);
        Store::with_clock(Instant::now(), unix.map_or(0, millis))
    }

    /// An empty store whose `origin` instant is Unix time `origin_unix_ms`.
    fn with_clock(origin: Instant, origin_unix_ms: i64) -> Self {
        Store {
            entries: HashMap::new(),
            deadlines: BTreeSet::new(),
            clock: Clock {
                origin,
                origin_unix_ms,
            },
        }
    }

    /// Runs the request `args` (command name first) at time `now`, appending exactly one RESP2
    /// reply to `out`. Every failure is an error reply; nothing panics on any input.
    pub(crate) fn execute(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) -> Outcome {
        let Some(name) = args.first().and_then(|name| CommandName::new(name)) else {
            write_error(out, &unknown_command(args));
            return Outcome::Continue;
        };
        if name.as_bytes() == b"quit" {
            write_simple(out, "OK");
            return Outcome::Close;
        }
        match handler(name.as_bytes()) {
            None => write_error(out, &unknown_command(args)),
            Some((arity, _)) if !arity_matches(arity, args.len()) => {
                write_error(out, &wrong_arity(&String::from_utf8_lossy(name.as_bytes())));
            }
            Some((_, run)) => run(self, args, now, out),
        }
        Outcome::Continue
    }

    /// Removes up to `max` keys whose expiry is at or before `now`, soonest first; returns
    /// how many it removed.
    pub(crate) fn expire_some(&mut self, now: Instant, max: usize) -> usize {
        let mut removed = 0;
        while removed < max && self.deadlines.first().is_some_and(|(at, _)| *at <= now) {
            let Some((_, key)) = self.deadlines.pop_first() else {
                break;
            };
            self.entries.remove(&key);
            removed += 1;
        }
        removed
    }

    /// The number of keys held, counting expired keys not yet removed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry of `key` unless it is missing or expired (an expired one is removed).
    fn live(&mut self, key: &[u8], now: Instant) -> Option<&mut Entry> {
        if self.entries.get(key)?.expired(now) {
            self.remove(key);
            return None;
        }
        self.entries.get_mut(key)
    }

    /// Removes and returns the entry of `key` unless it is missing or expired.
    fn take_live(&mut self, key: &[u8], now: Instant) -> Option<Entry> {
        self.live(key, now)?;
        self.remove(key)
    }

    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let (key, entry) = self.entries.remove_entry(key)?;
        if let Some(at) = entry.expires_at {
            self.deadlines.remove(&(at, key));
        }
        Some(entry)
    }

    /// Sets `key` to `value`, expiring at `expires_at` (`None`: never).
    fn put(&mut self, key: &[u8], value: Vec<u8>, expires_at: Option<Instant>) {
        match self.entries.get_mut(key) {
            Some(entry) => entry.value = value,
            None => {
                let entry = Entry {
                    value,
                    expires_at: None,
                };
                self.entries.insert(key.to_vec(), entry);
            }
        }
        self.set_expiry(key, expires_at);
    }

    fn set_expiry(&mut self, key: &[u8], expires_at: Option<Instant>) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if let Some(old) = std::mem::replace(&mut entry.expires_at, expires_at) {
            self.deadlines.remove(&(old, key.to_vec()));
        }
        if let Some(at) = expires_at {
            self.deadlines.insert((at, key.to_vec()));
        }
    }

    /// The instant an expiry argument names, checked as redis-server's
    /// `getExpireMillisecondsOrReply`: a positive integer that does not overflow.
    fn deadline(
        &self,
        arg: &[u8],
        kind: ExpiryKind,
        cmd: &str,
        now: Instant,
    ) -> Result<Instant, String> {
        let n = parse_i64(arg).ok_or(NOT_INTEGER)?;
        let invalid = || format!("ERR invalid expire time in '{cmd}' command");
        if n <= 0 {
            return Err(invalid());
        }
        let ms = if kind.seconds {
            n.checked_mul(1000)
        } else {
            Some(n)
        };
        let unix_ms = if kind.absolute {
            ms
        } else {
            ms.and_then(|ms| ms.checked_add(self.clock.unix_ms(now)))
        };
        let at = unix_ms.and_then(|unix_ms| self.clock.instant_at(unix_ms, now));
        at.ok_or_else(invalid)
    }

    fn ping(&mut self, args: &[&[u8]], _: Instant, out: &mut Vec<u8>) {
        match args {
            [_] => write_simple(out, "PONG"),
            [_, message] => write_bulk(out, message),
            _ => write_error(out, &wrong_arity("ping")),
        }
    }

    fn echo(&mut self, args: &[&[u8]], _: Instant, out: &mut Vec<u8>) {
        write_bulk(out, args[1]);
    }

    /// `HELLO [2 [AUTH user pass] [SETNAME name]]`: redis 7's HELLO map as a flat RESP2 array.
    /// Only protocol 2 is spoken. The store tracks no connections, so `id` is always 1.
    fn hello(&mut self, args: &[&[u8]], _: Instant, out: &mut Vec<u8>) {
        let mut options = &args[1..];
        if let Some((version, rest)) = options.split_first() {
            match parse_i64(version) {
                Some(2) => options = rest,
                Some(_) => return write_error(out, "NOPROTO unsupported protocol version"),
                None => {
                    let text = "ERR Protocol version is not an integer or out of range";
                    return write_error(out, text);
                }
            }
        }
        while let Some((option, rest)) = options.split_first() {
            let takes = match option.to_ascii_lowercase().as_slice() {
                b"auth" => Some(2), // username and password
                b"setname" => Some(1),
                _ => None,
            };
            let Some(rest) = takes.and_then(|n| rest.get(n..)) else {
                let text = format!("ERR Syntax error in HELLO option '{}'", sanitize(option));
                return write_error(out, &text);
            };
            options = rest;
        }
        write_array_len(out, 14);
        for (field, value) in [("server", "redis"), ("version", "7.0.0")] {
            write_bulk(out, field.as_bytes());
            write_bulk(out, value.as_bytes());
        }
        for (field, value) in [("proto", 2), ("id", 1)] {
            write_bulk(out, field.as_bytes());
            write_integer(out, value);
        }
        for (field, value) in [("mode", "standalone"), ("role", "master")] {
            write_bulk(out, field.as_bytes());
            write_bulk(out, value.as_bytes());
        }
        write_bulk(out, b"modules");
        write_array_len(out, 0);
    }

    fn select(&mut self, args: &[&[u8]], _: Instant, out: &mut Vec<u8>) {
        match parse_i64(args[1]) {
            None => write_error(out, NOT_INTEGER),
            Some(index) if i32::try_from(index).is_err() => write_error(
                out,
                "ERR value is out of range, value must between -2147483648 and 2147483647",
            ),
            Some(0) => write_simple(out, "OK"),
            Some(_) => write_error(out, "ERR DB index is out of range"),
        }
    }

    /// `COMMAND ...`: an empty array, so clients that probe the command table carry on.
    fn command(&mut self, _: &[&[u8]], _: Instant, out: &mut Vec<u8>) {
        write_array_len(out, 0);
    }

    /// `CONFIG GET pattern...`: an empty array (no parameters), for redis-benchmark's probe.
    fn config(&mut self, args: &[&[u8]], _: Instant, out: &mut Vec<u8>) {
        let sub = args[1];
        if !sub.eq_ignore_ascii_case(b"get") {
            let sub = sanitize(&sub[..sub.len().min(128)]);
            return write_error(
                out,
                &format!("ERR unknown subcommand '{sub}'. Try CONFIG HELP."),
            );
        }
        if args.len() < 3 {
            return write_error(out, &wrong_arity("config|get"));
        }
        write_array_len(out, 0);
    }

    /// `INFO [section...]`: the `server` and `keyspace` sections; the `db0` line is left out
    /// when the store is empty, as redis-server does.
    fn info(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        self.expire_some(now, usize::MAX);
        let every = ["all", "default", "everything"];
        let asked = |section: &str| {
            args[1..]
                .iter()
                .any(|a| a.eq_ignore_ascii_case(section.as_bytes()))
        };
        let wants = |section| args.len() == 1 || every.into_iter().any(asked) || asked(section);
        let mut text = String::new();
        if wants("server") {
            text.push_str("# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\n");
        }
        if wants("keyspace") {
            if !text.is_empty() {
                text.push_str("\r\n");
            }
            text.push_str("# Keyspace\r\n");
            if !self.entries.is_empty() {
                let (keys, expires) = (self.entries.len(), self.deadlines.len());
                text.push_str(&format!("db0:keys={keys},expires={expires},avg_ttl=0\r\n"));
            }
        }
        write_bulk(out, text.as_bytes());
    }

    /// `DBSIZE`: the number of live keys (expired ones are removed first).
    fn dbsize(&mut self, _: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        self.expire_some(now, usize::MAX);
        write_count(out, self.entries.len());
    }

    fn flushdb(&mut self, args: &[&[u8]], _: Instant, out: &mut Vec<u8>) {
        let valid = match args {
            [_] => true,
            [_, mode] => mode.eq_ignore_ascii_case(b"sync") || mode.eq_ignore_ascii_case(b"async"),
            _ => false,
        };
        if !valid {
            return write_error(out, SYNTAX);
        }
        self.entries.clear();
        self.deadlines.clear();
        write_simple(out, "OK");
    }

    fn get(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        write_value(out, self.live(args[1], now).map(|entry| &entry.value));
    }

    fn set(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        let Some(options) = SetOptions::parse(&args[3..]) else {
            return write_error(out, SYNTAX);
        };
        let expires_at = match options.expiry {
            Some((kind, arg)) => match self.deadline(arg, kind, "set", now) {
                Ok(at) => Some(at),
                Err(text) => return write_error(out, &text),
            },
            None => None,
        };
        let current = self.live(args[1], now);
        let (exists, kept) = (
            current.is_some(),
            current.as_ref().and_then(|e| e.expires_at),
        );
        if options.get {
            write_value(out, current.map(|entry| &entry.value));
        }
        if (options.nx && exists) || (options.xx && !exists) {
            if !options.get {
                write_null(out);
            }
            return;
        }
        let expires_at = if options.keep_ttl { kept } else { expires_at };
        self.put(args[1], args[2].to_vec(), expires_at);
        if !options.get {
            write_simple(out, "OK");
        }
    }

    fn setnx(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        let exists = self.live(args[1], now).is_some();
        if !exists {
            self.put(args[1], args[2].to_vec(), None);
        }
        write_integer(out, i64::from(!exists));
    }

    fn setex(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        self.set_expiring(args, EX, "setex", now, out);
    }

    fn psetex(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        self.set_expiring(args, PX, "psetex", now, out);
    }

    /// `SETEX` and `PSETEX`: `key ttl value`.
    fn set_expiring(
        &mut self,
        args: &[&[u8]],
        kind: ExpiryKind,
        cmd: &str,
        now: Instant,
        out: &mut Vec<u8>,
    ) {
        match self.deadline(args[2], kind, cmd, now) {
            Ok(at) => {
                self.put(args[1], args[3].to_vec(), Some(at));
                write_simple(out, "OK");
            }
            Err(text) => write_error(out, &text),
        }
    }

    fn getset(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        write_value(out, self.live(args[1], now).map(|entry| &entry.value));
        self.put(args[1], args[2].to_vec(), None);
    }

    fn getdel(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        let taken = self.take_live(args[1], now);
        write_value(out, taken.as_ref().map(|entry| &entry.value));
    }

    fn mget(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        write_array_len(out, args.len() - 1);
        for key in &args[1..] {
            write_value(out, self.live(key, now).map(|entry| &entry.value));
        }
    }

    fn mset(&mut self, args: &[&[u8]], _: Instant, out: &mut Vec<u8>) {
        let pairs = args[1..].chunks_exact(2);
        if !pairs.remainder().is_empty() {
            return write_error(out, &wrong_arity("mset"));
        }
        for pair in pairs {
            self.put(pair[0], pair[1].to_vec(), None);
        }
        write_simple(out, "OK");
    }

    fn append(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        let (key, tail) = (args[1], args[2]);
        let len = match self.live(key, now) {
            Some(entry) if entry.value.len() + tail.len() > MAX_VALUE_LEN => {
                let text = "ERR string exceeds maximum allowed size (proto_max_bulk_len)";
                return write_error(out, text);
            }
            Some(entry) => {
                entry.value.extend_from_slice(tail);
                entry.value.len()
            }
            None => {
                self.put(key, tail.to_vec(), None);
                tail.len()
            }
        };
        write_count(out, len);
    }

    fn strlen(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        let len = self.live(args[1], now).map_or(0, |entry| entry.value.len());
        write_count(out, len);
    }

    fn incr(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        self.incr_by(args[1], 1, now, out);
    }

    fn decr(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        self.incr_by(args[1], -1, now, out);
    }

    fn incrby(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        match parse_i64(args[2]) {
            Some(delta) => self.incr_by(args[1], delta, now, out),
            None => write_error(out, NOT_INTEGER),
        }
    }

    fn decrby(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        match parse_i64(args[2]) {
            Some(i64::MIN) => write_error(out, "ERR decrement would overflow"),
            Some(delta) => self.incr_by(args[1], -delta, now, out),
            None => write_error(out, NOT_INTEGER),
        }
    }

    /// Adds `delta` to the integer at `key` (0 if missing), keeping its expiry.
    fn incr_by(&mut self, key: &[u8], delta: i64, now: Instant, out: &mut Vec<u8>) {
        let entry = self.live(key, now);
        let current = match &entry {
            Some(entry) => parse_i64(&entry.value),
            None => Some(0),
        };
        let Some(current) = current else {
            return write_error(out, NOT_INTEGER);
        };
        let Some(next) = current.checked_add(delta) else {
            return write_error(out, "ERR increment or decrement would overflow");
        };
        let value = next.to_string().into_bytes();
        match entry {
            Some(entry) => entry.value = value,
            None => self.put(key, value, None),
        }
        write_integer(out, next);
    }

    fn del(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        let removed = args[1..]
            .iter()
            .filter(|key| self.take_live(key, now).is_some());
        write_count(out, removed.count());
    }

    /// `EXISTS` and `TOUCH`: how many of the keys are live, repeats counted.
    fn exists(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        let found = args[1..].iter().filter(|key| self.live(key, now).is_some());
        write_count(out, found.count());
    }

    fn expire(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        self.expire_in(args, 1000, "expire", now, out);
    }

    fn pexpire(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        self.expire_in(args, 1, "pexpire", now, out);
    }

    /// `EXPIRE key ttl [NX|XX|GT|LT]`, with `ttl` in units of `unit_ms`. A ttl that is not
    /// positive deletes the key; either way the reply is 1 if the key exists and the
    /// condition holds, else 0.
    fn expire_in(
        &mut self,
        args: &[&[u8]],
        unit_ms: i64,
        cmd: &str,
        now: Instant,
        out: &mut Vec<u8>,
    ) {
        let flags = match ExpireFlags::parse(&args[3..]) {
            Ok(flags) => flags,
            Err(text) => return write_error(out, &text),
        };
        let Some(ttl) = parse_i64(args[2]) else {
            return write_error(out, NOT_INTEGER);
        };
        let unix_now = self.clock.unix_ms(now);
        let when = ttl
            .checked_mul(unit_ms)
            .and_then(|ms| ms.checked_add(unix_now));
        let at = when.and_then(|when| self.clock.instant_at(when, now).map(|at| (when, at)));
        let Some((when, at)) = at else {
            return write_error(out, &format!("ERR invalid expire time in '{cmd}' command"));
        };
        let Some(current) = self.live(args[1], now).map(|entry| entry.expires_at) else {
            return write_integer(out, 0);
        };
        if !flags.allow(when, current.map(|at| self.clock.unix_ms(at))) {
            return write_integer(out, 0);
        }
        if when <= unix_now {
            self.remove(args[1]);
        } else {
            self.set_expiry(args[1], Some(at));
        }
        write_integer(out, 1);
    }

    /// `TTL`: seconds left, rounded to nearest as redis-server does; -1 without expiry, -2
    /// for a missing key.
    fn ttl(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        self.reply_ttl(args[1], now, out, |ms| ms.saturating_add(500) / 1000);
    }

    fn pttl(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        self.reply_ttl(args[1], now, out, |ms| ms);
    }

    fn reply_ttl(&mut self, key: &[u8], now: Instant, out: &mut Vec<u8>, scale: fn(i64) -> i64) {
        let ttl = match self.live(key, now).map(|entry| entry.expires_at) {
            None => -2,
            Some(None) => -1,
            Some(Some(at)) => scale(millis(at.saturating_duration_since(now))),
        };
        write_integer(out, ttl);
    }

    fn persist(&mut self, args: &[&[u8]], now: Instant, out: &mut Vec<u8>) {
        let expiring = self
            .live(args[1], now)
            .is_some_and(|e| e.expires_at.is_some());
        if expiring {
            self.set_expiry(args[1], None);
        }
        write_integer(out, i64::from(expiring));
    }
}

/// A bulk string reply for a value, or the null reply for a missing key.
fn write_value(out: &mut Vec<u8>, value: Option<&Vec<u8>>) {
    match value {
        Some(value) => write_bulk(out, value),
        None => write_null(out),
    }
}

fn write_count(out: &mut Vec<u8>, count: usize) {
    write_integer(out, i64::try_from(count).unwrap_or(i64::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::scan_reply;

    /// Unix time at the test clock's origin: 2023-11-14T22:13:20Z.
    const ORIGIN_UNIX_MS: i64 = 1_700_000_000_000;

    struct Fixture {
        store: Store,
        origin: Instant,
    }

    impl Fixture {
        fn new() -> Self {
            let origin = Instant::now();
            let store = Store::with_clock(origin, ORIGIN_UNIX_MS);
            Fixture { store, origin }
        }

        fn at(&self, ms: u64) -> Instant {
            self.origin + Duration::from_millis(ms)
        }

        /// Runs `args` at `ms` after the origin; checks the output is exactly one reply.
        fn run_args_at(&mut self, ms: u64, args: &[&[u8]]) -> (String, Outcome) {
            let mut out = Vec::new();
            let outcome = self.store.execute(args, self.at(ms), &mut out);
            assert_eq!(scan_reply(&out, 4), Ok(Some(out.len())), "{out:?}");
            (String::from_utf8_lossy(&out).into_owned(), outcome)
        }

        /// Runs a space-separated command line at `ms` after the origin.
        fn at_ms(&mut self, ms: u64, line: &str) -> String {
            let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
            let (reply, outcome) = self.run_args_at(ms, &args);
            assert_eq!(outcome, Outcome::Continue);
            reply
        }

        fn run(&mut self, line: &str) -> String {
            self.at_ms(0, line)
        }
    }

    fn bulk(text: &str) -> String {
        format!("${}\r\n{text}\r\n", text.len())
    }

    const NULL: &str = "$-1\r\n";
    const OK: &str = "+OK\r\n";

    #[test]
    fn ping_echo_and_quit() {
        let mut f = Fixture::new();
        assert_eq!(f.run("PING"), "+PONG\r\n");
        assert_eq!(f.run("ping hi"), bulk("hi"));
        let arity = "-ERR wrong number of arguments for 'ping' command\r\n";
        assert_eq!(f.run("PING a b"), arity);
        assert_eq!(f.run("ECHO hello"), bulk("hello"));
        assert_eq!(
            f.run_args_at(0, &[b"QUIT"]),
            (OK.to_string(), Outcome::Close)
        );
        assert_eq!(
            f.run_args_at(0, &[b"quit", b"x"]),
            (OK.to_string(), Outcome::Close)
        );
    }

    #[test]
    fn unknown_commands_and_wrong_arity_match_redis() {
        let mut f = Fixture::new();
        let unknown = "-ERR unknown command 'nope', with args beginning with: 'a' \r\n";
        assert_eq!(f.run("nope a"), unknown);
        let long = "x".repeat(40);
        assert!(f.run(&long).starts_with("-ERR unknown command 'xxxx"));
        let (reply, _) = f.run_args_at(0, &[]);
        assert_eq!(
            reply,
            "-ERR unknown command '', with args beginning with: \r\n"
        );
        assert_eq!(
            f.run("GET"),
            "-ERR wrong number of arguments for 'get' command\r\n"
        );
        assert_eq!(
            f.run("Get a b"),
            "-ERR wrong number of arguments for 'get' command\r\n"
        );
        let mset = "-ERR wrong number of arguments for 'mset' command\r\n";
        assert_eq!(f.run("MSET a 1 b"), mset);
        assert_eq!(f.run("MSET a"), mset);
    }

    #[test]
    fn values_are_binary_safe() {
        let mut f = Fixture::new();
        let (key, value) = (&b"k\r\n\0"[..], &b"\xff\x00\r\n"[..]);
        assert_eq!(f.run_args_at(0, &[b"SET", key, value]).0, OK);
        let mut out = Vec::new();
        f.store.execute(&[b"GET", key], f.at(0), &mut out);
        assert_eq!(out, b"$4\r\n\xff\x00\r\n\r\n");
    }

    #[test]
    fn set_and_get() {
        let mut f = Fixture::new();
        assert_eq!(f.run("GET k"), NULL);
        assert_eq!(f.run("SET k v"), OK);
        assert_eq!(f.run("GET k"), bulk("v"));
        assert_eq!(f.run("set k w"), OK);
        assert_eq!(f.run("GET k"), bulk("w"));
        assert_eq!(f.store.len(), 1);
    }

    #[test]
    fn set_nx_xx_and_get_options() {
        let mut f = Fixture::new();
        assert_eq!(f.run("SET k v XX"), NULL);
        assert_eq!(f.run("SET k v NX"), OK);
        assert_eq!(f.run("SET k w NX"), NULL);
        assert_eq!(f.run("SET k w xx"), OK);
        assert_eq!(f.run("SET k x GET"), bulk("w"));
        assert_eq!(f.run("SET n x GET"), NULL);
        assert_eq!(f.run("SET k y NX GET"), bulk("x"));
        assert_eq!(f.run("GET k"), bulk("x"));
        assert_eq!(f.run("SET m y XX GET"), NULL);
        assert_eq!(f.run("GET m"), NULL);
        assert_eq!(f.run("SET k z NX NX"), NULL);
    }

    #[test]
    fn set_option_syntax_errors() {
        let mut f = Fixture::new();
        let lines = [
            "SET k v NX XX",
            "SET k v XX NX",
            "SET k v EX",
            "SET k v EX 10 PX 10",
            "SET k v KEEPTTL EX 10",
            "SET k v EX 10 KEEPTTL",
            "SET k v FOO",
            "SET k v PXAT 1 EXAT 1",
        ];
        for line in lines {
            assert_eq!(f.run(line), "-ERR syntax error\r\n", "{line}");
        }
        assert_eq!(f.run("GET k"), NULL);
        assert_eq!(f.run("SET k v EX 10 ex 20"), OK);
        assert_eq!(f.run("TTL k"), ":20\r\n");
        assert_eq!(f.run("SET k v KEEPTTL KEEPTTL"), OK);
    }

    #[test]
    fn set_expire_time_errors() {
        let mut f = Fixture::new();
        let invalid = "-ERR invalid expire time in 'set' command\r\n";
        let lines = [
            "SET k v EX 0",
            "SET k v EX -1",
            "SET k v PX 0",
            "SET k v EXAT 0",
            "SET k v EX 9223372036854776",
            "SET k v EX 9223372036854775",
            "SET k v PX 9223372036854775807",
        ];
        for line in lines {
            assert_eq!(f.run(line), invalid, "{line}");
        }
        let not_integer = "-ERR value is not an integer or out of range\r\n";
        assert_eq!(f.run("SET k v EX ten"), not_integer);
        assert_eq!(f.run("SET k v EX +1"), not_integer);
        assert_eq!(f.run("SET k v EX 9223372036854775808"), not_integer);
        assert_eq!(f.run("GET k"), NULL);
        assert_eq!(f.run("SET k v EX 9000000000000000"), OK);
        assert_eq!(f.run("TTL k"), ":9000000000000000\r\n");
    }

    #[test]
    fn set_expiry_options() {
        let mut f = Fixture::new();
        assert_eq!(f.run("SET k v EX 10"), OK);
        assert_eq!(f.run("PTTL k"), ":10000\r\n");
        assert_eq!(f.run("SET k w KEEPTTL"), OK);
        assert_eq!(f.run("PTTL k"), ":10000\r\n");
        assert_eq!(f.run("SET k x"), OK);
        assert_eq!(f.run("PTTL k"), ":-1\r\n");
        assert_eq!(f.run("SET k v PX 1500"), OK);
        assert_eq!(f.run("PTTL k"), ":1500\r\n");
        let exat = format!("SET k v EXAT {}", ORIGIN_UNIX_MS / 1000 + 30);
        assert_eq!(f.run(&exat), OK);
        assert_eq!(f.run("TTL k"), ":30\r\n");
        let pxat = format!("SET k v PXAT {}", ORIGIN_UNIX_MS + 2_500);
        assert_eq!(f.run(&pxat), OK);
        assert_eq!(f.at_ms(500, "PTTL k"), ":2000\r\n");
        assert_eq!(f.run("SET old v PXAT 1"), OK);
        assert_eq!(f.run("GET old"), NULL);
        assert_eq!(f.run("SET n v KEEPTTL"), OK);
        assert_eq!(f.run("TTL n"), ":-1\r\n");
    }

    #[test]
    fn keys_expire_lazily_at_their_deadline() {
        let mut f = Fixture::new();
        assert_eq!(f.run("SET k v PX 100"), OK);
        assert_eq!(f.at_ms(99, "GET k"), bulk("v"));
        assert_eq!(f.store.len(), 1);
        assert_eq!(f.at_ms(100, "GET k"), NULL);
        assert_eq!(f.store.len(), 0);
        assert_eq!(f.run("SET k v PX 100"), OK);
        assert_eq!(f.at_ms(200, "EXISTS k"), ":0\r\n");
        assert_eq!(f.at_ms(200, "SET k v NX"), OK);
        assert_eq!(f.at_ms(300, "TTL k"), ":-1\r\n");
    }

    #[test]
    fn expire_some_removes_the_soonest_first() {
        let mut f = Fixture::new();
        for (key, ms) in [("a", 30), ("b", 10), ("c", 20), ("d", 1000)] {
            assert_eq!(f.run(&format!("SET {key} v PX {ms}")), OK);
        }
        assert_eq!(f.run("SET e v"), OK);
        assert_eq!(f.store.expire_some(f.at(5), 10), 0);
        assert_eq!(f.store.expire_some(f.at(25), 1), 1);
        assert_eq!(f.at_ms(5, "EXISTS b"), ":0\r\n");
        assert_eq!(f.at_ms(5, "EXISTS a c"), ":2\r\n");
        assert_eq!(f.store.expire_some(f.at(25), 10), 1);
        assert_eq!(f.store.len(), 3);
        assert_eq!(f.store.expire_some(f.at(10_000), usize::MAX), 2);
        assert_eq!(f.store.len(), 1);
    }

    #[test]
    fn setnx_setex_psetex() {
        let mut f = Fixture::new();
        assert_eq!(f.run("SETNX k v"), ":1\r\n");
        assert_eq!(f.run("SETNX k w"), ":0\r\n");
        assert_eq!(f.run("GET k"), bulk("v"));
        assert_eq!(f.run("SETEX k 10 w"), OK);
        assert_eq!(f.run("TTL k"), ":10\r\n");
        assert_eq!(f.run("PSETEX k 1200 x"), OK);
        assert_eq!(f.run("PTTL k"), ":1200\r\n");
        assert_eq!(f.run("GET k"), bulk("x"));
        let setex = "-ERR invalid expire time in 'setex' command\r\n";
        assert_eq!(f.run("SETEX k 0 v"), setex);
        let psetex = "-ERR invalid expire time in 'psetex' command\r\n";
        assert_eq!(f.run("PSETEX k -5 v"), psetex);
        let not_integer = "-ERR value is not an integer or out of range\r\n";
        assert_eq!(f.run("SETEX k x v"), not_integer);
        assert_eq!(f.at_ms(1200, "SETNX k y"), ":1\r\n");
    }

    #[test]
    fn getset_and_getdel() {
        let mut f = Fixture::new();
        assert_eq!(f.run("GETSET k v"), NULL);
        assert_eq!(f.run("SET k w EX 10"), OK);
        assert_eq!(f.run("GETSET k x"), bulk("w"));
        assert_eq!(f.run("TTL k"), ":-1\r\n");
        assert_eq!(f.run("GETDEL k"), bulk("x"));
        assert_eq!(f.run("GETDEL k"), NULL);
        assert_eq!(f.run("SET e v PX 5"), OK);
        assert_eq!(f.at_ms(5, "GETDEL e"), NULL);
    }

    #[test]
    fn del_unlink_exists_touch_count_live_keys() {
        let mut f = Fixture::new();
        assert_eq!(f.run("MSET a 1 b 2 c 3"), OK);
        assert_eq!(f.run("SET e v PX 10"), OK);
        assert_eq!(f.run("EXISTS a a b x"), ":3\r\n");
        assert_eq!(f.at_ms(10, "EXISTS e"), ":0\r\n");
        assert_eq!(f.run("TOUCH a x c"), ":2\r\n");
        assert_eq!(f.run("DEL a a x"), ":1\r\n");
        assert_eq!(f.run("SET e v PX 10"), OK);
        assert_eq!(f.at_ms(10, "UNLINK b e"), ":1\r\n");
        assert_eq!(f.run("EXISTS a b c"), ":1\r\n");
    }

    #[test]
    fn incr_and_decr_follow_redis_integer_rules() {
        let mut f = Fixture::new();
        assert_eq!(f.run("INCR n"), ":1\r\n");
        assert_eq!(f.run("INCRBY n 41"), ":42\r\n");
        assert_eq!(f.run("DECR n"), ":41\r\n");
        assert_eq!(f.run("DECRBY n -9"), ":50\r\n");
        assert_eq!(f.run("GET n"), bulk("50"));
        let not_integer = "-ERR value is not an integer or out of range\r\n";
        for value in ["abc", "+1", "01", "1.5", "99999999999999999999", ""] {
            f.store
                .execute(&[b"SET", b"s", value.as_bytes()], f.at(0), &mut Vec::new());
            assert_eq!(f.run("INCR s"), not_integer, "{value:?}");
        }
        assert_eq!(f.run("INCRBY n x"), not_integer);
        assert_eq!(f.run("DECRBY n 1.0"), not_integer);
        let overflow = "-ERR increment or decrement would overflow\r\n";
        assert_eq!(f.run("SET m 9223372036854775807"), OK);
        assert_eq!(f.run("INCR m"), overflow);
        assert_eq!(f.run("SET m -9223372036854775808"), OK);
        assert_eq!(f.run("DECR m"), overflow);
        assert_eq!(f.run("INCRBY m -1"), overflow);
        assert_eq!(f.run("DECRBY m -9223372036854775807"), ":-1\r\n");
        let decrement = "-ERR decrement would overflow\r\n";
        assert_eq!(f.run("DECRBY m -9223372036854775808"), decrement);
    }

    #[test]
    fn incr_keeps_the_expiry() {
        let mut f = Fixture::new();
        assert_eq!(f.run("SET n 1 EX 100"), OK);
        assert_eq!(f.run("INCR n"), ":2\r\n");
        assert_eq!(f.run("TTL n"), ":100\r\n");
        assert_eq!(f.at_ms(100_000, "INCR n"), ":1\r\n");
    }

    #[test]
    fn append_and_strlen() {
        let mut f = Fixture::new();
        assert_eq!(f.run("STRLEN k"), ":0\r\n");
        assert_eq!(f.run("APPEND k abc"), ":3\r\n");
        assert_eq!(f.run("SET k2 v EX 10"), OK);
        assert_eq!(f.run("APPEND k2 w"), ":2\r\n");
        assert_eq!(f.run("TTL k2"), ":10\r\n");
        assert_eq!(f.run("APPEND k de"), ":5\r\n");
        assert_eq!(f.run("GET k"), bulk("abcde"));
        assert_eq!(f.run("STRLEN k"), ":5\r\n");
    }

    #[test]
    fn append_refuses_values_over_512_mib() {
        let mut f = Fixture::new();
        assert_eq!(f.run("SET k a"), OK);
        let tail = vec![0u8; MAX_VALUE_LEN]; // zeroed pages, never touched
        let (reply, _) = f.run_args_at(0, &[b"APPEND", b"k", &tail]);
        assert_eq!(
            reply,
            "-ERR string exceeds maximum allowed size (proto_max_bulk_len)\r\n"
        );
        assert_eq!(f.run("STRLEN k"), ":1\r\n");
    }

    #[test]
    fn mget_and_mset() {
        let mut f = Fixture::new();
        assert_eq!(f.run("SET a old EX 5"), OK);
        assert_eq!(f.run("MSET a 1 b 2"), OK);
        assert_eq!(f.run("TTL a"), ":-1\r\n");
        let reply = format!("*3\r\n{}{NULL}{}", bulk("1"), bulk("2"));
        assert_eq!(f.run("MGET a x b"), reply);
        assert_eq!(f.run("MSET a 3 a 4"), OK);
        assert_eq!(f.run("GET a"), bulk("4"));
    }

    #[test]
    fn expire_and_pexpire() {
        let mut f = Fixture::new();
        assert_eq!(f.run("EXPIRE k 10"), ":0\r\n");
        assert_eq!(f.run("SET k v"), OK);
        assert_eq!(f.run("EXPIRE k 10"), ":1\r\n");
        assert_eq!(f.run("TTL k"), ":10\r\n");
        assert_eq!(f.run("PEXPIRE k 2500"), ":1\r\n");
        assert_eq!(f.run("PTTL k"), ":2500\r\n");
        assert_eq!(f.at_ms(2499, "GET k"), bulk("v"));
        assert_eq!(f.at_ms(2500, "GET k"), NULL);
        assert_eq!(f.run("SET k v"), OK);
        assert_eq!(f.run("EXPIRE k -1"), ":1\r\n");
        assert_eq!(f.run("EXISTS k"), ":0\r\n");
        assert_eq!(f.run("SET k v"), OK);
        assert_eq!(f.run("PEXPIRE k 0"), ":1\r\n");
        assert_eq!(f.run("EXISTS k"), ":0\r\n");
        assert_eq!(f.store.len(), 0);
    }

    #[test]
    fn expire_errors() {
        let mut f = Fixture::new();
        assert_eq!(f.run("SET k v"), OK);
        let not_integer = "-ERR value is not an integer or out of range\r\n";
        assert_eq!(f.run("EXPIRE k ten"), not_integer);
        let invalid = "-ERR invalid expire time in 'expire' command\r\n";
        assert_eq!(f.run("EXPIRE k 9223372036854776"), invalid);
        assert_eq!(f.run("EXPIRE k -9223372036854776"), invalid);
        let pinvalid = "-ERR invalid expire time in 'pexpire' command\r\n";
        assert_eq!(f.run("PEXPIRE k 9223372036854775807"), pinvalid);
        assert_eq!(f.run("EXPIRE k 10 FOO"), "-ERR Unsupported option FOO\r\n");
        let nx = "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n";
        assert_eq!(f.run("EXPIRE k 10 NX XX"), nx);
        assert_eq!(f.run("EXPIRE k 10 gt nx"), nx);
        let gt = "-ERR GT and LT options at the same time are not compatible\r\n";
        assert_eq!(f.run("EXPIRE k 10 GT LT"), gt);
        assert_eq!(f.run("TTL k"), ":-1\r\n");
    }

    #[test]
    fn expire_conditions() {
        let mut f = Fixture::new();
        assert_eq!(f.run("SET k v"), OK);
        assert_eq!(f.run("EXPIRE k 10 XX"), ":0\r\n");
        assert_eq!(f.run("EXPIRE k 10 GT"), ":0\r\n");
        assert_eq!(f.run("EXPIRE k 10 NX"), ":1\r\n");
        assert_eq!(f.run("EXPIRE k 20 NX"), ":0\r\n");
        assert_eq!(f.run("EXPIRE k 20 XX"), ":1\r\n");
        assert_eq!(f.run("EXPIRE k 15 GT"), ":0\r\n");
        assert_eq!(f.run("EXPIRE k 30 gt"), ":1\r\n");
        assert_eq!(f.run("EXPIRE k 40 LT"), ":0\r\n");
        assert_eq!(f.run("EXPIRE k 5 LT"), ":1\r\n");
        assert_eq!(f.run("TTL k"), ":5\r\n");
        assert_eq!(f.run("SET p v"), OK);
        assert_eq!(f.run("EXPIRE p 5 LT"), ":1\r\n");
    }

    #[test]
    fn ttl_rounds_like_redis() {
        let mut f = Fixture::new();
        assert_eq!(f.run("TTL k"), ":-2\r\n");
        assert_eq!(f.run("PTTL k"), ":-2\r\n");
        assert_eq!(f.run("SET k v"), OK);
        assert_eq!(f.run("TTL k"), ":-1\r\n");
        assert_eq!(f.run("SET k v PX 1499"), OK);
        assert_eq!(f.run("TTL k"), ":1\r\n");
        assert_eq!(f.run("SET k v PX 1500"), OK);
        assert_eq!(f.run("TTL k"), ":2\r\n");
        assert_eq!(f.at_ms(1100, "TTL k"), ":0\r\n");
        assert_eq!(f.at_ms(1100, "PTTL k"), ":400\r\n");
    }

    #[test]
    fn persist_removes_the_expiry() {
        let mut f = Fixture::new();
        assert_eq!(f.run("PERSIST k"), ":0\r\n");
        assert_eq!(f.run("SET k v"), OK);
        assert_eq!(f.run("PERSIST k"), ":0\r\n");
        assert_eq!(f.run("EXPIRE k 10"), ":1\r\n");
        assert_eq!(f.run("PERSIST k"), ":1\r\n");
        assert_eq!(f.run("TTL k"), ":-1\r\n");
        assert_eq!(f.store.expire_some(f.at(60_000), usize::MAX), 0);
        assert_eq!(f.at_ms(60_000, "GET k"), bulk("v"));
    }

    #[test]
    fn dbsize_and_flushdb() {
        let mut f = Fixture::new();
        assert_eq!(f.run("DBSIZE"), ":0\r\n");
        assert_eq!(f.run("MSET a 1 b 2"), OK);
        assert_eq!(f.run("SET c 3 PX 10"), OK);
        assert_eq!(f.run("DBSIZE"), ":3\r\n");
        assert_eq!(f.at_ms(10, "DBSIZE"), ":2\r\n");
        assert_eq!(
            f.run("DBSIZE x"),
            "-ERR wrong number of arguments for 'dbsize' command\r\n"
        );
        assert_eq!(f.run("FLUSHDB x"), "-ERR syntax error\r\n");
        assert_eq!(f.run("FLUSHDB SYNC x"), "-ERR syntax error\r\n");
        assert_eq!(f.run("DBSIZE"), ":2\r\n");
        assert_eq!(f.run("FLUSHDB async"), OK);
        assert_eq!(f.run("SET c 3 PX 10"), OK);
        assert_eq!(f.run("FLUSHDB"), OK);
        assert_eq!(f.run("DBSIZE"), ":0\r\n");
        assert_eq!(f.store.expire_some(f.at(100), usize::MAX), 0);
    }

    #[test]
    fn select_only_database_zero() {
        let mut f = Fixture::new();
        assert_eq!(f.run("SELECT 0"), OK);
        assert_eq!(f.run("SELECT 1"), "-ERR DB index is out of range\r\n");
        assert_eq!(f.run("SELECT -1"), "-ERR DB index is out of range\r\n");
        let not_integer = "-ERR value is not an integer or out of range\r\n";
        assert_eq!(f.run("SELECT zero"), not_integer);
        let range = "-ERR value is out of range, value must between -2147483648 and 2147483647\r\n";
        assert_eq!(f.run("SELECT 2147483648"), range);
    }

    #[test]
    fn command_and_config_get_reply_empty_arrays() {
        let mut f = Fixture::new();
        assert_eq!(f.run("COMMAND"), "*0\r\n");
        assert_eq!(f.run("COMMAND DOCS"), "*0\r\n");
        assert_eq!(f.run("CONFIG GET save"), "*0\r\n");
        assert_eq!(f.run("config get appendonly x"), "*0\r\n");
        let get = "-ERR wrong number of arguments for 'config|get' command\r\n";
        assert_eq!(f.run("CONFIG GET"), get);
        let config = "-ERR wrong number of arguments for 'config' command\r\n";
        assert_eq!(f.run("CONFIG"), config);
        let sub = "-ERR unknown subcommand 'set'. Try CONFIG HELP.\r\n";
        assert_eq!(f.run("CONFIG set a b"), sub);
    }

    #[test]
    fn info_reports_server_and_keyspace() {
        let mut f = Fixture::new();
        let server = "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\n";
        assert_eq!(f.run("INFO"), bulk(&format!("{server}\r\n# Keyspace\r\n")));
        assert_eq!(f.run("MSET a 1 b 2"), OK);
        assert_eq!(f.run("SET c 3 EX 10"), OK);
        assert_eq!(f.run("SET d 4 PX 5"), OK);
        let keyspace = "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n";
        assert_eq!(f.at_ms(5, "INFO"), bulk(&format!("{server}\r\n{keyspace}")));
        assert_eq!(f.run("INFO all"), bulk(&format!("{server}\r\n{keyspace}")));
        assert_eq!(f.run("INFO keyspace"), bulk(keyspace));
        assert_eq!(f.run("INFO SERVER"), bulk(server));
        assert_eq!(f.run("INFO memory"), bulk(""));
    }

    #[test]
    fn hello_speaks_resp2_only() {
        let mut f = Fixture::new();
        let reply = "*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n\
            $5\r\nproto\r\n:2\r\n$2\r\nid\r\n:1\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
            $4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
        assert_eq!(f.run("HELLO"), reply);
        assert_eq!(f.run("HELLO 2"), reply);
        assert_eq!(f.run("HELLO 2 AUTH default pw SETNAME app"), reply);
        let noproto = "-NOPROTO unsupported protocol version\r\n";
        assert_eq!(f.run("HELLO 3"), noproto);
        assert_eq!(f.run("HELLO 1"), noproto);
        let version = "-ERR Protocol version is not an integer or out of range\r\n";
        assert_eq!(f.run("HELLO two"), version);
        let syntax = "-ERR Syntax error in HELLO option 'AUTH'\r\n";
        assert_eq!(f.run("HELLO 2 AUTH user"), syntax);
        let syntax = "-ERR Syntax error in HELLO option 'bogus'\r\n";
        assert_eq!(f.run("HELLO 2 bogus"), syntax);
    }

    #[test]
    fn the_real_clock_starts_now() {
        let mut store = Store::new();
        let mut out = Vec::new();
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let exat = (unix + 3600).to_string();
        let args: [&[u8]; 5] = [b"SET", b"k", b"v", b"EXAT", exat.as_bytes()];
        assert_eq!(
            store.execute(&args, Instant::now(), &mut out),
            Outcome::Continue
        );
        store.execute(&[b"TTL", b"k"], Instant::now(), &mut out);
        assert!(
            out.starts_with(b"+OK\r\n:3"),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
    }
}
