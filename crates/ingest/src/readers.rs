//! Format readers: each turns one input into records, and each record into a typed row or a
//! quarantine row. They run on a blocking thread and hand batches to the async writers.

use std::borrow::Cow;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Int64Builder, RecordBatch, StringBuilder};
use tokio::runtime::Handle;
use tokio::sync::mpsc::Sender;

use crate::builders::BatchBuilder;
use crate::copybook::{CopybookPlan, RecordFormat, decode_field};
use crate::decode::{decode, raw_text};
use crate::delimited::{read_delimited, resolve_header};
use crate::error::{Error, Result};
use crate::formats::{Reject, split_fixed, split_json, split_whitespace};
use crate::input::{HashingReader, InputFile, decompress};
use crate::run::{FileReport, FileStatus, quarantine_schema};
use crate::spec::{Compression, FieldType, Format, Position, SourcePlan};
use crate::values::{Value, convert};

const BATCH_ROWS: usize = 64 * 1024;
const QUARANTINE_BATCH_ROWS: usize = 8 * 1024;

/// A batch for one of the two tables of a source.
pub(crate) enum Out {
    Data(RecordBatch),
    Quarantine(RecordBatch),
}

/// Quarantine rows, flushed in batches so that a file of garbage streams like any other.
pub(crate) struct QuarantineBuilder {
    source: String,
    file: StringBuilder,
    line: Int64Builder,
    field: StringBuilder,
    reason: StringBuilder,
    raw: StringBuilder,
    len: usize,
}

impl QuarantineBuilder {
    pub(crate) fn new(source: &str) -> Self {
        Self {
            source: source.to_string(),
            file: StringBuilder::new(),
            line: Int64Builder::new(),
            field: StringBuilder::new(),
            reason: StringBuilder::new(),
            raw: StringBuilder::new(),
            len: 0,
        }
    }

    pub(crate) fn push(
        &mut self,
        file: &str,
        line: u64,
        field: Option<&str>,
        reason: &str,
        raw: &str,
    ) {
        self.file.append_value(file);
        self.line
            .append_value(i64::try_from(line).unwrap_or(i64::MAX));
        self.field.append_option(field);
        self.reason.append_value(reason);
        self.raw.append_value(raw);
        self.len += 1;
    }

    pub(crate) fn take(&mut self) -> Result<RecordBatch, String> {
        let n = self.len;
        self.len = 0;
        let mut source = StringBuilder::new();
        for _ in 0..n {
            source.append_value(&self.source);
        }
        RecordBatch::try_new(
            quarantine_schema(),
            vec![
                Arc::new(source.finish()),
                Arc::new(self.file.finish()),
                Arc::new(self.line.finish()),
                Arc::new(self.field.finish()),
                Arc::new(self.reason.finish()),
                Arc::new(self.raw.finish()),
            ],
        )
        .map_err(|e| e.to_string())
    }
}

/// Empties a vector of values and hands its allocation on with another lifetime (the standard
/// library reuses the buffer when collecting into a vector of the same layout).
fn recycle<'b>(mut v: Vec<Value<'_>>) -> Vec<Value<'b>> {
    v.clear();
    v.into_iter().map(|_| Value::Null).collect()
}

/// Where a file's batches go: to the Parquet writer, or collected (a chunk parsed by a worker).
pub(crate) enum Sink<'a> {
    Channel(&'a Sender<Out>),
    Collect(Vec<Out>),
}

/// Per-file state: counts, and where rows and rejects go.
pub(crate) struct FileState<'a> {
    pub(crate) plan: &'a SourcePlan,
    display: String,
    pub(crate) report: FileReport,
    builder: &'a mut BatchBuilder,
    quarantine: &'a mut QuarantineBuilder,
    sink: Sink<'a>,
    values: Vec<Value<'static>>,
}

/// What a parsing thread needs to parse part of a file on its own.
pub(crate) struct Detached<'p> {
    plan: &'p SourcePlan,
    display: String,
}

impl Detached<'_> {
    /// Runs `parse` with a state of its own that collects the batches; returns the counts and the
    /// batches, the last partial ones included.
    pub(crate) fn parse(
        &self,
        parse: impl FnOnce(&mut FileState<'_>) -> Result<()>,
    ) -> Result<(FileReport, Vec<Out>)> {
        let mut builder = BatchBuilder::new(self.plan);
        let mut quarantine = QuarantineBuilder::new(&self.plan.name);
        let mut state = FileState {
            plan: self.plan,
            display: self.display.clone(),
            report: FileReport::default(),
            builder: &mut builder,
            quarantine: &mut quarantine,
            sink: Sink::Collect(Vec::new()),
            values: Vec::new(),
        };
        parse(&mut state)?;
        state.flush()?;
        let report = std::mem::take(&mut state.report);
        let outs = match state.sink {
            Sink::Collect(outs) => outs,
            Sink::Channel(_) => Vec::new(),
        };
        Ok((report, outs))
    }
}

impl FileState<'_> {
    pub(crate) fn internal(&self, reason: String) -> Error {
        Error::Internal {
            source_name: self.plan.name.clone(),
            reason,
        }
    }

    pub(crate) fn send(&mut self, out: Out) -> Result<()> {
        match &mut self.sink {
            Sink::Channel(tx) => tx
                .blocking_send(out)
                .map_err(|_| self.internal("the Parquet writer stopped".into())),
            Sink::Collect(outs) => {
                outs.push(out);
                Ok(())
            }
        }
    }

    /// Sends the rows gathered so far, so that what is sent next comes after them.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.builder.len() > 0 {
            let batch = self.builder.take().map_err(|r| self.internal(r))?;
            self.send(Out::Data(batch))?;
        }
        if self.quarantine.len > 0 {
            let batch = self.quarantine.take().map_err(|r| self.internal(r))?;
            self.send(Out::Quarantine(batch))?;
        }
        Ok(())
    }
}

impl<'a> FileState<'a> {
    /// A template for parsing threads working on the same file.
    pub(crate) fn detached(&self) -> Detached<'a> {
        Detached {
            plan: self.plan,
            display: self.display.clone(),
        }
    }

    pub(crate) fn reject(
        &mut self,
        line: u64,
        field: Option<String>,
        reason: String,
        raw: String,
    ) -> Result<()> {
        self.report.rows_quarantined += 1;
        self.quarantine
            .push(&self.display, line, field.as_deref(), &reason, &raw);
        if self.quarantine.len >= QUARANTINE_BATCH_ROWS {
            let batch = self.quarantine.take().map_err(|r| self.internal(r))?;
            self.send(Out::Quarantine(batch))?;
        }
        Ok(())
    }

    /// Converts the field texts of one record and appends it, or quarantines it with the first problem.
    pub(crate) fn accept(
        &mut self,
        line: u64,
        texts: &[Option<Cow<'_, str>>],
        raw: impl FnOnce() -> String,
    ) -> Result<()> {
        // The value buffer is kept between rows; it is empty whenever it is stored.
        let mut values = recycle(std::mem::take(&mut self.values));
        for (field, text) in self.plan.fields.iter().zip(texts) {
            match convert(field, text.as_deref(), &self.plan.null_values) {
                Ok(v) => values.push(v),
                Err(reason) => {
                    self.values = recycle(values);
                    return self.reject(line, Some(field.name.clone()), reason, raw());
                }
            }
        }
        let pushed = self.builder.push(&values, &self.display, line);
        self.values = recycle(values);
        pushed.map_err(|r| self.internal(r))?;
        self.report.rows_loaded += 1;
        if self.builder.len() >= BATCH_ROWS {
            let batch = self.builder.take().map_err(|r| self.internal(r))?;
            self.send(Out::Data(batch))?;
        }
        Ok(())
    }
}

/// Reads every input of a source (or the PostgreSQL relation), sending batches to `tx`.
pub(crate) fn read_inputs(
    plan: &SourcePlan,
    files: &[InputFile],
    rt: &Handle,
    tx: &Sender<Out>,
) -> Result<Vec<FileReport>> {
    let mut builder = BatchBuilder::new(plan);
    let mut quarantine = QuarantineBuilder::new(&plan.name);
    let mut reports = Vec::new();
    if let Format::Postgres { relation } = &plan.format {
        let mut state = FileState {
            plan,
            display: relation.display(&plan.location),
            report: FileReport {
                file: relation.display(&plan.location),
                ..FileReport::default()
            },
            builder: &mut builder,
            quarantine: &mut quarantine,
            sink: Sink::Channel(tx),
            values: Vec::new(),
        };
        crate::postgres::read_relation(&mut state, plan, relation, rt)?;
        reports.push(state.report);
    }
    for file in files {
        let mut state = FileState {
            plan,
            display: file.display.clone(),
            report: FileReport {
                file: file.display.clone(),
                status: FileStatus::Loaded,
                modified: file
                    .modified
                    .map(|m| m.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                ..FileReport::default()
            },
            builder: &mut builder,
            quarantine: &mut quarantine,
            sink: Sink::Channel(tx),
            values: Vec::new(),
        };
        let path = file.error_path();
        let io_err = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let (sha, bytes) = match &plan.format {
            Format::Parquet | Format::Xlsx { .. } => {
                let (local, sha, bytes) = local_copy(file, rt).map_err(io_err)?;
                let local_path = local.path();
                if let Format::Xlsx { sheet } = &plan.format {
                    read_xlsx(&mut state, &path, local_path, sheet.as_deref())?;
                } else {
                    read_parquet(&mut state, &path, local_path)?;
                }
                (sha, bytes)
            }
            _ => {
                let (hashing, digest) = HashingReader::new(file.open(rt).map_err(io_err)?);
                let compression = file.compression(plan.compression);
                let decoded = decompress(hashing, compression).map_err(io_err)?;
                let mut reader = BufReader::with_capacity(1 << 20, decoded);
                let parsed = match &plan.format {
                    options @ Format::Delimited { .. } => {
                        read_delimited(&mut state, &path, &mut reader, options)
                    }
                    Format::Copybook(c) => read_copybook(&mut state, &path, &mut reader, c),
                    _ => read_lines(&mut state, &path, &mut reader),
                };
                match parsed {
                    Err(Error::Io { source, .. }) => {
                        return Err(decode_error(plan, &path, compression, source));
                    }
                    other => other?,
                }
                // Drain what the parser left (trailing bytes, compressed framing) so the checksum
                // covers the whole file.
                io::copy(&mut reader, &mut io::sink())
                    .map_err(|source| decode_error(plan, &path, compression, source))?;
                let d = digest.borrow();
                (d.hex(), d.bytes)
            }
        };
        state.report.sha256 = sha;
        state.report.bytes = bytes;
        tracing::debug!(source = %plan.name, file = %state.report.file, read = state.report.rows_read, "file ingested");
        reports.push(state.report);
    }
    // The last partial batches of both tables.
    let internal = |reason: String| Error::Internal {
        source_name: plan.name.clone(),
        reason,
    };
    let mut tail = Vec::new();
    if builder.len() > 0 {
        tail.push(Out::Data(builder.take().map_err(internal)?));
    }
    if quarantine.len > 0 {
        tail.push(Out::Quarantine(quarantine.take().map_err(internal)?));
    }
    for out in tail {
        tx.blocking_send(out)
            .map_err(|_| internal("the Parquet writer stopped".into()))?;
    }
    Ok(reports)
}

/// A read error, worded for compressed input where that is the likely cause.
fn decode_error(
    plan: &SourcePlan,
    path: &Path,
    compression: Compression,
    source: io::Error,
) -> Error {
    match compression {
        Compression::Gzip | Compression::Zstd => Error::BadFile {
            source_name: plan.name.clone(),
            file: path.to_path_buf(),
            reason: format!(
                "cannot be decompressed as {}: {source} (truncated or not {} data?)",
                if compression == Compression::Gzip {
                    "gzip"
                } else {
                    "zstd"
                },
                if compression == Compression::Gzip {
                    "gzip"
                } else {
                    "zstd"
                },
            ),
        },
        _ => Error::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// A local file to read with random access (Parquet, xlsx): the file itself, or a temporary copy of
/// a remote object. Returns it with the stored bytes' SHA-256 and size.
enum LocalCopy {
    Original(PathBuf),
    Temporary(tempfile::NamedTempFile),
}

impl LocalCopy {
    fn path(&self) -> &Path {
        match self {
            Self::Original(p) => p,
            Self::Temporary(t) => t.path(),
        }
    }
}

fn local_copy(file: &InputFile, rt: &Handle) -> io::Result<(LocalCopy, String, u64)> {
    let (mut reader, digest) = HashingReader::new(file.open(rt)?);
    let copy = match file.local_path() {
        Some(p) => {
            io::copy(&mut reader, &mut io::sink())?;
            LocalCopy::Original(p.to_path_buf())
        }
        None => {
            let mut tmp = tempfile::NamedTempFile::new()?;
            io::copy(&mut reader, tmp.as_file_mut())?;
            LocalCopy::Temporary(tmp)
        }
    };
    let d = digest.borrow();
    Ok((copy, d.hex(), d.bytes))
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

/// Reads one line into `buf`, keeping at most `max` bytes; the rest of a longer line is read and
/// dropped. Returns the bytes the line had (0 at the end of the input).
pub(crate) fn read_line_bounded(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<usize> {
    let mut total = 0;
    loop {
        let (done, used) = {
            let available = match reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(total);
            }
            let (done, used) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (true, i + 1),
                None => (false, available.len()),
            };
            let room = max.saturating_sub(buf.len());
            buf.extend_from_slice(&available[..used.min(room)]);
            (done, used)
        };
        reader.consume(used);
        total += used;
        if done {
            return Ok(total);
        }
    }
}

pub(crate) fn read_lines(
    state: &mut FileState<'_>,
    path: &Path,
    reader: &mut impl BufRead,
) -> Result<()> {
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let plan = state.plan;
    let mut buf = Vec::with_capacity(512);
    let mut line_no: u64 = 0;
    loop {
        buf.clear();
        let len = read_line_bounded(reader, &mut buf, plan.max_line_bytes).map_err(io_err)?;
        if len == 0 {
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
        if len > plan.max_line_bytes {
            state.report.rows_read += 1;
            state.reject(
                line_no,
                None,
                format!(
                    "the line is {len} bytes long, more than max_line_bytes ({})",
                    plan.max_line_bytes
                ),
                raw_text(rec, plan.encoding),
            )?;
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
                state.reject(line_no, None, reason, raw_text(rec, plan.encoding))?;
                continue;
            }
        };
        let mut texts = Vec::with_capacity(plan.fields.len());
        let split: Result<(), Reject> = match plan.format {
            Format::FixedWidth => match plan.record_length {
                Some(n) if text.chars().count() != n => Err((
                    None,
                    format!(
                        "record_length: the record is {} characters long, not {n}",
                        text.chars().count()
                    ),
                )),
                _ => split_fixed(&text, &plan.fields, &mut texts),
            },
            Format::Whitespace => split_whitespace(&text, &plan.fields, &mut texts),
            Format::JsonLines => {
                let mut owned = Vec::with_capacity(plan.fields.len());
                let r = split_json(&text, &plan.fields, &mut owned);
                texts.extend(owned);
                r
            }
            _ => Err((None, "internal: this format is not read as lines".into())),
        };
        match split {
            Ok(()) => state.accept(line_no, &texts, || raw_text(rec, plan.encoding))?,
            Err((field, reason)) => {
                state.reject(line_no, field, reason, raw_text(rec, plan.encoding))?
            }
        }
    }
    Ok(())
}

/// Reads mainframe records: fixed-length, or variable-length after record descriptor words.
fn read_copybook(
    state: &mut FileState<'_>,
    path: &Path,
    reader: &mut impl BufRead,
    book: &CopybookPlan,
) -> Result<()> {
    let plan = state.plan;
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut record = Vec::with_capacity(book.record_length);
    let mut offset: u64 = 0;
    let mut number: u64 = 0;
    let hex_raw = |bytes: &[u8]| {
        let shown = &bytes[..bytes.len().min(1000)];
        let mut s = hex::encode(shown);
        if bytes.len() > shown.len() {
            s.push_str(&format!("… ({} bytes in all)", bytes.len()));
        }
        s
    };
    loop {
        let length = match book.record_format {
            RecordFormat::Fixed => book.record_length,
            RecordFormat::Rdw => {
                let mut rdw = [0u8; 4];
                let got = read_full(reader, &mut rdw).map_err(io_err)?;
                if got == 0 {
                    break;
                }
                let declared = usize::from(u16::from_be_bytes([rdw[0], rdw[1]]));
                if got < 4 || declared < 4 {
                    number += 1;
                    state.report.rows_read += 1;
                    let rest = drain_count(reader).map_err(io_err)?;
                    state.reject(
                        number,
                        None,
                        format!(
                            "record {number} at byte {offset}: the record descriptor word {} is not valid (length {declared}); the {rest} bytes after it are not read",
                            hex::encode(&rdw[..got]),
                        ),
                        hex::encode(&rdw[..got]),
                    )?;
                    break;
                }
                offset += 4;
                declared - 4
            }
        };
        record.clear();
        record.resize(length, 0);
        let got = read_full(reader, &mut record).map_err(io_err)?;
        if got == 0 && length > 0 {
            if book.record_format == RecordFormat::Rdw {
                number += 1;
                state.report.rows_read += 1;
                state.reject(
                    number,
                    None,
                    format!("record {number} at byte {}: the record descriptor word says {length} bytes, but the file ends", offset - 4),
                    String::new(),
                )?;
            }
            break;
        }
        number += 1;
        state.report.rows_read += 1;
        if got < length {
            let what = match book.record_format {
                RecordFormat::Fixed => format!(
                    "the file ends with {got} bytes, short of a whole record ({length} bytes by the copybook)"
                ),
                RecordFormat::Rdw => format!(
                    "the record descriptor word says {length} bytes, but only {got} remain in the file"
                ),
            };
            state.reject(
                number,
                None,
                format!("record {number} at byte {offset}: {what}"),
                hex_raw(&record[..got]),
            )?;
            break;
        }
        let at = offset;
        offset += length as u64;
        let rec = &record[..];
        // The record type chooses the REDEFINES alternative.
        let chosen = match &book.selector {
            None => None,
            Some((field, map)) => {
                let value = book
                    .fields
                    .get(*field)
                    .map(|f| decode_field(f, rec, book.code_page))
                    .unwrap_or(Ok(None));
                let value = match value {
                    Ok(v) => v.unwrap_or_default().trim().to_string(),
                    Err(reason) => {
                        state.reject(
                            number,
                            None,
                            format!("record {number} at byte {at}: record type: {reason}"),
                            hex_raw(rec),
                        )?;
                        continue;
                    }
                };
                match map.get(&value) {
                    Some(sa) => Some(*sa),
                    None => {
                        state.reject(
                            number,
                            None,
                            format!(
                                "record {number} at byte {at}: record type '{value}' is not in record_types ({})",
                                map.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                            hex_raw(rec),
                        )?;
                        continue;
                    }
                }
            }
        };
        let mut texts: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(plan.fields.len());
        let mut bad = None;
        for f in &plan.fields {
            let Position::Copybook(i) = f.position else {
                texts.push(None);
                continue;
            };
            if !book.is_active(i, chosen) {
                texts.push(None);
                continue;
            }
            let Some(laid) = book.fields.get(i) else {
                texts.push(None);
                continue;
            };
            match decode_field(laid, rec, book.code_page) {
                Ok(t) => texts.push(t.map(Cow::Owned)),
                Err(reason) => {
                    bad = Some((
                        f.name.clone(),
                        format!(
                            "{} at byte {}: {reason}",
                            laid.cobol_name,
                            at + laid.offset as u64
                        ),
                    ));
                    break;
                }
            }
        }
        if let Some((field, reason)) = bad {
            state.reject(number, Some(field), reason, hex_raw(rec))?;
            continue;
        }
        state.accept(number, &texts, || hex_raw(rec))?;
    }
    Ok(())
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(crate) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn drain_count(reader: &mut impl Read) -> io::Result<u64> {
    io::copy(reader, &mut io::sink())
}

/// Text of one Arrow value, as the typing rules read it.
fn cell_text(
    formatter: &arrow::util::display::ArrayFormatter<'_>,
    array: &dyn arrow::array::Array,
    row: usize,
) -> Option<String> {
    if array.is_null(row) {
        None
    } else {
        Some(formatter.value(row).to_string())
    }
}

/// A column ready for text formatting: timestamps with a named zone (`UTC`) are shown with the
/// equivalent offset, since named zones need a time-zone database the build leaves out.
fn displayable(array: &arrow::array::ArrayRef) -> arrow::array::ArrayRef {
    use arrow::datatypes::DataType;
    match array.data_type() {
        DataType::Timestamp(unit, Some(tz))
            if tz.eq_ignore_ascii_case("utc") || tz.as_ref() == "Z" =>
        {
            arrow::compute::cast(array, &DataType::Timestamp(*unit, Some("+00:00".into())))
                .unwrap_or_else(|_| Arc::clone(array))
        }
        _ => Arc::clone(array),
    }
}

fn read_parquet(state: &mut FileState<'_>, path: &Path, local: &Path) -> Result<()> {
    let plan = state.plan;
    let bad_file = |reason: String| Error::BadFile {
        source_name: plan.name.clone(),
        file: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(local).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| bad_file(format!("is not a readable Parquet file: {e}")))?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let cols =
        resolve_header(plan, &names).map_err(|r| bad_file(r.replace("the header", "the file")))?;
    let reader = builder
        .with_batch_size(8192)
        .build()
        .map_err(|e| bad_file(e.to_string()))?;
    let options = arrow::util::display::FormatOptions::default();
    let mut row_no: u64 = 0;
    for batch in reader {
        let batch = batch.map_err(|e| bad_file(format!("cannot be read: {e}")))?;
        let columns: Vec<arrow::array::ArrayRef> =
            cols.iter().map(|&c| displayable(batch.column(c))).collect();
        let formatters = columns
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_file(format!("a column cannot be shown as text: {e}")))?;
        for row in 0..batch.num_rows() {
            row_no += 1;
            state.report.rows_read += 1;
            let texts: Vec<Option<Cow<'_, str>>> = columns
                .iter()
                .zip(&formatters)
                .map(|(c, f)| cell_text(f, c.as_ref(), row).map(Cow::Owned))
                .collect();
            let raw = || {
                plan.fields
                    .iter()
                    .zip(&texts)
                    .map(|(f, t)| format!("{}={}", f.name, t.as_deref().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let raw_text = raw();
            state.accept(row_no, &texts, || raw_text)?;
        }
    }
    Ok(())
}

fn read_xlsx(
    state: &mut FileState<'_>,
    path: &Path,
    local: &Path,
    sheet: Option<&str>,
) -> Result<()> {
    use calamine::{Data, Reader};
    let plan = state.plan;
    let bad_file = |reason: String| Error::BadFile {
        source_name: plan.name.clone(),
        file: path.to_path_buf(),
        reason,
    };
    let mut book = calamine::open_workbook_auto(local)
        .map_err(|e| bad_file(format!("is not a readable workbook: {e}")))?;
    let sheets = book.sheet_names();
    let name = match sheet {
        Some(s) => {
            if !sheets.iter().any(|n| n == s) {
                return Err(bad_file(format!(
                    "has no worksheet '{s}'; it has: {}",
                    sheets.join(", ")
                )));
            }
            s.to_string()
        }
        None => sheets
            .first()
            .cloned()
            .ok_or_else(|| bad_file("has no worksheets".into()))?,
    };
    let range = book
        .worksheet_range(&name)
        .map_err(|e| bad_file(format!("worksheet '{name}' cannot be read: {e}")))?;
    let first_row = u64::from(range.start().map_or(0, |(r, _)| r)) + 1;
    let mut rows = range.rows().enumerate();
    for _ in 0..plan.skip_lines {
        if rows.next().is_some() {
            state.report.skipped_lines += 1;
        }
    }
    let Some((_, header)) = rows.next() else {
        return Ok(());
    };
    state.report.skipped_lines += 1;
    let names: Vec<String> = header
        .iter()
        .map(|c| c.to_string().trim().to_string())
        .collect();
    let cols = resolve_header(plan, &names).map_err(bad_file)?;
    for (i, row) in rows {
        let line = first_row + i as u64;
        if row.iter().all(|c| matches!(c, Data::Empty)) {
            state.report.blank_lines += 1;
            continue;
        }
        state.report.rows_read += 1;
        let mut texts: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(cols.len());
        let mut bad = None;
        for (f, &c) in plan.fields.iter().zip(&cols) {
            let cell = row.get(c).unwrap_or(&Data::Empty);
            let text = match cell {
                Data::Empty => None,
                Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => Some(s.clone()),
                Data::Int(i) => Some(i.to_string()),
                Data::Float(x) if x.fract() == 0.0 && x.abs() < 1e15 => Some(format!("{x:.0}")),
                Data::Float(x) => Some(x.to_string()),
                Data::Bool(b) => Some(b.to_string()),
                Data::DateTime(dt) => match dt.as_datetime() {
                    Some(t) => Some(match &f.ty {
                        FieldType::Date { format } => t.format(format).to_string(),
                        FieldType::Timestamp { format: Some(fmt) } => t.format(fmt).to_string(),
                        FieldType::Timestamp { format: None } => {
                            t.format("%Y-%m-%dT%H:%M:%S").to_string()
                        }
                        _ => dt.to_string(),
                    }),
                    None => Some(dt.to_string()),
                },
                Data::Error(e) => {
                    bad = Some((
                        f.name.clone(),
                        format!("the cell holds the Excel error {e}"),
                    ));
                    break;
                }
            };
            texts.push(text.map(Cow::Owned));
        }
        let raw = || {
            row.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("\t")
        };
        if let Some((field, reason)) = bad {
            let r = raw();
            state.reject(line, Some(field), reason, r)?;
            continue;
        }
        state.accept(line, &texts, raw)?;
    }
    Ok(())
}

/// What [`read_local_file`] read.
#[derive(Debug)]
pub struct LocalFile {
    /// The file's counts.
    pub report: FileReport,
    /// The rows loaded, typed by the plan, with `_file` and `_line`.
    pub data: Vec<RecordBatch>,
    /// The rows quarantined ([`crate::quarantine_schema`]): file, line, field and reason.
    pub quarantine: Vec<RecordBatch>,
}

/// Reads one local file with a source's plan into memory, without a warehouse or a runtime: for
/// commands that read an analyst's file (`clientele fit`), so that every file clientele reads goes
/// through the same readers. Text is decompressed as the plan or the file's extension says.
pub fn read_local_file(plan: &SourcePlan, path: &Path) -> Result<LocalFile> {
    let detached = Detached {
        plan,
        display: path.display().to_string(),
    };
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let (report, outs) = detached.parse(|state| match &plan.format {
        Format::Parquet => read_parquet(state, path, path),
        Format::Delimited { .. } | Format::FixedWidth | Format::Whitespace | Format::JsonLines => {
            let file = std::fs::File::open(path).map_err(io_err)?;
            let compression =
                crate::input::compression_of(&path.display().to_string(), plan.compression);
            let mut reader = BufReader::new(decompress(file, compression).map_err(io_err)?);
            match &plan.format {
                options @ Format::Delimited { .. } => {
                    read_delimited(state, path, &mut reader, options)
                }
                _ => read_lines(state, path, &mut reader),
            }
        }
        other => Err(state.internal(format!("{} is not read from a local file", other.name()))),
    })?;
    let mut file = LocalFile {
        report,
        data: Vec::new(),
        quarantine: Vec::new(),
    };
    for out in outs {
        match out {
            Out::Data(b) => file.data.push(b),
            Out::Quarantine(b) => file.quarantine.push(b),
        }
    }
    Ok(file)
}

/// Reads bytes held in memory as one file of a source, without a warehouse: the entry point of the
/// fuzz targets (crates/ingest/fuzz). Returns the rows loaded and quarantined; never panics.
pub fn read_bytes(plan: &SourcePlan, bytes: &[u8]) -> Result<(u64, u64)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Out>(16);
    let drain = std::thread::spawn(move || while rx.blocking_recv().is_some() {});
    let mut builder = BatchBuilder::new(plan);
    let mut quarantine = QuarantineBuilder::new(&plan.name);
    let mut state = FileState {
        plan,
        display: "memory".into(),
        report: FileReport::default(),
        builder: &mut builder,
        quarantine: &mut quarantine,
        sink: Sink::Channel(&tx),
        values: Vec::new(),
    };
    let path = Path::new("memory");
    let mut reader = io::Cursor::new(bytes);
    match &plan.format {
        options @ Format::Delimited { .. } => {
            read_delimited(&mut state, path, &mut reader, options)?
        }
        Format::Copybook(c) => read_copybook(&mut state, path, &mut reader, c)?,
        Format::FixedWidth | Format::Whitespace | Format::JsonLines => {
            read_lines(&mut state, path, &mut reader)?
        }
        other => {
            return Err(state.internal(format!("{} is not read from bytes", other.name())));
        }
    }
    let counts = (state.report.rows_loaded, state.report.rows_quarantined);
    drop(tx);
    drain.join().map_err(|_| Error::Internal {
        source_name: plan.name.clone(),
        reason: "the drain thread failed".into(),
    })?;
    Ok(counts)
}
