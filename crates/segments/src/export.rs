use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::Bytes;
use clientele_sql::Engine;
use clientele_store::{Warehouse, WrittenFile};

use crate::error::{Error, Result};

/// One export as the job spec declares it.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSpec {
    /// Name of the export (its directory under `exports/`).
    pub name: String,
    /// The segment id (file stem in `sql/segments/`).
    pub segment: String,
    /// Destination format; `csv` is the generic CSV.
    pub format: String,
    /// Columns of `customer_view` to write, in order; `customer_id` is always first.
    pub columns: Vec<String>,
}

/// What one export did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExportReport {
    pub export: String,
    pub segment: String,
    pub format: String,
    /// Members of the segment.
    pub eligible: u64,
    /// Members left out, by reason (`opted_out`, `consent_unknown`, `not_in_customer_view`).
    pub suppressed: BTreeMap<String, u64>,
    /// Rows in the file.
    pub exported: u64,
    /// The file.
    pub file: WrittenFile,
}

impl ExportSpec {
    /// Checks names and format; returns every problem.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let ident = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !ident(&self.name) {
            p.push(format!(
                "export name '{}' must be lower_snake_case",
                self.name
            ));
        }
        if self.format != "csv" {
            p.push(format!("format '{}' is unknown (csv)", self.format));
        }
        for c in &self.columns {
            if !ident(c) {
                p.push(format!(
                    "column '{c}' must be a lower_snake_case column of customer_view"
                ));
            }
        }
        p
    }

    /// The query behind the export: members joined to the customer view, with the suppression reason.
    pub fn query(&self) -> String {
        let cols: String = self
            .columns
            .iter()
            .filter(|c| *c != "customer_id")
            .map(|c| format!(", v.\"{c}\""))
            .collect();
        let segment = self.segment.replace('\'', "''");
        format!(
            "select m.customer_id{cols},
                    case when v.customer_id is null then 'not_in_customer_view'
                         when v.is_opted_out is null then 'consent_unknown'
                         when v.is_opted_out then 'opted_out'
                    end as __suppressed_because
             from segment_membership m
             left join customer_view v on v.customer_id = m.customer_id
             where m.segment = '{segment}'
             order by m.customer_id"
        )
    }
}

/// Prefixes a cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage
/// return at the start) with a single quote, as OWASP recommends for CSV injection.
pub fn neutralise_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => {
            std::borrow::Cow::Owned(format!("'{cell}"))
        }
        _ => std::borrow::Cow::Borrowed(cell),
    }
}

fn csv_bytes(
    header: &[String],
    batches: &[RecordBatch],
    report: &mut ExportReport,
) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    w.write_record(header)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let opts = FormatOptions::default().with_null("");
    for batch in batches {
        let ncols = batch.num_columns();
        let reason = batch.column(ncols - 1).as_string::<i32>();
        let formatters: Vec<ArrayFormatter<'_>> = batch.columns()[..ncols - 1]
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<_, _>>()
            .map_err(|e| Error::Internal(e.to_string()))?;
        for row in 0..batch.num_rows() {
            report.eligible += 1;
            if reason.is_valid(row) {
                *report
                    .suppressed
                    .entry(reason.value(row).to_string())
                    .or_default() += 1;
                continue;
            }
            let mut record = Vec::with_capacity(formatters.len());
            for (i, f) in formatters.iter().enumerate() {
                let text = f.value(row).to_string();
                let is_text = matches!(
                    batch.column(i).data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                );
                record.push(if is_text {
                    neutralise_formula(&text).into_owned()
                } else {
                    text
                });
            }
            w.write_record(&record)
                .map_err(|e| Error::Internal(e.to_string()))?;
            report.exported += 1;
        }
    }
    w.into_inner().map_err(|e| Error::Internal(e.to_string()))
}

/// Writes one export: the CSV at `staged_dir/<name>.csv` and its manifest beside it. Returns the report
/// and the written files (published under `published_dir`).
pub async fn export_segment(
    engine: &Engine,
    warehouse: &Warehouse,
    spec: &ExportSpec,
    staged_dir: &str,
    published_dir: &str,
) -> Result<(ExportReport, Vec<WrittenFile>)> {
    let problems = spec.problems();
    if !problems.is_empty() {
        return Err(Error::BadExport {
            export: spec.name.clone(),
            reason: problems.join("; "),
        });
    }
    let batches = engine
        .collect(&format!("export '{}'", spec.name), &spec.query())
        .await?;
    let mut header = vec!["customer_id".to_string()];
    header.extend(spec.columns.iter().filter(|c| *c != "customer_id").cloned());
    let file_name = format!("{}.csv", spec.name);
    let mut report = ExportReport {
        export: spec.name.clone(),
        segment: spec.segment.clone(),
        format: spec.format.clone(),
        eligible: 0,
        suppressed: BTreeMap::new(),
        exported: 0,
        file: WrittenFile::of_bytes("", 0, &[]),
    };
    let data = csv_bytes(&header, &batches, &mut report)?;
    report.file = WrittenFile::of_bytes(
        format!("{published_dir}/{file_name}"),
        report.exported,
        &data,
    );
    warehouse
        .put(&format!("{staged_dir}/{file_name}"), Bytes::from(data))
        .await?;
    let manifest =
        serde_json::to_vec_pretty(&report).map_err(|e| Error::Internal(e.to_string()))?;
    let manifest_file = WrittenFile::of_bytes(
        format!("{published_dir}/export_manifest.json"),
        0,
        &manifest,
    );
    warehouse
        .put(
            &format!("{staged_dir}/export_manifest.json"),
            Bytes::from(manifest),
        )
        .await?;
    tracing::info!(export = %spec.name, eligible = report.eligible, exported = report.exported, "export written");
    let file = report.file.clone();
    Ok((report, vec![file, manifest_file]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_plain_text_is_not() {
        assert_eq!(
            neutralise_formula("=HYPERLINK(\"x\")"),
            "'=HYPERLINK(\"x\")"
        );
        assert_eq!(neutralise_formula("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise_formula("+49 30 1234"), "'+49 30 1234");
        assert_eq!(neutralise_formula("Zoë"), "Zoë");
    }

    #[test]
    fn bad_specs_list_every_problem() {
        let spec = ExportSpec {
            name: "Bad".into(),
            segment: "s".into(),
            format: "xlsx".into(),
            columns: vec!["e-mail".into()],
        };
        assert_eq!(spec.problems().len(), 3);
    }
}
