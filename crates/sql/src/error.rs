use std::path::PathBuf;

use datafusion::error::DataFusionError;

/// Errors of the SQL layer; each names the model or query at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model file is wrong before it reaches the engine (unreadable, duplicate name, cycle, parse error).
    #[error("{path}: {reason}", path = path.display())]
    BadModel { path: PathBuf, reason: String },

    /// A model does not plan: unknown table or column, type mismatch, ... (the model's SQL is at fault).
    #[error("{path}: model '{model}' does not plan: {source}", path = path.display())]
    Plan {
        model: String,
        path: PathBuf,
        #[source]
        source: DataFusionError,
    },

    /// Data tests of a model failed: the rows are wrong, not the SQL. Each failure names the test,
    /// its line, the number of failing rows and a sample.
    #[error("{path}: model '{model}' failed {} data test(s):\n{}", failures.len(), failures.join("\n"), path = path.display())]
    DataTests {
        model: String,
        path: PathBuf,
        failures: Vec<String>,
    },

    /// A query failed while running.
    #[error("{what} failed while running: {source}")]
    Execution {
        what: String,
        #[source]
        source: DataFusionError,
    },

    /// A query needed more memory than the job's `memory_limit_mb` lets the engine use, even after
    /// spilling what can spill (and, for a model, after running again with a fair memory pool and
    /// then with sort-merge joins).
    #[error(
        "{what} needs more memory than memory_limit_mb = {limit_mb} lets the query engine use \
         (what can spill was spilled to the temporary directory{retried}); raise memory_limit_mb \
         in the job's [job] table: {source}",
        retried = crate::engine::attempts_tried(*attempt)
    )]
    OutOfMemory {
        what: String,
        limit_mb: u64,
        /// Which of [`crate::Engine::attempts`] it was: 0 as the engine is set up, 1 with a fair
        /// memory pool, 2 also with sort-merge joins.
        attempt: usize,
        #[source]
        source: DataFusionError,
    },

    /// The engine could not be set up (configuration).
    #[error("query engine configuration: {0}")]
    Config(String),

    /// Reading or writing the warehouse failed.
    #[error(transparent)]
    Store(#[from] clientele_store::Error),

    /// A local file could not be read.
    #[error("i/o error on '{path}': {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether a query ran out of the memory limit ([`Error::OutOfMemory`]).
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, Error::OutOfMemory { .. })
    }
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
