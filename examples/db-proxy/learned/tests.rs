use super::*;

/// RESP2 encoders for hand-written `COMMAND` entries.
fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}
fn int(n: i64) -> String {
    format!(":{n}\r\n")
}
fn arr(items: &[String]) -> String {
    format!("*{}\r\n{}", items.len(), items.concat())
}
fn map(pairs: &[(&str, String)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .flat_map(|(k, v)| [bulk(k), v.clone()])
        .collect();
    arr(&items)
}
fn index(i: i64) -> String {
    map(&[("type", bulk("index")), ("spec", map(&[("index", int(i))]))])
}
fn keyword(k: &str, from: i64) -> String {
    let spec = map(&[("keyword", bulk(k)), ("startfrom", int(from))]);
    map(&[("type", bulk("keyword")), ("spec", spec)])
}
fn range(last: i64, step: i64, limit: i64) -> String {
    let spec = map(&[
        ("lastkey", int(last)),
        ("keystep", int(step)),
        ("limit", int(limit)),
    ]);
    map(&[("type", bulk("range")), ("spec", spec)])
}
fn keynum(idx: i64, first: i64, step: i64) -> String {
    let spec = map(&[
        ("keynumidx", int(idx)),
        ("firstkey", int(first)),
        ("keystep", int(step)),
    ]);
    map(&[("type", bulk("keynum")), ("spec", spec)])
}
fn spec(flags: &[&str], begin: String, find: String) -> String {
    let flags: Vec<String> = flags.iter().map(|f| bulk(f)).collect();
    map(&[
        ("flags", arr(&flags)),
        ("begin_search", begin),
        ("find_keys", find),
    ])
}
fn entry(name: &str, arity: i64, flags: &[&str], specs: &[String], subs: &[String]) -> String {
    let flags: Vec<String> = flags.iter().map(|f| bulk(f)).collect();
    arr(&[
        bulk(name),
        int(arity),
        arr(&flags),
        int(0),
        int(0),
        int(0),
        arr(&[]),
        arr(&[]),
        arr(specs),
        arr(subs),
    ])
}

fn table() -> Table {
    let get = entry(
        "get",
        2,
        &["readonly"],
        &[spec(&["RO"], index(1), range(0, 1, 0))],
        &[],
    );
    // XREAD [COUNT n] [BLOCK ms] STREAMS key... id...: half the arguments after STREAMS.
    let xread = entry(
        "xread",
        -4,
        &["readonly", "blocking"],
        &[spec(&["RO"], keyword("STREAMS", 1), range(-1, 1, 2))],
        &[],
    );
    let eval = entry(
        "eval",
        -3,
        &[],
        &[spec(&[], index(2), keynum(0, 1, 1))],
        &[],
    );
    // MIGRATE host port key|"" db timeout ... KEYS key...: one spec per form, the second
    // searched from the end.
    let migrate = entry(
        "migrate",
        -6,
        &["write"],
        &[
            spec(&["incomplete"], index(3), range(0, 1, 0)),
            spec(&["incomplete"], keyword("KEYS", -2), range(-1, 1, 0)),
        ],
        &[],
    );
    let encoding = entry(
        "object|encoding",
        3,
        &["readonly"],
        &[spec(&["RO"], index(2), range(0, 1, 0))],
        &[],
    );
    let object = entry("object", -2, &[], &[], &[encoding]);
    let publish = entry(
        "publish",
        3,
        &["pubsub"],
        &[spec(&["not_key"], index(1), range(0, 1, 0))],
        &[],
    );
    // A server before 7.0: no key specs, the triple only.
    let old = arr(&[
        bulk("mset"),
        int(-3),
        arr(&[bulk("write")]),
        int(1),
        int(-1),
        int(2),
    ]);
    let reply = arr(&[get, xread, eval, migrate, object, publish, old]);
    Table::parse(reply.as_bytes()).unwrap()
}

fn keys(table: &Table, args: &[&str]) -> Option<Vec<usize>> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    table.lookup(&args).unwrap().unwrap().positions(&args)
}

#[test]
fn keys_are_found_by_each_kind_of_key_spec() {
    let t = table();
    assert_eq!(t.len(), 7);
    assert_eq!(keys(&t, &["GET", "k"]), Some(vec![1]));
    assert_eq!(
        keys(&t, &["XREAD", "COUNT", "2", "STREAMS", "a", "b", "0", "0"]),
        Some(vec![4, 5])
    );
    // No STREAMS keyword: no keys (the upstream reports the syntax error).
    assert_eq!(keys(&t, &["XREAD", "COUNT", "2"]), Some(vec![]));
    assert_eq!(
        keys(&t, &["EVAL", "s", "2", "a", "b", "x"]),
        Some(vec![3, 4])
    );
    assert_eq!(keys(&t, &["EVAL", "s", "0"]), Some(vec![]));
    assert_eq!(keys(&t, &["EVAL", "s", "3", "a"]), None);
    assert_eq!(keys(&t, &["EVAL", "s", "x"]), None);
    let migrate = ["MIGRATE", "h", "6379", "", "0", "5000", "KEYS", "a", "b"];
    assert_eq!(keys(&t, &migrate), Some(vec![3, 7, 8]));
    assert_eq!(
        keys(&t, &["MIGRATE", "h", "6379", "k", "0", "5000"]),
        Some(vec![3])
    );
    assert_eq!(keys(&t, &["OBJECT", "ENCODING", "k"]), Some(vec![2]));
    assert_eq!(keys(&t, &["publish", "ch", "m"]), Some(vec![]));
    assert_eq!(keys(&t, &["MSET", "a", "1", "b", "2"]), Some(vec![1, 3]));
}

#[test]
fn subcommands_flags_and_unknown_names() {
    let t = table();
    let args: Vec<&[u8]> = vec![b"object", b"encoding", b"k"];
    let sub = t.lookup(&args).unwrap().unwrap();
    assert_eq!((sub.name.as_str(), sub.arity), ("object|encoding", 3));
    let args: Vec<&[u8]> = vec![b"OBJECT", b"nope"];
    assert_eq!(
        t.lookup(&args).unwrap_err(),
        "ERR unknown subcommand 'nope'. Try OBJECT HELP."
    );
    assert!(t.lookup(&[b"nosuch"]).unwrap().is_none());
    assert!(t.lookup(&[b"xread"]).unwrap().unwrap().flags().blocking);
    assert!(t.get(b"OBJECT").is_some() && t.get(b"object|encoding").is_none());
    assert!(Table::parse(b"-ERR unknown command 'COMMAND'\r\n").is_err());
    assert!(Table::parse(b"*0\r\n").is_err());
}
