//! `OpenOptions`: how to open a file (access, creation, mode, `O_DIRECT`), with std's rules,
//! turned into `openat(2)` flags and run as one OPENAT op.

use std::io;
use std::path::Path;
use std::rc::Rc;

use corio_rt::Op;

use super::File;
use crate::op::fs::OpenAt;

/// Options for opening a file, as `std::fs::OpenOptions`, plus [`direct`](Self::direct).
///
/// Every file is opened with `O_CLOEXEC`. The combinations std rejects are rejected here with
/// the same `InvalidInput` error, before anything reaches the kernel.
///
/// # Examples
/// ```no_run
/// use corio::fs::OpenOptions;
/// # corio::block_on(async {
/// let log = OpenOptions::new().append(true).create(true).open("app.log").await?;
/// # std::io::Result::Ok(()) }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    direct: bool,
    mode: libc::mode_t,
    custom_flags: i32,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// Options with every flag off and mode `0o666` (before the umask).
    pub fn new() -> OpenOptions {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            direct: false,
            mode: 0o666,
            custom_flags: 0,
        }
    }

    /// Opens for reading.
    pub fn read(&mut self, read: bool) -> &mut OpenOptions {
        self.read = read;
        self
    }

    /// Opens for writing.
    pub fn write(&mut self, write: bool) -> &mut OpenOptions {
        self.write = write;
        self
    }

    /// Opens for appending (`O_APPEND`): every write goes to the end, whatever its `pos`.
    pub fn append(&mut self, append: bool) -> &mut OpenOptions {
        self.append = append;
        self
    }

    /// Truncates an existing file to 0 bytes (`O_TRUNC`); needs write access.
    pub fn truncate(&mut self, truncate: bool) -> &mut OpenOptions {
        self.truncate = truncate;
        self
    }

    /// Creates the file if it does not exist (`O_CREAT`); needs write or append access.
    pub fn create(&mut self, create: bool) -> &mut OpenOptions {
        self.create = create;
        self
    }

    /// Creates the file, failing with `AlreadyExists` if it exists (`O_CREAT | O_EXCL`);
    /// overrides [`create`](Self::create) and [`truncate`](Self::truncate).
    pub fn create_new(&mut self, create_new: bool) -> &mut OpenOptions {
        self.create_new = create_new;
        self
    }

    /// The permission bits of a created file (default `0o666`), before the umask.
    pub fn mode(&mut self, mode: u32) -> &mut OpenOptions {
        self.mode = mode;
        self
    }

    /// Extra `open(2)` flags, ORed in; the access mode bits (`O_ACCMODE`) are ignored.
    pub fn custom_flags(&mut self, flags: i32) -> &mut OpenOptions {
        self.custom_flags = flags;
        self
    }

    /// Bypasses the page cache (`O_DIRECT`).
    ///
    /// Reads and writes then need buffer addresses, lengths and file positions aligned to the
    /// device's logical block size (use [`AlignedBuf`](crate::buf::AlignedBuf)); a misaligned
    /// one fails with `InvalidInput` (`EINVAL`). Some filesystems refuse `O_DIRECT` at open
    /// with `EINVAL`.
    ///
    /// # Examples
    /// ```no_run
    /// use corio::io::{buf::AlignedBuf, fs::OpenOptions};
    /// # corio::block_on(async {
    /// let file = OpenOptions::new().read(true).direct(true).open("table.db").await?;
    /// let (res, page) = file.read_exact_at(AlignedBuf::with_capacity(4096), 8192).await;
    /// res?;
    /// assert_eq!(page.len(), 4096);
    /// # std::io::Result::Ok(()) }).unwrap();
    /// ```
    pub fn direct(&mut self, direct: bool) -> &mut OpenOptions {
        self.direct = direct;
        self
    }

    /// Opens `path` (relative to the current directory if not absolute) with these options.
    ///
    /// # Errors
    /// `InvalidInput` for a combination std rejects (no access mode; create or truncate
    /// without write access; truncate with append) or a path holding a NUL byte; otherwise
    /// `openat(2)`'s errors, e.g. `NotFound`, `PermissionDenied`, `AlreadyExists` with
    /// [`create_new`](Self::create_new). The message names the path (`open /etc/x: ...`);
    /// the kind is the OS error's, which stays reachable as the error's `source()`.
    ///
    /// # Cancellation
    /// Dropping the future cancels the open; a file opened in the meantime is closed.
    pub async fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let path = path.as_ref();
        let opened = async {
            let op = OpenAt::new(path, self.flags()?, self.mode)?;
            Op::new(op).await
        };
        match opened.await {
            Ok(fd) => Ok(File::from_shared(Rc::new(fd))),
            Err(err) => Err(crate::error::context(
                err,
                format_args!("open {}", path.display()),
            )),
        }
    }

    /// The `openat(2)` flags, or std's `InvalidInput` for a combination it rejects.
    fn flags(&self) -> io::Result<i32> {
        let direct = if self.direct { libc::O_DIRECT } else { 0 };
        Ok(libc::O_CLOEXEC
            | self.access_mode()?
            | self.creation_mode()?
            | direct
            | (self.custom_flags & !libc::O_ACCMODE))
    }

    fn access_mode(&self) -> io::Result<i32> {
        Ok(match (self.read, self.write, self.append) {
            (true, false, false) => libc::O_RDONLY,
            (false, true, false) => libc::O_WRONLY,
            (true, true, false) => libc::O_RDWR,
            (false, _, true) => libc::O_WRONLY | libc::O_APPEND,
            (true, _, true) => libc::O_RDWR | libc::O_APPEND,
            (false, false, false) => {
                return Err(invalid("no access mode: set read, write or append"))
            }
        })
    }

    fn creation_mode(&self) -> io::Result<i32> {
        if !self.write && !self.append && (self.truncate || self.create || self.create_new) {
            return Err(invalid("create and truncate need write or append access"));
        }
        if self.append && self.truncate && !self.create_new {
            return Err(invalid("truncate and append exclude each other"));
        }
        Ok(match (self.create, self.truncate, self.create_new) {
            (_, _, true) => libc::O_CREAT | libc::O_EXCL,
            (true, true, false) => libc::O_CREAT | libc::O_TRUNC,
            (true, false, false) => libc::O_CREAT,
            (false, true, false) => libc::O_TRUNC,
            (false, false, false) => 0,
        })
    }
}

fn invalid(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_std() {
        let flags = |o: &OpenOptions| o.flags().map_err(|e| e.kind());
        let base = libc::O_CLOEXEC;
        assert_eq!(flags(OpenOptions::new().read(true)), Ok(base));
        assert_eq!(
            flags(OpenOptions::new().write(true).create(true).truncate(true)),
            Ok(base | libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)
        );
        assert_eq!(
            flags(OpenOptions::new().read(true).append(true).create_new(true)),
            Ok(base | libc::O_RDWR | libc::O_APPEND | libc::O_CREAT | libc::O_EXCL)
        );
        assert_eq!(
            flags(
                OpenOptions::new()
                    .read(true)
                    .direct(true)
                    .custom_flags(libc::O_WRONLY)
            ),
            Ok(base | libc::O_DIRECT)
        );
    }

    #[test]
    fn combinations_std_rejects_are_invalid_input() {
        let invalid = Err(io::ErrorKind::InvalidInput);
        let flags = |o: &OpenOptions| o.flags().map_err(|e| e.kind());
        assert_eq!(flags(&OpenOptions::new()), invalid);
        assert_eq!(flags(OpenOptions::new().read(true).create(true)), invalid);
        assert_eq!(
            flags(OpenOptions::new().append(true).truncate(true)),
            invalid
        );
    }
}
