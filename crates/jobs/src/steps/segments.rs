//! The `segments` step: every segment file into `segment_membership`, with alarms for segments
//! whose size changed sharply since the last run.

use std::collections::BTreeSet;
use std::sync::Arc;

use clientele_segments::{
    AlarmRule, EarlierSizes, SegmentSize, evaluate_segments, membership_schema, size_alarms,
};
use clientele_store::{Warehouse, layout};

use super::{
    CheckProblem, Checked, Declaration, Operation, PlanContext, SpecContext, StagedTable,
    StepContext, StepOutput, chain, table_for,
};
use crate::error::Result;
use crate::spec::{Problem, TableId};

/// The table the step writes (layer, table).
pub const WRITES: [(&str, &str); 1] = [("segments", "segment_membership")];

/// `kind = "segments"` as written: every file in the job's segments directory.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentsSpec {}

/// Evaluates segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Segments;

impl Declaration for SegmentsSpec {
    fn check(&self, cx: &SpecContext<'_>, problems: &mut Vec<CheckProblem>) -> Option<Checked> {
        let mut reads = BTreeSet::new();
        for seg in cx.segments {
            match clientele_sql::parse_reads(&seg.sql) {
                Ok(r) => reads.extend(r),
                Err(e) => problems.push(CheckProblem::Elsewhere(Problem {
                    file: seg.path.clone(),
                    line: None,
                    message: e,
                })),
            }
        }
        Some(Checked {
            operation: Arc::new(Segments),
            reads: reads.iter().map(|r| table_for(r, cx.models)).collect(),
            writes: WRITES.iter().map(|(l, t)| TableId::new(l, t)).collect(),
        })
    }
}

#[async_trait::async_trait]
impl Operation for Segments {
    fn kind(&self) -> &'static str {
        "segments"
    }

    async fn plan(&self, cx: &PlanContext<'_>, problems: &mut Vec<Problem>) -> Result<Vec<String>> {
        let mut details = Vec::new();
        for seg in &cx.spec.segments {
            let problem = |message: String| Problem {
                file: seg.path.clone(),
                line: None,
                message,
            };
            match cx.engine.plan_schema(&seg.sql).await {
                Ok(schema) if schema.field_with_name("customer_id").is_ok() => {
                    details.push(format!("segment {} ({})", seg.id, seg.name));
                }
                Ok(_) => {
                    problems.push(problem("the query must return a customer_id column".into()))
                }
                Err(e) => problems.push(problem(chain(&e))),
            }
        }
        cx.engine.register_empty(WRITES[0].1, membership_schema())?;
        Ok(details)
    }

    async fn run(&self, cx: &StepContext<'_>) -> Result<StepOutput> {
        let (layer, table) = WRITES[0];
        let rel = layout::partition_file(layer, table, cx.as_of);
        let staged = layout::staged(cx.run_id, &rel);
        let (file, sizes) = evaluate_segments(
            cx.engine,
            cx.warehouse,
            &cx.spec.segments,
            cx.as_of,
            &staged,
            &rel,
        )
        .await?;
        cx.engine.register_file(table, &staged).await?;
        let mut out = StepOutput::default();
        out.add_table(StagedTable {
            name: table.into(),
            staged,
            file,
        });
        let rule = AlarmRule {
            share: cx.spec.segment_alarm_share,
            min_customers: cx.spec.segment_alarm_min_customers,
        };
        out.report.alarms = alarms(cx.warehouse, &sizes, rule).await;
        for a in &out.report.alarms {
            tracing::warn!(alarm = %a, "segment alarm");
        }
        out.report.segments = sizes;
        Ok(out)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Alarms against the last published run that evaluated segments (none on the first run, or when
/// the history cannot be read).
async fn alarms(warehouse: &Warehouse, sizes: &[SegmentSize], rule: AlarmRule) -> Vec<String> {
    let runs = match crate::history::list_runs(warehouse).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "run history unreadable; no segment alarms");
            return Vec::new();
        }
    };
    let Some(previous) = runs
        .iter()
        .rev()
        .find(|r| r.published && !r.segments.is_empty())
    else {
        return Vec::new();
    };
    let earlier = EarlierSizes {
        sizes: &previous.segments,
        run_id: &previous.run_id,
        as_of: &previous.as_of,
    };
    size_alarms(sizes, &earlier, rule)
}
