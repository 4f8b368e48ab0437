"""redis-py's own use of db-proxy: pipelines, transactions, WATCH, pub/sub, blocking pops
and SCAN, as an application writes them. Run by tests/proxy_clients.rs with the proxy's
port; prints `redis-py OK` when every check passed."""
import sys
import threading
import time

import redis

port = int(sys.argv[1])
# Two keys the proxy places on different shards.
apart = sys.argv[2:4]


def client():
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, decode_responses=True)


r = client()
assert r.ping()
assert r.flushall()

# Pipelines without a transaction, across both shards.
p = r.pipeline(transaction=False)
for i in range(200):
    p.set(f"k{i}", i)
assert all(p.execute())
p = r.pipeline(transaction=False)
for i in range(200):
    p.get(f"k{i}")
assert p.execute() == [str(i) for i in range(200)]
assert r.mget([f"k{i}" for i in range(5)]) == ["0", "1", "2", "3", "4"]

# A transaction: MULTI ... EXEC in one round trip.
p = r.pipeline(transaction=True)
p.set("{acct}a", 10).incrby("{acct}a", 5).get("{acct}a")
assert p.execute() == [True, 15, "15"], "MULTI/EXEC"


# Optimistic locking: WATCH, read, MULTI, write, EXEC (retried on conflict).
def move(pipe):
    a = int(pipe.get("{acct}a"))
    pipe.multi()
    pipe.set("{acct}a", a - 1)
    pipe.incr("{acct}b")


r.transaction(move, "{acct}a")
assert r.get("{acct}a") == "14" and r.get("{acct}b") == "1", "WATCH transaction"

# Another client writes a watched key: EXEC fails with WatchError.
with r.pipeline() as pipe:
    pipe.watch("{acct}a")
    client().set("{acct}a", 100)
    pipe.multi()
    pipe.incr("{acct}a")
    try:
        pipe.execute()
        raise SystemExit("a watched key changed, yet EXEC ran")
    except redis.WatchError:
        pass
assert r.get("{acct}a") == "100"

# Keys of two slots in one transaction: the command fails, EXEC is aborted.
p = r.pipeline(transaction=True)
p.set(apart[0], 1).set(apart[1], 2)
try:
    p.execute()
    raise SystemExit("a cross-slot transaction ran")
except redis.ResponseError as e:
    assert "CROSSSLOT" in str(e) or "EXECABORT" in str(e), e
assert r.exists(apart[0]) == 0

# Pub/sub: channels on both shards and a pattern; messages published by another client.
ps = r.pubsub()
ps.subscribe("news", "sports")
ps.psubscribe("al*")
confirmed = []
deadline = time.time() + 5
while len(confirmed) < 3 and time.time() < deadline:
    m = ps.get_message(timeout=1)
    if m:
        confirmed.append((m["type"], m["channel"], m["data"]))
assert sorted(confirmed) == [
    ("psubscribe", "al*", 3),
    ("subscribe", "news", 1),
    ("subscribe", "sports", 2),
], confirmed
publisher = client()
assert publisher.publish("news", "hello") == 1
assert publisher.publish("sports", "goal") == 1
assert publisher.publish("alerts", "fire") == 1
got = []
deadline = time.time() + 5
while len(got) < 3 and time.time() < deadline:
    m = ps.get_message(timeout=1)
    if m:
        got.append((m["type"], m["channel"], m["data"]))
assert sorted(got) == [
    ("message", "news", "hello"),
    ("message", "sports", "goal"),
    ("pmessage", "alerts", "fire"),
], got
ps.unsubscribe()
ps.punsubscribe()
ps.close()


# A blocking pop woken by another client's push.
def push():
    time.sleep(0.3)
    client().rpush("jobs", "job-1")


threading.Thread(target=push).start()
assert r.blpop("jobs", timeout=5) == ("jobs", "job-1"), "BLPOP"
assert r.blpop("nothing", timeout=1) is None

# SCAN across shards: every key once.
keys = list(r.scan_iter("k*", count=50))
assert len(keys) == 200 and len(set(keys)) == 200, len(keys)

print("redis-py OK")
