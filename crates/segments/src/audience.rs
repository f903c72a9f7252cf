//! What an export needs besides the segment: the global suppression lists, the table that
//! records them as applied, and the audience the export sent last time (for adds and diffs).
//! The export step and `clientele export` both use these, so each rule has one definition.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use chrono::NaiveDate;
use clientele_sql::Engine;
use clientele_sql::queries;

use crate::error::{Error, Result};
use crate::{PreviousRows, SuppressionList};

/// Reads the global suppression lists: CSV files matching `patterns` (globs, relative to
/// `base_dir`), each with an `email` and/or `phone` column; `calling_code` completes national
/// phone numbers. A pattern that matches no file is an error: a missing list would let suppressed
/// people through.
pub fn load_suppression_lists(
    patterns: &[String],
    base_dir: &Path,
    calling_code: &str,
) -> Result<SuppressionList> {
    let mut list = SuppressionList::default();
    for pattern in patterns {
        let bad =
            |reason: String| Error::Suppression(format!("suppression list '{pattern}'{reason}"));
        let full = base_dir.join(pattern);
        let full = full.to_string_lossy();
        let paths: Vec<_> = glob::glob(&full)
            .map_err(|e| bad(format!(": {e}")))?
            .filter_map(std::result::Result::ok)
            .collect();
        if paths.is_empty() {
            return Err(bad(
                " matches no file: a missing list would let suppressed people through".into(),
            ));
        }
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Error::Suppression(format!(
                    "reading the suppression list {}: {e}",
                    path.display()
                ))
            })?;
            list.read(&path.display().to_string(), &text, calling_code)?;
        }
    }
    Ok(list)
}

/// The `suppression_list` table: what the job's global lists held when the run exported
/// (standardised emails and E.164 phones).
pub fn suppression_schema() -> arrow::datatypes::SchemaRef {
    std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("kind", arrow::datatypes::DataType::Utf8, false),
        arrow::datatypes::Field::new("value", arrow::datatypes::DataType::Utf8, false),
    ]))
}

/// The `suppression_list` rows of `list`.
pub fn suppression_batch(list: &SuppressionList) -> Result<RecordBatch> {
    let mut kinds = Vec::new();
    let mut values = Vec::new();
    for e in &list.emails {
        kinds.push("email");
        values.push(e.as_str());
    }
    for p in &list.phones {
        kinds.push("phone");
        values.push(p.as_str());
    }
    for p in &list.postal {
        kinds.push("postal");
        values.push(p.as_str());
    }
    RecordBatch::try_new(
        suppression_schema(),
        vec![
            std::sync::Arc::new(arrow::array::StringArray::from(kinds)),
            std::sync::Arc::new(arrow::array::StringArray::from(values)),
        ],
    )
    .map_err(|e| Error::Internal(e.to_string()))
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// The customers any of whose contact points, on any record linked to them, a global suppression
/// list holds (`sql/queries/listed_customers.sql`). Reads `int_customer_contacts`, which the
/// identity step writes; without it (a job with no identity step, a warehouse of an older version)
/// the set is empty and only the exported contact itself is checked against the list.
pub async fn listed_customers(
    engine: &Engine,
    list: &SuppressionList,
) -> Result<std::collections::HashSet<String>> {
    let ctx = engine.context();
    let has_contacts = ctx.table_exist("int_customer_contacts").map_err(internal)?;
    if list.is_empty() || !has_contacts {
        return Ok(std::collections::HashSet::new());
    }
    // The query reads the list under its published name; a table of that name already in the
    // engine is put back afterwards.
    const LIST: &str = "suppression_list";
    let previous = ctx.deregister_table(LIST).map_err(internal)?;
    ctx.register_batch(LIST, suppression_batch(list)?)
        .map_err(internal)?;
    let result = engine
        .collect(
            "finding the customers on the suppression lists",
            queries::LISTED_CUSTOMERS.text(),
        )
        .await;
    ctx.deregister_table(LIST).map_err(internal)?;
    if let Some(t) = previous {
        ctx.register_table(LIST, t).map_err(internal)?;
    }
    let mut out = std::collections::HashSet::new();
    for b in result? {
        let ids = b
            .column(0)
            .as_string_opt::<i32>()
            .ok_or_else(|| Error::Internal("listed_customers.customer_id is not text".into()))?;
        out.extend(ids.iter().flatten().map(str::to_string));
    }
    Ok(out)
}

/// The emails, phones and postal keys that customers who opted out hold, shared ones included, from
/// `int_customer_contact_suppression` (`sql/intermediate/`); empty when that table is not
/// registered (a job without identity resolution, a warehouse of an older version).
pub async fn opted_out_contacts(engine: &Engine) -> Result<SuppressionList> {
    const TABLE: &str = "int_customer_contact_suppression";
    let exists = engine
        .context()
        .table_exist(TABLE)
        .map_err(|e| Error::Internal(e.to_string()))?;
    if !exists {
        return Ok(SuppressionList::default());
    }
    let batches = engine
        .collect(
            "reading the contact points of opted-out customers",
            &format!("select distinct contact_kind, contact_key from {TABLE}"),
        )
        .await?;
    suppression_from_batches(&batches)
}

/// A suppression list from a published `suppression_list` table's rows.
pub fn suppression_from_batches(batches: &[RecordBatch]) -> Result<SuppressionList> {
    let mut list = SuppressionList::default();
    for b in batches {
        let kind = b
            .column(0)
            .as_string_opt::<i32>()
            .ok_or_else(|| Error::Internal("suppression_list.kind is not text".into()))?;
        let value = b
            .column(1)
            .as_string_opt::<i32>()
            .ok_or_else(|| Error::Internal("suppression_list.value is not text".into()))?;
        for i in 0..b.num_rows() {
            match kind.value(i) {
                "email" => list.emails.insert(value.value(i).to_string()),
                "postal" => list.postal.insert(value.value(i).to_string()),
                _ => list.phones.insert(value.value(i).to_string()),
            };
        }
    }
    Ok(list)
}

/// The last export's sent rows (customer → fingerprint, row) before `as_of`, and its date.
///
/// Reads `history.export_audience`, which must be registered.
pub async fn previous_audience(
    engine: &Engine,
    export: &str,
    as_of: NaiveDate,
) -> Result<Option<(NaiveDate, PreviousRows)>> {
    let sql = queries::PREVIOUS_AUDIENCE.fill(&[
        ("export", &export.replace('\'', "''")),
        ("as_of", &queries::date_param(as_of)),
    ])?;
    let batches = engine
        .collect(
            &format!("reading the last audience of export '{export}'"),
            &sql,
        )
        .await?;
    let mut date = None;
    let mut rows = BTreeMap::new();
    for b in &batches {
        let col = |i: usize| {
            b.column(i)
                .as_string_opt::<i32>()
                .ok_or_else(|| Error::Internal("export_audience columns are not text".into()))
        };
        let (d, id, fp, row) = (col(0)?, col(1)?, col(2)?, col(3)?);
        for i in 0..b.num_rows() {
            if date.is_none() {
                date = NaiveDate::parse_from_str(d.value(i), "%Y-%m-%d").ok();
            }
            rows.insert(
                id.value(i).to_string(),
                (
                    if fp.is_null(i) {
                        String::new()
                    } else {
                        fp.value(i).to_string()
                    },
                    if row.is_null(i) {
                        "[]".to_string()
                    } else {
                        row.value(i).to_string()
                    },
                ),
            );
        }
    }
    Ok(date.map(|d| (d, rows)))
}

/// The rows an audience batch ([`crate::audience_schema`]) sent: the treatment group's customers
/// with their fingerprints and cells, read by column name.
pub fn sent_rows(audience: &RecordBatch) -> Result<PreviousRows> {
    let column = |name: &str| {
        audience
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| Error::Internal(format!("the audience has no text column '{name}'")))
    };
    let (ids, groups, fps, cells) = (
        column("customer_id")?,
        column("group")?,
        column("fingerprint")?,
        column("row")?,
    );
    let mut rows = PreviousRows::new();
    for i in 0..audience.num_rows() {
        if groups.value(i) != "treatment" {
            continue;
        }
        rows.insert(
            ids.value(i).to_string(),
            (
                if fps.is_null(i) {
                    String::new()
                } else {
                    fps.value(i).to_string()
                },
                if cells.is_null(i) {
                    "[]".to_string()
                } else {
                    cells.value(i).to_string()
                },
            ),
        );
    }
    Ok(rows)
}
