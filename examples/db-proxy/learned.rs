//! Routing learned from the upstream: the `COMMAND` reply of a redis-server, read when the
//! proxy starts, gives every command's arity, flags and key specifications, so a command the
//! upstream knows is forwarded by its keys without an entry in the proxy's own table
//! (`command.rs` keeps only the commands the proxy answers itself, splits, fans out, pins or
//! refuses). A redis release that adds commands needs no new proxy.
//!
//! Keys are found as redis 7.0 finds them (`getKeysUsingKeySpecs` in `src/db.c`; the "key
//! specifications" page of the redis docs): a begin-search step (`index`, or `keyword`
//! searched from a start position) gives the first key, a find-keys step (`range`, or
//! `keynum`: a key count, then the keys) gives the rest. Specs flagged `not_key` are skipped;
//! an `incomplete` or `unknown` spec contributes the keys it finds (none for `unknown`). Servers before 7.0 send no key specs;
//! their first/last/step triple is used instead. Container commands (OBJECT, XGROUP, MEMORY,
//! XINFO...) are looked up by their subcommand, as `object|encoding`.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::command::CommandName;
use crate::control::{Conn, Value};

/// One command (or subcommand) as the upstream describes it.
#[derive(Debug)]
pub(crate) struct Learned {
    /// Lowercase; `container|sub` for a subcommand.
    pub(crate) name: String,
    /// redis arity: exact if positive, a minimum if negative; the name counts.
    pub(crate) arity: i32,
    flags: Flags,
    /// The `COMMAND` triple: first key, last key (negative: from the end), step.
    legacy: (i64, i64, i64),
    specs: Vec<KeySpec>,
    /// Whether the command has subcommands (and is looked up by them).
    container: bool,
    /// The command's whole entry in the `COMMAND` reply, as the upstream sent it.
    pub(crate) raw: Vec<u8>,
}

/// The command flags the proxy acts on.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Flags {
    pub(crate) write: bool,
    pub(crate) admin: bool,
    pub(crate) pubsub: bool,
    pub(crate) blocking: bool,
    pub(crate) readonly: bool,
}

#[derive(Debug, PartialEq)]
enum Begin {
    Index(usize),
    Keyword { keyword: Vec<u8>, startfrom: i64 },
    Unknown,
}

#[derive(Debug, PartialEq)]
enum Find {
    Range {
        lastkey: i64,
        step: usize,
        limit: i64,
    },
    Keynum {
        keynumidx: usize,
        firstkey: usize,
        step: usize,
    },
    Unknown,
}

#[derive(Debug, PartialEq)]
struct KeySpec {
    begin: Begin,
    find: Find,
    not_key: bool,
}

/// Every command the upstream listed, by lowercase name (subcommands as `container|sub`).
#[derive(Debug, Default)]
pub(crate) struct Table {
    commands: HashMap<String, Learned>,
    /// Top-level names in the upstream's order (for `COMMAND` and `COMMAND LIST`).
    order: Vec<String>,
    /// Where it was learned.
    pub(crate) source: String,
}

static TABLE: OnceLock<Table> = OnceLock::new();

/// The learned table, once an upstream has answered `COMMAND`.
pub(crate) fn table() -> Option<&'static Table> {
    TABLE.get()
}

/// Publishes `table` for every core (the first one published stays).
pub(crate) fn publish(table: Table) {
    let _ = TABLE.set(table);
}

/// Learns the table from the first of `addrs` that answers `COMMAND`, logging where from. If
/// none does, the proxy starts with its own table only (unknown commands are refused), and a
/// thread asks again, every 2 s doubling to a minute, until one answers.
pub(crate) fn start(addrs: Vec<SocketAddr>, password: Option<Arc<str>>, timeout: Duration) {
    let attempt = move || {
        let mut errors = Vec::new();
        for &addr in &addrs {
            match fetch(addr, password.as_deref(), timeout) {
                Ok(table) => {
                    eprintln!(
                        "db-proxy: routing {} commands by the key specs of {addr}'s COMMAND",
                        table.len()
                    );
                    publish(table);
                    return None;
                }
                Err(err) => errors.push(format!("{addr}: {err}")),
            }
        }
        Some(errors.join("; "))
    };
    let Some(why) = attempt() else {
        return;
    };
    eprintln!(
        "db-proxy: no upstream answered COMMAND ({why}); commands outside the proxy's own \
         table are refused until one does"
    );
    let retry = move || {
        let mut pause = Duration::from_secs(2);
        while attempt().is_some() {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(60));
        }
    };
    let spawned = std::thread::Builder::new()
        .name("db-proxy-command".into())
        .spawn(retry);
    if let Err(err) = spawned {
        eprintln!("db-proxy: cannot start the COMMAND retry thread: {err}");
    }
}

/// Asks `addr` for `COMMAND` (after `AUTH` when a password is given) and parses the reply.
///
/// # Errors
/// The connection's error, a refused AUTH, or a reply that is not a command list.
pub(crate) fn fetch(
    addr: SocketAddr,
    password: Option<&str>,
    timeout: Duration,
) -> io::Result<Table> {
    let mut conn = Conn::open(addr, timeout)?;
    if let Some(password) = password {
        if let Value::Error(e) = conn.call(&[b"AUTH", password.as_bytes()])? {
            return Err(io::Error::other(format!("AUTH: {e}")));
        }
    }
    let raw = conn.call_raw(&[b"COMMAND"])?;
    let mut table = Table::parse(&raw).map_err(io::Error::other)?;
    table.source = addr.to_string();
    Ok(table)
}

impl Table {
    /// Parses a whole `COMMAND` reply (RESP2).
    ///
    /// # Errors
    /// An error reply, or a reply that is not an array of command entries.
    pub(crate) fn parse(raw: &[u8]) -> Result<Table, String> {
        let entries = split_array(raw).ok_or_else(|| {
            let line = raw.split(|&b| b == b'\r').next().unwrap_or_default();
            format!("COMMAND: {}", String::from_utf8_lossy(line))
        })?;
        let mut table = Table::default();
        for entry in entries {
            let value = Value::parse(entry).0;
            let Some(mut learned) = Learned::from_value(&value, entry) else {
                continue;
            };
            let subs = value.array().and_then(|a| a.get(9)).and_then(Value::array);
            let sub_entries = split_array_at(entry, 9);
            if let (Some(subs), Some(raws)) = (subs, sub_entries) {
                for (sub, raw) in subs.iter().zip(raws) {
                    if let Some(sub) = Learned::from_value(sub, raw) {
                        learned.container = true;
                        table.commands.insert(sub.name.clone(), sub);
                    }
                }
            }
            table.order.push(learned.name.clone());
            table.commands.insert(learned.name.clone(), learned);
        }
        if table.order.is_empty() {
            return Err("COMMAND: no commands in the reply".into());
        }
        Ok(table)
    }

    /// How many top-level commands the upstream listed.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Top-level commands in the upstream's order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Learned> {
        self.order.iter().filter_map(|name| self.commands.get(name))
    }

    /// The command `args` runs: a container's subcommand when it has one (`Err` with
    /// redis-server's error when the subcommand is unknown), `Ok(None)` for a name the
    /// upstream does not know.
    pub(crate) fn lookup(&self, args: &[&[u8]]) -> Result<Option<&Learned>, String> {
        let Some(name) = args.first().and_then(|name| CommandName::new(name)) else {
            return Ok(None);
        };
        let Ok(name) = std::str::from_utf8(name.as_bytes()) else {
            return Ok(None);
        };
        let Some(command) = self.commands.get(name) else {
            return Ok(None);
        };
        if !command.container || args.len() < 2 {
            return Ok(Some(command));
        }
        let sub = String::from_utf8_lossy(args[1]).to_ascii_lowercase();
        match self.commands.get(&format!("{name}|{sub}")) {
            Some(sub) => Ok(Some(sub)),
            None => Err(format!(
                "ERR unknown subcommand '{}'. Try {} HELP.",
                crate::command::sanitize(&args[1][..args[1].len().min(128)]),
                name.to_ascii_uppercase()
            )),
        }
    }

    /// The entry for `COMMAND INFO name` (a top-level name, any case).
    pub(crate) fn get(&self, name: &[u8]) -> Option<&Learned> {
        let name = CommandName::new(name)?;
        let name = std::str::from_utf8(name.as_bytes()).ok()?;
        self.commands.get(name).filter(|c| !c.name.contains('|'))
    }
}

impl Learned {
    /// One entry of `COMMAND`: name, arity, flags, first key, last key, step, ACL categories,
    /// tips, key specs, subcommands (redis 7.0; older servers send the first six or seven).
    fn from_value(value: &Value, raw: &[u8]) -> Option<Learned> {
        let fields = value.array()?;
        let name = fields.first()?.text()?.to_ascii_lowercase();
        let arity = i32::try_from(fields.get(1)?.int()?).ok()?;
        let mut flags = Flags::default();
        for flag in fields.get(2).and_then(Value::array).unwrap_or_default() {
            match flag.text().as_deref() {
                Some("write") => flags.write = true,
                Some("admin") => flags.admin = true,
                Some("pubsub") => flags.pubsub = true,
                Some("blocking") => flags.blocking = true,
                Some("readonly") => flags.readonly = true,
                _ => {}
            }
        }
        let int = |i: usize| fields.get(i).and_then(Value::int).unwrap_or(0);
        let specs = fields
            .get(8)
            .and_then(Value::array)
            .unwrap_or_default()
            .iter()
            .map(KeySpec::from_value)
            .collect();
        Some(Learned {
            name,
            arity,
            flags,
            legacy: (int(3), int(4), int(5)),
            specs,
            container: false,
            raw: raw.to_vec(),
        })
    }

    /// The flags the proxy acts on.
    pub(crate) fn flags(&self) -> Flags {
        self.flags
    }

    /// The argument indexes of the keys in `args` (index 0 is the command name); `None` when
    /// the arguments do not fit the key specs (a missing key count, a range past the end):
    /// the upstream then answers with its own error.
    pub(crate) fn positions(&self, args: &[&[u8]]) -> Option<Vec<usize>> {
        if self.specs.is_empty() {
            return legacy_positions(self.legacy, args.len());
        }
        let mut keys = Vec::new();
        for spec in &self.specs {
            if !spec.not_key {
                spec.find(args, &mut keys)?;
            }
        }
        keys.sort_unstable();
        keys.dedup();
        Some(keys)
    }
}

/// Keys by the first/last/step triple (`getKeysUsingLegacyRangeSpec`).
fn legacy_positions((first, last, step): (i64, i64, i64), argc: usize) -> Option<Vec<usize>> {
    if first <= 0 {
        return Some(Vec::new());
    }
    let argc = argc as i64;
    let last = if last >= 0 { last } else { argc + last };
    if last >= argc {
        return None;
    }
    let step = step.max(1) as usize;
    Some(
        (first as usize..=last.max(0) as usize)
            .step_by(step)
            .collect(),
    )
}

impl KeySpec {
    /// One key spec: a flat map of `flags`, `begin_search` and `find_keys`.
    fn from_value(value: &Value) -> KeySpec {
        let not_key = value
            .get("flags")
            .and_then(Value::array)
            .unwrap_or_default()
            .iter()
            .any(|f| f.text().as_deref() == Some("not_key"));
        let part = |name: &str| {
            let part = value.get(name)?;
            Some((part.get("type")?.text()?, part.get("spec")?))
        };
        let int = |spec: &Value, name: &str| spec.get(name).and_then(Value::int);
        let begin = match part("begin_search") {
            Some((kind, spec)) if kind == "index" => int(spec, "index")
                .and_then(|i| usize::try_from(i).ok())
                .map_or(Begin::Unknown, Begin::Index),
            Some((kind, spec)) if kind == "keyword" => {
                match (
                    spec.get("keyword").and_then(Value::text),
                    int(spec, "startfrom"),
                ) {
                    (Some(keyword), Some(startfrom)) => Begin::Keyword {
                        keyword: keyword.into_bytes(),
                        startfrom,
                    },
                    _ => Begin::Unknown,
                }
            }
            _ => Begin::Unknown,
        };
        let find = match part("find_keys") {
            Some((kind, spec)) if kind == "range" => {
                match (
                    int(spec, "lastkey"),
                    int(spec, "keystep"),
                    int(spec, "limit"),
                ) {
                    (Some(lastkey), Some(step), Some(limit)) if step > 0 => Find::Range {
                        lastkey,
                        step: step as usize,
                        limit,
                    },
                    _ => Find::Unknown,
                }
            }
            Some((kind, spec)) if kind == "keynum" => {
                match (
                    int(spec, "keynumidx"),
                    int(spec, "firstkey"),
                    int(spec, "keystep"),
                ) {
                    (Some(idx), Some(first), Some(step)) if idx >= 0 && first >= 0 && step > 0 => {
                        Find::Keynum {
                            keynumidx: idx as usize,
                            firstkey: first as usize,
                            step: step as usize,
                        }
                    }
                    _ => Find::Unknown,
                }
            }
            _ => Find::Unknown,
        };
        KeySpec {
            begin,
            find,
            not_key,
        }
    }

    /// Adds this spec's keys in `args` to `keys`. `None` when the arguments do not fit the
    /// spec (a bad key count, a range out of bounds); a spec of a kind the upstream calls
    /// `unknown` adds nothing.
    fn find(&self, args: &[&[u8]], keys: &mut Vec<usize>) -> Option<()> {
        let argc = args.len() as i64;
        let first = match &self.begin {
            Begin::Index(i) => *i as i64,
            Begin::Keyword { keyword, startfrom } => {
                let found = if *startfrom > 0 {
                    (*startfrom..argc - 1).find(|&i| args[i as usize].eq_ignore_ascii_case(keyword))
                } else {
                    let start = argc + startfrom;
                    (2..=start)
                        .rev()
                        .find(|&i| i < argc && args[i as usize].eq_ignore_ascii_case(keyword))
                };
                match found {
                    Some(i) => i + 1,
                    None => return Some(()), // no such keyword: no keys from this spec
                }
            }
            // Keys this spec cannot describe (SORT's BY and GET patterns): the other specs'
            // keys route the command.
            Begin::Unknown => return Some(()),
        };
        let (first, last, step) = match self.find {
            Find::Range {
                lastkey,
                step,
                limit,
            } => {
                let last = if lastkey >= 0 {
                    first + lastkey
                } else if limit == 0 {
                    argc + lastkey
                } else {
                    first + ((argc - first) / limit + lastkey)
                };
                (first, last, step)
            }
            Find::Keynum {
                keynumidx,
                firstkey,
                step,
            } => {
                let at = first + keynumidx as i64;
                let count: i64 = std::str::from_utf8(args.get(at as usize)?)
                    .ok()?
                    .parse()
                    .ok()?;
                if count < 0 {
                    return None;
                }
                let first = first + firstkey as i64;
                // A huge count cannot fit the arguments: checked, it is out of bounds below.
                let last = (count - 1)
                    .checked_mul(step as i64)
                    .and_then(|span| first.checked_add(span))
                    .unwrap_or(i64::MAX);
                (first, last, step)
            }
            Find::Unknown => return Some(()),
        };
        if last < first {
            return Some(()); // no keys (a key count of 0)
        }
        if last >= argc || first >= argc || first < 1 {
            return None;
        }
        keys.extend((first as usize..=last as usize).step_by(step));
        Some(())
    }
}

/// The byte slices of a RESP2 array's elements (`None` if `raw` is not a complete array).
fn split_array(raw: &[u8]) -> Option<Vec<&[u8]>> {
    let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
    if raw.first() != Some(&b'*') {
        return None;
    }
    let n: usize = std::str::from_utf8(&raw[1..line_end]).ok()?.parse().ok()?;
    let mut pos = line_end + 2;
    let mut items = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let len = crate::resp::scan_reply(&raw[pos..], 16).ok()??;
        items.push(&raw[pos..pos + len]);
        pos += len;
    }
    Some(items)
}

/// The element slices of the array at index `at` of the array `raw`.
fn split_array_at(raw: &[u8], at: usize) -> Option<Vec<&[u8]>> {
    split_array(split_array(raw)?.get(at)?)
}

#[cfg(test)]
mod tests;
