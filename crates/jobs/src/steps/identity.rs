//! The `identity` step: resolves the unioned customer records into customer ids with
//! clientele-identity, keeping the ids of the last published run.

use hashbrown::HashMap;
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use clientele_identity::records::{StringIndex, Strings};
use clientele_identity::stable::NONE;
use clientele_identity::{
    Accuracy, Previous, Records, Resolution, Settings, link_and_cluster, tables,
};
use clientele_sql::Engine;
use clientele_store::Warehouse;

use super::{
    CheckProblem, Checked, Declaration, Operation, PlanContext, SpecContext, StepContext,
    StepOutput, chain, table_for,
};
use crate::error::{Error, Result};
use crate::manifest::IdentityReport;
use crate::spec::{Problem, TableId};

/// The tables the step writes (layer, table).
pub const WRITES: [(&str, &str); 5] = {
    let [a, b, c, d, e] = tables::OUTPUT_TABLES;
    [
        ("intermediate", a),
        ("intermediate", b),
        ("intermediate", c),
        ("intermediate", d),
        ("intermediate", e),
    ]
};

/// `kind = "identity"` as written.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    /// The records to resolve (default `int_customer_records__unioned`).
    #[serde(default)]
    input: Option<String>,
}

/// Resolves identities.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The table of records to resolve.
    pub input: String,
}

impl Declaration for IdentitySpec {
    fn check(&self, cx: &SpecContext<'_>, _problems: &mut Vec<CheckProblem>) -> Option<Checked> {
        let input = self
            .input
            .clone()
            .unwrap_or_else(|| "int_customer_records__unioned".into());
        let mut reads = vec![table_for(&input, cx.models)];
        if let Some(truth) = &cx.identity.truth {
            reads.push(table_for(truth, cx.models));
        }
        Some(Checked {
            operation: Arc::new(Identity { input }),
            reads,
            writes: WRITES.iter().map(|(l, t)| TableId::new(l, t)).collect(),
        })
    }
}

#[async_trait::async_trait]
impl Operation for Identity {
    fn kind(&self) -> &'static str {
        "identity"
    }

    async fn plan(&self, cx: &PlanContext<'_>, problems: &mut Vec<Problem>) -> Result<Vec<String>> {
        let settings = &cx.spec.identity;
        let input = &self.input;
        let mut details = Vec::new();
        match cx
            .engine
            .plan_schema(&identity_query(input, settings, None)?)
            .await
        {
            Ok(_) => details.push(format!(
                "resolve {input}: {} comparison(s), {} blocking rule(s) -> int_customer_identity",
                settings.comparisons.len(),
                settings.blocking_rules.len()
            )),
            Err(e) => problems.push(cx.problem(format!(
                "step '{}': the identity input '{input}' needs record_id, source_system and the compared columns: {}",
                cx.step,
                chain(&e)
            ))),
        }
        if let Some(truth) = &settings.truth
            && let Err(e) = cx.engine.plan_schema(&truth_query(truth)).await
        {
            problems.push(cx.problem(format!(
                "identity truth '{truth}' needs record_id and person_id: {}",
                chain(&e)
            )));
        }
        for (name, schema) in tables::output_schemas(settings) {
            cx.engine.register_empty(name, schema)?;
        }
        Ok(details)
    }

    async fn run(&self, cx: &StepContext<'_>) -> Result<StepOutput> {
        let settings = &cx.spec.identity;
        let input = &self.input;
        // Each stage's time in the log (`-vv`), beside the resolution's own stages.
        let mut clock = clientele_identity::StageClock::start();
        let mut lap = |phase: &str| clock.lap(phase);
        // Streamed batch by batch into the records: the input whole as Arrow would take more
        // memory than the records it becomes.
        let what = format!("reading the identity input '{input}'");
        let mut stream = cx
            .engine
            .stream(&what, &identity_query(input, settings, None)?)
            .await?;
        let mut loader = tables::RecordLoader::new(settings);
        while let Some(batch) = stream.next().await {
            loader
                .add(&batch?)
                .map_err(|e| Error::Input(format!("identity input '{input}': {e}")))?;
        }
        drop(stream);
        let records = loader
            .finish()
            .map_err(|e| Error::Input(format!("identity input '{input}': {e}")))?;
        lap("reading records");
        let mut owned = settings.clone();
        // Under a memory limit the pairs' comparison patterns wait on disk between the walks
        // over the pairs (at ten million persons 1.1 GB, read back at disk speed).
        if cx.spec.engine.memory_limit_mb.is_some() {
            owned.spill_dir = Some(std::env::temp_dir());
        }
        let stopped = |e: tokio::task::JoinError| {
            Error::Internal(format!("identity resolution stopped: {e}"))
        };
        let (records, owned, clustered) = tokio::task::spawn_blocking(move || {
            let mut records = records;
            // Under a memory limit the record ids wait on disk too: linking and clustering never
            // read them (at ten million persons 540 MB beside the pairs).
            let aside = match &owned.spill_dir {
                Some(dir) => Some(records.set_ids_aside(dir)?),
                None => None,
            };
            let clustered = link_and_cluster(&records, &owned)?;
            if let Some(aside) = aside {
                records.take_ids_back(aside)?;
            }
            Ok::<_, clientele_identity::Error>((records, owned, clustered))
        })
        .await
        .map_err(stopped)??;
        lap("linking and clustering");
        // The links' table is written now and the links let go: giving customer ids needs the
        // memory more (at ten million persons the links are 600 MB). It is published with the
        // others, in their order.
        let [_, links_table, ..] = tables::OUTPUT_TABLES;
        let mut clustered = clustered;
        let staged_links = {
            let table = tables::LinksTable::new(&records, &owned, clustered.links_of());
            cx.stage_slices(
                "intermediate",
                links_table,
                tables::links_schema(&owned),
                table.slices(),
                |i| Ok(table.slice(i)?),
            )
            .await?
        };
        clustered.let_links_go();
        lap("writing int_identity_links");
        // The last run's customer ids, streamed into one number per record (a map of millions of
        // record ids to strings would take more memory than the records themselves), and read
        // only now: the candidate pairs and their blocks are gone, so the two are never held at
        // once.
        let index = RecordIndex::of(&records);
        let previous = previous_ids(cx.engine, cx.warehouse, &index).await?;
        drop(index);
        lap("reading previous ids");
        let (mut records, resolution) = tokio::task::spawn_blocking(move || {
            clustered
                .finish(&records, &owned, &previous)
                .map(|r| (records, r))
        })
        .await
        .map_err(stopped)??;
        lap("customer ids and households");
        let s = &resolution.summary;
        tracing::info!(
            records = s.records,
            candidate_pairs = s.candidate_pairs,
            links = s.links_above_threshold,
            customers = s.customers,
            merges = s.merges,
            splits = s.splits,
            "identities resolved"
        );
        for w in &s.warnings {
            tracing::warn!("identity: {w}");
        }
        let mut out = StepOutput::default();
        let mut staged_links = Some(staged_links);
        for (name, schema) in tables::output_schemas(settings) {
            if name == links_table {
                let staged = staged_links.take().ok_or_else(|| {
                    Error::Internal(format!("{links_table} was to be published twice"))
                })?;
                out.add_table(staged);
                continue;
            }
            let table = tables::OutputTable::new(name, &records, settings, &resolution)?;
            out.add_table(
                cx.stage_slices("intermediate", name, schema, table.slices(), |i| {
                    Ok(table.slice(i)?)
                })
                .await?,
            );
            lap(&format!("writing {name}"));
        }
        // The records' compared values are not needed past the tables (the truth is matched by
        // record id): let go before it is read (at ten million persons about 2 GB).
        records.columns = Vec::new();
        // How well the customers and households match the truth, where the job has one (the
        // demo's): read after resolving, so that it is not held beside the resolution's work.
        let (accuracy, household_accuracy) = match &settings.truth {
            Some(t) => truth_accuracy(cx.engine, t, &records, &resolution).await?,
            None => (None, None),
        };
        lap("reading the truth");
        out.report.identity = Some(IdentityReport {
            summary: resolution.summary.clone(),
            accuracy,
            household_accuracy,
        });
        Ok(out)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The accuracy of `resolution`'s customers and, when the truth table records households, of its
/// households, against the truth table `truth`.
async fn truth_accuracy(
    engine: &Engine,
    truth: &str,
    records: &Records,
    resolution: &Resolution,
) -> Result<(Option<Accuracy>, Option<Accuracy>)> {
    let index = RecordIndex::of(records);
    let persons = per_record_codes(
        engine,
        &format!("reading the truth table '{truth}'"),
        &truth_query(truth),
        &index,
    )
    .await?
    .0;
    let accuracy = clientele_identity::evaluate::accuracy(&resolution.clusters, &known(persons));
    let schema = engine
        .plan_schema(&format!("select * from {truth}"))
        .await?;
    let household_accuracy = if schema.field_with_name("household_id").is_ok() {
        let households = per_record_codes(
            engine,
            &format!("reading the households of the truth table '{truth}'"),
            &format!(
                "select cast(record_id as varchar) as record_id, cast(household_id as varchar) as household_id from {truth}"
            ),
            &index,
        )
        .await?
        .0;
        Some(clientele_identity::evaluate::accuracy(
            &resolution.households,
            &known(households),
        ))
    } else {
        None
    };
    Ok((Some(accuracy), household_accuracy))
}

/// Each record's number, `None` where it has none ([`NONE`]).
fn known(codes: Vec<u32>) -> Vec<Option<u32>> {
    codes
        .into_iter()
        .map(|c| (c != NONE).then_some(c))
        .collect()
}

/// The columns the step reads from its input (`sql/queries/identity_input.sql`), optionally
/// filtered (`as_of = ...` when reading a published partition back).
pub(crate) fn identity_query(
    input: &str,
    settings: &Settings,
    filter: Option<&str>,
) -> Result<String> {
    let columns: String = settings
        .comparisons
        .iter()
        .map(|c| format!(", {}", c.column))
        .collect();
    let filter = filter.map(|f| format!("where {f}")).unwrap_or_default();
    Ok(clientele_sql::queries::IDENTITY_INPUT.fill(&[
        ("columns", &columns),
        ("input", input),
        ("filter", &filter),
    ])?)
}

/// The truth table's two columns.
pub(crate) fn truth_query(truth: &str) -> String {
    format!(
        "select cast(record_id as varchar) as record_id, cast(person_id as varchar) as person_id from {truth}"
    )
}

/// Each record's number by its id: a table of record numbers found by the id's hash and
/// compared against the records' own ids, not a map holding a reference to each id.
struct RecordIndex<'a> {
    ids: &'a Strings,
    index: StringIndex,
}

impl<'a> RecordIndex<'a> {
    fn of(records: &'a Records) -> Self {
        Self {
            ids: &records.ids,
            index: StringIndex::of(&records.ids),
        }
    }

    fn get(&self, id: &str) -> Option<u32> {
        self.index.get(self.ids, id)
    }

    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// A query's distinct values, numbered in order of first appearance, each with the number of rows
/// holding it.
struct Distinct {
    values: Strings,
    rows: Vec<u64>,
}

/// Streams a query of two text columns (a record id, a value) and gives each record of `index`
/// the number of its value ([`NONE`] for a record the query does not name or names with a null
/// value: four bytes a record, where an `Option` took eight). Also returns the distinct values,
/// each with the number of rows holding it (rows of records not in `index` included).
async fn per_record_codes(
    engine: &Engine,
    what: &str,
    sql: &str,
    index: &RecordIndex<'_>,
) -> Result<(Vec<u32>, Distinct)> {
    let mut codes: Vec<u32> = vec![NONE; index.len()];
    let mut distinct = Distinct {
        values: Strings::default(),
        rows: Vec::new(),
    };
    let mut numbers = StringIndex::default();
    let mut stream = engine.stream(what, sql).await?;
    while let Some(batch) = stream.next().await {
        let b = batch?;
        if b.num_columns() < 2 {
            return Err(Error::Input(format!("{what}: expected two columns")));
        }
        let (k, v) = (
            cast(b.column(0), &DataType::Utf8)?,
            cast(b.column(1), &DataType::Utf8)?,
        );
        let (Some(k), Some(v)) = (
            k.as_any().downcast_ref::<StringArray>(),
            v.as_any().downcast_ref::<StringArray>(),
        ) else {
            return Err(Error::Input(format!("{what}: expected text columns")));
        };
        for i in 0..b.num_rows() {
            if k.is_null(i) || v.is_null(i) {
                continue;
            }
            let (number, new) = numbers.intern(&mut distinct.values, v.value(i));
            if new {
                distinct.rows.push(0);
            }
            if let Some(n) = distinct.rows.get_mut(number as usize) {
                *n += 1;
            }
            if let Some(slot) = index
                .get(k.value(i))
                .and_then(|r| codes.get_mut(r as usize))
            {
                *slot = number;
            }
        }
    }
    Ok((codes, distinct))
}

/// The customer ids of the last published run, or none on the first run.
async fn previous_ids(
    engine: &Engine,
    warehouse: &Warehouse,
    index: &RecordIndex<'_>,
) -> Result<Previous> {
    let runs = crate::history::list_runs(warehouse).await?;
    let table = WRITES[0].1;
    let Some(path) = runs
        .iter()
        .rev()
        .filter(|r| r.published)
        .find_map(|r| r.tables.iter().find(|t| t.table == table))
        .map(|t| t.path.clone())
    else {
        return Ok(Previous::default());
    };
    if !engine.is_published(&path).await? {
        tracing::warn!(%path, "the last published identity table is gone; customer ids are minted afresh");
        return Ok(Previous::default());
    }
    engine.register_file("_previous_identity", &path).await?;
    let read = per_record_codes(
        engine,
        "reading the last published customer ids",
        "select record_id, customer_id from _previous_identity",
        index,
    )
    .await;
    engine
        .context()
        .deregister_table("_previous_identity")
        .map_err(|e| Error::Internal(e.to_string()))?;
    let (codes, distinct) = read?;
    Ok(Previous {
        customer_ids: distinct.values,
        records: distinct.rows,
        of_record: codes,
    })
}

/// The waterfall of records `a` and `b` as the job's last published identity run scored them:
/// its input records (for the term frequencies) and its fitted parameters, at the latest as-of
/// date (or `as_of`).
pub async fn explain_match(
    spec: &crate::spec::JobSpec,
    a: &str,
    b: &str,
    as_of: Option<chrono::NaiveDate>,
) -> crate::Result<String> {
    let input = spec
        .steps
        .iter()
        .find_map(|s| s.operation.as_any().downcast_ref::<Identity>())
        .map(|i| i.input.clone())
        .ok_or_else(|| Error::Spec {
            problems: vec![Problem {
                file: spec.path.clone(),
                line: None,
                message: "the job has no identity step".into(),
            }],
        })?;
    let warehouse = Warehouse::open(&spec.warehouse, &spec.base_dir)?;
    let engine = Engine::new(
        &warehouse,
        as_of.unwrap_or_else(|| chrono::Utc::now().date_naive()),
        &spec.engine,
    )?;
    let params_table = WRITES[3].1;
    let published = engine.register_published().await?;
    if !published.iter().any(|(name, _)| name == params_table) {
        return Err(Error::Spec {
            problems: vec![Problem {
                file: spec.path.clone(),
                line: None,
                message: format!(
                    "the warehouse {} holds no published identity run yet: run the job first",
                    warehouse.display()
                ),
            }],
        });
    }
    let date = match as_of {
        Some(d) => format!("date '{d}'"),
        None => format!("(select max(as_of) from {params_table})"),
    };
    let parameters = engine
        .collect(
            "reading the identity parameters",
            &format!(
                "select comparison, level, label, m_probability, u_probability from {params_table} where as_of = {date}"
            ),
        )
        .await?;
    if parameters.iter().all(|b| b.num_rows() == 0) {
        return Err(Error::Spec {
            problems: vec![Problem {
                file: spec.path.clone(),
                line: None,
                message: format!(
                    "the warehouse {} holds no identity run as of {}: `clientele runs` lists the runs",
                    warehouse.display(),
                    as_of.map_or_else(|| "the latest date".to_string(), |d| d.to_string())
                ),
            }],
        });
    }
    let query = identity_query(&input, &spec.identity, Some(&format!("as_of = {date}")))?;
    let batches = engine.collect("reading the identity input", &query).await?;
    let records = tables::records_from_batches(&batches, &spec.identity)?;
    let params = tables::parameters_from_batches(&parameters, &spec.identity)?;
    let e = clientele_identity::explain::explain(&records, &spec.identity, &params, a, b)?;
    let mut text = clientele_identity::explain::waterfall(&e);
    let quoted = |id: &str| format!("'{}'", id.replace('\'', "''"));
    let placed = engine
        .collect(
            "reading the two records' customers",
            &format!(
                "select record_id, customer_id, cluster_size, household_id from {} \
                 where as_of = {date} and record_id in ({}, {})",
                WRITES[0].1,
                quoted(a),
                quoted(b)
            ),
        )
        .await?;
    text.push_str(&published_outcome(&placed, &e));
    Ok(text)
}

/// What the published run made of the pair: each record's customer (and its size) and household,
/// and why, where the pair's own score does not say it.
fn published_outcome(
    batches: &[arrow::record_batch::RecordBatch],
    e: &clientele_identity::explain::Explanation,
) -> String {
    use arrow::array::AsArray;
    let mut found: HashMap<String, (String, i64, String)> = HashMap::new();
    for batch in batches {
        let column = |i: usize, to: &DataType| cast(batch.column(i), to).ok();
        let (Some(ids), Some(customers), Some(sizes), Some(households)) = (
            column(0, &DataType::Utf8),
            column(1, &DataType::Utf8),
            column(2, &DataType::Int64),
            column(3, &DataType::Utf8),
        ) else {
            continue;
        };
        let (Some(ids), Some(customers), Some(households)) = (
            ids.as_string_opt::<i32>(),
            customers.as_string_opt::<i32>(),
            households.as_string_opt::<i32>(),
        ) else {
            continue;
        };
        let Some(sizes) = sizes.as_primitive_opt::<arrow::datatypes::Int64Type>() else {
            continue;
        };
        for row in 0..batch.num_rows() {
            if ids.is_null(row) {
                continue;
            }
            found.insert(
                ids.value(row).to_string(),
                (
                    customers.value(row).to_string(),
                    sizes.value(row),
                    households.value(row).to_string(),
                ),
            );
        }
    }
    let (Some(a), Some(b)) = (found.get(&e.record_a), found.get(&e.record_b)) else {
        return "published run: the two records are not both in it (run the job again to place them)\n"
            .to_string();
    };
    let records = |n: i64| {
        if n == 1 {
            "1 record".to_string()
        } else {
            format!("{n} records")
        }
    };
    let mut out = format!(
        "published run: {} is customer {} ({}), {} is customer {} ({})\n",
        e.record_a,
        a.0,
        records(a.1),
        e.record_b,
        b.0,
        records(b.1)
    );
    let is_match = e.match_probability >= e.threshold;
    let customers = if a.0 == b.0 {
        if is_match {
            "one customer".to_string()
        } else {
            "one customer, though the pair is not a match: other records of the customer link them (or one \
             was attached to the only customer its candidate pairs point to)"
                .to_string()
        }
    } else if is_match {
        "two customers, though the pair is a match: a conflict with another record of theirs, or the \
         clustering's split of a chain, keeps them apart"
            .to_string()
    } else {
        "two customers".to_string()
    };
    let household = if a.2 == b.2 {
        let why = if a.0 == b.0 {
            String::new()
        } else if e.shared_dwelling.is_some() {
            " (by the address the two share)".to_string()
        } else {
            " (other records of the two customers share an address, or a postcode and a landline or a \
             family email)"
                .to_string()
        };
        format!("one household {}{why}", a.2)
    } else {
        format!("two households ({} and {})", a.2, b.2)
    };
    out.push_str(&format!("  {customers}; {household}\n"));
    out
}
