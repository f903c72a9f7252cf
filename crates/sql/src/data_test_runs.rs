//! Running the data tests a model declares ([`crate::data_tests`]) on its materialised rows, and
//! planning them for `validate` and dry runs.
//!
//! Each test is a query for the rows that break it. Two kinds hold the model's rows in memory:
//! `unique` groups every row by its columns and `relationships` joins the model's column to its
//! parent's, and neither bounds what it holds by the memory pool (at ten million persons
//! `fct_orders`' unique(order_id) held 4.9 GB and its relationships test 3.0 GB, against a limit
//! of 4,096 MiB; docs/performance.md#data-tests-in-parts). Under a memory limit, or with the
//! job's `model_part_rows`, such a test of a large model runs in parts ([`Engine::data_test_pieces`]):
//! ranges of the test's first column, cut as a model's parts are ([`crate::parts`]), one after
//! another, each reading the model (and, for `relationships`, the parent) filtered to its range;
//! a `unique` test also reads the rows whose first column is null, on their own. A duplicate has
//! one value of the first column and a key one value, so each lies wholly within one part, and the
//! parts together find exactly the failing rows the whole finds.

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::logical_expr::{Expr, ident};
use datafusion::prelude::SessionContext;
use std::sync::Arc;

use crate::data_tests::{DataTest, DeclaredTest, is_personal_column, masked};
use crate::engine::{Engine, query_error};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::parts::{PartsKey, counted, key_range, parts_for};

/// Rows of a model that one part of its `unique` or `relationships` test may read per MiB of
/// `memory_limit_mb` (the job's `model_part_rows`, when set, instead). At ten million persons
/// `fct_orders`' unique(order_id) held about 125 bytes a row, outside the pool as much as in it;
/// at 2,000 rows per MiB a part of a test reads 8.2 M rows under 4,096 MiB (about 1 GiB), and
/// `fct_orders` (33 M orders) is tested in 5 parts (docs/performance.md#data-tests-in-parts).
pub const TEST_ROWS_PER_MIB: u64 = 2_000;

/// How many failing rows a failure message shows.
const SHOWN_ROWS: usize = 5;

/// The tables one piece of a data test's run reads filtered, each with its filter; none: the
/// test runs on the whole model.
pub(crate) type Piece = Vec<(String, Expr)>;

impl Engine {
    /// Runs the data tests of `model` (registered under its name): `Err(DataTests)` lists every
    /// failing test with its line, the number of failing rows and up to five of them, showing
    /// only their identifiers and the tested columns, personal ones masked
    /// ([`crate::data_tests::DataTest::shown_columns`]). A large model's `unique` and
    /// `relationships` tests run in parts ([`Engine::data_test_pieces`]); under a memory limit a
    /// test that runs out of memory runs again the next way of [`Engine::attempts`].
    pub async fn run_data_tests(&self, model: &Model) -> Result<()> {
        let mut failures = Vec::new();
        for t in &model.tests {
            let failing = t.test.failing_rows_sql(&model.name);
            let what = format!(
                "data test '{}' of model '{}' ({}:{})",
                t.text,
                model.name,
                model.path.display(),
                t.line
            );
            let pieces = self.data_test_pieces(&what, model, t).await?;
            if pieces.len() > 1 {
                tracing::info!(
                    model = %model.name,
                    test = %t.text,
                    parts = pieces.len(),
                    memory_limit_mb = self.memory_limit_mb(),
                    "running the data test in parts of its first column (docs/performance.md#data-tests-in-parts)"
                );
            }
            let count_sql = format!("select count(*) from ({failing})");
            let n = self
                .run_attempts(&what, Error::is_out_of_memory, |attempt| {
                    let (pieces, what, count_sql) = (&pieces, &what, &count_sql);
                    async move {
                        let mut n = 0;
                        for piece in pieces {
                            let ctx = self.filtered_session(attempt, piece).await?;
                            let rows = self.collect_in(&ctx, what, count_sql, attempt).await?;
                            n += counted(&rows);
                        }
                        Ok::<_, Error>(n)
                    }
                })
                .await?;
            if n == 0 {
                continue;
            }
            let sample = self
                .run_attempts(&what, Error::is_out_of_memory, |attempt| {
                    let (pieces, what, failing) = (&pieces, &what, &failing);
                    async move {
                        let mut sample: Vec<RecordBatch> = Vec::new();
                        for piece in pieces {
                            let shown: usize = sample.iter().map(RecordBatch::num_rows).sum();
                            if shown >= SHOWN_ROWS {
                                break;
                            }
                            let ctx = self.filtered_session(attempt, piece).await?;
                            let sql =
                                format!("select * from ({failing}) limit {}", SHOWN_ROWS - shown);
                            sample.extend(self.collect_in(&ctx, what, &sql, attempt).await?);
                        }
                        Ok::<_, Error>(sample)
                    }
                })
                .await?;
            let table = failing_rows_shown(&t.test, &sample);
            failures.push(format!(
                "  test '{}' (line {}): {n} failing row(s), for example:\n{}",
                t.text,
                t.line,
                table
                    .lines()
                    .map(|l| format!("    {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::DataTests {
                model: model.name.clone(),
                path: model.path.clone(),
                failures,
            })
        }
    }

    /// Plans the data tests of `model` against its (possibly empty) registration: a test naming a
    /// column the model lacks is caught by `validate` and dry runs.
    pub async fn plan_data_tests(&self, model: &Model) -> Result<()> {
        for t in &model.tests {
            self.plan_schema(&t.test.failing_rows_sql(&model.name))
                .await
                .map_err(|e| Error::BadModel {
                    path: model.path.clone(),
                    reason: format!("line {}: data test '{}' does not plan: {e}", t.line, t.text),
                })?;
        }
        Ok(())
    }

    /// The pieces the data test `t` of `model` (materialised and registered) runs in, in order:
    /// one, the whole model, unless the test is a `unique` or a `relationships` test (of a
    /// parent other than the model itself), there is a memory limit or `model_part_rows`, and
    /// the model has more rows than one part may read ([`TEST_ROWS_PER_MIB`]). Then a piece for
    /// each range of the test's first column (the key values of the model, sampled and cut as
    /// [`Engine::parts`] cuts a model's key), in which the model, and a `relationships` test's
    /// parent by its own column, are read filtered to the range; and for `unique`, a last piece
    /// of the model's rows whose first column is null.
    pub(crate) async fn data_test_pieces(
        &self,
        what: &str,
        model: &Model,
        t: &DeclaredTest,
    ) -> Result<Vec<Piece>> {
        let whole = vec![Vec::new()];
        let (column, parent) = match &t.test {
            DataTest::Unique(columns) => match columns.first() {
                Some(column) => (column, None),
                None => return Ok(whole),
            },
            DataTest::Relationships {
                column,
                table,
                to_column,
            } if *table != model.name => (column, Some((table, to_column))),
            _ => return Ok(whole),
        };
        let key = PartsKey {
            table: model.name.clone(),
            column: column.clone(),
            line: t.line,
            rows_per_mib: Some(TEST_ROWS_PER_MIB),
        };
        let Some(part_rows) = self.part_rows(&key) else {
            return Ok(whole);
        };
        let what = format!("cutting the rows of {what} into parts");
        let rows = self
            .count_rows(&what, &format!("select count(*) from {}", model.name))
            .await?;
        let count = parts_for(rows, part_rows);
        if count < 2 {
            return Ok(whole);
        }
        let bounds = self.bounds(&what, &key, count).await?;
        if bounds.is_empty() {
            return Ok(whole);
        }
        let mut pieces: Vec<Piece> = (0..=bounds.len())
            .map(|index| {
                let mut piece = vec![(model.name.clone(), key_range(column, &bounds, index))];
                if let Some((table, to_column)) = parent {
                    piece.push((table.clone(), key_range(to_column, &bounds, index)));
                }
                piece
            })
            .collect();
        if parent.is_none() {
            pieces.push(vec![(model.name.clone(), ident(column.as_str()).is_null())]);
        }
        Ok(pieces)
    }

    /// Runs `sql` in `ctx` (a session of the way numbered `attempt`) and collects its rows; a
    /// failure is [`query_error`]'s.
    async fn collect_in(
        &self,
        ctx: &SessionContext,
        what: &str,
        sql: &str,
        attempt: usize,
    ) -> Result<Vec<RecordBatch>> {
        let err = |source| query_error(what, source, self.memory_limit_mb(), attempt);
        ctx.sql(sql)
            .await
            .map_err(err)?
            .collect()
            .await
            .map_err(err)
    }
}

/// The failing rows of a data test as a text table of the columns a message may show, personal
/// values masked.
fn failing_rows_shown(test: &DataTest, sample: &[RecordBatch]) -> String {
    let Some(schema) = sample.first().map(|b| b.schema()) else {
        return String::new();
    };
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let shown = test.shown_columns(&names);
    let fields: Vec<Field> = shown
        .iter()
        .map(|n| Field::new(n, DataType::Utf8, true))
        .collect();
    let out_schema = Arc::new(Schema::new(fields));
    let mut batches = Vec::new();
    for batch in sample {
        let mut columns: Vec<ArrayRef> = Vec::new();
        for name in &shown {
            let Some(column) = batch.column_by_name(name) else {
                continue;
            };
            let text = cast(column, &DataType::Utf8).ok();
            let text = text
                .as_ref()
                .and_then(|a| a.as_any().downcast_ref::<StringArray>());
            let values: StringArray = (0..batch.num_rows())
                .map(|i| match text {
                    Some(a) if a.is_valid(i) => Some(if is_personal_column(name) {
                        masked(a.value(i))
                    } else {
                        a.value(i).to_string()
                    }),
                    Some(_) => None,
                    None => Some("(not shown)".to_string()),
                })
                .collect();
            columns.push(Arc::new(values));
        }
        if let Ok(b) = RecordBatch::try_new(out_schema.clone(), columns) {
            batches.push(b);
        }
    }
    datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::engine::EngineOptions;
    use crate::engine::tests::{limited, temp_warehouse};

    /// A pool small enough that a hash table of a million long keys does not fit it.
    const LIMIT: u64 = 107;

    /// The failure messages of `model`'s data tests on `engine` (none: they passed).
    async fn failures(engine: &Engine, model: &Model) -> Result<Vec<String>> {
        match engine.run_data_tests(model).await {
            Ok(()) => Ok(Vec::new()),
            Err(Error::DataTests { failures, .. }) => Ok(failures),
            Err(e) => Err(e),
        }
    }

    #[tokio::test]
    async fn a_relationships_test_finds_the_keys_missing_from_the_parent_and_fits_a_small_pool()
    -> Result<()> {
        let (_dir, wh, as_of) = temp_warehouse()?;
        let relationships = "-- test: relationships(k, p.k)\nselect * from m";
        let model = crate::parse_model(
            std::path::Path::new("sql/marts/m.sql"),
            "marts",
            relationships.to_string(),
        )?;
        // Nulls on both sides: a null key is no failure, a null parent key matches nothing.
        let engine = Engine::new(&wh, as_of, &EngineOptions::default())?;
        for view in [
            "create view p as select * from (values ('a'), ('b'), (null)) v(k)",
            "create view m as select * from (values ('C1', 'a'), ('C2', 'c'), ('C3', null), \
             ('C4', 'c'), ('C5', 'b')) v(customer_id, k)",
        ] {
            engine.collect("view", view).await?;
        }
        let Err(Error::DataTests { failures, .. }) = engine.run_data_tests(&model).await else {
            panic!("the relationships test passed with keys missing from the parent");
        };
        let text = failures.join("\n");
        assert!(text.contains("2 failing row(s)"), "{text}");
        assert!(text.contains("C2") && text.contains("C4"), "{text}");
        // 1,200,000 long keys, each in the parent, which would not fit one hash table of the
        // pool (what `not in` plans): at 2,000 rows per MiB of 107 the test runs in 6 ranges of
        // the key, each joining a range of the model to the same range of the parent.
        let engine = Engine::new(&wh, as_of, &limited(LIMIT))?;
        for view in [
            "create view p as select concat('customer-', cast(value as varchar), \
             '-with-a-name-long-enough') as k from range(0, 1200000)",
            "create view m as select concat('customer-', cast((value * 7919) % 1200000 as \
             varchar), '-with-a-name-long-enough') as k from range(0, 1200000)",
        ] {
            engine.collect("view", view).await?;
        }
        let pieces = engine
            .data_test_pieces("test", &model, &model.tests[0])
            .await?;
        assert_eq!(pieces.len(), 6);
        engine.run_data_tests(&model).await
    }

    #[tokio::test]
    async fn a_failing_data_test_shows_identifiers_and_tested_columns_with_personal_ones_masked()
    -> Result<()> {
        let (_dir, wh, as_of) = temp_warehouse()?;
        let engine = Engine::new(&wh, as_of, &EngineOptions::default())?;
        engine
            .collect(
                "view",
                "create view m as select * from (values ('C1', 'jane@example.com', 'Jane', -1), \
                 ('C2', 'bob@example.com', 'Bob', 3)) v(customer_id, email, first_name, frequency)",
            )
            .await?;
        let sql = "-- test: expression(frequency >= 0)\n-- test: not_null(customer_id)\n\
                   -- test: expression(email like '%@x.co')\nselect * from m"
            .to_string();
        let model = crate::parse_model(std::path::Path::new("sql/marts/m.sql"), "marts", sql)?;
        let Err(Error::DataTests { failures, .. }) = engine.run_data_tests(&model).await else {
            panic!("the data tests passed");
        };
        assert_eq!(failures.len(), 2, "{failures:?}");
        let text = failures.join("\n");
        assert!(text.contains("C1") && text.contains("-1"), "{text}");
        assert!(text.contains("<masked, 16 characters>"), "{text}");
        for personal in ["jane@example.com", "bob@example.com", "Jane", "first_name"] {
            assert!(!text.contains(personal), "'{personal}' shown:\n{text}");
        }
        Ok(())
    }
    /// 200,000 orders `m` of 50,000 `customers`: order ids O0000002..O0199999, the ids of the
    /// orders numbered 2 to 31 again on the orders numbered 100,002 to 100,031 (30 duplicates),
    /// two orders without an id (a duplicate too, as `group by` sees it), and the first 40 orders
    /// of customers not in `customers`.
    async fn orders(engine: &Engine) -> Result<()> {
        for view in [
            "create view customers as select concat('C', lpad(cast(value as varchar), 6, '0')) \
             as customer_id from range(0, 50000)",
            "create view m as select \
             case when value < 2 then null \
             else concat('O', lpad(cast(case when value < 32 then value + 100000 else value end \
             as varchar), 7, '0')) end as order_id, \
             case when value < 40 then concat('X', cast(value as varchar)) \
             else concat('C', lpad(cast((value * 7919) % 50000 as varchar), 6, '0')) end \
             as customer_id from range(0, 200000)",
        ] {
            engine.collect("view", view).await?;
        }
        Ok(())
    }

    #[tokio::test]
    async fn unique_and_relationships_tests_in_parts_find_what_they_find_in_one_piece() -> Result<()>
    {
        let (_dir, wh, as_of) = temp_warehouse()?;
        let sql = "-- test: unique(order_id)\n\
                   -- test: relationships(customer_id, customers.customer_id)\n\
                   -- test: not_null(customer_id)\nselect * from m";
        let model = crate::parse_model(
            std::path::Path::new("sql/marts/m.sql"),
            "marts",
            sql.to_string(),
        )?;
        let whole = Engine::new(&wh, as_of, &EngineOptions::default())?;
        orders(&whole).await?;
        let cut = Engine::new(
            &wh,
            as_of,
            &EngineOptions {
                target_partitions: 2,
                model_part_rows: Some(20_000),
                ..EngineOptions::default()
            },
        )?;
        orders(&cut).await?;
        let what = "test";
        // In one piece without a limit or model_part_rows.
        for t in &model.tests {
            assert_eq!(whole.data_test_pieces(what, &model, t).await?.len(), 1);
        }
        // 200,000 rows at 20,000 a part: ten ranges of order ids and the null ids on their own;
        // ten ranges of customer ids, each read from the model and the parent; not_null whole.
        let pieces = cut.data_test_pieces(what, &model, &model.tests[0]).await?;
        assert!((10..=12).contains(&pieces.len()), "{} pieces", pieces.len());
        assert!(pieces.iter().all(|p| p.len() == 1));
        let pieces = cut.data_test_pieces(what, &model, &model.tests[1]).await?;
        assert!((9..=11).contains(&pieces.len()), "{} pieces", pieces.len());
        assert!(pieces.iter().all(|p| p.len() == 2 && p[1].0 == "customers"));
        assert_eq!(
            cut.data_test_pieces(what, &model, &model.tests[2])
                .await?
                .len(),
            1
        );
        for engine in [&whole, &cut] {
            let failures = failures(engine, &model).await?;
            assert_eq!(failures.len(), 2, "{failures:?}");
            assert!(
                failures[0].contains("31 failing row(s)"),
                "the 30 repeated ids and the null ones: {}",
                failures[0]
            );
            assert!(
                failures[1].contains("40 failing row(s)"),
                "the 40 unknown customers: {}",
                failures[1]
            );
            // Five rows shown, gathered from the parts in turn.
            assert_eq!(
                failures[1].matches("| X").count(),
                5,
                "five of the unknown customers: {}",
                failures[1]
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_unique_test_in_parts_passes_on_unique_rows() -> Result<()> {
        let (_dir, wh, as_of) = temp_warehouse()?;
        let model = crate::parse_model(
            std::path::Path::new("sql/marts/customers.sql"),
            "marts",
            "-- test: unique(customer_id)\nselect 1".to_string(),
        )?;
        let engine = Engine::new(
            &wh,
            as_of,
            &EngineOptions {
                model_part_rows: Some(7_000),
                ..EngineOptions::default()
            },
        )?;
        orders(&engine).await?;
        assert!(
            engine
                .data_test_pieces("test", &model, &model.tests[0])
                .await?
                .len()
                > 5
        );
        assert_eq!(failures(&engine, &model).await?, Vec::<String>::new());
        Ok(())
    }
}
