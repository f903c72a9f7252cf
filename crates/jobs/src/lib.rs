//! Jobs: what a nightly run does, in what order, and the record of what it did.
//!
//! # Overview
//! - [`JobSpec::load`] reads a job spec (TOML, see docs/jobs.md) in two stages: the raw TOML with unknown
//!   keys refused, then a validated [`JobSpec`] whose every problem carries the file and line
//!   ([`Problem`]). `${VAR}` and `${VAR:-default}` are replaced from the environment first.
//! - Steps (`ingest`, `sql`, `identity`, `rfm`, `segments`, `export`) form a graph: a step depends on the steps that
//!   produce the tables it reads, and on any it names in `depends_on` ([`JobSpec::step_order`]).
//! - [`Runner`] runs a job for an as-of date: it takes the warehouse lock, builds the one query engine,
//!   runs the steps in order (skipping everything downstream of a failure), stages every output under
//!   `_staging/RUN_ID/`, and publishes them only when every step succeeded. Each run leaves a
//!   [`RunManifest`] under `_runs/`, which [`list_runs`] reads back.
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

mod error;
pub mod exporting;
mod history;
mod identity;
mod manifest;
mod memory;
mod report;
mod runner;
mod scoring;
mod spec;

pub use error::{Error, Result};
pub use history::list_runs;
pub use identity::explain_match;
pub use manifest::{RunManifest, RunStatus, StepReport, StepStatus, TableSummary};
pub use report::{render_report, thousands};
pub use runner::{PlannedStep, RunObserver, RunOptions, Runner};
pub use scoring::{
    ModelReport, SCORE_INPUT_TABLES, churn_scoring_template, clv_scoring_template,
    propensity_scoring_template, score_with_artifact,
};
pub use spec::{JobSpec, Problem, ScoreOptions, StepKind, StepSpec};
