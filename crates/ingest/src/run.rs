//! Ingesting one source: files → typed batches → Parquet, rejects → quarantine, counts → report.
//! Files unchanged since the last load keep their rows from it; changed files replace theirs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, Utc};
use clientele_store::{Warehouse, WrittenFile};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use crate::error::{Error, Result};
use crate::input::{InputFile, checksum, resolve_inputs};
use crate::readers::{Out, read_inputs};
use crate::spec::{Format, SourcePlan};

/// How a file's rows came into this load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Read and parsed in this run.
    #[default]
    Loaded,
    /// Same name, size and SHA-256 as in the last load: its rows were kept from it, not parsed again.
    Unchanged,
    /// No longer at the location; its rows were kept from the last load (`keep_removed_files`).
    Removed,
}

/// What happened to one input file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileReport {
    /// The file, relative to the job spec's directory when it lies below it (or its URL).
    pub file: String,
    /// Size in bytes, as stored (compressed files: the compressed size).
    pub bytes: u64,
    /// SHA-256 of the stored content, hex.
    pub sha256: String,
    /// Whether the rows were parsed now or kept from the last load.
    #[serde(default)]
    pub status: FileStatus,
    /// Last modification time, when known.
    #[serde(default)]
    pub modified: Option<String>,
    /// Records read (blank lines and skipped header lines are not records).
    pub rows_read: u64,
    /// Records loaded into the raw table.
    pub rows_loaded: u64,
    /// Records sent to quarantine.
    pub rows_quarantined: u64,
    /// Records of people who asked to be forgotten (a tombstone matched), left out of both
    /// tables: `rows_read = rows_loaded + rows_quarantined + rows_forgotten`.
    #[serde(default)]
    pub rows_forgotten: u64,
    /// Lines holding nothing but whitespace.
    pub blank_lines: u64,
    /// Lines skipped by `skip_lines` (and the header of delimited files).
    pub skipped_lines: u64,
}

/// What happened to one source: per file and in total, and the two tables written.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SourceReport {
    pub source: String,
    /// Fingerprint of the source's spec: when it changes, every file is parsed again.
    #[serde(default)]
    pub fingerprint: String,
    /// Whether this load ignored earlier loads (`--full-refresh`, a changed spec, or the first load).
    #[serde(default)]
    pub full_load: bool,
    pub files: Vec<FileReport>,
    pub rows_read: u64,
    pub rows_loaded: u64,
    pub rows_quarantined: u64,
    /// Records of forgotten people left out (see [`FileReport::rows_forgotten`]).
    #[serde(default)]
    pub rows_forgotten: u64,
    /// The raw table.
    pub data: WrittenFile,
    /// The quarantine table.
    pub quarantine: WrittenFile,
}

impl SourceReport {
    /// Checks the source-level limits: rows in a required source, and the reject share.
    pub fn check_limits(&self, plan: &SourcePlan) -> Result<()> {
        if plan.required && self.rows_read == 0 {
            return Err(Error::EmptySource {
                source_name: plan.name.clone(),
                location: plan.display_location(),
            });
        }
        if self.rows_read > 0 {
            let share = self.rows_quarantined as f64 / self.rows_read as f64;
            if share > plan.max_reject_share {
                return Err(Error::TooManyRejects {
                    source_name: plan.name.clone(),
                    quarantined: self.rows_quarantined,
                    read: self.rows_read,
                    share: share * 100.0,
                    limit: plan.max_reject_share * 100.0,
                });
            }
        }
        Ok(())
    }
}

/// The schema of every quarantine table.
pub fn quarantine_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("line", DataType::Int64, false),
        Field::new("field", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]))
}

/// Where the two tables of a source go: the staged path written now and the path recorded for publishing.
#[derive(Debug, Clone)]
pub struct OutputPaths {
    pub data_staged: String,
    pub data_published: String,
    pub quarantine_staged: String,
    pub quarantine_published: String,
}

/// How a load relates to earlier ones.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Parse every file again, whatever was loaded before.
    pub full_refresh: bool,
    /// The report of the source's last published load, whose tables are still in the warehouse.
    pub previous: Option<SourceReport>,
    /// The run's clock, for freshness limits.
    pub now: Option<DateTime<Utc>>,
    /// People who asked to be forgotten: their rows are left out of both tables and counted.
    pub tombstones: std::sync::Arc<clientele_store::tombstone::Tombstones>,
}

/// Checks the freshness limit of a source against its newest file.
fn check_freshness(
    plan: &SourcePlan,
    files: &[InputFile],
    now: Option<DateTime<Utc>>,
) -> Result<()> {
    let (Some(limit), Some(now)) = (plan.freshness, now) else {
        return Ok(());
    };
    let Some((newest, file)) = files
        .iter()
        .filter_map(|f| f.modified.map(|m| (m, f)))
        .max_by_key(|(m, _)| *m)
    else {
        return Ok(());
    };
    let age = (now - newest).to_std().unwrap_or_default();
    if age > limit {
        let secs = |d: std::time::Duration| {
            humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
        };
        return Err(Error::Stale {
            source_name: plan.name.clone(),
            detail: format!(
                "the newest file, '{}', was modified {} ({} ago); the freshness limit is {}, exceeded by {}",
                file.display,
                newest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                secs(age),
                secs(limit),
                secs(age - limit),
            ),
        });
    }
    Ok(())
}

/// Ingests every file of a source. Bad rows go to quarantine; the call fails only for problems with a
/// whole file or the source (see [`Error`]). Call [`SourceReport::check_limits`] on the result.
pub async fn ingest_source(
    plan: &SourcePlan,
    base_dir: &Path,
    warehouse: &Warehouse,
    out: &OutputPaths,
    options: &LoadOptions,
) -> Result<SourceReport> {
    let inputs = if matches!(plan.format, Format::Postgres { .. }) {
        Vec::new()
    } else {
        let files = resolve_inputs(plan, base_dir).await?;
        if files.is_empty() && plan.required {
            return Err(Error::MissingSource {
                source_name: plan.name.clone(),
                location: plan.location.clone(),
            });
        }
        check_freshness(plan, &files, options.now)?;
        files
    };

    // Which earlier rows can be kept: the spec is the same and the file's bytes are the same.
    let previous = options.previous.as_ref().filter(|p| {
        !options.full_refresh
            && p.fingerprint == plan.fingerprint
            && !matches!(plan.format, Format::Postgres { .. })
    });
    let rt = tokio::runtime::Handle::current();
    let mut kept: BTreeMap<String, FileReport> = BTreeMap::new();
    let mut to_parse: Vec<InputFile> = Vec::new();
    if let Some(prev) = previous {
        let by_name: BTreeMap<&str, &FileReport> =
            prev.files.iter().map(|f| (f.file.as_str(), f)).collect();
        let candidates: Vec<(InputFile, FileReport)> = inputs
            .iter()
            .filter_map(|f| {
                by_name
                    .get(f.display.as_str())
                    .filter(|p| p.bytes == f.size)
                    .map(|p| (f.clone(), (*p).clone()))
            })
            .collect();
        let rt2 = rt.clone();
        let source_name = plan.name.clone();
        let same = tokio::task::spawn_blocking(move || {
            let mut same = Vec::new();
            for (f, p) in candidates {
                let (sha, _) = checksum(&f, &rt2).map_err(|source| Error::Io {
                    path: f.error_path(),
                    source,
                })?;
                if sha == p.sha256 {
                    same.push(p);
                }
            }
            Ok::<_, Error>(same)
        })
        .await
        .map_err(|e| Error::Internal {
            source_name,
            reason: e.to_string(),
        })??;
        for mut p in same {
            p.status = FileStatus::Unchanged;
            kept.insert(p.file.clone(), p);
        }
        if plan.keep_removed_files {
            let present: BTreeSet<&str> = inputs.iter().map(|f| f.display.as_str()).collect();
            for p in &prev.files {
                if !present.contains(p.file.as_str()) {
                    let mut p = p.clone();
                    p.status = FileStatus::Removed;
                    kept.insert(p.file.clone(), p);
                }
            }
        }
    }
    for f in &inputs {
        if !kept.contains_key(&f.display) {
            to_parse.push(f.clone());
        }
    }
    if previous.is_none()
        && plan.keep_removed_files
        && options.previous.is_some()
        && !options.full_refresh
    {
        tracing::warn!(source = %plan.name, "the source's spec changed: files loaded before and removed since are dropped");
    }

    // With a unique key, the rows are first written aside, then copied over without duplicates.
    let mut key_index = crate::unique::KeyIndex::new(plan).map_err(|reason| Error::Internal {
        source_name: plan.name.clone(),
        reason,
    })?;
    let first_pass = format!("{}.before-unique-key", out.data_staged);
    let data_target = if key_index.is_some() {
        &first_pass
    } else {
        &out.data_staged
    };
    let mut writer = warehouse.parquet_writer(data_target, plan.arrow_schema())?;
    let mut qwriter = warehouse.parquet_writer(&out.quarantine_staged, quarantine_schema())?;

    // Rows of unchanged files, copied from the last load.
    if let Some(prev) = previous.filter(|_| !kept.is_empty()) {
        let names: BTreeSet<String> = kept.keys().cloned().collect();
        let carried = copy_rows(
            warehouse,
            &prev.data.path,
            crate::spec::FILE_COLUMN,
            &names,
            &plan.arrow_schema(),
            &mut writer,
        )
        .await?;
        let carried_q = copy_rows(
            warehouse,
            &prev.quarantine.path,
            "file",
            &names,
            &quarantine_schema(),
            &mut qwriter,
        )
        .await?;
        let expected: u64 = kept.values().map(|f| f.rows_loaded).sum();
        let expected_q: u64 = kept.values().map(|f| f.rows_quarantined).sum();
        if carried != expected || carried_q != expected_q {
            return Err(Error::Internal {
                source_name: plan.name.clone(),
                reason: format!(
                    "the last load's tables hold {carried} rows and {carried_q} quarantined rows of the unchanged files; its manifest says {expected} and {expected_q}; run with --full-refresh"
                ),
            });
        }
        tracing::info!(source = %plan.name, files = kept.len(), rows = carried, "unchanged files kept from the last load");
    }

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Out>(4);
    let reader_plan = plan.clone();
    let reader_rt = rt.clone();
    let reader =
        tokio::task::spawn_blocking(move || read_inputs(&reader_plan, &to_parse, &reader_rt, &tx));
    // Rows of forgotten people, by file: (left out of the raw table, of the quarantine table).
    let mut forgotten: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let tombstones = &options.tombstones;
    while let Some(batch) = rx.recv().await {
        match batch {
            Out::Data(b) if tombstones.is_empty() => writer.write(&b).await?,
            Out::Quarantine(b) if tombstones.is_empty() => qwriter.write(&b).await?,
            Out::Data(b) => {
                let b = leave_out_forgotten(tombstones, &b, crate::spec::FILE_COLUMN, |f, n| {
                    forgotten.entry(f).or_default().0 += n;
                })?;
                writer.write(&b).await?;
            }
            Out::Quarantine(b) => {
                let b = leave_out_forgotten(tombstones, &b, "file", |f, n| {
                    forgotten.entry(f).or_default().1 += n;
                })?;
                qwriter.write(&b).await?;
            }
        }
    }
    let parsed = reader.await.map_err(|e| Error::Internal {
        source_name: plan.name.clone(),
        reason: e.to_string(),
    })??;
    let mut duplicates: BTreeMap<String, u64> = BTreeMap::new();
    let data = match key_index.as_mut() {
        None => writer.finish(&out.data_published).await?,
        Some(index) => {
            writer.finish(&first_pass).await?;
            let failed = |reason: String| Error::Internal {
                source_name: plan.name.clone(),
                reason: format!("applying unique_key: {reason}"),
            };
            let mut stream = open_stream(warehouse, &first_pass).await?;
            while let Some(batch) = stream.try_next().await.map_err(|e| failed(e.to_string()))? {
                index.observe(&batch).map_err(failed)?;
            }
            let mut unique = warehouse.parquet_writer(&out.data_staged, plan.arrow_schema())?;
            let mut stream = open_stream(warehouse, &first_pass).await?;
            while let Some(batch) = stream.try_next().await.map_err(|e| failed(e.to_string()))? {
                let split = index.split(&batch).map_err(failed)?;
                unique.write(&split.kept).await?;
                if let Some(q) = split.quarantined {
                    qwriter.write(&q).await?;
                }
                for (file, n) in split.moved {
                    *duplicates.entry(file).or_insert(0) += n;
                }
            }
            warehouse.delete(&first_pass).await?;
            unique.finish(&out.data_published).await?
        }
    };
    let quarantine = qwriter.finish(&out.quarantine_published).await?;

    let mut files: Vec<FileReport> = kept.into_values().chain(parsed).collect();
    files.sort_by(|a, b| a.file.cmp(&b.file));
    for f in &mut files {
        if let Some((loaded, quarantined)) = forgotten.get(&f.file) {
            f.rows_loaded = f.rows_loaded.saturating_sub(*loaded);
            f.rows_quarantined = f.rows_quarantined.saturating_sub(*quarantined);
            f.rows_forgotten += loaded + quarantined;
        }
        if let Some(n) = duplicates.get(&f.file) {
            f.rows_loaded = f.rows_loaded.saturating_sub(*n);
            f.rows_quarantined += n;
        }
    }
    let sum = |f: fn(&FileReport) -> u64| files.iter().map(f).sum::<u64>();
    let report = SourceReport {
        source: plan.name.clone(),
        fingerprint: plan.fingerprint.clone(),
        full_load: previous.is_none(),
        rows_read: sum(|f| f.rows_read),
        rows_loaded: sum(|f| f.rows_loaded),
        rows_quarantined: sum(|f| f.rows_quarantined),
        rows_forgotten: sum(|f| f.rows_forgotten),
        files,
        data,
        quarantine,
    };
    // Reconciliation: every record read is either loaded or quarantined, and the tables hold them all.
    if report.rows_read != report.rows_loaded + report.rows_quarantined + report.rows_forgotten
        || report.data.rows != report.rows_loaded
        || report.quarantine.rows != report.rows_quarantined
    {
        return Err(Error::Internal {
            source_name: plan.name.clone(),
            reason: format!(
                "counts do not reconcile: read {}, loaded {} (table {}), quarantined {} (table {})",
                report.rows_read,
                report.rows_loaded,
                report.data.rows,
                report.rows_quarantined,
                report.quarantine.rows
            ),
        });
    }
    Ok(report)
}

/// The rows of `batch` that hold no forgotten person's identifier; `count` is told, per value of
/// the file column, how many were left out.
fn leave_out_forgotten(
    tombstones: &clientele_store::tombstone::Tombstones,
    batch: &RecordBatch,
    file_column: &str,
    mut count: impl FnMut(String, u64),
) -> Result<RecordBatch> {
    use arrow::array::{Array, AsArray};
    let keep = tombstones.keep_mask(batch);
    if keep.true_count() == batch.num_rows() {
        return Ok(batch.clone());
    }
    if let Some(files) = batch
        .column_by_name(file_column)
        .and_then(|c| c.as_string_opt::<i32>())
    {
        for i in (0..batch.num_rows()).filter(|i| !keep.value(*i)) {
            let file = if files.is_valid(i) {
                files.value(i)
            } else {
                ""
            };
            count(file.to_string(), 1);
        }
    }
    arrow::compute::filter_record_batch(batch, &keep).map_err(|e| Error::Internal {
        source_name: file_column.to_string(),
        reason: format!("leaving out forgotten rows: {e}"),
    })
}

/// Copies the rows of a published Parquet file whose `column` is one of `names` into `writer`,
/// streaming. Returns the rows copied. The file's schema must be `schema`.
async fn copy_rows(
    warehouse: &Warehouse,
    path: &str,
    column: &str,
    names: &BTreeSet<String>,
    schema: &SchemaRef,
    writer: &mut clientele_store::ParquetFileWriter,
) -> Result<u64> {
    let builder = stream_builder(warehouse, path).await?;
    let bad = |reason: String| Error::Internal {
        source_name: path.to_string(),
        reason,
    };
    let found = builder.schema().clone();
    let same = found.fields().len() == schema.fields().len()
        && found
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if !same {
        return Err(bad("the last load's table has columns that differ from the source's fields; run with --full-refresh".into()));
    }
    let index = found.index_of(column).map_err(|e| bad(e.to_string()))?;
    let mut stream = builder.build().map_err(|e| bad(e.to_string()))?;
    let mut copied = 0u64;
    while let Some(batch) = stream.try_next().await.map_err(|e| bad(e.to_string()))? {
        let Some(col) = batch.column(index).as_any().downcast_ref::<StringArray>() else {
            return Err(bad(format!("column {column} is not text")));
        };
        let mask: BooleanArray = col
            .iter()
            .map(|v| Some(v.is_some_and(|v| names.contains(v))))
            .collect();
        let kept =
            arrow::compute::filter_record_batch(&batch, &mask).map_err(|e| bad(e.to_string()))?;
        if kept.num_rows() > 0 {
            let kept = RecordBatch::try_new(Arc::clone(schema), kept.columns().to_vec())
                .map_err(|e| bad(e.to_string()))?;
            copied += kept.num_rows() as u64;
            writer.write(&kept).await?;
        }
    }
    Ok(copied)
}

/// The reader of a Parquet file of the warehouse (staged or published), to stream it back.
#[allow(deprecated)]
async fn stream_builder(
    warehouse: &Warehouse,
    path: &str,
) -> Result<
    parquet::arrow::ParquetRecordBatchStreamBuilder<
        parquet::arrow::async_reader::ParquetObjectReader,
    >,
> {
    let store = warehouse.store();
    let object = warehouse.object_path(path);
    let meta = store
        .head(&object)
        .await
        .map_err(|e| clientele_store::Error::Storage {
            path: object.to_string(),
            source: e,
        })?;
    // The object-store reader of parquet 59 is deprecated in favour of hand-written readers; it is
    // still the plain way to stream a published file back.
    #[allow(deprecated)]
    let reader = parquet::arrow::async_reader::ParquetObjectReader::new(store, meta.location)
        .with_file_size(meta.size);
    let bad = |reason: String| Error::Internal {
        source_name: path.to_string(),
        reason,
    };
    parquet::arrow::ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| bad(e.to_string()))
}

/// Streams the batches of a Parquet file of the warehouse.
#[allow(deprecated)]
async fn open_stream(
    warehouse: &Warehouse,
    path: &str,
) -> Result<
    parquet::arrow::async_reader::ParquetRecordBatchStream<
        parquet::arrow::async_reader::ParquetObjectReader,
    >,
> {
    stream_builder(warehouse, path)
        .await?
        .build()
        .map_err(|e| Error::Internal {
            source_name: path.to_string(),
            reason: e.to_string(),
        })
}
