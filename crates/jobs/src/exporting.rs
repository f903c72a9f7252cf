//! The `export` step: every declared export of the step written with suppression, control
//! groups and diffs against the last export, the audiences recorded in `export_audience`, and
//! copies delivered to each export's location once every file is written.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use chrono::NaiveDate;
use clientele_segments::formats::Locale;
use clientele_segments::{
    ExportContext, ExportOutput, ExportReport, ExportSpec, PreviousRows, SuppressionList,
    audience_schema, export_segment,
};
use clientele_sql::Engine;
use clientele_store::{Warehouse, WrittenFile, layout};

use crate::runner::BoxError;
use crate::spec::{AUDIENCE_TABLE, JobSpec};

/// Reads the job's global suppression lists.
pub(crate) fn suppression_list(spec: &JobSpec) -> Result<SuppressionList, BoxError> {
    let mut list = SuppressionList::default();
    for pattern in &spec.suppression_lists {
        let full = spec.base_dir.join(pattern);
        let full = full.to_string_lossy();
        let paths: Vec<_> = glob::glob(&full)
            .map_err(|e| format!("suppression list '{pattern}': {e}"))?
            .filter_map(Result::ok)
            .collect();
        if paths.is_empty() {
            return Err(format!(
                "suppression list '{pattern}' matches no file: a missing list would let suppressed people through"
            )
            .into());
        }
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading the suppression list {}: {e}", path.display()))?;
            list.read(
                &path.display().to_string(),
                &text,
                &spec.identity.default_country_code,
            )?;
        }
    }
    Ok(list)
}

/// The last export's sent rows (customer → fingerprint, row) before `as_of`, and its date.
async fn previous_rows(
    engine: &Engine,
    export: &str,
    as_of: NaiveDate,
) -> Result<Option<(NaiveDate, PreviousRows)>, BoxError> {
    let name = export.replace('\'', "''");
    let sql = format!(
        "select cast(as_of as varchar) as as_of, customer_id, fingerprint, \"row\"
         from history.export_audience
         where export = '{name}' and \"group\" = 'treatment'
           and as_of = (select max(as_of) from history.export_audience
                        where export = '{name}' and as_of < cast('{as_of}' as date))
         order by customer_id"
    );
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
                .ok_or("export_audience columns are not text")
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

/// What the step produced.
pub(crate) struct ExportsDone {
    pub reports: Vec<ExportReport>,
    pub files: Vec<WrittenFile>,
    pub audience: RecordBatch,
    /// The suppression list as applied, for `clientele export` to apply it too.
    pub suppression: RecordBatch,
}

/// The `suppression_list` table: what the job's global lists held when the run exported
/// (standardised emails and E.164 phones).
pub fn suppression_schema() -> arrow::datatypes::SchemaRef {
    std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("kind", arrow::datatypes::DataType::Utf8, false),
        arrow::datatypes::Field::new("value", arrow::datatypes::DataType::Utf8, false),
    ]))
}

fn suppression_batch(list: &SuppressionList) -> Result<RecordBatch, BoxError> {
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
    Ok(RecordBatch::try_new(
        suppression_schema(),
        vec![
            std::sync::Arc::new(arrow::array::StringArray::from(kinds)),
            std::sync::Arc::new(arrow::array::StringArray::from(values)),
        ],
    )?)
}

/// A suppression list from a published `suppression_list` table's rows.
pub fn suppression_from_batches(batches: &[RecordBatch]) -> Result<SuppressionList, BoxError> {
    let mut list = SuppressionList::default();
    for b in batches {
        let kind = b
            .column(0)
            .as_string_opt::<i32>()
            .ok_or("suppression_list.kind is not text")?;
        let value = b
            .column(1)
            .as_string_opt::<i32>()
            .ok_or("suppression_list.value is not text")?;
        for i in 0..b.num_rows() {
            match kind.value(i) {
                "email" => list.emails.insert(value.value(i).to_string()),
                _ => list.phones.insert(value.value(i).to_string()),
            };
        }
    }
    Ok(list)
}

/// Writes every export of the step, then delivers the copies.
pub(crate) async fn run(
    engine: &Engine,
    warehouse: &Warehouse,
    spec: &JobSpec,
    exports: &[&ExportSpec],
    as_of: NaiveDate,
    run_id: &layout::RunId,
) -> Result<ExportsDone, BoxError> {
    let suppression = suppression_list(spec)?;
    let has_closed_accounts = engine
        .plan_schema("select * from customer_view")
        .await?
        .field_with_name("is_account_closed")
        .is_ok();
    engine.register_empty(AUDIENCE_TABLE.1, audience_schema())?;
    engine
        .register_history(AUDIENCE_TABLE.0, AUDIENCE_TABLE.1, AUDIENCE_TABLE.1)
        .await?;
    let mut outputs: Vec<(&ExportSpec, ExportOutput)> = Vec::new();
    for export in exports {
        let dir = format!("exports/{}/as_of={as_of}", export.name);
        let previous = if export.mode() == "full" {
            None
        } else {
            previous_rows(engine, &export.name, as_of).await?
        };
        let ctx = ExportContext {
            engine,
            warehouse,
            as_of,
            staged_dir: layout::staged(run_id, &dir),
            published_dir: dir,
            locale: Locale {
                country: export.country.clone().unwrap_or_else(|| "GB".into()),
                calling_code: spec.identity.default_country_code.clone(),
            },
            suppression: &suppression,
            has_closed_accounts,
            previous,
        };
        outputs.push((export, export_segment(export, &ctx).await?));
    }
    // Every file is written: deliver the copies.
    for (export, out) in &mut outputs {
        let Some(location) = &export.location else {
            continue;
        };
        let target = Warehouse::open(location, &spec.base_dir)
            .map_err(|e| format!("export '{}': location {location}: {e}", export.name))?;
        for (file, data) in &out.files {
            let name = file.path.rsplit('/').next().unwrap_or(&file.path);
            let rel = format!("{}/as_of={as_of}/{name}", export.name);
            target.put(&rel, data.clone()).await.map_err(|e| {
                format!(
                    "export '{}': delivering {name} to {location}: {e}",
                    export.name
                )
            })?;
        }
        out.report.delivered_to = Some(target.url_of(&export.name, true));
        tracing::info!(export = %export.name, location = %target.display(), "export delivered");
    }
    let mut reports = Vec::new();
    let mut files = Vec::new();
    let mut audiences = Vec::new();
    for (_, out) in outputs {
        files.extend(out.files.into_iter().map(|(f, _)| f));
        audiences.push(out.audience);
        reports.push(out.report);
    }
    let audience = arrow::compute::concat_batches(&audience_schema(), &audiences)?;
    Ok(ExportsDone {
        reports,
        files,
        audience,
        suppression: suppression_batch(&suppression)?,
    })
}
