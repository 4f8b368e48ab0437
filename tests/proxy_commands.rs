//! db-proxy routes commands its own code never names by what the upstream's `COMMAND` says of
//! them (key specs, arity, subcommands), in front of two real redis-servers.
//!
//! Needs redis-server installed (`apt-get install -y redis-server redis-tools`).

mod support;

use support::{key_on, two_shards, Reply};

#[test]
fn commands_the_proxy_never_names_are_routed_by_their_key_specs() {
    let (servers, proxy) = two_shards();
    let mut conn = proxy.conn();
    for (shard, server) in servers.iter().enumerate() {
        let key = key_on(shard, "str");
        let mut direct = server.conn();
        assert_eq!(conn.cmd(&["SET", &key, "ohmytext"]), Reply::ok());
        // LCS (7.0) with both keys on one slot; EXPIRETIME (7.0); OBJECT ENCODING (a
        // subcommand, key at index 2).
        let tagged = format!("{{{key}}}:other");
        assert_eq!(conn.cmd(&["SET", &tagged, "mynewtext"]), Reply::ok());
        assert_eq!(conn.cmd(&["LCS", &key, &tagged]), Reply::bulk("mytext"));
        assert_eq!(conn.cmd(&["EXPIRETIME", &key]), Reply::Integer(-1));
        assert_eq!(
            conn.cmd(&["OBJECT", "ENCODING", &key]),
            direct.cmd(&["OBJECT", "ENCODING", &key])
        );
        // HSCAN, BITFIELD, GEOADD/GEOSEARCH, XGROUP CREATE, XINFO STREAM: on the key's shard.
        let hash = key_on(shard, "hash");
        assert_eq!(conn.cmd(&["HSET", &hash, "f", "v"]), Reply::Integer(1));
        assert_eq!(
            conn.cmd(&["HSCAN", &hash, "0"]),
            Reply::Array(Some(vec![
                Reply::bulk("0"),
                Reply::Array(Some(vec![Reply::bulk("f"), Reply::bulk("v")]))
            ]))
        );
        let bits = key_on(shard, "bits");
        assert_eq!(
            conn.cmd(&["BITFIELD", &bits, "INCRBY", "u8", "0", "7"]),
            Reply::Array(Some(vec![Reply::Integer(7)]))
        );
        let stream = key_on(shard, "stream");
        assert_eq!(
            conn.cmd(&["XGROUP", "CREATE", &stream, "g", "$", "MKSTREAM"]),
            Reply::ok()
        );
        assert_eq!(direct.cmd(&["EXISTS", &stream]), Reply::Integer(1));
        assert_eq!(direct.cmd(&["EXISTS", &bits]), Reply::Integer(1));
        assert_eq!(direct.cmd(&["EXISTS", &hash]), Reply::Integer(1));
        // DUMP and RESTORE carry a value between keys.
        let Reply::Bulk(Some(dump)) = conn.cmd(&["DUMP", &key]) else {
            panic!("DUMP")
        };
        let copy = key_on(1 - shard, "copy");
        let restore = [
            b"RESTORE".to_vec(),
            copy.as_bytes().to_vec(),
            b"0".to_vec(),
            dump,
        ];
        conn.send_raw(&support::encode_bytes(&restore));
        assert_eq!(conn.read_reply(), Reply::ok());
        assert_eq!(conn.cmd(&["GET", &copy]), Reply::bulk("ohmytext"));
    }
    // Keys across shards: CROSSSLOT, as Redis Cluster answers.
    let (a, b) = (key_on(0, "x"), key_on(1, "x"));
    assert_eq!(
        conn.cmd(&["LCS", &a, &b]).error_text(),
        "CROSSSLOT Keys in request don't hash to the same slot"
    );
}

#[test]
fn errors_match_redis_server_and_command_getkeys_matches_it() {
    let (servers, proxy) = two_shards();
    let mut conn = proxy.conn();
    let mut direct = servers[0].conn();
    // Errors from the learned table, and those the proxy makes itself where redis-server has
    // one: the same bytes.
    for args in [
        &["OBJECT", "NOSUCH"][..],
        &["OBJECT", "ENCODING"],
        &["LCS", "a"],
        &["EXPIRETIME"],
        &["XINFO", "STREAM"],
        &["NOSUCH", "a", "b"],
        &["GET"],
        &["PING", "a", "b"],
        &["ECHO"],
        &["SELECT", "x"],
        &["SELECT", "-1"],
        &["CLIENT", "NOSUCH"],
        &["CLIENT", "SETNAME", "a b"],
        &["COMMAND", "NOSUCH"],
        &["HELLO", "4"],
        &["HELLO", "x"],
        &["HELLO", "3", "BOGUS"],
        &["AUTH", "x"],
        &["AUTH", "u", "p"],
        &["AUTH", "a", "b", "c"],
        &["MULTI", "x"],
        &["EXEC"],
        &["DISCARD"],
        &["WATCH"],
        &["UNSUBSCRIBE"],
        &["MSET", "a"],
        &["MSET", "a", "1", "b"],
        &["DEL"],
        &["EVAL", "return 1", "x"],
        &["SCAN"],
        &["SCAN", "x"],
        &["CONFIG", "GET"],
        &["DBSIZE", "x"],
        &["KEYS"],
    ] {
        assert_eq!(conn.cmd(args), direct.cmd(args), "{args:?}");
    }
    // GETKEYS through the proxy (its own key finding) and straight from redis agree.
    for args in [
        &["GET", "k"][..],
        &["LCS", "a", "b"],
        &["XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0"],
        &["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s1", ">"],
        &["EVAL", "return 1", "2", "k1", "k2", "arg"],
        &["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"],
        &["MSET", "a", "1", "b", "2"],
        &[
            "GEOSEARCHSTORE",
            "dst",
            "src",
            "FROMLONLAT",
            "0",
            "0",
            "BYRADIUS",
            "1",
            "km",
        ],
        &["BITOP", "AND", "d", "x", "y"],
        &["OBJECT", "ENCODING", "k"],
        &["SORT_RO", "k"],
        &["LMPOP", "2", "a", "b", "LEFT"],
    ] {
        let mut getkeys = vec!["COMMAND", "GETKEYS"];
        getkeys.extend_from_slice(args);
        assert_eq!(conn.cmd(&getkeys), direct.cmd(&getkeys), "{args:?}");
    }
    for args in [
        &["COMMAND", "GETKEYS", "PING"][..],
        &["COMMAND", "GETKEYS", "ECHO", "x"],
        &["COMMAND", "GETKEYS", "NOSUCH", "x"],
        &["COMMAND", "GETKEYS", "GET", "a", "b"],
    ] {
        assert_eq!(conn.cmd(args), direct.cmd(args), "{args:?}");
    }
    // COMMAND INFO is the upstream's own entry (key specs included) for what is served, and
    // null for what the proxy refuses.
    let info = conn.cmd(&["COMMAND", "INFO", "lcs", "monitor"]);
    let direct_lcs = direct.cmd(&["COMMAND", "INFO", "lcs"]);
    let Reply::Array(Some(entries)) = info else {
        panic!("{info:?}")
    };
    assert_eq!(Reply::Array(Some(vec![entries[0].clone()])), direct_lcs);
    assert_eq!(entries[1], Reply::Bulk(None));
    let Reply::Integer(count) = conn.cmd(&["COMMAND", "COUNT"]) else {
        panic!()
    };
    assert!(count > 150, "{count}");
    // A keyless write could mean any shard: refused with a reason.
    let refused = conn.cmd(&["PFSELFTEST"]);
    assert!(
        refused.error_text().contains("not supported by this proxy"),
        "{refused:?}"
    );
    assert!(proxy.stderr().contains("by the key specs of"));
}
