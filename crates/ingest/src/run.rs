//! Ingesting one source: files → typed batches → Parquet, rejects → quarantine, counts → report.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use clientele_store::{Warehouse, WrittenFile};
use sha2::{Digest, Sha256};

use crate::builders::BatchBuilder;
use crate::decode::{decode, raw_text};
use crate::error::{Error, Result};
use crate::formats::{Reject, split_fixed, split_json, split_whitespace};
use crate::spec::{Format, Position, SourcePlan};
use crate::values::{Value, convert};

const BATCH_ROWS: usize = 64 * 1024;

/// What happened to one input file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileReport {
    /// The file, relative to the job spec's directory when it lies below it.
    pub file: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Records read (blank lines and skipped header lines are not records).
    pub rows_read: u64,
    /// Records loaded into the raw table.
    pub rows_loaded: u64,
    /// Records sent to quarantine.
    pub rows_quarantined: u64,
    /// Lines holding nothing but whitespace.
    pub blank_lines: u64,
    /// Lines skipped by `skip_lines` (and the header of delimited files).
    pub skipped_lines: u64,
}

/// What happened to one source: per file and in total, and the two tables written.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SourceReport {
    pub source: String,
    pub files: Vec<FileReport>,
    pub rows_read: u64,
    pub rows_loaded: u64,
    pub rows_quarantined: u64,
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
                location: plan.location.clone(),
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

struct QuarantineRow {
    file: String,
    line: u64,
    field: Option<String>,
    reason: String,
    raw: String,
}

/// The files of a source, sorted by path. `location` is a path or glob relative to `base_dir`.
pub fn resolve_files(plan: &SourcePlan, base_dir: &Path) -> Result<Vec<PathBuf>> {
    let pattern = base_dir.join(&plan.location);
    let pattern_text = pattern.to_string_lossy();
    let bad = |reason: String| Error::BadSpec {
        source_name: plan.name.clone(),
        problems: vec![reason],
    };
    let paths = glob::glob(&pattern_text).map_err(|e| {
        bad(format!(
            "location '{}' is not a valid glob: {e}",
            plan.location
        ))
    })?;
    let mut files = Vec::new();
    for p in paths {
        let p = p.map_err(|e| Error::Io {
            path: e.path().to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        if p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Where the two tables of a source go: the staged path written now and the path recorded for publishing.
#[derive(Debug, Clone)]
pub struct OutputPaths {
    pub data_staged: String,
    pub data_published: String,
    pub quarantine_staged: String,
    pub quarantine_published: String,
}

/// Ingests every file of a source. Bad rows go to quarantine; the call fails only for problems with a
/// whole file or the source (see [`Error`]). Call [`SourceReport::check_limits`] on the result.
pub async fn ingest_source(
    plan: &SourcePlan,
    base_dir: &Path,
    warehouse: &Warehouse,
    out: &OutputPaths,
) -> Result<SourceReport> {
    let files = resolve_files(plan, base_dir)?;
    if files.is_empty() && plan.required {
        return Err(Error::MissingSource {
            source_name: plan.name.clone(),
            location: plan.location.clone(),
        });
    }
    let mut writer = warehouse.parquet_writer(&out.data_staged, plan.arrow_schema())?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(4);
    let reader_plan = plan.clone();
    let base = base_dir.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || read_files(&reader_plan, &base, &files, &tx));
    while let Some(batch) = rx.recv().await {
        writer.write(&batch).await?;
    }
    let (file_reports, quarantine) = reader.await.map_err(|e| Error::Internal {
        source_name: plan.name.clone(),
        reason: e.to_string(),
    })??;
    let data = writer.finish(&out.data_published).await?;

    let qbatch = quarantine_batch(&plan.name, &quarantine).map_err(|reason| Error::Internal {
        source_name: plan.name.clone(),
        reason,
    })?;
    let mut qwriter = warehouse.parquet_writer(&out.quarantine_staged, quarantine_schema())?;
    qwriter.write(&qbatch).await?;
    let quarantine_file = qwriter.finish(&out.quarantine_published).await?;

    let sum = |f: fn(&FileReport) -> u64| file_reports.iter().map(f).sum::<u64>();
    let report = SourceReport {
        source: plan.name.clone(),
        rows_read: sum(|f| f.rows_read),
        rows_loaded: sum(|f| f.rows_loaded),
        rows_quarantined: sum(|f| f.rows_quarantined),
        files: file_reports,
        data,
        quarantine: quarantine_file,
    };
    // Reconciliation: every record read is either loaded or quarantined, and the tables hold them all.
    if report.rows_read != report.rows_loaded + report.rows_quarantined
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

fn quarantine_batch(source: &str, rows: &[QuarantineRow]) -> Result<RecordBatch, String> {
    let mut s = StringBuilder::new();
    let mut file = StringBuilder::new();
    let mut line = Int64Builder::new();
    let mut field = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut raw = StringBuilder::new();
    for r in rows {
        s.append_value(source);
        file.append_value(&r.file);
        line.append_value(i64::try_from(r.line).unwrap_or(i64::MAX));
        field.append_option(r.field.as_deref());
        reason.append_value(&r.reason);
        raw.append_value(&r.raw);
    }
    RecordBatch::try_new(
        quarantine_schema(),
        vec![
            Arc::new(s.finish()),
            Arc::new(file.finish()),
            Arc::new(line.finish()),
            Arc::new(field.finish()),
            Arc::new(reason.finish()),
            Arc::new(raw.finish()),
        ],
    )
    .map_err(|e| e.to_string())
}

/// Hashes and counts every byte read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

struct FileState<'a> {
    plan: &'a SourcePlan,
    display: String,
    report: FileReport,
    builder: &'a mut BatchBuilder,
    quarantine: &'a mut Vec<QuarantineRow>,
    tx: &'a tokio::sync::mpsc::Sender<RecordBatch>,
}

impl FileState<'_> {
    fn reject(&mut self, line: u64, field: Option<String>, reason: String, raw: String) {
        self.report.rows_quarantined += 1;
        self.quarantine.push(QuarantineRow {
            file: self.display.clone(),
            line,
            field,
            reason,
            raw,
        });
    }

    /// Converts the field texts of one record and appends it, or quarantines it with the first problem.
    fn accept(
        &mut self,
        line: u64,
        texts: &[Option<Cow<'_, str>>],
        raw: impl FnOnce() -> String,
    ) -> Result<()> {
        let mut values = Vec::with_capacity(texts.len());
        for (field, text) in self.plan.fields.iter().zip(texts) {
            match convert(field, text.as_deref(), &self.plan.null_values) {
                Ok(v) => values.push(v),
                Err(reason) => {
                    self.reject(line, Some(field.name.clone()), reason, raw());
                    return Ok(());
                }
            }
        }
        self.push(values, line)
    }

    fn push(&mut self, values: Vec<Value>, line: u64) -> Result<()> {
        self.builder
            .push(values, &self.display, line)
            .map_err(|reason| Error::Internal {
                source_name: self.plan.name.clone(),
                reason,
            })?;
        self.report.rows_loaded += 1;
        if self.builder.len() >= BATCH_ROWS {
            let batch = self.builder.take().map_err(|reason| Error::Internal {
                source_name: self.plan.name.clone(),
                reason,
            })?;
            self.tx.blocking_send(batch).map_err(|_| Error::Internal {
                source_name: self.plan.name.clone(),
                reason: "the Parquet writer stopped".into(),
            })?;
        }
        Ok(())
    }
}

fn read_files(
    plan: &SourcePlan,
    base_dir: &Path,
    files: &[PathBuf],
    tx: &tokio::sync::mpsc::Sender<RecordBatch>,
) -> Result<(Vec<FileReport>, Vec<QuarantineRow>)> {
    let mut builder = BatchBuilder::new(plan);
    let mut quarantine = Vec::new();
    let mut reports = Vec::new();
    for path in files {
        let display = path
            .strip_prefix(base_dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        // Errors name the file by its plain absolute path; `_file` keeps the path relative to the spec.
        let path = &clientele_store::normalise_path(path);
        let file = File::open(path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let reader = BufReader::with_capacity(
            1 << 20,
            HashingReader {
                inner: file,
                hasher: Sha256::new(),
                bytes: 0,
            },
        );
        let mut state = FileState {
            plan,
            report: FileReport {
                file: display.clone(),
                ..FileReport::default()
            },
            display,
            builder: &mut builder,
            quarantine: &mut quarantine,
            tx,
        };
        let hashing = match plan.format {
            Format::Delimited { delimiter, header } => {
                read_delimited(&mut state, path, reader, delimiter, header)?
            }
            _ => read_lines(&mut state, path, reader)?,
        };
        state.report.bytes = hashing.bytes;
        state.report.sha256 = hex::encode(hashing.hasher.finalize());
        tracing::debug!(source = %plan.name, file = %state.report.file, read = state.report.rows_read, "file ingested");
        reports.push(state.report);
    }
    if builder.len() > 0 {
        let batch = builder.take().map_err(|reason| Error::Internal {
            source_name: plan.name.clone(),
            reason,
        })?;
        tx.blocking_send(batch).map_err(|_| Error::Internal {
            source_name: plan.name.clone(),
            reason: "the Parquet writer stopped".into(),
        })?;
    }
    Ok((reports, quarantine))
}

fn strip_eol(mut rec: &[u8]) -> &[u8] {
    if let [rest @ .., b'\n'] = rec {
        rec = rest;
    }
    if let [rest @ .., b'\r'] = rec {
        rec = rest;
    }
    rec
}

fn read_lines(
    state: &mut FileState<'_>,
    path: &Path,
    mut reader: BufReader<HashingReader<File>>,
) -> Result<HashingReader<File>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let plan = state.plan;
    let mut buf = Vec::with_capacity(512);
    let mut line_no: u64 = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(io)? == 0 {
            break;
        }
        line_no += 1;
        let mut rec = strip_eol(&buf);
        if line_no == 1 {
            rec = rec.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(rec);
        }
        if line_no <= plan.skip_lines as u64 {
            state.report.skipped_lines += 1;
            continue;
        }
        if rec.iter().all(u8::is_ascii_whitespace) {
            state.report.blank_lines += 1;
            continue;
        }
        state.report.rows_read += 1;
        let text = match decode(rec, plan.encoding) {
            Ok(t) => t,
            Err(reason) => {
                state.reject(line_no, None, reason, raw_text(rec, plan.encoding));
                continue;
            }
        };
        let mut texts = Vec::with_capacity(plan.fields.len());
        let split: Result<(), Reject> = match plan.format {
            Format::FixedWidth => split_fixed(&text, &plan.fields, &mut texts),
            Format::Whitespace => split_whitespace(&text, &plan.fields, &mut texts),
            Format::JsonLines => {
                let mut owned = Vec::with_capacity(plan.fields.len());
                let r = split_json(&text, &plan.fields, &mut owned);
                texts.extend(owned);
                r
            }
            Format::Delimited { .. } => {
                Err((None, "internal: delimited file read as lines".into()))
            }
        };
        match split {
            Ok(()) => state.accept(line_no, &texts, || raw_text(rec, plan.encoding))?,
            Err((field, reason)) => {
                state.reject(line_no, field, reason, raw_text(rec, plan.encoding))
            }
        }
    }
    Ok(reader.into_inner())
}

fn read_delimited(
    state: &mut FileState<'_>,
    path: &Path,
    mut reader: BufReader<HashingReader<File>>,
    delimiter: u8,
    header: bool,
) -> Result<HashingReader<File>> {
    let plan = state.plan;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let bad_file = |reason: String| Error::BadFile {
        source_name: plan.name.clone(),
        file: path.to_path_buf(),
        reason,
    };
    // Skip leading lines (and a BOM) before the CSV reader sees the stream.
    let mut skipped = 0u64;
    let mut scratch = Vec::new();
    for _ in 0..plan.skip_lines {
        scratch.clear();
        if reader.read_until(b'\n', &mut scratch).map_err(io)? == 0 {
            break;
        }
        skipped += 1;
    }
    if skipped == 0 && reader.fill_buf().map_err(io)?.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
    }
    state.report.skipped_lines = skipped;
    let mut csv = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut record = csv::ByteRecord::new();
    // Column index of each field, from the header or the declared column numbers.
    let mut columns: Option<Vec<usize>> = (!header).then(|| {
        plan.fields
            .iter()
            .map(|f| {
                if let Position::Column(c) = f.position {
                    c
                } else {
                    0
                }
            })
            .collect()
    });
    let mut width = columns
        .as_ref()
        .and_then(|c| c.iter().max().map(|m| m + 1))
        .unwrap_or(0);
    let delim = char::from(delimiter).to_string();
    loop {
        match csv.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(bad_file(format!("cannot be read as delimited text: {e}")));
            }
        }
        let line = record.position().map_or(0, |p| p.line()) + skipped;
        let raw = || {
            record
                .iter()
                .map(|f| raw_text(f, plan.encoding))
                .collect::<Vec<_>>()
                .join(&delim)
        };
        let Some(cols) = &columns else {
            // The header record.
            let names: Vec<String> = record
                .iter()
                .map(|f| {
                    decode(f, plan.encoding)
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default()
                })
                .collect();
            let mut idx = Vec::with_capacity(plan.fields.len());
            for f in &plan.fields {
                let Position::Header(h) = &f.position else {
                    continue;
                };
                match names.iter().position(|n| n == h) {
                    Some(i) => idx.push(i),
                    None => {
                        return Err(bad_file(format!(
                            "the header has no column '{h}' (field '{}'); it has: {}",
                            f.name,
                            names.join(", ")
                        )));
                    }
                }
            }
            width = names.len();
            columns = Some(idx);
            state.report.skipped_lines += 1;
            continue;
        };
        state.report.rows_read += 1;
        // A header-less file may carry trailing columns the layout does not use; too few is always wrong.
        let wrong_width = if header {
            record.len() != width
        } else {
            record.len() < width
        };
        if wrong_width {
            let reason = if header {
                format!(
                    "the record has {} fields; the header has {width}",
                    record.len()
                )
            } else {
                format!(
                    "the record has {} fields; the layout needs {width}",
                    record.len()
                )
            };
            let r = raw();
            state.reject(line, None, reason, r);
            continue;
        }
        let mut texts: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(cols.len());
        let mut bad = None;
        for (f, &c) in plan.fields.iter().zip(cols) {
            match decode(record.get(c).unwrap_or_default(), plan.encoding) {
                Ok(t) => texts.push(Some(t)),
                Err(reason) => {
                    bad = Some((f.name.clone(), reason));
                    break;
                }
            }
        }
        if let Some((field, reason)) = bad {
            let r = raw();
            state.reject(line, Some(field), reason, r);
            continue;
        }
        state.accept(line, &texts, raw)?;
    }
    Ok(csv.into_inner().into_inner())
}
