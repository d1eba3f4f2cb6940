//! The command's one error type: a message for one line of stderr and an exit status.
//!
//! Exit status 2 means bad usage or bad input (including an unwritable output path and a backend
//! that was asked for by name but cannot run here); 1 means a failure while computing (a GPU
//! driver or compiler error). clap's own usage errors also exit with 2.

use asymloss::Error;

/// A failure to report and exit with.
#[derive(Debug)]
pub struct Failure {
    /// The exit status.
    pub code: u8,
    /// What went wrong, for one line of stderr.
    pub msg: String,
}

impl Failure {
    /// The message on one line: newlines (from a compiler log, say) become `; `.
    pub fn one_line(&self) -> String {
        one_line(&self.msg)
    }
}

/// Collapses a multi-line message onto one line.
pub fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Bad usage or input: exit status 2.
pub fn usage(msg: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        msg: msg.into(),
    }
}

/// A failure while computing: exit status 1.
pub fn runtime(msg: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        msg: msg.into(),
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match e {
            Error::Shape { .. }
            | Error::InvalidParameter { .. }
            | Error::InvalidTarget { .. }
            | Error::ClassOutOfRange { .. }
            | Error::InvalidArgument(_)
            | Error::Unsupported(_)
            | Error::NoAdapter(_)
            | Error::CudaUnavailable(_) => 2,
            _ => 1,
        };
        Failure {
            code,
            msg: e.to_string(),
        }
    }
}
