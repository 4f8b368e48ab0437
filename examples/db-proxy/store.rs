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

mod options;

use options::{ExpireFlags, ExpiryKind, SetOptions, EX, PX};

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
            // A command the proxy routes to real redis-servers, but this store lacks (hashes,
            // lists, sets...): say so, rather than claim it does not exist.
            None if crate::command::info(name.as_bytes()).is_some() => write_error(
                out,
                &format!(
                    "ERR command '{}' is not supported by the embedded backend (strings and key \
                     expiry only): start db-proxy with --upstream to serve it from redis-server",
                    sanitize(name.as_bytes())
                ),
            ),
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
mod tests;
