//! Unit tests of the command table: routes, arities, refusals and redis-server's error texts.

use super::*;

fn words(line: &str) -> Vec<&[u8]> {
    line.split(' ').map(str::as_bytes).collect()
}

fn classify_line(line: &str) -> Result<Route, String> {
    classify(&words(line))
}

#[test]
fn the_table_is_sorted_lowercase_and_unique() {
    for pair in COMMANDS.windows(2) {
        assert!(
            pair[0].name < pair[1].name,
            "{} before {}",
            pair[0].name,
            pair[1].name
        );
    }
    for spec in COMMANDS {
        assert!(spec.name.len() <= MAX_NAME_LEN);
        assert!(spec
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_'));
        assert!(lookup(spec.name.to_ascii_uppercase().as_bytes()).is_some());
    }
}

#[test]
fn names_fold_to_lowercase_on_the_stack() {
    let name = CommandName::new(b"GeTdEl").expect("short name");
    assert_eq!(name.as_bytes(), b"getdel");
    assert!(CommandName::new(&[b'a'; 32]).is_some());
    assert!(CommandName::new(&[b'a'; 33]).is_none());
    assert!(CommandName::new(b"").is_some_and(|n| n.as_bytes().is_empty()));
}

#[test]
fn single_key_commands_route_to_their_key() {
    let lines = [
        "GET k",
        "get k",
        "SET k v EX 10",
        "HSET h f v f2 v2",
        "LPUSH l a b c",
        "ZADD z 1 m",
        "SADD s m",
        "EXPIRE k 10 NX",
        "PFADD hll a b",
        "XADD s * f v",
        "INCRBYFLOAT k 1.5",
        "LINSERT l BEFORE a b",
    ];
    for line in lines {
        assert_eq!(classify_line(line), Ok(Route::Single { key: 1 }), "{line}");
    }
}

#[test]
fn multi_key_commands_split_by_key() {
    let sum = |first| Route::Multi {
        first,
        step: 1,
        kind: MultiKind::SumIntegers,
    };
    for line in ["DEL a", "UNLINK a b", "EXISTS a a", "TOUCH a b c"] {
        assert_eq!(classify_line(line), Ok(sum(1)), "{line}");
    }
    let mget = Route::Multi {
        first: 1,
        step: 1,
        kind: MultiKind::Mget,
    };
    assert_eq!(classify_line("MGET a b c"), Ok(mget));
    let mset = Route::Multi {
        first: 1,
        step: 2,
        kind: MultiKind::Mset,
    };
    assert_eq!(classify_line("MSET a 1 b 2"), Ok(mset));
}

#[test]
fn connection_commands_are_local_and_dbsize_fans_out() {
    let local = [
        ("PING", LocalCmd::Ping),
        ("PING hi", LocalCmd::Ping),
        ("ECHO hi", LocalCmd::Echo),
        ("QUIT", LocalCmd::Quit),
        ("COMMAND DOCS", LocalCmd::Command),
        ("SELECT 0", LocalCmd::Select),
        ("HELLO 2", LocalCmd::Hello),
        ("CLIENT SETNAME x", LocalCmd::Client),
        ("INFO", LocalCmd::Info),
        ("AUTH pw", LocalCmd::Auth),
    ];
    for (line, cmd) in local {
        assert_eq!(classify_line(line), Ok(Route::Local(cmd)), "{line}");
    }
    assert_eq!(
        classify_line("DBSIZE"),
        Ok(Route::Fanout(FanoutCmd::Dbsize))
    );
}

#[test]
fn wrong_arity_uses_the_lowercase_name() {
    let lines = [
        ("GET", "get"),
        ("get a b", "get"),
        ("SET k", "set"),
        ("MSET a", "mset"),
        ("MSET a 1 b", "mset"),
        ("MGET", "mget"),
        ("DEL", "del"),
        ("DBSIZE x", "dbsize"),
        ("PING a b", "ping"),
        ("ECHO", "echo"),
        ("SELECT", "select"),
        ("CLIENT", "client"),
        ("PFCOUNT", "pfcount"),
        ("LINSERT l BEFORE a", "linsert"),
    ];
    for (line, name) in lines {
        let text = format!("ERR wrong number of arguments for '{name}' command");
        assert_eq!(classify_line(line), Err(text), "{line}");
    }
}

#[test]
fn unsupported_commands_say_why() {
    let cases = [
        ("WAIT 1 0", "wait", WAIT),
        ("SWAPDB 0 1", "swapdb", EVERY_SHARD),
        ("MOVE k 1", "move", ONE_DATABASE),
        ("MONITOR", "monitor", REPLICATION),
        ("BGSAVE", "bgsave", ADMIN),
        ("CLUSTER INFO", "cluster", CLUSTER),
    ];
    for (line, name, reason) in cases {
        let text = format!("ERR command '{name}' is not supported by this proxy: {reason}");
        assert_eq!(classify_line(line), Err(text), "{line}");
    }
    let brief = "WAIT SWAPDB MOVE \
        MONITOR SYNC PSYNC REPLICAOF SLAVEOF \
        SHUTDOWN DEBUG SAVE BGSAVE BGREWRITEAOF LASTSAVE SLOWLOG MIGRATE \
        CLUSTER READONLY READWRITE";
    for name in brief.split_whitespace() {
        let refused = classify(&[name.as_bytes()]).expect_err(name);
        assert!(
            refused.contains("is not supported by this proxy: "),
            "{refused}"
        );
    }
}

#[test]
fn multi_key_commands_keep_their_keys_in_one_slot() {
    for (line, keys) in [
        ("RENAME a b", vec![1, 2]),
        ("MSETNX a 1 b 2", vec![1, 3]),
        ("SINTER a b c", vec![1, 2, 3]),
        ("BITOP AND d a b", vec![2, 3, 4]),
        ("ZUNIONSTORE d 2 a b WEIGHTS 1 2", vec![1, 3, 4]),
        ("EVAL s 1 k arg", vec![3]),
        ("PFCOUNT a b", vec![1, 2]),
    ] {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        let Ok(Route::SameSlot(spec)) = classify(&args) else {
            panic!("{line}: {:?}", classify(&args).err())
        };
        assert_eq!(spec.positions(&args), Some(keys), "{line}");
    }
    let text = "ERR wrong number of arguments for 'msetnx' command";
    assert_eq!(classify_line("MSETNX a 1 b"), Err(text.to_string()));
}

#[test]
fn unknown_commands_quote_their_arguments_like_redis() {
    let text = "ERR unknown command 'foo', with args beginning with: 'a' 'b' ";
    assert_eq!(classify_line("foo a b"), Err(text.to_string()));
    let bare = "ERR unknown command 'FOO', with args beginning with: ";
    assert_eq!(classify_line("FOO"), Err(bare.to_string()));
    assert_eq!(
        classify(&[]),
        Err("ERR unknown command '', with args beginning with: ".into())
    );
    let long = [b'x'; 40];
    assert!(classify(&[&long]).is_err_and(|e| e.contains(&"x".repeat(40))));
}

#[test]
fn unknown_command_errors_are_truncated_and_sanitized() {
    let name = vec![b'n'; 200];
    let (arg1, arg2) = (vec![b'a'; 100], vec![b'b'; 100]);
    let text = unknown_command(&[&name, &arg1, &arg2, b"c"]);
    let expected = format!(
        "ERR unknown command '{}', with args beginning with: '{}' '{}' ",
        "n".repeat(128),
        "a".repeat(100),
        "b".repeat(25)
    );
    assert_eq!(text, expected);
    let text = unknown_command(&[b"f\r\no", b"\x00\xff\tz"]);
    assert_eq!(
        text,
        "ERR unknown command 'f  o', with args beginning with: '???z' "
    );
}

#[test]
fn arity_matches_follows_redis_convention() {
    assert!(arity_matches(2, 2) && !arity_matches(2, 1) && !arity_matches(2, 3));
    assert!(arity_matches(-2, 2) && arity_matches(-2, 9) && !arity_matches(-2, 1));
    assert!(arity_matches(-1, 1));
}

#[test]
fn admin_commands_fan_out_by_subcommand() {
    let plan = |line: &str| {
        let args = words(line);
        let Ok(Route::Fanout(cmd)) = classify(&args) else {
            panic!("{line} is a fan-out")
        };
        fanout_plan(cmd, &args)
    };
    assert_eq!(plan("FLUSHALL"), Ok((MultiKind::Mset, Targets::All)));
    assert_eq!(plan("flushdb ASYNC"), Ok((MultiKind::Mset, Targets::All)));
    assert_eq!(plan("KEYS *"), Ok((MultiKind::Concat, Targets::All)));
    assert_eq!(plan("TIME"), Ok((MultiKind::First, Targets::First)));
    assert_eq!(
        plan("CONFIG GET maxmemory"),
        Ok((MultiKind::First, Targets::First))
    );
    assert_eq!(
        plan("config set maxmemory 1mb"),
        Ok((MultiKind::Mset, Targets::All))
    );
    assert_eq!(
        plan("SCRIPT EXISTS a b"),
        Ok((MultiKind::AllOf, Targets::All))
    );
    assert_eq!(plan("FUNCTION FLUSH"), Ok((MultiKind::Mset, Targets::All)));
    let refused = plan("SCRIPT KILL").unwrap_err();
    assert!(
        refused.starts_with("ERR command 'script|kill' is not supported"),
        "{refused}"
    );
}
