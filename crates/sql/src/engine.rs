use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::NaiveDate;
use clientele_store::{Snapshot, Warehouse, WrittenFile};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::{FairSpillPool, MemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::models::Model;
use crate::pool::{NAMED_CONSUMERS, RepartitionsGranted, WatchedPool};

/// Schemas that hold source tables rather than models.
pub const SOURCE_SCHEMAS: [&str; 2] = ["raw", "quarantine"];
/// The schema under which a model reads the published snapshots of a table: `history.<table>`.
pub const HISTORY_SCHEMA: &str = "history";

/// `history.<table>__snapshots` lists the as-of dates of `history.<table>`'s published partitions
/// ([`Engine::register_history_snapshots`]).
pub const HISTORY_SNAPSHOTS_SUFFIX: &str = "__snapshots";

/// How the query engine is set up.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Partitions per query; 0 means one per CPU core.
    pub target_partitions: usize,
    /// Memory the engine may use before it spills or fails, in MiB; `None` is unbounded.
    pub memory_limit_mb: Option<u64>,
    /// Source systems from most to least trusted, for `source_trust_rank(source_system)` (the
    /// job's `[identity] trust`); a source not listed ranks after every listed one.
    pub source_trust: Vec<String>,
    /// The currency orders are reported in, for `reporting_currency()` (the job's
    /// `reporting_currency`); `None` makes the function return NULL.
    pub reporting_currency: Option<String>,
    /// At most this many rows of its keyed inputs per part of a model that declares a key to run
    /// in parts by (the job's `model_part_rows`; [`crate::parts`]); `None` is
    /// [`crate::parts::ROWS_PER_POOL_MIB`] per MiB of `memory_limit_mb`, and no parts without it.
    pub model_part_rows: Option<u64>,
}

/// A DataFusion session bound to one warehouse and one as-of date.
pub struct Engine {
    ctx: SessionContext,
    warehouse: Warehouse,
    /// The job's `memory_limit_mb`: the pool's size, whether a query that runs out of it runs
    /// again ([`Engine::attempts`]), and what its error says.
    memory_limit_mb: Option<u64>,
    /// The pool of the engine's own session under a memory limit: what the hash joins held when
    /// a query ran out of it decides the next way it runs ([`Engine::run_attempts`]).
    pool: Option<Arc<WatchedPool>>,
    /// The job's `model_part_rows` ([`EngineOptions::model_part_rows`]).
    model_part_rows: Option<u64>,
    /// The committed snapshot published files are read through (loaded on first use, or set by
    /// the run that owns the engine).
    snapshot: std::sync::Mutex<Option<Arc<Snapshot>>>,
}

/// Rows of a row group of a [`HeldTable`]'s file.
const HELD_ROW_GROUP_ROWS: usize = 1 << 17;

/// A query's result held as a table by [`Engine::hold`]: registered while this value lives, its
/// file deleted and its name released when it is dropped.
pub struct HeldTable {
    name: String,
    rows: u64,
    file: std::path::PathBuf,
    ctx: SessionContext,
    _dir: tempfile::TempDir,
}

impl HeldTable {
    /// The table's name, to read it in SQL (`select * from <name>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rows the query returned.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The temporary file it is read from (deleted when it is dropped).
    pub fn file(&self) -> &std::path::Path {
        &self.file
    }
}

impl Drop for HeldTable {
    fn drop(&mut self) {
        // Nothing to do when it is gone already: the file goes with the directory either way.
        let _ = self.ctx.deregister_table(&self.name);
    }
}

/// The prefix of the temporary directories [`Engine::hold`] writes its files in.
pub const HELD_DIR_PREFIX: &str = "clientele-held-";

/// Removes the directories [`Engine::hold`] left in `temp_dir` (the system's temporary
/// directory, `std::env::temp_dir()`) that were last changed `older_than` ago or more, and
/// returns them. A held table's directory goes when the table is dropped, but a process killed
/// while it holds one (SIGKILL, an abort, a power cut) leaves it behind: up to tens of megabytes
/// at 1,000,000 persons. Younger directories may be another job's, in use, and are left alone;
/// age is the directory's modification time against the system clock (not a run's as-of clock:
/// the file system's times are the system's). What cannot be removed (another user's directory)
/// is logged and left.
pub fn remove_stale_held(
    temp_dir: &std::path::Path,
    older_than: std::time::Duration,
) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(temp_dir) else {
        return Vec::new();
    };
    let now = std::time::SystemTime::now();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(HELD_DIR_PREFIX)
        {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let age = meta
            .modified()
            .ok()
            .and_then(|changed| now.duration_since(changed).ok());
        if !meta.is_dir() || age.is_none_or(|age| age < older_than) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_dir_all(&path) {
            Ok(()) => removed.push(path),
            Err(error) => tracing::warn!(
                path = %path.display(),
                %error,
                "could not remove a held table's directory left by a killed run"
            ),
        }
    }
    removed.sort();
    removed
}

/// The row count DataFusion's writers return (one batch, one `count` column).
fn written_rows(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .filter(|b| b.num_columns() > 0)
        .filter_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::UInt64Array>()
        })
        .flat_map(|a| a.iter().flatten())
        .sum()
}

/// The result of [`Engine::stream`].
pub struct BatchStream {
    what: String,
    memory_limit_mb: Option<u64>,
    attempt: usize,
    stream: datafusion::physical_plan::SendableRecordBatchStream,
}

impl BatchStream {
    /// The columns of every batch (known before the first, even for a query without rows).
    pub fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.stream.schema()
    }

    /// The next batch, `None` at the end.
    pub async fn next(&mut self) -> Option<Result<RecordBatch>> {
        let (what, limit, attempt) = (&self.what, self.memory_limit_mb, self.attempt);
        self.stream
            .next()
            .await
            .map(|r| r.map_err(|source| query_error(what, source, limit, attempt)))
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("warehouse", &self.warehouse.display())
            .finish()
    }
}

/// The functions through which models read the job's declarations instead of assuming them:
/// `reporting_currency()` and `source_trust_rank(source_system)` (0 for the most trusted source,
/// the number of listed sources for one not listed or NULL).
fn register_job_functions(ctx: &SessionContext, opts: &EngineOptions) {
    let currency = opts.reporting_currency.clone();
    ctx.register_udf(create_udf(
        "reporting_currency",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(currency.clone())))),
    ));
    let trust = opts.source_trust.clone();
    ctx.register_udf(create_udf(
        "source_trust_rank",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let unlisted = i32::try_from(trust.len()).unwrap_or(i32::MAX);
            let rank = |s: Option<&str>| {
                s.and_then(|s| trust.iter().position(|t| t == s))
                    .map_or(unlisted, |i| i32::try_from(i).unwrap_or(i32::MAX))
            };
            match args.first() {
                Some(ColumnarValue::Scalar(v)) => {
                    let text = match v {
                        ScalarValue::Utf8(t)
                        | ScalarValue::LargeUtf8(t)
                        | ScalarValue::Utf8View(t) => t.clone(),
                        _ => None,
                    };
                    Ok(ColumnarValue::Scalar(ScalarValue::Int32(Some(rank(
                        text.as_deref(),
                    )))))
                }
                Some(ColumnarValue::Array(a)) => {
                    let strings = cast(a, &DataType::Utf8)?;
                    let strings = strings
                        .as_any()
                        .downcast_ref::<arrow::array::StringArray>()
                        .ok_or_else(|| {
                            DataFusionError::Internal("source_trust_rank: not text".into())
                        })?;
                    let ranks: arrow::array::Int32Array =
                        strings.iter().map(|s| Some(rank(s))).collect();
                    Ok(ColumnarValue::Array(Arc::new(ranks)))
                }
                None => Err(DataFusionError::Plan(
                    "source_trust_rank takes one argument, the source system".into(),
                )),
            }
        }),
    ));
}

/// A date as Arrow's `Date32` holds it (days since 1970-01-01): the workspace's one day number,
/// used for date columns and as the day numbers of the buy-till-you-die models.
pub fn date32(d: NaiveDate) -> i32 {
    datafusion::arrow::datatypes::Date32Type::from_naive_date(d)
}

impl Engine {
    /// Builds the session: the only place in clientele where one is made.
    pub fn new(warehouse: &Warehouse, as_of: NaiveDate, opts: &EngineOptions) -> Result<Self> {
        let partitions = if opts.target_partitions == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            opts.target_partitions
        };
        let mut config = SessionConfig::new()
            .with_target_partitions(partitions)
            .with_information_schema(true);
        // Plain UTF-8 strings everywhere, so every reader of the Parquet sees ordinary string columns.
        config
            .options_mut()
            .execution
            .parquet
            .schema_force_view_types = false;
        config.options_mut().sql_parser.map_string_types_to_utf8view = false;
        let mut runtime = RuntimeEnvBuilder::new();
        let mut pool = None;
        if let Some(mb) = opts.memory_limit_mb {
            let bytes = pool_bytes(mb);
            // Every sort holds back memory for merging what it spilled (DataFusion's default, 10
            // MB, per sort and partition); under a small limit a plan with a few sorts would hold
            // back the whole pool, so it is capped to a sixteenth of the pool per partition.
            let execution = &mut config.options_mut().execution;
            execution.sort_spill_reservation_bytes = execution
                .sort_spill_reservation_bytes
                .min(bytes / 16 / partitions.max(1));
            // DataFusion's greedy pool (the fastest while memory suffices; the tracking wrapper
            // names the five largest consumers when it runs out, and `WatchedPool` notes what the
            // hash joins held then); see `materialise` for what a model that runs out of it does.
            let watched = Arc::new(WatchedPool::new(bytes));
            runtime = runtime
                .with_memory_pool(Arc::new(RepartitionsGranted::new(
                    Arc::clone(&watched) as Arc<dyn MemoryPool>
                )));
            pool = Some(watched);
        }
        let runtime = runtime
            .build_arc()
            .map_err(|e| Error::Config(e.to_string()))?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.register_object_store(warehouse.store_url(), warehouse.store());

        let days = date32(as_of);
        ctx.register_udf(create_udf(
            "as_of_date",
            vec![],
            DataType::Date32,
            Volatility::Immutable,
            Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Date32(Some(days))))),
        ));
        register_job_functions(&ctx, opts);
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| Error::Config("no default catalog".into()))?;
        for schema in SOURCE_SCHEMAS.into_iter().chain([HISTORY_SCHEMA]) {
            catalog
                .register_schema(schema, Arc::new(MemorySchemaProvider::new()))
                .map_err(|e| Error::Config(e.to_string()))?;
        }
        Ok(Self {
            ctx,
            warehouse: warehouse.clone(),
            memory_limit_mb: opts.memory_limit_mb,
            pool,
            model_part_rows: opts.model_part_rows,
            snapshot: std::sync::Mutex::new(None),
        })
    }

    /// Reads published files through `snapshot` from now on (a run sets the snapshot it started
    /// from, so that everything it reads is of one commit).
    pub fn use_snapshot(&self, snapshot: Arc<Snapshot>) {
        if let Ok(mut s) = self.snapshot.lock() {
            *s = Some(snapshot);
        }
    }

    /// The committed snapshot this engine reads: the one set, or the warehouse's latest.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>> {
        if let Some(s) = self.snapshot.lock().ok().and_then(|s| s.clone()) {
            return Ok(s);
        }
        let loaded = Arc::new(self.warehouse.snapshot().await?);
        self.use_snapshot(Arc::clone(&loaded));
        Ok(loaded)
    }

    /// The DataFusion session (for callers that need more than this API offers).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Makes one Parquet file of the warehouse queryable as `table` (replacing an earlier
    /// registration). `rel` is a logical path of the committed snapshot (read from the physical
    /// file the snapshot names), or a path of a run's own staging area (`_staging/...`).
    pub async fn register_file(&self, table: &str, rel: &str) -> Result<()> {
        let physical = if rel.starts_with('_') {
            rel.to_string()
        } else {
            let snapshot = self.snapshot().await?;
            snapshot.resolve(rel).unwrap_or(rel).to_string()
        };
        self.register_physical(table, &physical).await
    }

    async fn register_physical(&self, table: &str, physical: &str) -> Result<()> {
        let url = self.warehouse.url_of(physical, false);
        self.ctx
            .deregister_table(table)
            .map_err(|e| Error::Config(e.to_string()))?;
        self.ctx
            .register_parquet(table, &url, ParquetReadOptions::default())
            .await
            .map_err(|source| Error::Execution {
                what: format!("reading {url}"),
                source,
            })
    }

    /// Whether a logical path is in the committed snapshot.
    pub async fn is_published(&self, rel: &str) -> Result<bool> {
        Ok(self.snapshot().await?.contains(rel))
    }

    /// Registers `name` as every committed partition of `layer/table`, with the column `as_of`.
    /// When the table's directory holds exactly the snapshot's files (the usual case) it is read
    /// as one Hive-partitioned directory; otherwise (a run is publishing, or a crashed run left
    /// files) as the union of the snapshot's files, so uncommitted files are never read. Returns
    /// false when the snapshot has no partition of the table.
    async fn register_partitions(&self, name: &str, layer: &str, table: &str) -> Result<bool> {
        let dir = format!("{layer}/{table}");
        let snapshot = self.snapshot().await?;
        let committed = committed_partitions(&snapshot, layer, table);
        self.ctx
            .deregister_table(name)
            .map_err(|e| Error::Config(e.to_string()))?;
        if committed.is_empty() {
            return Ok(false);
        }
        let on_disk: std::collections::BTreeSet<String> = self
            .warehouse
            .list(&format!("{dir}/"))
            .await?
            .into_iter()
            .map(|(rel, _)| rel)
            .filter(|rel| rel.ends_with(".parquet"))
            .collect();
        let wanted: std::collections::BTreeSet<String> =
            committed.iter().map(|(_, p)| p.clone()).collect();
        if on_disk == wanted {
            let url = self.warehouse.url_of(&dir, true);
            let opts = ParquetReadOptions::default()
                .table_partition_cols(vec![("as_of".to_string(), DataType::Date32)]);
            self.ctx
                .register_parquet(name, &url, opts)
                .await
                .map_err(|source| Error::Execution {
                    what: format!("reading {url}"),
                    source,
                })?;
            return Ok(true);
        }
        tracing::debug!(table = %dir, "reading the committed files one by one: the directory holds others");
        let mut parts = Vec::new();
        for (i, (date, physical)) in committed.iter().enumerate() {
            let part = format!("__committed_{}_{i}", name.replace('.', "_"));
            self.register_physical(&part, physical).await?;
            parts.push(format!(
                "select *, cast('{date}' as date) as as_of from {part}"
            ));
        }
        let df = self
            .ctx
            .sql(&parts.join(" union all "))
            .await
            .map_err(|source| Error::Execution {
                what: format!("reading the committed partitions of {dir}"),
                source,
            })?;
        self.ctx
            .register_table(name, df.into_view())
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(true)
    }

    /// Registers `history.<table>`: every published as-of partition of `layer/table`, with the
    /// column `as_of`. Before the first publication it is empty, with the columns of `current` (the
    /// table as this run registered it) and `as_of`.
    pub async fn register_history(&self, layer: &str, table: &str, current: &str) -> Result<()> {
        let name = format!("{HISTORY_SCHEMA}.{table}");
        if self.register_partitions(&name, layer, table).await? {
            return Ok(());
        }
        let provider =
            self.ctx
                .table_provider(current)
                .await
                .map_err(|source| Error::Execution {
                    what: format!("reading the columns of '{current}' for {name}"),
                    source,
                })?;
        let mut fields: Vec<Field> = provider
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("as_of", DataType::Date32, false));
        self.register_empty(&name, Arc::new(Schema::new(fields)))
    }

    /// Registers `history.<table>__snapshots`: one row per published as-of partition of
    /// `layer/table` (column `as_of`, ascending), empty before the first publication. A model that
    /// builds a history from `history.<table>` and runs in parts of a key reads the dates from here
    /// rather than from the snapshots' rows: this table has no key column, so every part reads all
    /// of it, and a date on which a part's customers were all absent still counts.
    pub async fn register_history_snapshots(&self, layer: &str, table: &str) -> Result<()> {
        let name = format!("{HISTORY_SCHEMA}.{table}{HISTORY_SNAPSHOTS_SUFFIX}");
        let mut dates = std::collections::BTreeSet::new();
        let snapshot = self.snapshot().await?;
        for (date, physical) in committed_partitions(&snapshot, layer, table) {
            let date = NaiveDate::parse_from_str(&date, "%Y-%m-%d").map_err(|e| {
                Error::Config(format!(
                    "the published file {physical} of {layer}/{table} has no as-of date ({e})"
                ))
            })?;
            dates.insert(date32(date));
        }
        let schema = Arc::new(Schema::new(vec![Field::new(
            "as_of",
            DataType::Date32,
            false,
        )]));
        let dates = arrow::array::Date32Array::from(dates.into_iter().collect::<Vec<_>>());
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(dates)])
            .map_err(|e| Error::Config(e.to_string()))?;
        let mem = MemTable::try_new(schema, vec![vec![batch]])
            .map_err(|e| Error::Config(e.to_string()))?;
        self.ctx
            .deregister_table(name.as_str())
            .map_err(|e| Error::Config(e.to_string()))?;
        self.ctx
            .register_table(name.as_str(), Arc::new(mem))
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(())
    }

    /// Registers an empty table with a known schema (planning without data).
    pub fn register_empty(&self, table: &str, schema: SchemaRef) -> Result<()> {
        let mem =
            MemTable::try_new(schema, vec![vec![]]).map_err(|e| Error::Config(e.to_string()))?;
        self.ctx
            .deregister_table(table)
            .map_err(|e| Error::Config(e.to_string()))?;
        self.ctx
            .register_table(table, Arc::new(mem))
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(())
    }

    /// Registers every published table with all its committed as-of partitions (column `as_of`):
    /// `raw.<source>`, `quarantine.<source>`, and every other table by its own name. Returns
    /// (table name, directory).
    pub async fn register_published(&self) -> Result<Vec<(String, String)>> {
        let snapshot = self.snapshot().await?;
        let mut tables: BTreeMap<String, (String, String)> = BTreeMap::new();
        for logical in snapshot.files.keys() {
            let parts: Vec<&str> = logical.split('/').collect();
            let [layer, table, partition, file] = parts.as_slice() else {
                continue;
            };
            if layer.starts_with('_')
                || *layer == "exports"
                || !partition.starts_with("as_of=")
                || !file.ends_with(".parquet")
            {
                continue;
            }
            let name = if SOURCE_SCHEMAS.contains(layer) {
                format!("{layer}.{table}")
            } else {
                (*table).to_string()
            };
            tables
                .entry(name)
                .or_insert_with(|| ((*layer).to_string(), (*table).to_string()));
        }
        for (name, (layer, table)) in &tables {
            self.register_partitions(name, layer, table).await?;
        }
        Ok(tables
            .into_iter()
            .map(|(name, (layer, table))| (name, format!("{layer}/{table}")))
            .collect())
    }

    /// Plans a query without running it and returns its output schema.
    pub async fn plan_schema(&self, sql: &str) -> Result<SchemaRef> {
        let df = self.ctx.sql(sql).await.map_err(|source| Error::Execution {
            what: "planning a query".into(),
            source,
        })?;
        Ok(Arc::new(df.schema().as_arrow().clone()))
    }

    /// Plans a model; errors name its file.
    pub async fn plan_model(&self, model: &Model) -> Result<SchemaRef> {
        let plan_err = |source: DataFusionError| Error::Plan {
            model: model.name.clone(),
            path: model.path.clone(),
            source,
        };
        let df = self.ctx.sql(&model.sql).await.map_err(plan_err)?;
        let plan_err = |source: DataFusionError| Error::Plan {
            model: model.name.clone(),
            path: model.path.clone(),
            source,
        };
        // Also build the physical plan: some errors appear only then.
        df.clone().create_physical_plan().await.map_err(plan_err)?;
        if let Some(key) = &model.parts {
            let has_key = self
                .ctx
                .table_provider(key.table.as_str())
                .await
                .is_ok_and(|t| t.schema().column_with_name(&key.column).is_some());
            if !has_key {
                return Err(Error::BadModel {
                    path: model.path.clone(),
                    reason: format!(
                        "line {}: 'parts: {}.{}': the table '{}' has no column '{}'",
                        key.line, key.table, key.column, key.table, key.column
                    ),
                });
            }
        }
        Ok(normalised_schema(df.schema().as_arrow()))
    }

    /// Runs a query and collects its result. Under a memory limit, a query that runs out of memory
    /// runs again each way of [`Engine::attempts`] in turn.
    pub async fn collect(&self, what: &str, sql: &str) -> Result<Vec<RecordBatch>> {
        self.run_attempts(what, Error::is_out_of_memory, |attempt| async move {
            let err = |source| query_error(what, source, self.memory_limit_mb, attempt);
            match self.session(attempt)?.sql(sql).await {
                Ok(df) => df.collect().await.map_err(err),
                Err(e) => Err(err(e)),
            }
        })
        .await
    }

    /// Runs a query and returns its result batch by batch, for results too large to hold whole.
    pub async fn stream(&self, what: &str, sql: &str) -> Result<BatchStream> {
        self.stream_attempt(what, sql, 0).await
    }

    /// How many ways [`Engine::stream_attempt`] and [`Engine::materialise`] can run a query, from
    /// the fastest to the one that holds the least: 0, the engine as set up (DataFusion's greedy
    /// pool); 1, a fair pool (each operator that can spill, such as a sort or an aggregation, gets
    /// an equal share of what the others cannot give back, instead of the first sort taking the
    /// whole pool and a later hash join failing); 2, a fair pool and sort-merge joins instead of
    /// hash joins (whose build side cannot spill). Without a memory limit, only the first.
    pub fn attempts(&self) -> usize {
        match self.memory_limit_mb {
            None => 1,
            Some(_)
                if self
                    .ctx
                    .copied_config()
                    .options()
                    .optimizer
                    .prefer_hash_join =>
            {
                3
            }
            Some(_) => 2,
        }
    }

    /// [`Engine::stream`] the way numbered `attempt` of [`Engine::attempts`] runs it: a caller that
    /// reads a query's rows runs it in [`Engine::run_attempts`], which reads again from the start
    /// the next way when the query runs out of memory ([`Error::OutOfMemory`]).
    pub async fn stream_attempt(
        &self,
        what: &str,
        sql: &str,
        attempt: usize,
    ) -> Result<BatchStream> {
        let err = |source| query_error(what, source, self.memory_limit_mb, attempt);
        let stream = self
            .session(attempt)?
            .sql(sql)
            .await
            .map_err(err)?
            .execute_stream()
            .await
            .map_err(err)?;
        Ok(BatchStream {
            what: what.to_string(),
            memory_limit_mb: self.memory_limit_mb,
            attempt,
            stream,
        })
    }

    /// [`Engine::stream_attempt`] in the parts of `parts` ([`Engine::query_parts`]; one piece
    /// when `None`): the rows of each part in turn, each part's query started when the one
    /// before it has ended, so only one part's hash tables are held at a time. For a reader that
    /// does not need the rows in the query's order across parts.
    pub async fn stream_attempt_in_parts(
        &self,
        what: &str,
        sql: &str,
        attempt: usize,
        parts: Option<&crate::parts::Parts>,
    ) -> Result<BatchStream> {
        let Some(parts) = parts else {
            return self.stream_attempt(what, sql, attempt).await;
        };
        let err = |source| query_error(what, source, self.memory_limit_mb, attempt);
        let mut sessions = Vec::with_capacity(parts.count());
        for index in 0..parts.count() {
            sessions.push(self.part_session(attempt, parts, index).await?);
        }
        let mut sessions = sessions.into_iter();
        let first = match sessions.next() {
            Some(ctx) => ctx
                .sql(sql)
                .await
                .map_err(err)?
                .execute_stream()
                .await
                .map_err(err)?,
            None => return self.stream_attempt(what, sql, attempt).await,
        };
        let schema = first.schema();
        let sql = sql.to_string();
        let rest =
            futures::TryStreamExt::try_flatten(futures::stream::iter(sessions).then(move |ctx| {
                let sql = sql.clone();
                async move { ctx.sql(&sql).await?.execute_stream().await }
            }));
        let chained = first.chain(rest);
        Ok(BatchStream {
            what: what.to_string(),
            memory_limit_mb: self.memory_limit_mb,
            attempt,
            stream: Box::pin(
                datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, chained),
            ),
        })
    }

    /// Runs `run` as attempt 0 and, while it fails for want of memory (`out_of_memory`) and
    /// [`Engine::attempts`] has another way, again as the next attempt, logging each. When the
    /// first way ran out with the hash joins' build sides holding two thirds of the pool or more,
    /// the fair pool is skipped: it cannot make a build side spill, so the query goes straight to
    /// sort-merge joins ([`crate::parts::after_running_out`] for a query not in parts). (The
    /// note of what the joins held is the engine's: a query run beside this one that runs out
    /// too may decide it; either way the query runs to the same result.)
    pub async fn run_attempts<T, E: std::fmt::Display, F>(
        &self,
        what: &str,
        out_of_memory: impl Fn(&E) -> bool,
        mut run: impl FnMut(usize) -> F,
    ) -> std::result::Result<T, E>
    where
        F: std::future::Future<Output = std::result::Result<T, E>>,
    {
        let mut attempt = 0;
        let ways = self.attempts();
        if let Some(pool) = &self.pool {
            pool.forget_failure();
        }
        loop {
            match run(attempt).await {
                Err(e) if out_of_memory(&e) => {
                    let joins_filled =
                        attempt == 0 && self.pool.as_ref().is_some_and(|p| p.joins_fill_it());
                    let crate::parts::NextWay::Attempt(next) =
                        crate::parts::after_running_out(crate::parts::RanOut {
                            attempt,
                            ways,
                            joins_filled,
                            parts: None,
                            doubled: 0,
                        })
                    else {
                        return Err(e);
                    };
                    tracing::warn!(
                        query = what,
                        memory_limit_mb = self.memory_limit_mb,
                        error = %e,
                        "out of memory: running it again with {}",
                        way_named(next, joins_filled)
                    );
                    attempt = next;
                }
                other => return other,
            }
        }
    }

    /// Runs a query once and holds its result as the table [`HeldTable::name`] until the
    /// returned value is dropped: a temporary, uncompressed Parquet file on local disk (beside
    /// DataFusion's spill files, in the system's temporary directory), outside the memory pool.
    /// For a query that another one reads several times: DataFusion plans a `with` query
    /// again at each place it is read, so a query reading it four times computes it four times
    /// (the score step's feature queries, `sql/queries/features.sql`, read their snapshots four
    /// times). Under a memory limit it runs each way of [`Engine::attempts`] as
    /// [`Engine::collect`] does.
    pub async fn hold(&self, what: &str, sql: &str) -> Result<HeldTable> {
        static HELD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "__held_{}",
            HELD.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix(HELD_DIR_PREFIX)
            .tempdir()
            .map_err(|source| Error::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let mut parquet = datafusion::config::TableParquetOptions::default();
        parquet.global.compression = Some("uncompressed".into());
        // One writer, a row group of 131,072 rows at a time: what the writer holds stays small
        // under a memory limit (the parallel writer buffered enough to run a 64 MiB pool out),
        // and the row groups let a reader split the file between partitions.
        parquet.global.allow_single_file_parallelism = false;
        parquet.global.max_row_group_size = HELD_ROW_GROUP_ROWS;
        let (file, rows) = self
            .run_attempts(what, Error::is_out_of_memory, |attempt| {
                let file = dir.path().join(format!("attempt-{attempt}.parquet"));
                let parquet = parquet.clone();
                async move {
                    let err = |source| query_error(what, source, self.memory_limit_mb, attempt);
                    let df = self.session(attempt)?.sql(sql).await.map_err(err)?;
                    let path = file.to_string_lossy().into_owned();
                    let written = df
                        .write_parquet(
                            &path,
                            DataFrameWriteOptions::new().with_single_file_output(true),
                            Some(parquet),
                        )
                        .await
                        .map_err(err)?;
                    Ok::<_, Error>((path, written_rows(&written)))
                }
            })
            .await?;
        self.ctx
            .register_parquet(&name, &file, ParquetReadOptions::default())
            .await
            .map_err(|source| Error::Execution {
                what: format!("reading {what} back from {file}"),
                source,
            })?;
        tracing::debug!(query = what, rows, file = %file, "held a query's result");
        Ok(HeldTable {
            name,
            rows,
            file: file.into(),
            ctx: self.ctx.clone(),
            _dir: dir,
        })
    }

    /// Runs a query and streams its result into the staged Parquet file `staged`, recording it as
    /// `published`. Column types are normalised (see [`normalise_batch`]).
    ///
    /// Under a memory limit, a query that runs out of memory runs again each way of
    /// [`Engine::attempts`] in turn, its unfinished file replaced: slower each time, holding less.
    /// At 1,000,000 persons the consolidate step needed more than a 1,024 MiB pool before and runs
    /// in 768 MiB this way (docs/performance.md).
    pub async fn materialise(
        &self,
        what: &str,
        sql: &str,
        staged: &str,
        published: &str,
    ) -> Result<WrittenFile> {
        self.materialise_in_parts(what, sql, staged, published, None)
            .await
    }

    /// [`Engine::materialise`] in the parts of [`Engine::parts`] (one piece when `parts` is
    /// `None`): each part's rows are written after the previous part's, into the one file. A part
    /// that runs out of memory runs the whole model again the next way of [`Engine::attempts`].
    pub async fn materialise_in_parts(
        &self,
        what: &str,
        sql: &str,
        staged: &str,
        published: &str,
        parts: Option<&crate::parts::Parts>,
    ) -> Result<WrittenFile> {
        self.run_attempts(what, Error::is_out_of_memory, |attempt| async move {
            self.materialise_in(what, sql, staged, published, parts, attempt)
                .await
        })
        .await
    }

    /// Materialises `model` ([`Engine::materialise_in_parts`]) in the parts of [`Engine::parts`]
    /// when it declares a key. When it runs out of memory: in parts, with the greedy pool, and
    /// not because its hash joins' build sides filled the pool (a sort or an aggregation took
    /// it), it runs again in the same parts with a fair pool; otherwise in twice as many parts
    /// (the way it ran), up to [`crate::parts::MORE_PARTS_TRIES`] times; then in the next of
    /// the slower ways of [`Engine::attempts`] (straight to sort-merge joins when the build
    /// sides filled the pool). A model without a key runs as [`Engine::run_attempts`] runs a
    /// query. Logs the parts it runs in; returns the file and how many parts it was written in
    /// (1: in one piece).
    pub async fn materialise_model(
        &self,
        what: &str,
        model: &Model,
        staged: &str,
        published: &str,
    ) -> Result<(WrittenFile, usize)> {
        let mut parts = self.parts(model).await?;
        let log_parts = |parts: &Option<crate::parts::Parts>| {
            if let Some(parts) = parts {
                tracing::info!(
                    model = %model.name,
                    parts = parts.count(),
                    keyed_rows = parts.keyed_rows(),
                    memory_limit_mb = self.memory_limit_mb,
                    "running the model in parts of its key (docs/performance.md#models-in-parts)"
                );
            }
        };
        log_parts(&parts);
        let can_cut = model
            .parts
            .as_ref()
            .and_then(|key| self.part_rows(key))
            .is_some();
        let ways = self.attempts();
        let mut attempt = 0;
        let mut doubled = 0;
        loop {
            let count = parts.as_ref().map_or(1, crate::parts::Parts::count) as u64;
            if let Some(pool) = &self.pool {
                pool.forget_failure();
            }
            let e = match self
                .materialise_in(what, &model.sql, staged, published, parts.as_ref(), attempt)
                .await
            {
                Err(e) if e.is_out_of_memory() => e,
                other => return other.map(|file| (file, count as usize)),
            };
            let joins_filled =
                attempt == 0 && self.pool.as_ref().is_some_and(|p| p.joins_fill_it());
            let mut way = crate::parts::after_running_out(crate::parts::RanOut {
                attempt,
                ways,
                joins_filled,
                parts: can_cut.then_some(count),
                doubled,
            });
            if way == crate::parts::NextWay::MoreParts {
                let more = self.parts_at_least(model, count * 2).await?;
                let more_count = more.as_ref().map_or(1, crate::parts::Parts::count) as u64;
                if more_count > count {
                    tracing::warn!(
                        query = what,
                        memory_limit_mb = self.memory_limit_mb,
                        error = %e,
                        "out of memory in {count} part(s): running it again in {more_count}"
                    );
                    doubled += 1;
                    parts = more;
                    log_parts(&parts);
                    continue;
                }
                // A key with too few values to cut finer: the slower ways follow.
                way = crate::parts::after_running_out(crate::parts::RanOut {
                    attempt,
                    ways,
                    joins_filled,
                    parts: None,
                    doubled,
                });
            }
            let crate::parts::NextWay::Attempt(next) = way else {
                return Err(e);
            };
            tracing::warn!(
                query = what,
                parts = count,
                memory_limit_mb = self.memory_limit_mb,
                error = %e,
                "out of memory: running it again with {}",
                way_named(next, joins_filled)
            );
            attempt = next;
        }
    }

    /// The job's `memory_limit_mb`, if any.
    pub fn memory_limit_mb(&self) -> Option<u64> {
        self.memory_limit_mb
    }

    /// At most how many keyed input rows a part of a query run in parts by `key` reads: the
    /// job's `model_part_rows`, else the key's own rows per MiB (its declaration's) or
    /// [`crate::parts::ROWS_PER_POOL_MIB`], per MiB of the memory limit; `None` (no limit, no
    /// setting): one piece.
    pub fn part_rows(&self, key: &crate::parts::PartsKey) -> Option<u64> {
        self.model_part_rows.or_else(|| {
            let per_mib = key.rows_per_mib.unwrap_or(crate::parts::ROWS_PER_POOL_MIB);
            self.memory_limit_mb
                .map(|mb| mb.max(1).saturating_mul(per_mib))
        })
    }

    /// The session numbered `attempt` of [`Engine::attempts`] runs in: the engine's own, or one
    /// like it with a fair memory pool of the same size and, from attempt 2, sort-merge joins.
    pub(crate) fn session(&self, attempt: usize) -> Result<SessionContext> {
        if attempt == 0 {
            return Ok(self.ctx.clone());
        }
        let bytes = self.memory_limit_mb.map_or(usize::MAX, pool_bytes);
        let mut state = self.ctx.state();
        if attempt >= 2 {
            state.config_mut().options_mut().optimizer.prefer_hash_join = false;
        }
        let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
            .with_memory_pool(Arc::new(RepartitionsGranted::new(Arc::new(
                TrackConsumersPool::new(FairSpillPool::new(bytes), NAMED_CONSUMERS),
            ))))
            .build_arc()
            .map_err(|e| Error::Config(e.to_string()))?;
        let state = SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(runtime)
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    pub(crate) async fn materialise_in(
        &self,
        what: &str,
        sql: &str,
        staged: &str,
        published: &str,
        parts: Option<&crate::parts::Parts>,
        attempt: usize,
    ) -> Result<WrittenFile> {
        let err = |source| query_error(what, source, self.memory_limit_mb, attempt);
        let mut writer = None;
        let mut schema = None;
        for index in 0..parts.map_or(1, crate::parts::Parts::count) {
            let ctx = match parts {
                Some(parts) => self.part_session(attempt, parts, index).await?,
                None => self.session(attempt)?,
            };
            let df = ctx.sql(sql).await.map_err(err)?;
            let schema = schema
                .get_or_insert_with(|| normalised_schema(df.schema().as_arrow()))
                .clone();
            let writer = match &mut writer {
                Some(w) => w,
                None => writer.insert(self.warehouse.parquet_writer(staged, Arc::clone(&schema))?),
            };
            let mut stream = df.execute_stream().await.map_err(err)?;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(err)?;
                let batch = normalise_batch(&batch, &schema).map_err(err)?;
                writer.write(&batch).await?;
            }
            if let Some(parts) = parts {
                tracing::debug!(
                    query = what,
                    part = index + 1,
                    of = parts.count(),
                    "part written"
                );
            }
        }
        let writer = writer.ok_or_else(|| Error::Config(format!("{what}: no part ran")))?;
        Ok(writer.finish(published).await?)
    }
}

/// The committed Parquet files of `layer/table` in `snapshot`, each with the as-of date its
/// partition is named by (`as_of=<date>`, as written): (date, physical file).
fn committed_partitions(snapshot: &Snapshot, layer: &str, table: &str) -> Vec<(String, String)> {
    let prefix = format!("{layer}/{table}/as_of=");
    snapshot
        .under(&prefix)
        .filter(|(logical, _)| logical.ends_with(".parquet"))
        .filter_map(|(logical, physical)| {
            let date = logical.strip_prefix(&prefix)?.split('/').next()?;
            Some((date.to_string(), physical.to_string()))
        })
        .collect()
}

/// The share of `memory_limit_mb`, in percent, that the query engine's memory pool gets. The
/// process holds more than its pool: Parquet readers' and writers' row groups, the batches
/// between operators, a hash join's build side while it is concatenated, the values of text
/// aggregates, the allocator's free pages. With the pool the whole limit, the operators that
/// spill filled it before spilling, and at 10,000,000 persons the consolidate step peaked at
/// 5,759 MiB under a limit of 4,096; with 60% its models stayed within (docs/performance.md).
pub const POOL_PERCENT: u64 = 60;

/// The memory pool's size in bytes for a limit in MiB: [`POOL_PERCENT`] of it.
pub fn pool_bytes(mb: u64) -> usize {
    let bytes = u128::from(mb) * 1024 * 1024 * u128::from(POOL_PERCENT) / 100;
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// How the log names way `next` of [`Engine::attempts`] that a query which ran out of memory runs
/// with next (`joins_filled`: its hash joins' build sides held two thirds of the greedy pool).
fn way_named(next: usize, joins_filled: bool) -> &'static str {
    match (next, joins_filled) {
        (0 | 1, _) => "a fair memory pool",
        (_, false) => "a fair pool and sort-merge joins, which spill",
        (_, true) => {
            "a fair pool and sort-merge joins, which spill (its hash joins' build sides held two thirds of the pool or more, which no pool can spill)"
        }
    }
}

/// What [`Error::OutOfMemory`] says was tried besides the first way of running the query.
pub(crate) fn attempts_tried(attempt: usize) -> &'static str {
    match attempt {
        0 => "",
        1 => "; it also ran again with a fair memory pool",
        _ => "; it also ran again with a fair memory pool and with sort-merge joins, which spill",
    }
}

/// A query's failure: [`Error::OutOfMemory`] (which says which setting to raise) when a memory
/// limit is set and the pool had no more to give, else [`Error::Execution`].
pub(crate) fn query_error(
    what: &str,
    source: DataFusionError,
    memory_limit_mb: Option<u64>,
    attempt: usize,
) -> Error {
    match memory_limit_mb {
        Some(limit_mb) if matches!(source.find_root(), DataFusionError::ResourcesExhausted(_)) => {
            Error::OutOfMemory {
                what: what.to_string(),
                limit_mb,
                attempt,
                source,
            }
        }
        _ => Error::Execution {
            what: what.to_string(),
            source,
        },
    }
}

fn plain_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::Dictionary(_, v) => plain_type(v),
        DataType::Timestamp(_, _) => {
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
        }
        other => other.clone(),
    }
}

fn normalised_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), plain_type(f.data_type()), f.is_nullable()))
        .collect();
    Arc::new(Schema::new(fields))
}

/// Casts a batch to plain types that every Parquet reader knows: UTF-8 strings (not views or
/// dictionaries) and timestamps in microseconds labelled UTC.
pub fn normalise_batch(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> std::result::Result<RecordBatch, DataFusionError> {
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (col, field) in batch.columns().iter().zip(schema.fields()) {
        if col.data_type() == field.data_type() {
            columns.push(Arc::clone(col));
        } else {
            columns.push(cast(col, field.data_type())?);
        }
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow::array::AsArray;

    /// A warehouse in a new directory (kept while it lives) and the as-of date 2025-12-31.
    pub(crate) fn temp_warehouse() -> Result<(tempfile::TempDir, Warehouse, NaiveDate)> {
        let dir = tempfile::tempdir().map_err(|e| Error::Io {
            path: "tmp".into(),
            source: e,
        })?;
        let wh = Warehouse::open("wh", dir.path())?;
        Ok((
            dir,
            wh,
            NaiveDate::from_ymd_opt(2025, 12, 31).unwrap_or_default(),
        ))
    }

    /// Two partitions and a memory limit of `mb` MiB.
    pub(crate) fn limited(mb: u64) -> EngineOptions {
        EngineOptions {
            target_partitions: 2,
            memory_limit_mb: Some(mb),
            ..EngineOptions::default()
        }
    }

    #[tokio::test]
    async fn models_see_the_as_of_date_and_outputs_round_trip() -> Result<()> {
        let (_dir, wh, as_of) = temp_warehouse()?;
        let engine = Engine::new(&wh, as_of, &limited(256))?;
        let written = engine
            .materialise(
                "t",
                "select as_of_date() as d, arrow_cast('x', 'Utf8View') as s, now() - now() as zero from (values (1),(2)) v(a)",
                "_staging/r/marts/t/as_of=2025-12-31/part-0.parquet",
                "marts/t/as_of=2025-12-31/part-0.parquet",
            )
            .await?;
        assert_eq!(written.rows, 2);
        engine
            .register_file("t", "_staging/r/marts/t/as_of=2025-12-31/part-0.parquet")
            .await?;
        let batches = engine
            .collect("read", "select cast(d as varchar) as d, s from t limit 1")
            .await?;
        let d = batches[0].column(0).as_string::<i32>().value(0).to_string();
        assert_eq!(d, "2025-12-31");
        assert_eq!(batches[0].schema().field(1).data_type(), &DataType::Utf8);
        Ok(())
    }

    /// A grouped count of distinct values on two partitions under a pool a few MiB small (the
    /// query of apache/datafusion#24883): DataFusion 55's repartition, refused memory, spilled its
    /// batches to files that could leave the query waiting for good. Each try must end, with the
    /// rows or an out-of-memory error, within its minute.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_repartition_under_a_small_pool_never_leaves_the_query_waiting() -> Result<()> {
        let (_dir, wh, as_of) = temp_warehouse()?;
        let engine = Engine::new(&wh, as_of, &limited(3))?;
        let sql = "select g, count(distinct trace_id) as n from ( \
             select value % 13 as g, md5(cast(value % 33700 as varchar)) as trace_id \
             from range(0, 400000)) group by g";
        // Without the grant the first try waited for good (checked when this was written).
        for attempt in 0..4 {
            let done = tokio::time::timeout(
                std::time::Duration::from_secs(60),
                engine.collect("distinct", sql),
            )
            .await;
            match done {
                Err(_) => panic!("try {attempt} did not end within a minute"),
                Ok(Ok(batches)) => {
                    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                    assert_eq!(rows, 13);
                }
                Ok(Err(Error::OutOfMemory { .. })) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// A join whose hash table is larger than the pool of [`LIMIT`] (it fits in 96 MiB) while its
    /// sort-merge plan fits in 48 MiB: 1,200,000 keys, each with a name of about 45 bytes.
    const BIG_JOIN: &str = "with a as (select value % 1200000 as k, \
         concat('customer-', cast(value as varchar), '-with-a-name-long-enough') as name \
         from range(0, 1200000)), \
         b as (select (value * 7919) % 1200000 as k, value as amount from range(0, 1200000)) \
         select a.k, a.name, b.amount from a join b on a.k = b.k order by a.k";

    /// A memory limit whose pool ([`POOL_PERCENT`] of it) is 64 MiB.
    const LIMIT: u64 = 107;

    #[tokio::test]
    async fn a_model_that_runs_out_of_memory_with_hash_joins_runs_again_with_sort_merge_joins()
    -> Result<()> {
        let (_dir, wh, as_of) = temp_warehouse()?;
        let staged = "_staging/r/marts/t/as_of=2025-12-31/part-0.parquet";
        let published = "marts/t/as_of=2025-12-31/part-0.parquet";
        let unbounded = Engine::new(&wh, as_of, &EngineOptions::default())?
            .materialise("t", BIG_JOIN, staged, published)
            .await?;
        assert_eq!(unbounded.rows, 1_200_000);

        let engine = Engine::new(&wh, as_of, &limited(LIMIT))?;
        // Run the first way (the greedy pool, hash joins), the query does not fit ...
        let mut first = engine.stream("the join", BIG_JOIN).await?;
        let mut outcome = Ok(0);
        while let Some(batch) = first.next().await {
            match batch {
                Ok(b) => outcome = outcome.map(|rows| rows + b.num_rows()),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        drop(first);
        match outcome {
            Err(Error::OutOfMemory {
                limit_mb: LIMIT,
                attempt: 0,
                ..
            }) => {}
            other => panic!("expected the hash join to run out of {LIMIT} MiB, got {other:?}"),
        }
        // ... its hash join's build side held the pool, which no pool can spill, so it runs
        // again with sort-merge joins without trying a fair pool first ...
        let tried = std::cell::RefCell::new(Vec::new());
        let rows = engine
            .run_attempts("the join", Error::is_out_of_memory, |attempt| {
                let tried = &tried;
                let engine = &engine;
                async move {
                    tried.borrow_mut().push(attempt);
                    let mut stream = engine.stream_attempt("the join", BIG_JOIN, attempt).await?;
                    let mut rows = 0;
                    while let Some(batch) = stream.next().await {
                        rows += batch?.num_rows();
                    }
                    Ok::<_, Error>(rows)
                }
            })
            .await?;
        assert_eq!(rows, 1_200_000);
        assert_eq!(*tried.borrow(), [0, 2]);
        // ... a model runs again the same way, to the same file ...
        let spilled = engine.materialise("t", BIG_JOIN, staged, published).await?;
        assert_eq!(spilled.rows, 1_200_000);
        assert_eq!(spilled.sha256, unbounded.sha256);
        // ... and so does a held one.
        let held = engine.hold("the join", BIG_JOIN).await?;
        assert_eq!(held.rows(), 1_200_000);
        drop(held);
        // ... and so does a collected query.
        let collected = engine.collect("the join", BIG_JOIN).await?;
        let rows: usize = collected.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 1_200_000);

        // Below what even a spilling sort needs, the error names the model and the setting.
        let tiny = Engine::new(&wh, as_of, &limited(1))?;
        let err = tiny
            .materialise(
                "model 'big_join' (big_join.sql)",
                BIG_JOIN,
                staged,
                published,
            )
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with(
                "model 'big_join' (big_join.sql) needs more memory than memory_limit_mb = 1"
            ) && err.contains("ran again with a fair memory pool and with sort-merge joins")
                && err.contains("raise memory_limit_mb"),
            "{err}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_held_query_is_a_table_until_dropped_and_then_leaves_nothing_behind() -> Result<()> {
        let (_dir, wh, as_of) = temp_warehouse()?;
        let engine = Engine::new(&wh, as_of, &limited(256))?;
        let numbers =
            "select v as n, cast(v * 10 as varchar) as s from (values (3), (1), (2)) t(v)";
        let held = engine.hold("the numbers", numbers).await?;
        let other = engine.hold("the numbers again", numbers).await?;
        assert_eq!((held.rows(), other.rows()), (3, 3));
        assert_ne!(held.name(), other.name());
        assert!(held.file().is_file());
        // Read twice by one query, it gives what the query gives.
        let name = held.name();
        let sql = format!(
            "with h as (select * from {name}) \
             select sum(a.n) as total, max(b.s) as top from h a cross join h b"
        );
        let batches = engine.collect("the sums", &sql).await?;
        let row = batches.first().filter(|b| b.num_rows() == 1);
        let total = row.and_then(|b| {
            b.column(0)
                .as_primitive_opt::<arrow::datatypes::Int64Type>()
        });
        let top = row.and_then(|b| b.column(1).as_string_opt::<i32>());
        assert_eq!(total.map(|t| t.value(0)), Some(18));
        assert_eq!(top.map(|t| t.value(0)), Some("30"));
        // Dropped, its table and its file are gone; the other is still read.
        let (name, file) = (name.to_string(), held.file().to_path_buf());
        drop(held);
        assert!(!file.exists());
        assert!(
            engine
                .collect("the dropped table", &format!("select * from {name}"))
                .await
                .is_err()
        );
        let rows = engine
            .collect("the other", &format!("select * from {}", other.name()))
            .await?;
        assert_eq!(rows.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
        Ok(())
    }

    #[test]
    fn held_directories_left_by_killed_runs_go_once_stale_and_no_others() -> Result<()> {
        let temp = tempfile::tempdir().map_err(|source| Error::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        let io = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let day = std::time::Duration::from_secs(24 * 3600);
        let make = |name: &str, age: std::time::Duration| -> Result<std::path::PathBuf> {
            let dir = temp.path().join(name);
            std::fs::create_dir(&dir).map_err(io(&dir))?;
            let file = dir.join("attempt-0.parquet");
            std::fs::write(&file, b"PAR1").map_err(io(&file))?;
            let changed = std::time::SystemTime::now() - age;
            std::fs::File::open(&dir)
                .and_then(|d| d.set_modified(changed))
                .map_err(io(&dir))?;
            Ok(dir)
        };
        let stale = make(&format!("{HELD_DIR_PREFIX}stale"), 2 * day)?;
        let young = make(&format!("{HELD_DIR_PREFIX}young"), day / 24)?;
        let other = make("datafusion-stale", 2 * day)?;
        let file = temp.path().join(format!("{HELD_DIR_PREFIX}a-file"));
        std::fs::write(&file, b"not ours to judge").map_err(io(&file))?;
        let removed = remove_stale_held(temp.path(), day / 4);
        assert_eq!(removed, vec![stale.clone()]);
        assert!(!stale.exists());
        assert!(young.join("attempt-0.parquet").is_file());
        assert!(other.is_dir() && file.is_file());
        // A missing temporary directory removes nothing and does not fail.
        assert!(remove_stale_held(&temp.path().join("missing"), day).is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn models_read_the_jobs_trust_order_and_reporting_currency() -> Result<()> {
        let (_dir, wh, as_of) = temp_warehouse()?;
        let opts = EngineOptions {
            source_trust: vec!["pos".into(), "shop".into()],
            reporting_currency: Some("NZD".into()),
            ..EngineOptions::default()
        };
        let engine = Engine::new(&wh, as_of, &opts)?;
        let batches = engine
            .collect(
                "q",
                "select s, source_trust_rank(s) as r, reporting_currency() as c \
                 from (values ('shop'), ('pos'), ('loyalty'), (null)) v(s) order by r, s",
            )
            .await?;
        let ranks: Vec<i32> = batches[0]
            .column(1)
            .as_primitive::<arrow::datatypes::Int32Type>()
            .values()
            .to_vec();
        assert_eq!(ranks, [0, 1, 2, 2]);
        assert_eq!(batches[0].column(2).as_string::<i32>().value(0), "NZD");
        assert_eq!(
            batches[0].column(0).as_string::<i32>().value(2),
            "loyalty",
            "an unlisted source ranks after the listed ones"
        );
        // Without declarations: every source ranks alike and the currency is NULL.
        let plain = Engine::new(&wh, as_of, &EngineOptions::default())?;
        let batches = plain
            .collect(
                "q",
                "select source_trust_rank('crm') as r, reporting_currency() as c",
            )
            .await?;
        assert_eq!(
            batches[0]
                .column(0)
                .as_primitive::<arrow::datatypes::Int32Type>()
                .value(0),
            0
        );
        assert!(batches[0].column(1).is_null(0));
        Ok(())
    }

    #[tokio::test]
    async fn published_tables_carry_their_as_of_partition() -> Result<()> {
        let (_dir, wh, as_of) = temp_warehouse()?;
        let engine = Engine::new(&wh, as_of, &EngineOptions::default())?;
        for day in ["2025-12-30", "2025-12-31"] {
            let path = format!("raw/src/as_of={day}/part-0.parquet");
            engine
                .materialise("t", "select 1 as a", &path, &path)
                .await?;
        }
        let fresh = Engine::new(&wh, as_of, &EngineOptions::default())?;
        let tables = fresh.register_published().await?;
        assert_eq!(tables, vec![("raw.src".to_string(), "raw/src".to_string())]);
        let batches = fresh
            .collect(
                "q",
                "select count(*) as n, cast(max(as_of) as varchar) as m from raw.src",
            )
            .await?;
        assert_eq!(
            batches[0]
                .column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            2
        );
        assert_eq!(
            batches[0].column(1).as_string::<i32>().value(0),
            "2025-12-31"
        );
        Ok(())
    }
}
