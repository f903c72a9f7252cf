//! The warehouse: where clientele keeps everything it produces, and how it gets there safely.
//!
//! # Overview
//! - [`Warehouse`] opens a location given as a local directory or an object-store URL (`file://`,
//!   `s3://bucket/prefix`, `memory://`) and offers the few operations the pipeline needs: put, get,
//!   list, and [`Warehouse::parquet_writer`], which streams Arrow batches into a Parquet object while
//!   computing its SHA-256.
//! - [`layout`] names every file: `LAYER/TABLE/as_of=YYYY-MM-DD/part-0.parquet`, the run manifests under
//!   `_runs/`, and a run's private staging area under `_staging/RUN_ID/`.
//! - [`Warehouse::publish`] moves a run's staged files into place one object at a time with an atomic
//!   rename (a single server-side copy on S3), only after every step has succeeded, so readers never see a
//!   half-written file and a failed run leaves the last good outputs untouched.
//! - [`tombstone`]: hashed identifiers of people who asked to be forgotten, which later loads
//!   leave out.
//! - [`RunLock`] keeps two runs from writing one warehouse at once and recognises a lock left by a killed run.
//!
//! # Example
//! ```
//! # async fn demo() -> clientele_store::Result<()> {
//! use clientele_store::{layout, Warehouse};
//! let dir = tempfile::tempdir().map_err(|e| clientele_store::Error::io("tempdir", e))?;
//! let wh = Warehouse::open(dir.path().to_str().unwrap_or_default(), dir.path())?;
//! let staged = layout::staged(&layout::RunId::new("r1"), "marts/customer_view/as_of=2025-12-31/part-0.parquet");
//! wh.put(&staged, bytes::Bytes::from_static(b"demo")).await?;
//! wh.publish(&layout::RunId::new("r1"), &["marts/customer_view/as_of=2025-12-31/part-0.parquet".to_string()]).await?;
//! assert_eq!(&wh.get("marts/customer_view/as_of=2025-12-31/part-0.parquet").await?[..], b"demo");
//! # Ok(()) }
//! ```

mod error;
pub mod layout;
mod lock;
mod parquet_file;
pub mod tombstone;
mod warehouse;

pub use error::{Error, Result};
pub use lock::{LockInfo, RunLock};
pub use parquet_file::{ParquetFileWriter, WrittenFile};
pub use warehouse::{Warehouse, normalise_path, remote_store};
