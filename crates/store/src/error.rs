use std::path::PathBuf;

/// Errors of the warehouse layer. Each says which location or object was involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The warehouse location is not a directory or URL clientele can open.
    #[error("warehouse location '{location}' is not usable: {reason}")]
    BadLocation { location: String, reason: String },

    /// The object store refused or failed an operation.
    #[error("storage error on '{path}': {source}")]
    Storage {
        path: String,
        #[source]
        source: object_store::Error,
    },

    /// A local file-system operation failed.
    #[error("i/o error on '{path}': {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Writing or reading Parquet failed.
    #[error("parquet error on '{path}': {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// A JSON document in the warehouse (manifest, lock) could not be read or written.
    #[error("bad JSON in '{path}': {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },

    /// Another run holds the warehouse lock.
    #[error(
        "the warehouse is locked by run {run_id} (host {host}, pid {pid}, since {started_at}); \
         if that run is gone, remove '{lock_path}' or wait until the lock is older than {stale_after_hours} h"
    )]
    Locked {
        run_id: String,
        host: String,
        pid: u32,
        started_at: String,
        lock_path: String,
        stale_after_hours: i64,
    },

    /// Another writer committed the version this run meant to commit (a run that lost its lock
    /// while it worked): this run's files are left for garbage collection, nothing is published.
    #[error(
        "another run committed version {version} of the warehouse first; this run's outputs were not published"
    )]
    CommitConflict { version: u64 },

    /// A failpoint set in `CLIENTELE_FAILPOINT` (tests) was reached.
    #[error("failpoint {0} reached")]
    Injected(String),
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn storage(path: impl ToString, source: object_store::Error) -> Self {
        Self::Storage {
            path: path.to_string(),
            source,
        }
    }

    /// An i/o error on a local path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
