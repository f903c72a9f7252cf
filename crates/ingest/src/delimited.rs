//! Delimited text (CSV, TSV, pipe, and the CSV stream of a PostgreSQL COPY): leading lines, the
//! header, and the records.
//!
//! Records are parsed on every core. The reading thread cuts the stream into chunks of about
//! [`CHUNK_BYTES`] that end at a record boundary, worker threads parse and type the chunks, and the
//! reading thread hands their batches on in file order, so the output is the same as a sequential
//! read, row for row and line number for line number.
//!
//! A record boundary is a line feed outside quotes. Quotes are tracked by parity, which matches the
//! CSV parser as long as every opening quote starts a field; a quote anywhere else (`5'10"` in an
//! unquoted field), an escape character, comment lines, or a record longer than a chunk make the
//! rest of the file go through the sequential parser, from the last boundary known to be right.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, BufRead, Read};
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;

use crate::decode::{decode, raw_text};
use crate::error::{Error, Result};
use crate::readers::{Detached, FileState, Out, read_full, read_line_bounded};
use crate::spec::{Encoding, Format, Position, SourcePlan};

/// The size of the chunks parsed in parallel.
const CHUNK_BYTES: usize = 4 << 20;

/// How the text is delimited and quoted.
#[derive(Debug, Clone, Copy)]
struct Dialect {
    delimiter: u8,
    quote: Option<u8>,
    escape: Option<u8>,
    comment: Option<u8>,
}

impl Dialect {
    fn reader<R: Read>(&self, inner: R, max_line_bytes: usize) -> csv::Reader<LineGuard<R>> {
        csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .has_headers(false)
            .flexible(true)
            .quoting(self.quote.is_some())
            .quote(self.quote.unwrap_or(b'"'))
            .escape(self.escape)
            .double_quote(self.escape.is_none())
            .comment(self.comment)
            .from_reader(LineGuard {
                inner,
                since_newline: 0,
                max: max_line_bytes,
            })
    }

    /// Whether chunk boundaries can be found without running the parser: no escapes, no comments.
    fn splittable(&self) -> bool {
        self.escape.is_none() && self.comment.is_none()
    }
}

/// What every record of a file is read with.
struct Layout {
    /// The column index of each field.
    columns: Vec<usize>,
    /// The number of columns a record must have (exactly with a header, at least without).
    width: usize,
    header: bool,
    /// The delimiter as text, to rebuild a rejected record's raw text.
    delim: String,
}

/// Reads delimited text from `reader`, which it leaves drained of records.
pub(crate) fn read_delimited<R: BufRead>(
    state: &mut FileState<'_>,
    path: &Path,
    reader: &mut R,
    options: &Format,
) -> Result<()> {
    let plan = state.plan;
    let Format::Delimited {
        delimiter,
        header,
        quote,
        escape,
        comment,
    } = *options
    else {
        return Err(state.internal("read_delimited without delimited options".into()));
    };
    let dialect = Dialect {
        delimiter,
        quote,
        escape,
        comment,
    };
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    // Skip leading lines (and a BOM) before the CSV parser sees the stream.
    let mut skipped = 0u64;
    let mut scratch = Vec::new();
    for _ in 0..plan.skip_lines {
        scratch.clear();
        if read_line_bounded(reader, &mut scratch, 1024).map_err(io_err)? == 0 {
            break;
        }
        skipped += 1;
    }
    if skipped == 0
        && reader
            .fill_buf()
            .map_err(io_err)?
            .starts_with(b"\xEF\xBB\xBF")
    {
        reader.consume(3);
    }
    state.report.skipped_lines = skipped;

    let mut line_offset = skipped;
    let layout = if header {
        let Some((names, lines)) = read_header(plan, path, reader, &dialect)? else {
            return Ok(());
        };
        line_offset += lines;
        state.report.skipped_lines += 1;
        Layout {
            columns: resolve_header(plan, &names).map_err(|r| bad_file(plan, path, r))?,
            width: names.len(),
            header,
            delim: char::from(delimiter).to_string(),
        }
    } else {
        let columns: Vec<usize> = plan
            .fields
            .iter()
            .map(|f| match f.position {
                Position::Column(c) => c,
                _ => 0,
            })
            .collect();
        Layout {
            width: columns.iter().max().map_or(0, |m| m + 1),
            columns,
            header,
            delim: char::from(delimiter).to_string(),
        }
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    if workers > 1 && dialect.splittable() {
        read_parallel(state, path, reader, &dialect, &layout, line_offset, workers)
    } else {
        let mut csv = dialect.reader(reader, plan.max_line_bytes);
        parse_records(state, path, &mut csv, &layout, line_offset)
    }
}

fn bad_file(plan: &SourcePlan, path: &Path, reason: String) -> Error {
    Error::BadFile {
        source_name: plan.name.clone(),
        file: path.to_path_buf(),
        reason,
    }
}

/// Reads lines up to the first record (blank and comment lines before it are passed over) and
/// returns its field names with the number of lines read, or `None` for a file without records.
fn read_header<R: BufRead>(
    plan: &SourcePlan,
    path: &Path,
    reader: &mut R,
    dialect: &Dialect,
) -> Result<Option<(Vec<String>, u64)>> {
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut lines = 0u64;
    let mut text = Vec::new();
    loop {
        // Whole lines until the quotes are balanced: a header may hold a quoted line feed.
        let before = text.len();
        let n = read_line_bounded(reader, &mut text, plan.max_line_bytes.saturating_add(1))
            .map_err(io_err)?;
        if n > plan.max_line_bytes {
            return Err(bad_file(
                plan,
                path,
                LineTooLong(plan.max_line_bytes).to_string(),
            ));
        }
        let at_end = n == 0;
        lines += u64::from(text[before..].ends_with(b"\n"));
        let balanced = dialect
            .quote
            .is_none_or(|q| memchr::memchr_iter(q, &text).count().is_multiple_of(2));
        if !balanced && !at_end {
            continue;
        }
        let mut csv = dialect.reader(text.as_slice(), plan.max_line_bytes);
        let mut record = csv::ByteRecord::new();
        match csv.read_byte_record(&mut record) {
            Ok(true) => {
                let names = record
                    .iter()
                    .map(|f| {
                        decode(f, plan.encoding)
                            .map(|s| s.trim().to_string())
                            .unwrap_or_default()
                    })
                    .collect();
                return Ok(Some((names, lines)));
            }
            Ok(false) if at_end => return Ok(None),
            Ok(false) => text.clear(),
            Err(e) => {
                return Err(bad_file(
                    plan,
                    path,
                    format!("cannot be read as delimited text near line {lines}: {e}"),
                ));
            }
        }
    }
}

/// Parses, checks and types records until the end of `csv`. `line_offset` is the number of lines
/// before the reader's first byte.
fn parse_records<R: Read>(
    state: &mut FileState<'_>,
    path: &Path,
    csv: &mut csv::Reader<LineGuard<R>>,
    layout: &Layout,
    line_offset: u64,
) -> Result<()> {
    let plan = state.plan;
    let mut record = csv::ByteRecord::new();
    let mut spare: Vec<Option<Cow<'static, str>>> = Vec::new();
    loop {
        match csv.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line()) + line_offset;
                let message = e.to_string();
                return Err(match e.into_kind() {
                    csv::ErrorKind::Io(source)
                        if source.get_ref().is_some_and(|r| r.is::<LineTooLong>()) =>
                    {
                        bad_file(plan, path, source.to_string())
                    }
                    csv::ErrorKind::Io(source) => Error::Io {
                        path: path.to_path_buf(),
                        source,
                    },
                    _ => bad_file(
                        plan,
                        path,
                        format!("cannot be read as delimited text near line {line}: {message}"),
                    ),
                });
            }
        }
        let line = record.position().map_or(0, |p| p.line()) + line_offset;
        take_record(state, &record, line, layout, &mut spare)?;
    }
    Ok(())
}

/// The fields of one record as a parser cut them: from the CSV parser, or from a plain line.
trait Fields {
    fn count(&self) -> usize;
    fn field(&self, i: usize) -> Option<&[u8]>;
    /// The bytes of all fields, in which [`Fields::span`] gives each field's place.
    fn bytes(&self) -> &[u8];
    fn span(&self, i: usize) -> Option<std::ops::Range<usize>>;
}

impl Fields for csv::ByteRecord {
    fn count(&self) -> usize {
        self.len()
    }
    fn field(&self, i: usize) -> Option<&[u8]> {
        self.get(i)
    }
    fn bytes(&self) -> &[u8] {
        self.as_slice()
    }
    fn span(&self, i: usize) -> Option<std::ops::Range<usize>> {
        self.range(i)
    }
}

/// A line without quotes cut at the delimiter.
struct LineFields<'l> {
    line: &'l [u8],
    spans: &'l [(usize, usize)],
}

impl Fields for LineFields<'_> {
    fn count(&self) -> usize {
        self.spans.len()
    }
    fn field(&self, i: usize) -> Option<&[u8]> {
        self.spans.get(i).and_then(|&(a, b)| self.line.get(a..b))
    }
    fn bytes(&self) -> &[u8] {
        self.line
    }
    fn span(&self, i: usize) -> Option<std::ops::Range<usize>> {
        self.spans.get(i).map(|&(a, b)| a..b)
    }
}

/// Checks, types and hands on one record.
fn take_record<F: Fields>(
    state: &mut FileState<'_>,
    record: &F,
    line: u64,
    layout: &Layout,
    spare: &mut Vec<Option<Cow<'static, str>>>,
) -> Result<()> {
    let plan = state.plan;
    let width = layout.width;
    let raw = || {
        (0..record.count())
            .map(|i| raw_text(record.field(i).unwrap_or_default(), plan.encoding))
            .collect::<Vec<_>>()
            .join(&layout.delim)
    };
    state.report.rows_read += 1;
    // A header-less file may carry trailing columns the layout does not use; too few is always wrong.
    let fields = record.count();
    let wrong_width = if layout.header {
        fields != width
    } else {
        fields < width
    };
    if wrong_width {
        let reason = if layout.header {
            format!("the record has {fields} fields; the header has {width}")
        } else {
            format!("the record has {fields} fields; the layout needs {width}")
        };
        let r = raw();
        return state.reject(line, None, reason, r);
    }
    let mut texts = recycle(std::mem::take(spare));
    let mut bad = None;
    // UTF-8 is checked once for the whole record; the fields are cut from the checked text.
    let whole = match plan.encoding {
        Encoding::Utf8 => std::str::from_utf8(record.bytes()).ok(),
        _ => None,
    };
    for (f, &c) in plan.fields.iter().zip(&layout.columns) {
        let cut = whole.and_then(|w| record.span(c).and_then(|r| w.get(r)));
        if let Some(text) = cut {
            texts.push(Some(Cow::Borrowed(text)));
            continue;
        }
        match decode(record.field(c).unwrap_or_default(), plan.encoding) {
            Ok(t) => texts.push(Some(t)),
            Err(reason) => {
                bad = Some((f.name.clone(), reason));
                break;
            }
        }
    }
    let result = match bad {
        Some((field, reason)) => {
            let r = raw();
            state.reject(line, Some(field), reason, r)
        }
        None => state.accept(line, &texts, raw),
    };
    *spare = recycle(texts);
    result
}

/// Whether a chunk can be cut into records and fields without the CSV parser: no quote character
/// (or quoting off) and every carriage return part of a CRLF line ending.
fn is_plain(bytes: &[u8], dialect: &Dialect) -> bool {
    dialect.splittable()
        && dialect
            .quote
            .is_none_or(|q| memchr::memchr(q, bytes).is_none())
        && memchr::memchr_iter(b'\r', bytes).all(|i| bytes.get(i + 1) == Some(&b'\n'))
}

/// Parses a plain chunk (see [`is_plain`]) line by line, as the CSV parser would: empty lines are
/// not records, a CRLF ending is dropped, fields are the bytes between delimiters.
fn parse_plain(
    state: &mut FileState<'_>,
    path: &Path,
    bytes: &[u8],
    dialect: &Dialect,
    layout: &Layout,
    line_offset: u64,
) -> Result<()> {
    let max = state.plan.max_line_bytes;
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut spare = Vec::new();
    let mut line_no = line_offset;
    // One pass over the chunk finds both delimiters and line feeds.
    let (mut line_start, mut field_start) = (0usize, 0usize);
    let mut finish = |state: &mut FileState<'_>,
                      spans: &mut Vec<(usize, usize)>,
                      start: usize,
                      end: usize,
                      line_no: u64|
     -> Result<()> {
        if end - start > max {
            return Err(bad_file(state.plan, path, LineTooLong(max).to_string()));
        }
        let mut line = &bytes[start..end];
        if let [rest @ .., b'\r'] = line {
            line = rest;
            if let Some(last) = spans.last_mut() {
                last.1 = last.1.min(line.len());
            }
        }
        if line.is_empty() {
            return Ok(());
        }
        take_record(
            state,
            &LineFields { line, spans },
            line_no,
            layout,
            &mut spare,
        )
    };
    for i in memchr::memchr2_iter(dialect.delimiter, b'\n', bytes) {
        if bytes[i] == b'\n' {
            spans.push((field_start - line_start, i - line_start));
            line_no += 1;
            finish(state, &mut spans, line_start, i, line_no)?;
            spans.clear();
            line_start = i + 1;
            field_start = i + 1;
        } else {
            spans.push((field_start - line_start, i - line_start));
            field_start = i + 1;
        }
    }
    if line_start < bytes.len() {
        spans.push((field_start - line_start, bytes.len() - line_start));
        line_no += 1;
        finish(state, &mut spans, line_start, bytes.len(), line_no)?;
    }
    Ok(())
}

/// Parses one chunk held in memory: plain chunks line by line, others with the CSV parser.
fn parse_bytes(
    state: &mut FileState<'_>,
    path: &Path,
    bytes: &[u8],
    dialect: &Dialect,
    layout: &Layout,
    line_offset: u64,
) -> Result<()> {
    if is_plain(bytes, dialect) {
        parse_plain(state, path, bytes, dialect, layout, line_offset)
    } else {
        let mut csv = dialect.reader(bytes, state.plan.max_line_bytes);
        parse_records(state, path, &mut csv, layout, line_offset)
    }
}

/// Empties a vector of field texts and hands its allocation on with another lifetime.
fn recycle<'b>(mut v: Vec<Option<Cow<'_, str>>>) -> Vec<Option<Cow<'b, str>>> {
    v.clear();
    v.into_iter().map(|_| None).collect()
}

/// Finds record boundaries in a growing buffer by quote parity.
#[derive(Debug)]
struct Splitter {
    quote: Option<u8>,
    delimiter: u8,
    in_quotes: bool,
    /// How far the buffer has been scanned.
    scanned: usize,
    /// Line feeds in the scanned part.
    newlines: u64,
    /// The end of the last complete record found, and the line feeds before it.
    boundary: Option<(usize, u64)>,
    /// A quote was found where parity cannot follow the parser; scanning stopped before it.
    stray_quote: bool,
}

impl Splitter {
    fn new(dialect: &Dialect) -> Self {
        Self {
            quote: dialect.quote,
            delimiter: dialect.delimiter,
            in_quotes: false,
            scanned: 0,
            newlines: 0,
            boundary: None,
            stray_quote: false,
        }
    }

    /// Scans what was appended to `buf` since the last call.
    fn scan(&mut self, buf: &[u8]) {
        if self.stray_quote {
            return;
        }
        let from = self.scanned;
        let Some(q) = self.quote else {
            for i in memchr::memchr_iter(b'\n', &buf[from..]) {
                self.newlines += 1;
                self.boundary = Some((from + i + 1, self.newlines));
            }
            self.scanned = buf.len();
            return;
        };
        for i in memchr::memchr2_iter(b'\n', q, &buf[from..]) {
            let at = from + i;
            if buf[at] == b'\n' {
                self.newlines += 1;
                if !self.in_quotes {
                    self.boundary = Some((at + 1, self.newlines));
                }
            } else if self.in_quotes {
                self.in_quotes = false;
            } else {
                // An opening quote must start a field (or be the second of a doubled quote).
                let starts_field = at == 0
                    || matches!(buf[at - 1], b'\n' | b'\r')
                    || buf[at - 1] == self.delimiter
                    || buf[at - 1] == q;
                if !starts_field {
                    self.stray_quote = true;
                    self.scanned = at;
                    return;
                }
                self.in_quotes = true;
            }
        }
        self.scanned = buf.len();
    }

    /// Forgets the first `end` bytes (a chunk ending at the boundary) after they were handed out.
    fn consume_boundary(&mut self) {
        if let Some((end, lines)) = self.boundary.take() {
            self.scanned -= end;
            self.newlines -= lines;
        }
    }
}

/// What a worker made of one chunk.
struct Chunk {
    outs: Vec<Out>,
    rows_read: u64,
    rows_loaded: u64,
    rows_quarantined: u64,
}

/// A chunk to parse: its position in the file, its bytes, and the lines before it.
type Job = (usize, Vec<u8>, u64);

fn parse_chunk(
    detached: &Detached<'_>,
    path: &Path,
    layout: &Layout,
    dialect: &Dialect,
    bytes: &[u8],
    line_offset: u64,
) -> Result<Chunk> {
    let (report, outs) =
        detached.parse(|state| parse_bytes(state, path, bytes, dialect, layout, line_offset))?;
    Ok(Chunk {
        outs,
        rows_read: report.rows_read,
        rows_loaded: report.rows_loaded,
        rows_quarantined: report.rows_quarantined,
    })
}

fn read_parallel<R: BufRead>(
    state: &mut FileState<'_>,
    path: &Path,
    reader: &mut R,
    dialect: &Dialect,
    layout: &Layout,
    line_offset: u64,
    workers: usize,
) -> Result<()> {
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut pending = vec![0u8; CHUNK_BYTES];
    let n = read_full(reader, &mut pending).map_err(io_err)?;
    pending.truncate(n);
    if n < CHUNK_BYTES {
        // A small file: one chunk, parsed here.
        return parse_bytes(state, path, &pending, dialect, layout, line_offset);
    }
    // Rows of earlier files come first.
    state.flush()?;

    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<(usize, Result<Chunk>)>();
    let detached = state.detached();
    let outcome = std::thread::scope(|scope| {
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let job_rx = &job_rx;
            let detached = &detached;
            scope.spawn(move || {
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((index, bytes, offset)) = job else {
                        return;
                    };
                    let parsed = parse_chunk(detached, path, layout, dialect, &bytes, offset);
                    if done_tx.send((index, parsed)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut pool = Pool {
            jobs: job_tx,
            ordered: Ordered {
                results: &done_rx,
                waiting: BTreeMap::new(),
                next: 0,
                sent: 0,
                limit: workers * 2,
            },
        };
        let dispatched = dispatch(
            state,
            path,
            reader,
            dialect,
            &mut pending,
            line_offset,
            &mut pool,
        );
        let Pool { jobs, mut ordered } = pool;
        // The workers stop when the queue is closed and empty.
        drop(jobs);
        let rest = dispatched?;
        ordered.hand_on(state, 0)?;
        Ok::<_, Error>(rest)
    })?;
    // The rest of the file, when the chunks could not be cut safely.
    if let Some(lines_before) = outcome {
        let rest = io::Cursor::new(pending).chain(reader);
        let mut csv = dialect.reader(rest, state.plan.max_line_bytes);
        parse_records(state, path, &mut csv, layout, lines_before)?;
    }
    Ok(())
}

/// The queue of chunks to parse and their results.
struct Pool<'r> {
    jobs: mpsc::Sender<Job>,
    ordered: Ordered<'r>,
}

/// Results of the workers, handed on in file order.
struct Ordered<'r> {
    results: &'r mpsc::Receiver<(usize, Result<Chunk>)>,
    waiting: BTreeMap<usize, Result<Chunk>>,
    next: usize,
    sent: usize,
    /// Chunks in flight at most: bounds memory when one chunk is slow.
    limit: usize,
}

impl Ordered<'_> {
    /// Hands on finished chunks in file order until at most `in_flight` are left.
    fn hand_on(&mut self, state: &mut FileState<'_>, in_flight: usize) -> Result<()> {
        while self.sent - self.next > in_flight {
            let result = match self.waiting.remove(&self.next) {
                Some(r) => r,
                None => {
                    let (index, result) = self
                        .results
                        .recv()
                        .map_err(|_| state.internal("a parsing thread stopped".into()))?;
                    self.waiting.insert(index, result);
                    continue;
                }
            };
            self.next += 1;
            let chunk = result?;
            state.report.rows_read += chunk.rows_read;
            state.report.rows_loaded += chunk.rows_loaded;
            state.report.rows_quarantined += chunk.rows_quarantined;
            for out in chunk.outs {
                state.send(out)?;
            }
        }
        Ok(())
    }
}

/// Cuts the stream into chunks and hands them to the workers. Returns the number of lines before
/// the first unparsed byte of `pending` when the rest must be parsed sequentially.
fn dispatch<R: BufRead>(
    state: &mut FileState<'_>,
    path: &Path,
    reader: &mut R,
    dialect: &Dialect,
    pending: &mut Vec<u8>,
    line_offset: u64,
    pool: &mut Pool<'_>,
) -> Result<Option<u64>> {
    let mut splitter = Splitter::new(dialect);
    let mut lines_before = line_offset;
    let mut at_end = false;
    loop {
        splitter.scan(pending);
        let chunk = match splitter.boundary {
            Some((end, lines)) if !at_end => {
                let tail = pending.split_off(end);
                let chunk = std::mem::replace(pending, tail);
                splitter.consume_boundary();
                Some((chunk, lines))
            }
            _ if at_end && !splitter.stray_quote => {
                let chunk = std::mem::take(pending);
                Some((chunk, 0))
            }
            _ => None,
        };
        if let Some((bytes, lines)) = chunk {
            if !bytes.is_empty() {
                let ordered = &mut pool.ordered;
                ordered.hand_on(state, ordered.limit - 1)?;
                pool.jobs
                    .send((ordered.sent, bytes, lines_before))
                    .map_err(|_| state.internal("the parsing threads stopped".into()))?;
                ordered.sent += 1;
            }
            lines_before += lines;
        }
        if at_end && pending.is_empty() {
            return Ok(None);
        }
        if splitter.stray_quote || pending.len() >= 2 * CHUNK_BYTES {
            // A quote parity cannot follow, or a record longer than a chunk: the parser decides.
            return Ok(Some(lines_before));
        }
        if at_end {
            continue;
        }
        pending.reserve(CHUNK_BYTES);
        let n = reader
            .by_ref()
            .take(CHUNK_BYTES as u64)
            .read_to_end(pending)
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
        at_end = n == 0;
    }
}

/// The column index of each field, by its header name.
pub(crate) fn resolve_header(plan: &SourcePlan, names: &[String]) -> Result<Vec<usize>, String> {
    let mut idx = Vec::with_capacity(plan.fields.len());
    for f in &plan.fields {
        let Position::Header(h) = &f.position else {
            return Err(format!("field '{}' has no column name", f.name));
        };
        match names.iter().position(|n| n == h) {
            Some(i) => idx.push(i),
            None => {
                return Err(format!(
                    "the header has no column '{h}' (field '{}'); it has: {}",
                    f.name,
                    names.join(", ")
                ));
            }
        }
    }
    Ok(idx)
}

/// The error of [`LineGuard`].
#[derive(Debug)]
pub(crate) struct LineTooLong(pub(crate) usize);

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a line is longer than max_line_bytes ({} bytes); is the delimiter or the line ending right?",
            self.0
        )
    }
}

impl std::error::Error for LineTooLong {}

/// Fails a read when a line grows past a limit, so that a file without line breaks cannot fill memory.
pub(crate) struct LineGuard<R> {
    inner: R,
    since_newline: usize,
    max: usize,
}

impl<R: Read> Read for LineGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match memchr::memrchr(b'\n', &buf[..n]) {
            Some(i) => self.since_newline = n - i - 1,
            None => self.since_newline += n,
        }
        if self.since_newline > self.max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                LineTooLong(self.max),
            ));
        }
        Ok(n)
    }
}
