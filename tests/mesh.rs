//! Integration tests of corio-mesh: messages between cores, remote tasks and their errors,
//! sharded state, and shutdown with work in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use corio::mesh::{channel, run_on_all, spawn_on, spawn_on_handle, RemoteError, Sharded};
use corio::rt::{CoreId, Runtime};

fn runtime() -> Runtime {
    Runtime::builder().cores(2).pin(false).build().unwrap()
}

#[test]
fn a_million_messages_from_core_0_to_core_1_arrive_in_order() {
    const N: u64 = 1_000_000;
    let rt = runtime();
    let (tx, rx) = channel::<u64>(1024);
    // Each core gets only its own end: a sender left on core 1 would keep the stream open.
    let ends = vec![(Some(tx), None), (None, Some(rx))];
    let results = rt.run_with(ends, move |core, (tx, rx)| async move {
        if core.0 == 0 {
            let tx = tx.unwrap();
            for i in 0..N {
                tx.send(i).await.unwrap();
            }
            (0, true)
        } else {
            let rx = rx.unwrap();
            let (mut expected, mut in_order) = (0, true);
            while let Some(i) = rx.recv().await {
                in_order &= i == expected;
                expected += 1;
            }
            (expected, in_order)
        }
    });
    assert_eq!(results[1], (N, true));
}

#[test]
fn a_remote_panic_reaches_the_caller_and_the_core_keeps_serving() {
    let rt = runtime();
    let results = rt.run(|core| async move {
        if core.0 != 0 {
            return None;
        }
        let failed = spawn_on(CoreId(1), || async {
            panic!("remote boom");
        })
        .await;
        let later = spawn_on(CoreId(1), || async { corio::current_core().0 }).await;
        let missing = spawn_on(CoreId(7), || async {}).await;
        Some((failed, later, missing))
    });
    let (failed, later, missing) = results[0].clone().unwrap();
    assert_eq!(
        failed,
        Err(RemoteError::Panicked(CoreId(1), "remote boom".to_owned()))
    );
    assert_eq!(later, Ok(1));
    assert_eq!(missing, Err(RemoteError::NoSuchCore(CoreId(7))));
}

#[test]
fn a_channel_whose_receiver_is_dropped_fails_its_sender_cleanly() {
    let rt = runtime();
    let results = rt.run(|core| async move {
        if core.0 != 0 {
            return None;
        }
        let (tx, rx) = channel::<String>(1);
        tx.send("first".to_owned()).await.unwrap();
        // The channel is full; the receiver is dropped on core 1 while this send waits.
        let dropper = spawn_on(CoreId(1), move || async move {
            corio::time::sleep(std::time::Duration::from_millis(5)).await;
            drop(rx);
        });
        let blocked = tx.send("second".to_owned()).await;
        dropper.await.unwrap();
        let after = tx.send("third".to_owned()).await;
        Some((
            blocked.map_err(|e| e.0),
            after.map_err(|e| e.0),
            tx.is_closed(),
        ))
    });
    assert_eq!(
        results[0],
        Some((Err("second".to_owned()), Err("third".to_owned()), true))
    );
}

#[test]
fn sharded_hashmap_counts_100000_keys_from_every_core() {
    let rt = runtime();
    type Counts = Sharded<HashMap<u64, u64>>;
    let shared: Arc<Mutex<Option<Counts>>> = Arc::new(Mutex::new(None));
    let created = rt.run({
        let shared = shared.clone();
        move |core| {
            let shared = shared.clone();
            async move {
                if core.0 == 0 {
                    let counts = Sharded::new(|_| HashMap::<u64, u64>::new()).await.unwrap();
                    *shared.lock().unwrap() = Some(counts);
                }
            }
        }
    });
    assert_eq!(created.len(), 2);
    let counts = shared.lock().unwrap().clone().unwrap();
    rt.run(move |core| {
        let counts = counts.clone();
        async move {
            // Core c counts the keys k with k % 2 == c, each on the core that owns k.
            for key in (core.0 as u64..100_000).step_by(2) {
                counts
                    .with(&key, move |map| *map.entry(key).or_default() += 1)
                    .await
                    .unwrap();
            }
        }
    });
    let counts = shared.lock().unwrap().clone().unwrap();
    let tallies = rt.run(move |core| {
        let counts = counts.clone();
        async move {
            let keys = counts.for_all(|_, map| map.len()).await.unwrap();
            let sum = counts
                .map_reduce(|_, map| map.values().sum::<u64>(), 0, |a, b| a + b)
                .await
                .unwrap();
            (core.0, keys, sum)
        }
    });
    for (_, keys, sum) in &tallies {
        assert_eq!((keys.iter().sum::<usize>(), *sum), (100_000, 100_000));
        assert!(
            keys.iter().all(|&n| n > 40_000),
            "keys spread over both cores: {keys:?}"
        );
    }
}

#[test]
fn shutdown_with_remote_tasks_in_flight_reports_each_one() {
    const N: usize = 1_000;
    let rt = runtime();
    let handles = rt.handles();
    let started = Arc::new(AtomicUsize::new(0));
    let pending: Vec<_> = (0..N)
        .map(|i| {
            let started = started.clone();
            spawn_on_handle(&handles[i % 2], move || async move {
                started.fetch_add(1, Ordering::SeqCst);
                // Half of them never finish on their own: shutdown must cancel them.
                if i % 2 == 1 {
                    futures_util::future::pending::<()>().await;
                }
                i
            })
        })
        .collect();
    while started.load(Ordering::SeqCst) < N {
        std::thread::yield_now();
    }
    drop(rt); // stops both cores and joins their threads
    let (mut done, mut shut_down) = (0, 0);
    for (i, handle) in pending.into_iter().enumerate() {
        match futures::executor::block_on(handle) {
            Ok(value) => {
                assert_eq!(value, i);
                done += 1;
            }
            Err(RemoteError::Shutdown(core)) => {
                assert_eq!(core, CoreId(i % 2));
                shut_down += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((done, shut_down), (N / 2, N / 2));
    // A core that has shut down refuses new work with the same error.
    let late = spawn_on_handle(&handles[0], || async {});
    assert_eq!(
        futures::executor::block_on(late),
        Err(RemoteError::Shutdown(CoreId(0)))
    );
}

#[test]
fn run_on_all_gathers_in_core_order() {
    let rt = runtime();
    let results = rt.run(|_| async { run_on_all(|core| async move { core.0 * 100 }).await });
    assert_eq!(results, vec![Ok(vec![0, 100]), Ok(vec![0, 100])]);
}

#[test]
fn both_kinds_of_poke_wake_parked_cores() {
    for poke in [corio::rt::Poke::MsgRing, corio::rt::Poke::EventFd] {
        round_trips_with(poke);
    }
}

fn round_trips_with(poke: corio::rt::Poke) {
    let rt = Runtime::builder()
        .cores(2)
        .pin(false)
        .poke(poke)
        .build()
        .unwrap();
    let results = rt.run(|core| async move {
        let other = CoreId(1 - core.0);
        let mut sum = 0;
        for i in 0..200 {
            // Each call finds the other core parked (or about to be): a poke per round trip.
            sum += spawn_on(other, move || async move { i }).await.unwrap();
        }
        sum
    });
    assert_eq!(results, vec![19_900, 19_900]);
}

#[test]
fn messages_queued_when_the_receiver_goes_are_handed_back() {
    let rt = runtime();
    let results = rt.run(|core| async move {
        if core.0 != 0 {
            return None;
        }
        let (tx, rx) = channel::<u32>(16);
        for i in 0..10 {
            tx.send(i).await.unwrap();
        }
        let first = rx.recv().await;
        // The receiver's core shuts down, say: it is dropped with 9 messages queued.
        spawn_on(CoreId(1), move || async move { drop(rx) })
            .await
            .unwrap();
        let back = tx.take_undelivered();
        let refused = tx.send(99).await.map_err(|e| e.0);
        Some((first, back, refused))
    });
    let (first, back, refused) = results[0].clone().unwrap();
    assert_eq!(first, Some(0));
    assert_eq!(back, (1..10).collect::<Vec<_>>());
    assert_eq!(refused, Err(99));
}

#[test]
fn abort_cancels_a_remote_task_and_dropping_the_handle_detaches_it() {
    struct Flag(Arc<AtomicUsize>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let rt = runtime();
    let dropped = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let seen = rt.run({
        let (dropped, finished) = (dropped.clone(), finished.clone());
        move |core| {
            let (dropped, finished) = (dropped.clone(), finished.clone());
            async move {
                if core.0 != 0 {
                    return (0, 0, String::new());
                }
                // abort(): the remote future is dropped on its core.
                let handle = spawn_on(CoreId(1), {
                    let dropped = dropped.clone();
                    move || async move {
                        let _flag = Flag(dropped);
                        futures_util::future::pending::<()>().await
                    }
                });
                // Let the remote task start, then give up on it.
                corio::time::sleep(std::time::Duration::from_millis(5)).await;
                handle.abort();
                let err = handle.await.unwrap_err().to_string();
                // Aborted before it started (core 1 is kept busy meanwhile): the closure never
                // runs.
                spawn_on(CoreId(1), || {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    async {}
                })
                .detach();
                let ran = Arc::new(AtomicUsize::new(0));
                let early = spawn_on(CoreId(1), {
                    let ran = ran.clone();
                    move || {
                        ran.fetch_add(1, Ordering::SeqCst);
                        async {}
                    }
                });
                early.abort();
                assert!(early.await.is_err());
                corio::time::sleep(std::time::Duration::from_millis(5)).await;
                assert_eq!(ran.load(Ordering::SeqCst), 0, "an aborted task started");
                // `let _ = spawn_on(..)`: the task runs to its end, as with `let _ = spawn(..)`.
                #[allow(clippy::let_underscore_future)] // exactly what a user may write
                let _ = spawn_on(CoreId(1), {
                    let finished = finished.clone();
                    move || async move {
                        corio::time::sleep(std::time::Duration::from_millis(20)).await;
                        finished.fetch_add(1, Ordering::SeqCst);
                    }
                });
                for _ in 0..1_000 {
                    if dropped.load(Ordering::SeqCst) == 1 && finished.load(Ordering::SeqCst) == 1 {
                        break;
                    }
                    corio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                (
                    dropped.load(Ordering::SeqCst),
                    finished.load(Ordering::SeqCst),
                    err,
                )
            }
        }
    });
    assert_eq!(
        seen[0].0, 1,
        "the aborted remote future was dropped on its core"
    );
    assert_eq!(seen[0].1, 1, "the detached remote task ran to its end");
    assert_eq!(seen[0].2, "task on core 1 was aborted");
}
