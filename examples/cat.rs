//! `cat`: copies files (or stdin) to stdout. The asyncio `gather` idea applied to file I/O:
//! for a regular file, each round starts `--depth` positional reads of `--chunk` bytes at
//! increasing offsets, waits for all of them (`join_all`), and writes them in file order.
//! Inputs that are streams (pipes, FIFOs, terminals, sockets, character devices) and
//! generated files whose size says nothing (`/proc`, `/sys`) are read one read at a time at
//! their position instead: several reads in flight mean nothing on a stream.
//!
//! Run: `cargo run --release --example cat -- Cargo.toml`, `... | cat -`, or with no path to
//! copy stdin. As coreutils `cat`: `-` is stdin, an error on one input prints
//! `cat: PATH: reason` and goes on to the next, and the exit status is 1 if any failed.

use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use corio::fs::File;
use corio::io::buf::IoBuf;

/// Copy files to stdout with io_uring reads.
#[derive(Parser, Debug)]
struct Args {
    /// The files to copy, in order; `-` or none: stdin.
    paths: Vec<PathBuf>,
    /// Bytes per read (at most 1 GiB).
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(1..=1 << 30))]
    chunk: u32,
    /// Positional reads in flight per round on a regular file (at most 1024).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    depth: u16,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut paths = args.paths.clone();
    if paths.is_empty() {
        paths.push(PathBuf::from("-"));
    }
    // One core is enough for one stream of output; a ring that cannot be set up is an error.
    let runtime = match corio::Runtime::builder().cores(1).pin(false).build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cat: {err}");
            return ExitCode::FAILURE;
        }
    };
    let (chunk, depth) = (args.chunk as usize, usize::from(args.depth));
    let failed = runtime.run(move |_core| {
        let paths = paths.clone();
        async move {
            let stdout = match dup(io::stdout().as_fd()) {
                Ok(stdout) => stdout,
                Err(err) => {
                    eprintln!("cat: stdout: {err}");
                    return true;
                }
            };
            let mut failed = false;
            for path in &paths {
                if let Err(err) = cat(path, &stdout, chunk, depth).await {
                    let (text, name) = (err.to_string(), path.display().to_string());
                    if text.contains(&name) {
                        eprintln!("cat: {text}"); // the error names the path already
                    } else {
                        eprintln!("cat: {name}: {text}");
                    }
                    failed = true;
                    if err.kind() == io::ErrorKind::BrokenPipe {
                        break; // nobody reads the output any more
                    }
                }
            }
            failed
        }
    });
    if failed.into_iter().any(|f| f) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// A corio `File` on a duplicate of `fd` (stdin, stdout), closed on drop without closing `fd`.
fn dup(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<File> {
    Ok(File::from_std(fd.try_clone_to_owned()?.into()))
}

/// Copies one input to `out`.
async fn cat(path: &PathBuf, out: &File, chunk: usize, depth: usize) -> io::Result<()> {
    let input = if path.as_os_str() == "-" {
        dup(io::stdin().as_fd())?
    } else {
        File::open(path).await?
    };
    let meta = input.metadata().await?;
    if meta.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::EISDIR));
    }
    // Positional reads need a regular file whose size is real: /proc files say 0.
    if meta.is_file() && !meta.is_empty() && path.as_os_str() != "-" {
        copy_positional(&input, out, chunk, depth).await
    } else {
        copy_stream(&input, out, chunk).await
    }
}

/// A stream: one read at a time at the file's position, each written before the next read.
async fn copy_stream(input: &File, out: &File, chunk: usize) -> io::Result<()> {
    let mut buf = Vec::with_capacity(chunk);
    loop {
        buf.clear();
        let (res, back) = input.read(buf.slice(..chunk)).await;
        buf = back.into_inner();
        match res {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
        let (res, back) = out.write_all(buf).await;
        buf = back;
        res?;
    }
}

/// A regular file: rounds of `depth` positional reads, written in file order.
async fn copy_positional(input: &File, out: &File, chunk: usize, depth: usize) -> io::Result<()> {
    let mut pos = 0u64;
    loop {
        let reads = (0..depth).map(|i| {
            // A window of exactly `chunk` bytes: a Vec may have more capacity than asked for,
            // and a longer read would overlap the next one.
            let buf = Vec::with_capacity(chunk).slice(..chunk);
            input.read_at(buf, pos + (i * chunk) as u64)
        });
        for (res, buf) in corio::join_all(reads).await {
            let n = res?;
            if n == 0 {
                return Ok(());
            }
            let (res, _) = out.write_all(buf.into_inner()).await;
            res?;
            pos += n as u64;
            if n < chunk {
                // A short read: the later reads of this round start past a gap, so drop them
                // and go on from here (at EOF, the next round's first read returns 0).
                break;
            }
        }
    }
}
