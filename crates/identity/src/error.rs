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
    /// Work set aside on disk (the candidate pairs' comparison patterns, the record ids) could not
    /// be written to the temporary directory or read back from it.
    #[error("{what} set aside in the temporary directory {dir}: {source}")]
    Spill {
        /// What was set aside.
        what: &'static str,
        /// The directory.
        dir: String,
        #[source]
        source: std::io::Error,
    },
    /// Building an output table failed (a bug).
    #[error("building the {table} table: {source}")]
    Arrow {
        table: &'static str,
        #[source]
        source: arrow::error::ArrowError,
    },
}

impl Error {
    /// An error of the comparison patterns set aside in `dir`.
    pub(crate) fn spilled_patterns(
        dir: Option<&std::path::Path>,
    ) -> impl Fn(std::io::Error) -> Error {
        Self::spill("the candidate pairs' comparison patterns", dir)
    }

    /// An error of `what`, set aside in `dir` (`None`: the system's temporary directory).
    pub(crate) fn spill(
        what: &'static str,
        dir: Option<&std::path::Path>,
    ) -> impl Fn(std::io::Error) -> Error {
        let dir = dir.map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
        move |source| Error::Spill {
            what,
            dir: dir.display().to_string(),
            source,
        }
    }
}

/// Result with this crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
