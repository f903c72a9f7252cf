//! Running a model in parts by a key, so that what its query holds at once (hash tables, sorts
//! that could not spill, the merges of sorted runs) grows with a part rather than with the whole
//! customer base.
//!
//! A model declares that it can run in parts with a comment line beside its data tests:
//!
//! ```sql
//! -- parts: dim_customer.customer_id
//! ```
//!
//! It promises that every row it returns is made from rows of one value of the column (here
//! `customer_id`) in each table it reads that has that column, together with any rows of the tables
//! that do not have it: each part reads the first kind filtered to a range of the key and the second
//! kind whole. Rows whose key is null are read by no part. The table named (`dim_customer`) gives
//! the ranges: its key values, sorted, cut into parts of about equal size. The parts run one after
//! another in the order of their ranges and their rows are written one after another into the one
//! file, so a model that orders its rows by the key writes them in the same order as it would in
//! one piece.
//!
//! Under a memory limit, a model runs in as many parts as its keyed input rows need at
//! [`ROWS_PER_POOL_MIB`] per MiB of the limit, or at the job's `model_part_rows` when it sets it
//! (without either, or when one part is enough, it runs in one piece, as a model without the
//! declaration always does). When it still runs out of memory, it runs again with a fair pool or
//! in twice as many parts, as [`after_running_out`] says ([`Engine::materialise_model`]).

use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider,
};
use datafusion::logical_expr::{Expr, ident, lit};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::models::Model;

/// Rows of a model's keyed inputs one part may read per MiB of `memory_limit_mb`: at 4,096 MiB,
/// 20.5 million. What a row costs differs by model: at 1,000,000 persons under 410 MiB (the
/// rows per MiB of 10,000,000 persons under 4,096), the customer view ran in 5 parts of 3.6 M
/// keyed rows, `int_customer_records__matched` and `int_customer_consent` needed 2 parts of
/// 1.45 M and `dim_customer` 3 parts of 0.97 M (docs/performance.md#models-in-parts). This runs
/// the first three without a retry and leaves the others to [`MORE_PARTS_TRIES`]; at 1,000,000
/// persons under the demo's 4,096 MiB every model runs in one piece (the customer view reads
/// 18.2 M keyed rows).
pub const ROWS_PER_POOL_MIB: u64 = 5_000;

/// At most this many parts: beyond it, a model's key ranges are read so many times that the
/// limit should rather be raised.
pub const MAX_PARTS: u64 = 256;

/// How many times a model in parts that runs out of memory runs again in twice as many parts
/// (the way it ran) before sort-merge joins ([`after_running_out`]): a model's rows per MiB
/// differ by model (the customer view's fit 8,900 a MiB of the pool at 1,000,000 persons,
/// `dim_customer`'s 2,400), so the first count is an estimate.
pub const MORE_PARTS_TRIES: usize = 2;

/// About how many key values [`Engine::parts`] samples to cut the key into parts.
pub const SAMPLE_ROWS: u64 = 1 << 16;

/// A model's `-- parts: <table>.<column>[, <n> rows per MiB]` declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartsKey {
    /// The table whose key values give the parts' ranges (one the query reads).
    pub table: String,
    /// The key column.
    pub column: String,
    /// 1-based line of the declaration in the model file.
    pub line: usize,
    /// The keyed rows a part may read per MiB of the memory limit, when the model says
    /// (measured for it: a model that holds much per row outside the pool, as `dim_customer`'s
    /// text picks are, needs fewer); [`ROWS_PER_POOL_MIB`] otherwise.
    pub rows_per_mib: Option<u64>,
}

/// Finds the `-- parts:` line of a model file: `Ok(None)` when it has none, `Err((line, why))`
/// when it is malformed or there are two.
pub fn parse_parts(sql: &str) -> std::result::Result<Option<PartsKey>, (usize, String)> {
    let mut found: Option<PartsKey> = None;
    for (i, line) in sql.lines().enumerate() {
        let Some(comment) = line.trim().strip_prefix("--") else {
            continue;
        };
        let Some(text) = comment.trim().strip_prefix("parts:") else {
            continue;
        };
        let line = i + 1;
        if let Some(first) = &found {
            return Err((
                line,
                format!("a second 'parts:' line (the first is line {})", first.line),
            ));
        }
        let text = text.trim();
        let (key, density) = match text.split_once(',') {
            Some((key, density)) => (key.trim(), Some(density.trim())),
            None => (text, None),
        };
        let rows_per_mib = match density {
            None => None,
            Some(density) => {
                let n = density
                    .strip_suffix("rows per MiB")
                    .map(|n| n.trim().replace('_', ""))
                    .and_then(|n| n.parse::<u64>().ok())
                    .filter(|&n| n > 0);
                match n {
                    Some(n) => Some(n),
                    None => {
                        return Err((
                            line,
                            format!(
                                "'parts: {text}': after the key, say how many keyed rows a part may read per MiB of the memory limit: parts: <table>.<column>, <n> rows per MiB (n above 0)"
                            ),
                        ));
                    }
                }
            }
        };
        let Some((table, column)) = key.rsplit_once('.') else {
            return Err((
                line,
                format!(
                    "'parts: {text}' should name a table and its key column: parts: <table>.<column>"
                ),
            ));
        };
        let is_name = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !table.split('.').all(is_name) || !is_name(column) {
            return Err((
                line,
                format!("'parts: {text}': the table and column must be lower_snake_case names"),
            ));
        }
        found = Some(PartsKey {
            table: table.to_string(),
            column: column.to_string(),
            line,
            rows_per_mib,
        });
    }
    Ok(found)
}

/// Why a query cannot run in parts by a key ([`Engine::query_parts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryPartsProblem {
    /// The query's tables could not be read from its text.
    Reads(String),
    /// The query reads no table of the key's name with the key column.
    NoKeyTable,
}

/// The parts one run of a model is cut into: ranges of its key, ascending.
#[derive(Debug, Clone)]
pub struct Parts {
    column: String,
    /// The tables the query reads that have the key column: each part reads them filtered.
    tables: Vec<String>,
    /// The first key value of each part after the first (ascending, distinct).
    bounds: Vec<ScalarValue>,
    /// Rows of the keyed tables, all parts together.
    keyed_rows: u64,
}

impl Parts {
    /// How many parts.
    pub fn count(&self) -> usize {
        self.bounds.len() + 1
    }

    /// The tables each part reads filtered to its range.
    pub fn keyed_tables(&self) -> &[String] {
        &self.tables
    }

    /// Rows of the keyed tables, all parts together.
    pub fn keyed_rows(&self) -> u64 {
        self.keyed_rows
    }

    /// The rows of part `index` of a keyed table ([`key_range`]).
    fn predicate(&self, index: usize) -> Expr {
        key_range(&self.column, &self.bounds, index)
    }
}

/// The rows of part `index` of the parts `bounds` cut `column` into (the first value of each part
/// after the first, ascending): the column at or above the part's first value and below the next
/// part's (so never null).
pub(crate) fn key_range(column: &str, bounds: &[ScalarValue], index: usize) -> Expr {
    let key = || ident(column);
    let lower = index
        .checked_sub(1)
        .and_then(|i| bounds.get(i))
        .map(|b| key().gt_eq(lit(b.clone())));
    let upper = bounds.get(index).map(|b| key().lt(lit(b.clone())));
    match (lower, upper) {
        (Some(l), Some(u)) => l.and(u),
        (Some(l), None) => l,
        (None, Some(u)) => u,
        (None, None) => key().is_not_null(),
    }
}

/// How a model that ran out of memory ran ([`after_running_out`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RanOut {
    /// The way it ran ([`Engine::attempts`]: 0 the greedy pool, 1 a fair pool, 2 sort-merge
    /// joins).
    pub attempt: usize,
    /// How many ways there are.
    pub ways: usize,
    /// Whether the greedy pool ran out with the hash joins' build sides holding two thirds of it.
    pub joins_filled: bool,
    /// How many parts it ran in, when it may be cut into more (it declares a key and the
    /// engine runs such models in parts); `None` otherwise.
    pub parts: Option<u64>,
    /// How many times it has already been cut into twice as many parts.
    pub doubled: usize,
}

/// What a model that ran out of memory does next ([`after_running_out`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextWay {
    /// Runs again in twice as many parts, the same way.
    MoreParts,
    /// Runs again, in the same parts, the way numbered so.
    Attempt(usize),
    /// Fails: no way is left.
    GiveUp,
}

/// What a model that ran out of memory does next, from what ran out. In parts, with the greedy
/// pool, and not because its hash joins' build sides filled the pool (a sort or an aggregation
/// took it: at ten million persons `int_customer_consent`'s sorts, which a fair pool shares out),
/// it runs in the same parts with a fair pool. Otherwise it runs in twice as many parts, the same
/// way (what a part holds in build sides and sorts shrinks with it), up to [`MORE_PARTS_TRIES`]
/// times and [`MAX_PARTS`]; then the next way, straight to sort-merge joins when the build
/// sides filled the greedy pool (no pool can make them spill).
pub fn after_running_out(ran: RanOut) -> NextWay {
    if let Some(count) = ran.parts {
        if ran.attempt == 0 && !ran.joins_filled && ran.ways > 1 && count > 1 {
            return NextWay::Attempt(1);
        }
        if ran.doubled < MORE_PARTS_TRIES && count.saturating_mul(2) <= MAX_PARTS {
            return NextWay::MoreParts;
        }
    }
    let next = if ran.attempt == 0 && ran.joins_filled && ran.ways == 3 {
        2
    } else {
        ran.attempt + 1
    };
    if next < ran.ways {
        NextWay::Attempt(next)
    } else {
        NextWay::GiveUp
    }
}

/// The number of parts for `keyed_rows` input rows at most `part_rows` a part.
pub fn parts_for(keyed_rows: u64, part_rows: u64) -> u64 {
    keyed_rows.div_ceil(part_rows.max(1)).clamp(1, MAX_PARTS)
}

impl Engine {
    /// The parts `model` runs in this time: `None` (one piece) when it declares no key, there
    /// is neither a memory limit nor `model_part_rows` ([`Engine::part_rows`]), or one part
    /// is enough ([`parts_for`]).
    pub async fn parts(&self, model: &Model) -> Result<Option<Parts>> {
        self.parts_at_least(model, 1).await
    }

    /// [`Engine::parts`], in at least `at_least` parts (fewer only where the key has too few
    /// values to cut, or beyond [`MAX_PARTS`]).
    pub async fn parts_at_least(&self, model: &Model, at_least: u64) -> Result<Option<Parts>> {
        let Some(key) = &model.parts else {
            return Ok(None);
        };
        let bad = |reason: String| Error::BadModel {
            path: model.path.clone(),
            reason,
        };
        let what = format!("model '{}' ({})", model.name, model.path.display());
        match self.query_parts(&what, &model.sql, key, at_least).await? {
            Ok(parts) => Ok(parts),
            Err(QueryPartsProblem::Reads(reason)) => Err(bad(reason)),
            Err(QueryPartsProblem::NoKeyTable) => Err(bad(format!(
                "line {}: 'parts: {}.{}': the query does not read a table '{}' with a column '{}'",
                key.line, key.table, key.column, key.table, key.column
            ))),
        }
    }

    /// The parts the query `sql` (`what`, for errors) runs in by `key`, as [`Engine::parts`]
    /// gives a model's: `Ok(None)` (one piece) without a memory limit or `model_part_rows`, or
    /// when one part is enough; at least `at_least` parts otherwise. The inner error: the query
    /// cannot be read for its tables, or reads no table `key.table` with the key column.
    pub async fn query_parts(
        &self,
        what: &str,
        sql: &str,
        key: &PartsKey,
        at_least: u64,
    ) -> Result<std::result::Result<Option<Parts>, QueryPartsProblem>> {
        let Some(part_rows) = self.part_rows(key) else {
            return Ok(Ok(None));
        };
        let reads = match crate::models::parse_reads(sql) {
            Ok(reads) => reads,
            Err(reason) => return Ok(Err(QueryPartsProblem::Reads(reason))),
        };
        let what = |doing: &str| format!("{doing} of {what}");
        let mut tables = Vec::new();
        let mut keyed_rows = 0;
        for table in reads {
            let provider = self
                .context()
                .table_provider(table.as_str())
                .await
                .map_err(|source| Error::Execution {
                    what: what(&format!("reading the columns of '{table}' for the parts")),
                    source,
                })?;
            if provider.schema().column_with_name(&key.column).is_none() {
                continue;
            }
            keyed_rows += self
                .count_rows(
                    &what("counting the keyed rows"),
                    &format!("select count(*) from {table}"),
                )
                .await?;
            tables.push(table);
        }
        if !tables.contains(&key.table) {
            return Ok(Err(QueryPartsProblem::NoKeyTable));
        }
        let count = parts_for(keyed_rows, part_rows)
            .max(at_least)
            .min(MAX_PARTS);
        if count < 2 {
            return Ok(Ok(None));
        }
        let bounds = self
            .bounds(&what("cutting the key into parts"), key, count)
            .await?;
        if bounds.is_empty() {
            return Ok(Ok(None));
        }
        Ok(Ok(Some(Parts {
            column: key.column.clone(),
            tables,
            bounds,
            keyed_rows,
        })))
    }

    /// The one number a `select count(...)` query returns.
    pub(crate) async fn count_rows(&self, what: &str, sql: &str) -> Result<u64> {
        Ok(counted(&self.collect(what, sql).await?))
    }

    /// The first key value of each part after the first: the values at every `1/count` of a
    /// sample of the key's non-null values, sorted, without repeats (a value is never split
    /// between parts). The sample is the rows whose key hashes (with a fixed seed) to a multiple
    /// of a stride that leaves about [`SAMPLE_ROWS`]: the same set of values whatever order the
    /// table is read in, so the same inputs give the same parts, and rows with one key value are
    /// in it or out of it together, so a frequent value weighs as much as its rows.
    pub(crate) async fn bounds(
        &self,
        what: &str,
        key: &PartsKey,
        count: u64,
    ) -> Result<Vec<ScalarValue>> {
        use datafusion::arrow::array::{Array, ArrayRef, BooleanArray};
        use datafusion::arrow::compute;
        let (table, column) = (&key.table, &key.column);
        let arrow_err = |e: datafusion::arrow::error::ArrowError| Error::Execution {
            what: what.to_string(),
            source: e.into(),
        };
        let values = self
            .count_rows(what, &format!("select count({column}) from {table}"))
            .await?;
        let stride = (values / SAMPLE_ROWS).max(1);
        let mut sampled: Vec<ArrayRef> = Vec::new();
        let mut hashes = Vec::new();
        let mut stream = self
            .stream(
                what,
                &format!("select {column} from {table} where {column} is not null"),
            )
            .await?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let keys = batch.column(0);
            hashes.clear();
            hashes.resize(keys.len(), 0);
            datafusion::common::hash_utils::create_hashes_with_hasher(
                [keys],
                &datafusion::common::hash_utils::HLL_RANDOM_STATE,
                &mut hashes,
            )
            .map_err(|source| Error::Execution {
                what: what.to_string(),
                source,
            })?;
            let keep: BooleanArray = hashes.iter().map(|h| Some(h % stride == 0)).collect();
            sampled.push(compute::filter(keys, &keep).map_err(arrow_err)?);
        }
        let arrays: Vec<&dyn Array> = sampled.iter().map(AsRef::as_ref).collect();
        if arrays.is_empty() {
            return Ok(Vec::new());
        }
        let sample = compute::concat(&arrays).map_err(arrow_err)?;
        let sample = compute::sort(&sample, None).map_err(arrow_err)?;
        let len = sample.len() as u64;
        if len == 0 {
            return Ok(Vec::new());
        }
        let first = ScalarValue::try_from_array(&sample, 0).map_err(|source| Error::Execution {
            what: what.to_string(),
            source,
        })?;
        let mut bounds: Vec<ScalarValue> = Vec::new();
        for i in 1..count {
            let at = u128::from(len) * u128::from(i) / u128::from(count);
            let value =
                ScalarValue::try_from_array(&sample, usize::try_from(at).unwrap_or(usize::MAX))
                    .map_err(|source| Error::Execution {
                        what: what.to_string(),
                        source,
                    })?;
            // The first value of all is no bound (the first part would hold none of the
            // sample), nor is a value already one.
            if value != first && bounds.last() != Some(&value) {
                bounds.push(value);
            }
        }
        Ok(bounds)
    }

    /// A session like [`Engine::session`]'s for `attempt` in which each keyed table of `parts`
    /// is read filtered to part `index` ([`Engine::filtered_session`]).
    pub(crate) async fn part_session(
        &self,
        attempt: usize,
        parts: &Parts,
        index: usize,
    ) -> Result<SessionContext> {
        let filters: Vec<(String, Expr)> = parts
            .tables
            .iter()
            .map(|table| (table.clone(), parts.predicate(index)))
            .collect();
        self.filtered_session(attempt, &filters).await
    }

    /// A session like [`Engine::session`]'s for `attempt` in which each table of `filters` is
    /// read filtered by its expression: the catalog is a copy (the same tables, so nothing is
    /// read again) with those tables replaced by filtered views. Without filters, the session
    /// itself.
    pub(crate) async fn filtered_session(
        &self,
        attempt: usize,
        filters: &[(String, Expr)],
    ) -> Result<SessionContext> {
        let config = |e: datafusion::error::DataFusionError| Error::Config(e.to_string());
        let base = self.session(attempt)?;
        if filters.is_empty() {
            return Ok(base);
        }
        let catalogs = Arc::new(MemoryCatalogProviderList::new());
        for catalog_name in base.catalog_names() {
            let Some(catalog) = base.catalog(&catalog_name) else {
                continue;
            };
            let copy = Arc::new(MemoryCatalogProvider::new());
            for schema_name in catalog.schema_names() {
                if schema_name == "information_schema" {
                    continue;
                }
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                let tables = Arc::new(MemorySchemaProvider::new());
                for table in schema.table_names() {
                    if let Some(provider) = schema.table(&table).await.map_err(config)? {
                        datafusion::catalog::SchemaProvider::register_table(
                            tables.as_ref(),
                            table,
                            provider,
                        )
                        .map_err(config)?;
                    }
                }
                copy.register_schema(&schema_name, tables).map_err(config)?;
            }
            catalogs.register_catalog(catalog_name, copy);
        }
        let mut state = base.state();
        state.register_catalog_list(catalogs as Arc<dyn CatalogProviderList>);
        let ctx = SessionContext::new_with_state(state);
        for (table, filter) in filters {
            let view = base
                .table(table.as_str())
                .await
                .and_then(|df| df.filter(filter.clone()))
                .map_err(config)?
                .into_view();
            ctx.deregister_table(table.as_str()).map_err(config)?;
            ctx.register_table(table.as_str(), view).map_err(config)?;
        }
        Ok(ctx)
    }
}

/// The number a `select count(...)` query returned (0 when it returned none).
pub(crate) fn counted(batches: &[datafusion::arrow::array::RecordBatch]) -> u64 {
    batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
        })
        .map_or(0, |a| u64::try_from(a.value(0)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::engine::EngineOptions;
    use clientele_store::Warehouse;

    /// Customers `C00000`..`C29999`, 60,000 orders of theirs (two each) and 500 without a
    /// customer, and a table of seven channels without the key, each a staged Parquet file
    /// registered by name.
    async fn tables(engine: &Engine) -> Result<()> {
        let tables = [
            (
                "customers",
                "select concat('C', lpad(cast(value as varchar), 5, '0')) as customer_id, \
                 value % 7 as region from range(0, 30000)",
            ),
            (
                "orders",
                "select case when value < 60000 \
                 then concat('C', lpad(cast((value * 7919) % 30000 as varchar), 5, '0')) end as customer_id, \
                 value % 7 as channel, cast(value % 100 as double) as amount from range(0, 60500)",
            ),
            (
                "channels",
                "select value as channel, concat('channel ', cast(value as varchar)) as label from range(0, 7)",
            ),
        ];
        for (name, sql) in tables {
            let staged = format!("_staging/r/marts/{name}/as_of=2025-12-31/part-0.parquet");
            engine.materialise(name, sql, &staged, &staged).await?;
            engine.register_file(name, &staged).await?;
        }
        Ok(())
    }

    const MODEL: &str = "-- Spend per customer and channel label.\n\
        -- parts: customers.customer_id\n\
        with spend as (\n\
            select o.customer_id, h.label, count(*) as orders, sum(o.amount) as amount\n\
            from orders o join channels h on h.channel = o.channel\n\
            group by o.customer_id, h.label\n\
        )\n\
        select c.customer_id, c.region, s.label, s.orders, s.amount\n\
        from customers c left join spend s on s.customer_id = c.customer_id\n\
        order by c.customer_id, s.label";

    /// An engine on a new warehouse (kept while the directory lives) with [`tables`] in it.
    async fn engine_with_tables(mb: Option<u64>) -> Result<(tempfile::TempDir, Engine)> {
        engine_with_options(mb, None).await
    }

    /// [`engine_with_tables`] with the job's `model_part_rows`.
    async fn engine_with_options(
        mb: Option<u64>,
        model_part_rows: Option<u64>,
    ) -> Result<(tempfile::TempDir, Engine)> {
        let dir = tempfile::tempdir().map_err(|source| Error::Io {
            path: "tmp".into(),
            source,
        })?;
        let wh = Warehouse::open("wh", dir.path())?;
        let as_of = chrono::NaiveDate::from_ymd_opt(2025, 12, 31).unwrap_or_default();
        let opts = EngineOptions {
            target_partitions: 2,
            memory_limit_mb: mb,
            model_part_rows,
            ..EngineOptions::default()
        };
        let engine = Engine::new(&wh, as_of, &opts)?;
        tables(&engine).await?;
        Ok((dir, engine))
    }

    async fn run(
        mb: Option<u64>,
    ) -> Result<(Option<Parts>, Vec<datafusion::arrow::array::RecordBatch>)> {
        let (_dir, engine) = engine_with_tables(mb).await?;
        let model = crate::models::parse_model(
            std::path::Path::new("sql/marts/spend.sql"),
            "marts",
            MODEL.to_string(),
        )?;
        engine.plan_model(&model).await?;
        let parts = engine.parts(&model).await?;
        let staged = "_staging/r/marts/spend/as_of=2025-12-31/part-0.parquet";
        engine
            .materialise_in_parts("spend", &model.sql, staged, staged, parts.as_ref())
            .await?;
        engine.register_file("spend", staged).await?;
        let rows = engine.collect("read", "select * from spend").await?;
        Ok((parts, rows))
    }

    #[tokio::test]
    async fn a_model_in_parts_writes_the_rows_it_writes_in_one_piece() -> Result<()> {
        let (none, whole) = run(None).await?;
        assert!(none.is_none(), "without a limit a model runs in one piece");
        // 30,000 customers and 60,500 orders against 8 MiB at 5,000 rows per MiB: three parts.
        let (parts, cut) = run(Some(8)).await?;
        let parts = parts.unwrap_or_else(|| panic!("an 8 MiB limit cuts 90,500 keyed rows"));
        assert_eq!(parts.count(), 3);
        assert_eq!(parts.keyed_rows(), 90_500);
        assert_eq!(parts.keyed_tables(), ["customers", "orders"]);
        // The bounds are customers' ids at a third and two thirds.
        assert_eq!(
            parts.bounds,
            [ScalarValue::from("C10000"), ScalarValue::from("C20000")]
        );
        let whole = datafusion::arrow::compute::concat_batches(&whole[0].schema(), &whole)
            .map_err(|e| Error::Config(e.to_string()))?;
        let cut = datafusion::arrow::compute::concat_batches(&cut[0].schema(), &cut)
            .map_err(|e| Error::Config(e.to_string()))?;
        // 30,000 customers with two orders each, on two channels (30,000 is not a multiple of
        // 7), in the same order.
        assert_eq!(whole.num_rows(), 60_000);
        assert_eq!(cut, whole);
        Ok(())
    }

    #[test]
    fn what_a_model_that_ran_out_does_next() {
        let ran = |attempt, joins_filled, parts, doubled| RanOut {
            attempt,
            ways: 3,
            joins_filled,
            parts,
            doubled,
        };
        use NextWay::{Attempt, GiveUp, MoreParts};
        // In parts, a sort took the greedy pool: the same parts with a fair pool, then more
        // parts with it, twice, then sort-merge joins, then nothing.
        assert_eq!(after_running_out(ran(0, false, Some(3), 0)), Attempt(1));
        assert_eq!(after_running_out(ran(1, false, Some(3), 0)), MoreParts);
        assert_eq!(after_running_out(ran(1, false, Some(6), 1)), MoreParts);
        assert_eq!(after_running_out(ran(1, false, Some(12), 2)), Attempt(2));
        assert_eq!(after_running_out(ran(2, false, Some(12), 2)), GiveUp);
        // The build sides filled it: more parts the same way, then straight to sort-merge joins.
        assert_eq!(after_running_out(ran(0, true, Some(3), 0)), MoreParts);
        assert_eq!(after_running_out(ran(0, true, Some(12), 2)), Attempt(2));
        // In one piece, a model that may be cut goes to parts first whatever ran out.
        assert_eq!(after_running_out(ran(0, false, Some(1), 0)), MoreParts);
        // No more than MAX_PARTS.
        assert_eq!(after_running_out(ran(1, false, Some(200), 0)), Attempt(2));
        // A query that cannot be cut: the fair pool, then sort-merge joins (straight there when
        // the build sides filled the pool).
        assert_eq!(after_running_out(ran(0, false, None, 0)), Attempt(1));
        assert_eq!(after_running_out(ran(1, false, None, 0)), Attempt(2));
        assert_eq!(after_running_out(ran(0, true, None, 0)), Attempt(2));
        // Without hash joins to give up (the job prefers sort-merge joins): two ways.
        let two = RanOut {
            ways: 2,
            ..ran(1, false, None, 0)
        };
        assert_eq!(after_running_out(two), GiveUp);
    }

    #[tokio::test]
    async fn a_model_that_runs_out_of_memory_in_one_piece_runs_again_in_more_parts() -> Result<()> {
        let (_dir, unlimited) = engine_with_tables(None).await?;
        let model = crate::models::parse_model(
            std::path::Path::new("sql/marts/spend.sql"),
            "marts",
            MODEL.to_string(),
        )?;
        let staged = "_staging/r/marts/spend/as_of=2025-12-31/part-0.parquet";
        unlimited
            .materialise("spend", &model.sql, staged, staged)
            .await?;
        unlimited.register_file("spend", staged).await?;
        let whole = unlimited.collect("read", "select * from spend").await?;
        // The smallest pool in which the model's first way runs out of memory in one piece (its
        // parts set to one piece by model_part_rows) and which holds it in more parts.
        for mb in 1..=32 {
            let Ok((_dir, engine)) = engine_with_options(Some(mb), Some(1_000_000)).await else {
                continue;
            };
            engine.plan_model(&model).await?;
            match engine
                .materialise_in("spend", &model.sql, staged, staged, None, 0)
                .await
            {
                Err(e) if e.is_out_of_memory() => {}
                Err(e) => return Err(e),
                Ok(_) => continue,
            }
            let (_file, parts) = match engine
                .materialise_model("spend", &model, staged, staged)
                .await
            {
                Err(e) if e.is_out_of_memory() => continue,
                other => other?,
            };
            assert!(parts >= 2, "in a {mb} MiB pool: {parts} part(s)");
            engine.register_file("spend", staged).await?;
            let cut = engine.collect("read", "select * from spend").await?;
            let schema = whole[0].schema();
            let concat = |b: &[datafusion::arrow::array::RecordBatch]| {
                datafusion::arrow::compute::concat_batches(&schema, b)
                    .map_err(|e| Error::Config(e.to_string()))
            };
            assert_eq!(concat(&cut)?, concat(&whole)?);
            return Ok(());
        }
        panic!("no pool of 1 to 32 MiB ran the model in more parts after one piece ran out");
    }

    /// The rows `sql` streams in `parts` (or in one piece), printed one a line, sorted.
    async fn read_sorted(engine: &Engine, sql: &str, parts: Option<&Parts>) -> Result<Vec<String>> {
        let mut stream = engine
            .stream_attempt_in_parts("spend", sql, 0, parts)
            .await?;
        let mut rows = Vec::new();
        while let Some(batch) = stream.next().await {
            let shown = datafusion::arrow::util::pretty::pretty_format_batches(&[batch?])
                .map_err(|e| Error::Config(e.to_string()))?
                .to_string();
            rows.extend(
                shown
                    .lines()
                    .filter(|l| l.starts_with("| C"))
                    .map(str::to_string),
            );
        }
        rows.sort();
        Ok(rows)
    }

    #[tokio::test]
    async fn a_query_streamed_in_parts_gives_the_rows_it_gives_in_one_piece() -> Result<()> {
        // No memory limit: model_part_rows alone cuts the 90,500 keyed rows into four parts.
        let (_dir, engine) = engine_with_options(None, Some(25_000)).await?;
        let sql = MODEL.replace("order by c.customer_id, s.label", "");
        let key = PartsKey {
            table: "customers".into(),
            column: "customer_id".into(),
            line: 0,
            rows_per_mib: None,
        };
        let parts = engine
            .query_parts("spend", &sql, &key, 1)
            .await?
            .map_err(|p| Error::Config(format!("{p:?}")))?
            .unwrap_or_else(|| panic!("25,000 rows a part cut 90,500 keyed rows"));
        assert_eq!(parts.count(), 4);
        let whole = read_sorted(&engine, &sql, None).await?;
        assert_eq!(whole.len(), 60_000);
        assert_eq!(read_sorted(&engine, &sql, Some(&parts)).await?, whole);
        // A key table the query does not read is the caller's to report.
        let other = PartsKey {
            table: "channels".into(),
            ..key
        };
        assert_eq!(
            engine.query_parts("spend", &sql, &other, 1).await?.err(),
            Some(QueryPartsProblem::NoKeyTable)
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_model_may_say_how_many_rows_a_part_reads() -> Result<()> {
        let (_dir, engine) = engine_with_tables(Some(8)).await?;
        let model = crate::models::parse_model(
            std::path::Path::new("sql/marts/spend.sql"),
            "marts",
            MODEL.replace(
                "-- parts: customers.customer_id",
                "-- parts: customers.customer_id, 2500 rows per MiB",
            ),
        )?;
        engine.plan_model(&model).await?;
        // 90,500 keyed rows at 2,500 rows per MiB of 8 MiB (20,000 a part) instead of 5,000.
        let parts = engine.parts(&model).await?.map(|p| p.count());
        assert_eq!(parts, Some(5));
        Ok(())
    }

    #[tokio::test]
    async fn a_key_the_table_does_not_have_is_an_error_naming_the_line() -> Result<()> {
        let (_dir, engine) = engine_with_tables(None).await?;
        let model = crate::models::parse_model(
            std::path::Path::new("sql/marts/spend.sql"),
            "marts",
            MODEL.replace("customers.customer_id", "channels.customer_id"),
        )?;
        let err = engine.plan_model(&model).await.err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "sql/marts/spend.sql: line 2: 'parts: channels.customer_id': the table 'channels' has no column 'customer_id'"
            )
        );
        let unread = crate::models::parse_model(
            std::path::Path::new("sql/marts/spend.sql"),
            "marts",
            MODEL.replace("customers.customer_id", "people.customer_id"),
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            unread.as_deref(),
            Some(
                "sql/marts/spend.sql: line 2: 'parts: people.customer_id': the query does not read 'people'"
            )
        );
        Ok(())
    }

    #[test]
    fn the_declaration_names_a_table_and_its_key() {
        let sql = "-- One row per customer.\n-- test: unique(customer_id)\n-- parts: dim_customer.customer_id\nselect 1";
        assert_eq!(
            parse_parts(sql),
            Ok(Some(PartsKey {
                table: "dim_customer".into(),
                column: "customer_id".into(),
                line: 3,
                rows_per_mib: None,
            }))
        );
        // A model may say how many keyed rows a part reads per MiB of the limit.
        assert_eq!(
            parse_parts("-- parts: dim_customer.customer_id, 1_500 rows per MiB\nselect 1")
                .map(|p| p.map(|p| (p.column, p.rows_per_mib))),
            Ok(Some(("customer_id".into(), Some(1_500))))
        );
        for bad in [
            "1500",
            "0 rows per MiB",
            "many rows per MiB",
            "1500 rows per GiB",
        ] {
            let Err((line, why)) = parse_parts(&format!("-- parts: a.b, {bad}\nselect 1")) else {
                panic!("'{bad}' is refused");
            };
            assert_eq!(line, 1);
            assert!(why.contains("<n> rows per MiB"), "{why}");
        }
        assert_eq!(parse_parts("select 1"), Ok(None));
        assert_eq!(
            parse_parts("-- parts: history.customer_view.customer_id\nselect 1")
                .map(|p| p.map(|p| p.table)),
            Ok(Some("history.customer_view".into()))
        );
        let Err((line, why)) = parse_parts("-- a\n-- parts: customer_id\nselect 1") else {
            panic!("a key without a table is refused");
        };
        assert_eq!(line, 2);
        assert!(why.contains("<table>.<column>"), "{why}");
        assert!(parse_parts("-- parts: Dim.Customer\nselect 1").is_err());
        let Err((line, why)) = parse_parts("-- parts: a.b\n-- parts: c.d\nselect 1") else {
            panic!("two declarations are refused");
        };
        assert_eq!(line, 2);
        assert!(why.contains("line 1"), "{why}");
    }

    #[test]
    fn the_parts_grow_with_the_rows_against_the_limit() {
        let at = |mb: u64| mb * ROWS_PER_POOL_MIB;
        assert_eq!(parts_for(20_000_000, at(4_096)), 1);
        assert_eq!(parts_for(40_000_000, at(4_096)), 2);
        assert_eq!(parts_for(41_000_000, at(4_096)), 3);
        assert_eq!(parts_for(200_000_000, at(4_096)), 10);
        assert_eq!(parts_for(200_000_000, at(2_048)), 20);
        assert_eq!(parts_for(0, at(4_096)), 1);
        assert_eq!(parts_for(u64::MAX, 1), MAX_PARTS);
        assert_eq!(parts_for(5, 0), 5);
    }

    #[test]
    fn each_part_reads_its_range_of_the_key_and_no_nulls() {
        let parts = Parts {
            column: "k".into(),
            tables: vec!["t".into()],
            bounds: vec![ScalarValue::from("m"), ScalarValue::from("t")],
            keyed_rows: 0,
        };
        assert_eq!(parts.count(), 3);
        assert_eq!(parts.predicate(0).to_string(), "k < Utf8(\"m\")");
        assert_eq!(
            parts.predicate(1).to_string(),
            "k >= Utf8(\"m\") AND k < Utf8(\"t\")"
        );
        assert_eq!(parts.predicate(2).to_string(), "k >= Utf8(\"t\")");
    }
}
