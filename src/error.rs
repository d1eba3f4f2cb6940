//! The crate's one error type.
//!
//! Every entry point validates its input before any kernel runs and returns one of these instead
//! of panicking. Messages name the argument and the offending value so that a user can act on
//! them without reading the source.

/// Everything that can go wrong in `asymloss`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two inputs (or an input and an output) disagree in length or shape.
    #[error("shape mismatch for {what}: expected {expected}, got {got}")]
    Shape {
        /// Which argument is wrong (`targets`, `grad`, `class_weight`, ...).
        what: &'static str,
        /// The shape or length the other arguments imply.
        expected: String,
        /// The shape or length that was passed.
        got: String,
    },

    /// A loss parameter is outside its valid range.
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// The parameter's name, as in this crate's configuration types.
        name: &'static str,
        /// The value that was given.
        value: String,
        /// The allowed range.
        reason: &'static str,
    },

    /// A multi-label target is not one of the allowed values.
    #[error("invalid target at element {index} (row {row}, column {col}): {value}; {allowed}")]
    InvalidTarget {
        /// Flat (row-major) index of the first bad element.
        index: usize,
        /// Its row.
        row: usize,
        /// Its column.
        col: usize,
        /// The value found there, printed.
        value: String,
        /// What the target type allows.
        allowed: &'static str,
    },

    /// A single-label class index is outside `0..classes` (and is not the ignore index).
    #[error("class index out of range at row {row}: {value} (classes: {classes}{ignore})")]
    ClassOutOfRange {
        /// The first bad row.
        row: usize,
        /// The class index found there.
        value: i64,
        /// The number of classes `C`.
        classes: usize,
        /// `", ignore_index: k"` when one is set, otherwise empty.
        ignore: String,
    },

    /// The pass asked for cannot be done with the arguments given (for example a backward pass
    /// with no gradient buffer).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The backend cannot do what was asked (a dtype, a feature the adapter lacks, ...).
    #[error("unsupported on this backend: {0}")]
    Unsupported(String),

    /// No wgpu adapter could be found, or the device could not be created.
    #[error("no usable wgpu adapter: {0}")]
    NoAdapter(String),

    /// wgpu reported an error (validation, out of memory, a failed map or poll).
    #[error("wgpu error: {0}")]
    Wgpu(String),

    /// The CUDA driver or NVRTC library is not installed, or no CUDA device is present.
    #[error("CUDA is unavailable: {0}")]
    CudaUnavailable(String),

    /// A CUDA driver call failed.
    #[error("CUDA driver error: {0}")]
    Cuda(String),

    /// NVRTC refused a kernel; the message carries NVRTC's log.
    #[error("NVRTC compilation of {kernel} failed: {log}")]
    Nvrtc {
        /// The kernel file.
        kernel: &'static str,
        /// NVRTC's log.
        log: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for a [`Error::Shape`] error.
    pub fn shape(what: &'static str, expected: impl ToString, got: impl ToString) -> Self {
        Error::Shape {
            what,
            expected: expected.to_string(),
            got: got.to_string(),
        }
    }
}
