//! Ingest: turns legacy and external customer files into typed Parquet, rejecting bad rows into
//! quarantine with a reason, and reconciling what was read against what was loaded.
//!
//! # Overview
//! - [`SourceSpec`] is a source as a job spec declares it (TOML): name, format, location glob,
//!   encoding and fields. [`SourceSpec::plan`] validates it into a [`SourcePlan`], reporting every problem.
//! - Formats: `fixed_width` (field positions), `whitespace` (whitespace-aligned columns, such as the
//!   CDNOW order log), `delimited` (CSV, TSV, pipe; quoting by RFC 4180) and `json_lines` (nested
//!   fields by dotted path).
//! - [`ingest_source`] reads every file of a source on a blocking thread, converts each field to its
//!   declared Arrow type ([`FieldType`]) and streams the good rows to Parquet. A row that does not fit
//!   goes to the source's quarantine table with file, line, field, reason and raw text; for every file
//!   `rows_read = rows_loaded + rows_quarantined` holds and is reported in [`SourceReport`].
//! - Source-level checks turn into errors: a required source with no files or no rows, and a reject
//!   share above the source's limit.
//!
//! # Example
//! ```
//! use clientele_ingest::SourceSpec;
//! let spec: SourceSpec = toml::from_str(r#"
//!     name = "orders"
//!     format = "whitespace"
//!     location = "orders/*.txt"
//!     fields = [
//!       { name = "customer_no", type = "string", column = 1 },
//!       { name = "order_date", type = "date", format = "%Y%m%d", column = 2 },
//!       { name = "amount", type = "decimal(12,2)", column = 4 },
//!     ]
//! "#).map_err(|e| e.to_string())?;
//! let plan = spec.plan(std::path::Path::new(".")).map_err(|problems| problems.join("; "))?;
//! assert_eq!(plan.arrow_schema().fields().len(), 5); // three fields plus _file and _line
//! # Ok::<(), String>(())
//! ```

mod builders;
pub mod copybook;
mod decode;
mod delimited;
mod error;
mod formats;
mod infer;
mod input;
mod postgres;
pub mod postgres_tls;
mod readers;
mod rules;
mod run;
mod spec;
mod unique;
mod values;

pub use error::{Error, Result};
pub use infer::infer_source;
pub use input::{InputFile, resolve_inputs};
pub use postgres::Relation;
pub use readers::{LocalFile, read_bytes, read_local_file};
pub use rules::{Bound, FieldRules};
pub use run::{
    FileReport, FileStatus, LoadOptions, OutputPaths, SourceReport, ingest_source,
    quarantine_schema,
};
pub use spec::{
    Compression, Encoding, FILE_COLUMN, FieldPlan, FieldSpec, FieldType, Format, LINE_COLUMN,
    OnDuplicate, Position, SourcePlan, SourceSpec, UniqueKey,
};
