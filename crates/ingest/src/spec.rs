use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// A source as declared in a job spec. See docs/sources.md for every option.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Name of the source; its table is `raw.<name>`.
    pub name: String,
    /// `fixed_width`, `whitespace`, `delimited` (`csv`, `tsv`), `json_lines`, `parquet`, `xlsx`,
    /// `copybook` or `postgres`.
    pub format: String,
    /// A path or glob relative to the job spec's directory, an object-store URL (`s3://`, `gs://`,
    /// `az://`, `file://`; globs allowed in the key), or for `postgres` a connection URL.
    pub location: String,
    /// `auto` (default: by extension, `.gz` and `.zst`), `none`, `gzip` or `zstd`.
    #[serde(default)]
    pub compression: Option<String>,
    /// Delimited only: the quote character (default `"`; `""` turns quoting off).
    #[serde(default)]
    pub quote: Option<String>,
    /// Delimited only: an escape character such as `\\` (default none: quotes are doubled).
    #[serde(default)]
    pub escape: Option<String>,
    /// Delimited only: records starting with this character are comments and skipped.
    #[serde(default)]
    pub comment: Option<String>,
    /// xlsx only: the worksheet (default: the first).
    #[serde(default)]
    pub sheet: Option<String>,
    /// Longest record accepted, in bytes (default 1 MiB). A longer line is quarantined without being
    /// held in memory (fixed-width, whitespace, JSON lines) or fails the file (delimited).
    #[serde(default)]
    pub max_line_bytes: Option<usize>,
    /// The newest file of the source must be younger than this (`26h`, `2d`, `90min`) when the run starts.
    #[serde(default)]
    pub freshness: Option<String>,
    /// Whether rows of files that were loaded before but are no longer at the location stay in the
    /// raw table (default false: the files present now are the whole source).
    #[serde(default)]
    pub keep_removed_files: Option<bool>,
    /// copybook only: the COBOL copybook file, relative to the job spec's directory.
    #[serde(default)]
    pub copybook: Option<String>,
    /// copybook only: `cp037` (default) or `cp1047`.
    #[serde(default)]
    pub code_page: Option<String>,
    /// copybook only: `fixed` (default: every record as long as the copybook's record) or `rdw`
    /// (variable-length records, each after a 4-byte record descriptor word).
    #[serde(default)]
    pub record_format: Option<String>,
    /// copybook only: the field that says which record layout (REDEFINES) a record has.
    #[serde(default)]
    pub record_type_field: Option<String>,
    /// copybook only: record-type value to the name of the 01-level (or REDEFINES) group it selects.
    #[serde(default)]
    pub record_types: Option<BTreeMap<String, String>>,
    /// postgres only: the table to read, as `schema.table` (or `query`).
    #[serde(default)]
    pub table: Option<String>,
    /// postgres only: a SELECT whose rows are the source (or `table`).
    #[serde(default)]
    pub query: Option<String>,
    /// `utf-8` (default), `latin1` (ISO-8859-1) or `windows-1252`.
    #[serde(default)]
    pub encoding: Option<String>,
    /// Delimited only: the delimiter, one character (default `,`; `\t` for tab).
    #[serde(default)]
    pub delimiter: Option<String>,
    /// Delimited only: whether the first record is a header (default true).
    #[serde(default)]
    pub header: Option<bool>,
    /// Lines to skip at the start of each file (before any header).
    #[serde(default)]
    pub skip_lines: Option<usize>,
    /// Whether the run fails when the source has no files or rows (default true).
    #[serde(default)]
    pub required: Option<bool>,
    /// Largest share of rows that may be quarantined before the run fails (default 0.05).
    #[serde(default)]
    pub max_reject_share: Option<f64>,
    /// Values that mean "no value" in every field (compared after trimming; the empty string always does).
    #[serde(default)]
    pub null_values: Vec<String>,
    /// fixed_width only: the length of every record in characters; a line of another length,
    /// longer or shorter, is quarantined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_length: Option<usize>,
    /// Fields whose values together identify a row: a later row (by file name, then line) with a
    /// key already seen is quarantined as `duplicate_key`, or replaces it (`on_duplicate`).
    /// Rows with a missing key value are not compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<Vec<String>>,
    /// `quarantine` (default: the first row of a key is kept) or `last` (the last row is kept and
    /// the earlier ones are quarantined as replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_duplicate: Option<String>,
    /// The fields, in output order. For a copybook source it may be left out: every elementary
    /// field of the copybook becomes a column, typed by its PIC clause.
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
}

/// One field of a source.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Column name in the raw table.
    pub name: String,
    /// `string`, `int64`, `float64`, `decimal(P,S)`, `date`, `timestamp` or `bool`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Fixed-width: first character, 1-based.
    #[serde(default)]
    pub start: Option<usize>,
    /// Fixed-width: width in characters.
    #[serde(default)]
    pub width: Option<usize>,
    /// Whitespace or header-less delimited: column number, 1-based.
    #[serde(default)]
    pub column: Option<usize>,
    /// Delimited with header: the header name (default: the field name).
    #[serde(default)]
    pub header: Option<String>,
    /// JSON lines: dotted path into the object (default: the field name). Copybook: the COBOL
    /// name of the field (`CUST-NAME`, `PHONE-NO(2)` for the second occurrence).
    #[serde(default)]
    pub path: Option<String>,
    /// Date or timestamp format (chrono strftime syntax). Dates default to `%Y-%m-%d`;
    /// timestamps default to RFC 3339 with an offset.
    #[serde(default)]
    pub format: Option<String>,
    /// Values that mean "unknown" for this field, such as `00000000` for a date.
    #[serde(default)]
    pub unknown: Vec<String>,
    /// Whether the field may be empty (default true). An empty required field quarantines the row.
    #[serde(default)]
    pub nullable: Option<bool>,
    /// Whether surrounding whitespace is removed (default true).
    #[serde(default)]
    pub trim: Option<bool>,
    /// Bool only: values meaning true (default `true, t, yes, y, 1`, any case).
    #[serde(default)]
    pub true_values: Option<Vec<String>>,
    /// Bool only: values meaning false (default `false, f, no, n, 0`, any case).
    #[serde(default)]
    pub false_values: Option<Vec<String>>,
    /// A regular expression the whole (trimmed) text must match, such as `[0-9]{8}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The only texts accepted (compared after trimming, case-sensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<String>>,
    /// Smallest value accepted: a number, or for dates `YYYY-MM-DD` and timestamps RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<crate::rules::Bound>,
    /// Largest value accepted (as `min`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<crate::rules::Bound>,
    /// String only: the most characters accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// String only: keep text holding control characters (default false: such a row is quarantined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_control_chars: Option<bool>,
}

/// How records are laid out in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// One record per line, fields at fixed character positions.
    FixedWidth,
    /// One record per line, fields separated by runs of whitespace.
    Whitespace,
    /// CSV-like text.
    Delimited {
        delimiter: u8,
        header: bool,
        /// `None`: quoting off.
        quote: Option<u8>,
        /// `None`: a quote inside a quoted field is doubled.
        escape: Option<u8>,
        comment: Option<u8>,
    },
    /// One JSON object per line.
    JsonLines,
    /// Parquet files; fields by column name.
    Parquet,
    /// Excel workbooks; a header row, fields by column name.
    Xlsx { sheet: Option<String> },
    /// Mainframe records described by a COBOL copybook.
    Copybook(Arc<crate::copybook::CopybookPlan>),
    /// A PostgreSQL table or query; fields by column name.
    Postgres { relation: crate::postgres::Relation },
}

impl Format {
    /// The format's name as a spec writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::FixedWidth => "fixed_width",
            Self::Whitespace => "whitespace",
            Self::Delimited { .. } => "delimited",
            Self::JsonLines => "json_lines",
            Self::Parquet => "parquet",
            Self::Xlsx { .. } => "xlsx",
            Self::Copybook(_) => "copybook",
            Self::Postgres { .. } => "postgres",
        }
    }

    /// Whether fields are found by column name in a header (or a table's columns).
    fn by_name(&self) -> bool {
        matches!(
            self,
            Self::Delimited { header: true, .. }
                | Self::Parquet
                | Self::Xlsx { .. }
                | Self::Postgres { .. }
        )
    }
}

/// How a file's bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// By the file name: `.gz`/`.gzip` is gzip, `.zst`/`.zstd` is zstd, anything else is plain.
    Auto,
    None,
    Gzip,
    Zstd,
}

/// Text encoding of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Latin1,
    Windows1252,
}

/// A field's type and how its text is parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldType {
    Utf8,
    Int64,
    Float64,
    Decimal {
        precision: u8,
        scale: i8,
    },
    Date {
        format: String,
    },
    /// `format: None` means RFC 3339 / ISO 8601 with an offset; values without an offset are UTC.
    Timestamp {
        format: Option<String>,
    },
    Boolean {
        true_values: Vec<String>,
        false_values: Vec<String>,
    },
}

impl FieldType {
    /// The Arrow type stored in Parquet.
    pub fn arrow_type(&self) -> DataType {
        match self {
            Self::Utf8 => DataType::Utf8,
            Self::Int64 => DataType::Int64,
            Self::Float64 => DataType::Float64,
            Self::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            Self::Date { .. } => DataType::Date32,
            Self::Timestamp { .. } => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
            }
            Self::Boolean { .. } => DataType::Boolean,
        }
    }
}

/// Where a field's text comes from in a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// Character range `[start, end)`, 0-based.
    Chars { start: usize, end: usize },
    /// Column index, 0-based.
    Column(usize),
    /// Header name (delimited with header), resolved per file.
    Header(String),
    /// Dotted JSON path.
    JsonPath(Vec<String>),
    /// Index of an elementary field in the copybook layout.
    Copybook(usize),
}

/// A validated field.
#[derive(Debug, Clone)]
pub struct FieldPlan {
    pub name: String,
    pub ty: FieldType,
    pub position: Position,
    pub nullable: bool,
    pub trim: bool,
    pub unknown: Vec<String>,
    /// Validation rules beyond the type.
    pub rules: crate::rules::FieldRules,
}

/// Which row of a duplicated key stays in the raw table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDuplicate {
    /// The first row (by file name, then line); later ones go to quarantine.
    KeepFirst,
    /// The last row; earlier ones go to quarantine as replaced.
    KeepLast,
}

/// A source's `unique_key`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueKey {
    /// Indexes of the key's fields in the raw table.
    pub columns: Vec<usize>,
    pub names: Vec<String>,
    pub on_duplicate: OnDuplicate,
}

/// A validated source, ready to ingest.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    pub name: String,
    pub format: Format,
    pub location: String,
    pub encoding: Encoding,
    pub compression: Compression,
    pub skip_lines: usize,
    pub max_line_bytes: usize,
    pub required: bool,
    pub max_reject_share: f64,
    pub freshness: Option<std::time::Duration>,
    pub keep_removed_files: bool,
    pub null_values: Vec<String>,
    pub fields: Vec<FieldPlan>,
    /// fixed_width: the length every record must have, in characters.
    pub record_length: Option<usize>,
    /// The key no two loaded rows share.
    pub unique_key: Option<UniqueKey>,
    /// SHA-256 of the spec as declared (and of the copybook): a change reloads every file.
    pub fingerprint: String,
}

/// Column added to every raw table: the file a row came from.
pub const FILE_COLUMN: &str = "_file";
/// Column added to every raw table: the line (record number for delimited files) a row came from.
pub const LINE_COLUMN: &str = "_line";

impl SourcePlan {
    /// The location as shown in messages (a connection URL without its password).
    pub fn display_location(&self) -> String {
        match &self.format {
            Format::Postgres { relation } => relation.display(&self.location),
            _ => self.location.clone(),
        }
    }

    /// The schema of the raw table: the declared fields, then `_file` and `_line`.
    pub fn arrow_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .fields
            .iter()
            .map(|f| Field::new(&f.name, f.ty.arrow_type(), f.nullable))
            .collect();
        fields.push(Field::new(FILE_COLUMN, DataType::Utf8, false));
        fields.push(Field::new(LINE_COLUMN, DataType::Int64, false));
        Arc::new(Schema::new(fields))
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Parses a type name such as `decimal(12,2)`.
pub(crate) fn parse_type(f: &FieldSpec) -> Result<FieldType, String> {
    let t = f.ty.trim().to_ascii_lowercase();
    let ty = match t.as_str() {
        "string" | "utf8" | "text" => FieldType::Utf8,
        "int64" | "int" | "integer" | "bigint" => FieldType::Int64,
        "float64" | "double" | "float" => FieldType::Float64,
        "date" => FieldType::Date {
            format: f.format.clone().unwrap_or_else(|| "%Y-%m-%d".into()),
        },
        "timestamp" => FieldType::Timestamp {
            format: f.format.clone(),
        },
        "bool" | "boolean" => FieldType::Boolean {
            true_values: lower(f.true_values.clone().unwrap_or_else(|| {
                vec![
                    "true".into(),
                    "t".into(),
                    "yes".into(),
                    "y".into(),
                    "1".into(),
                ]
            })),
            false_values: lower(f.false_values.clone().unwrap_or_else(|| {
                vec![
                    "false".into(),
                    "f".into(),
                    "no".into(),
                    "n".into(),
                    "0".into(),
                ]
            })),
        },
        other => {
            let inner = other
                .strip_prefix("decimal(")
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("field '{}': unknown type '{}' (string, int64, float64, decimal(P,S), date, timestamp, bool)", f.name, f.ty))?;
            let (p, s) = inner.split_once(',').ok_or_else(|| {
                format!(
                    "field '{}': decimal needs precision and scale, as decimal(12,2)",
                    f.name
                )
            })?;
            let precision: u8 = p
                .trim()
                .parse()
                .map_err(|_| format!("field '{}': bad decimal precision '{p}'", f.name))?;
            let scale: i8 = s
                .trim()
                .parse()
                .map_err(|_| format!("field '{}': bad decimal scale '{s}'", f.name))?;
            if !(1..=38).contains(&precision) || scale < 0 || scale as u8 > precision {
                return Err(format!(
                    "field '{}': decimal({precision},{scale}) needs 1 <= precision <= 38 and 0 <= scale <= precision",
                    f.name
                ));
            }
            FieldType::Decimal { precision, scale }
        }
    };
    if f.format.is_some() && !matches!(ty, FieldType::Date { .. } | FieldType::Timestamp { .. }) {
        return Err(format!(
            "field '{}': 'format' applies only to date and timestamp fields",
            f.name
        ));
    }
    if (f.true_values.is_some() || f.false_values.is_some())
        && !matches!(ty, FieldType::Boolean { .. })
    {
        return Err(format!(
            "field '{}': true_values/false_values apply only to bool fields",
            f.name
        ));
    }
    Ok(ty)
}

fn lower(v: Vec<String>) -> Vec<String> {
    v.into_iter().map(|s| s.trim().to_lowercase()).collect()
}

/// One character option (`delimiter`, `quote`, ...): a single ASCII character, `\t` for tab.
fn one_char(
    name: &str,
    value: Option<&str>,
    default: Option<u8>,
    problems: &mut Vec<String>,
) -> Option<u8> {
    let Some(v) = value else {
        return default;
    };
    let v = if v == "\\t" { "\t" } else { v };
    if v.is_empty() {
        return None;
    }
    if v.len() != 1 || !v.is_ascii() {
        problems.push(format!("{name} '{v}' must be a single ASCII character"));
        return default;
    }
    v.as_bytes().first().copied()
}

impl SourceSpec {
    /// Validates the spec; on failure returns every problem found, each naming its field.
    /// `base_dir` is the job spec's directory, against which a copybook path resolves.
    pub fn plan(&self, base_dir: &Path) -> Result<SourcePlan, Vec<String>> {
        let mut problems = Vec::new();
        if !is_identifier(&self.name) {
            problems.push(format!(
                "name '{}' must be lower_snake_case (a-z, 0-9, _)",
                self.name
            ));
        }
        let mut extra_fingerprint = String::new();
        let is_delimited = matches!(self.format.as_str(), "delimited" | "csv" | "tsv");
        let format = match self.format.as_str() {
            "fixed_width" => Some(Format::FixedWidth),
            "whitespace" => Some(Format::Whitespace),
            "json_lines" | "jsonl" => Some(Format::JsonLines),
            "parquet" => Some(Format::Parquet),
            "xlsx" => Some(Format::Xlsx {
                sheet: self.sheet.clone(),
            }),
            "delimited" | "csv" | "tsv" => {
                let default = if self.format == "tsv" { b'\t' } else { b',' };
                let delimiter = one_char(
                    "delimiter",
                    self.delimiter.as_deref(),
                    Some(default),
                    &mut problems,
                )
                .unwrap_or(default);
                Some(Format::Delimited {
                    delimiter,
                    header: self.header.unwrap_or(true),
                    quote: one_char("quote", self.quote.as_deref(), Some(b'"'), &mut problems),
                    escape: one_char("escape", self.escape.as_deref(), None, &mut problems),
                    comment: one_char("comment", self.comment.as_deref(), None, &mut problems),
                })
            }
            "copybook" => match &self.copybook {
                None => {
                    problems.push(
                        "a copybook source needs 'copybook', the path of its COBOL copybook".into(),
                    );
                    None
                }
                Some(path) => match crate::copybook::CopybookPlan::load(
                    &base_dir.join(path),
                    self.code_page.as_deref(),
                    self.record_format.as_deref(),
                    self.record_type_field.as_deref(),
                    self.record_types.as_ref(),
                ) {
                    Ok((plan, text)) => {
                        extra_fingerprint = text;
                        Some(Format::Copybook(Arc::new(plan)))
                    }
                    Err(p) => {
                        problems.extend(p);
                        None
                    }
                },
            },
            "postgres" | "postgresql" => {
                match crate::postgres::Relation::from_spec(
                    self.table.as_deref(),
                    self.query.as_deref(),
                ) {
                    Ok(relation) => Some(Format::Postgres { relation }),
                    Err(p) => {
                        problems.push(p);
                        None
                    }
                }
            }
            other => {
                problems.push(format!(
                    "format '{other}' is unknown (fixed_width, whitespace, delimited, json_lines, parquet, xlsx, copybook, postgres)"
                ));
                None
            }
        };
        let only =
            |set: bool, option: &str, applies: &str, ok: bool, problems: &mut Vec<String>| {
                if set && !ok {
                    problems.push(format!("'{option}' applies only to {applies} sources"));
                }
            };
        for (set, option) in [
            (self.delimiter.is_some(), "delimiter"),
            (self.header.is_some(), "header"),
            (self.quote.is_some(), "quote"),
            (self.escape.is_some(), "escape"),
            (self.comment.is_some(), "comment"),
        ] {
            only(set, option, "delimited", is_delimited, &mut problems);
        }
        only(
            self.sheet.is_some(),
            "sheet",
            "xlsx",
            self.format == "xlsx",
            &mut problems,
        );
        let is_copybook = self.format == "copybook";
        for (set, option) in [
            (self.code_page.is_some(), "code_page"),
            (self.record_format.is_some(), "record_format"),
            (self.record_type_field.is_some(), "record_type_field"),
            (self.record_types.is_some(), "record_types"),
        ] {
            only(set, option, "copybook", is_copybook, &mut problems);
        }
        let is_pg = matches!(self.format.as_str(), "postgres" | "postgresql");
        only(
            self.table.is_some(),
            "table",
            "postgres",
            is_pg,
            &mut problems,
        );
        only(
            self.query.is_some(),
            "query",
            "postgres",
            is_pg,
            &mut problems,
        );
        if is_pg && (self.compression.is_some() || self.freshness.is_some()) {
            problems.push("'compression' and 'freshness' apply only to file sources".into());
        }
        let encoding = match self
            .encoding
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("utf-8" | "utf8") => Encoding::Utf8,
            Some("latin1" | "latin-1" | "iso-8859-1") => Encoding::Latin1,
            Some("windows-1252" | "cp1252") => Encoding::Windows1252,
            Some(other) => {
                problems.push(format!(
                    "encoding '{other}' is unknown (utf-8, latin1, windows-1252; copybook sources take code_page)"
                ));
                Encoding::Utf8
            }
        };
        let compression = match self.compression.as_deref() {
            None | Some("auto") => Compression::Auto,
            Some("none") => Compression::None,
            Some("gzip" | "gz") => Compression::Gzip,
            Some("zstd" | "zst") => Compression::Zstd,
            Some(other) => {
                problems.push(format!(
                    "compression '{other}' is unknown (auto, none, gzip, zstd)"
                ));
                Compression::Auto
            }
        };
        let freshness = match self.freshness.as_deref() {
            None => None,
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) => Some(d),
                Err(e) => {
                    problems.push(format!(
                        "freshness '{text}' is not a duration such as 26h, 2d or 90min: {e}"
                    ));
                    None
                }
            },
        };
        let max_reject_share = self.max_reject_share.unwrap_or(0.05);
        if !(0.0..=1.0).contains(&max_reject_share) {
            problems.push(format!(
                "max_reject_share {max_reject_share} must be between 0 and 1"
            ));
        }
        let max_line_bytes = self.max_line_bytes.unwrap_or(1 << 20);
        if max_line_bytes < 16 {
            problems.push(format!("max_line_bytes {max_line_bytes} is too small"));
        }
        let copybook = match &format {
            Some(Format::Copybook(c)) => Some(Arc::clone(c)),
            _ => None,
        };
        let field_specs: Vec<FieldSpec> = match &copybook {
            Some(c) if self.fields.is_empty() => c.default_fields(),
            _ => self.fields.clone(),
        };
        if field_specs.is_empty() && format.is_some() {
            problems.push("a source needs at least one field".into());
        }
        let mut fields = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for f in &field_specs {
            if !is_identifier(&f.name) || f.name.starts_with('_') {
                problems.push(format!(
                    "field name '{}' must be lower_snake_case and not start with '_'",
                    f.name
                ));
            }
            if !seen.insert(f.name.as_str()) {
                problems.push(format!("field '{}' is declared twice", f.name));
            }
            let ty = match parse_type(f) {
                Ok(t) => t,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
            let Some(format) = &format else { continue };
            let position = match (format, f) {
                (
                    Format::FixedWidth,
                    FieldSpec {
                        start: Some(s),
                        width: Some(w),
                        ..
                    },
                ) if *s >= 1 && *w >= 1 => Position::Chars {
                    start: s - 1,
                    end: s - 1 + w,
                },
                (Format::FixedWidth, _) => {
                    problems.push(format!(
                        "field '{}': fixed_width fields need start (1-based) and width",
                        f.name
                    ));
                    continue;
                }
                (
                    Format::Whitespace,
                    FieldSpec {
                        column: Some(c), ..
                    },
                ) if *c >= 1 => Position::Column(c - 1),
                (Format::Whitespace, _) => {
                    problems.push(format!(
                        "field '{}': whitespace fields need column (1-based)",
                        f.name
                    ));
                    continue;
                }
                (format, _) if format.by_name() && f.column.is_none() => {
                    Position::Header(f.header.clone().unwrap_or_else(|| f.name.clone()))
                }
                (
                    Format::Delimited { .. },
                    FieldSpec {
                        column: Some(c), ..
                    },
                ) if *c >= 1 => Position::Column(c - 1),
                (Format::Delimited { .. }, _) => {
                    problems.push(format!(
                        "field '{}': a delimited source without header needs column (1-based)",
                        f.name
                    ));
                    continue;
                }
                (Format::JsonLines, _) => Position::JsonPath(
                    f.path
                        .clone()
                        .unwrap_or_else(|| f.name.clone())
                        .split('.')
                        .map(str::to_string)
                        .collect(),
                ),
                (Format::Copybook(c), _) => {
                    let wanted = f.path.clone().unwrap_or_else(|| f.name.clone());
                    match c.field_index(&wanted) {
                        Some(i) => Position::Copybook(i),
                        None => {
                            problems.push(format!(
                                "field '{}': the copybook has no elementary field '{wanted}'",
                                f.name
                            ));
                            continue;
                        }
                    }
                }
                (_, _) => {
                    problems.push(format!(
                        "field '{}': a {} source finds fields by column name ('header'), not by number",
                        f.name,
                        format.name()
                    ));
                    continue;
                }
            };
            let rules = match crate::rules::FieldRules::plan(f, &ty) {
                Ok(r) => r,
                Err(p) => {
                    problems.extend(p);
                    continue;
                }
            };
            fields.push(FieldPlan {
                name: f.name.clone(),
                ty,
                position,
                nullable: f.nullable.unwrap_or(true),
                trim: f.trim.unwrap_or(true),
                unknown: f.unknown.clone(),
                rules,
            });
        }
        match self.record_length {
            Some(_) if self.format != "fixed_width" => {
                problems.push("'record_length' applies only to fixed_width sources".into())
            }
            Some(0) => problems.push("record_length must be at least 1".into()),
            Some(n) => {
                for f in &fields {
                    if let Position::Chars { end, .. } = f.position
                        && end > n
                    {
                        problems.push(format!(
                            "field '{}' ends at character {end}, beyond record_length {n}",
                            f.name
                        ));
                    }
                }
            }
            None => {}
        }
        let on_duplicate = match self.on_duplicate.as_deref() {
            None | Some("quarantine" | "first") => OnDuplicate::KeepFirst,
            Some("last") => OnDuplicate::KeepLast,
            Some(other) => {
                problems.push(format!(
                    "on_duplicate '{other}' is unknown (quarantine, last)"
                ));
                OnDuplicate::KeepFirst
            }
        };
        if self.on_duplicate.is_some() && self.unique_key.is_none() {
            problems.push("'on_duplicate' needs 'unique_key'".into());
        }
        let unique_key = match &self.unique_key {
            None => None,
            Some(names) if names.is_empty() => {
                problems.push("unique_key names no field".into());
                None
            }
            Some(names) => {
                let mut columns = Vec::new();
                for n in names {
                    match fields.iter().position(|f| &f.name == n) {
                        Some(i) => columns.push(i),
                        None if field_specs.iter().any(|f| &f.name == n) => {}
                        None => problems.push(format!("unique_key: there is no field '{n}'")),
                    }
                }
                Some(UniqueKey {
                    columns,
                    names: names.clone(),
                    on_duplicate,
                })
            }
        };
        let fingerprint = {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(serde_json::to_vec(self).unwrap_or_default());
            h.update(extra_fingerprint.as_bytes());
            hex::encode(h.finalize())
        };
        match (problems.is_empty(), format) {
            (true, Some(format)) => Ok(SourcePlan {
                name: self.name.clone(),
                format,
                location: self.location.clone(),
                encoding,
                compression,
                skip_lines: self.skip_lines.unwrap_or(0),
                max_line_bytes,
                required: self.required.unwrap_or(true),
                max_reject_share,
                freshness,
                keep_removed_files: self.keep_removed_files.unwrap_or(false),
                null_values: self.null_values.clone(),
                fields,
                record_length: self.record_length,
                unique_key,
                fingerprint,
            }),
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> SourceSpec {
        toml::from_str(text).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let s = spec(
            r#"
            name = "Bad Name"
            format = "fixed_width"
            location = "x"
            fields = [ { name = "a", type = "decimal(40,2)", start = 1, width = 2 },
                       { name = "b", type = "string" },
                       { name = "a", type = "weird", start = 3, width = 1 } ]
        "#,
        );
        let problems = s.plan(Path::new(".")).err().unwrap_or_default();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("'a' is declared twice")));
        assert!(problems.iter().any(|p| p.contains("lower_snake_case")));
        assert!(problems.iter().any(|p| p.contains("decimal(40,2)")));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("'b': fixed_width fields need start"))
        );
        assert!(problems.iter().any(|p| p.contains("unknown type 'weird'")));
    }

    #[test]
    fn delimited_fields_default_to_their_header_name() {
        let s = spec(
            r#"
            name = "web_orders"
            format = "delimited"
            location = "x"
            fields = [ { name = "order_id", type = "string" }, { name = "amt", type = "decimal(10,2)", header = "Amount" } ]
        "#,
        );
        let plan = s
            .plan(Path::new("."))
            .unwrap_or_else(|p| unreachable!("{p:?}"));
        assert_eq!(plan.fields[1].position, Position::Header("Amount".into()));
        assert_eq!(
            plan.arrow_schema().field(1).data_type(),
            &DataType::Decimal128(10, 2)
        );
    }
}
