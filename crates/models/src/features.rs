//! Feature tables for the classifiers: rows read from a query's Arrow batches, and the encoding
//! (standardisation, one-hot levels) learnt on training rows and saved with the model.
//!
//! A feature query returns `customer_id`, optionally `label` (0 or 1), optionally metadata columns
//! whose names start with `_` (`_snapshot_date`, `_group`), and features: text columns are
//! categorical, booleans are 0/1, every number is numeric. An empty numeric value is missing (NaN):
//! the boosted trees route it at each split, logistic regression imputes the training mean.

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, Float64Type, Schema};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::rfm::{Error, Result};

/// The level that stands for an empty categorical value.
pub const MISSING_LEVEL: &str = "(missing)";

/// At most this many levels of one categorical feature get their own column (the most frequent);
/// the rest share none (all zeros), like unseen levels at scoring time.
const MAX_LEVELS: usize = 30;

/// Text values held in one buffer (an id per row without an allocation per row).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextColumn {
    text: String,
    ends: Vec<usize>,
}

impl TextColumn {
    /// Appends a value.
    pub fn push(&mut self, value: &str) {
        self.text.push_str(value);
        self.ends.push(self.text.len());
    }

    /// The value of row `i`, empty past the end.
    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 {
            0
        } else {
            self.ends.get(i - 1).copied().unwrap_or(self.text.len())
        };
        let end = self.ends.get(i).copied().unwrap_or(start);
        self.text.get(start..end).unwrap_or_default()
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The values in row order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl<S: AsRef<str>> FromIterator<S> for TextColumn {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut c = TextColumn::default();
        for v in iter {
            c.push(v.as_ref());
        }
        c
    }
}

/// Text values as codes into the list of distinct values (4 bytes a row); code 0 is an empty
/// value.
#[derive(Debug, Clone, PartialEq)]
pub struct CodedColumn {
    /// The distinct values by code; `values[0]` stands for an empty value and is never read.
    values: Vec<String>,
    codes: Vec<u32>,
}

impl Default for CodedColumn {
    fn default() -> Self {
        Self {
            values: vec![String::new()],
            codes: Vec::new(),
        }
    }
}

impl CodedColumn {
    /// The code of an empty value.
    pub const EMPTY: u32 = 0;

    /// The value of row `i` (`None` when empty or past the end).
    pub fn get(&self, i: usize) -> Option<&str> {
        self.codes.get(i).and_then(|&c| self.value_of(c))
    }

    /// The value a code stands for (`None` for [`CodedColumn::EMPTY`]).
    pub fn value_of(&self, code: u32) -> Option<&str> {
        if code == Self::EMPTY {
            return None;
        }
        self.values.get(code as usize).map(String::as_str)
    }

    /// Each row's code.
    pub fn codes(&self) -> &[u32] {
        &self.codes
    }

    /// Number of codes, the empty one included (codes are below it).
    pub fn code_count(&self) -> usize {
        self.values.len()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// The values in row order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Option<&str>> + '_ {
        self.codes.iter().map(|&c| self.value_of(c))
    }

    /// The rows at `rows`, in that order (the list of values is shared as it is).
    fn select(&self, rows: &[usize]) -> Self {
        Self {
            values: self.values.clone(),
            codes: rows.iter().map(|&i| self.codes[i]).collect(),
        }
    }
}

/// Builds a [`CodedColumn`], finding each value's code.
#[derive(Debug, Default)]
struct CodedBuilder {
    column: CodedColumn,
    lookup: std::collections::HashMap<String, u32>,
}

impl CodedBuilder {
    fn push(&mut self, value: Option<&str>) {
        let code = match value {
            None => CodedColumn::EMPTY,
            Some(v) => match self.lookup.get(v) {
                Some(&c) => c,
                None => {
                    let c = u32::try_from(self.column.values.len()).unwrap_or(u32::MAX);
                    self.column.values.push(v.to_string());
                    self.lookup.insert(v.to_string(), c);
                    c
                }
            },
        };
        self.column.codes.push(code);
    }
}

impl<S: AsRef<str>> FromIterator<Option<S>> for CodedColumn {
    fn from_iter<I: IntoIterator<Item = Option<S>>>(iter: I) -> Self {
        let mut b = CodedBuilder::default();
        for v in iter {
            b.push(v.as_ref().map(AsRef::as_ref));
        }
        b.column
    }
}

/// Rows of features, with ids, optional labels and metadata. Text is held compactly: ids in one
/// buffer, categorical values and groups as codes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureTable {
    /// `customer_id` of each row.
    pub ids: TextColumn,
    /// 0 or 1 per row, when the query returned `label`.
    pub labels: Option<Vec<f64>>,
    /// `_snapshot_date` (days since 1970-01-01) per row, when returned.
    pub snapshot_days: Option<Vec<i32>>,
    /// `_group` per row (such as a campaign id), when returned.
    pub groups: Option<CodedColumn>,
    /// Numeric features, NaN for missing.
    pub numeric: Vec<(String, Vec<f64>)>,
    /// Categorical features.
    pub categorical: Vec<(String, CodedColumn)>,
    /// When the table is a sample ([`FeatureTableBuilder::sampled`], [`FeatureTable::sample`]):
    /// the rows of the window it was drawn from. `None`: the table is its whole window.
    pub window_rows: Option<usize>,
}

/// Text values in SQL's ascending order: an empty value after every other.
fn nulls_last(a: Option<&str>, b: Option<&str>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

fn bad(what: &str, reason: impl std::fmt::Display) -> Error {
    Error::BadInput(format!("{what}: {reason}"))
}

/// Keeps the values of `values` whose row is `true` in `keep`.
fn retain_rows<T>(values: &mut Vec<T>, keep: &[bool]) {
    let mut row = 0;
    values.retain(|_| {
        row += 1;
        keep.get(row - 1).copied().unwrap_or(false)
    });
}

/// Column `name` of a feature query's batch as `to`, or an error naming the query.
fn cast_column(batch: &RecordBatch, what: &str, name: &str, to: &DataType) -> Result<ArrayRef> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| bad(what, format!("a batch lacks column '{name}'")))?;
    cast(column, to).map_err(|e| bad(what, e))
}

/// Reads a feature query's batches one at a time into a [`FeatureTable`], so that the query's
/// result need not be held whole beside the table.
#[derive(Debug)]
pub struct FeatureTableBuilder {
    what: String,
    table: FeatureTable,
    groups: Option<CodedBuilder>,
    categorical: Vec<(String, CodedBuilder)>,
    /// Rows pushed (read from the query), kept or not.
    rows: usize,
    /// When the table keeps only a sample: at most this many rows, and each kept row's
    /// [`sample_key`].
    sample: Option<(usize, Vec<f64>)>,
}

/// A row's place in every sample: the SHA-256 of its customer id and snapshot day (when the table
/// has one), read as a number in [0, 1). A sample that keeps `share` of the rows keeps those below
/// `share`, so a customer's rows are kept or dropped by who they are, never by their order or label.
fn sample_key(id: &str, snapshot_day: Option<i32>) -> f64 {
    let mut h = Sha256::new();
    h.update(id.as_bytes());
    if let Some(d) = snapshot_day {
        h.update(d.to_le_bytes());
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) as f64 / 2f64.powi(64)
}

/// The share of `rows` rows a sample of at most about `max_rows` keeps (1 when all fit).
fn sample_share(max_rows: usize, rows: usize) -> f64 {
    if rows <= max_rows {
        1.0
    } else {
        max_rows as f64 / rows as f64
    }
}

impl FeatureTableBuilder {
    /// A builder for the rows of a query with `schema`. `what` names the query in errors.
    pub fn new(what: &str, schema: &Schema) -> Result<Self> {
        let mut table = FeatureTable::default();
        if schema.field_with_name("customer_id").is_err() {
            return Err(bad(
                what,
                "the feature query returned no column 'customer_id'",
            ));
        }
        let has = |name: &str| schema.field_with_name(name).is_ok();
        if has("label") {
            table.labels = Some(Vec::new());
        }
        if has("_snapshot_date") {
            table.snapshot_days = Some(Vec::new());
        }
        let groups = has("_group").then(CodedBuilder::default);
        let mut categorical = Vec::new();
        for field in schema.fields() {
            let name = field.name();
            if name == "customer_id" || name == "label" || name.starts_with('_') {
                continue;
            }
            match field.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                    categorical.push((name.clone(), CodedBuilder::default()));
                }
                DataType::Boolean
                | DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64
                | DataType::Float32
                | DataType::Float64
                | DataType::Decimal128(_, _)
                | DataType::Decimal256(_, _) => table.numeric.push((name.clone(), Vec::new())),
                other => {
                    return Err(bad(
                        what,
                        format!(
                            "feature column '{name}' is {other}; features are numbers, booleans or text (give dates as days)"
                        ),
                    ));
                }
            }
        }
        Ok(Self {
            what: what.to_string(),
            table,
            groups,
            categorical,
            rows: 0,
            sample: None,
        })
    }

    /// A builder that keeps only the rows of [`FeatureTable::sample`]`(max_rows)` of every row
    /// pushed: the same rows, without ever holding the whole. A row is dropped as soon as it
    /// cannot be in the sample whatever follows (its key is above `max_rows` over the rows read
    /// so far, which is never less than the final share), so about `max_rows` to twice as many
    /// rows are held while reading.
    pub fn sampled(what: &str, schema: &Schema, max_rows: usize) -> Result<Self> {
        let mut builder = Self::new(what, schema)?;
        builder.sample = Some((max_rows, Vec::new()));
        Ok(builder)
    }

    /// Rows pushed so far (all of them, also those a sample did not keep).
    pub fn rows_read(&self) -> usize {
        self.rows
    }

    /// Adds the rows of one batch (those a sample keeps, when sampling).
    pub fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        // Every row is checked, kept or not: a sample never hides a bad row.
        self.check(batch)?;
        let Some(max_rows) = self.sample.as_ref().map(|(m, _)| *m) else {
            return self.append(batch);
        };
        let what = self.what.as_str();
        let ids = cast_column(batch, what, "customer_id", &DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        let days = match self.table.snapshot_days {
            Some(_) => Some(cast_column(
                batch,
                what,
                "_snapshot_date",
                &DataType::Date32,
            )?),
            None => None,
        };
        let days = days.as_ref().map(|d| d.as_primitive::<Date32Type>());
        let mut keep = Vec::with_capacity(batch.num_rows());
        let mut keys = Vec::new();
        for i in 0..batch.num_rows() {
            let key = sample_key(ids.value(i), days.map(|d| d.value(i)));
            // The final share is at most this one: the rows read so far are at most the total.
            let kept = key < sample_share(max_rows, self.rows + i + 1);
            if kept {
                keys.push(key);
            }
            keep.push(kept);
        }
        if let Some((_, all)) = self.sample.as_mut() {
            all.extend(keys);
        }
        let kept =
            arrow::compute::filter_record_batch(batch, &keep.into()).map_err(|e| bad(what, e))?;
        let read = self.rows + batch.num_rows();
        self.append(&kept)?;
        self.rows = read;
        if let Some((_, keys)) = &self.sample
            && keys.len() > 2 * max_rows.max(1)
        {
            self.keep_sample();
        }
        Ok(())
    }

    /// Drops the rows the sample of the rows read so far leaves out.
    fn keep_sample(&mut self) {
        let Some((max_rows, keys)) = self.sample.as_mut() else {
            return;
        };
        let share = sample_share(*max_rows, self.rows);
        let keep: Vec<bool> = keys.iter().map(|&k| k < share).collect();
        if keep.iter().all(|&k| k) {
            return;
        }
        keys.retain(|&k| k < share);
        let table = &mut self.table;
        table.ids = table
            .ids
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(id, _)| id)
            .collect();
        if let Some(l) = table.labels.as_mut() {
            retain_rows(l, &keep);
        }
        for (_, v) in &mut table.numeric {
            retain_rows(v, &keep);
        }
        if let Some(d) = table.snapshot_days.as_mut() {
            retain_rows(d, &keep);
        }
        for b in self
            .groups
            .iter_mut()
            .chain(self.categorical.iter_mut().map(|(_, b)| b))
        {
            retain_rows(&mut b.column.codes, &keep);
        }
    }

    /// Checks every row of a batch: a customer id, a label of 0 or 1 and a snapshot date where
    /// the query returns them; the error names the row (counted over every row read).
    fn check(&self, batch: &RecordBatch) -> Result<()> {
        let what = self.what.as_str();
        let row_offset = self.rows;
        let ids = cast_column(batch, what, "customer_id", &DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        if let Some(i) = (0..batch.num_rows()).find(|&i| ids.is_null(i)) {
            return Err(bad(
                what,
                format!("row {} has an empty customer_id", row_offset + i + 1),
            ));
        }
        if self.table.labels.is_some() {
            let l = cast_column(batch, what, "label", &DataType::Float64)?;
            let l = l.as_primitive::<Float64Type>();
            for i in 0..batch.num_rows() {
                let v = if l.is_null(i) { f64::NAN } else { l.value(i) };
                if v != 0.0 && v != 1.0 {
                    return Err(bad(
                        what,
                        format!(
                            "row {} (customer {}) has label {v}; labels are 0 or 1",
                            row_offset + i + 1,
                            ids.value(i)
                        ),
                    ));
                }
            }
        }
        if self.table.snapshot_days.is_some() {
            let d = cast_column(batch, what, "_snapshot_date", &DataType::Date32)?;
            if let Some(i) = (0..batch.num_rows()).find(|&i| d.is_null(i)) {
                return Err(bad(
                    what,
                    format!("row {} has an empty _snapshot_date", row_offset + i + 1),
                ));
            }
        }
        Ok(())
    }

    /// Adds every row of one batch, [checked](FeatureTableBuilder::check) already.
    fn append(&mut self, batch: &RecordBatch) -> Result<()> {
        let what = self.what.as_str();
        let table = &mut self.table;
        let ids = cast_column(batch, what, "customer_id", &DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        for i in 0..batch.num_rows() {
            table.ids.push(ids.value(i));
        }
        if let Some(labels) = table.labels.as_mut() {
            let l = cast_column(batch, what, "label", &DataType::Float64)?;
            let l = l.as_primitive::<Float64Type>();
            labels.extend((0..batch.num_rows()).map(|i| l.value(i)));
        }
        if let Some(days) = table.snapshot_days.as_mut() {
            let d = cast_column(batch, what, "_snapshot_date", &DataType::Date32)?;
            let d = d.as_primitive::<Date32Type>();
            days.extend((0..batch.num_rows()).map(|i| d.value(i)));
        }
        if let Some(groups) = self.groups.as_mut() {
            let g = cast_column(batch, what, "_group", &DataType::Utf8)?;
            let g = g.as_string::<i32>();
            for i in 0..batch.num_rows() {
                groups.push(Some(g.value(i)));
            }
        }
        for (name, values) in &mut table.numeric {
            let c = cast_column(batch, what, name, &DataType::Float64)?;
            let c = c.as_primitive::<Float64Type>();
            values.extend((0..batch.num_rows()).map(|i| {
                if c.is_null(i) || !c.value(i).is_finite() {
                    f64::NAN
                } else {
                    c.value(i)
                }
            }));
        }
        for (name, values) in &mut self.categorical {
            let c = cast_column(batch, what, name, &DataType::Utf8)?;
            let c = c.as_string::<i32>();
            for i in 0..batch.num_rows() {
                values.push((!c.is_null(i)).then(|| c.value(i)));
            }
        }
        self.rows += batch.num_rows();
        Ok(())
    }

    /// The table of every row pushed, in [`FeatureTable::sort_rows`]'s order: the query need
    /// not sort (a sort inside the query holds every row of its result twice, as Arrow
    /// batches, before the first reaches this table).
    pub fn finish(mut self) -> FeatureTable {
        self.keep_sample();
        let read = self.rows;
        let mut table = self.table;
        if read > table.len() {
            table.window_rows = Some(read);
        }
        table.groups = self.groups.map(|g| g.column);
        table.categorical = self
            .categorical
            .into_iter()
            .map(|(name, b)| (name, b.column))
            .collect();
        table.sort_rows();
        table
    }
}

impl FeatureTable {
    /// Reads the rows of a feature query. `what` names the query in errors.
    pub fn from_batches(what: &str, schema: &Schema, batches: &[RecordBatch]) -> Result<Self> {
        let mut builder = FeatureTableBuilder::new(what, schema)?;
        for batch in batches {
            builder.push(batch)?;
        }
        Ok(builder.finish())
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Rows of the window the table stands for: its own rows, or those it was sampled from.
    pub fn window_len(&self) -> usize {
        self.window_rows.unwrap_or(self.len()).max(self.len())
    }

    /// Puts the rows in one order whatever order they arrived in: by customer id, snapshot day
    /// and group (the order of `order by customer_id, _snapshot_date, _group`, a group left
    /// empty last), then by label and by every feature's value, so that rows equal in their keys
    /// are ordered by what they hold. Categorical codes are numbered again by first appearance in
    /// that order, so the table is the one its rows would have built had they arrived sorted.
    /// Each column is rearranged in turn: besides the table, one column and the order are held.
    pub fn sort_rows(&mut self) {
        let n = self.len();
        let mut order: Vec<u32> = (0..u32::try_from(n).unwrap_or(u32::MAX)).collect();
        {
            let cmp_f64 = |x: f64, y: f64| x.total_cmp(&y);
            let group_of = |i: usize| self.groups.as_ref().and_then(|g| g.get(i));
            order.sort_unstable_by(|&a, &b| {
                let (a, b) = (a as usize, b as usize);
                self.ids
                    .get(a)
                    .cmp(self.ids.get(b))
                    .then_with(|| match &self.snapshot_days {
                        Some(d) => d[a].cmp(&d[b]),
                        None => std::cmp::Ordering::Equal,
                    })
                    .then_with(|| nulls_last(group_of(a), group_of(b)))
                    .then_with(|| match &self.labels {
                        Some(l) => cmp_f64(l[a], l[b]),
                        None => std::cmp::Ordering::Equal,
                    })
                    .then_with(|| {
                        self.numeric
                            .iter()
                            .map(|(_, v)| cmp_f64(v[a], v[b]))
                            .find(|o| o.is_ne())
                            .unwrap_or(std::cmp::Ordering::Equal)
                    })
                    .then_with(|| {
                        self.categorical
                            .iter()
                            .map(|(_, v)| nulls_last(v.get(a), v.get(b)))
                            .find(|o| o.is_ne())
                            .unwrap_or(std::cmp::Ordering::Equal)
                    })
            });
        }
        if order.iter().enumerate().all(|(i, &r)| i == r as usize) {
            return;
        }
        let ids = std::mem::take(&mut self.ids);
        self.ids = order.iter().map(|&i| ids.get(i as usize)).collect();
        drop(ids);
        let permute_f64 = |v: &mut Vec<f64>| {
            let sorted: Vec<f64> = order.iter().map(|&i| v[i as usize]).collect();
            *v = sorted;
        };
        if let Some(l) = self.labels.as_mut() {
            permute_f64(l);
        }
        for (_, v) in &mut self.numeric {
            permute_f64(v);
        }
        if let Some(d) = self.snapshot_days.as_mut() {
            let sorted: Vec<i32> = order.iter().map(|&i| d[i as usize]).collect();
            *d = sorted;
        }
        let recode =
            |c: &CodedColumn| -> CodedColumn { order.iter().map(|&i| c.get(i as usize)).collect() };
        if let Some(g) = self.groups.as_mut() {
            *g = recode(g);
        }
        for (_, c) in &mut self.categorical {
            *c = recode(c);
        }
    }

    /// The rows at `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> FeatureTable {
        let pick = |v: &Vec<f64>| rows.iter().map(|&i| v[i]).collect::<Vec<_>>();
        FeatureTable {
            ids: rows.iter().map(|&i| self.ids.get(i)).collect(),
            labels: self.labels.as_ref().map(pick),
            snapshot_days: self
                .snapshot_days
                .as_ref()
                .map(|d| rows.iter().map(|&i| d[i]).collect()),
            groups: self.groups.as_ref().map(|g| g.select(rows)),
            numeric: self
                .numeric
                .iter()
                .map(|(n, v)| (n.clone(), pick(v)))
                .collect(),
            categorical: self
                .categorical
                .iter()
                .map(|(n, v)| (n.clone(), v.select(rows)))
                .collect(),
            window_rows: None,
        }
    }

    /// Whether row `i` is in a sample that keeps `share` of the rows: the SHA-256 of its
    /// customer id and snapshot day, read as a number in [0, 1), is below `share`.
    fn sampled(&self, i: usize, share: f64) -> bool {
        sample_key(self.ids.get(i), self.snapshot_days.as_ref().map(|d| d[i])) < share
    }

    /// At most about `max_rows` rows, the same ones on every run: a row is kept when the SHA-256
    /// of its customer id and snapshot day, read as a number in [0, 1), is below `max_rows / len`
    /// (so a customer's rows are kept or dropped by who they are, never by their order or label).
    /// The whole table when it has no more than `max_rows` rows. A table that is itself a sample
    /// is sampled as its window would be ([`FeatureTable::window_len`]): the result is the same
    /// rows as sampling the whole window, so a sample of `max_rows` stays whole.
    pub fn sample(&self, max_rows: usize) -> std::borrow::Cow<'_, FeatureTable> {
        let window = self.window_len();
        if window <= max_rows {
            return std::borrow::Cow::Borrowed(self);
        }
        let share = sample_share(max_rows, window);
        let kept: Vec<usize> = (0..self.len())
            .filter(|&i| self.sampled(i, share))
            .collect();
        if kept.len() == self.len() {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut sample = self.select(&kept);
        sample.window_rows = Some(window);
        std::borrow::Cow::Owned(sample)
    }

    /// The labels, or an error naming `what` when the table has none.
    pub fn labels(&self, what: &str) -> Result<&[f64]> {
        self.labels
            .as_deref()
            .ok_or_else(|| bad(what, "the training rows have no 'label' column"))
    }

    /// SHA-256 of the rows in a fixed text form (ids, labels, every feature): the data checksum
    /// saved with a model, equal for equal data whatever the batch boundaries.
    pub fn checksum(&self) -> String {
        let mut h = Sha256::new();
        for (i, id) in self.ids.iter().enumerate() {
            h.update(id.as_bytes());
            if let Some(l) = &self.labels {
                h.update(l[i].to_le_bytes());
            }
            for (_, v) in &self.numeric {
                h.update(v[i].to_le_bytes());
            }
            for (_, v) in &self.categorical {
                h.update(v.get(i).unwrap_or("\u{0}").as_bytes());
                h.update([0xff]);
            }
        }
        hex::encode(h.finalize())
    }
}

/// A numeric feature's training mean and standard deviation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericFeature {
    /// Column name.
    pub name: String,
    /// Mean of the present training values (0 when none are present).
    pub mean: f64,
    /// Standard deviation of the present training values (1 when it would be 0).
    pub sd: f64,
}

/// A categorical feature's levels, each a 0/1 column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalFeature {
    /// Column name.
    pub name: String,
    /// Levels with a column, sorted; an empty value is [`MISSING_LEVEL`].
    pub levels: Vec<String>,
}

/// How a feature table becomes a matrix: learnt on training rows, applied to any rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encoding {
    /// Numeric features in column order.
    pub numeric: Vec<NumericFeature>,
    /// Categorical features, after the numeric ones.
    pub categorical: Vec<CategoricalFeature>,
}

/// What a matrix column is, for readable rules.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnMeaning {
    /// A numeric feature.
    Numeric(String),
    /// Whether a categorical feature has a level.
    Level(String, String),
}

impl Encoding {
    /// Learns the encoding of `table`.
    pub fn learn(table: &FeatureTable) -> Self {
        let numeric = table
            .numeric
            .iter()
            .map(|(name, v)| {
                let present: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
                let n = present.len() as f64;
                let mean = if present.is_empty() {
                    0.0
                } else {
                    present.iter().sum::<f64>() / n
                };
                let var = if present.len() > 1 {
                    present.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)
                } else {
                    0.0
                };
                let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
                NumericFeature {
                    name: name.clone(),
                    mean,
                    sd,
                }
            })
            .collect();
        let categorical = table
            .categorical
            .iter()
            .map(|(name, v)| {
                let mut by_code = vec![0usize; v.code_count()];
                for &c in v.codes() {
                    if let Some(n) = by_code.get_mut(c as usize) {
                        *n += 1;
                    }
                }
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for (code, &n) in by_code.iter().enumerate() {
                    if n > 0 {
                        let level = u32::try_from(code)
                            .ok()
                            .and_then(|c| v.value_of(c))
                            .unwrap_or(MISSING_LEVEL);
                        *counts.entry(level).or_default() += n;
                    }
                }
                let mut by_count: Vec<(&str, usize)> = counts.into_iter().collect();
                by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                let mut levels: Vec<String> = by_count
                    .into_iter()
                    .take(MAX_LEVELS)
                    .map(|(l, _)| l.to_string())
                    .collect();
                levels.sort();
                CategoricalFeature {
                    name: name.clone(),
                    levels,
                }
            })
            .collect();
        Encoding {
            numeric,
            categorical,
        }
    }

    /// The names of the features the encoding reads.
    pub fn feature_names(&self) -> Vec<String> {
        self.numeric
            .iter()
            .map(|f| f.name.clone())
            .chain(self.categorical.iter().map(|f| f.name.clone()))
            .collect()
    }

    /// What each matrix column means.
    pub fn columns(&self) -> Vec<ColumnMeaning> {
        let mut out: Vec<ColumnMeaning> = self
            .numeric
            .iter()
            .map(|f| ColumnMeaning::Numeric(f.name.clone()))
            .collect();
        for f in &self.categorical {
            out.extend(
                f.levels
                    .iter()
                    .map(|l| ColumnMeaning::Level(f.name.clone(), l.clone())),
            );
        }
        out
    }

    /// The matrix of `table`, column by column. With `standardise`, numeric values are centred
    /// and scaled by the training mean and deviation and a missing value becomes 0 (the mean);
    /// without it they stay as they are, NaN included. Categorical levels are 0/1 columns.
    pub fn matrix(&self, table: &FeatureTable, standardise: bool) -> Result<Vec<Vec<f64>>> {
        self.matrix_rows(table, standardise, 0..table.len())
    }

    /// [`Encoding::matrix`] of the rows in `rows` only, so that many rows can be scored a slice
    /// at a time.
    pub fn matrix_rows(
        &self,
        table: &FeatureTable,
        standardise: bool,
        rows: std::ops::Range<usize>,
    ) -> Result<Vec<Vec<f64>>> {
        let rows = rows.start.min(table.len())..rows.end.min(table.len());
        let columns = self.feature_columns(table)?;
        let mut out = Vec::with_capacity(columns.len());
        for (column, numeric) in columns.iter().zip(self.column_scaling()) {
            out.push(match (column, numeric) {
                (FeatureColumn::Numeric(values), Some(f)) if standardise => values[rows.clone()]
                    .iter()
                    .map(|&x| if x.is_nan() { 0.0 } else { (x - f.mean) / f.sd })
                    .collect(),
                _ => rows.clone().map(|i| column.value(i)).collect(),
            });
        }
        Ok(out)
    }

    /// The values of [`Encoding::matrix_rows`] without standardising, as one column-major buffer
    /// (the form the boosted trees read), and the number of columns: built directly, without the
    /// columns first.
    pub fn column_major_rows(
        &self,
        table: &FeatureTable,
        rows: std::ops::Range<usize>,
    ) -> Result<(Vec<f64>, usize)> {
        let rows = rows.start.min(table.len())..rows.end.min(table.len());
        let columns = self.feature_columns(table)?;
        let mut out = Vec::with_capacity(columns.len() * rows.len());
        for column in &columns {
            match column {
                FeatureColumn::Numeric(values) => out.extend_from_slice(&values[rows.clone()]),
                _ => out.extend(rows.clone().map(|i| column.value(i))),
            }
        }
        Ok((out, columns.len()))
    }

    /// Each matrix column's numeric feature (for its scaling), `None` for level columns.
    fn column_scaling(&self) -> impl Iterator<Item = Option<&NumericFeature>> + '_ {
        self.numeric.iter().map(Some).chain(
            self.categorical
                .iter()
                .flat_map(|f| f.levels.iter().map(|_| None)),
        )
    }

    /// The matrix columns of `table` as views of its own columns, in the order of
    /// [`Encoding::columns`]: numeric values as they are (NaN for missing), levels as 0/1 read
    /// from the codes. Nothing of the table's size is copied.
    pub fn feature_columns<'a>(&self, table: &'a FeatureTable) -> Result<Vec<FeatureColumn<'a>>> {
        let mut out = Vec::new();
        for f in &self.numeric {
            let values = table
                .numeric
                .iter()
                .find(|(n, _)| *n == f.name)
                .map(|(_, v)| v)
                .ok_or_else(|| missing_feature(&f.name, table))?;
            out.push(FeatureColumn::Numeric(values));
        }
        for f in &self.categorical {
            let values = table
                .categorical
                .iter()
                .find(|(n, _)| *n == f.name)
                .map(|(_, v)| v)
                .ok_or_else(|| missing_feature(&f.name, table))?;
            // Each of the table's codes as the position of its level, if the level has a column.
            let level_of_code: Vec<Option<usize>> = (0..values.code_count())
                .map(|code| {
                    let value = u32::try_from(code)
                        .ok()
                        .and_then(|c| values.value_of(c))
                        .unwrap_or(MISSING_LEVEL);
                    f.levels.iter().position(|l| l == value)
                })
                .collect();
            for level in 0..f.levels.len() {
                out.push(FeatureColumn::Level {
                    codes: values.codes(),
                    hit: level_of_code.iter().map(|&l| l == Some(level)).collect(),
                });
            }
        }
        Ok(out)
    }
}

/// One matrix column read from a [`FeatureTable`] without copying it.
#[derive(Debug, Clone)]
pub enum FeatureColumn<'a> {
    /// A numeric feature's values (NaN for missing).
    Numeric(&'a [f64]),
    /// A categorical level: 1 where the row's code is one of the level's, else 0.
    Level {
        /// The rows' codes.
        codes: &'a [u32],
        /// Whether each code is the level.
        hit: Vec<bool>,
    },
}

impl FeatureColumn<'_> {
    /// The value of row `i`.
    pub fn value(&self, i: usize) -> f64 {
        match self {
            Self::Numeric(values) => values[i],
            Self::Level { codes, hit } => {
                if hit.get(codes[i] as usize).copied().unwrap_or(false) {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

fn missing_feature(name: &str, table: &FeatureTable) -> Error {
    let is_categorical = table.categorical.iter().any(|(n, _)| n == name);
    Error::BadInput(if is_categorical {
        format!("feature '{name}' is text here but was a number when the model was trained")
    } else if table.numeric.iter().any(|(n, _)| n == name) {
        format!("feature '{name}' is a number here but was text when the model was trained")
    } else {
        format!("the rows to score have no feature '{name}', which the model was trained on")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BooleanArray, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::Field;
    use std::sync::Arc;

    /// A campaign row: customer, snapshot day, group, label, a number and a category.
    type CampaignRow<'a> = (&'a str, i32, &'a str, i64, f64, Option<&'a str>);

    /// Campaign rows as a batch.
    fn campaign_rows(rows: &[CampaignRow<'_>]) -> (Arc<Schema>, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Utf8, false),
            Field::new("_snapshot_date", DataType::Date32, false),
            Field::new("_group", DataType::Utf8, false),
            Field::new("label", DataType::Int64, false),
            Field::new("spend", DataType::Float64, true),
            Field::new("income_band", DataType::Utf8, true),
        ]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(arrow::array::Date32Array::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.4))),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.5))),
            ],
        );
        match b {
            Ok(b) => (schema, b),
            Err(e) => unreachable!("{e}"),
        }
    }

    #[test]
    fn rows_read_in_any_order_make_the_table_sorted_rows_make() {
        let sorted = [
            ("A", 20_000, "CMP1", 0, 1.0, Some("low")),
            ("A", 20_000, "CMP2", 1, 2.0, None),
            ("A", 20_010, "CMP1", 0, 3.0, Some("high")),
            ("B", 19_990, "CMP3", 0, 4.0, Some("high")),
            ("B", 19_990, "CMP3", 1, 0.5, Some("low")),
            ("C", 20_000, "CMP1", 1, 5.0, Some("mid")),
        ];
        let shuffled = [
            sorted[5], sorted[2], sorted[4], sorted[0], sorted[3], sorted[1],
        ];
        let read = |rows: &[CampaignRow<'_>]| {
            let (schema, first) = campaign_rows(&rows[..3]);
            let (_, second) = campaign_rows(&rows[3..]);
            FeatureTable::from_batches("rows", &schema, &[first, second])
        };
        let (Ok(in_order), Ok(out_of_order)) = (read(&sorted), read(&shuffled)) else {
            unreachable!("the rows are valid")
        };
        assert_eq!(in_order, out_of_order);
        assert_eq!(
            out_of_order.ids.iter().collect::<Vec<_>>(),
            ["A", "A", "A", "B", "B", "C"]
        );
        // Rows equal in customer, date and group are ordered by label, then by value.
        assert_eq!(
            out_of_order.labels,
            Some(vec![0.0, 1.0, 0.0, 0.0, 1.0, 1.0])
        );
        // Codes are numbered by first appearance in the sorted rows, as if read in order.
        assert_eq!(out_of_order.categorical[0].1.codes(), [1, 0, 2, 2, 1, 3]);
        assert_eq!(
            out_of_order
                .groups
                .as_ref()
                .map(|g| g.iter().collect::<Vec<_>>()),
            Some(vec![
                Some("CMP1"),
                Some("CMP2"),
                Some("CMP1"),
                Some("CMP3"),
                Some("CMP3"),
                Some("CMP1")
            ])
        );
    }

    /// A campaign row that owns its customer and group.
    type OwnedCampaignRow = (String, i32, String, i64, f64, Option<&'static str>);

    /// Many campaign rows: customers with one to four sends each, labels and categories varied.
    fn many_campaign_rows(n: usize) -> Vec<OwnedCampaignRow> {
        (0..n)
            .map(|i| {
                let customer = i / 3 + (i % 7) / 5;
                (
                    format!("C{customer:06}"),
                    20_000 + (i % 4) as i32 * 30,
                    format!("CMP{}", i % 4),
                    i64::from(i % 11 == 0),
                    (i * 37 % 1000) as f64 / 10.0,
                    [Some("low"), Some("mid"), None, Some("high")][i % 4],
                )
            })
            .collect()
    }

    #[test]
    fn a_sampled_builder_keeps_the_rows_the_sample_of_the_whole_keeps() -> Result<()> {
        let rows = many_campaign_rows(30_000);
        let borrowed: Vec<CampaignRow<'_>> = rows
            .iter()
            .map(|r| (r.0.as_str(), r.1, r.2.as_str(), r.3, r.4, r.5))
            .collect();
        let batches: Vec<RecordBatch> =
            borrowed.chunks(1_777).map(|c| campaign_rows(c).1).collect();
        let schema = campaign_rows(&borrowed[..1]).0;
        let whole = FeatureTable::from_batches("rows", &schema, &batches)?;
        for max_rows in [1_000, 7_500, 29_999, 30_000, 50_000] {
            let mut builder = FeatureTableBuilder::sampled("rows", &schema, max_rows)?;
            for b in &batches {
                builder.push(b)?;
                // The builder never holds much more than twice the sample.
                let held = builder.sample.as_ref().map_or(0, |(_, k)| k.len());
                assert!(held <= 2 * max_rows + 1_777, "{held} rows held");
            }
            assert_eq!(builder.rows_read(), 30_000);
            let sampled = builder.finish();
            let expected = whole.sample(max_rows);
            assert_eq!(sampled.len(), expected.len(), "max_rows {max_rows}");
            assert_eq!(
                sampled.checksum(),
                expected.checksum(),
                "max_rows {max_rows}"
            );
            assert_eq!(sampled.snapshot_days, expected.snapshot_days);
            // A sample stands for its window: sampled again it keeps the rows a sample of the
            // whole window keeps (and with the same bound, all of its own).
            if sampled.len() < 30_000 {
                assert_eq!(sampled.window_rows, Some(30_000), "max_rows {max_rows}");
                assert_eq!(sampled.window_len(), 30_000);
            } else {
                assert_eq!(sampled.window_rows, None, "max_rows {max_rows}");
            }
            assert_eq!(sampled.sample(max_rows).len(), sampled.len());
            let smaller = sampled.sample(500);
            assert_eq!(smaller.checksum(), whole.sample(500).checksum());
            assert_eq!(smaller.window_len(), 30_000);
            assert_eq!(
                sampled
                    .groups
                    .as_ref()
                    .map(|g| g.iter().collect::<Vec<_>>()),
                expected
                    .groups
                    .as_ref()
                    .map(|g| g.iter().collect::<Vec<_>>())
            );
            if max_rows <= 7_500 {
                assert!(
                    sampled.len() < 2 * max_rows,
                    "max_rows {max_rows}: {} rows",
                    sampled.len()
                );
            }
        }
        // A bad row is refused even when the sample would have dropped it.
        let mut bad_rows = borrowed.clone();
        bad_rows[29_000].3 = 2;
        let mut builder = FeatureTableBuilder::sampled("churn training", &schema, 10)?;
        let mut refused = None;
        for c in bad_rows.chunks(1_777) {
            if let Err(e) = builder.push(&campaign_rows(c).1) {
                refused = Some(e.to_string());
                break;
            }
        }
        assert!(
            refused
                .as_deref()
                .is_some_and(|e| e.contains("row 29001 (customer")),
            "{refused:?}"
        );
        Ok(())
    }

    fn batch() -> (Arc<Schema>, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Utf8, false),
            Field::new("label", DataType::Int64, false),
            Field::new("orders", DataType::Int64, true),
            Field::new("spend", DataType::Float64, true),
            Field::new("is_business", DataType::Boolean, true),
            Field::new("income_band", DataType::Utf8, true),
        ]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c"])),
                Arc::new(Int64Array::from(vec![1, 0, 1])),
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
                Arc::new(Float64Array::from(vec![10.0, 20.0, 30.0])),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
                Arc::new(StringArray::from(vec![Some("high"), None, Some("low")])),
            ],
        );
        match b {
            Ok(b) => (schema, b),
            Err(e) => unreachable!("{e}"),
        }
    }

    #[test]
    fn tables_read_numbers_booleans_and_text() -> Result<()> {
        let (schema, b) = batch();
        let t = FeatureTable::from_batches("test", &schema, &[b])?;
        assert_eq!(t.ids.iter().collect::<Vec<_>>(), vec!["a", "b", "c"]);
        assert_eq!(t.labels, Some(vec![1.0, 0.0, 1.0]));
        assert_eq!(t.numeric.len(), 3);
        assert!(t.numeric[0].1[1].is_nan());
        assert!(t.numeric[2].1[2].is_nan());
        assert_eq!(t.numeric[2].1[..2], [1.0, 0.0]);
        let enc = Encoding::learn(&t);
        assert_eq!(enc.numeric[0].mean, 2.0);
        assert_eq!(enc.categorical[0].levels, vec!["(missing)", "high", "low"]);
        let m = enc.matrix(&t, true)?;
        assert_eq!(m.len(), 6);
        assert_eq!(m[0][1], 0.0, "a missing value is the mean");
        assert_eq!(m[3], vec![0.0, 1.0, 0.0], "missing level");
        assert_eq!(m[4], vec![1.0, 0.0, 0.0]);
        // The trees' column-major buffer holds the unstandardised matrix, column after column.
        let columns = enc.matrix(&t, false)?;
        let (buffer, n) = enc.column_major_rows(&t, 1..3)?;
        assert_eq!(n, 6);
        let expected: Vec<f64> = columns.iter().flat_map(|c| c[1..3].to_vec()).collect();
        assert_eq!(buffer.len(), expected.len());
        assert!(
            buffer
                .iter()
                .zip(&expected)
                .all(|(a, b)| a == b || (a.is_nan() && b.is_nan()))
        );
        Ok(())
    }

    #[test]
    fn labels_other_than_zero_or_one_are_refused_with_the_row() {
        let (schema, b) = batch();
        let mut cols = b.columns().to_vec();
        cols[1] = Arc::new(Int64Array::from(vec![1, 2, 0]));
        let b = RecordBatch::try_new(schema.clone(), cols);
        let Ok(b) = b else { unreachable!() };
        let e = FeatureTable::from_batches("churn training", &schema, &[b]);
        assert!(e.is_err_and(|e| e.to_string().contains("row 2 (customer b) has label 2")));
    }

    #[test]
    fn scoring_rows_must_carry_every_trained_feature() -> Result<()> {
        let (schema, b) = batch();
        let t = FeatureTable::from_batches("test", &schema, &[b])?;
        let enc = Encoding::learn(&t);
        let mut fewer = t.clone();
        fewer.numeric.remove(1);
        assert!(
            enc.matrix(&fewer, false)
                .is_err_and(|e| e.to_string().contains("no feature 'spend'"))
        );
        assert_eq!(t.checksum(), t.select(&[0, 1, 2]).checksum());
        assert_ne!(t.checksum(), t.select(&[0, 2, 1]).checksum());
        Ok(())
    }
}
