//! Fuzzes db-proxy's RESP request parser and reply scanner: any bytes, in any split, must give a
//! request, a need for more bytes, or an error, never a panic, and never consume more than given.
//!
//! Run: `cargo fuzz run resp_request --sanitizer none -- -max_total_time=600` (from `fuzz/`).

#![no_main]

#[path = "../../examples/db-proxy/resp.rs"]
#[allow(dead_code)]
mod resp;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = resp::Limits {
        max_bulk_len: 1 << 16,
        max_array_len: 1 << 10,
        max_inline_len: 1 << 12,
    };
    // The first byte picks a split point, so incremental parsing is exercised too.
    let (split, bytes) = match data.split_first() {
        Some((&s, rest)) => (s as usize % (rest.len() + 1), rest),
        None => return,
    };
    for end in [split, bytes.len()] {
        let mut start = 0;
        while start <= end {
            match resp::parse_request(&bytes[start..end], &limits) {
                Ok(resp::Parsed::Complete { request, consumed }) => {
                    assert!(consumed > 0 && start + consumed <= end);
                    let buf = &bytes[start..end];
                    let _ = request.args(buf).count();
                    start += consumed;
                }
                Ok(resp::Parsed::Incomplete { need }) => {
                    assert!(need > end - start);
                    break;
                }
                Err(_) => break,
            }
        }
    }
    if let Ok(Some(len)) = resp::scan_reply(bytes, 32) {
        assert!(len <= bytes.len());
    }
});
