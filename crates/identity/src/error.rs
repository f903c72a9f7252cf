//! Errors of identity resolution.

/// What went wrong, and whose fault it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `[identity]` spec is invalid; every problem, joined by `; `.
    #[error("identity spec: {0}")]
    Spec(String),
    /// The input table lacks a column or has one of the wrong type.
    #[error("identity input: {0}")]
    Input(String),
    /// A record named on the command line is not in the input.
    #[error("record '{0}' is not among the resolved records")]
    UnknownRecord(String),
    /// A bug: a worker thread failed.
    #[error("internal error: {0}")]
    Internal(String),
    /// The candidate pairs' comparison patterns could not be written to the temporary directory
    /// or read back from it.
    #[error(
        "the candidate pairs' comparison patterns spilled to the temporary directory (TMPDIR): {0}"
    )]
    Spill(#[source] std::io::Error),
    /// Building an output table failed (a bug).
    #[error("building the {table} table: {source}")]
    Arrow {
        table: &'static str,
        #[source]
        source: arrow::error::ArrowError,
    },
}

/// Result with this crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
