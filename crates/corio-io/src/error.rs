//! Errors that say what they were about: the address a connect or bind was for, the path a file
//! op was on. The kind is kept (callers match on it) and the OS error stays reachable as the
//! error's `source()`.

use std::error::Error;
use std::fmt;
use std::io;

/// An I/O error with what was being done when it happened.
#[derive(Debug)]
struct WithContext {
    context: String,
    source: io::Error,
}

impl fmt::Display for WithContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl Error for WithContext {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

/// `err` with `context` ("connect to 127.0.0.1:6379", "open /etc/x") in front of its message;
/// same kind, the original as the source.
pub(crate) fn context(err: io::Error, context: impl fmt::Display) -> io::Error {
    io::Error::new(
        err.kind(),
        WithContext {
            context: context.to_string(),
            source: err,
        },
    )
}
