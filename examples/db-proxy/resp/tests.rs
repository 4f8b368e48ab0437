//! Unit tests of the RESP parser and writers: every split point, limits, inline quoting, replies.

use super::*;

const SMALL: Limits = Limits {
    max_bulk_len: 100,
    max_array_len: 8,
    max_inline_len: 16,
};

fn parse(buf: &[u8]) -> Result<Parsed, ProtocolError> {
    parse_request(buf, &Limits::default())
}

/// The arguments of the complete request at the start of `buf`, and its length.
fn complete(buf: &[u8], limits: &Limits) -> (Vec<Vec<u8>>, usize) {
    match parse_request(buf, limits) {
        Ok(Parsed::Complete { request, consumed }) => {
            assert_eq!(request.len(), request.args(buf).len());
            (request.args(buf).map(<[u8]>::to_vec).collect(), consumed)
        }
        other => panic!("expected a complete request, got {other:?}"),
    }
}

fn args_of(buf: &[u8]) -> Vec<Vec<u8>> {
    complete(buf, &Limits::default()).0
}

fn strings(words: &[&str]) -> Vec<Vec<u8>> {
    words.iter().map(|w| w.as_bytes().to_vec()).collect()
}

/// Every proper prefix of `buf` is incomplete, with a `need` between the prefix and the
/// whole; the whole parses to the same request as parsing it with trailing bytes.
fn assert_split_invariant(buf: &[u8], limits: &Limits) {
    let Ok(Parsed::Complete { request, consumed }) = parse_request(buf, limits) else {
        panic!("{buf:?} does not parse");
    };
    for cut in 0..consumed {
        match parse_request(&buf[..cut], limits) {
            Ok(Parsed::Incomplete { need }) => {
                assert!(
                    need > cut && need <= consumed,
                    "need {need} at cut {cut} of {buf:?}"
                )
            }
            other => panic!("prefix {cut} of {buf:?} gave {other:?}"),
        }
    }
    let mut longer = buf[..consumed].to_vec();
    longer.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    let again = parse_request(&longer, limits);
    assert_eq!(again, Ok(Parsed::Complete { request, consumed }));
}

#[test]
fn multibulk_arguments_are_ranges_of_the_buffer() {
    let buf = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
    let Ok(Parsed::Complete { request, consumed }) = parse(buf) else {
        panic!("no request");
    };
    assert_eq!(consumed, buf.len());
    assert!(!request.inline);
    assert_eq!(request.args, vec![Arg::Range(8..11), Arg::Range(17..20)]);
    assert_eq!(
        (request.arg(buf, 0), request.arg(buf, 1)),
        (&b"GET"[..], &b"key"[..])
    );
}

#[test]
fn bulk_strings_are_binary_safe() {
    let buf = b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\n\r\n\0\xff\r\n";
    assert_eq!(
        args_of(buf),
        vec![b"SET".to_vec(), vec![], b"\r\n\0\xff".to_vec()]
    );
}

#[test]
fn zero_and_negative_counts_are_empty_requests() {
    for buf in [&b"*0\r\n"[..], b"*-1\r\n", b"*-2\r\n", b"*-10\r\n"] {
        assert_eq!(complete(buf, &Limits::default()), (vec![], buf.len()));
    }
}

#[test]
fn bad_counts_are_invalid_multibulk_length() {
    let cases: [&[u8]; 7] = [
        b"*abc\r\n",
        b"*+1\r\n",
        b"*01\r\n",
        b"*\r\n",
        b"* 1\r\n",
        b"*1\rx",
        b"*99999999999999999999\r\n",
    ];
    for buf in cases {
        assert_eq!(
            parse(buf),
            Err(ProtocolError::InvalidMultibulkLength),
            "{buf:?}"
        );
    }
    assert_eq!(
        parse_request(b"*9\r\n", &SMALL),
        Err(ProtocolError::InvalidMultibulkLength)
    );
    assert!(matches!(
        parse_request(b"*8\r\n", &SMALL),
        Ok(Parsed::Incomplete { .. })
    ));
}

#[test]
fn bad_bulk_lengths_are_refused_before_the_data_arrives() {
    let cases: [&[u8]; 6] = [
        b"*1\r\n$-1\r\n",
        b"*1\r\n$+3\r\n",
        b"*1\r\n$03\r\n",
        b"*1\r\n$x\r\n",
        b"*1\r\n$\r\n",
        b"*1\r\n$3\rX",
    ];
    for buf in cases {
        assert_eq!(parse(buf), Err(ProtocolError::InvalidBulkLength), "{buf:?}");
    }
    assert_eq!(
        parse_request(b"*1\r\n$101\r\n", &SMALL),
        Err(ProtocolError::InvalidBulkLength)
    );
    let huge = b"*1\r\n$536870913\r\n"; // one byte over 512 MiB
    assert_eq!(parse(huge), Err(ProtocolError::InvalidBulkLength));
}

#[test]
fn an_argument_must_start_with_a_dollar() {
    assert_eq!(
        parse(b"*1\r\n:3\r\n"),
        Err(ProtocolError::ExpectedDollar(b':'))
    );
    assert_eq!(
        parse(b"*2\r\n$1\r\na\r\n\x01\r\n"),
        Err(ProtocolError::ExpectedDollar(1))
    );
    assert_eq!(
        ProtocolError::ExpectedDollar(b'x').to_string(),
        "Protocol error: expected '$', got 'x'"
    );
    assert_eq!(
        ProtocolError::ExpectedDollar(b'\r').to_string(),
        "Protocol error: expected '$', got '?'"
    );
}

#[test]
fn bulk_data_must_end_in_crlf() {
    assert_eq!(parse(b"*1\r\n$3\r\nabcXY"), Err(ProtocolError::MissingCrlf));
    assert_eq!(
        parse(b"*1\r\n$3\r\nabc\n\r"),
        Err(ProtocolError::MissingCrlf)
    );
}

#[test]
fn long_length_lines_are_refused_past_the_line_limit() {
    let mut count = b"*".to_vec();
    count.extend_from_slice(&[b'1'; 15]);
    assert!(matches!(
        parse_request(&count, &SMALL),
        Ok(Parsed::Incomplete { .. })
    ));
    count.push(b'1');
    assert_eq!(
        parse_request(&count, &SMALL),
        Err(ProtocolError::TooBigMultibulkCount)
    );

    let mut bulk = b"*1\r\n$".to_vec();
    bulk.extend_from_slice(&[b'1'; 15]);
    assert!(matches!(
        parse_request(&bulk, &SMALL),
        Ok(Parsed::Incomplete { .. })
    ));
    bulk.push(b'1');
    assert_eq!(
        parse_request(&bulk, &SMALL),
        Err(ProtocolError::TooBigBulkCount)
    );

    let junk = [b"*1\r\n".as_slice(), &[b'X'; 17]].concat();
    assert_eq!(
        parse_request(&junk, &SMALL),
        Err(ProtocolError::TooBigBulkCount)
    );
}

#[test]
fn the_default_line_limit_is_64_kib() {
    let mut count = vec![b'1'; 64 * 1024];
    count[0] = b'*';
    assert!(matches!(parse(&count), Ok(Parsed::Incomplete { .. })));
    count.push(b'1');
    assert_eq!(parse(&count), Err(ProtocolError::TooBigMultibulkCount));
}

#[test]
fn need_covers_a_whole_bulk_string() {
    assert_eq!(parse(b""), Ok(Parsed::Incomplete { need: 1 }));
    assert_eq!(
        parse(b"*2\r\n$100\r\nab"),
        Ok(Parsed::Incomplete { need: 4 + 6 + 102 })
    );
    assert_eq!(
        parse(b"*2\r\n$1\r\na\r\n"),
        Ok(Parsed::Incomplete { need: 12 })
    );
    assert_eq!(
        parse(b"*2\r\n$1\r\na\r\n$5"),
        Ok(Parsed::Incomplete { need: 14 })
    );
}

#[test]
fn inline_commands_split_on_blanks() {
    assert_eq!(args_of(b"GET key\r\n"), strings(&["GET", "key"]));
    assert_eq!(args_of(b"  set \t a   b \n"), strings(&["set", "a", "b"]));
    assert_eq!(args_of(b"PING\r\r\n"), strings(&["PING"]));
    assert_eq!(args_of(b"a\x0bb \x0cc\n"), strings(&["a\x0bb", "c"]));
    let (args, consumed) = complete(b"PING\nPING\n", &Limits::default());
    assert_eq!((args, consumed), (strings(&["PING"]), 5));
    let Ok(Parsed::Complete { request, .. }) = parse(b"GET k\n") else {
        panic!("no request");
    };
    assert!(request.inline);
    assert_eq!(request.args, vec![Arg::Range(0..3), Arg::Range(4..5)]);
}

#[test]
fn blank_inline_lines_are_empty_requests() {
    for buf in [&b"\r\n"[..], b"\n", b" \t \r\n"] {
        assert_eq!(complete(buf, &Limits::default()), (vec![], buf.len()));
    }
}

#[test]
fn inline_quotes_follow_sdssplitargs() {
    assert_eq!(
        args_of(b"SET \"a b\" 'c d'\r\n"),
        strings(&["SET", "a b", "c d"])
    );
    assert_eq!(args_of(b"SET \"\" ''\r\n"), strings(&["SET", "", ""]));
    assert_eq!(args_of(b"x\"y z\" w\n"), strings(&["xy z", "w"]));
    assert_eq!(
        args_of(b"\"\\n\\r\\t\\b\\a\\\\\\\"\\q\"\n"),
        vec![b"\n\r\t\x08\x07\\\"q".to_vec()]
    );
    assert_eq!(
        args_of(b"\"\\x41\\x7a\\xFf\\x4g\"\n"),
        vec![b"Az\xffx4g".to_vec()]
    );
    assert_eq!(args_of(b"'it\\'s' '\\n'\n"), strings(&["it's", "\\n"]));
    assert_eq!(args_of(b"\"a\"\x0b'b'\n"), strings(&["a", "b"]));
}

#[test]
fn unbalanced_quotes_are_errors() {
    let cases: [&[u8]; 6] = [
        b"ECHO \"abc\r\n",
        b"ECHO \"a\"b\r\n",
        b"ECHO 'a'b\n",
        b"ECHO 'abc\n",
        b"ECHO \"abc\\\"\n",
        b"ECHO \"\\\n",
    ];
    for buf in cases {
        assert_eq!(parse(buf), Err(ProtocolError::UnbalancedQuotes), "{buf:?}");
    }
    assert_eq!(
        ProtocolError::UnbalancedQuotes.to_string(),
        "Protocol error: unbalanced quotes in request"
    );
}

#[test]
fn a_nul_byte_ends_an_inline_line() {
    assert_eq!(
        complete(b"GET a\0b c\r\n", &Limits::default()),
        (strings(&["GET", "a"]), 11)
    );
}

#[test]
fn inline_lines_over_the_limit_are_refused() {
    let line = [b'a'; 16];
    assert!(matches!(
        parse_request(&line, &SMALL),
        Ok(Parsed::Incomplete { .. })
    ));
    let full = [&line[..], b"\n"].concat();
    assert_eq!(complete(&full, &SMALL).1, 17);
    let long = [&line[..], b"a"].concat();
    assert_eq!(
        parse_request(&long, &SMALL),
        Err(ProtocolError::TooBigInline)
    );
    assert_eq!(
        ProtocolError::TooBigInline.to_string(),
        "Protocol error: too big inline request"
    );
}

#[test]
fn every_split_point_parses_the_same() {
    let requests: [&[u8]; 8] = [
        b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n",
        b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n",
        b"*0\r\n",
        b"*-1\r\n",
        b"*1\r\n$12\r\n\r\n\r\n*1\r\n$0\r\n\r\n",
        b"SET \"a\\x00b\" 'c\\'d' e\r\n",
        b"  PING  \n",
        b"\r\n",
    ];
    let small_lines = Limits {
        max_inline_len: 24,
        ..SMALL
    };
    for buf in requests {
        assert_split_invariant(buf, &Limits::default());
        assert_split_invariant(buf, &small_lines);
    }
}

/// xorshift64: a small deterministic generator for the randomized tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, alphabet: &[u8], max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len())])
            .collect()
    }
}

const ALPHABET: &[u8] = b"ab*$\r\n\t \"'\\x0\x00\xff";

/// Writes `arg` as an inline word: bare if that reads back unchanged, else double-quoted.
fn quote_inline(arg: &[u8], out: &mut Vec<u8>) {
    let bare = |b: &u8| b.is_ascii_alphanumeric() || b"*$".contains(b);
    if !arg.is_empty() && arg.iter().all(bare) {
        out.extend_from_slice(arg);
        return;
    }
    out.push(b'"');
    for &b in arg {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b' '..=b'~' => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    out.push(b'"');
}

/// A random request, as bytes, and its arguments.
fn random_request(rng: &mut Rng) -> (Vec<u8>, Vec<Vec<u8>>) {
    let args: Vec<Vec<u8>> = (0..rng.below(5)).map(|_| rng.bytes(ALPHABET, 12)).collect();
    let mut buf = Vec::new();
    if rng.below(3) == 0 {
        for (i, arg) in args.iter().enumerate() {
            if i > 0 || arg.first() == Some(&b'*') {
                buf.push(b' ');
            }
            quote_inline(arg, &mut buf);
        }
        buf.extend_from_slice(if rng.below(2) == 0 { b"\r\n" } else { b"\n" });
    } else {
        encode_command(&mut buf, args.iter().map(Vec::as_slice));
    }
    (buf, args)
}

#[test]
fn random_requests_parse_the_same_at_every_split_point() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2_000 {
        let (buf, args) = random_request(&mut rng);
        assert_eq!(
            complete(&buf, &Limits::default()),
            (args, buf.len()),
            "{buf:?}"
        );
        assert_split_invariant(&buf, &Limits::default());
    }
}

#[test]
fn a_random_pipelined_stream_parses_in_random_chunks() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut stream, mut expected) = (Vec::new(), Vec::new());
    for _ in 0..3_000 {
        let (buf, args) = random_request(&mut rng);
        stream.extend_from_slice(&buf);
        expected.push(args);
    }
    let (mut buf, mut fed, mut need, mut parsed, mut parses) = (Vec::new(), 0, 1, vec![], 0);
    while fed < stream.len() {
        let chunk = (1 + rng.below(40)).min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + chunk]);
        fed += chunk;
        while buf.len() >= need {
            parses += 1;
            match parse_request(&buf, &Limits::default()) {
                Ok(Parsed::Complete { request, consumed }) => {
                    parsed.push(request.args(&buf).map(<[u8]>::to_vec).collect::<Vec<_>>());
                    buf.drain(..consumed);
                    need = 1;
                }
                Ok(Parsed::Incomplete { need: more }) => need = more,
                Err(err) => panic!("{err} at request {}", parsed.len()),
            }
        }
    }
    assert!(buf.is_empty());
    assert_eq!(parsed, expected);
    assert!(parses < 2 * stream.len());
}

#[test]
fn parse_i64_matches_string2ll() {
    let good: [(&[u8], i64); 6] = [
        (b"0", 0),
        (b"7", 7),
        (b"-7", -7),
        (b"1234567890", 1_234_567_890),
        (b"9223372036854775807", i64::MAX),
        (b"-9223372036854775808", i64::MIN),
    ];
    for (text, n) in good {
        assert_eq!(parse_i64(text), Some(n));
    }
    let bad: [&[u8]; 11] = [
        b"",
        b"-",
        b"+1",
        b"-0",
        b"01",
        b" 1",
        b"1 ",
        b"1a",
        b"9223372036854775808",
        b"-9223372036854775809",
        b"99999999999999999999",
    ];
    for text in bad {
        assert_eq!(parse_i64(text), None, "{text:?}");
    }
}

#[test]
fn scan_reply_finds_each_type() {
    let replies: [&[u8]; 15] = [
        b"+OK\r\n",
        b"-ERR no\r\n",
        b":-12\r\n",
        b"$5\r\nhe\r\no\r\n",
        b"$0\r\n\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
        b"_\r\n",
        b",1.5\r\n",
        b"#t\r\n",
        b"(12345678901234567890\r\n",
        b"%2\r\n+a\r\n:1\r\n+b\r\n~1\r\n=7\r\ntxt:abc\r\n",
        b"|1\r\n+ttl\r\n:3\r\n>2\r\n+msg\r\n!3\r\nbad\r\n",
    ];
    for reply in replies {
        let stream = [reply, b"+NEXT\r\n"].concat();
        assert_eq!(scan_reply(&stream, 8), Ok(Some(reply.len())), "{reply:?}");
        for cut in 0..reply.len() {
            assert_eq!(
                scan_reply(&reply[..cut], 8),
                Ok(None),
                "{reply:?} cut at {cut}"
            );
        }
    }
}

#[test]
fn scan_reply_refuses_malformed_replies() {
    let cases: [(&[u8], ProtocolError); 8] = [
        (b"?x\r\n", ProtocolError::BadReplyType(b'?')),
        (b"$x\r\n", ProtocolError::BadReplyLength),
        (b"$-2\r\n", ProtocolError::BadReplyLength),
        (b"%-1\r\n", ProtocolError::BadReplyLength),
        (b"*-3\r\n", ProtocolError::BadReplyLength),
        (b"$3\r\nabcd\r\n", ProtocolError::MissingCrlf),
        (b"+OK\rX", ProtocolError::MissingCrlf),
        (b"*2\r\n:1\r\n\r\n", ProtocolError::BadReplyType(b'\r')),
    ];
    for (reply, err) in cases {
        assert_eq!(scan_reply(reply, 8), Err(err), "{reply:?}");
    }
}

#[test]
fn scan_reply_bounds_nesting_without_recursion() {
    assert_eq!(scan_reply(b":1\r\n", 0), Ok(Some(4)));
    assert_eq!(scan_reply(b"*0\r\n", 0), Err(ProtocolError::ReplyTooDeep));
    assert_eq!(scan_reply(b"*1\r\n*0\r\n", 2), Ok(Some(8)));
    assert_eq!(
        scan_reply(b"*1\r\n*1\r\n*0\r\n", 2),
        Err(ProtocolError::ReplyTooDeep)
    );
    let deep = b"*1\r\n".repeat(1_000_000);
    assert_eq!(scan_reply(&deep, usize::MAX), Ok(None));
    let whole = [&deep[..], b":1\r\n"].concat();
    assert_eq!(scan_reply(&whole, usize::MAX), Ok(Some(whole.len())));
    assert_eq!(scan_reply(&whole, 64), Err(ProtocolError::ReplyTooDeep));
}

#[test]
fn scan_reply_skips_bulk_data_by_length() {
    let mut reply = b"*2\r\n$1000000\r\n".to_vec();
    reply.extend(std::iter::repeat_n(b'\r', 1_000_000));
    reply.extend_from_slice(b"\r\n:7\r\n");
    assert_eq!(scan_reply(&reply, 4), Ok(Some(reply.len())));
    assert_eq!(scan_reply(&reply[..reply.len() - 1], 4), Ok(None));
}

#[test]
fn encoders_write_exact_resp() {
    let mut out = Vec::new();
    write_simple(&mut out, "OK");
    write_error(&mut out, "ERR bad\r\nthing");
    write_integer(&mut out, 0);
    write_integer(&mut out, i64::MIN);
    write_integer(&mut out, i64::MAX);
    write_bulk(&mut out, b"a\r\nb");
    write_bulk(&mut out, b"");
    write_null(&mut out);
    write_array_len(&mut out, 12);
    let expected: &[u8] = b"+OK\r\n-ERR bad  thing\r\n:0\r\n:-9223372036854775808\r\n\
            :9223372036854775807\r\n$4\r\na\r\nb\r\n$0\r\n\r\n$-1\r\n*12\r\n";
    assert_eq!(out, expected);
}

#[test]
fn encode_command_round_trips_through_the_parser() {
    let mut out = Vec::new();
    encode_command(&mut out, [&b"SET"[..], b"k", b""]);
    assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    let inline = b"SET \"a b\" c\r\n";
    let Ok(Parsed::Complete { request, .. }) = parse(inline) else {
        panic!("no request");
    };
    let mut encoded = Vec::new();
    encode_command(&mut encoded, request.args(inline));
    assert_eq!(args_of(&encoded), strings(&["SET", "a b", "c"]));
}

#[test]
fn error_texts_match_redis_server() {
    let texts = [
        (
            ProtocolError::TooBigMultibulkCount,
            "too big mbulk count string",
        ),
        (ProtocolError::TooBigBulkCount, "too big bulk count string"),
        (
            ProtocolError::InvalidMultibulkLength,
            "invalid multibulk length",
        ),
        (ProtocolError::InvalidBulkLength, "invalid bulk length"),
        (ProtocolError::MissingCrlf, "missing CRLF terminator"),
        (ProtocolError::BadReplyType(0), "bad reply type '?'"),
        (ProtocolError::BadReplyLength, "invalid reply length"),
        (ProtocolError::ReplyTooDeep, "reply nested too deeply"),
    ];
    for (err, text) in texts {
        assert_eq!(err.to_string(), format!("Protocol error: {text}"));
    }
}

#[test]
fn a_request_trickled_in_is_parsed_in_linear_work() {
    // 20,000 one-byte arguments, delivered one byte at a time: a parser that starts over on
    // every read would look at ~10^9 arguments; resuming looks at each once, plus one
    // incomplete attempt per read.
    let limits = Limits::default();
    let args = 20_000;
    let mut wire = format!("*{args}\r\n").into_bytes();
    for i in 0..args {
        wire.extend_from_slice(format!("$1\r\n{}\r\n", i % 10).as_bytes());
    }
    let mut partial = Partial::default();
    let mut complete = None;
    for end in 1..=wire.len() {
        match parse_request_resume(&wire[..end], &limits, &mut partial).unwrap() {
            Parsed::Complete { request, consumed } => {
                complete = Some((request, consumed, end));
                break;
            }
            Parsed::Incomplete { need } => assert!(need > end),
        }
    }
    let (request, consumed, end) = complete.expect("the request completes");
    assert_eq!(
        (consumed, end, request.len()),
        (wire.len(), wire.len(), args)
    );
    assert_eq!(request.arg(&wire, 19_999), b"9");
    let reads = wire.len();
    assert!(
        partial.bulks_examined <= args + reads,
        "{} bulk parses for {args} arguments over {reads} reads",
        partial.bulks_examined
    );
    // And the same request in one piece parses the same.
    assert_eq!(
        parse_request(&wire, &limits).unwrap(),
        Parsed::Complete { request, consumed }
    );
}

#[test]
fn an_inline_line_trickled_in_is_searched_once() {
    let limits = Limits::default();
    let line = format!("SET key {}\r\n", "v".repeat(30_000));
    let mut partial = Partial::default();
    for end in 1..line.len() {
        let parsed = parse_request_resume(&line.as_bytes()[..end], &limits, &mut partial);
        assert!(matches!(parsed, Ok(Parsed::Incomplete { .. })));
        assert_eq!(partial.scanned, end);
    }
    match parse_request_resume(line.as_bytes(), &limits, &mut partial).unwrap() {
        Parsed::Complete { request, consumed } => {
            assert_eq!((request.len(), consumed), (3, line.len()));
        }
        other => panic!("{other:?}"),
    }
}
