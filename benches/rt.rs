//! corio-rt micro-benchmarks, each beside its reference in the same run:
//! spawn + join of an empty task, 1,000 `yield_now`s, a ping-pong between two tasks (against
//! tokio's current-thread runtime and monoio), and NOP ops per second at 1, 32 and 256 in
//! flight (against a hand-written loop on the raw io-uring crate).
//!
//! Run: `cargo bench --bench rt` (pin it: `taskset -c 0 cargo bench --bench rt`).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::{SinkExt, StreamExt};

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn monoio_rt() -> monoio::Runtime<monoio::IoUringDriver> {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .build()
        .unwrap()
}

fn spawn_join(c: &mut Criterion) {
    let mut group = c.benchmark_group("spawn_join");
    group.throughput(Throughput::Elements(1));
    group.bench_function("corio", |b| {
        b.iter_custom(|iters| {
            corio::block_on(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    corio::spawn(async {}).await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    let tokio = tokio_rt();
    group.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            tokio.block_on(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    tokio::spawn(async {}).await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    let mut monoio = monoio_rt();
    group.bench_function("monoio", |b| {
        b.iter_custom(|iters| {
            monoio.block_on(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    monoio::spawn(async {}).await;
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

fn yields(c: &mut Criterion) {
    let mut group = c.benchmark_group("yield_1000");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("corio", |b| {
        b.iter_custom(|iters| {
            corio::block_on(async move {
                let start = Instant::now();
                for _ in 0..iters * 1000 {
                    corio::yield_now().await;
                }
                start.elapsed()
            })
        })
    });
    let tokio = tokio_rt();
    group.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            tokio.block_on(async move {
                let start = Instant::now();
                for _ in 0..iters * 1000 {
                    tokio::task::yield_now().await;
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

/// Round trips between two tasks over two bounded(1) channels (the futures crate's, the same
/// channel for both runtimes, so the runtimes' wake and switch costs are what differs).
fn ping_pong(c: &mut Criterion) {
    async fn rounds(
        iters: u64,
        spawn: impl FnOnce(futures::future::BoxFuture<'static, ()>),
    ) -> Duration {
        let (mut ping_tx, mut ping_rx) = futures::channel::mpsc::channel::<u64>(1);
        let (mut pong_tx, mut pong_rx) = futures::channel::mpsc::channel::<u64>(1);
        spawn(Box::pin(async move {
            while let Some(n) = ping_rx.next().await {
                if pong_tx.send(n).await.is_err() {
                    return;
                }
            }
        }));
        let start = Instant::now();
        for i in 0..iters {
            ping_tx.send(i).await.unwrap();
            assert_eq!(pong_rx.next().await, Some(i));
        }
        start.elapsed()
    }
    let mut group = c.benchmark_group("ping_pong");
    group.throughput(Throughput::Elements(1));
    group.bench_function("corio", |b| {
        b.iter_custom(|iters| corio::block_on(rounds(iters, |f| corio::spawn(f).detach())))
    });
    let tokio = tokio_rt();
    group.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            tokio.block_on(rounds(iters, |f| {
                tokio::spawn(f);
            }))
        })
    });
    group.finish();
}

fn nops(c: &mut Criterion) {
    let mut group = c.benchmark_group("nop");
    for depth in [1usize, 32, 256] {
        group.throughput(Throughput::Elements(depth as u64));
        group.bench_with_input(BenchmarkId::new("corio", depth), &depth, |b, &depth| {
            b.iter_custom(|iters| {
                // `depth` tasks, each awaiting one NOP after another: `depth` ops in flight.
                corio::block_on(async move {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..depth)
                        .map(|_| {
                            corio::spawn(async move {
                                for _ in 0..iters {
                                    corio::rt::nop().await.unwrap();
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_with_input(
            BenchmarkId::new("raw-io-uring", depth),
            &depth,
            |b, &depth| {
                let mut ring: io_uring::IoUring = io_uring::IoUring::builder()
                    .setup_single_issuer()
                    .setup_defer_taskrun()
                    .build(256)
                    .unwrap();
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        for i in 0..depth {
                            let nop = io_uring::opcode::Nop::new().build().user_data(i as u64);
                            // SAFETY: a NOP carries no pointers.
                            unsafe { ring.submission().push(&nop).unwrap() };
                        }
                        ring.submit_and_wait(depth).unwrap();
                        let reaped = ring.completion().count();
                        assert_eq!(reaped, depth);
                    }
                    start.elapsed()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, spawn_join, yields, ping_pong, nops);
criterion_main!(benches);
