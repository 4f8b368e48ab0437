//! Property tests of the RESP parser (proptest): any request, encoded and then fed to the
//! parser in random pieces, parses to the same arguments (a prefix never parses as an error, and
//! pipelined requests come out in order); arbitrary bytes never panic the parser or the reply
//! scanner.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::resp::{self, Limits, Parsed};

/// Parses `stream` as a client would receive it, in pieces ending at `cuts` (sorted, in
/// range), and returns the argument lists of every complete request, in order.
fn parse_in_pieces(stream: &[u8], cuts: &[usize]) -> Result<Vec<Vec<Vec<u8>>>, String> {
    let limits = Limits::default();
    let mut received = 0;
    let mut start = 0;
    let mut out = Vec::new();
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        received = received.max(cut);
        loop {
            match resp::parse_request(&stream[start..received], &limits) {
                Ok(Parsed::Complete { request, consumed }) => {
                    let buf = &stream[start..received];
                    out.push(request.args(buf).map(<[u8]>::to_vec).collect());
                    start += consumed;
                }
                Ok(Parsed::Incomplete { need }) => {
                    if need <= received - start {
                        return Err(format!("need {need} is not past what is buffered"));
                    }
                    break;
                }
                Err(err) => return Err(format!("a valid stream failed: {err}")),
            }
        }
    }
    if start != stream.len() {
        return Err(format!("{} bytes left unparsed", stream.len() - start));
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn requests_split_anywhere_parse_to_the_same_arguments(
        requests in vec(vec(vec(any::<u8>(), 0..48), 1..6), 1..8),
        cuts in vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for args in &requests {
            resp::encode_command(&mut stream, args.iter().map(Vec::as_slice));
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.sort_unstable();
        let parsed = parse_in_pieces(&stream, &cuts).map_err(TestCaseError::fail)?;
        prop_assert_eq!(parsed, requests);
    }

    #[test]
    fn garbage_never_panics_and_consumes_within_bounds(bytes in vec(any::<u8>(), 0..256)) {
        // Whatever comes in, the parser answers: a request, a need for more, or an error.
        let limits = Limits { max_bulk_len: 1024, max_array_len: 64, max_inline_len: 128 };
        let mut start = 0;
        for _ in 0..bytes.len() + 1 {
            match resp::parse_request(&bytes[start..], &limits) {
                Ok(Parsed::Complete { consumed, .. }) => {
                    prop_assert!(consumed > 0 && consumed <= bytes.len() - start);
                    start += consumed;
                }
                Ok(Parsed::Incomplete { .. }) | Err(_) => break,
            }
        }
        // The reply scanner too: a length within the input, or incomplete, or an error.
        if let Ok(Some(len)) = resp::scan_reply(&bytes, 8) {
            prop_assert!(len > 0 && len <= bytes.len());
        }
    }
}
