//! The proxy's own command table: every command it answers itself, splits, fans out, pins or
//! refuses (with the reason), with redis-server's arity. Commands it does not name are routed
//! by the upstream's `COMMAND` (`learned.rs`).

use super::{FanoutCmd, LocalCmd, MultiKind, Route};
use crate::keys::Keys;

/// What the proxy does with a known command.
#[derive(Clone, Copy)]
pub(super) enum Plan {
    Route(Route),
    /// Refused with this reason.
    Unsupported(&'static str),
}

/// One known command: its lowercase name, redis arity and plan.
pub(super) struct Spec {
    pub(super) name: &'static str,
    pub(super) arity: i32,
    pub(super) plan: Plan,
}

const fn route(name: &'static str, arity: i32, route: Route) -> Spec {
    let plan = Plan::Route(route);
    Spec { name, arity, plan }
}

const fn key(name: &'static str, arity: i32) -> Spec {
    route(name, arity, Route::Single { key: 1 })
}

const fn multi(name: &'static str, arity: i32, step: usize, kind: MultiKind) -> Spec {
    route(
        name,
        arity,
        Route::Multi {
            first: 1,
            step,
            kind,
        },
    )
}

const fn same_slot(name: &'static str, arity: i32, keys: Keys) -> Spec {
    route(name, arity, Route::SameSlot(keys))
}

/// Keys from `first` to `last` (negative: from the end) every `step` arguments.
const fn range(first: usize, last: i32, step: usize) -> Keys {
    Keys::Range { first, last, step }
}

/// `fixed` keys, then a key count at `count`, then the keys.
const fn counted(fixed: usize, count: usize) -> Keys {
    Keys::Counted { fixed, count }
}

const fn blocking(name: &'static str, arity: i32, keys: Keys) -> Spec {
    route(name, arity, Route::Blocking(keys))
}

const fn no(name: &'static str, reason: &'static str) -> Spec {
    let plan = Plan::Unsupported(reason);
    Spec {
        name,
        arity: -1,
        plan,
    }
}

pub(super) const WAIT: &str =
    "WAIT counts replicas of the writes made on its own connection, and the \
     proxy's writes go over shared ones";
pub(super) const PUBSUB: &str = "a pub/sub command the proxy does not know how to route";
pub(super) const EVERY_SHARD: &str = "it would affect every shard's data";
pub(super) const PER_SERVER: &str =
    "this subcommand is not fanned out; send it to each server directly";
pub(super) const ONE_DATABASE: &str = "only database 0 is served";
pub(super) const REPLICATION: &str =
    "replication and monitoring need a dedicated upstream connection";
pub(super) const ADMIN: &str = "administer each upstream server directly";
pub(super) const CLUSTER: &str = "the proxy is not a Redis Cluster node";
pub(super) const NO_KEY: &str =
    "it has no key to choose a shard by; send it to each server directly";

/// Every known command, sorted by name (looked up through `index` in `command.rs`).
pub(super) static COMMANDS: &[Spec] = &[
    route("acl", -2, Route::Local(LocalCmd::Acl)),
    key("append", 3),
    no("asking", CLUSTER),
    route("auth", -2, Route::Local(LocalCmd::Auth)),
    no("bgrewriteaof", ADMIN),
    no("bgsave", ADMIN),
    key("bitcount", -2),
    same_slot("bitop", -4, range(2, -1, 1)),
    key("bitpos", -3),
    blocking("blmove", 6, range(1, 2, 1)),
    blocking("blmpop", -5, counted(0, 2)),
    blocking("blpop", -3, range(1, -2, 1)),
    blocking("brpop", -3, range(1, -2, 1)),
    blocking("brpoplpush", 4, range(1, 2, 1)),
    blocking("bzmpop", -5, counted(0, 2)),
    blocking("bzpopmax", -3, range(1, -2, 1)),
    blocking("bzpopmin", -3, range(1, -2, 1)),
    route("client", -2, Route::Local(LocalCmd::Client)),
    no("cluster", CLUSTER),
    route("command", -1, Route::Local(LocalCmd::Command)),
    route("config", -2, Route::Fanout(FanoutCmd::Config)),
    same_slot("copy", -3, range(1, 2, 1)),
    route("dbsize", 1, Route::Fanout(FanoutCmd::Dbsize)),
    no("debug", ADMIN),
    key("decr", 2),
    key("decrby", 3),
    multi("del", -2, 1, MultiKind::SumIntegers),
    route("discard", 1, Route::Local(LocalCmd::Transaction)),
    route("echo", 2, Route::Local(LocalCmd::Echo)),
    same_slot("eval", -3, counted(0, 2)),
    same_slot("eval_ro", -3, counted(0, 2)),
    same_slot("evalsha", -3, counted(0, 2)),
    same_slot("evalsha_ro", -3, counted(0, 2)),
    route("exec", 1, Route::Local(LocalCmd::Transaction)),
    multi("exists", -2, 1, MultiKind::SumIntegers),
    key("expire", -3),
    key("expireat", -3),
    same_slot("fcall", -3, counted(0, 2)),
    same_slot("fcall_ro", -3, counted(0, 2)),
    route("flushall", -1, Route::Fanout(FanoutCmd::Flush)),
    route("flushdb", -1, Route::Fanout(FanoutCmd::Flush)),
    route("function", -2, Route::Fanout(FanoutCmd::Function)),
    key("get", 2),
    key("getbit", 3),
    key("getdel", 2),
    key("getex", -2),
    key("getrange", 4),
    key("getset", 3),
    key("hdel", -3),
    route("hello", -1, Route::Local(LocalCmd::Hello)),
    key("hexists", 3),
    key("hget", 3),
    key("hgetall", 2),
    key("hincrby", 4),
    key("hincrbyfloat", 4),
    key("hkeys", 2),
    key("hlen", 2),
    key("hmget", -3),
    key("hmset", -4),
    key("hset", -4),
    key("hsetnx", 4),
    key("hstrlen", 3),
    key("hvals", 2),
    key("incr", 2),
    key("incrby", 3),
    key("incrbyfloat", 3),
    route("info", -1, Route::Local(LocalCmd::Info)),
    route("keys", 2, Route::Fanout(FanoutCmd::Keys)),
    no("lastsave", ADMIN),
    key("lindex", 3),
    key("linsert", 5),
    key("llen", 2),
    same_slot("lmove", 5, range(1, 2, 1)),
    same_slot("lmpop", -4, counted(0, 1)),
    key("lpop", -2),
    key("lpos", -3),
    key("lpush", -3),
    key("lpushx", -3),
    key("lrange", 4),
    key("lrem", 4),
    key("lset", 4),
    key("ltrim", 4),
    multi("mget", -2, 1, MultiKind::Mget),
    no("migrate", ADMIN),
    no("monitor", REPLICATION),
    no("move", ONE_DATABASE),
    multi("mset", -3, 2, MultiKind::Mset),
    same_slot("msetnx", -3, range(1, -1, 2)),
    route("multi", 1, Route::Local(LocalCmd::Transaction)),
    key("persist", 2),
    key("pexpire", -3),
    key("pexpireat", -3),
    key("pfadd", -2),
    same_slot("pfcount", -2, range(1, -1, 1)),
    same_slot("pfmerge", -2, range(1, -1, 1)),
    route("ping", -1, Route::Local(LocalCmd::Ping)),
    key("psetex", 4),
    route("psubscribe", -2, Route::Local(LocalCmd::Subscribe)),
    no("psync", REPLICATION),
    key("pttl", 2),
    key("publish", 3),
    route("pubsub", -2, Route::Fanout(FanoutCmd::Pubsub)),
    route("punsubscribe", -1, Route::Local(LocalCmd::Subscribe)),
    route("quit", -1, Route::Local(LocalCmd::Quit)),
    route("randomkey", 1, Route::Fanout(FanoutCmd::Randomkey)),
    no("readonly", CLUSTER),
    no("readwrite", CLUSTER),
    same_slot("rename", 3, range(1, 2, 1)),
    same_slot("renamenx", 3, range(1, 2, 1)),
    no("replicaof", REPLICATION),
    route("reset", 1, Route::Local(LocalCmd::Reset)),
    key("rpop", -2),
    same_slot("rpoplpush", 3, range(1, 2, 1)),
    key("rpush", -3),
    key("rpushx", -3),
    key("sadd", -3),
    no("save", ADMIN),
    route("scan", -2, Route::Scan),
    key("scard", 2),
    route("script", -2, Route::Fanout(FanoutCmd::Script)),
    same_slot("sdiff", -2, range(1, -1, 1)),
    same_slot("sdiffstore", -3, range(1, -1, 1)),
    route("select", 2, Route::Local(LocalCmd::Select)),
    key("set", -3),
    key("setbit", 4),
    key("setex", 4),
    key("setnx", 3),
    key("setrange", 4),
    no("shutdown", ADMIN),
    same_slot("sinter", -2, range(1, -1, 1)),
    same_slot("sintercard", -3, counted(0, 1)),
    same_slot("sinterstore", -3, range(1, -1, 1)),
    key("sismember", 3),
    no("slaveof", REPLICATION),
    no("slowlog", ADMIN),
    key("smembers", 2),
    key("smismember", -3),
    same_slot("smove", 4, range(1, 2, 1)),
    key("spop", -2),
    key("spublish", 3),
    key("srandmember", -2),
    key("srem", -3),
    route("ssubscribe", -2, Route::Local(LocalCmd::Subscribe)),
    key("strlen", 2),
    route("subscribe", -2, Route::Local(LocalCmd::Subscribe)),
    same_slot("sunion", -2, range(1, -1, 1)),
    same_slot("sunionstore", -3, range(1, -1, 1)),
    route("sunsubscribe", -1, Route::Local(LocalCmd::Subscribe)),
    no("swapdb", EVERY_SHARD),
    no("sync", REPLICATION),
    route("time", 1, Route::Fanout(FanoutCmd::Time)),
    multi("touch", -2, 1, MultiKind::SumIntegers),
    key("ttl", 2),
    key("type", 2),
    multi("unlink", -2, 1, MultiKind::SumIntegers),
    route("unsubscribe", -1, Route::Local(LocalCmd::Subscribe)),
    route("unwatch", 1, Route::Local(LocalCmd::Transaction)),
    no("wait", WAIT),
    route("watch", -2, Route::Local(LocalCmd::Transaction)),
    key("xadd", -5),
    key("xdel", -3),
    key("xlen", 2),
    key("xrange", -4),
    key("xrevrange", -4),
    key("xtrim", -4),
    key("zadd", -4),
    key("zcard", 2),
    key("zcount", 4),
    same_slot("zdiff", -3, counted(0, 1)),
    same_slot("zdiffstore", -4, counted(1, 2)),
    key("zincrby", 4),
    same_slot("zinter", -3, counted(0, 1)),
    same_slot("zinterstore", -4, counted(1, 2)),
    same_slot("zmpop", -4, counted(0, 1)),
    key("zmscore", -3),
    key("zpopmax", -2),
    key("zpopmin", -2),
    key("zrange", -4),
    key("zrangebyscore", -4),
    same_slot("zrangestore", -5, range(1, 2, 1)),
    key("zrank", -3),
    key("zrem", -3),
    key("zremrangebyrank", 4),
    key("zremrangebyscore", 4),
    key("zrevrange", -4),
    key("zrevrank", -3),
    key("zscore", 3),
    same_slot("zunion", -3, counted(0, 1)),
    same_slot("zunionstore", -4, counted(1, 2)),
];
