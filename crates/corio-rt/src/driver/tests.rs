//! The io_uring driver alone: SQEs pushed by hand, ticks turned by hand, slots inspected. No
//! executor, no thread-local, no `block_on`. (The epoll driver's own tests are in `epoll/`; the
//! suite as a whole runs on it with `CORIO_DRIVER=epoll`.)

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};

use io_uring::{opcode, types};

use super::*;
use crate::testing::{pipe, serial, write_fd};

fn driver(entries: u32, faults: Option<FaultPlan>) -> Driver {
    let doorbell = Arc::new(Doorbell::new().unwrap());
    Driver::new(
        entries,
        doorbell,
        Arc::default(),
        faults,
        Some(DriverKind::IoUring),
    )
    .unwrap()
}

fn wait(driver: &mut Driver, id: usize) -> Cqe {
    for _ in 0..1_000 {
        if let Poll::Ready(cqe) = driver.poll(id, Waker::noop()) {
            return cqe;
        }
        driver
            .tick(Park::Until(Some(Duration::from_millis(10))))
            .unwrap();
    }
    panic!("op {id} did not complete in 1,000 ticks");
}

/// An orphan that counts its final CQEs.
struct CountFinish(Arc<AtomicUsize>);
impl Orphan for CountFinish {
    fn item(&mut self, _cqe: Cqe) {}
    fn finish(self: Box<Self>, _cqe: Cqe) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_read_completes_into_its_slot_and_frees_it() {
    let _serial = serial();
    let mut d = driver(8, None);
    let (rx, tx) = pipe();
    let mut buf = vec![0u8; 16];
    let sqe = opcode::Read::new(types::Fd(rx.as_raw_fd()), buf.as_mut_ptr(), 16).build();
    let id = d.submit(sqe, Slot::Waiting(None));
    d.tick(Park::No).unwrap();
    assert_eq!(d.poll(id, Waker::noop()), Poll::Pending);
    write_fd(&tx, b"hello");
    assert_eq!(wait(&mut d, id).bytes().unwrap(), 5);
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(d.in_flight(), 0);
    let m = d.sh.counters.snapshot(crate::CoreId(0));
    assert!(
        m.sqes_submitted >= 1 && m.cqes_reaped >= 1 && m.enters >= 1,
        "{m:?}"
    );
}

#[test]
fn orphans_are_cancelled_and_finished_once() {
    let _serial = serial();
    let mut d = driver(8, None);
    let (rx, _tx) = pipe();
    let finished = Arc::new(AtomicUsize::new(0));
    let mut bufs = vec![vec![0u8; 8]; 100];
    for buf in &mut bufs {
        let sqe = opcode::Read::new(types::Fd(rx.as_raw_fd()), buf.as_mut_ptr(), 8).build();
        let id = d.submit(sqe, Slot::Waiting(None));
        assert!(d
            .orphan(id, Box::new(CountFinish(finished.clone())))
            .is_none());
    }
    for _ in 0..1_000 {
        if d.in_flight() == 0 {
            break;
        }
        d.tick(Park::Until(Some(Duration::from_millis(10))))
            .unwrap();
    }
    assert_eq!(d.in_flight(), 0);
    for (orphan, cqe) in d.take_graveyard() {
        assert_eq!(cqe.raw_result(), -libc::ECANCELED);
        orphan.finish(cqe);
    }
    assert_eq!(finished.load(Ordering::SeqCst), 100);
    let m = d.sh.counters.snapshot(crate::CoreId(0));
    assert_eq!((m.orphaned_ops, m.cancels), (100, 100));
}

#[test]
fn more_ops_than_the_sq_and_cq_hold_all_complete() {
    let _serial = serial();
    let mut d = driver(4, None); // SQ 4, CQ 8
    let ids: Vec<usize> = (0..1_000)
        .map(|_| d.submit(opcode::Nop::new().build(), Slot::Waiting(None)))
        .collect();
    for id in ids {
        assert_eq!(wait(&mut d, id).raw_result(), 0);
    }
    let m = d.sh.counters.snapshot(crate::CoreId(0));
    assert!(m.sq_full_waits > 0, "{m:?}");
}

#[test]
fn the_fault_plan_fails_and_reorders_without_losing_a_cqe() {
    let _serial = serial();
    let plan = FaultPlan::new(9)
        .eintr(0.2)
        .ecanceled(0.1)
        .sq_full(0.2)
        .cq_hold(0.3)
        .reorder(1.0);
    let mut d = driver(4, Some(plan));
    let mut ids = Vec::new();
    for _ in 0..500 {
        // Waves of 4 (the SQ's size), a tick after each: held CQs pile up past 8 entries.
        for _ in 0..4 {
            ids.push(d.submit(opcode::Nop::new().build(), Slot::Waiting(None)));
        }
        d.tick(Park::No).unwrap();
    }
    let mut results = std::collections::BTreeMap::new();
    for id in ids {
        *results.entry(-wait(&mut d, id).raw_result()).or_insert(0) += 1;
    }
    assert_eq!(results.values().sum::<i32>(), 2_000, "{results:?}");
    assert!(
        results[&libc::EINTR] > 100 && results[&libc::ECANCELED] > 50,
        "{results:?}"
    );
    assert!(results[&0] > 1_000, "{results:?}");
    assert_eq!(d.in_flight(), 0);
}

#[test]
fn holding_the_cq_overflows_it_and_loses_nothing() {
    let _serial = serial();
    // Every reap held, three in a row at most: four waves of 4 NOPs outgrow the CQ's 8 entries.
    let mut d = driver(4, Some(FaultPlan::new(1).cq_hold(1.0)));
    let mut ids = Vec::new();
    for _ in 0..100 {
        for _ in 0..4 {
            ids.push(d.submit(opcode::Nop::new().build(), Slot::Waiting(None)));
        }
        d.tick(Park::No).unwrap();
    }
    for id in ids {
        assert_eq!(wait(&mut d, id).raw_result(), 0);
    }
    let m = d.sh.counters.snapshot(crate::CoreId(0));
    assert!(m.cq_overflows > 0, "{m:?}");
    assert_eq!((m.cqes_reaped, d.in_flight()), (400, 0));
}

#[test]
fn a_multishot_slot_queues_cqes_until_the_final_one() {
    let _serial = serial();
    let mut d = driver(8, None);
    let ts = types::Timespec::new().nsec(100_000);
    let sqe = opcode::Timeout::new(&ts)
        .count(3)
        .flags(types::TimeoutFlags::MULTISHOT)
        .build();
    let id = d.submit(
        sqe,
        Slot::Multi {
            queue: Default::default(),
            waker: None,
        },
    );
    let mut seen = 0;
    loop {
        let cqe = wait(&mut d, id);
        seen += 1;
        if !cqe.more() {
            break;
        }
    }
    assert_eq!((seen, d.in_flight()), (3, 0));
}
