/// Errors of jobs. [`Error::Spec`] is the user's spec (exit 2); the others stop a run (exit 1).
/// The stage crates' errors are kept whole, so each says who is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The job spec or a file it names is wrong; every problem carries its file and line.
    #[error("the job spec has {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Spec { problems: Vec<crate::spec::Problem> },

    /// The warehouse could not be used (including: another run holds its lock).
    #[error(transparent)]
    Store(#[from] clientele_store::Error),

    /// A source could not be loaded, or broke its limits.
    #[error(transparent)]
    Ingest(#[from] clientele_ingest::Error),

    /// A query, model or data test failed.
    #[error(transparent)]
    Sql(#[from] clientele_sql::Error),

    /// Identity resolution failed.
    #[error(transparent)]
    Identity(#[from] clientele_identity::Error),

    /// A customer model could not be fitted or scored, or fell below its floor.
    #[error(transparent)]
    Models(#[from] clientele_models::Error),

    /// A segment or export failed.
    #[error(transparent)]
    Segments(#[from] clientele_segments::Error),

    /// What a command asked for has not been published (a date, a table): the user's request,
    /// not a failed run.
    #[error("{0}")]
    NotPublished(String),

    /// A table a step reads is missing or has the wrong shape.
    #[error("{0}")]
    Input(String),

    /// Building a table failed (a bug).
    #[error("internal error building a table: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// A run manifest could not be written or read.
    #[error("run manifest '{path}': {reason}")]
    Manifest { path: String, reason: String },

    /// Something that should not happen (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
