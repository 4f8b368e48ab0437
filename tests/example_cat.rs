//! examples/cat on every kind of input coreutils cat handles: regular files (positional reads
//! in parallel), a pipe on stdin, a FIFO fed by another process, `-` among files, a generated
//! file (`/proc/kallsyms`), a directory and a missing file (an error, then the next input).

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use support::{example_path, pattern, TempDir};

fn cat(args: &[&std::ffi::OsStr], stdin: Stdio) -> std::process::Output {
    Command::new(example_path("cat"))
        .args(args)
        .stdin(stdin)
        .output()
        .unwrap()
}

#[test]
fn a_pipe_on_stdin_is_copied_byte_for_byte() {
    let data = pattern(3 * 1024 * 1024 + 5, 1);
    let mut child = Command::new(example_path("cat"))
        .arg("--chunk")
        .arg("4096")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let sent = data.clone();
    // Written in odd pieces with pauses, so reads come back short and at uneven times.
    let feeder = std::thread::spawn(move || {
        for (i, piece) in sent.chunks(10_007).enumerate() {
            stdin.write_all(piece).unwrap();
            if i % 50 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success());
    assert!(out.stdout == data, "stdin pipe: output differs");
}

#[test]
fn a_fifo_fed_by_another_process_and_dash_among_files() {
    let dir = TempDir::new("example-cat-fifo");
    let fifo = dir.path().join("fifo");
    let input = dir.path().join("input.bin");
    let head = dir.path().join("head.txt");
    let data = pattern(2 * 1024 * 1024 + 3, 2);
    std::fs::write(&input, &data).unwrap();
    std::fs::write(&head, b"head\n").unwrap();
    let c_fifo = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
    let feeder = Command::new("sh")
        .arg("-c")
        .arg(format!("cat '{}' > '{}'", input.display(), fifo.display()))
        .spawn()
        .unwrap();
    let out = Command::new(example_path("cat"))
        .arg(&head)
        .arg(&fifo)
        .arg("-")
        .arg(&head)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(b"from stdin\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(feeder.wait_with_output().unwrap().status.success());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut expected = b"head\n".to_vec();
    expected.extend_from_slice(&data);
    expected.extend_from_slice(b"from stdin\nhead\n");
    assert!(
        out.stdout == expected,
        "fifo + stdin + files: output differs"
    );
}

#[test]
fn proc_kallsyms_is_copied_whole_and_fast() {
    let expected = std::fs::read("/proc/kallsyms").unwrap();
    let started = Instant::now();
    let out = cat(&["/proc/kallsyms".as_ref()], Stdio::null());
    let took = started.elapsed();
    assert!(out.status.success());
    // kallsyms is generated per read and stable while nothing loads a module.
    assert_eq!(out.stdout.len(), expected.len());
    assert!(out.stdout == expected, "/proc/kallsyms differs");
    eprintln!("cat /proc/kallsyms: {} bytes in {took:?}", out.stdout.len());
}

#[test]
fn errors_name_the_input_and_the_next_input_is_still_copied() {
    let dir = TempDir::new("example-cat-errors");
    let file = dir.path().join("ok.txt");
    std::fs::write(&file, b"still here\n").unwrap();
    let missing = dir.path().join("missing");
    let out = cat(
        &[
            missing.as_os_str(),
            dir.path().as_os_str(),
            file.as_os_str(),
        ],
        Stdio::null(),
    );
    assert!(!out.status.success());
    assert_eq!(out.stdout, b"still here\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}", missing.display())),
        "{stderr}"
    );
    assert!(stderr.contains("No such file"), "{stderr}");
    assert!(stderr.contains("Is a directory"), "{stderr}");
}

#[test]
fn a_terminal_on_stdin_is_read_line_by_line_until_ctrl_d() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty(3) writes two fds into the given ints; the other arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened by openpty and are owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let child = Command::new(example_path("cat"))
        .stdin(Stdio::from(slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut terminal = std::fs::File::from(master);
    // Two lines typed, then Ctrl-D at the start of a line: EOF for the reader.
    terminal.write_all(b"first line\nsecond\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    terminal.write_all(&[4]).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"first line\nsecond\n");
}
