//! Integration tests of corio-io's files: real files in a fresh temp dir, through the ring.
//!
//! Every test takes `serial()` first: several of them count this process's open fds, which
//! any file opened by a test running alongside would disturb.

mod support;

use std::io::ErrorKind;
use std::pin::pin;

use corio::fs::{self, File, OpenOptions};
use corio::io::buf::{AlignedBuf, IoBuf};
use corio::rt::{block_on, in_flight, yield_now};
use support::{pattern, poll_once, serial, TempDir};

/// A mebibyte, the size of the round-trip files.
const MIB: usize = 1 << 20;

/// How many fds this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// Turns the loop until the ring holds no op, orphans included.
async fn until_no_op_in_flight() {
    for _ in 0..100_000 {
        if in_flight() == 0 {
            return;
        }
        yield_now().await;
    }
    panic!("{} ops still in flight after 100,000 ticks", in_flight());
}

#[test]
fn a_mebibyte_survives_write_fsync_close_and_reopen() {
    let _serial = serial();
    let dir = TempDir::new("fs-roundtrip");
    let path = dir.path().join("data.bin");
    let data = pattern(MIB, 0);
    block_on(async {
        let file = File::create(&path).await.unwrap();
        let (res, data) = file.write_all_at(data, 0).await;
        res.unwrap();
        file.sync_all().await.unwrap();
        file.sync_data().await.unwrap();
        file.close().await.unwrap();

        let file = File::open(&path).await.unwrap();
        let (res, back) = file.read_exact_at(Vec::with_capacity(MIB), 0).await;
        res.unwrap();
        assert!(back == data, "the bytes read back differ");
        let (n, tail) = file.read_at(Vec::with_capacity(16), MIB as u64).await;
        assert_eq!((n.unwrap(), tail.len()), (0, 0), "a read at EOF gives 0");
        file.close().await.unwrap();
    });
    assert_eq!(std::fs::read(&path).unwrap(), pattern(MIB, 0));
}

#[test]
fn o_direct_round_trips_with_aligned_buffers() {
    let _serial = serial();
    let dir = TempDir::new("fs-direct");
    let path = dir.path().join("direct.bin");
    block_on(async {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).direct(true);
        let file = match options.open(&path).await {
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                eprintln!(
                    "SKIP o_direct_round_trips_with_aligned_buffers: the filesystem of {} \
                     refuses O_DIRECT ({err})",
                    dir.path().display()
                );
                return;
            }
            other => other.unwrap(),
        };
        let mut out = AlignedBuf::with_capacity(MIB);
        out.extend_from_slice(&pattern(MIB, 0));
        let (res, _) = file.write_all_at(out, 0).await;
        res.unwrap();
        file.sync_all().await.unwrap();
        file.close().await.unwrap();

        let file = options
            .read(true)
            .write(false)
            .create(false)
            .open(&path)
            .await
            .unwrap();
        let quarter = MIB / 4;
        let mut read_back = Vec::with_capacity(MIB);
        for part in 0..4 {
            let buf = AlignedBuf::with_capacity(quarter);
            let (res, buf) = file.read_exact_at(buf, (part * quarter) as u64).await;
            res.unwrap();
            assert_eq!(buf.as_ptr() as usize % 4096, 0);
            read_back.extend_from_slice(&buf);
        }
        assert!(
            read_back == pattern(MIB, 0),
            "O_DIRECT bytes read back differ"
        );
        file.close().await.unwrap();
    });
}

#[test]
fn read_exact_at_past_eof_is_unexpected_eof_and_gives_the_buffer_back() {
    let _serial = serial();
    let dir = TempDir::new("fs-eof");
    let path = dir.path().join("short.txt");
    block_on(async {
        fs::write(&path, b"0123456789".as_slice()).await.unwrap();
        let file = File::open(&path).await.unwrap();

        let (res, buf) = file.read_exact_at(Vec::with_capacity(8), 4).await;
        assert_eq!(res.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        assert_eq!(buf, b"456789", "the bytes before EOF are kept");

        let (res, buf) = file.read_exact_at(Vec::with_capacity(4), 6).await;
        res.unwrap();
        assert_eq!(buf, b"6789");

        let (res, _) = file.read_at(b"full".to_vec(), 0).await;
        assert_eq!(res.unwrap_err().kind(), ErrorKind::InvalidInput);
    });
}

#[test]
fn vectored_and_sliced_writes_read_back_in_order() {
    let _serial = serial();
    let dir = TempDir::new("fs-vectored");
    let path = dir.path().join("parts.bin");
    block_on(async {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(true);
        let file = options.open(&path).await.unwrap();
        let parts = vec![
            b"alpha ".to_vec(),
            Vec::new(),
            b"beta ".to_vec(),
            b"gamma".to_vec(),
        ];
        let (n, parts) = file.writev_at(parts, 0).await;
        assert_eq!(n.unwrap(), 16);
        assert_eq!(parts[3], b"gamma", "the buffers come back");

        // Overwrite "beta" through a window into a larger buffer.
        let (res, whole) = file.write_all_at(b"xxBETAxx".to_vec().slice(2..6), 6).await;
        res.unwrap();
        assert_eq!(whole.into_inner(), b"xxBETAxx");

        let bufs = vec![
            Vec::with_capacity(6),
            Vec::with_capacity(5),
            Vec::with_capacity(64),
        ];
        let (n, bufs) = file.readv_at(bufs, 0).await;
        assert_eq!(n.unwrap(), 16);
        assert_eq!(
            bufs,
            [b"alpha ".to_vec(), b"BETA ".to_vec(), b"gamma".to_vec()]
        );

        let (res, window) = file.read_at(vec![b'>'; 2].slice(..), 0).await;
        assert_eq!(res.unwrap_err().kind(), ErrorKind::InvalidInput, "no room");
        let mut buf = window.into_inner();
        buf.reserve_exact(5);
        let (res, window) = file.read_exact_at(buf.slice(2..7), 0).await;
        res.unwrap();
        assert_eq!(window.into_inner(), b">>alpha");
    });
}

#[test]
fn metadata_reports_len_type_and_fallocated_growth() {
    let _serial = serial();
    let dir = TempDir::new("fs-metadata");
    let path = dir.path().join("meta.bin");
    block_on(async {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).mode(0o640);
        let file = options.open(&path).await.unwrap();
        let (res, _) = file.write_all_at(pattern(12_345, 0), 0).await;
        res.unwrap();
        let meta = file.metadata().await.unwrap();
        assert_eq!(meta.len(), 12_345);
        assert!(meta.is_file() && !meta.is_dir());
        assert!(meta.block_size() >= 512);
        assert_eq!(
            meta.mode() & 0o7777 & !0o640,
            0,
            "the umask only removes bits"
        );
        let modified = meta.modified().unwrap();
        let std_modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(modified, std_modified);

        file.fallocate(0, 65_536).await.unwrap();
        assert_eq!(file.metadata().await.unwrap().len(), 65_536);
    });
}

#[test]
fn fs_read_and_write_round_trip() {
    let _serial = serial();
    let dir = TempDir::new("fs-helpers");
    let path = dir.path().join("helper.bin");
    block_on(async {
        fs::write(&path, pattern(300_001, 0)).await.unwrap();
        assert!(fs::read(&path).await.unwrap() == pattern(300_001, 0));
        fs::write(&path, b"".as_slice()).await.unwrap();
        assert_eq!(fs::read(&path).await.unwrap(), b"");
        // A file whose statx size is 0 but which has content.
        let status = fs::read("/proc/self/status").await.unwrap();
        assert!(
            status.starts_with(b"Name:"),
            "{}",
            String::from_utf8_lossy(&status)
        );
    });
}

#[test]
fn rename_remove_and_create_dir() {
    let _serial = serial();
    let dir = TempDir::new("fs-names");
    let (a, b, sub) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("sub"),
    );
    block_on(async {
        fs::write(&a, b"moved".as_slice()).await.unwrap();
        fs::rename(&a, &b).await.unwrap();
        assert!(!a.exists());
        assert_eq!(fs::read(&b).await.unwrap(), b"moved");
        fs::remove_file(&b).await.unwrap();
        assert!(!b.exists());

        fs::create_dir(&sub).await.unwrap();
        assert!(sub.is_dir());
        let err = fs::create_dir(&sub).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        fs::write(sub.join("f"), b"x".as_slice()).await.unwrap();
        let err = fs::remove_dir(&sub).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DirectoryNotEmpty);
        fs::remove_file(sub.join("f")).await.unwrap();
        fs::remove_dir(&sub).await.unwrap();
        assert!(!sub.exists());
    });
}

#[test]
fn missing_files_and_bad_paths_are_errors_not_panics() {
    let _serial = serial();
    let dir = TempDir::new("fs-errors");
    let missing = dir.path().join("missing");
    block_on(async {
        let err = File::open(&missing).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let err = fs::remove_file(&missing).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let err = fs::read("bad\0path").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let err = fs::rename(&missing, "also\0bad").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let err = OpenOptions::new().open(&missing).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "no access mode");

        fs::write(&missing, b"now here".as_slice()).await.unwrap();
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        let err = options.open(&missing).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    });
}

#[test]
fn dropping_a_thousand_files_leaks_no_fd() {
    let _serial = serial();
    let dir = TempDir::new("fs-fds");
    let path = dir.path().join("f");
    std::fs::write(&path, b"x").unwrap();
    let fds_outside = open_fds();
    let kept = block_on(async {
        let fds_before = open_fds();
        // Dropped on the core: a detached CLOSE each.
        for _ in 0..1_000 {
            drop(File::open(&path).await.unwrap());
        }
        until_no_op_in_flight().await;
        assert_eq!(open_fds(), fds_before, "after 1,000 dropped files");
        // Closed explicitly.
        for _ in 0..1_000 {
            File::open(&path).await.unwrap().close().await.unwrap();
        }
        assert_eq!(open_fds(), fds_before, "after 1,000 closed files");
        // Kept past the loop, to be dropped where no core runs.
        let mut kept = Vec::new();
        for _ in 0..100 {
            kept.push(File::open(&path).await.unwrap());
        }
        assert_eq!(open_fds(), fds_before + 100);
        kept
    });
    assert_eq!(open_fds(), fds_outside + 100);
    drop(kept); // close(2): there is no ring here
    assert_eq!(
        open_fds(),
        fds_outside,
        "after 100 files dropped off the core"
    );
}

#[test]
fn dropping_a_read_in_flight_is_safe_and_frees_the_fd_afterwards() {
    let _serial = serial();
    let dir = TempDir::new("fs-cancel");
    let path = dir.path().join("data.bin");
    std::fs::write(&path, pattern(MIB, 0)).unwrap();
    block_on(async {
        let fds_before = open_fds();
        for _ in 0..100 {
            let file = File::open(&path).await.unwrap();
            let mut read = pin!(file.read_at(Vec::with_capacity(MIB), 0));
            assert!(poll_once(&mut read).is_pending(), "submitted, not done");
            // The read (finished or not) and then the file go; the fd waits for the read.
        }
        until_no_op_in_flight().await;
        assert_eq!(open_fds(), fds_before);
        // The ring still works.
        let file = File::open(&path).await.unwrap();
        let (res, buf) = file.read_exact_at(Vec::with_capacity(4), 4096).await;
        res.unwrap();
        assert_eq!(buf, pattern(4100, 0)[4096..]);
    });
}

#[test]
fn dropping_a_read_that_waits_forever_cancels_it() {
    let _serial = serial();
    let dir = TempDir::new("fs-fifo");
    let fifo = dir.path().join("fifo");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c_path` is a valid NUL-terminated path; mkfifo only reads it.
    let made = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
    assert_eq!(made, 0, "mkfifo: {}", std::io::Error::last_os_error());
    block_on(async {
        let fds_before = open_fds();
        // Read and write: opening does not wait for a writer, and nothing is ever written.
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        let file = options.open(&fifo).await.unwrap();
        {
            let mut read = pin!(file.read_at(Vec::with_capacity(64), 0));
            assert!(poll_once(&mut read).is_pending());
            yield_now().await; // a tick: the read is submitted and waits in the kernel
            assert!(
                poll_once(&mut read).is_pending(),
                "an empty FIFO has nothing to read"
            );
            assert_eq!(in_flight(), 1);
        } // dropped in flight: orphaned, ASYNC_CANCEL queued
        drop(file); // the orphan still holds the fd
        assert_eq!(open_fds(), fds_before + 1);
        until_no_op_in_flight().await;
        assert_eq!(
            open_fds(),
            fds_before,
            "the fd closes when the cancelled read lets go"
        );
    });
}

#[test]
fn registered_buffers_write_and_read_back() {
    use corio::io::buf::FixedBufPool;
    let _serial = serial();
    let dir = support::TempDir::new("fixed");
    let path = dir.path().join("fixed.bin");
    corio::block_on(async {
        let pool = FixedBufPool::new(2, 4096).unwrap();
        let file = corio::fs::File::create(&path).await.unwrap();
        let mut buf = pool.get().await;
        buf.extend_from_slice(&[0xAB; 4096]);
        let (n, buf) = file.write_fixed_at(buf, 4096).await;
        assert_eq!(n.unwrap(), 4096);
        drop(buf);
        assert_eq!(pool.free(), 2);
        let file = corio::fs::File::open(&path).await.unwrap();
        let (n, back) = file.read_fixed_at(pool.try_get().unwrap(), 4096).await;
        assert_eq!(n.unwrap(), 4096);
        assert!(back.iter().all(|&b| b == 0xAB));
        assert_eq!(pool.free(), 1);
    });
}
