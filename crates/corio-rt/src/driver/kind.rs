//! Which driver a core runs on: [`DriverKind`], `CORIO_DRIVER`, and the choice made when a core
//! is set up (io_uring if it can be had, else epoll, saying why once).

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use super::uring::Uring;

/// Which driver a core runs on.
///
/// By default a runtime uses io_uring when it can be set up and falls back to epoll when it
/// cannot (with one line on stderr saying why). `CORIO_DRIVER=io_uring|epoll` or
/// [`Builder::driver`](crate::Builder::driver) forces one; forcing io_uring where it is blocked
/// is an error that names the cause. [`driver_kind`](crate::driver_kind) tells which one the
/// current core runs.
///
/// # Examples
/// ```
/// use corio::rt::{DriverKind, Runtime};
/// let rt = Runtime::builder().cores(1).pin(false).driver(DriverKind::Epoll).build()?;
/// let kinds = rt.run(|_| async { corio::rt::driver_kind() });
/// assert_eq!(kinds, vec![Some(DriverKind::Epoll)]);
/// # std::io::Result::Ok(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DriverKind {
    /// io_uring (Linux 5.11+; the fastest, and the default where it works).
    IoUring,
    /// epoll readiness plus blocking threads for files: runs wherever Linux does.
    Epoll,
}

impl DriverKind {
    /// The driver `CORIO_DRIVER` forces, if it is set (`auto` or empty: none).
    ///
    /// # Errors
    /// `InvalidInput` for a value other than `io_uring`, `epoll` or `auto`.
    pub fn from_env() -> io::Result<Option<DriverKind>> {
        match std::env::var("CORIO_DRIVER") {
            Ok(text) => DriverKind::parse(&text),
            Err(_) => Ok(None),
        }
    }

    fn parse(text: &str) -> io::Result<Option<DriverKind>> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(None),
            "io_uring" | "io-uring" | "uring" => Ok(Some(DriverKind::IoUring)),
            "epoll" => Ok(Some(DriverKind::Epoll)),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CORIO_DRIVER: unknown driver `{other}` (io_uring, epoll or auto)"),
            )),
        }
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DriverKind::IoUring => "io_uring",
            DriverKind::Epoll => "epoll",
        })
    }
}

/// The backend a core gets.
#[allow(clippy::large_enum_variant)] // built once per core, moved once into the driver
pub(crate) enum Chosen {
    Uring(Uring),
    Epoll,
}

/// Picks the backend: `kind` if given, else `CORIO_DRIVER`'s, else io_uring if `uring()` sets
/// one up, else epoll, saying why once per process on stderr.
///
/// # Errors
/// io_uring's setup error (naming the cause) when io_uring is forced; a bad `CORIO_DRIVER`.
pub(crate) fn choose(
    kind: Option<DriverKind>,
    uring: impl FnOnce() -> io::Result<Uring>,
) -> io::Result<Chosen> {
    let kind = match kind {
        Some(kind) => Some(kind),
        None => DriverKind::from_env()?,
    };
    match kind {
        Some(DriverKind::Epoll) => Ok(Chosen::Epoll),
        Some(DriverKind::IoUring) => uring().map(Chosen::Uring),
        None => match uring() {
            Ok(uring) => Ok(Chosen::Uring(uring)),
            Err(err) if blocked(&err) => {
                static SAID: AtomicBool = AtomicBool::new(false);
                if !SAID.swap(true, Ordering::Relaxed) {
                    eprintln!("corio: using the epoll driver: {err}");
                }
                Ok(Chosen::Epoll)
            }
            Err(err) => Err(err),
        },
    }
}

/// Whether a setup error means io_uring is not to be had here (blocked by a sandbox or the
/// sysctl, absent, or too old), rather than a shortage that epoll would meet too (EMFILE,
/// ENOMEM).
fn blocked(err: &io::Error) -> bool {
    // The setup error keeps the kind of its errno (EPERM and EACCES: PermissionDenied;
    // ENOSYS, EOPNOTSUPP and a kernel too old: Unsupported; EINVAL for every setup: InvalidInput).
    matches!(
        err.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported | io::ErrorKind::InvalidInput
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_parse_and_nonsense_is_refused() {
        assert_eq!(DriverKind::parse("epoll").unwrap(), Some(DriverKind::Epoll));
        assert_eq!(
            DriverKind::parse(" IO_URING ").unwrap(),
            Some(DriverKind::IoUring)
        );
        assert_eq!(DriverKind::parse("auto").unwrap(), None);
        assert_eq!(DriverKind::parse("").unwrap(), None);
        let err = DriverKind::parse("kqueue").unwrap_err();
        assert!(err.to_string().contains("kqueue"), "{err}");
        assert_eq!(DriverKind::Epoll.to_string(), "epoll");
    }
}
