use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// A source as declared in a job spec. See docs/sources.md for every option.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Name of the source; its table is `raw.<name>`.
    pub name: String,
    /// `fixed_width`, `whitespace`, `delimited` or `json_lines`.
    pub format: String,
    /// A path or glob, relative to the job spec's directory.
    pub location: String,
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
    /// The fields, in output order.
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
    /// JSON lines: dotted path into the object (default: the field name).
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
}

/// How records are laid out in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// One record per line, fields at fixed character positions.
    FixedWidth,
    /// One record per line, fields separated by runs of whitespace.
    Whitespace,
    /// CSV-like text.
    Delimited { delimiter: u8, header: bool },
    /// One JSON object per line.
    JsonLines,
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
}

/// A validated source, ready to ingest.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    pub name: String,
    pub format: Format,
    pub location: String,
    pub encoding: Encoding,
    pub skip_lines: usize,
    pub required: bool,
    pub max_reject_share: f64,
    pub null_values: Vec<String>,
    pub fields: Vec<FieldPlan>,
}

/// Column added to every raw table: the file a row came from.
pub const FILE_COLUMN: &str = "_file";
/// Column added to every raw table: the line (record number for delimited files) a row came from.
pub const LINE_COLUMN: &str = "_line";

impl SourcePlan {
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

impl SourceSpec {
    /// Validates the spec; on failure returns every problem found, each naming its field.
    pub fn plan(&self) -> Result<SourcePlan, Vec<String>> {
        let mut problems = Vec::new();
        if !is_identifier(&self.name) {
            problems.push(format!(
                "name '{}' must be lower_snake_case (a-z, 0-9, _)",
                self.name
            ));
        }
        let format = match self.format.as_str() {
            "fixed_width" => Some(Format::FixedWidth),
            "whitespace" => Some(Format::Whitespace),
            "json_lines" | "jsonl" => Some(Format::JsonLines),
            "delimited" | "csv" | "tsv" => {
                let default = if self.format == "tsv" { "\t" } else { "," };
                let d = self.delimiter.as_deref().unwrap_or(default);
                let d = if d == "\\t" { "\t" } else { d };
                if d.len() != 1 {
                    problems.push(format!("delimiter '{d}' must be a single ASCII character"));
                }
                Some(Format::Delimited {
                    delimiter: d.as_bytes().first().copied().unwrap_or(b','),
                    header: self.header.unwrap_or(true),
                })
            }
            other => {
                problems.push(format!(
                    "format '{other}' is unknown (fixed_width, whitespace, delimited, json_lines)"
                ));
                None
            }
        };
        if self.delimiter.is_some() && !matches!(format, Some(Format::Delimited { .. })) {
            problems.push("'delimiter' applies only to delimited sources".into());
        }
        if self.header.is_some() && !matches!(format, Some(Format::Delimited { .. })) {
            problems.push("'header' applies only to delimited sources".into());
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
                    "encoding '{other}' is unknown (utf-8, latin1, windows-1252)"
                ));
                Encoding::Utf8
            }
        };
        let max_reject_share = self.max_reject_share.unwrap_or(0.05);
        if !(0.0..=1.0).contains(&max_reject_share) {
            problems.push(format!(
                "max_reject_share {max_reject_share} must be between 0 and 1"
            ));
        }
        if self.fields.is_empty() {
            problems.push("a source needs at least one field".into());
        }
        let mut fields = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.fields {
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
            let position = match (&format, f) {
                (
                    Some(Format::FixedWidth),
                    FieldSpec {
                        start: Some(s),
                        width: Some(w),
                        ..
                    },
                ) if *s >= 1 && *w >= 1 => Position::Chars {
                    start: s - 1,
                    end: s - 1 + w,
                },
                (Some(Format::FixedWidth), _) => {
                    problems.push(format!(
                        "field '{}': fixed_width fields need start (1-based) and width",
                        f.name
                    ));
                    continue;
                }
                (
                    Some(Format::Whitespace),
                    FieldSpec {
                        column: Some(c), ..
                    },
                ) if *c >= 1 => Position::Column(c - 1),
                (Some(Format::Whitespace), _) => {
                    problems.push(format!(
                        "field '{}': whitespace fields need column (1-based)",
                        f.name
                    ));
                    continue;
                }
                (Some(Format::Delimited { header: true, .. }), _) if f.column.is_none() => {
                    Position::Header(f.header.clone().unwrap_or_else(|| f.name.clone()))
                }
                (
                    Some(Format::Delimited { .. }),
                    FieldSpec {
                        column: Some(c), ..
                    },
                ) if *c >= 1 => Position::Column(c - 1),
                (Some(Format::Delimited { .. }), _) => {
                    problems.push(format!(
                        "field '{}': a delimited source without header needs column (1-based)",
                        f.name
                    ));
                    continue;
                }
                (Some(Format::JsonLines), _) => Position::JsonPath(
                    f.path
                        .clone()
                        .unwrap_or_else(|| f.name.clone())
                        .split('.')
                        .map(str::to_string)
                        .collect(),
                ),
                (None, _) => continue,
            };
            fields.push(FieldPlan {
                name: f.name.clone(),
                ty,
                position,
                nullable: f.nullable.unwrap_or(true),
                trim: f.trim.unwrap_or(true),
                unknown: f.unknown.clone(),
            });
        }
        match (problems.is_empty(), format) {
            (true, Some(format)) => Ok(SourcePlan {
                name: self.name.clone(),
                format,
                location: self.location.clone(),
                encoding,
                skip_lines: self.skip_lines.unwrap_or(0),
                required: self.required.unwrap_or(true),
                max_reject_share,
                null_values: self.null_values.clone(),
                fields,
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
        let problems = s.plan().err().unwrap_or_default();
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
        let plan = s.plan().unwrap_or_else(|p| unreachable!("{p:?}"));
        assert_eq!(plan.fields[1].position, Position::Header("Amount".into()));
        assert_eq!(
            plan.arrow_schema().field(1).data_type(),
            &DataType::Decimal128(10, 2)
        );
    }
}
