//! 4 KiB random reads from one file, page-cached and O_DIRECT, at depth 1, 32 and 128:
//! corio (`depth` tasks on one core each awaiting one `read_at` after another, through an
//! aligned buffer for O_DIRECT), `tokio::fs` (`depth` tasks, each with its own `File`, `seek` +
//! `read_exact`), a plain pread loop (it blocks: depth 1 whatever the row says), and fio's
//! io_uring engine as the limit. Offsets are 4 KiB aligned, from xorshift per task.
//!
//! Every reader runs on CPU 0, each on a thread of its own (the bench's main thread is never
//! pinned); tokio's blocking-pool threads inherit that CPU, so one core's worth of CPU is
//! compared with one core's worth. fio runs on CPU 0 too.

use std::cell::{Cell, RefCell};
use std::io::{SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::{Measured, Row, Tool};

const BLOCK: usize = 4096;
pub const DEPTHS: [usize; 3] = [1, 32, 128];

/// The test file, removed on drop.
pub struct TestFile {
    path: PathBuf,
    blocks: u64,
}

impl TestFile {
    /// Writes `size` bytes of pseudo-random data and reads it once to warm the page cache.
    pub fn create(size: u64) -> TestFile {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(dir).expect("create the bench's temporary directory");
        let path = dir.join(format!("compare-reads-{}.dat", std::process::id()));
        let mut file = std::fs::File::create(&path).expect("create the test file");
        let mut rng = 0x1234_5678_9abc_def1u64;
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..size / chunk.len() as u64 {
            for word in chunk.chunks_mut(8) {
                rng = xorshift(rng);
                word.copy_from_slice(&rng.to_le_bytes());
            }
            file.write_all(&chunk).expect("write the test file");
        }
        file.sync_all().expect("fsync the test file");
        let _ = std::fs::read(&path);
        TestFile {
            path,
            blocks: size / BLOCK as u64,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// The block offset generator of task `index`.
struct Offsets {
    state: u64,
    blocks: u64,
}

impl Offsets {
    fn new(index: usize, blocks: u64) -> Offsets {
        Offsets {
            state: 0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
            blocks,
        }
    }

    fn next(&mut self) -> u64 {
        self.state = xorshift(self.state);
        (self.state % self.blocks) * BLOCK as u64
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

fn measured(reads: u64, elapsed: Duration, latency: &Histogram<u64>) -> Measured {
    Measured {
        throughput: reads as f64 / elapsed.as_secs_f64(),
        p99_us: Some(latency.value_at_quantile(0.99) as f64 / 1000.0),
    }
}

/// Every row of this section.
pub fn run(file: &TestFile, duration: Duration, rows: &mut Vec<Row>) {
    for direct in [false, true] {
        let mode = if direct { "O_DIRECT" } else { "page-cached" };
        for depth in DEPTHS {
            let case = format!("4 KiB random reads, {mode}, depth {depth}");
            let mut subjects: Vec<(&str, Measured)> = Vec::new();
            // Each on a thread of its own pinned to CPU 0 (`on_cpu`), never the main thread.
            subjects.push((
                "pread loop",
                crate::on_cpu(0, || pread(file, direct, duration)),
            ));
            subjects.push((
                "corio",
                crate::on_cpu(0, || corio(file, direct, depth, duration)),
            ));
            if direct {
                // tokio::fs reads through its own unaligned buffer, which O_DIRECT refuses
                // (EINVAL): tokio's way is spawn_blocking around a pread.
                subjects.push((
                    "tokio spawn_blocking+pread",
                    crate::on_cpu(0, || tokio_blocking(file, depth, duration)),
                ));
            } else {
                subjects.push((
                    "tokio::fs",
                    crate::on_cpu(0, || tokio_fs(file, depth, duration)),
                ));
            }
            match fio(file, direct, depth, duration) {
                Ok(m) => subjects.push(("fio io_uring", m)),
                Err(why) => eprintln!("compare: skipping fio ({why})"),
            }
            for (subject, m) in subjects {
                rows.push(Row::new("files", &case, subject, "reads/s", m));
            }
        }
    }
}

fn open_std(path: &Path, direct: bool) -> std::fs::File {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    if direct {
        options.custom_flags(libc::O_DIRECT);
    }
    options.open(path).expect("open the test file")
}

fn pread(file: &TestFile, direct: bool, duration: Duration) -> Measured {
    let f = open_std(file.path(), direct);
    let mut offsets = Offsets::new(0, file.blocks);
    let mut buf = corio::io::buf::AlignedBuf::new(BLOCK, BLOCK).expect("aligned buffer");
    buf.extend_from_slice(&[0u8; BLOCK]);
    let mut latency = histogram();
    let start = Instant::now();
    let mut reads = 0;
    while start.elapsed() < duration {
        let t = Instant::now();
        let n = f.read_at(&mut buf, offsets.next()).expect("pread");
        assert_eq!(n, BLOCK);
        latency.saturating_record(t.elapsed().as_nanos() as u64);
        reads += 1;
    }
    measured(reads, start.elapsed(), &latency)
}

fn corio(file: &TestFile, direct: bool, depth: usize, duration: Duration) -> Measured {
    let path = file.path().to_path_buf();
    let blocks = file.blocks;
    corio::block_on(async move {
        let mut options = corio::fs::OpenOptions::new();
        options.read(true).direct(direct);
        let f = Rc::new(options.open(&path).await.expect("corio open"));
        let latency = Rc::new(RefCell::new(histogram()));
        let reads = Rc::new(Cell::new(0u64));
        let start = Instant::now();
        let end = start + duration;
        let tasks: Vec<_> = (0..depth)
            .map(|index| {
                let (f, latency, reads) = (f.clone(), latency.clone(), reads.clone());
                corio::spawn(async move {
                    let mut offsets = Offsets::new(index, blocks);
                    let mut buf =
                        corio::io::buf::AlignedBuf::new(BLOCK, BLOCK).expect("aligned buffer");
                    while Instant::now() < end {
                        buf.clear();
                        let t = Instant::now();
                        let (res, back) = f.read_at(buf, offsets.next()).await;
                        buf = back;
                        assert_eq!(res.expect("corio read_at"), BLOCK);
                        latency
                            .borrow_mut()
                            .saturating_record(t.elapsed().as_nanos() as u64);
                        reads.set(reads.get() + 1);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("a corio read task panicked");
        }
        let elapsed = start.elapsed();
        let latency = latency.borrow();
        measured(reads.get(), elapsed, &latency)
    })
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn tokio_fs(file: &TestFile, depth: usize, duration: Duration) -> Measured {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let runtime = tokio_runtime();
    let path = Arc::new(file.path().to_path_buf());
    let blocks = file.blocks;
    runtime.block_on(async move {
        let start = Instant::now();
        let end = start + duration;
        let tasks: Vec<_> = (0..depth)
            .map(|index| {
                let path = path.clone();
                tokio::spawn(async move {
                    let mut f = tokio::fs::File::open(&*path).await.expect("tokio open");
                    let mut offsets = Offsets::new(index, blocks);
                    let mut buf =
                        corio::io::buf::AlignedBuf::new(BLOCK, BLOCK).expect("aligned buffer");
                    buf.extend_from_slice(&[0u8; BLOCK]);
                    let mut latency = histogram();
                    let mut reads = 0u64;
                    while Instant::now() < end {
                        let t = Instant::now();
                        f.seek(SeekFrom::Start(offsets.next())).await.expect("seek");
                        f.read_exact(&mut buf).await.expect("tokio read");
                        latency.saturating_record(t.elapsed().as_nanos() as u64);
                        reads += 1;
                    }
                    (reads, latency)
                })
            })
            .collect();
        gather_tokio(tasks, start).await
    })
}

/// Awaits tokio read tasks that each return (reads, latencies) and merges them.
async fn gather_tokio(
    tasks: Vec<tokio::task::JoinHandle<(u64, Histogram<u64>)>>,
    start: Instant,
) -> Measured {
    let mut latency = histogram();
    let mut reads = 0;
    for task in tasks {
        let (n, h) = task.await.expect("a tokio read task panicked");
        reads += n;
        latency.add(&h).expect("same bounds");
    }
    measured(reads, start.elapsed(), &latency)
}

fn tokio_blocking(file: &TestFile, depth: usize, duration: Duration) -> Measured {
    let runtime = tokio_runtime();
    let f = Arc::new(open_std(file.path(), true));
    let blocks = file.blocks;
    runtime.block_on(async move {
        let start = Instant::now();
        let end = start + duration;
        let tasks: Vec<_> = (0..depth)
            .map(|index| {
                let f = f.clone();
                tokio::spawn(async move {
                    let mut offsets = Offsets::new(index, blocks);
                    let mut buf =
                        corio::io::buf::AlignedBuf::new(BLOCK, BLOCK).expect("aligned buffer");
                    buf.extend_from_slice(&[0u8; BLOCK]);
                    let mut latency = histogram();
                    let mut reads = 0u64;
                    while Instant::now() < end {
                        let t = Instant::now();
                        let (f2, offset) = (f.clone(), offsets.next());
                        buf = tokio::task::spawn_blocking(move || {
                            let n = f2.read_at(&mut buf, offset).expect("pread");
                            assert_eq!(n, BLOCK);
                            buf
                        })
                        .await
                        .expect("blocking read");
                        latency.saturating_record(t.elapsed().as_nanos() as u64);
                        reads += 1;
                    }
                    (reads, latency)
                })
            })
            .collect();
        gather_tokio(tasks, start).await
    })
}

fn fio(
    file: &TestFile,
    direct: bool,
    depth: usize,
    duration: Duration,
) -> Result<Measured, String> {
    let runtime = format!("{}ms", duration.as_millis().max(1));
    let out = Command::new("taskset")
        .args([
            "-c",
            "0",
            "fio",
            "--name=compare",
            "--rw=randread",
            "--bs=4k",
        ])
        .arg(format!("--filename={}", file.path().display()))
        .args([
            "--ioengine=io_uring",
            "--invalidate=0",
            "--time_based",
            "--output-format=json",
        ])
        .arg(format!("--iodepth={depth}"))
        .arg(format!("--direct={}", u8::from(direct)))
        .arg(format!("--runtime={runtime}"))
        .output()
        .map_err(|e| format!("cannot run fio: {e}; {}", Tool::Fio.hint()))?;
    if !out.status.success() {
        return Err(format!(
            "fio failed: {}; {}",
            String::from_utf8_lossy(&out.stderr).trim(),
            Tool::Fio.hint()
        ));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("fio printed no JSON: {e}"))?;
    let read = &json["jobs"][0]["read"];
    let iops = read["iops"].as_f64().ok_or("fio JSON has no read.iops")?;
    let p99_ns = read["clat_ns"]["percentile"]["99.000000"].as_f64();
    Ok(Measured {
        throughput: iops,
        p99_us: p99_ns.map(|ns| ns / 1000.0),
    })
}
