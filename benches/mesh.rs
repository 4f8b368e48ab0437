//! corio-mesh against its references, in one run: the cross-core round trip (`spawn_on` an empty
//! future on the other core and await it) against tokio's multi-thread runtime (spawn onto the
//! other worker, await) and a raw crossbeam-channel ping-pong between two pinned threads; and
//! messages per second core to core through `corio_mesh::channel` against raw crossbeam-channel
//! between two pinned threads.
//!
//! Run: `cargo bench --bench mesh` (cores 0 and 1).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corio::mesh::{channel, spawn_on};
use corio::rt::{CoreId, Poke, Runtime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn pin(cpu: usize) {
    let ids = core_affinity::get_core_ids().expect("list CPUs");
    core_affinity::set_for_current(ids[cpu % ids.len()]);
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip");
    group.throughput(Throughput::Elements(1));
    let variants = [
        ("corio_spawn_on", Duration::ZERO, Poke::EventFd),
        ("corio_spawn_on_msg_ring", Duration::ZERO, Poke::MsgRing),
        (
            "corio_spawn_on_spin50us",
            Duration::from_micros(50),
            Poke::EventFd,
        ),
    ];
    for (name, spin, poke) in variants {
        let rt = Runtime::builder()
            .cores(2)
            .spin(spin)
            .poke(poke)
            .build()
            .unwrap();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let out = rt.run(move |core| async move {
                    if core.0 != 0 {
                        return Duration::ZERO;
                    }
                    let start = Instant::now();
                    for _ in 0..iters {
                        spawn_on(CoreId(1), || async {}).await.unwrap();
                    }
                    start.elapsed()
                });
                out[0]
            })
        });
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start({
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            move || pin(next.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
        })
        .build()
        .unwrap();
    group.bench_function("tokio_multi_thread_spawn", |b| {
        b.iter_custom(|iters| {
            tokio.block_on(async move {
                tokio::spawn(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        tokio::spawn(async {}).await.unwrap();
                    }
                    start.elapsed()
                })
                .await
                .unwrap()
            })
        })
    });
    // A cross-core round trip in tokio: a thread on CPU 0 spawns onto a one-worker runtime whose
    // worker is pinned to CPU 1, and waits for the task's JoinHandle.
    let tokio_remote = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(|| pin(1))
        .build()
        .unwrap();
    group.bench_function("tokio_spawn_onto_other_core", |b| {
        pin(0);
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                futures::executor::block_on(tokio_remote.spawn(async {})).unwrap();
            }
            start.elapsed()
        })
    });
    group.bench_function("crossbeam_ping_pong", |b| {
        b.iter_custom(|iters| {
            let (ping_tx, ping_rx) = crossbeam_channel::bounded::<u64>(1);
            let (pong_tx, pong_rx) = crossbeam_channel::bounded::<u64>(1);
            let echo = std::thread::spawn(move || {
                pin(1);
                while let Ok(n) = ping_rx.recv() {
                    if pong_tx.send(n).is_err() {
                        return;
                    }
                }
            });
            pin(0);
            let start = Instant::now();
            for i in 0..iters {
                ping_tx.send(i).unwrap();
                pong_rx.recv().unwrap();
            }
            let elapsed = start.elapsed();
            drop(ping_tx);
            echo.join().unwrap();
            elapsed
        })
    });
    group.finish();
}

fn messages(c: &mut Criterion) {
    let mut group = c.benchmark_group("messages");
    group.throughput(Throughput::Elements(1));
    let rt = Runtime::builder().cores(2).build().unwrap();
    group.bench_function("corio_channel", |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = channel::<u64>(1024);
            let (tx, rx) = (
                Arc::new(Mutex::new(Some(tx))),
                Arc::new(Mutex::new(Some(rx))),
            );
            let out = rt.run(move |core| {
                let (tx, rx) = match core.0 {
                    0 => (tx.lock().unwrap().take(), None),
                    _ => (None, rx.lock().unwrap().take()),
                };
                async move {
                    let start = Instant::now();
                    if let Some(tx) = tx {
                        for i in 0..iters {
                            tx.send(i).await.unwrap();
                        }
                    } else if let Some(rx) = rx {
                        while rx.recv().await.is_some() {}
                    }
                    start.elapsed()
                }
            });
            out[1]
        })
    });
    group.bench_function("crossbeam_threads", |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = crossbeam_channel::bounded::<u64>(1024);
            let receiver = std::thread::spawn(move || {
                pin(1);
                let start = Instant::now();
                while rx.recv().is_ok() {}
                start.elapsed()
            });
            pin(0);
            for i in 0..iters {
                tx.send(i).unwrap();
            }
            drop(tx);
            receiver.join().unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, round_trip, messages);
criterion_main!(benches);
