//! `corio::select!`: the first ready future's branch runs (first written wins a tie), the
//! others are dropped, and branches may use `?`, `return` and `break`.

use std::time::Duration;

use corio::time::sleep;

#[corio::test]
async fn the_first_ready_branch_runs_and_ties_go_to_the_first_written() {
    let mut order = Vec::new();
    for _ in 0..3 {
        let which = corio::select! {
            () = sleep(Duration::from_millis(50)) => "slow",
            n = async { 7 } => if n == 7 { "ready" } else { "wrong" },
            _ = async { 8 } => "also ready, but written later",
        };
        order.push(which);
    }
    assert_eq!(order, ["ready"; 3]);
}

#[corio::test]
async fn branches_may_break_return_and_use_the_question_mark() -> Result<(), String> {
    let (tx, rx) = corio::mesh::channel::<u32>(8);
    for i in 0..5 {
        tx.send(i).await.map_err(|_| "send")?;
    }
    drop(tx);
    let mut got = Vec::new();
    loop {
        corio::select! {
            value = rx.recv() => match value {
                Some(v) => got.push(v),
                None => break,
            },
            () = sleep(Duration::from_secs(5)) => return Err("stalled".to_owned()),
        }
    }
    assert_eq!(got, [0, 1, 2, 3, 4]);
    let parsed: u32 = corio::select! {
        text = async { "42" } => text.parse().map_err(|_| "not a number")?,
    };
    assert_eq!(parsed, 42);
    Ok(())
}

#[corio::test]
async fn the_losers_are_dropped() {
    struct Flag(std::rc::Rc<std::cell::Cell<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let dropped = std::rc::Rc::new(std::cell::Cell::new(false));
    let flag = Flag(dropped.clone());
    corio::select! {
        () = async move {
            let _flag = flag;
            std::future::pending::<()>().await
        } => unreachable!(),
        () = sleep(Duration::from_millis(1)) => {},
    }
    assert!(dropped.get());
}
