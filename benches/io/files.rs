//! 4 KiB random reads from a page-cached 256 MiB file, at depth 1, 32 and 128: corio
//! (`depth` tasks on one core, each awaiting one `read_at` after another), `tokio::fs` (one
//! `File` per task, `seek` + `read_exact`: two trips through tokio's blocking pool per read),
//! tokio `spawn_blocking` + pread (one trip), and a plain pread loop (depth 1: it blocks).
//!
//! None of these is pinned: tokio's blocking pool may use both CPUs, which is how tokio runs
//! file I/O. The file lives in `std::env::temp_dir()`, is read once whole to warm the page
//! cache, and is removed when the group ends. Offsets come from fixed-seed xorshift generators,
//! one per task, and are 4 KiB aligned.

use std::cell::Cell;
use std::io::{self, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};

const FILE_SIZE: u64 = 256 << 20;
const BLOCK: usize = 4096;
const BLOCKS: u64 = FILE_SIZE / BLOCK as u64;
const DEPTHS: [usize; 3] = [1, 32, 128];

pub fn reads(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_4KiB");
    group.throughput(Throughput::Elements(1));
    // Created on first use, so a filter that skips this group writes no file.
    let mut file: Option<TestFile> = None;
    let mut seeds = XorShift(0x9E37_79B9_7F4A_7C15);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    for depth in DEPTHS {
        group.bench_with_input(BenchmarkId::new("corio", depth), &depth, |b, &depth| {
            let path = file.get_or_insert_with(TestFile::create).path.clone();
            b.iter_custom(|reads| corio_reads(&path, depth, reads, seeds.next()));
        });
        group.bench_with_input(
            BenchmarkId::new("corio_fixed", depth),
            &depth,
            |b, &depth| {
                let path = file.get_or_insert_with(TestFile::create).path.clone();
                b.iter_custom(|reads| corio_fixed_reads(&path, depth, reads, seeds.next()));
            },
        );
        group.bench_with_input(BenchmarkId::new("tokio_fs", depth), &depth, |b, &depth| {
            let path = file.get_or_insert_with(TestFile::create).path.clone();
            let mut files = Vec::new();
            b.iter_custom(|reads| {
                if files.is_empty() {
                    files = tokio.block_on(open_tokio_files(&path, depth));
                }
                let seed = seeds.next();
                let (elapsed, back) =
                    tokio.block_on(tokio_fs_reads(std::mem::take(&mut files), reads, seed));
                files = back;
                elapsed
            });
        });
        group.bench_with_input(
            BenchmarkId::new("tokio_spawn_blocking_pread", depth),
            &depth,
            |b, &depth| {
                let path = file.get_or_insert_with(TestFile::create).path.clone();
                let std_file = Arc::new(std::fs::File::open(&path).expect("open the test file"));
                b.iter_custom(|reads| {
                    let seed = seeds.next();
                    tokio.block_on(tokio_pread_reads(std_file.clone(), depth, reads, seed))
                });
            },
        );
        if depth == 1 {
            group.bench_with_input(BenchmarkId::new("pread", depth), &depth, |b, _| {
                let path = file.get_or_insert_with(TestFile::create).path.clone();
                let std_file = std::fs::File::open(&path).expect("open the test file");
                b.iter_custom(|reads| pread_reads(&std_file, reads, seeds.next()));
            });
        }
    }
    group.finish();
}

/// The test file; removed on drop.
struct TestFile {
    path: PathBuf,
}

impl TestFile {
    /// Writes `FILE_SIZE` bytes of a pattern, then reads them all once to warm the page cache.
    fn create() -> TestFile {
        let path = std::env::temp_dir().join(format!("corio-io-bench-{}.dat", std::process::id()));
        let file = TestFile { path };
        let mut out = std::fs::File::create(&file.path).expect("create the test file");
        let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 253) as u8).collect();
        for _ in 0..FILE_SIZE / chunk.len() as u64 {
            out.write_all(&chunk).expect("write the test file");
        }
        drop(out);
        let mut warm = std::fs::File::open(&file.path).expect("open the test file");
        let read = io::copy(&mut warm, &mut io::sink()).expect("read the test file");
        assert_eq!(read, FILE_SIZE);
        file
    }
}

impl Drop for TestFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// xorshift64: the same offsets on every run of the bench.
#[derive(Clone, Copy)]
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A 4 KiB-aligned offset inside the file.
    fn offset(&mut self) -> u64 {
        (self.next() % BLOCKS) * BLOCK as u64
    }

    /// The generator of task `index`, from a run's `seed`; never the all-zero state.
    fn for_task(seed: u64, index: usize) -> XorShift {
        XorShift((seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407)) | 1)
    }
}

/// Reads are handed out one at a time until `remaining` is 0.
fn take_local(remaining: &Cell<u64>) -> bool {
    let n = remaining.get();
    remaining.set(n.saturating_sub(1));
    n > 0
}

fn corio_reads(path: &Path, depth: usize, reads: u64, seed: u64) -> Duration {
    corio::block_on(async move {
        let file = Rc::new(
            corio::fs::File::open(path)
                .await
                .expect("open the test file"),
        );
        let remaining = Rc::new(Cell::new(reads));
        let start = Instant::now();
        let tasks: Vec<_> = (0..depth)
            .map(|index| {
                let (file, remaining) = (file.clone(), remaining.clone());
                corio::spawn(async move {
                    let mut rng = XorShift::for_task(seed, index);
                    let mut buf = Vec::with_capacity(BLOCK);
                    while take_local(&remaining) {
                        buf.clear();
                        let (res, back) = file.read_at(buf, rng.offset()).await;
                        buf = back;
                        assert_eq!(res.expect("corio read_at"), BLOCK);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("a corio read task panicked");
        }
        start.elapsed()
    })
}

/// As `corio_reads`, through registered buffers (READ_FIXED), one per task.
fn corio_fixed_reads(path: &Path, depth: usize, reads: u64, seed: u64) -> Duration {
    corio::block_on(async move {
        let pool = corio::io::buf::FixedBufPool::new(depth as u16, BLOCK).expect("fixed buffers");
        let file = Rc::new(
            corio::fs::File::open(path)
                .await
                .expect("open the test file"),
        );
        let remaining = Rc::new(Cell::new(reads));
        let start = Instant::now();
        let tasks: Vec<_> = (0..depth)
            .map(|index| {
                let (file, remaining) = (file.clone(), remaining.clone());
                let mut buf = pool.try_get().expect("one buffer per task");
                corio::spawn(async move {
                    let mut rng = XorShift::for_task(seed, index);
                    while take_local(&remaining) {
                        buf.clear();
                        let (res, back) = file.read_fixed_at(buf, rng.offset()).await;
                        buf = back;
                        assert_eq!(res.expect("corio read_fixed_at"), BLOCK);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("a corio read task panicked");
        }
        start.elapsed()
    })
}

async fn open_tokio_files(path: &Path, depth: usize) -> Vec<tokio::fs::File> {
    let mut files = Vec::with_capacity(depth);
    for _ in 0..depth {
        files.push(
            tokio::fs::File::open(path)
                .await
                .expect("open the test file"),
        );
    }
    files
}

async fn tokio_fs_reads(
    files: Vec<tokio::fs::File>,
    reads: u64,
    seed: u64,
) -> (Duration, Vec<tokio::fs::File>) {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let remaining = Arc::new(AtomicU64::new(reads));
    let start = Instant::now();
    let tasks: Vec<_> = files
        .into_iter()
        .enumerate()
        .map(|(index, mut file)| {
            let remaining = remaining.clone();
            tokio::spawn(async move {
                let mut rng = XorShift::for_task(seed, index);
                let mut buf = vec![0u8; BLOCK];
                while crate::take_one(&remaining) {
                    file.seek(SeekFrom::Start(rng.offset()))
                        .await
                        .expect("seek");
                    file.read_exact(&mut buf).await.expect("tokio read");
                }
                file
            })
        })
        .collect();
    let mut files = Vec::with_capacity(tasks.len());
    for task in tasks {
        files.push(task.await.expect("a tokio read task panicked"));
    }
    (start.elapsed(), files)
}

async fn tokio_pread_reads(
    file: Arc<std::fs::File>,
    depth: usize,
    reads: u64,
    seed: u64,
) -> Duration {
    let remaining = Arc::new(AtomicU64::new(reads));
    let start = Instant::now();
    let tasks: Vec<_> = (0..depth)
        .map(|index| {
            let (file, remaining) = (file.clone(), remaining.clone());
            tokio::spawn(async move {
                let mut rng = XorShift::for_task(seed, index);
                let mut buf = vec![0u8; BLOCK];
                while crate::take_one(&remaining) {
                    let (file, pos) = (file.clone(), rng.offset());
                    let (n, back) = tokio::task::spawn_blocking(move || {
                        let n = file.read_at(&mut buf, pos);
                        (n, buf)
                    })
                    .await
                    .expect("spawn_blocking");
                    buf = back;
                    assert_eq!(n.expect("pread"), BLOCK);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a tokio read task panicked");
    }
    start.elapsed()
}

/// pread(2) through std's `FileExt::read_at`, one after another.
fn pread_reads(file: &std::fs::File, reads: u64, seed: u64) -> Duration {
    let mut rng = XorShift::for_task(seed, 0);
    let mut buf = vec![0u8; BLOCK];
    let start = Instant::now();
    for _ in 0..reads {
        let n = file.read_at(&mut buf, rng.offset()).expect("pread");
        assert_eq!(n, BLOCK);
    }
    start.elapsed()
}
