use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
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
    // Rows of one value take one score whatever their order among themselves.
    order.sort_unstable_by(|&a, &b| key(values[a]).total_cmp(&key(values[b])));
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

/// The names of the 125 RFM cells, read from the table of `sql/queries/rfm_segment_names.sql`
/// (columns `r_score`, `f_score`, `m_score`, `rfm_segment`), so that the grid lives in SQL where
/// analysts read and change it.
#[derive(Debug, Clone)]
pub struct RfmSegmentNames {
    names: Vec<String>,
}

impl RfmSegmentNames {
    /// Reads the grid, refusing a score outside 1..=5, an empty name, a cell named twice or a cell
    /// left unnamed.
    pub fn from_batches(batches: &[RecordBatch]) -> Result<Self> {
        let mut names: Vec<Option<String>> = vec![None; 125];
        for batch in batches {
            let score = |name: &str| -> Result<Vec<i32>> {
                let col = batch.column_by_name(name).ok_or_else(|| {
                    Error::BadInput(format!("the RFM segment names have no column '{name}'"))
                })?;
                let col = arrow::compute::cast(col, &DataType::Int32)
                    .map_err(|e| Error::BadInput(format!("RFM segment names, '{name}': {e}")))?;
                let col = col.as_primitive::<arrow::datatypes::Int32Type>();
                (0..col.len())
                    .map(|i| {
                        if col.is_null(i) {
                            return Err(Error::BadInput(format!(
                                "the RFM segment names have an empty '{name}'"
                            )));
                        }
                        Ok(col.value(i))
                    })
                    .collect()
            };
            let (r, f, m) = (score("r_score")?, score("f_score")?, score("m_score")?);
            let label = batch.column_by_name("rfm_segment").ok_or_else(|| {
                Error::BadInput("the RFM segment names have no column 'rfm_segment'".into())
            })?;
            let label = arrow::compute::cast(label, &DataType::Utf8)
                .map_err(|e| Error::BadInput(format!("RFM segment names, 'rfm_segment': {e}")))?;
            let label = label.as_string::<i32>();
            for i in 0..batch.num_rows() {
                let cell = format!("{}{}{}", r[i], f[i], m[i]);
                let index = Self::index(r[i], f[i], m[i]).ok_or_else(|| {
                    Error::BadInput(format!("RFM cell {cell}: scores run from 1 to 5"))
                })?;
                let name = if label.is_null(i) {
                    ""
                } else {
                    label.value(i).trim()
                };
                if name.is_empty() {
                    return Err(Error::BadInput(format!(
                        "RFM cell {cell} has an empty name"
                    )));
                }
                if let Some(first) = &names[index] {
                    return Err(Error::BadInput(format!(
                        "RFM cell {cell} is named twice ('{first}' and '{name}')"
                    )));
                }
                names[index] = Some(name.to_string());
            }
        }
        let missing: Vec<String> = (0..125)
            .filter(|&i| names[i].is_none())
            .map(|i| format!("{}{}{}", i / 25 + 1, i / 5 % 5 + 1, i % 5 + 1))
            .collect();
        if !missing.is_empty() {
            return Err(Error::BadInput(format!(
                "{} RFM cells have no name (first {})",
                missing.len(),
                missing[0]
            )));
        }
        Ok(Self {
            names: names.into_iter().flatten().collect(),
        })
    }

    fn index(r: i32, f: i32, m: i32) -> Option<usize> {
        let ok = |s: i32| (1..=5).contains(&s);
        (ok(r) && ok(f) && ok(m)).then(|| ((r - 1) * 25 + (f - 1) * 5 + (m - 1)) as usize)
    }

    /// The name of a cell; scores outside 1..=5 have none.
    pub fn name(&self, r: u8, f: u8, m: u8) -> Option<&str> {
        Self::index(i32::from(r), i32::from(f), i32::from(m)).map(|i| self.names[i].as_str())
    }
}

/// The `customer_rfm` table.
pub fn rfm_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("recency_days", DataType::Int64, false),
        Field::new("frequency", DataType::Int64, false),
        Field::new("monetary_value", DataType::Float64, false),
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

/// Scores every customer of `input` (one row per customer; see the crate docs for the columns) and
/// names each cell from `names`.
pub fn score_rfm(input: &[RecordBatch], names: &RfmSegmentNames) -> Result<RecordBatch> {
    let internal = |e: arrow::error::ArrowError| Error::Internal(e.to_string());
    let mut ids: Vec<&dyn Array> = Vec::with_capacity(input.len());
    let mut recency: Vec<i64> = Vec::new();
    let mut frequency: Vec<i64> = Vec::new();
    let mut monetary: Vec<f64> = Vec::new();
    for batch in input {
        ids.push(column(batch, "customer_id", &DataType::Utf8)?);
        let r = column(batch, "recency_days", &DataType::Int64)?.as_primitive::<Int64Type>();
        let f = column(batch, "frequency", &DataType::Int64)?.as_primitive::<Int64Type>();
        let m = column(batch, "monetary_value", &DataType::Float64)?.as_primitive::<Float64Type>();
        recency.extend(r.values().iter());
        frequency.extend(f.values().iter());
        monetary.extend(m.values().iter());
    }
    // The ids as read, in one array (a missing id is written empty).
    let ids = crate::scores::joined_text(&ids)?;
    let ids: ArrayRef = if ids.null_count() == 0 {
        Arc::new(ids)
    } else {
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(Option::unwrap_or_default),
        ))
    };
    let rs = quintile_scores(
        &recency.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        false,
    );
    let fs = quintile_scores(
        &frequency.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        true,
    );
    let ms = quintile_scores(&monetary, true);
    // The 125 cells' labels, written once and referred to by every row.
    let labels: Vec<String> = (0..125)
        .map(|c| format!("{}{}{}", 1 + c / 25, 1 + c / 5 % 5, 1 + c % 5))
        .collect();
    let cell = |i: usize| {
        let score = |s: u8| usize::from(s.clamp(1, 5) - 1);
        labels[score(rs[i]) * 25 + score(fs[i]) * 5 + score(ms[i])].as_str()
    };
    let cells = StringArray::from_iter_values((0..rs.len()).map(cell));
    let segments = StringArray::from_iter_values(
        (0..rs.len()).map(|i| names.name(rs[i], fs[i], ms[i]).unwrap_or_default()),
    );
    let to_i32 = |s: &[u8]| Int32Array::from_iter_values(s.iter().map(|&v| i32::from(v)));
    RecordBatch::try_new(
        rfm_schema(),
        vec![
            ids,
            Arc::new(Int64Array::from(recency)),
            Arc::new(Int64Array::from(frequency)),
            Arc::new(Float64Array::from(monetary)),
            Arc::new(to_i32(&rs)),
            Arc::new(to_i32(&fs)),
            Arc::new(to_i32(&ms)),
            Arc::new(cells),
            Arc::new(segments),
        ],
    )
    .map_err(internal)
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
                Field::new("monetary_value", DataType::Float64, false),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c", "d", "e"])),
                Arc::new(Int64Array::from(vec![1, 400, 30, 90, 200])),
                Arc::new(Int64Array::from(vec![9, 1, 4, 2, 3])),
                Arc::new(Float64Array::from(vec![900.0, 10.0, 300.0, 50.0, 80.0])),
            ],
        )
        .map_err(|e| Error::Internal(e.to_string()))?;
        let names = RfmSegmentNames::from_batches(&[grid(by_recency, &[], &[])])?;
        let out = score_rfm(&[input], &names)?;
        assert_eq!(
            out.column(8)
                .as_string::<i32>()
                .iter()
                .flatten()
                .collect::<Vec<_>>(),
            vec!["r5", "r1", "r4", "r3", "r2"]
        );
        let cells = out.column(7).as_string::<i32>();
        assert_eq!(
            cells.iter().flatten().collect::<Vec<_>>(),
            vec!["555", "111", "444", "322", "233"]
        );
        Ok(())
    }

    /// A grid table as the query returns it, naming every cell by `name`, without the cells in `skip`
    /// and with the cells in `extra` once more.
    fn grid(name: impl Fn(i32, i32, i32) -> String, skip: &[i32], extra: &[i32]) -> RecordBatch {
        let mut cells: Vec<(i32, i32, i32)> = Vec::new();
        for r in 1..=5 {
            for f in 1..=5 {
                for m in 1..=5 {
                    if !skip.contains(&(r * 100 + f * 10 + m)) {
                        cells.push((r, f, m));
                    }
                }
            }
        }
        cells.extend(extra.iter().map(|c| (c / 100, c / 10 % 10, c % 10)));
        let col = |k: fn(&(i32, i32, i32)) -> i32| {
            Arc::new(Int32Array::from(cells.iter().map(k).collect::<Vec<_>>())) as _
        };
        let labels: Vec<String> = cells.iter().map(|&(r, f, m)| name(r, f, m)).collect();
        RecordBatch::try_from_iter(vec![
            ("r_score", col(|c| c.0)),
            ("f_score", col(|c| c.1)),
            ("m_score", col(|c| c.2)),
            ("rfm_segment", Arc::new(StringArray::from(labels)) as _),
        ])
        .unwrap_or_else(|e| panic!("test grid: {e}"))
    }

    fn by_recency(r: i32, _f: i32, _m: i32) -> String {
        format!("r{r}")
    }

    #[test]
    fn cells_are_named_from_the_grid() -> Result<()> {
        let names =
            RfmSegmentNames::from_batches(&[grid(|r, f, m| format!("{r}{f}{m}"), &[], &[])])?;
        assert_eq!(names.name(5, 1, 3), Some("513"));
        assert_eq!(names.name(1, 5, 5), Some("155"));
        assert_eq!(names.name(0, 1, 1), None);
        assert_eq!(names.name(6, 1, 1), None);
        Ok(())
    }

    #[test]
    fn a_grid_with_a_gap_or_a_double_is_refused() {
        let gap = RfmSegmentNames::from_batches(&[grid(by_recency, &[324], &[])]);
        assert!(gap.is_err_and(|e| {
            e.to_string()
                .contains("1 RFM cells have no name (first 324)")
        }));
        let double = RfmSegmentNames::from_batches(&[grid(by_recency, &[], &[215])]);
        assert!(double.is_err_and(|e| e.to_string().contains("215 is named twice")));
        let out_of_range = RfmSegmentNames::from_batches(&[grid(by_recency, &[], &[615])]);
        assert!(out_of_range.is_err_and(|e| e.to_string().contains("615")));
        let empty = RfmSegmentNames::from_batches(&[grid(
            |r, f, m| {
                if (r, f, m) == (1, 1, 1) {
                    " ".into()
                } else {
                    "x".into()
                }
            },
            &[],
            &[],
        )]);
        assert!(empty.is_err_and(|e| e.to_string().contains("111 has an empty name")));
    }

    #[test]
    fn missing_columns_are_named() -> Result<()> {
        let empty = RecordBatch::new_empty(Arc::new(Schema::new(vec![Field::new(
            "customer_id",
            DataType::Utf8,
            false,
        )])));
        assert!(
            score_rfm(
                &[empty],
                &RfmSegmentNames::from_batches(&[grid(by_recency, &[], &[])])?
            )
            .is_err_and(|e| e.to_string().contains("no column 'recency_days'"))
        );
        Ok(())
    }
}
