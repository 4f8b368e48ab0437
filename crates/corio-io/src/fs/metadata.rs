//! `Metadata`: what `statx(2)` says about an open file (size, type, permissions, modification
//! time, block size), copied out of the `statx` struct the STATX op filled.

use std::fs::Permissions;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

/// Metadata of a file, from [`File::metadata`](super::File::metadata).
///
/// # Examples
/// ```no_run
/// # corio::block_on(async {
/// let file = corio::fs::File::open("data.bin").await?;
/// let meta = file.metadata().await?;
/// println!("{} bytes, modified {:?}", meta.len(), meta.modified()?);
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    len: u64,
    mode: u32,
    block_size: u32,
    /// Seconds and nanoseconds since the Unix epoch; `None` if statx did not report it.
    modified: Option<(i64, u32)>,
}

impl Metadata {
    /// Copies what corio exposes out of a `statx` result.
    pub(crate) fn from_statx(st: &libc::statx) -> Metadata {
        let modified = (st.stx_mask & libc::STATX_MTIME != 0)
            .then_some((st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec));
        Metadata {
            len: st.stx_size,
            mode: u32::from(st.stx_mode),
            block_size: st.stx_blksize,
            modified,
        }
    }

    /// The size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the size is 0 bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }

    /// The whole `st_mode`: file type bits and permission bits, as std's `MetadataExt::mode`.
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// The permission bits (`mode() & 0o7777`) as std's `Permissions`.
    pub fn permissions(&self) -> Permissions {
        Permissions::from_mode(self.mode & 0o7777)
    }

    /// The last modification time.
    ///
    /// # Errors
    /// `Unsupported` if the filesystem did not report one.
    pub fn modified(&self) -> io::Result<SystemTime> {
        let (sec, nsec) = self.modified.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "the filesystem reports no modification time",
            )
        })?;
        Ok(system_time(sec, nsec))
    }

    /// The preferred block size for I/O, in bytes (`stx_blksize`).
    pub fn block_size(&self) -> u32 {
        self.block_size
    }
}

/// `sec` seconds (negative: before 1970) plus `nsec` nanoseconds after the Unix epoch.
fn system_time(sec: i64, nsec: u32) -> SystemTime {
    let whole = Duration::from_secs(sec.unsigned_abs());
    let at_second = if sec >= 0 {
        SystemTime::UNIX_EPOCH + whole
    } else {
        SystemTime::UNIX_EPOCH - whole
    };
    at_second + Duration::from_nanos(u64::from(nsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(mode: u32) -> Metadata {
        Metadata {
            len: 3,
            mode,
            block_size: 4096,
            modified: Some((-2, 500_000_000)),
        }
    }

    #[test]
    fn type_and_permission_bits_are_read_from_the_mode() {
        let file = meta(libc::S_IFREG | 0o640);
        assert!(file.is_file() && !file.is_dir() && !file.is_empty());
        assert_eq!(file.permissions().mode(), 0o640);
        assert!(meta(libc::S_IFDIR | 0o755).is_dir());
        assert!(!meta(libc::S_IFLNK | 0o777).is_file());
    }

    #[test]
    fn times_before_the_epoch_count_back_from_it() {
        let before = SystemTime::UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(meta(0).modified().unwrap(), before);
        assert_eq!(
            system_time(1, 5),
            SystemTime::UNIX_EPOCH + Duration::new(1, 5)
        );
        let none = Metadata {
            modified: None,
            ..meta(0)
        };
        assert_eq!(
            none.modified().unwrap_err().kind(),
            io::ErrorKind::Unsupported
        );
    }
}
