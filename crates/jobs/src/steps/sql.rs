//! The `sql` step: SQL models from sql/, materialised in dependency order, each followed by its
//! data tests.

use std::collections::BTreeSet;

use clientele_sql::{Engine, Model};
use clientele_store::layout;

use super::{
    CheckProblem, Checked, Declaration, Operation, PlanContext, SpecContext, StagedTable,
    StepContext, StepOutput, chain, table_for,
};
use crate::error::{Error, Result};
use crate::spec::{JobSpec, Problem, TableId};

/// `kind = "sql"` as written.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlSpec {
    /// Models or layers (default: all models).
    #[serde(default)]
    models: Option<Vec<String>>,
}

/// Materialises models.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql {
    /// The models, in the order they run.
    pub models: Vec<String>,
}

impl Declaration for SqlSpec {
    fn check(&self, cx: &SpecContext<'_>, problems: &mut Vec<CheckProblem>) -> Option<Checked> {
        let selection = self.models.clone().unwrap_or_default();
        let chosen: Vec<_> = match cx.models.ordered(&selection) {
            Ok(m) => m,
            Err(e) => {
                problems.push(CheckProblem::Step(e.to_string()));
                Vec::new()
            }
        };
        let writes: Vec<TableId> = chosen
            .iter()
            .map(|m| TableId::new(&m.layer, &m.name))
            .collect();
        let mut reads = BTreeSet::new();
        for m in &chosen {
            for r in &m.reads {
                if !writes.iter().any(|w| &w.name == r) {
                    reads.insert(r.clone());
                }
            }
        }
        Some(Checked {
            operation: std::sync::Arc::new(Sql {
                models: chosen.iter().map(|m| m.name.clone()).collect(),
            }),
            reads: reads.iter().map(|r| table_for(r, cx.models)).collect(),
            writes,
        })
    }
}

#[async_trait::async_trait]
impl Operation for Sql {
    fn kind(&self) -> &'static str {
        "sql"
    }

    async fn plan(&self, cx: &PlanContext<'_>, problems: &mut Vec<Problem>) -> Result<Vec<String>> {
        let mut details = Vec::new();
        for name in &self.models {
            let Some(model) = cx.spec.models.get(name) else {
                continue;
            };
            let problem = |message: String| Problem {
                file: model.path.clone(),
                line: None,
                message,
            };
            if let Err(e) = register_history(cx.spec, cx.engine, model).await {
                problems.push(problem(e.to_string()));
            }
            match cx.engine.plan_model(model).await {
                Ok(schema) => {
                    if let Some(broken) = contract_problem(&model.name, &schema) {
                        problems.push(problem(broken));
                    }
                    details.push(format!(
                        "model {} ({} columns) <- {}",
                        model.name,
                        schema.fields().len(),
                        model.reads.join(", ")
                    ));
                    cx.engine.register_empty(&model.name, schema)?;
                    if let Err(e) = cx.engine.plan_data_tests(model).await {
                        problems.push(problem(e.to_string()));
                    }
                }
                Err(e) => problems.push(problem(chain(&e))),
            }
        }
        Ok(details)
    }

    async fn run(&self, cx: &StepContext<'_>) -> Result<StepOutput> {
        let mut out = StepOutput::default();
        for name in &self.models {
            let model = cx
                .spec
                .models
                .get(name)
                .ok_or_else(|| Error::Internal(format!("model '{name}' is not loaded")))?;
            register_history(cx.spec, cx.engine, model).await?;
            let rel = layout::partition_file(&model.layer, &model.name, cx.as_of);
            let staged = layout::staged(cx.run_id, &rel);
            let started = std::time::Instant::now();
            crate::resources::reset_part_peak();
            let (file, _parts) = cx
                .engine
                .materialise_model(
                    &format!("model '{}' ({})", model.name, model.path.display()),
                    model,
                    &staged,
                    &rel,
                )
                .await?;
            cx.engine.register_file(&model.name, &staged).await?;
            let schema = cx
                .engine
                .plan_schema(&format!("select * from {}", model.name))
                .await?;
            if let Some(broken) = contract_problem(&model.name, &schema) {
                return Err(Error::Input(format!("{}: {broken}", model.path.display())));
            }
            tracing::info!(
                model = %model.name,
                rows = file.rows,
                seconds = started.elapsed().as_secs_f64(),
                model_peak_mib = crate::resources::part_peak_mib(),
                step_peak_mib = crate::resources::peak_mib(),
                "model materialised"
            );
            let tested = std::time::Instant::now();
            cx.engine.run_data_tests(model).await?;
            tracing::info!(
                model = %model.name,
                tests = model.tests.len(),
                seconds = tested.elapsed().as_secs_f64(),
                step_peak_mib = crate::resources::peak_mib(),
                "data tests passed"
            );
            out.add_table(StagedTable {
                name: model.name.clone(),
                staged,
                file,
            });
        }
        Ok(out)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A staging model's columns against the staging contract, as one message; `None` when it holds.
fn contract_problem(model: &str, schema: &arrow::datatypes::Schema) -> Option<String> {
    let problems = crate::contract::check(model, schema);
    (!problems.is_empty()).then(|| {
        format!(
            "{model} breaks the staging contract (docs/staging-contract.md): {}",
            problems.join("; ")
        )
    })
}

/// Registers every `history.<table>` that `model` reads (the published snapshots of that model)
/// and every `history.<table>__snapshots` (their as-of dates).
async fn register_history(spec: &JobSpec, engine: &Engine, model: &Model) -> Result<()> {
    let prefix = format!("{}.", clientele_sql::HISTORY_SCHEMA);
    for read in &model.reads {
        let Some(name) = read.strip_prefix(&prefix) else {
            continue;
        };
        // A model's own name wins over the suffix: `history.a__snapshots` is model
        // `a__snapshots`'s history when there is such a model.
        let dates_of = name
            .strip_suffix(clientele_sql::HISTORY_SNAPSHOTS_SUFFIX)
            .filter(|table| spec.models.get(name).is_none() && spec.models.get(table).is_some());
        let table = dates_of.unwrap_or(name);
        let layer = spec.models.get(table).map(|m| m.layer.clone()).ok_or_else(|| {
            Error::Input(format!(
                "model '{}' reads '{read}', but '{table}' is not a model (history is kept for models only)",
                model.name
            ))
        })?;
        match dates_of {
            Some(table) => engine.register_history_snapshots(&layer, table).await?,
            None => engine.register_history(&layer, table, table).await?,
        }
    }
    Ok(())
}
