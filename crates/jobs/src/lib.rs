//! Jobs: what a nightly run does, in what order, and the record of what it did.
//!
//! # Overview
//! - [`JobSpec::load`] reads a job spec (TOML, see docs/jobs.md) in two stages: the raw TOML with unknown
//!   keys refused, then a validated [`JobSpec`] whose every problem carries the file and line
//!   ([`Problem`]). `${VAR}` and `${VAR:-default}` are replaced from the environment first.
//! - Steps (`ingest`, `sql`, `identity`, `score`, `segments`, `export`) form a graph: a step depends on the steps that
//!   produce the tables it reads, and on any it names in `depends_on` ([`JobSpec::step_order`]).
//!   Each kind is one module of [`steps`]: a spec (`kind = "..."`, unknown keys refused) and an
//!   [`Operation`] that plans and runs it and returns its tables, metrics and report section.
//! - [`Runner`] runs a job for an as-of date: it takes the warehouse lock, builds the one query engine,
//!   runs the steps' operations in order (skipping everything downstream of a failure), stages every output under
//!   `_staging/RUN_ID/`, and publishes them only when every step succeeded. Each run leaves a
//!   [`RunManifest`] under `_runs/`, which [`list_runs`] reads back.
//! - Copies of exports go to their `location` only after the run has published, from the
//!   published files; one that cannot be delivered stays pending and every later run tries it
//!   again ([`Delivery`], in the manifest).
//! - [`forget::forget`] erases one person from every published table and export file, leaves a
//!   tombstone that later loads honour, and an audit entry; `raw_retention_days` drops old raw
//!   partitions after each successful run.
//! - [`Published`] is the read side: dates, an engine over one date's tables, the suppression list
//!   a run applied, segment changes; the commands that read a warehouse go through it.
//! - [`Runner::plan`] is the dry run: it plans every SQL query against the declared and derived
//!   schemas, without data and without writing anything.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use clientele_jobs::{JobSpec, RunOptions, Runner};
//! let spec = JobSpec::load(std::path::Path::new("jobs/demo.toml"))?;
//! let as_of = chrono::NaiveDate::from_ymd_opt(2025, 12, 31).ok_or("date")?;
//! let manifest = Runner::new(spec, RunOptions::new(as_of)).run().await?;
//! println!("{} {:?}", manifest.run_id, manifest.status);
//! # Ok(()) }
//! ```

pub mod contract;
mod delivery;
mod error;
pub mod forget;
mod history;
mod manifest;
mod published;
mod report;
mod resources;
mod retention;
mod runner;
mod spec;
pub mod steps;

pub use clientele_segments::thousands;
pub use delivery::Delivery;
pub use error::{Error, Result};
pub use history::list_runs;
pub use manifest::{RunManifest, RunStatus, StepReport, StepStatus, TableSummary};
pub use published::{
    CONTACTS_TABLE, PULL_TABLES, Published, SUPPRESSION_TABLE, SegmentChanges,
    customer_view_columns,
};
pub use report::render_report;
pub use retention::RetentionReport;
pub use runner::{PlannedStep, RunObserver, RunOptions, Runner};
pub use spec::{JobSpec, Problem, Step, TableId};
pub use steps::identity::explain_match;
pub use steps::score::{
    ModelReport, SCORE_INPUT_TABLES, ScoreOptions, churn_scoring_template, clv_scoring_template,
    propensity_scoring_template, score_with_artifact,
};
pub use steps::{Operation, StepSpec};
