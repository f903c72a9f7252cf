use std::path::PathBuf;

/// Errors of segment evaluation and export.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A segment file is wrong (header, query shape).
    #[error("{path}: {reason}", path = path.display())]
    BadSegment { path: PathBuf, reason: String },

    /// An export spec is wrong.
    #[error("export '{export}': {reason}")]
    BadExport { export: String, reason: String },

    /// A global suppression list is missing or unreadable.
    #[error("{0}")]
    Suppression(String),

    /// A query failed.
    #[error(transparent)]
    Sql(#[from] clientele_sql::Error),

    /// Writing the warehouse failed.
    #[error(transparent)]
    Store(#[from] clientele_store::Error),

    /// Building output failed (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
