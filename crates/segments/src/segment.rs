use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, Date32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use clientele_sql::Engine;
use clientele_store::{Warehouse, WrittenFile};

use crate::error::{Error, Result};

/// One segment definition.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Identifier: the file stem, as stored in `segment_membership.segment`.
    pub id: String,
    /// Display name from the header.
    pub name: String,
    /// What the segment is for.
    pub description: String,
    /// Who owns it.
    pub owner: String,
    /// The file.
    pub path: PathBuf,
    /// The query.
    pub sql: String,
    /// Score columns of `customer_scores` the segment is meaningless without (`-- needs: clv,
    /// propensity`): when a model did not run and left one empty, the segment and its exports are
    /// skipped with the reason instead of being evaluated to nobody.
    pub needs: Vec<String>,
}

/// Size of one segment in a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SegmentSize {
    pub segment: String,
    pub name: String,
    pub customers: u64,
    /// Why the segment was not evaluated this run (a score it needs is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Reads `key: value` pairs from the leading `--` comment lines.
pub fn parse_segment_header(sql: &str) -> BTreeMap<String, String> {
    sql.lines()
        .map_while(|l| l.trim().strip_prefix("--"))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect()
}

/// Loads every `*.sql` in `dir`, sorted by file name. A missing directory holds no segments.
pub fn load_segments(dir: &Path) -> Result<Vec<Segment>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let bad = |reason: String| Error::BadSegment {
            path: path.clone(),
            reason,
        };
        let sql = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            || id.is_empty()
        {
            return Err(bad(format!(
                "segment file name '{id}' must be lower_snake_case"
            )));
        }
        let header = parse_segment_header(&sql);
        let name = header
            .get("name")
            .cloned()
            .ok_or_else(|| bad("the header needs a '-- name: ...' line".into()))?;
        out.push(Segment {
            id,
            name,
            description: header.get("description").cloned().unwrap_or_default(),
            owner: header.get("owner").cloned().unwrap_or_default(),
            path: path.clone(),
            sql,
            needs: header
                .get("needs")
                .map(|n| {
                    n.split(',')
                        .map(|c| c.trim().to_string())
                        .filter(|c| !c.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Why `segment` cannot be evaluated this run: a score column it needs has no value for any
/// customer (the model behind it was skipped). `None` when every need is met.
pub async fn unmet_needs(engine: &Engine, segment: &Segment) -> Result<Option<String>> {
    for column in &segment.needs {
        let ok = column
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok || column.is_empty() {
            return Err(Error::BadSegment {
                path: segment.path.clone(),
                reason: format!("'-- needs: {column}' is not a column name"),
            });
        }
        let batches = engine
            .collect(
                &format!(
                    "checking that segment '{}' ({}) has its scores",
                    segment.id,
                    segment.path.display()
                ),
                &format!("select count(\"{column}\") as n from customer_scores"),
            )
            .await?;
        let n = batches
            .first()
            .filter(|b| b.num_rows() > 0)
            .and_then(|b| {
                b.column(0)
                    .as_primitive_opt::<arrow::datatypes::Int64Type>()
            })
            .map_or(0, |a| a.value(0));
        if n == 0 {
            return Ok(Some(format!(
                "needs customer_scores.{column}, which no customer has this run (the model behind it did not run: see the models section)"
            )));
        }
    }
    Ok(None)
}

/// The `segment_membership` table.
pub fn membership_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("as_of_date", DataType::Date32, false),
        Field::new("segment", DataType::Utf8, false),
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("attributes", DataType::Utf8, false),
    ]))
}

/// Rows of one segment: customer id and its attributes as a JSON object.
fn members(segment: &Segment, batches: &[RecordBatch]) -> Result<Vec<(String, String)>> {
    let bad = |reason: String| Error::BadSegment {
        path: segment.path.clone(),
        reason,
    };
    let mut rows = Vec::new();
    for batch in batches {
        let idx = batch
            .schema()
            .index_of("customer_id")
            .map_err(|_| bad("the query must return a customer_id column".into()))?;
        let ids = arrow::compute::cast(batch.column(idx), &DataType::Utf8)
            .map_err(|e| bad(e.to_string()))?;
        let ids = ids.as_string::<i32>();
        let attrs = batch
            .project(
                &(0..batch.num_columns())
                    .filter(|i| *i != idx)
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| Error::Internal(e.to_string()))?;
        let json_rows = attributes_json(&attrs)?;
        for (i, json) in json_rows.into_iter().enumerate() {
            if ids.is_null(i) {
                return Err(bad("the query returned an empty customer_id".into()));
            }
            rows.push((ids.value(i).to_string(), json));
        }
    }
    rows.sort();
    if let Some(w) = rows.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(bad(format!(
            "the query returns customer {} more than once",
            w[0].0
        )));
    }
    Ok(rows)
}

fn attributes_json(batch: &RecordBatch) -> Result<Vec<String>> {
    if batch.num_columns() == 0 {
        return Ok(vec!["{}".to_string(); batch.num_rows()]);
    }
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
        w.write(batch).map_err(|e| Error::Internal(e.to_string()))?;
        w.finish().map_err(|e| Error::Internal(e.to_string()))?;
    }
    let text = String::from_utf8(buf).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// Membership rows written a batch at a time: one segment's rows at most, and never so many that
/// a batch's text nears the 2 GiB a string array holds (all segments in one batch did at
/// 10,000,000 persons).
const MEMBERSHIP_BATCH_ROWS: usize = 65_536;

/// Evaluates every segment and writes `segment_membership` for the as-of date, one segment after
/// the other: only one segment's members are held at a time.
pub async fn evaluate_segments(
    engine: &Engine,
    warehouse: &Warehouse,
    segments: &[Segment],
    as_of: NaiveDate,
    staged: &str,
    published: &str,
) -> Result<(WrittenFile, Vec<SegmentSize>)> {
    let days = clientele_sql::date32(as_of);
    let mut sizes = Vec::new();
    let mut writer = warehouse.parquet_writer(staged, membership_schema())?;
    for s in segments {
        if let Some(why) = unmet_needs(engine, s).await? {
            tracing::warn!(segment = %s.id, reason = %why, "segment skipped");
            sizes.push(SegmentSize {
                segment: s.id.clone(),
                name: s.name.clone(),
                customers: 0,
                skipped: Some(why),
            });
            continue;
        }
        let batches = engine
            .collect(
                &format!("segment '{}' ({})", s.id, s.path.display()),
                &s.sql,
            )
            .await?;
        let rows = members(s, &batches)?;
        drop(batches);
        tracing::info!(segment = %s.id, customers = rows.len(), "segment evaluated");
        sizes.push(SegmentSize {
            segment: s.id.clone(),
            name: s.name.clone(),
            customers: rows.len() as u64,
            skipped: None,
        });
        for chunk in rows.chunks(MEMBERSHIP_BATCH_ROWS) {
            writer.write(&membership_batch(days, &s.id, chunk)?).await?;
        }
    }
    Ok((writer.finish(published).await?, sizes))
}

/// The `segment_membership` rows of `members` (customer id, attributes) of one segment.
fn membership_batch(days: i32, segment: &str, members: &[(String, String)]) -> Result<RecordBatch> {
    let n = members.len();
    RecordBatch::try_new(
        membership_schema(),
        vec![
            Arc::new(Date32Array::from(vec![days; n])),
            Arc::new(StringArray::from(vec![segment; n])),
            Arc::new(StringArray::from_iter_values(
                members.iter().map(|(id, _)| id.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                members.iter().map(|(_, a)| a.as_str()),
            )),
        ],
    )
    .map_err(|e| Error::Internal(e.to_string()))
}
