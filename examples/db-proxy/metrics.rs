//! `--metrics-listen ADDR`: Prometheus's text exposition format (version 0.0.4) at
//! `/metrics`, served by core 0 over plain HTTP/1.1, one request per connection.
//!
//! Every series is prefixed `dbproxy_`, with the command, error kind, shard or core as a label
//! (never in the name): commands and their errors, latency histograms per command and per
//! shard (from the same HDR histograms as INFO, cut at fixed bucket bounds), clients and
//! requests in flight per core, each upstream's state as each core last saw it, pinned
//! connections, buffer memory, and the runtime's per-core counters (`dbproxy_runtime_*`).

use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

use corio::net::{TcpListener, TcpStream};
use corio::rt::{spawn, time};
use hdrhistogram::Histogram;

use crate::info::{merged_commands, merged_errors, merged_latency};
use crate::{flow, stats, Proxy};

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// How long a scraper may take to send its request and read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `/metrics` on `listener` until the process ends.
pub(crate) async fn serve(listener: TcpListener, proxy: Rc<Proxy>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                spawn(answer(stream, proxy.clone())).detach();
            }
            Err(err) => {
                eprintln!("db-proxy: --metrics-listen accept failed: {err}");
                time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request and answers it: the metrics for `GET /metrics`, 404 or 405 otherwise.
async fn answer(stream: TcpStream, proxy: Rc<Proxy>) {
    let mut buf = Vec::with_capacity(4096);
    let head = loop {
        let read = time::timeout(IO_TIMEOUT, stream.read(buf)).await;
        let Ok((Ok(n), back)) = read else { return };
        buf = back;
        if n == 0 || buf.len() >= 64 * 1024 {
            return;
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    request.method.map(str::to_owned),
                    request.path.map(str::to_owned),
                )
            }
            Ok(httparse::Status::Partial) => buf.reserve(4096),
            Err(_) => break (None, None),
        }
    };
    let (status, body) = match head {
        (Some(method), Some(path)) if path == "/metrics" || path.starts_with("/metrics?") => {
            if method == "GET" || method == "HEAD" {
                match text(&proxy).await {
                    Ok(body) => ("200 OK", body),
                    Err(err) => ("500 Internal Server Error", format!("{err}\n")),
                }
            } else {
                ("405 Method Not Allowed", "only GET\n".to_owned())
            }
        }
        (Some(_), Some(_)) => ("404 Not Found", "metrics are at /metrics\n".to_owned()),
        _ => ("400 Bad Request", "bad request\n".to_owned()),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body.as_bytes());
    let _ = time::timeout(IO_TIMEOUT, stream.write_all(response)).await;
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// The whole exposition: every core's counters, gathered through the mesh.
async fn text(proxy: &Proxy) -> Result<String, String> {
    let cores = corio::mesh::run_on_all(|core| async move { stats::snapshot(core) })
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    let commands = merged_commands(&cores);
    family(
        &mut out,
        "commands_total",
        "counter",
        "Commands run, by command.",
    );
    for (name, stat) in &commands {
        sample(
            &mut out,
            "commands_total",
            &[("cmd", name)],
            stat.calls as f64,
        );
    }
    family(
        &mut out,
        "command_errors_total",
        "counter",
        "Commands that got an error: refused by the proxy (rejected) or failed upstream.",
    );
    for (name, stat) in &commands {
        for (kind, n) in [("rejected", stat.rejected), ("failed", stat.failed)] {
            let labels = [("cmd", name.as_str()), ("kind", kind)];
            sample(&mut out, "command_errors_total", &labels, n as f64);
        }
    }
    family(
        &mut out,
        "errors_total",
        "counter",
        "Error replies, by their first word (ERR, WRONGTYPE, CROSSSLOT...).",
    );
    for (kind, n) in merged_errors(&cores) {
        sample(&mut out, "errors_total", &[("kind", &kind)], n as f64);
    }
    family(
        &mut out,
        "command_duration_seconds",
        "histogram",
        "From reading a command to having its reply, by command.",
    );
    for (name, stat) in &commands {
        histogram(
            &mut out,
            "command_duration_seconds",
            ("cmd", name),
            &stat.latency,
        );
    }
    family(
        &mut out,
        "upstream_latency_seconds",
        "histogram",
        "From queueing a request on an upstream connection to reading its reply, by shard.",
    );
    for (shard, merged) in merged_latency(&cores).into_iter().enumerate() {
        if let Some(h) = merged {
            let shard = shard.to_string();
            histogram(&mut out, "upstream_latency_seconds", ("shard", &shard), &h);
        }
    }
    family(
        &mut out,
        "upstream_up",
        "gauge",
        "1 if the core's connection to the upstream was last seen up, 0 if down.",
    );
    for c in &cores {
        for (shard, up) in c.upstream_up.iter().enumerate() {
            if let Some(up) = up {
                let (core, shard_s) = (c.core.to_string(), shard.to_string());
                let addr = proxy.upstream(shard).addr.to_string();
                let labels = [
                    ("core", core.as_str()),
                    ("shard", &shard_s),
                    ("addr", &addr),
                ];
                sample(&mut out, "upstream_up", &labels, f64::from(u8::from(*up)));
            }
        }
    }
    family(&mut out, "clients", "gauge", "Connected clients, by core.");
    for c in &cores {
        sample(
            &mut out,
            "clients",
            &[("core", &c.core.to_string())],
            c.clients as f64,
        );
    }
    family(
        &mut out,
        "requests_inflight",
        "gauge",
        "Requests waiting for an upstream's reply, by core.",
    );
    for c in &cores {
        let core = c.core.to_string();
        sample(
            &mut out,
            "requests_inflight",
            &[("core", &core)],
            c.inflight as f64,
        );
    }
    family(
        &mut out,
        "pinned_connections",
        "gauge",
        "Upstream connections pinned to clients (WATCH, blocking commands, pub/sub).",
    );
    let pinned = crate::session::pinned::pinned_connections();
    let blocked = crate::session::pinned::blocked_clients();
    sample(&mut out, "pinned_connections", &[], pinned as f64);
    family(
        &mut out,
        "blocked_clients",
        "gauge",
        "Clients waiting in a blocking command (BLPOP...).",
    );
    sample(&mut out, "blocked_clients", &[], blocked as f64);
    family(
        &mut out,
        "buffer_memory_bytes",
        "gauge",
        "Bytes the proxy holds in buffers, against --max-buffer-memory.",
    );
    let pending = cores.iter().map(|c| c.buffer_pending);
    sample(
        &mut out,
        "buffer_memory_bytes",
        &[],
        flow::used_exactly(pending) as f64,
    );
    family(
        &mut out,
        "cluster_redirections_total",
        "counter",
        "Redis Cluster redirections followed, by kind.",
    );
    for (kind, n) in [
        ("moved", cores.iter().map(|c| c.moved).sum::<u64>()),
        ("ask", cores.iter().map(|c| c.ask).sum()),
        ("tryagain", cores.iter().map(|c| c.tryagain).sum()),
    ] {
        sample(
            &mut out,
            "cluster_redirections_total",
            &[("kind", kind)],
            n as f64,
        );
    }
    // The runtime's counters, one family each, by core.
    let names: Vec<&str> = cores
        .first()
        .map(|c| c.runtime.fields().iter().map(|(name, _)| *name).collect())
        .unwrap_or_default();
    for name in names {
        let metric = format!("runtime_{name}");
        family(
            &mut out,
            &metric,
            "gauge",
            "corio runtime counter, by core (see corio::rt::Metrics).",
        );
        for c in &cores {
            if let Some((_, value)) = c.runtime.fields().iter().find(|(n, _)| *n == name) {
                let core = c.core.to_string();
                sample(&mut out, &metric, &[("core", &core)], *value as f64);
            }
        }
    }
    Ok(out)
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP dbproxy_{name} {help}");
    let _ = writeln!(out, "# TYPE dbproxy_{name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    let _ = write!(out, "dbproxy_{name}");
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escape(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A histogram in microseconds as Prometheus buckets in seconds: cumulative counts at the
/// fixed bounds, `+Inf`, the sum and the count.
fn histogram(out: &mut String, name: &str, label: (&str, &str), h: &Histogram<u64>) {
    for bound in BUCKETS {
        let micros = (bound * 1e6) as u64;
        let count: u64 = h
            .iter_recorded()
            .filter(|v| h.highest_equivalent(v.value_iterated_to()) <= micros)
            .map(|v| v.count_at_value())
            .sum();
        let le = bound.to_string();
        sample(
            out,
            &format!("{name}_bucket"),
            &[label, ("le", &le)],
            count as f64,
        );
    }
    let total = h.len() as f64;
    sample(
        out,
        &format!("{name}_bucket"),
        &[label, ("le", "+Inf")],
        total,
    );
    let sum = h.mean() * total / 1e6;
    sample(out, &format!("{name}_sum"), &[label], sum);
    sample(out, &format!("{name}_count"), &[label], total);
}

/// A label value with `\`, `"` and newlines escaped, as the text format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
