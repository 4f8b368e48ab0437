//! Asking one node for its view of the cluster, on the refresh thread: a blocking connection,
//! `CLUSTER INFO` for the node's epoch, `CLUSTER SHARDS` (`CLUSTER SLOTS` on servers without
//! it) parsed into a [`SlotMap`].

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use super::{number_in, SlotMap, IO_TIMEOUT, NO_NODE, SLOTS};
use crate::control::{Conn, Value};

/// One node's view: `CLUSTER INFO` for its epoch, `CLUSTER SHARDS` (or `CLUSTER SLOTS`).
pub(super) fn fetch_view(
    addr: SocketAddr,
    nodes: &mut Vec<SocketAddr>,
    password: Option<&str>,
) -> io::Result<SlotMap> {
    let mut conn = Conn::open(addr, IO_TIMEOUT)?;
    if let Some(password) = password {
        if let Value::Error(e) = conn.call(&[b"AUTH", password.as_bytes()])? {
            return Err(io::Error::other(format!("AUTH: {e}")));
        }
    }
    let info = match conn.call(&[b"CLUSTER", b"INFO"])? {
        Value::Bulk(Some(text)) => String::from_utf8_lossy(&text).into_owned(),
        other => return Err(io::Error::other(format!("CLUSTER INFO: {other:?}"))),
    };
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    if field("cluster_enabled") == Some("0") {
        return Err(io::Error::other("not a cluster node (cluster_enabled:0)"));
    }
    let epoch = field("cluster_current_epoch")
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    let mut map = SlotMap {
        slots: vec![NO_NODE; SLOTS],
        replicas: HashMap::new(),
        epoch,
        source: addr,
    };
    match conn.call(&[b"CLUSTER", b"SHARDS"])? {
        Value::Array(Some(shards)) => {
            for shard in &shards {
                apply_shard(shard, addr, nodes, &mut map)?;
            }
        }
        Value::Error(_) => {
            let Value::Array(Some(ranges)) = conn.call(&[b"CLUSTER", b"SLOTS"])? else {
                return Err(io::Error::other("CLUSTER SLOTS: not an array"));
            };
            for range in &ranges {
                apply_slots_entry(range, addr, nodes, &mut map)?;
            }
        }
        other => return Err(io::Error::other(format!("CLUSTER SHARDS: {other:?}"))),
    }
    Ok(map)
}

/// One `CLUSTER SHARDS` entry: `slots` (start, end pairs) and `nodes` (maps with `ip`,
/// `endpoint`, `port`, `role`, `health`); its slots go to its master, and its online
/// replicas are recorded.
fn apply_shard(
    shard: &Value,
    asked: SocketAddr,
    nodes: &mut Vec<SocketAddr>,
    map: &mut SlotMap,
) -> io::Result<()> {
    let bad = || io::Error::other("CLUSTER SHARDS: unexpected shape");
    let ranges = shard
        .get("slots")
        .ok_or_else(bad)?
        .array()
        .ok_or_else(bad)?;
    let members = shard
        .get("nodes")
        .ok_or_else(bad)?
        .array()
        .ok_or_else(bad)?;
    // The master, preferring one that is not marked failed.
    let master = members
        .iter()
        .filter(|n| n.get("role").and_then(Value::text).as_deref() == Some("master"))
        .min_by_key(|n| n.get("health").and_then(Value::text).as_deref() == Some("fail"));
    let Some(master) = master else {
        return Ok(()); // a shard without a master serves nothing
    };
    let address = |member: &Value| -> io::Result<SocketAddr> {
        let host = ["ip", "endpoint"]
            .iter()
            .filter_map(|k| member.get(k).and_then(Value::text))
            .find(|h| !h.is_empty() && h != "?");
        let port = member.get("port").and_then(Value::int).ok_or_else(bad)?;
        resolve(host.as_deref(), port, asked)
    };
    let node = number_in(nodes, address(master)?) as u32;
    for pair in ranges.chunks(2) {
        let (Some(start), Some(end)) = (pair[0].int(), pair.get(1).and_then(Value::int)) else {
            return Err(bad());
        };
        fill(&mut map.slots, start, end, node)?;
    }
    let replicas = members.iter().filter(|n| {
        n.get("role").and_then(Value::text).as_deref() == Some("replica")
            && n.get("health").and_then(Value::text).as_deref() == Some("online")
    });
    for replica in replicas {
        let replica = number_in(nodes, address(replica)?) as u32;
        map.replicas.entry(node).or_default().push(replica);
    }
    Ok(())
}

/// One `CLUSTER SLOTS` entry: `[start, end, [ip, port, id, ...], replicas...]`.
fn apply_slots_entry(
    range: &Value,
    asked: SocketAddr,
    nodes: &mut Vec<SocketAddr>,
    map: &mut SlotMap,
) -> io::Result<()> {
    let bad = || io::Error::other("CLUSTER SLOTS: unexpected shape");
    let fields = range.array().ok_or_else(bad)?;
    let (Some(start), Some(end)) = (
        fields.first().and_then(Value::int),
        fields.get(1).and_then(Value::int),
    ) else {
        return Err(bad());
    };
    let mut members = Vec::new();
    for member in &fields[2..] {
        let member = member.array().ok_or_else(bad)?;
        let host = member.first().and_then(Value::text);
        let port = member.get(1).and_then(Value::int).ok_or_else(bad)?;
        members.push(number_in(nodes, resolve(host.as_deref(), port, asked)?) as u32);
    }
    let (&master, replicas) = members.split_first().ok_or_else(bad)?;
    fill(&mut map.slots, start, end, master)?;
    let known = map.replicas.entry(master).or_default();
    for &replica in replicas {
        if !known.contains(&replica) {
            known.push(replica);
        }
    }
    Ok(())
}

fn fill(slots: &mut [u32], start: i64, end: i64, node: u32) -> io::Result<()> {
    let range = usize::try_from(start)
        .ok()
        .zip(usize::try_from(end).ok())
        .filter(|&(s, e)| s <= e && e < SLOTS)
        .ok_or_else(|| io::Error::other(format!("bad slot range {start}-{end}")))?;
    slots[range.0..=range.1].fill(node);
    Ok(())
}

/// A node's address from the host a map names (empty or `?`: the node that was asked).
pub(crate) fn resolve(host: Option<&str>, port: i64, asked: SocketAddr) -> io::Result<SocketAddr> {
    let port = u16::try_from(port).map_err(|_| io::Error::other(format!("bad port {port}")))?;
    match host.filter(|h| !h.is_empty() && *h != "?") {
        None => Ok(SocketAddr::new(asked.ip(), port)),
        Some(host) => (host, port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("{host} resolves to no address"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_shards_and_cluster_slots_replies_become_a_map() {
        // As redis 7.0 answers CLUSTER SHARDS (RESP2), one shard with a replica.
        let shards = b"*1\r\n*4\r\n$5\r\nslots\r\n*4\r\n:0\r\n:99\r\n:200\r\n:200\r\n$5\r\nnodes\r\n*2\r\n\
*10\r\n$2\r\nid\r\n$1\r\na\r\n$4\r\nport\r\n:7001\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*10\r\n$2\r\nid\r\n$1\r\nb\r\n$4\r\nport\r\n:7002\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$6\r\nhealth\r\n$6\r\nonline\r\n";
        let (value, len) = Value::parse(shards);
        assert_eq!(len, shards.len());
        let asked: SocketAddr = "127.0.0.1:7003".parse().unwrap();
        let mut nodes = vec![asked];
        let mut map = SlotMap {
            slots: vec![NO_NODE; SLOTS],
            replicas: HashMap::new(),
            epoch: 0,
            source: asked,
        };
        for shard in value.array().unwrap() {
            apply_shard(shard, asked, &mut nodes, &mut map).unwrap();
        }
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:7001".parse().unwrap(),
            "127.0.0.1:7002".parse().unwrap(),
        );
        assert_eq!(nodes, vec![asked, a, b]);
        let slots = &map.slots;
        assert!(slots[..100].iter().all(|&n| n == 1));
        assert_eq!((slots[100], slots[200], slots[201]), (NO_NODE, 1, NO_NODE));
        assert_eq!(map.replicas_of(1), &[2]);

        let entry = b"*1\r\n*4\r\n:5\r\n:9\r\n*3\r\n$0\r\n\r\n:7005\r\n$1\r\nc\r\n*3\r\n$9\r\n127.0.0.1\r\n:7006\r\n$1\r\nd\r\n";
        let (value, _) = Value::parse(entry);
        for range in value.array().unwrap() {
            apply_slots_entry(range, asked, &mut nodes, &mut map).unwrap();
        }
        // An empty host is the node that was asked.
        assert_eq!(nodes[3], "127.0.0.1:7005".parse().unwrap());
        assert!(map.slots[5..=9].iter().all(|&n| n == 3));
        assert_eq!(map.replicas_of(3), &[4]);
        let bad = Value::parse(b"*3\r\n:9\r\n:5\r\n*2\r\n$1\r\nx\r\n:1\r\n").0;
        assert!(apply_slots_entry(&bad, asked, &mut nodes, &mut map).is_err());
    }
}
