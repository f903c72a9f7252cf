use std::path::PathBuf;

/// Errors of ingestion. Row-level problems never appear here: they go to quarantine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The source spec is wrong (a problem list, each naming the field).
    #[error("source '{source_name}': {}", problems.join("; "))]
    BadSpec {
        source_name: String,
        problems: Vec<String>,
    },

    /// A required source has no files matching its location.
    #[error("source '{source_name}': no file matches '{location}' (the source is required)")]
    MissingSource {
        source_name: String,
        location: String,
    },

    /// A required source has files but no rows at all.
    #[error(
        "source '{source_name}': the files matching '{location}' hold no rows (the source is required)"
    )]
    EmptySource {
        source_name: String,
        location: String,
    },

    /// A whole file cannot be read as the spec says (as opposed to single bad rows).
    #[error("source '{source_name}', file '{file}': {reason}", file = file.display())]
    BadFile {
        source_name: String,
        file: PathBuf,
        reason: String,
    },

    /// The newest file of a source is older than the source's freshness limit.
    #[error("source '{source_name}': {detail}")]
    Stale { source_name: String, detail: String },

    /// Too many rows were rejected.
    #[error(
        "source '{source_name}': {quarantined} of {read} rows were quarantined ({share:.2}%), above the limit of \
         {limit:.2}% (max_reject_share); see the quarantine table for the reasons"
    )]
    TooManyRejects {
        source_name: String,
        quarantined: u64,
        read: u64,
        share: f64,
        limit: f64,
    },

    /// Reading a local file failed.
    #[error("i/o error on '{path}': {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Writing the warehouse failed.
    #[error(transparent)]
    Store(#[from] clientele_store::Error),

    /// Building Arrow arrays failed (a bug: the values were checked before).
    #[error("internal error while building Arrow data for source '{source_name}': {reason}")]
    Internal { source_name: String, reason: String },
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
