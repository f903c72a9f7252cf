use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};

/// Errors of model fitting and scoring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input table lacks a column or has it with the wrong type.
    #[error("model input: {0}")]
    BadInput(String),
    /// A model fitted but its validation metrics fall below a floor declared in the job.
    #[error("model below its quality floor: {0}")]
    BelowFloor(String),
    /// Arrow refused to build the output (a bug).
    #[error("internal error building model output: {0}")]
    Internal(String),
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Scores 1..=5 by rank; see the crate docs for the tie rule. NaN counts as the worst value.
pub fn quintile_scores(values: &[f64], higher_is_better: bool) -> Vec<u8> {
    let n = values.len();
    let key = |v: f64| {
        let v = if v.is_nan() { f64::NEG_INFINITY } else { v };
        if higher_is_better { v } else { -v }
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| key(values[a]).total_cmp(&key(values[b])));
    let mut scores = vec![0u8; n];
    let mut start = 0;
    while start < n {
        let v = key(values[order[start]]);
        let mut end = start;
        while end < n && key(values[order[end]]).total_cmp(&v).is_eq() {
            end += 1;
        }
        let score = 1 + (5 * start / n.max(1)) as u8;
        for &i in &order[start..end] {
            scores[i] = score;
        }
        start = end;
    }
    scores
}

/// The named segment of an RFM cell, from its recency and frequency scores (and, for customers who
/// lapsed after buying often, its monetary score). Every one of the 125 cells has exactly one name;
/// the grid is in docs/models.md.
///
/// "Cannot lose" is the lapsed frequent buyer who also spent the most (monetary 4 or 5).
pub fn rfm_segment(r: u8, f: u8, m: u8) -> &'static str {
    match (r, f) {
        (4..=5, 4..=5) => "champions",
        (4..=5, 3) | (3, 3..=5) => "loyal",
        (4..=5, 2) => "promising",
        (4..=5, _) => "new",
        (2..=3, _) if f <= 2 => "hibernating",
        (_, 4..=5) if m >= 4 => "cannot_lose",
        (_, 3..=5) => "at_risk",
        _ => "lost",
    }
}

/// The `customer_rfm` table.
pub fn rfm_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("recency_days", DataType::Int64, false),
        Field::new("frequency", DataType::Int64, false),
        Field::new("monetary", DataType::Float64, false),
        Field::new("r_score", DataType::Int32, false),
        Field::new("f_score", DataType::Int32, false),
        Field::new("m_score", DataType::Int32, false),
        Field::new("rfm_cell", DataType::Utf8, false),
        Field::new("rfm_segment", DataType::Utf8, false),
    ]))
}

fn column<'a>(batch: &'a RecordBatch, name: &str, ty: &DataType) -> Result<&'a dyn Array> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| Error::BadInput(format!("the RFM input has no column '{name}'")))?;
    if col.data_type() != ty {
        return Err(Error::BadInput(format!(
            "column '{name}' is {} but RFM needs {ty}",
            col.data_type()
        )));
    }
    if col.null_count() > 0 {
        return Err(Error::BadInput(format!(
            "column '{name}' has {} empty values",
            col.null_count()
        )));
    }
    Ok(col.as_ref())
}

/// Scores every customer of `input` (one row per customer; see the crate docs for the columns).
pub fn score_rfm(input: &[RecordBatch]) -> Result<RecordBatch> {
    let mut ids: Vec<String> = Vec::new();
    let mut recency: Vec<i64> = Vec::new();
    let mut frequency: Vec<i64> = Vec::new();
    let mut monetary: Vec<f64> = Vec::new();
    for batch in input {
        let id = column(batch, "customer_id", &DataType::Utf8)?.as_string::<i32>();
        let r = column(batch, "recency_days", &DataType::Int64)?.as_primitive::<Int64Type>();
        let f = column(batch, "frequency", &DataType::Int64)?.as_primitive::<Int64Type>();
        let m = column(batch, "monetary", &DataType::Float64)?.as_primitive::<Float64Type>();
        ids.extend(id.iter().map(|s| s.unwrap_or_default().to_string()));
        recency.extend(r.values().iter());
        frequency.extend(f.values().iter());
        monetary.extend(m.values().iter());
    }
    let rs = quintile_scores(
        &recency.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        false,
    );
    let fs = quintile_scores(
        &frequency.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        true,
    );
    let ms = quintile_scores(&monetary, true);
    let cells: Vec<String> = (0..ids.len())
        .map(|i| format!("{}{}{}", rs[i], fs[i], ms[i]))
        .collect();
    let segments: Vec<&str> = (0..ids.len())
        .map(|i| rfm_segment(rs[i], fs[i], ms[i]))
        .collect();
    let to_i32 = |s: &[u8]| Int32Array::from(s.iter().map(|&v| i32::from(v)).collect::<Vec<_>>());
    RecordBatch::try_new(
        rfm_schema(),
        vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(Int64Array::from(recency)),
            Arc::new(Int64Array::from(frequency)),
            Arc::new(Float64Array::from(monetary)),
            Arc::new(to_i32(&rs)),
            Arc::new(to_i32(&fs)),
            Arc::new(to_i32(&ms)),
            Arc::new(StringArray::from(cells)),
            Arc::new(StringArray::from(segments)),
        ],
    )
    .map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quintiles_cut_by_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(
            quintile_scores(&v, true),
            vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
        );
        assert_eq!(
            quintile_scores(&v, false),
            vec![5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
        );
        assert!(quintile_scores(&[], true).is_empty());
    }

    #[test]
    fn ties_share_a_score_whatever_the_order() {
        let a = quintile_scores(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0], true);
        assert_eq!(a, vec![1, 1, 1, 1, 1, 1, 4, 4, 5, 5]);
        let b = quintile_scores(&[5.0, 1.0, 4.0, 1.0, 3.0, 1.0, 2.0, 1.0, 1.0, 1.0], true);
        assert_eq!(b, vec![5, 1, 5, 1, 4, 1, 4, 1, 1, 1]);
    }

    #[test]
    fn rfm_cells_combine_the_three_scores() -> Result<()> {
        let input = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("customer_id", DataType::Utf8, false),
                Field::new("recency_days", DataType::Int64, false),
                Field::new("frequency", DataType::Int64, false),
                Field::new("monetary", DataType::Float64, false),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c", "d", "e"])),
                Arc::new(Int64Array::from(vec![1, 400, 30, 90, 200])),
                Arc::new(Int64Array::from(vec![9, 1, 4, 2, 3])),
                Arc::new(Float64Array::from(vec![900.0, 10.0, 300.0, 50.0, 80.0])),
            ],
        )
        .map_err(|e| Error::Internal(e.to_string()))?;
        let out = score_rfm(&[input])?;
        let cells = out.column(7).as_string::<i32>();
        assert_eq!(
            cells.iter().flatten().collect::<Vec<_>>(),
            vec!["555", "111", "444", "322", "233"]
        );
        Ok(())
    }

    #[test]
    fn every_cell_has_one_segment_name() {
        let mut seen = std::collections::BTreeSet::new();
        for r in 1..=5 {
            for f in 1..=5 {
                for m in 1..=5 {
                    seen.insert(rfm_segment(r, f, m));
                }
            }
        }
        let names: Vec<&str> = seen.into_iter().collect();
        assert_eq!(
            names,
            vec![
                "at_risk",
                "cannot_lose",
                "champions",
                "hibernating",
                "lost",
                "loyal",
                "new",
                "promising"
            ]
        );
        assert_eq!(rfm_segment(5, 5, 5), "champions");
        assert_eq!(rfm_segment(5, 1, 1), "new");
        assert_eq!(rfm_segment(1, 5, 5), "cannot_lose");
        assert_eq!(rfm_segment(1, 5, 2), "at_risk");
        assert_eq!(rfm_segment(2, 3, 5), "at_risk");
        assert_eq!(rfm_segment(3, 1, 5), "hibernating");
        assert_eq!(rfm_segment(1, 2, 5), "lost");
        assert_eq!(rfm_segment(3, 4, 1), "loyal");
    }

    #[test]
    fn missing_columns_are_named() {
        let empty = RecordBatch::new_empty(Arc::new(Schema::new(vec![Field::new(
            "customer_id",
            DataType::Utf8,
            false,
        )])));
        assert!(
            score_rfm(&[empty]).is_err_and(|e| e.to_string().contains("no column 'recency_days'"))
        );
    }
}
