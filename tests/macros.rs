//! `#[corio::test]` and `#[corio::main]` as users write them: on one core, on several cores
//! (the body on core 0, the others reachable with spawn_on), returning `Result`.

use std::time::Duration;

#[corio::test]
async fn a_test_runs_on_a_corio_core() {
    corio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(corio::current_core().0, 0);
    assert_eq!(corio::rt::peers().len(), 1);
}

#[corio::test(cores = 2)]
async fn a_test_on_two_cores_reaches_the_other_one() {
    assert_eq!(corio::current_core().0, 0);
    let there = corio::mesh::spawn_on(corio::CoreId(1), || async { corio::current_core().0 })
        .await
        .unwrap();
    assert_eq!(there, 1);
}

#[corio::test]
async fn a_test_may_return_a_result() -> std::io::Result<()> {
    let listener = corio::net::TcpListener::bind("127.0.0.1:0")?;
    listener.local_addr()?;
    Ok(())
}

mod as_main {
    // A `main` written with the attribute, called like any function.
    #[corio::main(cores = 2)]
    async fn main() -> Result<usize, String> {
        let all = corio::mesh::run_on_all(|core| async move { core.0 })
            .await
            .map_err(|e| e.to_string())?;
        Ok(all.len())
    }

    #[test]
    fn main_runs_on_core_0_of_its_runtime() {
        assert_eq!(main(), Ok(2));
    }
}
