use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use clientele_sql::Engine;
use clientele_store::layout::{self, RunId};
use clientele_store::{Changes, RunLock, Warehouse, WrittenFile};

use crate::error::{Error, Result};
use crate::manifest::{RunManifest, RunStatus, StepReport, StepStatus, TableSummary};
use crate::spec::{JobSpec, Problem, Step, TableId};
use crate::steps::{PlanContext, ReportSection, StagedTable, StepContext, StepOutput, chain};

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

/// What the running steps have produced so far.
#[derive(Default)]
struct RunState {
    /// Table name → the staged file and its published path.
    produced: BTreeMap<String, (String, WrittenFile)>,
    failed: BTreeSet<String>,
    report: ReportSection,
}

impl RunState {
    /// Takes in what a step produced.
    fn absorb(&mut self, tables: Vec<StagedTable>, section: ReportSection) {
        for t in tables {
            self.produced.insert(t.name, (t.staged, t.file));
        }
        let r = &mut self.report;
        r.sources.extend(section.sources);
        if section.identity.is_some() {
            r.identity = section.identity;
        }
        if !section.models.is_empty() {
            r.models = section.models;
        }
        if !section.segments.is_empty() || !section.alarms.is_empty() {
            r.segments = section.segments;
            r.alarms = section.alarms;
        }
        r.exports.extend(section.exports);
        r.campaigns.extend(section.campaigns);
    }
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
            let cx = PlanContext {
                spec,
                engine: &engine,
                as_of: self.opts.as_of,
                strict,
                line: step.line,
                step: &step.name,
            };
            let details = step.operation.plan(&cx, &mut problems).await?;
            planned.push(PlannedStep {
                name: step.name.clone(),
                kind: step.kind().to_string(),
                depends_on: spec.dependencies(step),
                reads: step.reads.iter().map(|t| t.name.clone()).collect(),
                writes: step.operation.describe_writes(&step.writes),
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
            .run_locked(&warehouse, &lock, &run_id, started, &order, &selected)
            .await;
        if let Err(e) = lock.release().await {
            tracing::warn!(error = %e, "could not release the warehouse lock");
        }
        result
    }

    async fn run_locked(
        &self,
        warehouse: &Warehouse,
        lock: &RunLock,
        run_id: &RunId,
        started: DateTime<Utc>,
        order: &[&Step],
        selected: &BTreeSet<String>,
    ) -> Result<RunManifest> {
        let spec = &self.spec;
        // Staging areas of earlier runs (failed or killed) go now that the lock is ours, and so do
        // the files a crashed run moved into place without committing.
        warehouse.delete_prefix(layout::STAGING_DIR).await?;
        let base = warehouse.snapshot().await?;
        let garbage = collect_garbage(warehouse, lock, &base, started).await?;
        // Held tables' files left in the temporary directory by runs killed while holding them:
        // those as old as a stale lock (younger ones may be another job's, in use).
        let stale = std::time::Duration::from_secs(
            u64::try_from(spec.stale_lock_hours.max(1)).unwrap_or(1) * 3600,
        );
        for dir in clientele_sql::remove_stale_held(&std::env::temp_dir(), stale) {
            tracing::info!(path = %dir.display(), "removed a held table's directory left by a killed run");
        }
        let engine = Engine::new(warehouse, self.opts.as_of, &spec.engine)?;
        engine.use_snapshot(std::sync::Arc::new(base.clone()));
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
                    kind: step.kind().into(),
                    status: StepStatus::Skipped,
                    started_at: now.to_rfc3339(),
                    ended_at: now.to_rfc3339(),
                    duration_ms: 0,
                    peak_memory_mib: None,
                    cpu_ms: None,
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
                o.step_started(&step.name, step.kind());
            }
            tracing::info!(step = %step.name, kind = step.kind(), "step started");
            crate::resources::reset_peak();
            let cpu_before = crate::resources::cpu_ms();
            let result = match clientele_store::failpoint::reach(&format!("step:{}", step.name)) {
                Err(e) => Err(Error::from(e)),
                Ok(()) => {
                    self.run_step(step, &engine, warehouse, run_id, &state)
                        .await
                }
            };
            let ended = (self.opts.clock)();
            let (mut outcome, error) = match result {
                Ok(mut output) => {
                    let failure = output.failure.take();
                    (output, failure)
                }
                Err(e) => (StepOutput::default(), Some(e)),
            };
            let error = error.map(|e| chain(&e));
            let section = std::mem::take(&mut outcome.report);
            state.absorb(std::mem::take(&mut outcome.tables), section);
            if let Some(e) = &error {
                tracing::error!(step = %step.name, error = %e, "step failed");
                state.failed.insert(step.name.clone());
                first_error.get_or_insert_with(|| format!("step '{}': {e}", step.name));
            } else {
                tracing::info!(step = %step.name, rows_in = outcome.rows_in, rows_out = outcome.rows_out, "step succeeded");
            }
            let report = StepReport {
                name: step.name.clone(),
                kind: step.kind().into(),
                status: if error.is_some() {
                    StepStatus::Failed
                } else {
                    StepStatus::Succeeded
                },
                started_at: now.to_rfc3339(),
                ended_at: ended.to_rfc3339(),
                duration_ms: u64::try_from((ended - now).num_milliseconds()).unwrap_or(0),
                peak_memory_mib: crate::resources::peak_mib(),
                cpu_ms: cpu_before
                    .zip(crate::resources::cpu_ms())
                    .map(|(before, after)| after.saturating_sub(before)),
                rows_in: outcome.rows_in,
                rows_out: outcome.rows_out,
                outputs: outcome.outputs,
                error,
            };
            self.notify_finished(&report);
            reports.push(report);
        }

        let mut succeeded = first_error.is_none();
        let files: Vec<String> = reports
            .iter()
            .flat_map(|r| r.outputs.iter().map(|f| f.path.clone()))
            .collect();
        let mut retention = None;
        let mut version = None;
        if succeeded {
            // The copies this run owes are recorded before it publishes, so that a crash after
            // publishing still leaves them for the next run to deliver.
            let owed: Vec<(String, String)> = state
                .report
                .exports
                .iter()
                .filter_map(|e| {
                    let declared = spec.exports.iter().find(|x| x.name == e.export)?;
                    Some((e.export.clone(), declared.location.clone()?))
                })
                .collect();
            let as_of = self.opts.as_of.to_string();
            crate::delivery::record_pending(warehouse, run_id.as_str(), &as_of, &owed).await?;
            let mut removed = Vec::new();
            if let Some(days) = spec.raw_retention_days {
                // Judged on the snapshot as it will be, so this run's partitions count as newest.
                let mut after = base.clone();
                for f in &files {
                    after.files.insert(f.clone(), f.clone());
                }
                let r = crate::retention::plan(&after, self.opts.as_of, days);
                removed.clone_from(&r.removed);
                retention = Some(r);
            }
            let changes = Changes {
                files: files.clone(),
                removed,
            };
            match self.publish(warehouse, lock, run_id, &base, &changes).await {
                Ok(committed) => {
                    version = Some(committed.version);
                    tracing::info!(run = %run_id, files = changes.files.len(), version = committed.version, "outputs published");
                    if let Some(r) = &retention {
                        tracing::info!(
                            dropped = r.dropped.len(),
                            days = r.days,
                            "raw partitions past retention dropped"
                        );
                    }
                    if reports.iter().any(|r| r.kind == "ingest") {
                        // The raw tables an erasure rewrote have been loaded again in full.
                        warehouse.delete(crate::forget::RELOAD_MARKER).await?;
                    }
                }
                Err(e) => {
                    // Nothing was committed: the files this run moved into place go again, and the
                    // run is recorded as failed.
                    let undecided = matches!(e, Error::Internal(_));
                    let e = chain(&e);
                    tracing::error!(run = %run_id, error = %e, "publishing failed: nothing was published; the last good outputs are untouched");
                    for rel in files.iter().filter(|_| !undecided) {
                        if let Err(e) = warehouse.delete(&layout::physical(rel, run_id)).await {
                            tracing::warn!(file = %rel, error = %e, "a file of the failed publication could not be removed; the next run will");
                        }
                    }
                    retention = None;
                    succeeded = false;
                    first_error = Some(format!("publishing: {e}"));
                }
            }
        } else {
            tracing::error!(run = %run_id, "run failed: nothing was published; the last good outputs are untouched");
        }
        // Copies go out only now, from the published files: this run's and any an earlier run
        // could not deliver.
        let deliveries = match crate::delivery::deliver_pending(warehouse, &spec.base_dir).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "pending deliveries could not be read; they stay pending");
                Vec::new()
            }
        };
        for d in deliveries
            .iter()
            .filter(|d| d.delivered && d.published_by == run_id.as_str())
        {
            if let Some(e) = state
                .report
                .exports
                .iter_mut()
                .find(|e| e.export == d.export)
            {
                e.delivered_to.clone_from(&d.delivered_to);
            }
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
            sources: state.report.sources,
            tables,
            segments: state.report.segments,
            alarms: state.report.alarms,
            campaigns: state.report.campaigns,
            exports: state.report.exports,
            identity: state.report.identity,
            models: state.report.models,
            deliveries,
            retention,
            commit_version: version,
            garbage_collected: garbage,
            staging_dir: (!succeeded && !files.is_empty())
                .then(|| warehouse.url_of(&format!("{}/{run_id}", layout::STAGING_DIR), true)),
            error: first_error,
        };
        clientele_store::failpoint::reach("run:manifest")?;
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

    /// Publishes the run's files on top of `base` if the run still holds the lock.
    async fn publish(
        &self,
        warehouse: &Warehouse,
        lock: &RunLock,
        run_id: &RunId,
        base: &clientele_store::Snapshot,
        changes: &Changes,
    ) -> Result<clientele_store::Snapshot> {
        if !lock.still_held().await? {
            return Err(Error::Internal(format!(
                "run {run_id} lost the warehouse lock to another run while it worked"
            )));
        }
        match warehouse
            .publish(run_id, base, changes, (self.opts.clock)())
            .await
        {
            Ok(committed) => Ok(committed),
            Err(e) => {
                // An error whose reply was lost may hide a commit that was made (on an object
                // store, the record written and the answer dropped): the latest commit says.
                match warehouse.snapshot().await {
                    Ok(latest) if latest.run_id.as_deref() == Some(run_id.as_str()) => {
                        tracing::warn!(run = %run_id, version = latest.version, error = %e, "publishing reported an error, but the commit record is this run's: the run is published");
                        Ok(latest)
                    }
                    Ok(_) => Err(Error::Store(e)),
                    Err(unreadable) => Err(Error::Internal(format!(
                        "{e}; and whether the commit was made cannot be read ({unreadable}): the next run decides, and removes this run's files if no commit uses them"
                    ))),
                }
            }
        }
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
        table: &TableId,
        state: &RunState,
    ) -> Result<()> {
        // history.<table> is registered just before the model that reads it runs.
        if state.produced.contains_key(&table.name) || table.layer == clientele_sql::HISTORY_SCHEMA
        {
            return Ok(());
        }
        let rel = layout::partition_file(&table.layer, &table.table, self.opts.as_of);
        if !engine.is_published(&rel).await? {
            return Err(Error::Input(format!(
                "table '{}' was not written by this run and has no published partition for as_of={} ({rel}); run the step that writes it first",
                table.name, self.opts.as_of
            )));
        }
        engine.register_file(&table.name, &rel).await?;
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

    /// Registers the step's inputs and runs it; the rows read from inputs are added to its own.
    async fn run_step(
        &self,
        step: &Step,
        engine: &Engine,
        warehouse: &Warehouse,
        run_id: &RunId,
        state: &RunState,
    ) -> Result<StepOutput> {
        let mut input_rows = 0;
        for input in &step.reads {
            self.register_input(engine, input, state).await?;
            input_rows += match state.produced.get(&input.name) {
                Some((_, file)) => file.rows,
                None => Self::published_rows(engine, input).await,
            };
        }
        let cx = StepContext {
            spec: &self.spec,
            engine,
            warehouse,
            run_id,
            as_of: self.opts.as_of,
            full_refresh: self.opts.full_refresh,
            now: (self.opts.clock)(),
        };
        let mut output = step.operation.run(&cx).await?;
        output.rows_in += input_rows;
        Ok(output)
    }
}

/// Removes what crashed and failed runs left in the warehouse ([`Warehouse::collect_garbage`]):
/// the files of runs with a manifest or whose stale lock this run took over go at once, files
/// of unknown writers after [`ORPHAN_GRACE_HOURS`]. Returns what was removed.
async fn collect_garbage(
    warehouse: &Warehouse,
    lock: &RunLock,
    snapshot: &clientele_store::Snapshot,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let mut finished: BTreeSet<String> = warehouse
        .list(layout::RUNS_DIR)
        .await?
        .into_iter()
        .filter_map(|(p, _)| {
            p.rsplit('/')
                .next()?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .collect();
    if let Some(dead) = lock.taken_over() {
        finished.insert(dead.run_id.clone());
    }
    let removed = warehouse
        .collect_garbage(
            snapshot,
            &finished,
            chrono::Duration::hours(ORPHAN_GRACE_HOURS),
            now,
        )
        .await?;
    Ok(removed)
}

/// Files no commit uses, of a writer that cannot be shown to be over, are removed after this long.
pub const ORPHAN_GRACE_HOURS: i64 = 6;
