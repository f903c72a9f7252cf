//! Test support for clientele's end-to-end tests: what a test needs to look at a warehouse the
//! real binary wrote.
//!
//! # Overview
//! - [`read_parquet`] reads a published table's file; [`strings`] and [`numbers`] get a column by
//!   name from its batches, whatever its Arrow type.
//! - [`committed_files`] reads the latest commit (logical path → physical file); [`partition`] and
//!   [`committed`] find one committed file; [`published_checksums`] lists every
//!   committed file with its SHA-256 (for "same inputs, same outputs" checks); [`manifests`] reads
//!   the run records.
//! - [`masked_report`] replaces what changes from run to run in a run report (durations, memory,
//!   run ids, clock times, a temporary directory) so that the report can be snapshot-tested.
//!
//! # Example
//! ```
//! let report = "run 20261201T144148.106Z-cce4  job demo  as-of 2025-12-31  SUCCEEDED in 6.1s\n\
//!               ok   ingest       ingest       0.2s  rows in     218,517  out     218,207  peak 74 MiB";
//! let masked = clientele_testkit::masked_report(report, None);
//! assert!(masked.contains("run <run-id>  job demo  as-of 2025-12-31  SUCCEEDED in <secs>"));
//! assert!(masked.contains("<secs>  rows in     218,517  out     218,207  peak <MiB>"));
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};

/// What a test returns.
pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Every batch of a Parquet file.
pub fn read_parquet(path: &Path) -> TestResult<Vec<RecordBatch>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?.build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// A column as text (any type that casts to text; null stays `None`); no values when the batches
/// lack the column.
pub fn strings(batches: &[RecordBatch], column: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in batches {
        let Some(col) = b.column_by_name(column) else {
            continue;
        };
        let Ok(col) = arrow::compute::cast(col, &DataType::Utf8) else {
            continue;
        };
        let s = col.as_string::<i32>();
        out.extend((0..s.len()).map(|i| s.is_valid(i).then(|| s.value(i).to_string())));
    }
    out
}

/// A column as numbers (any type that casts to a double); no values when the batches lack it.
pub fn numbers(batches: &[RecordBatch], column: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for b in batches {
        let Some(col) = b.column_by_name(column) else {
            continue;
        };
        let Ok(col) = arrow::compute::cast(col, &DataType::Float64) else {
            continue;
        };
        let v = col.as_primitive::<Float64Type>();
        out.extend((0..v.len()).map(|i| v.is_valid(i).then(|| v.value(i))));
    }
    out
}

/// The committed files of a local warehouse, logical path → physical file, as the latest commit
/// record in `_commits/` names them (empty before the first commit).
pub fn committed_files(wh: &Path) -> BTreeMap<String, PathBuf> {
    let latest = std::fs::read_dir(wh.join("_commits"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .max();
    let Some(record) = latest else {
        return BTreeMap::new();
    };
    let parsed: serde_json::Value = std::fs::read(&record)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    parsed["files"]
        .as_object()
        .map(|files| {
            files
                .iter()
                .filter_map(|(logical, physical)| {
                    Some((logical.clone(), wh.join(physical.as_str()?)))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The committed file of `layer/table` as of `as_of` in a local warehouse (the logical path when
/// none is committed, so that a test's "missing" message names it).
pub fn partition(wh: &Path, layer: &str, table: &str, as_of: &str) -> PathBuf {
    let logical = format!("{layer}/{table}/as_of={as_of}/part-0.parquet");
    committed(wh, &logical)
}

/// The committed file of a logical path (`exports/x/as_of=D/x.csv`) in a local warehouse, or the
/// logical path itself when none is committed.
pub fn committed(wh: &Path, logical: &str) -> PathBuf {
    committed_files(wh)
        .remove(logical)
        .unwrap_or_else(|| wh.join(logical))
}

/// Every committed file of a local warehouse with its SHA-256, by logical path (for "same inputs,
/// same outputs" checks: the physical names carry run ids).
pub fn published_checksums(wh: &Path) -> BTreeMap<String, String> {
    committed_files(wh)
        .into_iter()
        .map(|(logical, physical)| {
            (
                logical,
                hex::encode(Sha256::digest(std::fs::read(&physical).unwrap_or_default())),
            )
        })
        .collect()
}

/// Whether nobody holds the warehouse lock: its latest generation in `_lock/` is a release (or it
/// was never taken).
pub fn lock_released(wh: &Path) -> bool {
    let latest = std::fs::read_dir(wh.join("_lock"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .is_some_and(|n| n.parse::<u64>().is_ok())
        })
        .max();
    latest.is_none_or(|p| {
        std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["released"] == true)
    }) && !wh.join("_lock.json").exists()
}

/// The run manifests of a local warehouse, oldest first.
pub fn manifests(wh: &Path) -> TestResult<Vec<serde_json::Value>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(wh.join("_runs"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| Ok(serde_json::from_slice(&std::fs::read(f)?)?))
        .collect()
}

/// A run report with what changes from run to run masked: durations (`6.1s` → `<secs>`), memory
/// (`74 MiB` → `<MiB>`), run ids, clock times, and `dir` (a temporary directory) → `<dir>`.
pub fn masked_report(report: &str, dir: Option<&Path>) -> String {
    let mut text = report.to_string();
    if let Some(d) = dir {
        text = text.replace(&d.display().to_string(), "<dir>");
    }
    let rules = [
        (r"\b\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{4}\b", "<run-id>"),
        (
            r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
            "<time>",
        ),
        (r"\b\d+(\.\d+)?s\b", "<secs>"),
        (r"\b\d+ MiB\b", "<MiB>"),
    ];
    for (pattern, with) in rules {
        if let Ok(re) = regex::Regex::new(pattern) {
            text = re.replace_all(&text, with).into_owned();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_keeps_counts_and_hides_what_changes() {
        let masked = masked_report(
            "run 20261201T144148.106Z-cce4 at 2026-12-01T14:41:48.106Z in /tmp/x/warehouse: 1.3s, peak 193 MiB, 57,838 records",
            Some(Path::new("/tmp/x")),
        );
        assert_eq!(
            masked,
            "run <run-id> at <time> in <dir>/warehouse: <secs>, peak <MiB>, 57,838 records"
        );
    }
}
