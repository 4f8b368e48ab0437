//! Calling corio outside a core panics with a message that says so, pointing at the caller's
//! line (`#[track_caller]`), not at corio's insides.

use std::sync::{Arc, Mutex};

#[test]
fn outside_a_core_panics_point_at_the_caller() {
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let record = seen.clone();
    std::panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| l.file().to_owned())
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        record.lock().unwrap().push((location, message));
    }));
    let calls: [(&str, fn()); 3] = [
        ("corio::spawn", || drop(corio::spawn(async {}))),
        ("corio::current_core", || {
            let _ = corio::current_core();
        }),
        ("corio::peers", || drop(corio::rt::peers())),
    ];
    for (_, call) in calls {
        assert!(std::panic::catch_unwind(call).is_err());
    }
    let _ = std::panic::take_hook();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for ((name, _), (file, message)) in calls.iter().zip(seen.iter()) {
        assert!(file.ends_with("rt_outside.rs"), "{name} panicked at {file}");
        assert!(
            message.contains("outside a corio core"),
            "{name}: {message}"
        );
    }
}
