//! Classifying client commands: how the proxy routes each request, or the error it replies with.
//!
//! A session calls [`classify`] with a request's arguments. Commands on one key go whole to that
//! key's shard ([`Route::Single`]); `MGET`, `MSET` and the counting commands (`DEL`, `UNLINK`,
//! `EXISTS`, `TOUCH`) are split into one sub-request per shard and their replies merged
//! ([`Route::Multi`]); `DBSIZE`, `KEYS`, `FLUSHALL`, `PUBSUB NUMSUB`... go to every shard and
//! their replies are merged ([`Route::Fanout`]); other multi-key commands (MSETNX, RENAME,
//! SINTER, EVAL...) go whole to their keys' slot when they share one, as Redis Cluster requires
//! ([`Route::SameSlot`]); blocking commands go to a connection pinned to the client
//! ([`Route::Blocking`]); connection, transaction and subscribe commands are the session's
//! own ([`Route::Local`]). Commands that cannot work through a sharding proxy are refused with
//! a reason. The table is in `command/table.rs`; a command it does not name is routed by what
//! the upstream's `COMMAND` says of it (`learned.rs`): its key specs, arity and subcommands. Unknown commands and wrong
//! argument counts get redis-server's exact error texts. The embedded backend's store reuses
//! the name lookup and error formatters.
//!
//! Arity follows redis-server's convention: a positive arity is the exact argument count, the
//! command name included; a negative one is a minimum of its absolute value.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use crate::keys::{Keys, LearnedKeys};

mod table;

use table::*;

/// How the proxy handles one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Forward the whole request to the shard owning the key at argument index `key`.
    Single { key: usize },
    /// Keys sit at argument indexes `first`, `first + step`, ... to the end of the arguments
    /// (for `MSET`, each key's value follows it); split by shard and merge the replies.
    Multi {
        first: usize,
        step: usize,
        kind: MultiKind,
    },
    /// Several keys that must share one hash slot: forwarded whole to it, or refused with
    /// `CROSSSLOT` (see [`Keys`]).
    SameSlot(Keys),
    /// A command that may block (BLPOP, BLMOVE, XREAD BLOCK...): sent on a connection pinned
    /// to the client, whose keys must share a slot (see `session/pinned.rs`).
    Blocking(Keys),
    /// `SCAN`: one shard at a time, the cursor rewritten to walk them all (see `scan.rs`).
    Scan,
    /// The proxy answers itself.
    Local(LocalCmd),
    /// Send to every shard and combine the replies.
    Fanout(FanoutCmd),
}

/// How the replies of a split multi-key command are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MultiKind {
    /// `MGET`: one value per key, put back in the client's key order.
    Mget,
    /// `MSET` (and FLUSHDB, CONFIG SET, SCRIPT FLUSH...): every shard replies `+OK`; the
    /// client gets one `+OK`.
    Mset,
    /// `DEL`, `UNLINK`, `EXISTS`, `TOUCH`, `DBSIZE`: the integer replies are summed.
    SumIntegers,
    /// `KEYS`: the array replies, concatenated.
    Concat,
    /// `TIME`, `CONFIG GET`, `SCRIPT LOAD`: the first shard's reply.
    First,
    /// `RANDOMKEY`: the first reply that is not nil.
    FirstNonNil,
    /// `SCRIPT EXISTS`: arrays of `:0`/`:1`, `:1` where every shard has `:1`.
    AllOf,
    /// `PUBSUB NUMSUB`: `[channel, count, ...]` from every shard, the counts added up.
    SumPairs,
}

/// A command the proxy answers without an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalCmd {
    /// `PING [message]`
    Ping,
    /// `ECHO message`
    Echo,
    /// `QUIT`: reply `+OK`, then close.
    Quit,
    /// `COMMAND [subcommand ...]`
    Command,
    /// `SELECT index`: only database 0 exists behind a sharding proxy.
    Select,
    /// `HELLO [protover ...]`
    Hello,
    /// `CLIENT subcommand ...`
    Client,
    /// `INFO [section ...]`
    Info,
    /// `AUTH [username] password`
    Auth,
    /// `ACL WHOAMI` (the users are the proxy's own, `--user`)
    Acl,
    /// `RESET`: the connection's state back to a new connection's.
    Reset,
    /// `SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE` and their UNSUBSCRIBEs: the session enters
    /// subscribed mode (see `session/pubsub.rs`).
    Subscribe,
    /// `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`: the session's transaction state (see
    /// `session/pinned.rs`, which handles them before routing).
    Transaction,
}

/// A command sent to every shard (every master in a cluster), or to the first, with its
/// replies combined (see [`fanout_plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FanoutCmd {
    /// `DBSIZE`: the counts summed.
    Dbsize,
    /// `FLUSHDB`, `FLUSHALL`: `+OK` once every shard has.
    Flush,
    /// `KEYS pattern`: every shard's keys, one list.
    Keys,
    /// `RANDOMKEY`: the first shard's key that is not nil.
    Randomkey,
    /// `TIME`: the first shard's clock.
    Time,
    /// `CONFIG GET` (the first shard), `SET`, `RESETSTAT`, `REWRITE` (every shard).
    Config,
    /// `SCRIPT LOAD`, `FLUSH`, `EXISTS`: on every shard, so EVALSHA works wherever it lands.
    Script,
    /// `FUNCTION LOAD`, `FLUSH`, `DELETE`: on every shard, so FCALL works wherever it lands.
    Function,
    /// `PUBSUB CHANNELS` (every shard's, concatenated), `NUMSUB` (summed per channel),
    /// `NUMPAT` (the first shard's: the proxy subscribes a pattern on every shard); and their
    /// `SHARD` forms.
    Pubsub,
}

/// Which shards a fan-out goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Targets {
    /// Every shard (every master).
    All,
    /// The first shard only (a read whose answer every shard shares, such as CONFIG GET).
    First,
}

/// Where a fan-out goes and how its replies are merged, by its subcommand where it has one.
///
/// # Errors
/// The proxy's refusal for a subcommand it does not fan out (`CONFIG HELP`, `SCRIPT KILL`...).
pub(crate) fn fanout_plan(cmd: FanoutCmd, args: &[&[u8]]) -> Result<(MultiKind, Targets), String> {
    let sub = args
        .get(1)
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    let refuse = |name: &str| {
        let sub = sanitize(args.get(1).copied().unwrap_or_default()).to_ascii_lowercase();
        Err(unsupported(&format!("{name}|{sub}"), PER_SERVER))
    };
    Ok(match cmd {
        FanoutCmd::Dbsize => (MultiKind::SumIntegers, Targets::All),
        FanoutCmd::Flush => (MultiKind::Mset, Targets::All),
        FanoutCmd::Keys => (MultiKind::Concat, Targets::All),
        FanoutCmd::Randomkey => (MultiKind::FirstNonNil, Targets::All),
        FanoutCmd::Time => (MultiKind::First, Targets::First),
        FanoutCmd::Config => match &sub[..] {
            b"get" => (MultiKind::First, Targets::First),
            b"set" | b"resetstat" | b"rewrite" => (MultiKind::Mset, Targets::All),
            _ => return refuse("config"),
        },
        FanoutCmd::Script => match &sub[..] {
            b"load" => (MultiKind::First, Targets::All),
            b"flush" => (MultiKind::Mset, Targets::All),
            b"exists" => (MultiKind::AllOf, Targets::All),
            _ => return refuse("script"),
        },
        FanoutCmd::Pubsub => match &sub[..] {
            b"channels" | b"shardchannels" => (MultiKind::Concat, Targets::All),
            b"numsub" | b"shardnumsub" => (MultiKind::SumPairs, Targets::All),
            b"numpat" => (MultiKind::First, Targets::First),
            _ => return refuse("pubsub"),
        },
        FanoutCmd::Function => match &sub[..] {
            b"load" => (MultiKind::First, Targets::All),
            b"flush" | b"delete" => (MultiKind::Mset, Targets::All),
            _ => return refuse("function"),
        },
    })
}

/// The longest command name looked up; longer names are unknown commands.
const MAX_NAME_LEN: usize = 32;

/// A command name folded to ASCII lowercase on the stack, for lookups without allocation.
pub(crate) struct CommandName {
    folded: [u8; MAX_NAME_LEN],
    len: usize,
}

impl CommandName {
    /// Folds `name`; `None` if it is longer than any known command (32 bytes).
    pub(crate) fn new(name: &[u8]) -> Option<Self> {
        let mut folded = [0u8; MAX_NAME_LEN];
        folded.get_mut(..name.len())?.copy_from_slice(name);
        folded.make_ascii_lowercase();
        Some(CommandName {
            folded,
            len: name.len(),
        })
    }

    /// The lowercase name.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.folded[..self.len]
    }
}

/// Decides how the proxy handles the request `args` (command name first).
///
/// # Errors
/// The full error text for the client, without the leading `-`: redis-server's unknown-command
/// and wrong-arity errors, or `ERR command 'keys' is not supported by this proxy: <reason>`.
pub(crate) fn classify(args: &[&[u8]]) -> Result<Route, String> {
    let Some(spec) = args.first().and_then(|name| lookup(name)) else {
        return learned_route(args);
    };
    match spec.plan {
        Plan::Unsupported(reason) => Err(unsupported(spec.name, reason)),
        _ if !arity_ok(spec, args) => Err(wrong_arity(spec.name)),
        Plan::Route(route) => Ok(route),
    }
}

/// Routes a command the proxy's own table does not name by what the upstream's `COMMAND`
/// says of it (see `learned.rs`): by its keys, which must share a slot; a command without
/// keys goes to the first shard unless it writes or administers (it could not be known which
/// shard it means). Pub/sub commands need a subscriber connection and are refused.
fn learned_route(args: &[&[u8]]) -> Result<Route, String> {
    let Some(table) = crate::learned::table() else {
        return Err(unknown_command(args));
    };
    let Some(command) = table.lookup(args)? else {
        return Err(unknown_command(args));
    };
    if !arity_matches(command.arity, args.len()) {
        return Err(wrong_arity(&command.name));
    }
    let flags = command.flags();
    if flags.pubsub {
        return Err(unsupported(&command.name, PUBSUB));
    }
    // XREAD and XREADGROUP block only with BLOCK; other commands flagged blocking always may.
    let blocks =
        flags.blocking && (!command.name.starts_with("xread") || xread_block(args).is_some());
    let keys = Keys::Learned(LearnedKeys(command));
    if blocks {
        return Ok(Route::Blocking(keys));
    }
    let keyless = command.positions(args).is_some_and(|keys| keys.is_empty());
    if keyless && (flags.write || flags.admin) {
        return Err(unsupported(&command.name, NO_KEY));
    }
    Ok(Route::SameSlot(keys))
}

/// The argument of XREAD's or XREADGROUP's `BLOCK` option, looked for among the options
/// before `STREAMS` (so a group, consumer or stream named "block" is not taken for it).
pub(crate) fn xread_block<'a>(args: &[&'a [u8]]) -> Option<&'a [u8]> {
    let mut i = 1;
    while let Some(option) = args.get(i) {
        let option = option.to_ascii_lowercase();
        match &option[..] {
            b"streams" => return None,
            b"block" => return args.get(i + 1).copied(),
            b"group" => i += 3,
            b"count" => i += 2,
            _ => i += 1, // NOACK, or an unknown option the upstream will refuse
        }
    }
    None
}

/// Whether `name` (any case) is a command: in the proxy's table or the upstream's `COMMAND`
/// (what per-command counters may be kept for, so random names cannot grow them).
pub(crate) fn is_known(name: &CommandName) -> bool {
    index().get(name.as_bytes()).is_some()
        || crate::learned::table().is_some_and(|t| t.get(name.as_bytes()).is_some())
}

/// Whether the proxy refuses the command `name` (lowercase) whatever its arguments: its own
/// table's refusals, and learned pub/sub commands.
pub(crate) fn refused(name: &str) -> bool {
    match lookup(name.as_bytes()) {
        Some(spec) => matches!(spec.plan, Plan::Unsupported(_)),
        None => crate::learned::table()
            .and_then(|t| t.get(name.as_bytes()))
            .is_some_and(|c| c.flags().pubsub),
    }
}

/// `COMMAND GETKEYS`: the argument indexes of the keys of the request `args`, found as the
/// proxy routes it.
///
/// # Errors
/// redis-server's texts: an unknown command, a wrong argument count, a command without
/// keys, or arguments whose keys cannot be found.
pub(crate) fn key_positions(args: &[&[u8]]) -> Result<Vec<usize>, &'static str> {
    let route = classify(args).map_err(|text| {
        if text.starts_with("ERR wrong number") {
            "ERR Invalid number of arguments specified for command"
        } else {
            "ERR Invalid command specified"
        }
    })?;
    let keys = match route {
        Route::Single { key } => Some(vec![key]),
        Route::Multi { first, step, .. } => Some((first..args.len()).step_by(step).collect()),
        Route::SameSlot(keys) | Route::Blocking(keys) => keys.positions(args),
        Route::Scan | Route::Local(_) | Route::Fanout(_) => Some(Vec::new()),
    };
    match keys {
        None => Err("ERR Invalid arguments specified for command"),
        Some(keys) if keys.is_empty() => Err("ERR The command has no key arguments"),
        Some(keys) => Ok(keys),
    }
}

/// What `COMMAND INFO` says of a command the proxy serves: its name, redis arity and key
/// positions (first, last — negative counts from the end — and step; all 0 without keys).
pub(crate) struct CommandInfo {
    pub(crate) name: &'static str,
    pub(crate) arity: i32,
    pub(crate) keys: (i64, i64, i64),
}

/// Every command the proxy serves (routes, splits or answers itself), in name order; refused
/// commands are left out, as a client library should not count on them.
pub(crate) fn served() -> impl Iterator<Item = CommandInfo> {
    COMMANDS.iter().filter_map(info_of)
}

/// `COMMAND INFO` for `name` (any case): `None` if unknown or refused.
pub(crate) fn info(name: &[u8]) -> Option<CommandInfo> {
    lookup(name).and_then(info_of)
}

fn info_of(spec: &'static Spec) -> Option<CommandInfo> {
    let keys = match spec.plan {
        Plan::Unsupported(_) => return None,
        Plan::Route(Route::Single { key }) => (key as i64, key as i64, 1),
        Plan::Route(Route::Multi { first, step, .. }) => (first as i64, -1, step as i64),
        Plan::Route(Route::SameSlot(keys) | Route::Blocking(keys)) => keys.info(),
        Plan::Route(Route::Local(_) | Route::Fanout(_) | Route::Scan) => (0, 0, 0),
    };
    Some(CommandInfo {
        name: spec.name,
        arity: spec.arity,
        keys,
    })
}

/// The table entry for `name` (any case): one hash and one comparison, on every request.
fn lookup(name: &[u8]) -> Option<&'static Spec> {
    let name = CommandName::new(name)?;
    index().get(name.as_bytes()).map(|&i| &COMMANDS[i])
}

/// The table's positions by lowercase name.
fn index() -> &'static HashMap<&'static [u8], usize, BuildHasherDefault<Fnv>> {
    static INDEX: OnceLock<HashMap<&'static [u8], usize, BuildHasherDefault<Fnv>>> =
        OnceLock::new();
    INDEX.get_or_init(|| {
        COMMANDS
            .iter()
            .enumerate()
            .map(|(i, spec)| (spec.name.as_bytes(), i))
            .collect()
    })
}

/// FNV-1a: a fast hash for short, trusted-length keys such as command names (the table is
/// fixed, so hash flooding cannot grow anything).
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x100_0000_01b3);
        }
        self.0 = hash;
    }
}

/// The redis arity, plus the argument shapes redis-server checks in the command itself.
fn arity_ok(spec: &Spec, args: &[&[u8]]) -> bool {
    arity_matches(spec.arity, args.len())
        && match spec.plan {
            Plan::Route(
                Route::Multi { first, step, .. }
                | Route::SameSlot(Keys::Range {
                    first,
                    last: -1,
                    step,
                }),
            ) => args
                .get(first..)
                .is_some_and(|keys| keys.chunks_exact(step).remainder().is_empty()),
            Plan::Route(Route::Local(LocalCmd::Ping)) => args.len() <= 2,
            _ => true,
        }
}

/// Whether `argc` arguments (the command name included) satisfy a redis `arity`: exactly
/// `arity` if positive, at least `-arity` if negative.
pub(crate) fn arity_matches(arity: i32, argc: usize) -> bool {
    let wanted = arity.unsigned_abs() as usize;
    if arity < 0 {
        argc >= wanted
    } else {
        argc == wanted
    }
}

/// redis-server's wrong-arity error for the lowercase command `name`.
pub(crate) fn wrong_arity(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}

fn unsupported(name: &str, reason: &str) -> String {
    format!("ERR command '{name}' is not supported by this proxy: {reason}")
}

/// How much of a name, and of the argument list, redis-server quotes in an unknown-command error.
const QUOTE_LIMIT: usize = 128;

/// redis-server's (7.x) unknown-command error for `args`, e.g.
/// `ERR unknown command 'foo', with args beginning with: 'a' 'b' `: the name cut to 128 bytes,
/// then arguments, each quoted and followed by a space, while the list is under 128 bytes,
/// the last one cut to fit. Bytes are shown through [`sanitize`].
pub(crate) fn unknown_command(args: &[&[u8]]) -> String {
    let name = args.first().copied().unwrap_or_default();
    let mut listed = String::new();
    for arg in args.iter().skip(1) {
        if listed.len() >= QUOTE_LIMIT {
            break;
        }
        let shown = &arg[..arg.len().min(QUOTE_LIMIT - listed.len())];
        listed.push('\'');
        listed.push_str(&sanitize(shown));
        listed.push_str("' ");
    }
    let name = sanitize(&name[..name.len().min(QUOTE_LIMIT)]);
    format!("ERR unknown command '{name}', with args beginning with: {listed}")
}

/// Client bytes made safe for an error line, one char per byte: printable ASCII is kept, CR
/// and LF become spaces (as redis-server does), any other byte becomes `?`.
pub(crate) fn sanitize(bytes: &[u8]) -> String {
    let shown = |&b: &u8| match b {
        b' '..=b'~' => char::from(b),
        b'\r' | b'\n' => ' ',
        _ => '?',
    };
    bytes.iter().map(shown).collect()
}

#[cfg(test)]
mod tests;
