//! sqllogictest harness for the SQL models in `sql/` (run by `cargo test`, as the `slt` test of
//! clientele-sql).
//!
//! Every `tests/slt/*.slt` file runs in a fresh DataFusion session built by `clientele_sql::Engine`
//! (4 partitions, as-of date 2025-12-31). The files create small `raw.*` tables (usually with
//! `include fixtures/raw.slt.part`) and then say `LOAD MODELS`, which registers every model of the
//! real `sql/` directory, and every segment of `sql/segments/`, as a view over what exists at that
//! point. A model whose inputs all exist must plan (its error fails the file); one with an input
//! the file did not create is left out, and a query naming it reports why. `LOAD MODELS` then runs
//! the data tests (`-- test:` lines) of the file's own model on the file's fixtures. Every
//! model must have a file named after it. The parameterised queries of `sql/queries/` are tested
//! the same way: `LOAD QUERY <name> [AS <view>]` with one `param = value` line per parameter
//! registers the filled query as a view; each has its own file too. `CREATE RUST TABLE <name>`
//! creates an empty table with the real schema of a table another stage writes in Rust
//! (`int_customer_identity`, `int_customer_contacts`, `customer_scores`, `segment_membership`,
//! `suppression_list`), for the fixtures to fill.
//!
//! `cargo test -p clientele-sql --test slt -- --complete` rewrites the expected results in place.

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use clientele_sql::{Engine, EngineOptions, ModelSet};
use clientele_store::Warehouse;
use sqllogictest::{DBOutput, DefaultColumnType};

struct SltDb {
    engine: Engine,
    sql_dir: PathBuf,
    /// Models and segments left out by the last `LOAD MODELS` because they did not plan, with the
    /// planner's error: a query that then fails on one of them reports it.
    unplanned: Vec<(String, String)>,
    /// The file's model (its stem): `LOAD MODELS` runs this model's data tests.
    model: String,
    /// Views from `LOAD QUERY`, registered before the next statement runs.
    pending_views: Vec<(String, String)>,
}

#[derive(Debug)]
struct SltError(String);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SltError {}

/// The package's directory as cargo gives it when it runs the tests (right even when this binary
/// was built from another checkout that shares the target directory, which the compile-time
/// value would name), else as compiled.
fn package_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DefaultColumnType::Integer,
        DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => DefaultColumnType::FloatingPoint,
        _ => DefaultColumnType::Text,
    }
}

fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, SltError> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let fmts: Vec<ArrayFormatter<'_>> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<_, _>>()
            .map_err(|e| SltError(e.to_string()))?;
        for r in 0..b.num_rows() {
            out.push(
                fmts.iter()
                    .map(|f| {
                        let v = f.value(r).to_string();
                        if v.is_empty() {
                            "(empty)".to_string()
                        } else {
                            v
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(out)
}

impl SltDb {
    /// Registers every model and segment as a view over the tables this file has created. One
    /// whose inputs all exist must plan: its error fails the file. One with a missing input is left
    /// out (files create only the inputs they test), and its plan error is kept for the query
    /// that then names it. The data tests (`-- test:` lines) of the file's own model then run on
    /// the file's fixtures.
    async fn load_models(&mut self) -> Result<(), SltError> {
        let models = ModelSet::load(&self.sql_dir).map_err(|es| {
            SltError(
                es.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        self.unplanned.clear();
        let ctx = self.engine.context().clone();
        let mut loaded = Vec::new();
        let mut units: Vec<(String, String, Vec<String>, Option<&clientele_sql::Model>)> = models
            .ordered(&[])
            .map_err(|e| SltError(e.to_string()))?
            .into_iter()
            .map(|m| (m.name.clone(), m.sql.clone(), m.reads.clone(), Some(m)))
            .collect();
        for (id, sql) in segment_files(&self.sql_dir.join("segments")) {
            let reads = clientele_sql::parse_reads(&sql).map_err(SltError)?;
            units.push((id, sql, reads, None));
        }
        for (name, sql, reads, model) in units {
            match ctx.sql(&sql).await {
                Ok(df) => {
                    let _ = ctx.deregister_table(name.as_str());
                    ctx.register_table(name.as_str(), df.into_view())
                        .map_err(|e| SltError(e.to_string()))?;
                    loaded.extend(model);
                }
                Err(e) => {
                    let missing: Vec<&String> = reads
                        .iter()
                        .filter(|r| !matches!(ctx.table_exist(r.as_str()), Ok(true)))
                        .collect();
                    if missing.is_empty() {
                        return Err(SltError(format!(
                            "model '{name}' does not plan although all its inputs exist: {e}"
                        )));
                    }
                    self.unplanned.push((
                        name.clone(),
                        format!(
                            "{e} (inputs this file did not create: {})",
                            missing
                                .iter()
                                .map(|m| m.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
        for model in loaded.into_iter().filter(|m| m.name == self.model) {
            self.engine
                .run_data_tests(model)
                .await
                .map_err(|e| SltError(e.to_string()))?;
        }
        Ok(())
    }

    /// `LOAD QUERY <name> [AS <view>]`, then one `param = value` line per parameter: registers
    /// `sql/queries/<name>.sql` with its parameters filled in as a view (named `<name>` unless
    /// given). A parameter the query does not take, or one left unfilled, fails the statement.
    fn load_query(&mut self, statement: &str) -> Result<(), SltError> {
        let mut lines = statement.lines();
        let head: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let (name, view) = match head.as_slice() {
            [_, _, name] => (*name, *name),
            [_, _, name, as_, view] if as_.eq_ignore_ascii_case("as") => (*name, *view),
            _ => {
                return Err(SltError(format!(
                    "expected LOAD QUERY <name> [AS <view>], got '{statement}'"
                )));
            }
        };
        let query = clientele_sql::queries::ALL
            .iter()
            .find(|q| q.name == name)
            .ok_or_else(|| SltError(format!("no query sql/queries/{name}.sql")))?;
        let params: Vec<(String, String)> = lines
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .ok_or_else(|| SltError(format!("expected 'param = value', got '{l}'")))
            })
            .collect::<Result<_, _>>()?;
        let refs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let sql = query.fill(&refs).map_err(|e| SltError(e.to_string()))?;
        if let Some(left) = query
            .params()
            .iter()
            .find(|p| sql.contains(&format!("{{{p}}}")))
        {
            return Err(SltError(format!(
                "parameter '{left}' of query '{name}' is not given"
            )));
        }
        self.pending_views.push((view.to_string(), sql));
        Ok(())
    }

    /// An error of a query, with the plan error of any unplanned model it names.
    fn explain(&self, sql: &str, error: String) -> SltError {
        let named: Vec<String> = self
            .unplanned
            .iter()
            .filter(|(name, _)| sql.contains(name.as_str()))
            .map(|(name, e)| format!("model '{name}' was not loaded: {e}"))
            .collect();
        if named.is_empty() {
            SltError(error)
        } else {
            SltError(format!("{error}\n{}", named.join("\n")))
        }
    }
}

/// Segment files as (id, SQL), read directly: the harness tests their SQL only.
fn segment_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "sql") {
            let id = p
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if let Ok(sql) = std::fs::read_to_string(&p) {
                out.push((id, sql));
            }
        }
    }
    out.sort();
    out
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for SltDb {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        if let Some(table) = rust_table_name(sql) {
            let schema = rust_schema(table)?;
            let empty = datafusion::datasource::MemTable::try_new(schema, vec![vec![]])
                .map_err(|e| SltError(e.to_string()))?;
            let ctx = self.engine.context();
            let _ = ctx.deregister_table(table);
            ctx.register_table(table, std::sync::Arc::new(empty))
                .map_err(|e| SltError(e.to_string()))?;
            return Ok(DBOutput::StatementComplete(0));
        }
        if sql.trim().eq_ignore_ascii_case("load models") {
            self.load_models().await?;
            return Ok(DBOutput::StatementComplete(0));
        }
        if sql
            .trim_start()
            .get(..10)
            .is_some_and(|p| p.eq_ignore_ascii_case("load query"))
        {
            self.load_query(sql.trim())?;
            let ctx = self.engine.context().clone();
            for (view, query) in std::mem::take(&mut self.pending_views) {
                let df = ctx
                    .sql(&query)
                    .await
                    .map_err(|e| SltError(format!("query '{view}' does not plan: {e}")))?;
                let _ = ctx.deregister_table(view.as_str());
                ctx.register_table(view.as_str(), df.into_view())
                    .map_err(|e| SltError(e.to_string()))?;
            }
            return Ok(DBOutput::StatementComplete(0));
        }
        let first_word = sql
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let is_query = matches!(
            first_word.as_str(),
            "select" | "with" | "values" | "show" | "describe" | "explain" | "("
        );
        let df = match self.engine.context().sql(sql).await {
            Ok(df) => df,
            Err(e) => return Err(self.explain(sql, e.to_string())),
        };
        let schema = df.schema().as_arrow().clone();
        let batches = df
            .collect()
            .await
            .map_err(|e| self.explain(sql, e.to_string()))?;
        if !is_query {
            return Ok(DBOutput::StatementComplete(0));
        }
        Ok(DBOutput::Rows {
            types: schema
                .fields()
                .iter()
                .map(|f| column_type(f.data_type()))
                .collect(),
            rows: rows(&batches)?,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "datafusion"
    }
}

/// `CREATE RUST TABLE <name>`: the table's name, for a table another stage writes in Rust.
fn rust_table_name(sql: &str) -> Option<&str> {
    let words: Vec<&str> = sql.split_whitespace().collect();
    match words.as_slice() {
        [c, r, t, name]
            if c.eq_ignore_ascii_case("create")
                && r.eq_ignore_ascii_case("rust")
                && t.eq_ignore_ascii_case("table") =>
        {
            Some(name)
        }
        _ => None,
    }
}

/// The real schema of a table another stage writes, so that fixtures cannot drift from it.
fn rust_schema(table: &str) -> Result<arrow::datatypes::SchemaRef, SltError> {
    Ok(match table {
        "int_customer_identity" => clientele_identity::tables::identity_schema(),
        "int_customer_contacts" => clientele_identity::tables::contacts_schema(),
        "suppression_list" => clientele_segments::suppression_schema(),
        "customer_scores" => clientele_models::customer_scores_schema(),
        "segment_membership" => clientele_segments::membership_schema(),
        other => {
            return Err(SltError(format!(
                "no Rust schema for '{other}' (int_customer_identity, int_customer_contacts, customer_scores, segment_membership, suppression_list)"
            )));
        }
    })
}

fn repo_root() -> PathBuf {
    package_dir().join("../..")
}

async fn new_db(sql_dir: PathBuf, model: String) -> Result<SltDb, SltError> {
    let wh =
        Warehouse::open("memory://slt", Path::new("/")).map_err(|e| SltError(e.to_string()))?;
    let as_of =
        chrono::NaiveDate::from_ymd_opt(2025, 12, 31).ok_or_else(|| SltError("date".into()))?;
    let engine = Engine::new(
        &wh,
        as_of,
        // The demo job's declarations, which the models read through functions.
        &EngineOptions {
            target_partitions: 4,
            memory_limit_mb: None,
            source_trust: ["crm", "web", "service", "campaign", "vendor"]
                .map(String::from)
                .to_vec(),
            reporting_currency: Some("GBP".into()),
            model_part_rows: None,
        },
    )
    .map_err(|e| SltError(e.to_string()))?;
    Ok(SltDb {
        engine,
        sql_dir,
        unplanned: Vec::new(),
        model,
        pending_views: Vec::new(),
    })
}

fn model_names(sql_dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for layer in clientele_sql::LAYERS
        .iter()
        .chain(["segments", "queries"].iter())
    {
        let Ok(entries) = std::fs::read_dir(sql_dir.join(layer)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "sql") {
                names.push(
                    p.file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
    }
    names.sort();
    names
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let complete = std::env::args().any(|a| a == "--complete");
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let root = repo_root();
    let sql_dir = root.join("sql");
    let slt_dir = root.join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&slt_dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "slt"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let (mut passed, mut failed) = (0usize, 0usize);

    // Every model and segment has its own file.
    for name in model_names(&sql_dir) {
        if !files
            .iter()
            .any(|f| f.file_stem().and_then(|s| s.to_str()) == Some(name.as_str()))
        {
            eprintln!("FAIL sql model '{name}' has no tests/slt/{name}.slt");
            failed += 1;
        }
    }
    for file in files {
        let name = file
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let dir = sql_dir.clone();
        let model = name.trim_end_matches(".slt").to_string();
        let mut runner = sqllogictest::Runner::new(move || {
            let (dir, model) = (dir.clone(), model.clone());
            async move { new_db(dir, model).await }
        });
        let result = if complete {
            runner
                .update_test_file(
                    &file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .map_err(|e| e.to_string())
        } else {
            runner
                .run_file_async(&file)
                .await
                .map_err(|e| e.display(true).to_string())
        };
        match result {
            Ok(()) => {
                println!("ok   {name}");
                passed += 1;
            }
            Err(e) => {
                eprintln!("FAIL {name}\n{e}");
                failed += 1;
            }
        }
    }
    println!("slt: {passed} passed, {failed} failed");
    if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
