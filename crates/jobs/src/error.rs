/// Errors of jobs. [`Error::Spec`] is the user's spec (exit 2); the others stop a run (exit 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The job spec or a file it names is wrong; every problem carries its file and line.
    #[error("the job spec has {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Spec { problems: Vec<crate::spec::Problem> },

    /// The warehouse could not be used (including: another run holds its lock).
    #[error(transparent)]
    Store(#[from] clientele_store::Error),

    /// The query engine could not be set up.
    #[error(transparent)]
    Sql(#[from] clientele_sql::Error),

    /// Identity resolution could not be set up.
    #[error(transparent)]
    Identity(#[from] clientele_identity::Error),

    /// A run manifest could not be written or read.
    #[error("run manifest '{path}': {reason}")]
    Manifest { path: String, reason: String },
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
