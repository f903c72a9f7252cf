//! The step kinds. Each lives in its own module as one type implementing [`Operation`]: what it
//! reads and writes (decided when the spec is validated), its dry run, and its run, which returns
//! the tables it staged, the files it wrote, its metrics and its section of the run report.
//!
//! The runner knows none of them by name: it orders steps by the tables they read and write, runs
//! or skips them, publishes and writes the manifest. A new step kind is one file here (a spec
//! struct implementing [`Declaration`] and an operation implementing [`Operation`]) and one line
//! in [`step_kinds!`].

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use clientele_identity::Settings as IdentitySettings;
use clientele_ingest::{SourcePlan, SourceReport};
use clientele_segments::{CampaignResult, ExportReport, ExportSpec, Segment, SegmentSize};
use clientele_sql::{Engine, ModelSet};
use clientele_store::layout::{self, RunId};
use clientele_store::{Warehouse, WrittenFile};

use crate::error::Result;
use crate::manifest::IdentityReport;
use crate::spec::{JobSpec, Problem, TableId};

pub mod export;
pub mod identity;
pub mod ingest;
pub mod score;
pub mod segments;
pub mod sql;

/// Declares the step kinds: the spec's tagged enum (`kind = "..."`) and its one dispatch.
macro_rules! step_kinds {
    ($($variant:ident($spec:ty) = $kind:literal),* $(,)?) => {
        /// A `[[steps]]` table's own keys as written (its [`StepHeader`] is read apart), told
        /// apart by its `kind`; each kind refuses keys it does not know, so a misplaced key is
        /// reported with its line.
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(tag = "kind")]
        pub enum StepSpec {
            $(#[serde(rename = $kind)] $variant($spec),)*
        }

        impl StepSpec {
            pub(crate) fn declaration(&self) -> &dyn Declaration {
                match self {
                    $(Self::$variant(s) => s,)*
                }
            }
        }

        /// Every step kind's name as written in specs.
        pub const STEP_KINDS: &[&str] = &[$($kind),*];
    };
}

step_kinds! {
    Ingest(ingest::IngestSpec) = "ingest",
    Sql(sql::SqlSpec) = "sql",
    Identity(identity::IdentitySpec) = "identity",
    Score(score::ScoreSpec) = "score",
    Segments(segments::SegmentsSpec) = "segments",
    Export(export::ExportStepSpec) = "export",
}

/// What a step declaration is checked against: everything else the job declares.
pub(crate) struct SpecContext<'a> {
    pub sources: &'a [SourcePlan],
    pub models: &'a ModelSet,
    pub exports: &'a [ExportSpec],
    pub segments: &'a [Segment],
    pub identity: &'a IdentitySettings,
    /// Whether the job has an identity step (which writes `int_customer_contacts`).
    pub has_identity_step: bool,
}

/// A checked step: its operation and the tables it reads and writes.
pub(crate) struct Checked {
    pub operation: Arc<dyn Operation>,
    pub reads: Vec<TableId>,
    pub writes: Vec<TableId>,
}

/// What every step has, whatever its kind: read before the kind's own keys.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepHeader {
    /// Unique step name.
    pub name: String,
    /// Steps that must finish first, besides the ones inferred from the tables the step reads.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// A step's kind-specific keys as written, before they are checked.
pub(crate) trait Declaration {
    /// Checks the step against the job, filling in defaults. Each problem is a message without
    /// the file and line (the caller adds them); problems in other files (a segment's SQL) are
    /// returned whole.
    fn check(&self, cx: &SpecContext<'_>, problems: &mut Vec<CheckProblem>) -> Option<Checked>;
}

/// A problem found while checking a step.
pub(crate) enum CheckProblem {
    /// At the step's line.
    Step(String),
    /// In another file.
    Elsewhere(Problem),
}

/// What a dry run of a step has at hand.
pub struct PlanContext<'a> {
    pub spec: &'a JobSpec,
    pub engine: &'a Engine,
    pub as_of: NaiveDate,
    /// Also report required sources with no files.
    pub strict: bool,
    /// The step's line in the spec.
    pub line: usize,
    /// The step's name.
    pub step: &'a str,
}

impl PlanContext<'_> {
    /// A problem at the step's line.
    pub(crate) fn problem(&self, message: String) -> Problem {
        Problem {
            file: self.spec.path.clone(),
            line: Some(self.line),
            message,
        }
    }
}

/// What a running step has at hand.
pub struct StepContext<'a> {
    pub spec: &'a JobSpec,
    pub engine: &'a Engine,
    pub warehouse: &'a Warehouse,
    pub run_id: &'a RunId,
    pub as_of: NaiveDate,
    /// Parse every source file again.
    pub full_refresh: bool,
    /// The clock's time when the step started (freshness limits; no output depends on it).
    pub now: DateTime<Utc>,
}

impl StepContext<'_> {
    /// Writes `batch` as the as-of partition of `layer/table` in the run's staging area and
    /// registers it for the steps that follow.
    pub(crate) async fn stage(
        &self,
        layer: &str,
        table: &str,
        batch: &RecordBatch,
    ) -> Result<StagedTable> {
        self.stage_slices(layer, table, batch.schema(), 1, |_| Ok(batch.clone()))
            .await
    }

    /// Like [`StepContext::stage`], for a table built slice by slice (`slice(i)` for `i` in
    /// `0..slices`): the table is never held whole. As many slices as there are cores are built
    /// side by side (the slices do not depend on each other) and then written in order, so
    /// building, which is one thread's work per slice, does not leave the other cores idle; the
    /// file is the same as built one slice at a time.
    pub(crate) async fn stage_slices(
        &self,
        layer: &str,
        table: &str,
        schema: arrow::datatypes::SchemaRef,
        slices: usize,
        slice: impl Fn(usize) -> Result<RecordBatch> + Sync,
    ) -> Result<StagedTable> {
        let rel = layout::partition_file(layer, table, self.as_of);
        let staged = layout::staged(self.run_id, &rel);
        let mut writer = self.warehouse.parquet_writer(&staged, schema)?;
        let side_by_side = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut next = 0;
        while next < slices {
            let group = next..(next + side_by_side).min(slices);
            next = group.end;
            for batch in build_side_by_side(group, &slice)? {
                writer.write(&batch).await?;
            }
        }
        let file = writer.finish(&rel).await?;
        self.engine.register_file(table, &staged).await?;
        Ok(StagedTable {
            name: table.to_string(),
            staged,
            file,
        })
    }
}

/// `slice(i)` for every `i` of `group`, each on its own thread when there are several, in order.
fn build_side_by_side(
    group: std::ops::Range<usize>,
    slice: &(impl Fn(usize) -> Result<RecordBatch> + Sync),
) -> Result<Vec<RecordBatch>> {
    if group.len() <= 1 {
        return group.map(slice).collect();
    }
    std::thread::scope(|scope| {
        let built: Vec<_> = group.map(|i| scope.spawn(move || slice(i))).collect();
        built
            .into_iter()
            .map(|handle| {
                handle.join().map_err(|_| {
                    crate::Error::Internal("a thread building a table's slice failed".into())
                })?
            })
            .collect()
    })
}

/// A table a step wrote to the run's staging area.
#[derive(Debug, Clone)]
pub struct StagedTable {
    /// The name later steps query it by.
    pub name: String,
    /// Where it is staged.
    pub staged: String,
    /// The file as it will be published.
    pub file: WrittenFile,
}

/// The step's part of the run manifest and report.
#[derive(Debug, Default)]
pub struct ReportSection {
    pub sources: Vec<SourceReport>,
    pub identity: Option<IdentityReport>,
    pub models: Vec<crate::ModelReport>,
    pub segments: Vec<SegmentSize>,
    pub alarms: Vec<String>,
    pub exports: Vec<ExportReport>,
    pub campaigns: Vec<CampaignResult>,
}

/// What a step did.
#[derive(Default)]
pub struct StepOutput {
    /// Rows read besides the input tables (source records for ingest, eligible rows for exports).
    pub rows_in: u64,
    pub rows_out: u64,
    /// Tables staged, in the order they were written.
    pub tables: Vec<StagedTable>,
    /// Every file to publish (the tables' and others: artifacts, export files), in the order
    /// they were written.
    pub outputs: Vec<WrittenFile>,
    pub report: ReportSection,
    /// A failure found after the outputs were written (a source over its quarantine limit): the
    /// outputs are reported, and the step fails.
    pub failure: Option<crate::Error>,
}

impl StepOutput {
    /// Adds a staged table, counting its rows as written.
    pub(crate) fn add_table(&mut self, table: StagedTable) {
        self.rows_out += table.file.rows;
        self.push_table(table);
    }

    /// Adds a staged table without counting its rows (the step counts what it wrote otherwise).
    pub(crate) fn push_table(&mut self, table: StagedTable) {
        self.outputs.push(table.file.clone());
        self.tables.push(table);
    }

    /// Adds a file that is not a table.
    pub(crate) fn add_file(&mut self, file: WrittenFile) {
        self.outputs.push(file);
    }
}

/// One step kind's behaviour.
#[async_trait::async_trait]
pub trait Operation: Send + Sync + fmt::Debug {
    /// The kind's name as written in specs.
    fn kind(&self) -> &'static str;

    /// What a dry run lists as written, given the tables the step writes.
    fn describe_writes(&self, writes: &[TableId]) -> Vec<String> {
        writes
            .iter()
            .map(|t| format!("{} ({}/{})", t.name, t.layer, t.table))
            .collect()
    }

    /// The dry run: plans the step's queries against the schemas registered so far, registers
    /// the (empty) tables it writes, and returns one line per unit of work. A problem with the
    /// user's spec or SQL is pushed to `problems`; `Err` is for what stops planning altogether.
    async fn plan(&self, cx: &PlanContext<'_>, problems: &mut Vec<Problem>) -> Result<Vec<String>>;

    /// Runs the step on the tables registered in the engine.
    async fn run(&self, cx: &StepContext<'_>) -> Result<StepOutput>;

    /// For reading a step's settings back (`explain-match` reads the identity step's input).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// Formats an error with its causes, leaving out a cause already quoted by the message before it.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        source = s.source();
    }
    text
}

/// Where a table read by name lives: a model's layer, a step's output, or `unknown` (the check
/// that every read table has a writer reports it).
pub(crate) fn table_for(name: &str, models: &ModelSet) -> TableId {
    if let Some((schema, table)) = name.split_once('.') {
        return TableId::new(schema, table);
    }
    if let Some(m) = models.get(name) {
        return TableId::new(&m.layer, &m.name);
    }
    let known = score::WRITES
        .iter()
        .chain(identity::WRITES.iter())
        .chain(segments::WRITES.iter())
        .chain(export::WRITES.iter())
        .find(|(_, t)| *t == name);
    match known {
        Some((layer, table)) => TableId::new(layer, table),
        None => TableId::new("unknown", name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatchOptions};

    fn numbered(i: usize) -> Result<RecordBatch> {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("i", arrow::datatypes::DataType::Int64, false),
        ]));
        RecordBatch::try_new_with_options(
            schema,
            vec![Arc::new(Int64Array::from(vec![i as i64; i + 1]))],
            &RecordBatchOptions::new(),
        )
        .map_err(|e| crate::Error::Internal(e.to_string()))
    }

    #[test]
    fn slices_built_side_by_side_come_back_in_order_and_a_failure_fails_the_group() -> Result<()> {
        let built = build_side_by_side(3..7, &numbered)?;
        let firsts: Vec<i64> = built
            .iter()
            .filter_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>())
            .map(|a| a.value(0))
            .collect();
        assert_eq!(firsts, vec![3, 4, 5, 6]);
        assert_eq!(
            built.iter().map(RecordBatch::num_rows).sum::<usize>(),
            4 + 5 + 6 + 7
        );
        let failing = |i: usize| {
            if i == 5 {
                Err(crate::Error::Internal("slice 5".into()))
            } else {
                numbered(i)
            }
        };
        assert!(matches!(
            build_side_by_side(3..7, &failing),
            Err(crate::Error::Internal(m)) if m == "slice 5"
        ));
        Ok(())
    }
}
