//! Integration tests of corio-rt's timers and runtime: order, never early, timeouts,
//! intervals, and cores pinned to distinct CPUs.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use corio::rt::{block_on, current_core, spawn, time, Runtime};

#[test]
fn timers_fire_in_deadline_order_and_never_early() {
    let fired = block_on(async {
        let start = Instant::now();
        let fired = Rc::new(RefCell::new(Vec::new()));
        let delays_ms = [30u64, 5, 20, 1, 10, 10, 0];
        let tasks: Vec<_> = delays_ms
            .iter()
            .enumerate()
            .map(|(i, &ms)| {
                let fired = fired.clone();
                spawn(async move {
                    let deadline = start + Duration::from_millis(ms);
                    time::sleep_until(deadline).await;
                    let now = Instant::now();
                    assert!(
                        now >= deadline,
                        "timer {i} fired {:?} early",
                        deadline - now
                    );
                    fired.borrow_mut().push(ms);
                })
            })
            .collect();
        for task in corio::join_all(tasks).await {
            task.unwrap();
        }
        let fired = fired.borrow().clone();
        fired
    });
    assert_eq!(fired, vec![0, 1, 5, 10, 10, 20, 30]);
}

#[test]
fn ten_thousand_timers_and_cancelling_them() {
    block_on(async {
        let start = Instant::now();
        let mut sleeps: Vec<_> = (0..10_000u64)
            .map(|i| {
                Box::pin(time::sleep_until(
                    start + Duration::from_millis(3_600_000 + i),
                ))
            })
            .collect();
        for sleep in &mut sleeps {
            assert!(futures_util::poll!(sleep.as_mut()).is_pending());
        }
        drop(sleeps); // cancel every one; the loop must not wait an hour for them
        time::sleep(Duration::from_millis(2)).await;
        assert!(start.elapsed() < Duration::from_secs(3600));
    });
}

#[test]
fn timeout_returns_elapsed_or_the_output() {
    block_on(async {
        let slow = time::timeout(
            Duration::from_millis(2),
            time::sleep(Duration::from_secs(60)),
        );
        assert!(slow.await.is_err());
        let fast = time::timeout(Duration::from_secs(60), async { 5 });
        assert_eq!(fast.await, Ok(5));
    });
}

#[test]
fn interval_ticks_are_spaced_by_the_period() {
    block_on(async {
        let period = Duration::from_millis(3);
        let mut interval = time::interval(period);
        let first = interval.tick().await;
        let second = interval.tick().await;
        assert!(second >= first + period);
        assert!(Instant::now() >= second);
    });
}

#[test]
fn a_runtime_on_two_cores_runs_a_future_on_each_pinned_to_distinct_cpus() {
    let rt = Runtime::builder().cores(2).pin(true).build().unwrap();
    let placements = rt.run(|core| async move {
        assert_eq!(current_core(), core);
        // The thread may run on exactly one CPU.
        let affinity = std::fs::read_to_string("/proc/thread-self/status")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list:"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned();
        (core.0, affinity, std::thread::current().id())
    });
    assert_eq!(placements.len(), 2);
    assert_eq!((placements[0].0, placements[1].0), (0, 1));
    assert_ne!(
        placements[0].1, placements[1].1,
        "cores pinned to distinct CPUs"
    );
    assert!(
        !placements[0].1.contains(['-', ',']),
        "pinned to one CPU: {}",
        placements[0].1
    );
    assert_ne!(placements[0].2, placements[1].2, "one thread per core");
    rt.shutdown(); // joins both threads
}

/// The CPU list of the calling thread's affinity mask (`Cpus_allowed_list`).
fn allowed_cpus() -> String {
    std::fs::read_to_string("/proc/thread-self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn cpus_pins_cores_to_named_cpus_even_from_a_pinned_thread() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: needs 2 CPUs");
        return;
    }
    std::thread::spawn(|| {
        // This thread may only run on CPU 0: by default, both cores land there too.
        assert!(core_affinity::set_for_current(core_affinity::CoreId {
            id: 0
        }));
        let rt = Runtime::builder().cores(2).build().unwrap();
        assert_eq!(rt.run(|_| async { allowed_cpus() }), ["0", "0"]);
        drop(rt);
        // Named CPUs are used as given.
        let rt = Runtime::builder().cores(2).cpus([1, 0]).build().unwrap();
        assert_eq!(rt.run(|_| async { allowed_cpus() }), ["1", "0"]);
        drop(rt);
        let err = Runtime::builder().cpus([]).build().err().unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        let err = Runtime::builder()
            .cores(1)
            .cpus([4096])
            .build()
            .err()
            .unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
        // A CPU number the mask can hold but this machine lacks: the pinning fails.
        let err = Runtime::builder()
            .cores(1)
            .cpus([1000])
            .build()
            .err()
            .unwrap();
        assert!(err.to_string().contains("cannot pin"), "{err}");
    })
    .join()
    .unwrap();
}

#[test]
fn a_panicking_core_future_is_resumed_by_run_and_the_runtime_survives() {
    let rt = Runtime::builder().cores(2).pin(false).build().unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.run(|core| async move {
            if core.0 == 1 {
                panic!("core 1 failed");
            }
        })
    }));
    assert!(result.is_err());
    assert_eq!(rt.run(|core| async move { core.0 * 2 }), vec![0, 2]);
}
