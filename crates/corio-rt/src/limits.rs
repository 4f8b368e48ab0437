//! Process limits a server raises at start: today the open-file limit, which caps how many
//! connections (and files, rings, eventfds) a process may hold at once.

use std::io;

/// Raises this process's open-file soft limit (`RLIMIT_NOFILE`) to its hard limit and returns
/// the new soft limit (a count of file descriptors). Raising the hard limit itself needs
/// `CAP_SYS_RESOURCE` and is not attempted. Source: getrlimit(2).
///
/// # Errors
/// The OS error if the limit cannot be read or set.
///
/// # Examples
/// ```
/// let fds = corio::rt::raise_fd_limit()?;
/// assert!(fds >= 64);
/// # std::io::Result::Ok(())
/// ```
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given, which lives on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit only reads the struct it is given, a valid local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let fds = super::raise_fd_limit().unwrap();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes only the local struct it is given.
        let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        assert_eq!(read, 0);
        assert_eq!(fds, limit.rlim_cur);
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }
}
