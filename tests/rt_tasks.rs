//! Integration tests of corio-rt's executor: tasks, join handles, wake-ups from other threads,
//! panics, and many tasks awaiting ops at once.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::task::Waker;

use corio::rt::{block_on, in_flight, live_tasks, nop, spawn, yield_now, Runtime};

#[test]
fn ten_thousand_tasks_each_awaiting_an_op_all_complete() {
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
