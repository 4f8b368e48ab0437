//! `cat` for one file, with several reads in flight: the asyncio `gather` idea applied to file
//! I/O. Each round starts `--depth` positional reads of `--chunk` bytes at increasing offsets,
//! waits for all of them (`join_all`), and writes their bytes to stdout in file order.
//!
//! Run: `cargo run --release --example cat -- Cargo.toml`. Errors (a missing file, a closed
//! stdout) print `cat: PATH: reason` and exit with status 1.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use corio::fs::File;
use corio::io::buf::IoBuf;

/// Copy a file to stdout with several io_uring reads in flight.
#[derive(Parser, Debug)]
struct Args {
    /// The file to copy.
    path: PathBuf,
    /// Bytes per read (at most 1 GiB).
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(1..=1 << 30))]
    chunk: u32,
    /// Reads in flight per round (at most 1024).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    depth: u16,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(
        args.path.clone(),
        args.chunk as usize,
        usize::from(args.depth),
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cat: {}: {err}", args.path.display());
            ExitCode::FAILURE
        }
    }
}

/// Runs the copy on a one-core runtime, so a ring that cannot be set up is an error, not a
/// panic.
fn run(path: PathBuf, chunk: usize, depth: usize) -> io::Result<()> {
    let runtime = corio::Runtime::builder().cores(1).pin(false).build()?;
    let mut results = runtime.run(move |_core| {
        let path = path.clone();
        async move { cat(&path, chunk, depth).await }
    });
    results.pop().unwrap_or(Ok(()))
}

async fn cat(path: &Path, chunk: usize, depth: usize) -> io::Result<()> {
    let file = File::open(path).await?;
    let mut stdout = io::stdout().lock();
    let mut pos = 0u64;
    loop {
        let reads = (0..depth).map(|i| {
            // A window of exactly `chunk` bytes: a Vec may have more capacity than asked for,
            // and a longer read would overlap the next one.
            let buf = Vec::with_capacity(chunk).slice(..chunk);
            file.read_at(buf, pos + (i * chunk) as u64)
        });
        for (res, buf) in corio::join_all(reads).await {
            let n = res?;
            stdout.write_all(&buf.into_inner())?;
            pos += n as u64;
            if n == 0 {
                return stdout.flush();
            }
            if n < chunk {
                // A short read: the later reads of this round start past a gap, so drop them
                // and go on from here (at EOF, the next round's first read returns 0).
                break;
            }
        }
    }
}
