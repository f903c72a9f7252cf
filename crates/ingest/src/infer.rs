//! `clientele sources infer FILE`: proposes a source block from a sample of a file, for the user to
//! review and edit. The guesses are conservative: a column becomes a number or a date only when every
//! sampled value fits, and identifiers with leading zeros stay text.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use chrono::{NaiveDate, NaiveDateTime};

use crate::input::decompress;
use crate::spec::Compression;

/// Rows sampled from the start of the file.
const SAMPLE_ROWS: usize = 2000;

const DATE_FORMATS: [&str; 6] = [
    "%Y-%m-%d", "%Y%m%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d",
];
const NULL_TOKENS: [&str; 6] = ["NULL", "null", "N/A", "NA", "\\N", "-"];

fn snake(name: &str, index: usize) -> String {
    let mut out = String::new();
    let mut last_us = true;
    let mut prev_lower = false;
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && !last_us && prev_lower {
                out.push('_');
            }
            prev_lower = c.is_ascii_lowercase();
            out.push(c.to_ascii_lowercase());
            last_us = false;
        } else {
            prev_lower = false;
            if !last_us {
                out.push('_');
                last_us = true;
            }
        }
    }
    let out = out.trim_end_matches('_').to_string();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        format!("column_{}", index + 1)
    } else {
        out
    }
}

/// The type guess for one column's sampled values.
fn guess_type(values: &[&str]) -> (String, Option<String>) {
    let present: Vec<&str> = values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .collect();
    if present.is_empty() {
        return ("string".into(), None);
    }
    let leading_zero = present
        .iter()
        .any(|v| v.len() > 1 && v.starts_with('0') && !v.contains('.'));
    for fmt in DATE_FORMATS {
        let ok = present.iter().all(|v| {
            NaiveDate::parse_from_str(v, fmt)
                .is_ok_and(|d| (1850..=2200).contains(&chrono::Datelike::year(&d)))
        });
        if ok {
            return ("date".into(), Some(fmt.to_string()));
        }
    }
    if present
        .iter()
        .all(|v| chrono::DateTime::parse_from_rfc3339(v).is_ok())
    {
        return ("timestamp".into(), None);
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if present
            .iter()
            .all(|v| NaiveDateTime::parse_from_str(v, fmt).is_ok())
        {
            return ("timestamp".into(), Some(fmt.to_string()));
        }
    }
    if !leading_zero && present.iter().all(|v| v.parse::<i64>().is_ok()) {
        return ("int64".into(), None);
    }
    let is_decimal = |v: &str| {
        let body = v.strip_prefix('-').unwrap_or(v);
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        !int.is_empty()
            && int.chars().all(|c| c.is_ascii_digit())
            && frac.chars().all(|c| c.is_ascii_digit())
    };
    if !leading_zero && present.iter().all(|v| is_decimal(v)) {
        let scale = present
            .iter()
            .map(|v| v.split_once('.').map_or(0, |(_, f)| f.len()))
            .max()
            .unwrap_or(0);
        if scale <= 6 {
            return (format!("decimal(18,{})", scale.max(2)), None);
        }
        return ("float64".into(), None);
    }
    if present.iter().all(|v| v.parse::<f64>().is_ok()) && !leading_zero {
        return ("float64".into(), None);
    }
    let bools = ["true", "false", "yes", "no", "y", "n", "t", "f"];
    if present
        .iter()
        .all(|v| bools.contains(&v.to_lowercase().as_str()))
    {
        return ("bool".into(), None);
    }
    ("string".into(), None)
}

/// One run of a value's shape: a character class and how many characters, or a literal text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Run {
    Digits(usize),
    Upper(String),
    Lower(String),
    Other(char),
}

/// A value's shape: `00A12345` is digits(2), upper("A"), digits(5).
fn shape(value: &str) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for c in value.chars() {
        match (runs.last_mut(), c) {
            (Some(Run::Digits(n)), '0'..='9') => *n += 1,
            (Some(Run::Upper(t)), 'A'..='Z') => t.push(c),
            (Some(Run::Lower(t)), 'a'..='z') => t.push(c),
            (_, '0'..='9') => runs.push(Run::Digits(1)),
            (_, 'A'..='Z') => runs.push(Run::Upper(c.to_string())),
            (_, 'a'..='z') => runs.push(Run::Lower(c.to_string())),
            (_, c) => runs.push(Run::Other(c)),
        }
    }
    runs
}

/// Whether two runs have the same class (and, for other characters, are the same character).
fn same_class(a: &Run, b: &Run) -> bool {
    match (a, b) {
        (Run::Digits(_), Run::Digits(_))
        | (Run::Upper(_), Run::Upper(_))
        | (Run::Lower(_), Run::Lower(_)) => true,
        (Run::Other(x), Run::Other(y)) => x == y,
        _ => false,
    }
}

/// A `pattern` for an identifier-like column (mostly distinct values of one shape, with a digit
/// and no space, such as customer numbers `00012345` or web ids `W0000003`), and how many sampled
/// values do not match it (a mangled `00A12345` among customer numbers). `None` for free text.
fn propose_pattern(values: &[&str]) -> Option<(String, usize)> {
    let present: Vec<&str> = values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .collect();
    let distinct: std::collections::BTreeSet<&str> = present.iter().copied().collect();
    let identifier_like = present.len() >= 10
        && distinct.len() * 10 >= present.len() * 9
        && present
            .iter()
            .all(|v| v.len() <= 32 && !v.contains(char::is_whitespace))
        && present
            .iter()
            .any(|v| v.contains(|c: char| c.is_ascii_digit()));
    if !identifier_like {
        return None;
    }
    // The shape most values share, by their sequence of classes.
    let shapes: Vec<Vec<Run>> = present.iter().map(|v| shape(v)).collect();
    let alike =
        |a: &[Run], b: &[Run]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_class(x, y));
    let mut best: Option<(&[Run], usize)> = None;
    for s in &shapes {
        if best.is_some_and(|(b, _)| alike(b, s)) {
            continue;
        }
        let n = shapes.iter().filter(|o| alike(s, o)).count();
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((s, n));
        }
    }
    let (model, n) = best?;
    if n * 100 < present.len() * 95 {
        return None;
    }
    let members: Vec<&Vec<Run>> = shapes.iter().filter(|s| alike(model, s)).collect();
    let mut pattern = String::new();
    let repeat = |lengths: &[usize]| {
        let (lo, hi) = (
            lengths.iter().copied().min().unwrap_or(1),
            lengths.iter().copied().max().unwrap_or(1),
        );
        // A length that varies in the sample may grow beyond it (order numbers count up).
        if lo == hi {
            format!("{{{lo}}}")
        } else {
            "+".to_string()
        }
    };
    for (i, run) in model.iter().enumerate() {
        let texts: Vec<&Run> = members.iter().filter_map(|m| m.get(i)).collect();
        match run {
            Run::Digits(_) => {
                let lengths: Vec<usize> = texts
                    .iter()
                    .map(|r| if let Run::Digits(n) = r { *n } else { 0 })
                    .collect();
                pattern.push_str(&format!("[0-9]{}", repeat(&lengths)));
            }
            Run::Upper(t) | Run::Lower(t) => {
                let words: Vec<&str> = texts
                    .iter()
                    .map(|r| match r {
                        Run::Upper(w) | Run::Lower(w) => w.as_str(),
                        _ => "",
                    })
                    .collect();
                if words.iter().all(|w| w == t) {
                    pattern.push_str(&regex::escape(t));
                } else {
                    let lengths: Vec<usize> = words.iter().map(|w| w.len()).collect();
                    let class = if matches!(run, Run::Upper(_)) {
                        "[A-Z]"
                    } else {
                        "[a-z]"
                    };
                    pattern.push_str(&format!("{class}{}", repeat(&lengths)));
                }
            }
            Run::Other(c) => pattern.push_str(&regex::escape(&c.to_string())),
        }
    }
    Some((pattern, present.len() - n))
}

fn toml_str(s: &str) -> String {
    let escaped: String = s
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            '\t' => vec!['\\', 't'],
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

/// Reads a sample of a local file and returns a `[[sources]]` TOML block proposing its format,
/// encoding, delimiter, header and typed fields. `location` is written into the block as given.
pub fn infer_source(path: &Path, location: &str) -> Result<String, String> {
    let lower = path.to_string_lossy().to_ascii_lowercase();
    let name = snake(
        path.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
            .split('.')
            .next()
            .unwrap_or("source"),
        0,
    );
    if lower.ends_with(".parquet") {
        return infer_parquet(path, &name, location);
    }
    if lower.ends_with(".xlsx") || lower.ends_with(".xls") || lower.ends_with(".ods") {
        return Err(format!(
            "'{}': workbooks are not sampled yet; declare format = \"xlsx\" and the fields by their header names",
            path.display()
        ));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("'{}': {e}", path.display()))?;
    let compression = if lower.ends_with(".gz") {
        Compression::Gzip
    } else if lower.ends_with(".zst") {
        Compression::Zstd
    } else {
        Compression::None
    };
    let reader = decompress(file, compression).map_err(|e| format!("'{}': {e}", path.display()))?;
    let mut reader = BufReader::new(reader.take(64 << 20));
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut buf = Vec::new();
    while lines.len() <= SAMPLE_ROWS {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {
                let l = buf.strip_suffix(b"\n").unwrap_or(&buf);
                let l = l.strip_suffix(b"\r").unwrap_or(l);
                if !l.iter().all(u8::is_ascii_whitespace) {
                    lines.push(l.to_vec());
                }
            }
            Err(e) => return Err(format!("'{}': {e}", path.display())),
        }
    }
    if lines.is_empty() {
        return Err(format!("'{}' holds no lines to sample", path.display()));
    }
    if let Some(first) = lines.first_mut()
        && first.starts_with(b"\xEF\xBB\xBF")
    {
        first.drain(..3);
    }
    let utf8 = lines.iter().all(|l| std::str::from_utf8(l).is_ok());
    let encoding = if utf8 {
        None
    } else if lines.iter().flatten().any(|&b| (0x80..0xA0).contains(&b)) {
        Some("windows-1252")
    } else {
        Some("latin1")
    };
    let text: Vec<String> = lines
        .iter()
        .map(|l| match encoding {
            None => String::from_utf8_lossy(l).into_owned(),
            Some("windows-1252") => encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(l)
                .0
                .into_owned(),
            Some(_) => l.iter().map(|&b| char::from(b)).collect(),
        })
        .collect();
    let mut out = String::new();
    out.push_str("# Proposed by `clientele sources infer` from a sample of ");
    out.push_str(&format!(
        "{} lines; check every type before use.\n",
        text.len()
    ));
    out.push_str("[[sources]]\n");
    out.push_str(&format!("name = {}\n", toml_str(&name)));
    if text.iter().all(|l| l.trim_start().starts_with('{')) {
        return infer_json(&text, out, location);
    }
    // The delimiter: the candidate that splits every sampled line into the same number (> 1) of fields.
    let mut best: Option<(u8, usize, Vec<Vec<String>>)> = None;
    for d in [b',', b'\t', b';', b'|'] {
        let split: Vec<Vec<String>> = text
            .iter()
            .map(|l| {
                csv::ReaderBuilder::new()
                    .delimiter(d)
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(l.as_bytes())
                    .records()
                    .next()
                    .and_then(|r| r.ok())
                    .map(|r| r.iter().map(str::to_string).collect())
                    .unwrap_or_default()
            })
            .collect();
        let counts: Vec<usize> = split.iter().map(Vec::len).collect();
        let first = counts.first().copied().unwrap_or(0);
        let consistent = counts.iter().filter(|&&c| c == first).count() * 100 >= counts.len() * 95;
        if first > 1 && consistent && best.as_ref().is_none_or(|(_, n, _)| first > *n) {
            best = Some((d, first, split));
        }
    }
    let rows: Vec<Vec<String>>;
    match best {
        Some((d, _, split)) => {
            out.push_str("format = \"delimited\"\n");
            out.push_str(&format!("location = {}\n", toml_str(location)));
            if let Some(e) = encoding {
                out.push_str(&format!("encoding = \"{e}\"\n"));
            }
            if d != b',' {
                out.push_str(&format!(
                    "delimiter = {}\n",
                    toml_str(&char::from(d).to_string())
                ));
            }
            rows = split.into_iter().filter(|r| !r.is_empty()).collect();
            let header = rows.first().cloned().unwrap_or_default();
            let body = &rows[1.min(rows.len())..];
            let header_like = !header.is_empty()
                && header
                    .iter()
                    .all(|h| !h.trim().is_empty() && h.trim().parse::<f64>().is_err())
                && body.iter().take(50).any(|r| {
                    r.iter()
                        .zip(&header)
                        .any(|(v, h)| guess_type(&[v]).0 != guess_type(&[h]).0)
                });
            if !header_like {
                out.push_str("header = false\n");
            }
            push_fields(
                &mut out,
                if header_like { &header } else { &[] },
                if header_like { body } else { &rows },
                header_like,
            );
        }
        None => {
            out.push_str("format = \"whitespace\"\n");
            out.push_str(&format!("location = {}\n", toml_str(location)));
            if let Some(e) = encoding {
                out.push_str(&format!("encoding = \"{e}\"\n"));
            }
            rows = text
                .iter()
                .map(|l| l.split_whitespace().map(str::to_string).collect())
                .collect();
            push_fields(&mut out, &[], &rows, false);
        }
    }
    Ok(out)
}

fn push_fields(out: &mut String, header: &[String], rows: &[Vec<String>], by_header: bool) {
    let width = if by_header {
        header.len()
    } else {
        rows.iter().map(Vec::len).max().unwrap_or(0)
    };
    let mut nulls: Vec<&str> = NULL_TOKENS
        .iter()
        .copied()
        .filter(|t| rows.iter().any(|r| r.iter().any(|v| v.trim() == *t)))
        .collect();
    nulls.retain(|t| *t != "-" || rows.iter().flatten().filter(|v| v.trim() == "-").count() > 1);
    if !nulls.is_empty() {
        out.push_str(&format!(
            "null_values = [{}]\n",
            nulls
                .iter()
                .map(|n| toml_str(n))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.push_str("fields = [\n");
    let mut used = std::collections::BTreeSet::new();
    for i in 0..width {
        let values: Vec<&str> = rows
            .iter()
            .map(|r| r.get(i).map_or("", String::as_str))
            .filter(|v| !nulls.contains(&v.trim()))
            .collect();
        let (ty, format) = guess_type(&values);
        let empty = values.iter().filter(|v| v.trim().is_empty()).count();
        let mut name = snake(header.get(i).map_or("", String::as_str), i);
        while !used.insert(name.clone()) {
            name.push('_');
        }
        let mut line = format!("  {{ name = {}, type = {}", toml_str(&name), toml_str(&ty));
        if by_header {
            if header[i].trim() != name {
                line.push_str(&format!(", header = {}", toml_str(header[i].trim())));
            }
        } else {
            line.push_str(&format!(", column = {}", i + 1));
        }
        if let Some(f) = format {
            line.push_str(&format!(", format = {}", toml_str(&f)));
        }
        let mut note = String::new();
        if ty == "string"
            && let Some((pattern, outliers)) = propose_pattern(&values)
        {
            line.push_str(&format!(", pattern = {}", toml_str(&pattern)));
            if outliers > 0 {
                note = format!("; {outliers} do not match the pattern: look at them");
            }
        }
        line.push_str(&format!(
            " }},  # {} of {} sampled values empty{note}\n",
            empty,
            values.len()
        ));
        out.push_str(&line);
    }
    out.push_str("]\n");
}

fn infer_json(lines: &[String], mut out: String, location: &str) -> Result<String, String> {
    out.push_str("format = \"json_lines\"\n");
    out.push_str(&format!("location = {}\n", toml_str(location)));
    // Every leaf path, in the order first seen.
    let mut paths: Vec<String> = Vec::new();
    let mut values: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    fn walk(
        prefix: &str,
        v: &serde_json::Value,
        paths: &mut Vec<String>,
        values: &mut std::collections::BTreeMap<String, Vec<String>>,
    ) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, child) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, child, paths, values);
                }
            }
            leaf => {
                if !paths.contains(&prefix.to_string()) {
                    paths.push(prefix.to_string());
                }
                let text = match leaf {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                values.entry(prefix.to_string()).or_default().push(text);
            }
        }
    }
    for l in lines {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
            walk("", &v, &mut paths, &mut values);
        }
    }
    out.push_str("fields = [\n");
    for (i, p) in paths.iter().enumerate() {
        let vals: Vec<&str> = values
            .get(p)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let (ty, format) = guess_type(&vals);
        let name = snake(&p.replace('.', "_"), i);
        let mut line = format!("  {{ name = {}, type = {}", toml_str(&name), toml_str(&ty));
        if name != *p {
            line.push_str(&format!(", path = {}", toml_str(p)));
        }
        if let Some(f) = format {
            line.push_str(&format!(", format = {}", toml_str(&f)));
        }
        line.push_str(" },\n");
        out.push_str(&line);
    }
    out.push_str("]\n");
    Ok(out)
}

fn infer_parquet(path: &Path, name: &str, location: &str) -> Result<String, String> {
    use arrow::datatypes::DataType;
    let file = std::fs::File::open(path).map_err(|e| format!("'{}': {e}", path.display()))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("'{}' is not a readable Parquet file: {e}", path.display()))?;
    let mut out = format!(
        "# Proposed by `clientele sources infer` from the Parquet schema; check every type before use.\n[[sources]]\nname = {}\nformat = \"parquet\"\nlocation = {}\nfields = [\n",
        toml_str(name),
        toml_str(location)
    );
    for (i, f) in builder.schema().fields().iter().enumerate() {
        let ty = match f.data_type() {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => "int64".to_string(),
            DataType::Float16 | DataType::Float32 | DataType::Float64 => "float64".into(),
            DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
            DataType::Date32 | DataType::Date64 => "date".into(),
            DataType::Timestamp(..) => "timestamp".into(),
            DataType::Boolean => "bool".into(),
            _ => "string".into(),
        };
        let col = snake(f.name(), i);
        let mut line = format!("  {{ name = {}, type = {}", toml_str(&col), toml_str(&ty));
        if col != *f.name() {
            line.push_str(&format!(", header = {}", toml_str(f.name())));
        }
        line.push_str(" },\n");
        out.push_str(&line);
    }
    out.push_str("]\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_columns_get_a_pattern_and_their_outliers_are_counted() {
        let mut numbers: Vec<String> = (1..=40).map(|i| format!("{i:08}")).collect();
        numbers.push("00A12345".into());
        let values: Vec<&str> = numbers.iter().map(String::as_str).collect();
        assert_eq!(propose_pattern(&values), Some(("[0-9]{8}".into(), 1)));
        let web: Vec<String> = (1..=30).map(|i| format!("W{:07}", i * 37)).collect();
        let values: Vec<&str> = web.iter().map(String::as_str).collect();
        assert_eq!(propose_pattern(&values), Some(("W[0-9]{7}".into(), 0)));
        let orders: Vec<String> = (1..=30).map(|i| format!("ORD-{}", i * 1013)).collect();
        let values: Vec<&str> = orders.iter().map(String::as_str).collect();
        assert_eq!(propose_pattern(&values), Some(("ORD\\-[0-9]+".into(), 0)));
        // Free text, repeated codes and too few values get none.
        let names = ["Ann Smith"; 20];
        assert_eq!(propose_pattern(&names), None);
        let codes: Vec<&str> = ["GB1", "GB2"].repeat(10);
        assert_eq!(propose_pattern(&codes), None);
        assert_eq!(propose_pattern(&["00000001", "00000002"]), None);
    }

    #[test]
    fn types_are_guessed_conservatively() {
        assert_eq!(guess_type(&["1", "22", ""]).0, "int64");
        assert_eq!(guess_type(&["007", "12"]).0, "string");
        assert_eq!(
            guess_type(&["19970101", "19971231"]),
            ("date".into(), Some("%Y%m%d".into()))
        );
        assert_eq!(guess_type(&["12.5", "3.25"]).0, "decimal(18,2)");
        assert_eq!(guess_type(&["2024-01-02T03:04:05Z"]).0, "timestamp");
        assert_eq!(guess_type(&["yes", "no"]).0, "bool");
        assert_eq!(snake("Order ID", 0), "order_id");
        assert_eq!(snake("customerName", 0), "customer_name");
        assert_eq!(snake("", 3), "column_4");
    }
}
