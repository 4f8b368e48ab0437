//! Cancel-safety claims of corio-io's reads, each tested: a read dropped at a random point (after
//! its bytes arrived or not), or cut short by a timeout, loses no byte and reorders none; an
//! explicit cancel gives back the buffer with whatever the read got.

mod support;

use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use corio::net::{TcpListener, TcpStream, UnixStream};
use corio::rt::{block_on, spawn, time, yield_now, Cancellable};
use support::{pattern, poll_once};

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = spawn(async move { TcpStream::connect(addr).await.unwrap() });
    let (server, _) = listener.accept().await.unwrap();
    (server, client.await.unwrap())
}

/// Writes `data` in random chunks, yielding between them so reads interleave with arrivals.
fn write_in_chunks(
    writer: TcpStream,
    data: Vec<u8>,
    seed: u64,
    max_yields: u64,
) -> corio::JoinHandle<()> {
    spawn(async move {
        let mut rng = Rng(seed);
        let mut pos = 0;
        while pos < data.len() {
            let end = (pos + 1 + rng.below(48) as usize).min(data.len());
            let (res, _) = writer.write_all(data[pos..end].to_vec()).await;
            res.unwrap();
            pos = end;
            for _ in 0..rng.below(max_yields + 1) {
                yield_now().await;
            }
        }
        // The writer drops here: EOF after the last byte.
    })
}

/// 100,000 reads, each dropped at a random point (before submission, in flight, or after its
/// CQE arrived but before it was polled again); the bytes the stream hands out through the
/// reads that do complete must be the payload exactly.
#[test]
fn dropped_reads_lose_no_byte_at_100k_random_points() {
    block_on(async {
        let (reader, writer) = tcp_pair().await;
        let data = pattern(3 << 20, 0);
        let writing = write_in_chunks(writer, data.clone(), 7, 2);
        let mut rng = Rng(11);
        let mut got = Vec::with_capacity(data.len());
        let mut dropped = 0u32;
        let mut dropped_after_arrival = 0u32;
        while dropped < 100_000 {
            let mut read = pin!(reader.read(Vec::with_capacity(1 + rng.below(64) as usize)));
            // Poll it 0, 1 or 2 times with a tick between; then drop it, or (1 in 8) finish it.
            let polls = rng.below(3);
            let mut finished = None;
            for _ in 0..polls {
                if let Poll::Ready(out) = poll_once(&mut read) {
                    finished = Some(out);
                    break;
                }
                yield_now().await; // one tick: the CQE may land while nobody polls
            }
            if finished.is_none() && rng.below(8) == 0 {
                finished = Some(read.as_mut().await);
            }
            match finished {
                Some((res, buf)) => {
                    if res.unwrap() == 0 {
                        break; // EOF: everything was read
                    }
                    got.extend_from_slice(&buf);
                }
                None => {
                    dropped += 1;
                    if polls > 0 {
                        dropped_after_arrival += 1;
                    }
                }
            }
        }
        // Read the rest to EOF.
        loop {
            let (res, buf) = reader.read(Vec::with_capacity(65536)).await;
            if res.unwrap() == 0 {
                break;
            }
            got.extend_from_slice(&buf);
        }
        writing.await.unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes lost or reordered");
        assert_eq!(
            dropped, 100_000,
            "the payload ran out before 100,000 cancellations"
        );
        assert!(dropped_after_arrival > 10_000, "{dropped_after_arrival}");
        assert_eq!(corio::rt::in_flight(), 0);
    });
}

/// The same with `timeout`: reads under random short deadlines (0 to 20 µs) until 100,000 have
/// fired, some as the bytes land.
#[test]
fn timed_out_reads_lose_no_byte_at_100k_random_deadlines() {
    block_on(async {
        let (reader, writer) = tcp_pair().await;
        let data = pattern(3 << 20, 0);
        let writing = write_in_chunks(writer, data.clone(), 3, 2);
        let mut rng = Rng(5);
        let mut got = Vec::with_capacity(data.len());
        let mut timeouts = 0u32;
        let mut eof = false;
        while timeouts < 100_000 && !eof {
            // Half the deadlines are zero: the read is dropped before its SQE even reaches the
            // kernel, with its cancel right behind it in the same submission.
            let deadline = Duration::from_micros(rng.below(2) * rng.below(21));
            let buf = Vec::with_capacity(1 + rng.below(64) as usize);
            match time::timeout(deadline, reader.read(buf)).await {
                Ok((res, buf)) => {
                    eof = res.unwrap() == 0;
                    got.extend_from_slice(&buf);
                }
                Err(_) => timeouts += 1,
            }
        }
        while !eof {
            let (res, buf) = reader.read(Vec::with_capacity(65536)).await;
            eof = res.unwrap() == 0;
            got.extend_from_slice(&buf);
        }
        writing.await.unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes lost or reordered");
        assert_eq!(
            timeouts, 100_000,
            "the payload ran out before 100,000 timeouts"
        );
    });
}

/// `timeout_or_cancel` and `cancel` give the buffer back, and the bytes with it when the read
/// completed first; nothing is kept twice or lost.
#[test]
fn cancel_and_timeout_or_cancel_give_the_buffer_back() {
    block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        // Nothing sent: the deadline passes, the buffer comes back empty with ECANCELED.
        let buf = Vec::with_capacity(64);
        let timed_out = time::timeout_or_cancel(Duration::from_millis(2), a.read(buf))
            .await
            .unwrap_err();
        let (res, buf) = timed_out.into_inner();
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::ECANCELED));
        assert_eq!((buf.len(), buf.capacity()), (0, 64));
        // Bytes land before the cancel is seen: cancel returns them.
        let mut read = a.read(buf);
        assert!(poll_once(&mut read).is_pending());
        let (res, _) = b.write_all(b"hello".to_vec()).await;
        res.unwrap();
        yield_now().await;
        let (res, buf) = read.cancel().await;
        assert_eq!((res.unwrap(), &buf[..]), (5, &b"hello"[..]));
        // A read cancelled before its first poll never reaches the ring.
        let (res, buf) = a.read(buf).cancel().await;
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::ECANCELED));
        assert_eq!(&buf[..], b"hello");
        // A dropped read's bytes go to the next read, then the stream goes on.
        let mut read = a.read(Vec::with_capacity(64));
        assert!(poll_once(&mut read).is_pending());
        let (res, _) = b.write_all(b"kept".to_vec()).await;
        res.unwrap();
        yield_now().await;
        drop(read);
        let (res, buf) = a.read(Vec::with_capacity(2)).await;
        assert_eq!((res.unwrap(), &buf[..]), (2, &b"ke"[..]));
        let (res, buf) = a.read(Vec::with_capacity(64)).await;
        assert_eq!((res.unwrap(), &buf[..]), (2, &b"pt"[..]));
        assert_eq!(corio::rt::in_flight(), 0);
    });
}

/// `RecvStream::next` is cancel-safe: its multishot receive keeps running when a `next` future
/// is dropped, and the buffers it filled wait in the op for the next call. 20,000 `next`
/// futures dropped at random points lose no byte of a streamed payload.
#[test]
fn dropped_recv_stream_nexts_lose_no_byte() {
    block_on(async {
        let (reader, writer) = tcp_pair().await;
        let data = pattern(1 << 20, 0);
        let writing = write_in_chunks(writer, data.clone(), 13, 2);
        let ring = corio::io::buf::BufRing::new(64, 512).unwrap();
        let mut received = reader.recv_stream(&ring);
        let mut rng = Rng(17);
        let (mut got, mut dropped) = (Vec::with_capacity(data.len()), 0u32);
        loop {
            let mut next = pin!(received.next());
            let mut chunk = None;
            for _ in 0..rng.below(3) {
                if let Poll::Ready(item) = poll_once(&mut next) {
                    chunk = Some(item);
                    break;
                }
                yield_now().await;
            }
            if chunk.is_none() && (dropped >= 20_000 || rng.below(4) == 0) {
                chunk = Some(next.as_mut().await);
            }
            match chunk {
                Some(Some(buf)) => got.extend_from_slice(&buf.unwrap()),
                Some(None) => break, // EOF
                None => dropped += 1,
            }
        }
        writing.await.unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes lost or reordered");
        assert!(dropped >= 20_000, "only {dropped} dropped nexts");
    });
}

/// `File::read_at` is cancel-safe in the sense its docs give: a positional read consumes
/// nothing, so reads dropped at random points leave the file as it was and the same ranges
/// read again return its bytes.
#[test]
fn dropped_positional_reads_leave_the_file_readable() {
    let path = std::env::temp_dir().join(format!("corio-cancel-{}.bin", std::process::id()));
    let data = pattern(256 * 1024, 0);
    std::fs::write(&path, &data).unwrap();
    block_on(async {
        let file = corio::fs::File::open(&path).await.unwrap();
        let mut rng = Rng(23);
        for _ in 0..2_000 {
            let pos = rng.below(data.len() as u64);
            let mut read = pin!(file.read_at(Vec::with_capacity(4096), pos));
            for _ in 0..rng.below(3) {
                if poll_once(&mut read).is_ready() {
                    break;
                }
                yield_now().await;
            }
        }
        let (res, buf) = file.read_at(Vec::with_capacity(data.len()), 0).await;
        assert_eq!(res.unwrap(), data.len());
        assert!(buf == data);
    });
    let _ = std::fs::remove_file(&path);
}

/// A cancelled write gives back its buffer and the count the kernel took, so the bytes the
/// peer receives are exactly the prefixes the writer was told about: no byte sent unknowingly.
#[test]
fn cancelled_writes_report_exactly_what_was_sent() {
    block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let data = pattern(8 << 20, 3);
        let mut rng = Rng(29);
        let mut told = 0usize; // bytes the writer learned were sent
        let mut received = Vec::new();
        let mut cancelled_with_bytes = 0;
        for _ in 0..200 {
            if told >= data.len() {
                break;
            }
            let end = (told + 1 + rng.below(1 << 20) as usize).min(data.len());
            let mut write = a.write(data[told..end].to_vec());
            if poll_once(&mut write).is_ready() {
                unreachable!("a write is submitted on its first poll");
            }
            // The reader takes a random amount while the write is in flight, then the write is
            // cancelled wherever it got to.
            let mut want = rng.below(300_000) as usize;
            // The kernel may take only part of the write, so stop reading when nothing more
            // comes for 2 ms (a timed-out read keeps its bytes for the next one).
            while want > 0 {
                let read = b.read(Vec::with_capacity(want.min(65536)));
                let Ok((res, buf)) = time::timeout(Duration::from_millis(2), read).await else {
                    break;
                };
                let n = res.unwrap();
                received.extend_from_slice(&buf);
                want = want.saturating_sub(n);
                if n == 0 {
                    break;
                }
            }
            match write.cancel().await {
                (Ok(n), _) => {
                    told += n;
                    cancelled_with_bytes += usize::from(n > 0);
                }
                (Err(e), _) => assert_eq!(e.raw_os_error(), Some(libc::ECANCELED)),
            }
        }
        drop(a);
        loop {
            let (res, buf) = b.read(Vec::with_capacity(65536)).await;
            if res.unwrap() == 0 {
                break;
            }
            received.extend_from_slice(&buf);
        }
        assert_eq!(
            received.len(),
            told,
            "the peer got bytes the writer was not told of"
        );
        assert!(received[..] == data[..told]);
        assert!(cancelled_with_bytes > 10, "{cancelled_with_bytes}");
    });
}
