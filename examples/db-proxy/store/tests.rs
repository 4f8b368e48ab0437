//! Unit tests of the embedded store: replies and errors as redis-server gives them, expiry.

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
