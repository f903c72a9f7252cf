//! The warehouse: where clientele keeps everything it produces, and how it gets there safely.
//!
//! # Overview
//! - [`Warehouse`] opens a location given as a local directory or an object-store URL (`file://`,
//!   `s3://bucket/prefix`, `memory://`) and offers the few operations the pipeline needs: put, get,
//!   list, and [`Warehouse::parquet_writer`], which streams Arrow batches into a Parquet object while
//!   computing its SHA-256.
//! - [`layout`] names every file: `LAYER/TABLE/as_of=YYYY-MM-DD/part-0.parquet`, the run manifests under
//!   `_runs/`, and a run's private staging area under `_staging/RUN_ID/`.
//! - [`commit`]: a run's outputs become visible in one atomic step. [`Warehouse::publish`] moves the
//!   staged files to run-unique names and then writes one commit record with put-if-absent;
//!   [`Warehouse::snapshot`] is what readers see, the previous run or the new one whole. A failed or
//!   crashed run leaves the last good outputs untouched, and [`Warehouse::collect_garbage`] removes
//!   what it left.
//! - [`tombstone`]: hashed identifiers of people who asked to be forgotten, which later loads
//!   leave out.
//! - [`RunLock`] keeps two runs from writing one warehouse at once: generations written with
//!   put-if-absent, so taking over a dead run's lock and releasing one's own are compare-and-swap
//!   steps, with a heartbeat while the run lives.
//! - [`failpoint`]: fault injection for tests (`CLIENTELE_FAILPOINT`).
//!
//! # Example
//! ```
//! # async fn demo() -> clientele_store::Result<()> {
//! use clientele_store::{layout, Warehouse};
//! let dir = tempfile::tempdir().map_err(|e| clientele_store::Error::io("tempdir", e))?;
//! let wh = Warehouse::open(dir.path().to_str().unwrap_or_default(), dir.path())?;
//! let run = layout::RunId::new("r1");
//! let rel = "marts/customer_view/as_of=2025-12-31/part-0.parquet";
//! wh.put(&layout::staged(&run, rel), bytes::Bytes::from_static(b"demo")).await?;
//! let base = wh.snapshot().await?;
//! let changes = clientele_store::Changes { files: vec![rel.to_string()], removed: vec![] };
//! wh.publish(&run, &base, &changes, chrono::Utc::now()).await?;
//! let published = wh.snapshot().await?;
//! assert_eq!(&wh.get(published.resolve(rel).unwrap_or_default()).await?[..], b"demo");
//! # Ok(()) }
//! ```

pub mod commit;
mod error;
pub mod failpoint;
pub mod layout;
mod lock;
mod parquet_file;
pub mod retrying;
pub mod tombstone;
mod warehouse;

pub use commit::{Changes, Snapshot};
pub use error::{Error, Result};
pub use lock::{LockInfo, RunLock};
pub use parquet_file::{ParquetFileWriter, WrittenFile};
pub use warehouse::{Warehouse, normalise_path, remote_store};
