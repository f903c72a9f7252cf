use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use clientele_ingest::{
    LoadOptions, OutputPaths, SourceReport, ingest_source, quarantine_schema, resolve_inputs,
};
use clientele_models::{rfm_schema, score_rfm};
use clientele_segments::{evaluate_segments, membership_schema};
use clientele_sql::Engine;
use clientele_store::layout::{self, RunId};
use clientele_store::{RunLock, Warehouse, WrittenFile};

use crate::error::{Error, Result};
use crate::identity::{self, identity_query, truth_query};
use crate::manifest::{RunManifest, RunStatus, StepReport, StepStatus, TableSummary};
use crate::spec::{CLV_TABLE, JobSpec, METRICS_TABLE, Problem, Step, StepKind, TableId};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Follows a run as it goes (progress display, logs).
pub trait RunObserver: Send + Sync {
    /// A step starts.
    fn step_started(&self, _step: &str, _kind: &str) {}
    /// A step ended (succeeded, failed or skipped).
    fn step_finished(&self, _report: &StepReport) {}
}

/// How to run a job.
#[derive(Clone)]
pub struct RunOptions {
    /// The date every step uses instead of the clock.
    pub as_of: NaiveDate,
    /// Run only these steps (their inputs from other steps must be published for the same as-of date).
    pub only: Vec<String>,
    /// Parse every source file again instead of keeping the rows of files unchanged since the last load.
    pub full_refresh: bool,
    /// The clock, for timings, the run id and source freshness limits; no output depends on it.
    pub clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
}

impl RunOptions {
    /// All steps, wall-clock timings.
    pub fn new(as_of: NaiveDate) -> Self {
        Self {
            as_of,
            only: Vec::new(),
            full_refresh: false,
            clock: Arc::new(Utc::now),
        }
    }
}

/// A step as a dry run shows it.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub name: String,
    pub kind: String,
    pub depends_on: Vec<String>,
    pub reads: Vec<String>,
    pub writes: Vec<String>,
    /// One line per unit of work (a source and its files, a model, a segment, an export).
    pub details: Vec<String>,
    /// Whether `--only` selects it.
    pub selected: bool,
}

/// Runs one job for one as-of date.
pub struct Runner {
    spec: JobSpec,
    opts: RunOptions,
    observer: Option<Arc<dyn RunObserver>>,
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

/// What the running steps have produced so far.
#[derive(Default)]
struct RunState {
    /// Table name → the staged file and its published path.
    produced: BTreeMap<String, (String, WrittenFile)>,
    failed: BTreeSet<String>,
    manifest_sources: Vec<clientele_ingest::SourceReport>,
    segments: Vec<clientele_segments::SegmentSize>,
    exports: Vec<clientele_segments::ExportReport>,
    identity: Option<crate::manifest::IdentityReport>,
    models: Vec<crate::scoring::ModelReport>,
    alarms: Vec<String>,
    campaigns: Vec<crate::exporting::CampaignResult>,
}

#[derive(Default)]
struct StepOutcome {
    rows_in: u64,
    rows_out: u64,
    outputs: Vec<WrittenFile>,
}

impl Runner {
    pub fn new(spec: JobSpec, opts: RunOptions) -> Self {
        Self {
            spec,
            opts,
            observer: None,
        }
    }

    /// Reports progress to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn RunObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The job.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    fn check_only(&self) -> Result<BTreeSet<String>> {
        let mut selected = BTreeSet::new();
        let mut problems = Vec::new();
        for name in &self.opts.only {
            if self.spec.steps.iter().any(|s| &s.name == name) {
                selected.insert(name.clone());
            } else {
                let names: Vec<&str> = self.spec.steps.iter().map(|s| s.name.as_str()).collect();
                problems.push(Problem {
                    file: self.spec.path.clone(),
                    line: None,
                    message: format!(
                        "--only names step '{name}', which the job does not have (steps: {})",
                        names.join(", ")
                    ),
                });
            }
        }
        if !problems.is_empty() {
            return Err(Error::Spec { problems });
        }
        if selected.is_empty() {
            selected = self.spec.steps.iter().map(|s| s.name.clone()).collect();
        }
        Ok(selected)
    }

    fn order(&self) -> Result<Vec<&Step>> {
        self.spec.step_order().map_err(|message| Error::Spec {
            problems: vec![Problem {
                file: self.spec.path.clone(),
                line: None,
                message,
            }],
        })
    }

    /// The dry run: lists the steps in order with what they read and write, and plans every query against
    /// the declared source schemas and the schemas the models before it produce. Writes nothing.
    /// `strict` also reports required sources with no files (for `validate`).
    pub async fn plan(&self, strict: bool) -> Result<Vec<PlannedStep>> {
        let spec = &self.spec;
        let selected = self.check_only()?;
        let warehouse = Warehouse::open(&spec.warehouse, &spec.base_dir)?;
        let engine = Engine::new(&warehouse, self.opts.as_of, &spec.engine)?;
        let mut problems = Vec::new();
        let mut planned = Vec::new();
        for step in self.order()? {
            let mut details = Vec::new();
            match &step.kind {
                StepKind::Ingest { sources } => {
                    for name in sources {
                        let Some(source) = spec.source(name) else {
                            continue;
                        };
                        engine.register_empty(&format!("raw.{name}"), source.arrow_schema())?;
                        engine
                            .register_empty(&format!("quarantine.{name}"), quarantine_schema())?;
                        let is_db =
                            matches!(source.format, clientele_ingest::Format::Postgres { .. });
                        let files = if is_db {
                            1
                        } else {
                            resolve_inputs(source, &spec.base_dir)
                                .await
                                .map(|f| f.len())
                                .unwrap_or(0)
                        };
                        details.push(if is_db {
                            format!("source {name}: postgres '{}'", source.display_location())
                        } else {
                            format!(
                                "source {name}: {} '{}' ({files} file(s) now)",
                                source.format.name(),
                                source.location
                            )
                        });
                        if strict && files == 0 && source.required {
                            problems.push(Problem {
                                file: spec.path.clone(),
                                line: spec.source_lines.get(name).copied(),
                                message: format!("source '{name}': no file matches '{}' (the source is required)", source.location),
                            });
                        }
                    }
                }
                StepKind::Sql { models } => {
                    for name in models {
                        let Some(model) = spec.models.get(name) else {
                            continue;
                        };
                        if let Err(e) = self.register_history(&engine, model).await {
                            problems.push(Problem {
                                file: model.path.clone(),
                                line: None,
                                message: e.to_string(),
                            });
                        }
                        match engine.plan_model(model).await {
                            Ok(schema) => {
                                details.push(format!(
                                    "model {} ({} columns) <- {}",
                                    model.name,
                                    schema.fields().len(),
                                    model.reads.join(", ")
                                ));
                                engine.register_empty(&model.name, schema)?;
                                if let Err(e) = engine.plan_data_tests(model).await {
                                    problems.push(Problem {
                                        file: model.path.clone(),
                                        line: None,
                                        message: e.to_string(),
                                    });
                                }
                            }
                            Err(e) => problems.push(Problem {
                                file: model.path.clone(),
                                line: None,
                                message: chain(&e),
                            }),
                        }
                    }
                }
                StepKind::Rfm { input } => {
                    match engine.plan_schema(&rfm_query(input)).await {
                        Ok(_) => details.push(format!("score {input} -> customer_rfm")),
                        Err(e) => problems.push(Problem {
                            file: spec.path.clone(),
                            line: Some(step.line),
                            message: format!("step '{}': the RFM input '{input}' needs customer_id, recency_days, frequency and monetary_value: {}", step.name, chain(&e)),
                        }),
                    }
                    engine.register_empty("customer_rfm", rfm_schema())?;
                }
                StepKind::Clv {
                    input,
                    horizon_months,
                    monthly_discount_rate,
                } => {
                    match engine.plan_schema(&clv_query(input, "as_of_date()")).await {
                        Ok(_) => details.push(format!(
                            "fit BG/NBD and Gamma-Gamma on {input}, value {horizon_months} months at {}% a month -> customer_clv, model_metrics",
                            monthly_discount_rate * 100.0
                        )),
                        Err(e) => problems.push(Problem {
                            file: spec.path.clone(),
                            line: Some(step.line),
                            message: format!("step '{}': the CLV input '{input}' needs customer_id, order_date and order_amount: {}", step.name, chain(&e)),
                        }),
                    }
                    engine.register_empty(CLV_TABLE.1, clientele_models::clv_schema())?;
                    engine.register_empty(METRICS_TABLE.1, clientele_models::metrics_schema())?;
                }
                StepKind::Score(options) => {
                    let queries = [
                        ("the RFM input", rfm_query("customer_view")),
                        (
                            "the CLV transactions",
                            crate::scoring::fill(
                                &crate::scoring::clv_scoring_template(),
                                self.opts.as_of,
                            ),
                        ),
                        (
                            "the churn rows",
                            crate::scoring::fill(
                                &crate::scoring::churn_scoring_template(),
                                self.opts.as_of,
                            ),
                        ),
                        (
                            "the campaign propensity rows",
                            crate::scoring::fill(
                                &crate::scoring::propensity_scoring_template(),
                                self.opts.as_of,
                            ),
                        ),
                    ];
                    let mut ok = true;
                    for (what, sql) in queries {
                        if let Err(e) = engine.plan_schema(&sql).await {
                            ok = false;
                            problems.push(Problem {
                                file: spec.path.clone(),
                                line: Some(step.line),
                                message: format!(
                                    "step '{}': {what} cannot be built from fct_orders, fct_touchpoints, stg_service__tickets and customer_view: {}",
                                    step.name,
                                    chain(&e)
                                ),
                            });
                        }
                    }
                    if ok {
                        details.push(format!(
                            "RFM, BG/NBD + Gamma-Gamma CLV over {} months, churn within {} days and campaign propensity (logistic regression against boosted trees){} -> customer_scores, model_metrics, model_deciles, model_profiles, artifacts",
                            options.horizon_months,
                            options.churn_horizon_days,
                            match (options.min_churn_auc, options.min_propensity_auc) {
                                (None, None) => String::new(),
                                (c, p) => format!(
                                    ", floors: churn AUC {}, propensity AUC {}",
                                    c.map_or("none".into(), |v| v.to_string()),
                                    p.map_or("none".into(), |v| v.to_string())
                                ),
                            }
                        ));
                    }
                    engine.register_empty("customer_rfm", rfm_schema())?;
                    engine.register_empty(CLV_TABLE.1, clientele_models::clv_schema())?;
                    engine.register_empty(METRICS_TABLE.1, clientele_models::metrics_schema())?;
                    engine.register_empty(
                        crate::spec::SCORES_TABLE.1,
                        clientele_models::customer_scores_schema(),
                    )?;
                    engine.register_empty(
                        crate::spec::DECILES_TABLE.1,
                        clientele_models::deciles_schema(),
                    )?;
                    engine.register_empty(
                        crate::spec::PROFILES_TABLE.1,
                        clientele_models::profiles_schema(),
                    )?;
                }
                StepKind::Identity { input } => {
                    match engine.plan_schema(&identity_query(input, &spec.identity, None)).await {
                        Ok(_) => details.push(format!(
                            "resolve {input}: {} comparison(s), {} blocking rule(s) -> int_customer_identity",
                            spec.identity.comparisons.len(),
                            spec.identity.blocking_rules.len()
                        )),
                        Err(e) => problems.push(Problem {
                            file: spec.path.clone(),
                            line: Some(step.line),
                            message: format!(
                                "step '{}': the identity input '{input}' needs record_id, source_system and the compared columns: {}",
                                step.name,
                                chain(&e)
                            ),
                        }),
                    }
                    if let Some(truth) = &spec.identity.truth
                        && let Err(e) = engine.plan_schema(&truth_query(truth)).await
                    {
                        problems.push(Problem {
                            file: spec.path.clone(),
                            line: Some(step.line),
                            message: format!(
                                "identity truth '{truth}' needs record_id and person_id: {}",
                                chain(&e)
                            ),
                        });
                    }
                    for (name, schema) in identity::empty_schemas(&spec.identity)? {
                        engine.register_empty(name, schema)?;
                    }
                }
                StepKind::Segments => {
                    for seg in &spec.segments {
                        match engine.plan_schema(&seg.sql).await {
                            Ok(schema) if schema.field_with_name("customer_id").is_ok() => {
                                details.push(format!("segment {} ({})", seg.id, seg.name));
                            }
                            Ok(_) => problems.push(Problem {
                                file: seg.path.clone(),
                                line: None,
                                message: "the query must return a customer_id column".into(),
                            }),
                            Err(e) => problems.push(Problem {
                                file: seg.path.clone(),
                                line: None,
                                message: chain(&e),
                            }),
                        }
                    }
                    engine.register_empty("segment_membership", membership_schema())?;
                }
                StepKind::Export { exports } => {
                    for name in exports {
                        let Some(export) = spec.exports.iter().find(|e| &e.name == name) else {
                            continue;
                        };
                        match engine.plan_schema(&export.query(false)).await {
                            Ok(_) => details.push(format!(
                                "export {name}: segment {} as {}, mode {}{}{} -> exports/{name}/as_of={}/",
                                export.segment,
                                export.format,
                                export.mode(),
                                export
                                    .holdout_share
                                    .filter(|s| *s > 0.0)
                                    .map(|s| format!(", {:.0}% held out for campaign {}", s * 100.0, export.campaign()))
                                    .unwrap_or_default(),
                                export
                                    .location
                                    .as_ref()
                                    .map(|l| format!(", delivered to {l}"))
                                    .unwrap_or_default(),
                                self.opts.as_of
                            )),
                            Err(e) => problems.push(Problem {
                                file: spec.path.clone(),
                                line: Some(step.line),
                                message: format!("export '{name}': {}", chain(&e)),
                            }),
                        }
                    }
                }
            }
            planned.push(PlannedStep {
                name: step.name.clone(),
                kind: step.kind.name().to_string(),
                depends_on: spec.dependencies(step),
                reads: step.reads.iter().map(|t| t.name.clone()).collect(),
                writes: match &step.kind {
                    StepKind::Export { exports } => {
                        exports.iter().map(|e| format!("exports/{e}")).collect()
                    }
                    _ => step
                        .writes
                        .iter()
                        .map(|t| format!("{} ({}/{})", t.name, t.layer, t.table))
                        .collect(),
                },
                details,
                selected: selected.contains(&step.name),
            });
        }
        if problems.is_empty() {
            Ok(planned)
        } else {
            Err(Error::Spec { problems })
        }
    }

    /// Runs the job: lock, steps, publish (only when every step succeeded), manifest, unlock.
    /// Returns the manifest for succeeded and failed runs alike; `Err` only when the run could not start
    /// or its record could not be written.
    pub async fn run(&self) -> Result<RunManifest> {
        let spec = &self.spec;
        let selected = self.check_only()?;
        let order = self.order()?;
        let warehouse = Warehouse::open(&spec.warehouse, &spec.base_dir)?;
        let started = (self.opts.clock)();
        let suffix = u16::try_from(std::process::id() % 65_536).unwrap_or(0)
            ^ u16::try_from(started.timestamp_subsec_micros() % 65_536).unwrap_or(0);
        let run_id = RunId::from_start(started, suffix);
        let lock = RunLock::acquire(&warehouse, &run_id, started, spec.stale_lock_hours).await?;
        tracing::info!(run = %run_id, job = %spec.name, as_of = %self.opts.as_of, warehouse = %warehouse.display(), "run started");
        let result = self
            .run_locked(&warehouse, &run_id, started, &order, &selected)
            .await;
        if let Err(e) = lock.release().await {
            tracing::warn!(error = %e, "could not release the warehouse lock");
        }
        result
    }

    async fn run_locked(
        &self,
        warehouse: &Warehouse,
        run_id: &RunId,
        started: DateTime<Utc>,
        order: &[&Step],
        selected: &BTreeSet<String>,
    ) -> Result<RunManifest> {
        let spec = &self.spec;
        // Staging areas of earlier runs (failed or killed) go now that the lock is ours.
        warehouse.delete_prefix(layout::STAGING_DIR).await?;
        let engine = Engine::new(warehouse, self.opts.as_of, &spec.engine)?;
        let mut state = RunState::default();
        let mut reports = Vec::new();
        let mut first_error: Option<String> = None;
        for step in order.iter().filter(|s| selected.contains(&s.name)) {
            let blocked_by: Vec<String> = spec
                .dependencies(step)
                .into_iter()
                .filter(|d| state.failed.contains(d))
                .collect();
            let now = (self.opts.clock)();
            if !blocked_by.is_empty() {
                state.failed.insert(step.name.clone());
                let report = StepReport {
                    name: step.name.clone(),
                    kind: step.kind.name().into(),
                    status: StepStatus::Skipped,
                    started_at: now.to_rfc3339(),
                    ended_at: now.to_rfc3339(),
                    duration_ms: 0,
                    peak_memory_mib: None,
                    rows_in: 0,
                    rows_out: 0,
                    outputs: Vec::new(),
                    error: Some(format!(
                        "skipped because step '{}' did not succeed",
                        blocked_by.join("', '")
                    )),
                };
                self.notify_finished(&report);
                reports.push(report);
                continue;
            }
            if let Some(o) = &self.observer {
                o.step_started(&step.name, step.kind.name());
            }
            tracing::info!(step = %step.name, kind = step.kind.name(), "step started");
            let mut outcome = StepOutcome::default();
            crate::memory::reset_peak();
            let result = self
                .run_step(step, &engine, warehouse, run_id, &mut state, &mut outcome)
                .await;
            let ended = (self.opts.clock)();
            let error = result.err().map(|e| chain(e.as_ref()));
            if let Some(e) = &error {
                tracing::error!(step = %step.name, error = %e, "step failed");
                state.failed.insert(step.name.clone());
                first_error.get_or_insert_with(|| format!("step '{}': {e}", step.name));
            } else {
                tracing::info!(step = %step.name, rows_in = outcome.rows_in, rows_out = outcome.rows_out, "step succeeded");
            }
            let report = StepReport {
                name: step.name.clone(),
                kind: step.kind.name().into(),
                status: if error.is_some() {
                    StepStatus::Failed
                } else {
                    StepStatus::Succeeded
                },
                started_at: now.to_rfc3339(),
                ended_at: ended.to_rfc3339(),
                duration_ms: u64::try_from((ended - now).num_milliseconds()).unwrap_or(0),
                peak_memory_mib: crate::memory::peak_mib(),
                rows_in: outcome.rows_in,
                rows_out: outcome.rows_out,
                outputs: outcome.outputs,
                error,
            };
            self.notify_finished(&report);
            reports.push(report);
        }

        let succeeded = first_error.is_none();
        let files: Vec<String> = reports
            .iter()
            .flat_map(|r| r.outputs.iter().map(|f| f.path.clone()))
            .collect();
        if succeeded {
            warehouse.publish(run_id, &files).await?;
            tracing::info!(run = %run_id, files = files.len(), "outputs published");
        } else {
            tracing::error!(run = %run_id, "run failed: nothing was published; the last good outputs are untouched");
        }
        let ended = (self.opts.clock)();
        let tables = state
            .produced
            .iter()
            .map(|(name, (_, file))| TableSummary {
                table: name.clone(),
                path: file.path.clone(),
                rows: file.rows,
            })
            .collect();
        let manifest = RunManifest {
            run_id: run_id.to_string(),
            job: spec.name.clone(),
            spec_path: spec.path.display().to_string(),
            spec_sha256: spec.sha256.clone(),
            as_of: self.opts.as_of.to_string(),
            status: if succeeded {
                RunStatus::Succeeded
            } else {
                RunStatus::Failed
            },
            published: succeeded,
            started_at: started.to_rfc3339(),
            ended_at: ended.to_rfc3339(),
            duration_ms: u64::try_from((ended - started).num_milliseconds()).unwrap_or(0),
            only: self.opts.only.clone(),
            warehouse: warehouse.display().to_string(),
            clientele_version: env!("CARGO_PKG_VERSION").to_string(),
            steps: reports,
            sources: state.manifest_sources,
            tables,
            segments: state.segments,
            alarms: state.alarms,
            campaigns: state.campaigns,
            exports: state.exports,
            identity: state.identity,
            models: state.models,
            staging_dir: (!succeeded && !files.is_empty())
                .then(|| warehouse.url_of(&format!("{}/{run_id}", layout::STAGING_DIR), true)),
            error: first_error,
        };
        let path = layout::run_manifest(run_id);
        let body = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        warehouse.put(&path, Bytes::from(body)).await?;
        let report = crate::report::render_report(&manifest);
        warehouse
            .put(&path.replace(".json", ".txt"), Bytes::from(report))
            .await?;
        Ok(manifest)
    }

    fn notify_finished(&self, report: &StepReport) {
        if let Some(o) = &self.observer {
            o.step_finished(report);
        }
    }

    /// Makes a table this step reads available: from this run if an earlier step wrote it, else the
    /// published partition of the same as-of date.
    async fn register_input(
        &self,
        engine: &Engine,
        warehouse: &Warehouse,
        table: &TableId,
        state: &RunState,
    ) -> Result<(), BoxError> {
        // history.<table> is registered just before the model that reads it runs.
        if state.produced.contains_key(&table.name) || table.layer == clientele_sql::HISTORY_SCHEMA
        {
            return Ok(());
        }
        let rel = layout::partition_file(&table.layer, &table.table, self.opts.as_of);
        if !warehouse.exists(&rel).await? {
            return Err(format!(
                "table '{}' was not written by this run and has no published partition for as_of={} ({rel}); run the step that writes it first",
                table.name, self.opts.as_of
            )
            .into());
        }
        engine.register_file(&table.name, &rel).await?;
        Ok(())
    }

    /// Registers every `history.<table>` that `model` reads: the published snapshots of that model.
    async fn register_history(
        &self,
        engine: &Engine,
        model: &clientele_sql::Model,
    ) -> Result<(), BoxError> {
        let prefix = format!("{}.", clientele_sql::HISTORY_SCHEMA);
        for read in &model.reads {
            let Some(table) = read.strip_prefix(&prefix) else {
                continue;
            };
            let layer = self
                .spec
                .models
                .get(table)
                .map(|m| m.layer.clone())
                .ok_or_else(|| {
                    format!(
                        "model '{}' reads '{read}', but '{table}' is not a model (history is kept for models only)",
                        model.name
                    )
                })?;
            engine.register_history(&layer, table, table).await?;
        }
        Ok(())
    }

    /// Rows of a table registered from an earlier run (Parquet keeps the count in its footer).
    async fn published_rows(engine: &Engine, table: &TableId) -> u64 {
        let sql = format!("select count(*) from {}", table.name);
        let batches = engine
            .collect("counting an input", &sql)
            .await
            .unwrap_or_default();
        batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .map(|a| a.value(0))
            })
            .map_or(0, |n| u64::try_from(n).unwrap_or(0))
    }

    async fn run_step(
        &self,
        step: &Step,
        engine: &Engine,
        warehouse: &Warehouse,
        run_id: &RunId,
        state: &mut RunState,
        outcome: &mut StepOutcome,
    ) -> Result<(), BoxError> {
        let spec = &self.spec;
        let as_of = self.opts.as_of;
        for input in &step.reads {
            self.register_input(engine, warehouse, input, state).await?;
            outcome.rows_in += match state.produced.get(&input.name) {
                Some((_, file)) => file.rows,
                None => Self::published_rows(engine, input).await,
            };
        }
        let record = |state: &mut RunState,
                      outcome: &mut StepOutcome,
                      name: String,
                      staged: String,
                      file: WrittenFile| {
            outcome.outputs.push(file.clone());
            state.produced.insert(name, (staged, file));
        };
        match &step.kind {
            StepKind::Ingest { sources } => {
                let mut first_problem: Option<BoxError> = None;
                for name in sources {
                    let source = spec
                        .source(name)
                        .ok_or_else(|| format!("source '{name}' is not declared"))?;
                    let data = layout::partition_file("raw", name, as_of);
                    let quarantine = layout::partition_file("quarantine", name, as_of);
                    let paths = OutputPaths {
                        data_staged: layout::staged(run_id, &data),
                        data_published: data,
                        quarantine_staged: layout::staged(run_id, &quarantine),
                        quarantine_published: quarantine,
                    };
                    let options = LoadOptions {
                        full_refresh: self.opts.full_refresh,
                        previous: previous_load(warehouse, name).await,
                        now: Some((self.opts.clock)()),
                    };
                    let report =
                        ingest_source(source, &spec.base_dir, warehouse, &paths, &options).await?;
                    tracing::info!(
                        source = %name, read = report.rows_read, loaded = report.rows_loaded,
                        quarantined = report.rows_quarantined, files = report.files.len(), "source ingested"
                    );
                    outcome.rows_in += report.rows_read;
                    outcome.rows_out += report.rows_loaded;
                    for (table, staged, file) in [
                        (format!("raw.{name}"), &paths.data_staged, &report.data),
                        (
                            format!("quarantine.{name}"),
                            &paths.quarantine_staged,
                            &report.quarantine,
                        ),
                    ] {
                        engine.register_file(&table, staged).await?;
                        record(state, outcome, table, staged.clone(), file.clone());
                    }
                    if let Err(e) = report.check_limits(source) {
                        first_problem.get_or_insert_with(|| Box::new(e));
                    }
                    state.manifest_sources.push(report);
                }
                if let Some(e) = first_problem {
                    return Err(e);
                }
            }
            StepKind::Sql { models } => {
                for name in models {
                    let model = spec
                        .models
                        .get(name)
                        .ok_or_else(|| format!("model '{name}' is not loaded"))?;
                    self.register_history(engine, model).await?;
                    let rel = layout::partition_file(&model.layer, &model.name, as_of);
                    let staged = layout::staged(run_id, &rel);
                    let file = engine
                        .materialise(
                            &format!("model '{}' ({})", model.name, model.path.display()),
                            &model.sql,
                            &staged,
                            &rel,
                        )
                        .await?;
                    engine.register_file(&model.name, &staged).await?;
                    tracing::info!(model = %model.name, rows = file.rows, "model materialised");
                    engine.run_data_tests(model).await?;
                    outcome.rows_out += file.rows;
                    record(state, outcome, model.name.clone(), staged, file);
                }
            }
            StepKind::Rfm { input } => {
                let batches = engine
                    .collect(
                        &format!("reading the RFM input '{input}'"),
                        &rfm_query(input),
                    )
                    .await?;
                let scored = score_rfm(&batches)?;
                let table = crate::spec::RFM_TABLE;
                let (staged, file) =
                    stage_table(warehouse, engine, run_id, as_of, table, &scored).await?;
                outcome.rows_out += file.rows;
                record(state, outcome, table.1.into(), staged, file);
            }
            StepKind::Clv {
                input,
                horizon_months,
                monthly_discount_rate,
            } => {
                let batches = engine
                    .collect(
                        &format!("reading the CLV input '{input}'"),
                        &clv_query(input, "as_of_date()"),
                    )
                    .await?;
                let transactions = clv_transactions(&batches)?;
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
                let as_of_day = (as_of - epoch).num_days();
                let (scores, metrics, _) = clientele_models::score_clv(
                    &transactions,
                    as_of_day,
                    &clientele_models::ClvOptions {
                        horizon_months: *horizon_months,
                        monthly_discount_rate: *monthly_discount_rate,
                    },
                )?;
                for (table, batch) in [(CLV_TABLE, scores), (METRICS_TABLE, metrics)] {
                    let (staged, file) =
                        stage_table(warehouse, engine, run_id, as_of, table, &batch).await?;
                    outcome.rows_out += file.rows;
                    record(state, outcome, table.1.into(), staged, file);
                }
            }
            StepKind::Score(options) => {
                let output = crate::scoring::run(engine, as_of, options).await?;
                for (name, batch) in output.tables {
                    let (staged, file) =
                        stage_table(warehouse, engine, run_id, as_of, ("scores", name), &batch)
                            .await?;
                    outcome.rows_out += file.rows;
                    record(state, outcome, name.to_string(), staged, file);
                }
                for (model, json) in output.artifacts {
                    let rel = format!("models/{model}/as_of={as_of}/artifact.json");
                    let file = WrittenFile::of_bytes(rel.as_str(), 0, json.as_bytes());
                    warehouse
                        .put(&layout::staged(run_id, &rel), bytes::Bytes::from(json))
                        .await?;
                    outcome.outputs.push(file);
                }
                state.models = output.reports;
            }
            StepKind::Identity { input } => {
                let (tables, report) =
                    identity::run(engine, warehouse, &spec.identity, input).await?;
                for (name, batch) in tables {
                    let table = ("intermediate", name);
                    let (staged, file) =
                        stage_table(warehouse, engine, run_id, as_of, table, &batch).await?;
                    outcome.rows_out += file.rows;
                    record(state, outcome, name.to_string(), staged, file);
                }
                state.identity = Some(report);
            }
            StepKind::Segments => {
                let rel = layout::partition_file(
                    crate::spec::MEMBERSHIP_TABLE.0,
                    crate::spec::MEMBERSHIP_TABLE.1,
                    as_of,
                );
                let staged = layout::staged(run_id, &rel);
                let (file, sizes) =
                    evaluate_segments(engine, warehouse, &spec.segments, as_of, &staged, &rel)
                        .await?;
                engine.register_file("segment_membership", &staged).await?;
                outcome.rows_out += file.rows;
                record(state, outcome, "segment_membership".into(), staged, file);
                state.alarms = segment_alarms(
                    warehouse,
                    &sizes,
                    spec.segment_alarm_share,
                    spec.segment_alarm_min_customers,
                )
                .await;
                for a in &state.alarms {
                    tracing::warn!(alarm = %a, "segment alarm");
                }
                state.segments = sizes;
            }
            StepKind::Export { exports } => {
                let chosen: Vec<&clientele_segments::ExportSpec> = exports
                    .iter()
                    .map(|name| {
                        spec.exports
                            .iter()
                            .find(|e| &e.name == name)
                            .ok_or_else(|| format!("export '{name}' is not declared"))
                    })
                    .collect::<Result<_, _>>()?;
                let done =
                    crate::exporting::run(engine, warehouse, spec, &chosen, as_of, run_id).await?;
                for r in &done.reports {
                    outcome.rows_in += r.eligible;
                    outcome.rows_out += r.exported;
                }
                outcome.outputs.extend(done.files);
                state.exports.extend(done.reports);
                state.campaigns.extend(done.campaigns.iter().cloned());
                let results = crate::exporting::campaign_results_batch(&done.campaigns)?;
                for (table, batch) in [
                    (crate::spec::AUDIENCE_TABLE, &done.audience),
                    (crate::spec::SUPPRESSION_TABLE, &done.suppression),
                    (crate::spec::CAMPAIGN_RESULTS_TABLE, &results),
                ] {
                    let (staged, file) =
                        stage_table(warehouse, engine, run_id, as_of, table, batch).await?;
                    record(state, outcome, table.1.to_string(), staged, file);
                }
            }
        }
        Ok(())
    }
}

/// Writes `batch` as the as-of partition of `(layer, table)` in the run's staging area and
/// registers it for the steps that follow; returns the staged path and the file to publish.
async fn stage_table(
    warehouse: &Warehouse,
    engine: &Engine,
    run_id: &RunId,
    as_of: chrono::NaiveDate,
    (layer, table): (&str, &str),
    batch: &arrow::array::RecordBatch,
) -> Result<(String, WrittenFile), BoxError> {
    let rel = layout::partition_file(layer, table, as_of);
    let staged = layout::staged(run_id, &rel);
    let mut writer = warehouse.parquet_writer(&staged, batch.schema())?;
    writer.write(batch).await?;
    let file = writer.finish(&rel).await?;
    engine.register_file(table, &staged).await?;
    Ok((staged, file))
}

/// Segments whose size changed by more than `share` since the last published run that evaluated
/// segments (or that appeared or vanished), ignoring segments below `min_customers` both times.
async fn segment_alarms(
    warehouse: &Warehouse,
    sizes: &[clientele_segments::SegmentSize],
    share: f64,
    min_customers: u64,
) -> Vec<String> {
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
    let before: BTreeMap<&str, u64> = previous
        .segments
        .iter()
        .map(|s| (s.segment.as_str(), s.customers))
        .collect();
    let mut alarms = Vec::new();
    for s in sizes {
        let Some(&old) = before.get(s.segment.as_str()) else {
            continue;
        };
        let new = s.customers;
        if old.max(new) < min_customers {
            continue;
        }
        let change = (new as f64 - old as f64) / (old.max(1) as f64);
        if change.abs() > share {
            alarms.push(format!(
                "segment {} changed from {} to {} customers ({:+.0}%) since run {} as of {}",
                s.segment,
                crate::report::thousands(old),
                crate::report::thousands(new),
                change * 100.0,
                previous.run_id,
                previous.as_of
            ));
        }
    }
    alarms
}

/// The source's last published load whose two tables are still in the warehouse: the rows of files
/// that have not changed since are kept from it. A manifest that cannot be read means a full load.
async fn previous_load(warehouse: &Warehouse, source: &str) -> Option<SourceReport> {
    let runs = match crate::history::list_runs(warehouse).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "run history unreadable; loading every file");
            return None;
        }
    };
    for run in runs.iter().rev().filter(|r| r.published) {
        let Some(report) = run.sources.iter().find(|s| s.source == source) else {
            continue;
        };
        let present = warehouse.exists(&report.data.path).await.unwrap_or(false)
            && warehouse
                .exists(&report.quarantine.path)
                .await
                .unwrap_or(false);
        return present.then(|| report.clone());
    }
    None
}

/// The query that feeds RFM scoring: purchasers only, one row per customer, in id order.
/// Orders up to the as-of date, for the buy-till-you-die models.
/// `until` is a SQL date expression: `as_of_date()` in a run, the artifact's date marker in a saved
/// model's scoring query.
pub(crate) fn clv_query(input: &str, until: &str) -> String {
    format!(
        "select cast(customer_id as varchar) as customer_id, cast(order_date as date) as order_date,
                cast(order_amount as double) as amount
         from {input} where customer_id is not null and order_date <= {until}
         order by customer_id, order_date"
    )
}

/// The rows of [`clv_query`] as transactions (day numbers since 1970-01-01).
pub(crate) fn clv_transactions(
    batches: &[arrow::array::RecordBatch],
) -> Result<Vec<clientele_models::Transaction>, BoxError> {
    use arrow::array::{Array, AsArray};
    let mut out = Vec::new();
    for b in batches {
        let column = |name: &str| {
            b.column_by_name(name)
                .ok_or_else(|| format!("the CLV query returned no column '{name}'"))
        };
        let c = column("customer_id")?
            .as_string_opt::<i32>()
            .ok_or("the CLV query's customer_id is not text")?;
        let d = column("order_date")?
            .as_primitive_opt::<arrow::datatypes::Date32Type>()
            .ok_or("the CLV query's order_date is not a date")?;
        let a = column("amount")?
            .as_primitive_opt::<arrow::datatypes::Float64Type>()
            .ok_or("the CLV query's amount is not a number")?;
        for i in 0..b.num_rows() {
            // The query keeps only orders with a customer; a date or amount is always present in
            // fct_orders, and an order without one carries nothing to model.
            if c.is_null(i) || d.is_null(i) || a.is_null(i) {
                continue;
            }
            out.push(clientele_models::Transaction {
                customer: c.value(i).to_string(),
                day: i64::from(d.value(i)),
                amount: a.value(i),
            });
        }
    }
    Ok(out)
}

pub(crate) fn rfm_query(input: &str) -> String {
    format!(
        "select cast(customer_id as varchar) as customer_id, cast(recency_days as bigint) as recency_days,
                cast(frequency as bigint) as frequency, cast(monetary_value as double) as monetary
         from {input} where frequency > 0 order by customer_id"
    )
}
