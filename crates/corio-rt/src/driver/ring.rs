//! Ring setup: the flags each core's io_uring is created with, their fallbacks, the opcode
//! probe, and the errors that name why io_uring could not be set up and how to fix it.
//!
//! The preferred setup is `SINGLE_ISSUER | DEFER_TASKRUN` (completions are processed only when
//! the owning thread enters the ring, so no interrupting task work lands mid-tick); kernels older
//! than 6.1 fall back to `COOP_TASKRUN | TASKRUN_FLAG` (5.19), then to a plain ring. The CQ is
//! twice the SQ, so a full batch of submissions cannot overflow it on its own.

use std::io;

use io_uring::{register::Probe, IoUring};

/// What the kernel gave us: the ring, the setup that succeeded, and which opcodes exist.
pub(crate) struct Ring {
    pub(crate) uring: IoUring,
    pub(crate) setup: Setup,
    pub(crate) probe: Probe,
}

/// Which of the setup variants the kernel accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` (Linux 6.1+).
    DeferTaskrun,
    /// `IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG` (Linux 5.19+).
    CoopTaskrun,
    /// No optional flags.
    Plain,
}

/// Creates a ring with `entries` SQ entries (rounded up to a power of two by the kernel) and a
/// CQ of twice that, trying the best setup first.
///
/// # Errors
/// The last setup error, with a hint naming its cause and fix (see [`setup_hint`]); also an
/// error if the kernel lacks `IORING_FEAT_NODROP` or `IORING_FEAT_EXT_ARG` (Linux 5.11), which
/// the driver relies on.
pub(crate) fn build(entries: u32) -> io::Result<Ring> {
    let entries = entries.clamp(2, 32_768);
    let attempts = [Setup::DeferTaskrun, Setup::CoopTaskrun, Setup::Plain];
    let mut last_err = None;
    for setup in attempts {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(entries * 2).setup_submit_all();
        match setup {
            Setup::DeferTaskrun => {
                builder.setup_single_issuer().setup_defer_taskrun();
            }
            Setup::CoopTaskrun => {
                builder.setup_coop_taskrun().setup_taskrun_flag();
            }
            Setup::Plain => {}
        }
        match builder.build(entries) {
            Ok(uring) => return finish(uring, setup),
            // EINVAL: this kernel does not know a flag; try the next, simpler setup.
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => last_err = Some(err),
            Err(err) => return Err(explain(err)),
        }
    }
    Err(explain(last_err.expect("at least one setup was attempted")))
}

fn finish(uring: IoUring, setup: Setup) -> io::Result<Ring> {
    let params = uring.params();
    if !params.is_feature_nodrop() || !params.is_feature_ext_arg() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring lacks IORING_FEAT_NODROP or IORING_FEAT_EXT_ARG: corio needs Linux 5.11 or newer",
        ));
    }
    let mut probe = Probe::new();
    uring
        .submitter()
        .register_probe(&mut probe)
        .map_err(explain)?;
    // A registered ring fd saves an fd lookup on every io_uring_enter (Linux 5.18+); without it
    // the ring still works, so a refusal is not an error.
    let _ = uring.submitter().register_ring_fd();
    Ok(Ring {
        uring,
        setup,
        probe,
    })
}

/// Wraps a setup error in one that keeps its kind and says what to do about it.
fn explain(err: io::Error) -> io::Error {
    match setup_hint(&err) {
        Some(hint) => io::Error::new(err.kind(), format!("cannot set up io_uring: {err}: {hint}")),
        None => io::Error::new(err.kind(), format!("cannot set up io_uring: {err}")),
    }
}

/// The cause and the fix for the setup errors that have a known one.
pub(crate) fn setup_hint(err: &io::Error) -> Option<String> {
    Some(match err.raw_os_error()? {
        libc::EPERM => {
            let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok();
            eperm_hint(sysctl.as_deref().map(str::trim))
        }
        libc::ENOSYS => {
            "no io_uring here: the kernel was built without it, or a sandbox hides the syscall"
                .to_owned()
        }
        libc::ENOMEM => "ring memory exceeds RLIMIT_MEMLOCK: raise `ulimit -l` or lower \
                         ring_entries"
            .to_owned(),
        _ => return None,
    })
}

/// Why `io_uring_setup` said EPERM, from `kernel.io_uring_disabled` (`None`: unreadable).
fn eperm_hint(sysctl: Option<&str>) -> String {
    const SECCOMP: &str = "a seccomp filter blocks it (Docker's default profile does since \
        late 2023): run with a profile that allows io_uring_setup, io_uring_enter and \
        io_uring_register";
    match sysctl {
        Some("0") => format!(
            "io_uring is enabled in the kernel (kernel.io_uring_disabled = 0), so {SECCOMP}"
        ),
        Some("1") => "io_uring is limited to the group in kernel.io_uring_group \
            (kernel.io_uring_disabled = 1): run as a member of that group, or set \
            `sysctl kernel.io_uring_disabled=0`"
            .to_owned(),
        Some("2") => "io_uring is disabled for every process (kernel.io_uring_disabled = 2): \
            set `sysctl kernel.io_uring_disabled=0`"
            .to_owned(),
        other => format!(
            "io_uring is blocked (kernel.io_uring_disabled = {}): set \
             `sysctl kernel.io_uring_disabled=0` if it is not 0; otherwise {SECCOMP}",
            other.unwrap_or("unreadable")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eperm_names_the_sysctl_or_seccomp_as_the_setting_says() {
        let enabled = eperm_hint(Some("0"));
        assert!(
            enabled.contains("seccomp") && !enabled.contains("set `sysctl"),
            "{enabled}"
        );
        assert!(eperm_hint(Some("1")).contains("io_uring_group"));
        let disabled = eperm_hint(Some("2"));
        assert!(disabled.contains("io_uring_disabled=0") && !disabled.contains("seccomp"));
        let unknown = eperm_hint(None);
        assert!(
            unknown.contains("unreadable") && unknown.contains("seccomp"),
            "{unknown}"
        );
    }

    #[test]
    fn builds_with_best_setup_here() {
        let _serial = crate::testing::serial();
        let ring = build(8).unwrap();
        // Linux 6.1+ (this project's CI runs 6.18) accepts the preferred setup.
        assert_eq!(ring.setup, Setup::DeferTaskrun);
        assert!(ring.probe.is_supported(io_uring::opcode::Nop::CODE));
        assert_eq!(ring.uring.params().cq_entries(), 16);
    }

    #[test]
    fn hints_name_the_fix() {
        let _serial = crate::testing::serial();
        let eperm = setup_hint(&io::Error::from_raw_os_error(libc::EPERM)).unwrap();
        assert!(eperm.contains("kernel.io_uring_disabled"), "{eperm}");
        assert!(eperm.contains("seccomp"), "{eperm}");
        let enomem = setup_hint(&io::Error::from_raw_os_error(libc::ENOMEM)).unwrap();
        assert!(enomem.contains("ulimit -l"), "{enomem}");
        assert!(setup_hint(&io::Error::from_raw_os_error(libc::ENOSYS)).is_some());
        assert!(setup_hint(&io::Error::from_raw_os_error(libc::EIO)).is_none());
    }
}
