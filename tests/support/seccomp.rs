//! A child process with io_uring blocked as Docker's default seccomp profile blocks it (since
//! moby 25, late 2023): `io_uring_setup`, `io_uring_enter` and `io_uring_register` fail with
//! EPERM, every other system call is allowed.
//!
//! The filter is a classic BPF program installed with `prctl(PR_SET_SECCOMP)` between fork and
//! exec (seccomp(2), "SECCOMP_SET_MODE_FILTER"); it is inherited by everything the child runs.
//! std only, like the rest of `support`.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// One BPF instruction (`struct sock_filter`, linux/filter.h).
#[repr(C)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// A BPF program (`struct sock_fprog`).
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

extern "C" {
    fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
}

const PR_SET_SECCOMP: i32 = 22;
const PR_SET_NO_NEW_PRIVS: i32 = 38;
const SECCOMP_MODE_FILTER: u64 = 2;
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const EPERM: u32 = 1;
/// `struct seccomp_data`: `nr` at byte 0, `arch` at byte 4.
const NR: u32 = 0;
const ARCH: u32 = 4;
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// x86_64's io_uring_setup, io_uring_enter and io_uring_register (the same on every arch
/// since 5.1, through the unified syscall table).
const IO_URING_SETUP: u32 = 425;
const IO_URING_ENTER: u32 = 426;
const IO_URING_REGISTER: u32 = 427;

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// Allow everything but the three io_uring calls, which fail with EPERM (x86_64; on another
/// architecture nothing is filtered).
static FILTER: [SockFilter; 9] = [
    insn(BPF_LD_W_ABS, 0, 0, ARCH),
    insn(BPF_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
    insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    insn(BPF_LD_W_ABS, 0, 0, NR),
    insn(BPF_JEQ_K, 3, 0, IO_URING_SETUP),
    insn(BPF_JEQ_K, 2, 0, IO_URING_ENTER),
    insn(BPF_JEQ_K, 1, 0, IO_URING_REGISTER),
    insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM),
];

/// Makes `cmd`'s process start with io_uring blocked (EPERM), as in a Docker container.
pub fn block_io_uring(cmd: &mut Command) {
    // SAFETY: the hook runs in the child between fork and exec; it allocates nothing and calls
    // only prctl(2), which is async-signal-safe, with a program in a static.
    unsafe {
        cmd.pre_exec(|| {
            let prog = SockFprog {
                len: FILTER.len() as u16,
                filter: FILTER.as_ptr(),
            };
            if prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || prctl(
                    PR_SET_SECCOMP,
                    SECCOMP_MODE_FILTER,
                    &prog as *const SockFprog as u64,
                    0,
                    0,
                ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
