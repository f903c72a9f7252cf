//! The `identity` step: resolves the unioned customer records into customer ids with
//! clientele-identity, keeping the ids of the last published run.

use std::collections::HashMap;

use arrow::array::{Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use clientele_identity::{Records, Settings, resolve, tables};
use clientele_sql::Engine;
use clientele_store::Warehouse;

use crate::manifest::IdentityReport;
use crate::runner::BoxError;
use crate::spec::IDENTITY_TABLES;

/// The columns the step reads from its input, optionally filtered (`as_of = ...` when reading a
/// published partition back).
pub(crate) fn identity_query(input: &str, settings: &Settings, filter: Option<&str>) -> String {
    let mut columns = vec!["record_id".to_string(), "source_system".to_string()];
    columns.extend(settings.comparisons.iter().map(|c| c.column.clone()));
    let filter = filter.map(|f| format!(" where {f}")).unwrap_or_default();
    format!(
        "select {} from {input}{filter} order by record_id",
        columns.join(", ")
    )
}

/// The truth table's two columns.
pub(crate) fn truth_query(truth: &str) -> String {
    format!(
        "select cast(record_id as varchar) as record_id, cast(person_id as varchar) as person_id from {truth}"
    )
}

/// The four output tables, empty, for planning.
pub(crate) fn empty_schemas(
    settings: &Settings,
) -> clientele_identity::Result<Vec<(&'static str, SchemaRef)>> {
    let records = Records::new(settings);
    let r = resolve(&records, settings, &HashMap::new(), None)?;
    Ok(output_tables(&records, settings, &r)?
        .into_iter()
        .map(|(name, batch)| (name, batch.schema()))
        .collect())
}

fn output_tables(
    records: &Records,
    settings: &Settings,
    r: &clientele_identity::Resolution,
) -> clientele_identity::Result<Vec<(&'static str, RecordBatch)>> {
    let [identity, links, changes, parameters] = IDENTITY_TABLES.map(|(_, t)| t);
    Ok(vec![
        (identity, tables::identity_table(records, r)?),
        (links, tables::links_table(records, settings, r)?),
        (changes, tables::changes_table(&r.changes)?),
        (parameters, tables::parameters_table(&r.parameters)?),
    ])
}

fn string_pairs(batches: &[RecordBatch]) -> Result<HashMap<String, String>, BoxError> {
    let mut out = HashMap::new();
    for b in batches {
        if b.num_columns() < 2 {
            return Err("expected two columns".into());
        }
        let (k, v) = (
            cast(b.column(0), &DataType::Utf8)?,
            cast(b.column(1), &DataType::Utf8)?,
        );
        let (Some(k), Some(v)) = (
            k.as_any().downcast_ref::<StringArray>(),
            v.as_any().downcast_ref::<StringArray>(),
        ) else {
            return Err("expected text columns".into());
        };
        for i in 0..b.num_rows() {
            if !k.is_null(i) && !v.is_null(i) {
                out.insert(k.value(i).to_string(), v.value(i).to_string());
            }
        }
    }
    Ok(out)
}

/// Record ids and customer ids of the last published run, or none on the first run.
async fn previous_ids(
    engine: &Engine,
    warehouse: &Warehouse,
) -> Result<HashMap<String, String>, BoxError> {
    let runs = crate::history::list_runs(warehouse).await?;
    let table = IDENTITY_TABLES[0].1;
    let Some(path) = runs
        .iter()
        .rev()
        .filter(|r| r.published)
        .find_map(|r| r.tables.iter().find(|t| t.table == table))
        .map(|t| t.path.clone())
    else {
        return Ok(HashMap::new());
    };
    if !warehouse.exists(&path).await? {
        tracing::warn!(%path, "the last published identity table is gone; customer ids are minted afresh");
        return Ok(HashMap::new());
    }
    engine.register_file("_previous_identity", &path).await?;
    let batches = engine
        .collect(
            "reading the last published customer ids",
            "select record_id, customer_id from _previous_identity",
        )
        .await?;
    engine.context().deregister_table("_previous_identity")?;
    string_pairs(&batches)
}

/// Runs identity resolution on `input`: the four tables and the report.
pub(crate) async fn run(
    engine: &Engine,
    warehouse: &Warehouse,
    settings: &Settings,
    input: &str,
) -> Result<(Vec<(&'static str, RecordBatch)>, IdentityReport), BoxError> {
    let batches = engine
        .collect(
            &format!("reading the identity input '{input}'"),
            &identity_query(input, settings, None),
        )
        .await?;
    let records = tables::records_from_batches(&batches, settings)
        .map_err(|e| format!("identity input '{input}': {e}"))?;
    drop(batches);
    let truth = match &settings.truth {
        Some(t) => Some(string_pairs(
            &engine
                .collect(&format!("reading the truth table '{t}'"), &truth_query(t))
                .await?,
        )?),
        None => None,
    };
    let previous = previous_ids(engine, warehouse).await?;
    let owned = settings.clone();
    let (records, resolution) = tokio::task::spawn_blocking(move || {
        resolve(&records, &owned, &previous, truth.as_ref()).map(|r| (records, r))
    })
    .await??;
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
    let tables = output_tables(&records, settings, &resolution)?;
    Ok((
        tables,
        IdentityReport {
            summary: resolution.summary.clone(),
            accuracy: resolution.accuracy.clone(),
        },
    ))
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
        .find_map(|s| match &s.kind {
            crate::spec::StepKind::Identity { input } => Some(input.clone()),
            _ => None,
        })
        .ok_or_else(|| crate::Error::Spec {
            problems: vec![crate::spec::Problem {
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
    let params_table = IDENTITY_TABLES[3].1;
    let published = engine.register_published().await?;
    if !published.iter().any(|(name, _)| name == params_table) {
        return Err(crate::Error::Spec {
            problems: vec![crate::spec::Problem {
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
    let query = identity_query(&input, &spec.identity, Some(&format!("as_of = {date}")));
    let batches = engine.collect("reading the identity input", &query).await?;
    let records = tables::records_from_batches(&batches, &spec.identity)?;
    let params = tables::parameters_from_batches(&parameters, &spec.identity)?;
    let e = clientele_identity::explain::explain(&records, &spec.identity, &params, a, b)?;
    Ok(clientele_identity::explain::waterfall(&e))
}
