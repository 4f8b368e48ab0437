//! Integration tests of corio-rt's executor: tasks, join handles, wake-ups from other threads,
//! panics, and many tasks awaiting ops at once.

mod support;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::task::Waker;

use corio::rt::{block_on, in_flight, live_tasks, nop, spawn, yield_now, Runtime};
// One test here counts open fds, so none may run while another opens rings.
use support::serial;

#[test]
fn ten_thousand_tasks_each_awaiting_an_op_all_complete() {
    let _serial = serial();
    let completed = block_on(async {
        let done = Rc::new(RefCell::new(0usize));
        let tasks: Vec<_> = (0..10_000)
            .map(|_| {
                let done = done.clone();
                spawn(async move {
                    nop().await.unwrap();
                    *done.borrow_mut() += 1;
                })
            })
            .collect();
        for task in corio::join_all(tasks).await {
            task.unwrap();
        }
        assert_eq!((in_flight(), live_tasks()), (0, 0));
        let done = *done.borrow();
        done
    });
    assert_eq!(completed, 10_000);
}

#[test]
fn a_ring_smaller_than_the_ops_in_flight_completes_them_all() {
    let _serial = serial();
    let rt = Runtime::builder()
        .cores(1)
        .pin(false)
        .ring_entries(4)
        .build()
        .unwrap();
    let results = rt.run(|_| async {
        let tasks: Vec<_> = (0..1_000).map(|_| spawn(nop())).collect();
        corio::join_all(tasks)
            .await
            .into_iter()
            .filter(|r| matches!(r, Ok(Ok(()))))
            .count()
    });
    assert_eq!(results, vec![1_000]);
}

#[test]
fn a_task_woken_from_another_thread_runs() {
    let _serial = serial();
    let value = block_on(async {
        let (tx, rx) = mpsc::channel::<Waker>();
        let woken = Rc::new(RefCell::new(false));
        let task = spawn({
            let woken = woken.clone();
            async move {
                let mut first = true;
                std::future::poll_fn(|cx| {
                    if first {
                        first = false;
                        tx.send(cx.waker().clone()).unwrap();
                        std::task::Poll::Pending
                    } else {
                        std::task::Poll::Ready(())
                    }
                })
                .await;
                *woken.borrow_mut() = true;
                7
            }
        });
        yield_now().await; // let the task park itself and hand out its waker
        let waker = rx.recv().unwrap();
        let thread = std::thread::spawn(move || waker.wake());
        let value = task.await.unwrap();
        thread.join().unwrap();
        assert!(*woken.borrow());
        value
    });
    assert_eq!(value, 7);
}

#[test]
fn a_panicking_task_is_reported_and_the_core_keeps_running() {
    let _serial = serial();
    block_on(async {
        let task = spawn(async {
            nop().await.unwrap();
            panic!("boom in a task");
        });
        let err = task.await.unwrap_err();
        assert!(err.is_panic());
        assert_eq!(err.to_string(), "task panicked: boom in a task");
        assert_eq!(spawn(async { 1 + 1 }).await.unwrap(), 2);
        nop().await.unwrap();
    });
}

#[test]
fn abort_cancels_and_detach_keeps_running() {
    let _serial = serial();
    block_on(async {
        let forever = spawn(futures_util::future::pending::<u8>());
        yield_now().await;
        forever.abort();
        let err = forever.await.unwrap_err();
        assert!(err.is_cancelled());

        let ran = Rc::new(RefCell::new(false));
        spawn({
            let ran = ran.clone();
            async move { *ran.borrow_mut() = true }
        })
        .detach();
        yield_now().await;
        assert!(*ran.borrow());
        assert_eq!(live_tasks(), 0);
    });
}

#[test]
fn yield_lets_every_ready_task_run_in_order() {
    let _serial = serial();
    let order = block_on(async {
        let order = Rc::new(RefCell::new(Vec::new()));
        let tasks: Vec<_> = (0..3)
            .map(|i| {
                let order = order.clone();
                spawn(async move {
                    for round in 0..2 {
                        order.borrow_mut().push((round, i));
                        yield_now().await;
                    }
                })
            })
            .collect();
        corio::join_all(tasks).await;
        let order = order.borrow().clone();
        order
    });
    assert_eq!(order, vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);
}

/// Counts drops, to prove a future is dropped exactly once.
struct DropCount(Rc<RefCell<usize>>);

impl Drop for DropCount {
    fn drop(&mut self) {
        *self.0.borrow_mut() += 1;
    }
}

/// Aborts every handle it holds when dropped, as a task-group guard does.
struct AbortOnDrop(RefCell<Vec<corio::JoinHandle<()>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for handle in self.0.borrow().iter() {
            handle.abort();
        }
    }
}

#[test]
fn a_future_whose_drop_aborts_its_own_task_is_dropped_once() {
    let _serial = serial();
    block_on(async {
        let drops = Rc::new(RefCell::new(0));
        let group = Rc::new(AbortOnDrop(RefCell::new(Vec::new())));
        let child = spawn({
            let (group, counted) = (group.clone(), DropCount(drops.clone()));
            async move {
                yield_now().await;
                drop((group, counted)); // not the last reference: the parent's is dropped below
            }
        });
        let last = spawn({
            let (group, counted) = (group.clone(), DropCount(drops.clone()));
            async move {
                yield_now().await;
                yield_now().await;
                let _keep = (group, counted); // the last Rc: dropped with this future
            }
        });
        group.0.borrow_mut().push(last);
        group.0.borrow_mut().push(child);
        drop(group);
        while live_tasks() > 0 {
            yield_now().await;
        }
        assert_eq!(
            *drops.borrow(),
            2,
            "each future's captures dropped exactly once"
        );
    });
}

#[test]
fn shutdown_with_tasks_aborting_each_other_on_drop_is_clean() {
    let _serial = serial();
    let rt = Runtime::builder().cores(1).pin(false).build().unwrap();
    rt.run(|_| async {
        let victim = spawn(futures_util::future::pending::<()>());
        let guard = AbortOnDrop(RefCell::new(vec![victim]));
        spawn(async move {
            let _guard = guard;
            futures_util::future::pending::<()>().await
        })
        .detach();
    });
    drop(rt); // cancels both: the guard aborts the victim during shutdown
}

#[test]
fn a_full_sq_at_park_time_does_not_lose_wakeups() {
    let _serial = serial();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = Runtime::builder()
            .cores(1)
            .pin(false)
            .ring_entries(2)
            .build()
            .unwrap();
        let done = rt.run(|_| async {
            for _ in 0..100 {
                let (a, b) = corio::join!(nop(), nop());
                a.unwrap();
                b.unwrap();
            }
            true
        });
        let _ = tx.send(done);
    });
    let done = rx.recv_timeout(std::time::Duration::from_secs(20));
    assert_eq!(done, Ok(vec![true]), "the core hung with runnable tasks");
}

#[test]
fn a_remote_wake_after_the_core_is_gone_leaks_nothing() {
    let _serial = serial();
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let before = fds();
    let waker = block_on(async {
        let (tx, rx) = mpsc::channel::<Waker>();
        spawn(std::future::poll_fn(move |cx| {
            let _ = tx.send(cx.waker().clone());
            std::task::Poll::<()>::Pending
        }))
        .detach();
        yield_now().await;
        rx.recv().unwrap()
    });
    std::thread::spawn(move || waker.wake()).join().unwrap();
    assert_eq!(fds(), before, "the core's ring and eventfd were released");
}
