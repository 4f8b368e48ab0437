//! `corio::signal`: a SIGINT or SIGTERM sent to the process resolves every waiting future, on
//! every core, and a future made after a signal waits for the next one. One test in its own
//! binary: the signals are process-wide.

use std::time::Duration;

use corio::signal::{SIGINT, SIGTERM};
use corio::{pin, select, Either, Runtime};

fn raise(signal: i32) {
    // SAFETY: kill(2) on our own pid with a signal whose handler signal-hook has installed.
    assert_eq!(unsafe { libc::kill(libc::getpid(), signal) }, 0);
}

#[test]
fn signals_reach_every_core_and_each_future_waits_for_its_own() {
    let rt = Runtime::builder().cores(2).pin(false).build().unwrap();
    // Each core waits for Ctrl-C while "serving"; the main thread sends SIGINT once both wait.
    let waiting = std::sync::Arc::new(std::sync::Barrier::new(3));
    let gate = waiting.clone();
    let sender = std::thread::spawn(move || {
        gate.wait();
        std::thread::sleep(Duration::from_millis(20));
        raise(SIGINT);
    });
    let results = rt
        .try_run(move |_core| {
            let waiting = waiting.clone();
            async move {
                let signal = corio::signal::ctrl_c();
                waiting.wait();
                let serve = pin!(corio::time::sleep(Duration::from_secs(30)));
                match select(signal, serve).await {
                    Either::Left((signal, _)) => signal,
                    Either::Right(_) => Err(std::io::Error::other("no signal within 30 s")),
                }
            }
        })
        .unwrap();
    sender.join().unwrap();
    assert_eq!(results, vec![SIGINT, SIGINT]);

    // A future made after that SIGINT does not see it; shutdown() takes SIGTERM too.
    let got = corio::block_on(async {
        let mut old = corio::signal::ctrl_c();
        let new = corio::signal::shutdown();
        assert!(corio::time::timeout(Duration::from_millis(50), &mut old)
            .await
            .is_err());
        raise(SIGTERM);
        corio::time::timeout(Duration::from_secs(10), new).await
    });
    assert_eq!(got.unwrap().unwrap(), SIGTERM);

    // One Signal in a loop: a signal sent while nobody is in `recv` is returned by the next.
    let got = corio::block_on(async {
        let mut hangups = corio::signal::signal(&[corio::signal::SIGHUP]);
        let mut seen = Vec::new();
        for _ in 0..3 {
            raise(corio::signal::SIGHUP);
            corio::time::sleep(Duration::from_millis(10)).await; // nobody waits now
            let number = corio::time::timeout(Duration::from_secs(10), hangups.recv()).await;
            seen.push(number.unwrap().unwrap());
        }
        // Nothing new: the next recv waits.
        let idle = corio::time::timeout(Duration::from_millis(30), hangups.recv()).await;
        (seen, idle.is_err())
    });
    assert_eq!(got, (vec![corio::signal::SIGHUP; 3], true));
}
