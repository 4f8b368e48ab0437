//! Cross-core round trips, CPU 0 to CPU 1 and back: corio-mesh's `spawn_on` of an empty future
//! (default settings: park at once, MSG_RING poke), a raw crossbeam-channel ping-pong between
//! two pinned threads, and tokio's multi-thread runtime (a thread on CPU 0 spawns onto a
//! one-worker runtime pinned to CPU 1 and waits for the JoinHandle).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::{Measured, Row};

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

/// Round trips per second and the p99 of one round trip, timing each.
fn timed(duration: Duration, mut round_trip: impl FnMut()) -> Measured {
    let mut latency = histogram();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        let t = Instant::now();
        round_trip();
        latency.saturating_record(t.elapsed().as_nanos() as u64);
        n += 1;
    }
    Measured {
        throughput: n as f64 / start.elapsed().as_secs_f64(),
        p99_us: Some(latency.value_at_quantile(0.99) as f64 / 1000.0),
    }
}

pub fn run(duration: Duration, rows: &mut Vec<Row>) {
    let case = "cross-core round trip, CPU 0 -> CPU 1 -> CPU 0";
    let corio = {
        let rt = corio::Runtime::builder()
            .cores(2)
            .build()
            .expect("corio runtime");
        let out = rt.run(move |core| async move {
            if core.0 != 0 {
                return None;
            }
            let mut latency = histogram();
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < duration {
                let t = Instant::now();
                corio::mesh::spawn_on(corio::CoreId(1), || async {})
                    .await
                    .expect("spawn_on core 1");
                latency.saturating_record(t.elapsed().as_nanos() as u64);
                n += 1;
            }
            Some(Measured {
                throughput: n as f64 / start.elapsed().as_secs_f64(),
                p99_us: Some(latency.value_at_quantile(0.99) as f64 / 1000.0),
            })
        });
        out.into_iter().flatten().next().expect("core 0 measured")
    };
    let crossbeam = crate::on_cpu(0, || {
        let (ping_tx, ping_rx) = crossbeam_channel::bounded::<u64>(1);
        let (pong_tx, pong_rx) = crossbeam_channel::bounded::<u64>(1);
        let echo = std::thread::spawn(move || {
            crate::pin(1);
            while let Ok(n) = ping_rx.recv() {
                if pong_tx.send(n).is_err() {
                    return;
                }
            }
        });
        let m = timed(duration, || {
            ping_tx.send(1).expect("ping");
            pong_rx.recv().expect("pong");
        });
        drop(ping_tx);
        echo.join().expect("echo thread");
        m
    });
    let tokio = {
        let remote = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .on_thread_start(|| crate::pin(1))
            .build()
            .expect("tokio runtime");
        crate::on_cpu(0, || {
            timed(duration, || {
                futures::executor::block_on(remote.spawn(async {})).expect("tokio task");
            })
        })
    };
    for (subject, m) in [
        ("crossbeam ping-pong (raw)", crossbeam),
        ("corio-mesh spawn_on", corio),
        ("tokio multi-thread spawn", tokio),
    ] {
        rows.push(Row::new("mesh", case, subject, "round trips/s", m));
    }
}
