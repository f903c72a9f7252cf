//! A source's `unique_key`: no two rows of the raw table share it. After every file is loaded, one
//! pass over the loaded rows finds, for each key, the row that stays (the first or the last by file
//! name, then line); a second pass moves every other row of that key to quarantine as
//! `duplicate_key`, naming the row that stayed. Rows with a missing key value are never compared.
//! Keys are held as 128-bit hashes, so memory grows by about 32 bytes per distinct key.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::Int64Type;
use arrow::row::{RowConverter, SortField};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::readers::QuarantineBuilder;
use crate::spec::{FILE_COLUMN, LINE_COLUMN, OnDuplicate, SourcePlan, UniqueKey};

/// Where a row came from: an index into the file names, and its line.
type Origin = (u32, i64);

/// The rows that stay, one per key, gathered over a first pass.
pub(crate) struct KeyIndex<'p> {
    plan: &'p SourcePlan,
    key: &'p UniqueKey,
    converter: RowConverter,
    files: Vec<String>,
    file_ids: HashMap<String, u32>,
    kept: HashMap<u128, Origin>,
}

/// The rows of one batch split by the key.
pub(crate) struct Split {
    pub(crate) kept: RecordBatch,
    pub(crate) quarantined: Option<RecordBatch>,
    /// Rows moved to quarantine, by file.
    pub(crate) moved: BTreeMap<String, u64>,
}

impl<'p> KeyIndex<'p> {
    /// `None` when the source declares no key.
    pub(crate) fn new(plan: &'p SourcePlan) -> Result<Option<Self>, String> {
        let Some(key) = &plan.unique_key else {
            return Ok(None);
        };
        let fields = key
            .columns
            .iter()
            .map(|&c| {
                plan.fields
                    .get(c)
                    .map(|f| SortField::new(f.ty.arrow_type()))
                    .ok_or_else(|| format!("unique_key column {c} is not a field"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let converter = RowConverter::new(fields).map_err(|e| e.to_string())?;
        Ok(Some(Self {
            plan,
            key,
            converter,
            files: Vec::new(),
            file_ids: HashMap::new(),
            kept: HashMap::new(),
        }))
    }

    /// The key hash of every row (`None` where a key value is missing) and its origin.
    fn keys(&mut self, batch: &RecordBatch) -> Result<Vec<Option<(u128, Origin)>>, String> {
        let columns: Vec<_> = self
            .key
            .columns
            .iter()
            .map(|&c| Arc::clone(batch.column(c)))
            .collect();
        let rows = self
            .converter
            .convert_columns(&columns)
            .map_err(|e| e.to_string())?;
        let files = batch
            .column_by_name(FILE_COLUMN)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or("the raw batch has no _file column")?;
        let lines = batch
            .column_by_name(LINE_COLUMN)
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or("the raw batch has no _line column")?;
        let mut out = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            if columns.iter().any(|c| c.is_null(i)) {
                out.push(None);
                continue;
            }
            let file = files.value(i);
            let id = match self.file_ids.get(file) {
                Some(id) => *id,
                None => {
                    let id = u32::try_from(self.files.len()).map_err(|e| e.to_string())?;
                    self.files.push(file.to_string());
                    self.file_ids.insert(file.to_string(), id);
                    id
                }
            };
            out.push(Some((hash128(rows.row(i).as_ref()), (id, lines.value(i)))));
        }
        Ok(out)
    }

    /// Whether `a` comes before `b` (by file name, then line).
    fn before(&self, a: Origin, b: Origin) -> bool {
        let name = |o: Origin| self.files.get(o.0 as usize).map(String::as_str);
        (name(a), a.1) < (name(b), b.1)
    }

    /// First pass: remembers, for every key, the row that stays.
    pub(crate) fn observe(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let last = self.key.on_duplicate == OnDuplicate::KeepLast;
        for (hash, origin) in self.keys(batch)?.into_iter().flatten() {
            match self.kept.get(&hash).copied() {
                None => {
                    self.kept.insert(hash, origin);
                }
                Some(current) => {
                    let replaces = if last {
                        self.before(current, origin)
                    } else {
                        self.before(origin, current)
                    };
                    if replaces {
                        self.kept.insert(hash, origin);
                    }
                }
            }
        }
        Ok(())
    }

    /// Second pass: splits a batch into the rows that stay and the duplicates, as quarantine rows.
    pub(crate) fn split(&mut self, batch: &RecordBatch) -> Result<Split, String> {
        let keys = self.keys(batch)?;
        let keep: BooleanArray = keys
            .iter()
            .map(|k| {
                Some(match k {
                    None => true,
                    Some((hash, origin)) => self.kept.get(hash) == Some(origin),
                })
            })
            .collect();
        let kept = arrow::compute::filter_record_batch(batch, &keep).map_err(|e| e.to_string())?;
        let mut moved = BTreeMap::new();
        if kept.num_rows() == batch.num_rows() {
            return Ok(Split {
                kept,
                quarantined: None,
                moved,
            });
        }
        let options = FormatOptions::default().with_null("");
        let shown: Vec<(String, ArrayFormatter<'_>)> = self
            .plan
            .fields
            .iter()
            .enumerate()
            .map(|(c, f)| {
                ArrayFormatter::try_new(batch.column(c).as_ref(), &options)
                    .map(|fmt| (f.name.clone(), fmt))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        let key_names = self.key.names.join(", ");
        let mut quarantine = QuarantineBuilder::new(&self.plan.name);
        for (i, k) in keys.iter().enumerate() {
            let Some((hash, (file, line))) = k else {
                continue;
            };
            let Some(&(stay_file, stay_line)) =
                self.kept.get(hash).filter(|o| **o != (*file, *line))
            else {
                continue;
            };
            let name = |id: u32| self.files.get(id as usize).map_or("", String::as_str);
            let reason = match self.key.on_duplicate {
                OnDuplicate::KeepFirst => format!(
                    "duplicate_key: a row with the same {key_names} was loaded from {} line {stay_line}",
                    name(stay_file)
                ),
                OnDuplicate::KeepLast => format!(
                    "duplicate_key: replaced by the later row with the same {key_names} in {} line {stay_line}",
                    name(stay_file)
                ),
            };
            let raw: Vec<String> = shown
                .iter()
                .map(|(n, fmt)| format!("{n}={}", fmt.value(i)))
                .collect();
            quarantine.push(
                name(*file),
                u64::try_from(*line).unwrap_or(0),
                Some(&key_names),
                &reason,
                &raw.join(" | "),
            );
            *moved.entry(name(*file).to_string()).or_insert(0) += 1;
        }
        Ok(Split {
            kept,
            quarantined: Some(quarantine.take()?),
            moved,
        })
    }
}

/// A 128-bit hash of a key's bytes (two SipHash passes with different prefixes): a collision
/// among ten million keys has a chance of about 10⁻²⁵.
fn hash128(bytes: &[u8]) -> u128 {
    let half = |prefix: u8| {
        let mut h = DefaultHasher::new();
        h.write_u8(prefix);
        h.write(bytes);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn plan(on_duplicate: &str) -> SourcePlan {
        let spec: crate::SourceSpec = toml::from_str(&format!(
            r#"
            name = "crm"
            format = "delimited"
            location = "x"
            unique_key = ["customer_no"]
            on_duplicate = "{on_duplicate}"
            fields = [ {{ name = "customer_no", type = "string" }}, {{ name = "name", type = "string" }} ]
            "#
        ))
        .unwrap_or_else(|e| unreachable!("{e}"));
        spec.plan(std::path::Path::new("."))
            .unwrap_or_else(|p| unreachable!("{p:?}"))
    }

    type Row<'a> = (Option<&'a str>, &'a str, &'a str, i64);

    fn batch(plan: &SourcePlan, rows: &[Row<'_>]) -> RecordBatch {
        let keys: StringArray = rows.iter().map(|r| r.0).collect();
        let names: StringArray = rows.iter().map(|r| Some(r.1)).collect();
        let files: StringArray = rows.iter().map(|r| Some(r.2)).collect();
        RecordBatch::try_new(
            plan.arrow_schema(),
            vec![
                Arc::new(keys),
                Arc::new(names),
                Arc::new(files),
                Arc::new(rows.iter().map(|r| r.3).collect::<Int64Array>()),
            ],
        )
        .unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn names(b: &RecordBatch) -> Vec<String> {
        b.column(1)
            .as_string::<i32>()
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn the_first_row_of_a_key_stays_whatever_the_order_files_came_in() -> Result<(), String> {
        let plan = plan("quarantine");
        let mut index = KeyIndex::new(&plan)?.ok_or("no key")?;
        // b.txt was read before a.txt (it was kept from an earlier load): a.txt still comes first.
        let rows = [
            (Some("1"), "Ann in b", "b.txt", 1),
            (Some("1"), "Ann in a", "a.txt", 7),
            (Some("2"), "Bob", "a.txt", 8),
            (None, "no key", "a.txt", 9),
            (None, "no key again", "a.txt", 10),
        ];
        let b = batch(&plan, &rows);
        index.observe(&b)?;
        let split = index.split(&b)?;
        assert_eq!(
            names(&split.kept),
            ["Ann in a", "Bob", "no key", "no key again"]
        );
        let q = split.quarantined.ok_or("nothing quarantined")?;
        assert_eq!(q.num_rows(), 1);
        let reason = q.column(4).as_string::<i32>().value(0);
        assert_eq!(
            reason,
            "duplicate_key: a row with the same customer_no was loaded from a.txt line 7"
        );
        assert_eq!(
            q.column(5).as_string::<i32>().value(0),
            "customer_no=1 | name=Ann in b"
        );
        assert_eq!(split.moved.get("b.txt"), Some(&1));
        Ok(())
    }

    #[test]
    fn with_on_duplicate_last_the_latest_row_replaces_the_others() -> Result<(), String> {
        let plan = plan("last");
        let mut index = KeyIndex::new(&plan)?.ok_or("no key")?;
        let first = batch(&plan, &[(Some("1"), "old", "2025-01.txt", 3)]);
        let second = batch(
            &plan,
            &[
                (Some("1"), "newer", "2025-02.txt", 1),
                (Some("1"), "newest", "2025-02.txt", 2),
            ],
        );
        index.observe(&first)?;
        index.observe(&second)?;
        assert_eq!(names(&index.split(&first)?.kept), Vec::<String>::new());
        let split = index.split(&second)?;
        assert_eq!(names(&split.kept), ["newest"]);
        let q = split.quarantined.ok_or("nothing quarantined")?;
        assert!(
            q.column(4)
                .as_string::<i32>()
                .value(0)
                .contains("replaced by the later row")
        );
        Ok(())
    }
}
