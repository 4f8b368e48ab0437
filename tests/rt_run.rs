//! Runtime::run, try_run and run_each end loudly: a core's error or panic ends the run at
//! once with that core named, the other cores' futures are dropped on their own cores, and
//! `stop` ends a run from inside or from another thread.

use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corio::{CoreId, RunError, Runtime};

fn runtime(cores: usize) -> Runtime {
    Runtime::builder().cores(cores).pin(false).build().unwrap()
}

/// Counts drops, and records that each happened on the thread of the core that made it.
struct DropProbe {
    core: CoreId,
    dropped: Arc<AtomicUsize>,
    _not_send: Rc<()>,
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        assert_eq!(corio::current_core(), self.core, "dropped on another core");
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_cores_error_ends_try_run_while_another_serves_forever() {
    let rt = runtime(2);
    let dropped = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let counter = dropped.clone();
    let result = rt.try_run(move |core| {
        let probe = DropProbe {
            core,
            dropped: counter.clone(),
            _not_send: Rc::new(()),
        };
        async move {
            let _probe = probe;
            if core.0 == 1 {
                corio::time::sleep(Duration::from_millis(20)).await;
                return Err(io::Error::new(io::ErrorKind::AddrInUse, "port 80 taken"));
            }
            std::future::pending::<io::Result<u32>>().await
        }
    });
    let err = result.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "run ended late");
    match &err {
        RunError::Failed { core, error } => {
            assert_eq!(*core, CoreId(1));
            assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(err.to_string(), "core 1 failed: port 80 taken");
    // Both cores' futures are gone: the failed one finished, the serving one was cancelled.
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
    // `?` in a main returning io::Result keeps the kind.
    let as_io: io::Error = err.into();
    assert_eq!(as_io.kind(), io::ErrorKind::AddrInUse);
    // The runtime is still usable.
    assert_eq!(
        rt.try_run(|core| async move { Ok::<_, ()>(core.0) })
            .unwrap(),
        vec![0, 1]
    );
}

#[test]
fn a_cores_panic_ends_try_run_with_its_message() {
    let rt = runtime(2);
    let result = rt.try_run(|core| async move {
        if core.0 == 0 {
            corio::time::sleep(Duration::from_millis(10)).await;
            panic!("config file missing");
        }
        std::future::pending::<Result<(), String>>().await
    });
    match result.unwrap_err() {
        RunError::Panicked { core, message } => {
            assert_eq!(core, CoreId(0));
            assert_eq!(message, "config file missing");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
}

#[test]
fn a_panic_in_the_factory_is_reported_too() {
    let rt = runtime(2);
    let result = rt.try_run(|core| {
        assert!(core.0 != 1, "no listener for core 1");
        async { std::future::pending::<Result<(), String>>().await }
    });
    let err = result.unwrap_err();
    assert_eq!(err.core(), Some(CoreId(1)));
    assert!(err.to_string().contains("no listener for core 1"), "{err}");
}

#[test]
fn run_resumes_a_cores_panic_at_once() {
    let rt = runtime(2);
    let started = Instant::now();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.run(|core| async move {
            if core.0 == 1 {
                panic!("boom on 1");
            }
            std::future::pending::<()>().await
        })
    }));
    let payload = caught.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom on 1"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn stop_from_inside_ends_every_cores_future() {
    let rt = runtime(2);
    let dropped = Arc::new(AtomicUsize::new(0));
    let counter = dropped.clone();
    let result = rt.try_run(move |core| {
        let probe = DropProbe {
            core,
            dropped: counter.clone(),
            _not_send: Rc::new(()),
        };
        async move {
            let _probe = probe;
            if core.0 == 0 {
                corio::time::sleep(Duration::from_millis(10)).await;
                corio::rt::stop();
            }
            std::future::pending::<Result<(), io::Error>>().await
        }
    });
    assert!(result.unwrap_err().is_stopped());
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
    // A stopped runtime stays stopped: later runs end at once.
    let again = rt.try_run(|_| async { Ok::<_, ()>(()) });
    assert!(again.unwrap_err().is_stopped());
}

#[test]
fn a_stop_handle_stops_from_another_thread() {
    let rt = runtime(2);
    let handle = rt.stop_handle();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        handle.stop();
    });
    let results = rt.run_each(|_| std::future::pending::<()>());
    stopper.join().unwrap();
    assert!(results
        .iter()
        .all(|r| r.as_ref().unwrap_err().is_cancelled()));
}

#[test]
fn run_each_lets_the_other_cores_finish() {
    let rt = runtime(2);
    let results = rt.run_each(|core| async move {
        if core.0 == 0 {
            panic!("core 0 gives up");
        }
        corio::time::sleep(Duration::from_millis(30)).await;
        core.0 * 10
    });
    assert!(results[0].as_ref().unwrap_err().is_panic());
    assert_eq!(*results[1].as_ref().unwrap(), 10);
}

#[test]
fn a_stopped_run_makes_run_panic_with_a_clear_message() {
    let rt = runtime(1);
    rt.stop_handle().stop();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.run(|_| async { 1 });
    }));
    let payload = caught.unwrap_err();
    let message = payload.downcast_ref::<String>().unwrap();
    assert!(message.contains("stopped"), "{message}");
}
