//! SQL models: the `.sql` files under `sql/` that turn raw sources into the customer view, run on
//! Apache DataFusion.
//!
//! # Overview
//! - [`ModelSet::load`] reads every model (`sql/<layer>/<name>.sql`, where the layer is `staging`,
//!   `intermediate` or `marts`; `sql/segments/` belongs to the segments step), finds the tables each
//!   one reads and orders them so that every model runs after the models it reads ([`ModelSet::ordered`]).
//! - [`Engine`] is the one place a DataFusion session is built: fixed partitions, an optional memory
//!   limit, the `as_of_date()` function that models use instead of the clock, the warehouse's object
//!   store, and the `raw` and `quarantine` schemas. Swapping it for a Ballista session leaves the steps as
//!   they are, because steps hand data to each other only as Parquet in the warehouse.
//! - [`Engine::hold`] runs a query once and holds its result as a table in a temporary Parquet file,
//!   for a query that reads it several times (DataFusion computes a `with` query at each use).
//! - [`Engine::materialise`] runs a query and streams its result into a staged Parquet file with plain
//!   types (UTF-8 strings, UTC timestamps), then registers it for the models downstream;
//!   [`Engine::plan_schema`] plans a query without running it (dry runs and `validate`).
//! - [`parts`]: a model that declares a key (`-- parts: dim_customer.customer_id`) runs, under a
//!   memory limit and when its inputs are large against it, in ranges of that key one after another
//!   ([`Engine::parts`], [`Engine::materialise_in_parts`]), so that what it holds grows with a part.
//! - [`queries`] holds the parameterised queries of `sql/queries/` that the steps run besides the
//!   models (classifier features, RFM and CLV inputs, campaign measurement, previous audiences).
//!
//! # Example
//! ```
//! # async fn demo() -> clientele_sql::Result<()> {
//! use clientele_sql::{Engine, EngineOptions};
//! let dir = tempfile::tempdir().map_err(|e| clientele_sql::Error::Io { path: "tmp".into(), source: e })?;
//! let wh = clientele_store::Warehouse::open("wh", dir.path())?;
//! let as_of = chrono::NaiveDate::from_ymd_opt(2025, 12, 31).unwrap_or_default();
//! let engine = Engine::new(&wh, as_of, &EngineOptions::default())?;
//! let schema = engine.plan_schema("select as_of_date() as d").await?;
//! assert_eq!(schema.field(0).name(), "d");
//! # Ok(()) }
//! ```

mod data_test_runs;
pub mod data_tests;
mod engine;
mod error;
mod models;
pub mod parts;
mod pool;
pub mod queries;

pub use data_test_runs::TEST_ROWS_PER_MIB;
pub use engine::{
    BatchStream, Engine, EngineOptions, HELD_DIR_PREFIX, HISTORY_SCHEMA, HISTORY_SNAPSHOTS_SUFFIX,
    HeldTable, date32, normalise_batch, remove_stale_held,
};
pub use error::{Error, Result};
pub use models::{LAYERS, Model, ModelSet, parse_model, parse_reads};
