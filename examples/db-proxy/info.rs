//! INFO, shaped as redis-server's: `# Server`, `# Clients`, `# Memory`, `# CPU`, `# Stats`,
//! `# Commandstats`, `# Errorstats`, `# Latencystats` and `# Keyspace` (the upstreams' own,
//! merged), then the proxy's own sections (`# Shards` or `# Cluster`, `# Runtime`,
//! `# Latency` per shard). Every core's counters are gathered by the caller.

use std::collections::BTreeMap;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::proxy::Router;
use crate::stats::{self, CommandStat};
use crate::upstream::Reply;
use crate::{cluster, flow, Proxy};

/// When the proxy started (the first call; `main` makes it at start).
pub(crate) fn started() -> Instant {
    static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

/// Every core's command counters added up, by name.
pub(crate) fn merged_commands(cores: &[stats::Snapshot]) -> BTreeMap<String, CommandStat> {
    let mut all: BTreeMap<String, CommandStat> = BTreeMap::new();
    for core in cores {
        for (name, stat) in &core.commands {
            let name = String::from_utf8_lossy(name).into_owned();
            match all.get_mut(&name) {
                Some(sum) => sum.merge(stat),
                None => {
                    all.insert(name, stat.clone());
                }
            }
        }
    }
    all
}

/// Every core's upstream latency histograms merged, by shard (none: no core sampled it).
pub(crate) fn merged_latency(cores: &[stats::Snapshot]) -> Vec<Option<Histogram<u64>>> {
    let shards = cores.iter().map(|c| c.latency.len()).max().unwrap_or(0);
    (0..shards)
        .map(|shard| {
            let mut sampled = cores.iter().filter_map(|c| c.latency.get(shard));
            let mut merged = sampled.next()?.clone();
            for h in sampled {
                let _ = merged.add(h);
            }
            Some(merged)
        })
        .collect()
}

/// Every core's error replies added up, by their first word.
pub(crate) fn merged_errors(cores: &[stats::Snapshot]) -> BTreeMap<String, u64> {
    let mut all = BTreeMap::new();
    for core in cores {
        for (kind, count) in &core.errors_by_kind {
            *all.entry(String::from_utf8_lossy(kind).into_owned())
                .or_insert(0) += count;
        }
    }
    all
}

/// The `# Keyspace` lines: every shard's (every master's) `INFO keyspace`, merged: keys and
/// keys with an expiry added up per database, the average TTL weighted by those keys. A shard
/// that does not answer within the request timeout is left out.
pub(crate) async fn keyspace(proxy: &Proxy) -> String {
    let request = b"*2\r\n$4\r\nINFO\r\n$8\r\nkeyspace\r\n";
    let slots: Vec<_> = proxy
        .fanout_nodes()
        .into_iter()
        .map(|node| proxy.upstream(node).send(request, None, 0))
        .collect();
    let deadline = Instant::now() + proxy.config.upstream.request_timeout;
    // Per database: keys, expires, and the sum of avg_ttl weighted by expires.
    let mut dbs: BTreeMap<u32, (u64, u64, u128)> = BTreeMap::new();
    for slot in slots {
        let left = deadline.saturating_duration_since(Instant::now());
        let reply: Option<Reply> = corio::rt::time::timeout(left, slot.wait()).await.ok();
        let Some(Ok(bytes)) = reply else {
            slot.abandon();
            continue;
        };
        for line in String::from_utf8_lossy(&bytes).lines() {
            let Some((db, fields)) = line.strip_prefix("db").and_then(|l| l.split_once(':')) else {
                continue;
            };
            let Ok(db) = db.parse::<u32>() else { continue };
            let field = |name: &str| {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let entry = dbs.entry(db).or_default();
            entry.0 += field("keys");
            entry.1 += field("expires");
            entry.2 += u128::from(field("avg_ttl")) * u128::from(field("expires"));
        }
    }
    dbs.into_iter()
        .map(|(db, (keys, expires, weighted))| {
            let avg_ttl = weighted.checked_div(u128::from(expires)).unwrap_or(0);
            format!("db{db}:keys={keys},expires={expires},avg_ttl={avg_ttl}\r\n")
        })
        .collect()
}

impl Proxy {
    /// The INFO text: every core's counters (gathered by the caller) and the shard map.
    pub(crate) fn info(&self, cores: &[stats::Snapshot], keyspace: &str) -> String {
        let sum = |f: fn(&stats::Snapshot) -> u64| cores.iter().map(f).sum::<u64>();
        let mut info = String::from("# Server\r\nredis_version:7.0.0\r\nproxy:corio db-proxy\r\n");
        let uptime = started().elapsed().as_secs();
        info += &format!(
            "process_id:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\n",
            std::process::id(),
            uptime / 86_400
        );
        let driver = corio::rt::driver_kind().map_or("none".to_owned(), |k| k.to_string());
        info += &format!(
            "cores:{}\r\nserved_by_core:{}\r\ndriver:{driver}\r\n",
            cores.len(),
            self.core.0
        );
        info += "# Clients\r\n";
        info += &format!("connected_clients:{}\r\n", sum(|c| c.clients));
        info += &format!(
            "blocked_clients:{}\r\n",
            crate::session::pinned::blocked_clients()
        );
        info += &format!(
            "pinned_connections:{}\r\nmax_pinned:{}\r\n",
            crate::session::pinned::pinned_connections(),
            self.config.max_pinned
        );
        info += "# Memory\r\n";
        // As redis-server: what the allocator has handed out, and what is resident.
        info += &format!("used_memory:{}\r\n", allocated_bytes());
        info += &format!("used_memory_rss:{}\r\n", resident_bytes());
        let pending = cores.iter().map(|c| c.buffer_pending);
        info += &format!("buffer_memory:{}\r\n", flow::used_exactly(pending));
        info += &format!("max_buffer_memory:{}\r\n", flow::budget());
        info += "# CPU\r\n";
        let (system, user) = cpu_seconds();
        info += &format!("used_cpu_sys:{system:.6}\r\nused_cpu_user:{user:.6}\r\n");
        info += "# Stats\r\n";
        info += &format!("total_commands_processed:{}\r\n", sum(|c| c.requests));
        info += &format!("total_error_replies:{}\r\n", sum(|c| c.errors));
        for c in cores {
            info += &format!(
                "core{}:clients={},commands={},errors={},inflight={}\r\n",
                c.core, c.clients, c.requests, c.errors, c.inflight
            );
        }
        let commands = merged_commands(cores);
        info += "# Commandstats\r\n";
        for (name, stat) in &commands {
            info += &format!(
                "cmdstat_{name}:calls={},usec={},usec_per_call={:.2},rejected_calls={},\
                 failed_calls={}\r\n",
                stat.calls,
                stat.usec,
                stat.usec as f64 / stat.calls.max(1) as f64,
                stat.rejected,
                stat.failed
            );
        }
        info += "# Errorstats\r\n";
        for (kind, count) in merged_errors(cores) {
            info += &format!("errorstat_{kind}:count={count}\r\n");
        }
        info += "# Latencystats\r\n";
        for (name, stat) in commands.iter().filter(|(_, s)| !s.latency.is_empty()) {
            let h = &stat.latency;
            info += &format!(
                "latency_percentiles_usec_{name}:p50={:.3},p99={:.3},p99.9={:.3}\r\n",
                h.value_at_quantile(0.5) as f64,
                h.value_at_quantile(0.99) as f64,
                h.value_at_quantile(0.999) as f64
            );
        }
        info += "# Keyspace\r\n";
        info += keyspace;
        match &self.router {
            Router::Shards(shards) => {
                info += "# Shards\r\n";
                for (i, upstream) in (0..self.upstream_count()).map(|i| (i, self.upstream(i))) {
                    let slots = shards.slots_of(i);
                    info += &format!(
                        "shard{i}:addr={},slots={}-{}\r\n",
                        upstream.addr,
                        slots.start,
                        slots.end - 1
                    );
                }
            }
            Router::Cluster(_) => {
                info += &cluster::info();
                let sum = |f: fn(&stats::Snapshot) -> u64| cores.iter().map(f).sum::<u64>();
                info += &format!(
                    "cluster_redirections:moved={},ask={},tryagain={}\r\n",
                    sum(|c| c.moved),
                    sum(|c| c.ask),
                    sum(|c| c.tryagain)
                );
            }
        }
        info += "# Runtime\r\n";
        let mut total = corio::rt::Metrics::default();
        for c in cores {
            total.merge(&c.runtime);
        }
        for (name, value) in total.fields() {
            info += &format!("corio_{name}:{value}\r\n");
        }
        for c in cores {
            let fields: Vec<String> = c
                .runtime
                .fields()
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            info += &format!("core{}_runtime:{}\r\n", c.core, fields.join(","));
        }
        info += "# Latency\r\n";
        let mut merged = merged_latency(cores);
        merged.resize(merged.len().max(self.upstream_count()), None);
        for (i, merged) in merged.into_iter().enumerate() {
            let Some(h) = merged.filter(|h| !h.is_empty()) else {
                info += &format!("shard{i}_latency_usec:count=0\r\n");
                continue;
            };
            info += &format!(
                "shard{i}_latency_usec:count={},p50={},p90={},p99={},p999={},max={}\r\n",
                h.len(),
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.9),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            );
        }
        info
    }
}

/// This process's resident set size in bytes, from `/proc/self/statm` (0 if unreadable).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads system configuration.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

/// Bytes the allocator has handed out and not had back (glibc's `mallinfo2`: `uordblks` plus
/// the memory-mapped blocks); 0 where that is not available.
fn allocated_bytes() -> u64 {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        (info.uordblks + info.hblkhd) as u64
    }
    #[cfg(not(target_env = "gnu"))]
    0
}

/// The process's CPU time so far, system and user, in seconds (`getrusage(RUSAGE_SELF)`).
fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage writes one rusage to the valid, exclusive pointer it is given; a
    // zeroed rusage is a valid value of the plain C struct.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return (0.0, 0.0);
        }
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (seconds(usage.ru_stime), seconds(usage.ru_utime))
}
