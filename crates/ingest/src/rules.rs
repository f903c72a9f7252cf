//! Validation rules of a field: what a well-formed value looks like beyond its type. A value that
//! breaks a rule sends its row to quarantine with a reason that starts with the rule's name
//! (`pattern: ...`, `min: ...`), so the quarantine can be counted by rule.

use std::collections::BTreeSet;

use crate::spec::{FieldSpec, FieldType};
use crate::values::{Value, parse_date, parse_decimal, parse_f64, parse_i64, parse_timestamp};

/// A `min` or `max` as TOML writes it: a number, or text (a date, a timestamp, a decimal).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum Bound {
    Integer(i64),
    Float(f64),
    Text(String),
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Integer(v) => write!(f, "{v}"),
            Self::Float(v) => write!(f, "{v}"),
            Self::Text(v) => f.write_str(v),
        }
    }
}

/// A bound in the field's own type, compared with its parsed values.
#[derive(Debug, Clone, PartialEq)]
enum Limit {
    I64(i64),
    F64(f64),
    Dec(i128),
    Date(i32),
    Ts(i64),
}

impl Limit {
    /// Parses `bound` as a value of `ty`: numbers as numbers, dates as `YYYY-MM-DD` whatever the
    /// field's own format, timestamps as RFC 3339 or a date (midnight UTC).
    fn parse(bound: &Bound, ty: &FieldType) -> Result<Self, String> {
        let text = bound.to_string();
        match ty {
            FieldType::Int64 => parse_i64(&text).map(Self::I64),
            FieldType::Float64 => parse_f64(&text).map(Self::F64),
            FieldType::Decimal { precision, scale } => {
                parse_decimal(&text, *precision, *scale).map(Self::Dec)
            }
            FieldType::Date { .. } => parse_date(&text, "%Y-%m-%d")
                .map(Self::Date)
                .map_err(|_| format!("'{text}' is not a date written YYYY-MM-DD")),
            FieldType::Timestamp { .. } => parse_timestamp(&text, None)
                .or_else(|_| parse_date(&text, "%Y-%m-%d").map(|d| i64::from(d) * 86_400_000_000))
                .map(Self::Ts)
                .map_err(|_| format!("'{text}' is not a timestamp (RFC 3339) or a date")),
            FieldType::Utf8 | FieldType::Boolean { .. } => {
                Err("is not allowed here: min and max apply only to number, decimal, date and timestamp fields".into())
            }
        }
    }

    /// How `value` compares with the limit; `None` when the value is of another kind.
    fn compare(&self, value: &Value<'_>) -> Option<std::cmp::Ordering> {
        match (value, self) {
            (Value::I64(v), Self::I64(l)) => Some(v.cmp(l)),
            (Value::F64(v), Self::F64(l)) => v.partial_cmp(l),
            (Value::Dec(v), Self::Dec(l)) => Some(v.cmp(l)),
            (Value::Date(v), Self::Date(l)) => Some(v.cmp(l)),
            (Value::Ts(v), Self::Ts(l)) => Some(v.cmp(l)),
            _ => None,
        }
    }
}

/// The validation rules of one field, checked after its text parsed as its type.
#[derive(Debug, Clone, Default)]
pub struct FieldRules {
    /// The regular expression as written, and compiled to match the whole text.
    pattern: Option<(String, regex::Regex)>,
    allowed: Option<BTreeSet<String>>,
    min: Option<(Bound, Limit)>,
    max: Option<(Bound, Limit)>,
    max_length: Option<usize>,
    /// Refuse text holding a control character (text fields, unless `allow_control_chars`).
    refuse_control_chars: bool,
}

impl FieldRules {
    /// The rules a field declares; a problem names the field and the rule.
    pub(crate) fn plan(f: &FieldSpec, ty: &FieldType) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let pattern = match &f.pattern {
            None => None,
            Some(p) => match regex::Regex::new(&format!("^(?:{p})$")) {
                Ok(re) => Some((p.clone(), re)),
                Err(e) => {
                    // The regex crate explains on several lines with a diagram; its last line says why.
                    let text = e.to_string();
                    let why = text.lines().last().unwrap_or_default();
                    let why = why.strip_prefix("error: ").unwrap_or(why);
                    problems.push(format!(
                        "field '{}': pattern '{p}' is not a regular expression: {why}",
                        f.name
                    ));
                    None
                }
            },
        };
        let allowed = match &f.allowed {
            Some(values) if values.is_empty() => {
                problems.push(format!(
                    "field '{}': allowed is empty, so no row could load",
                    f.name
                ));
                None
            }
            Some(values) => Some(values.iter().cloned().collect()),
            None => None,
        };
        let mut limit = |name: &str, bound: &Option<Bound>| match bound {
            None => None,
            Some(b) => match Limit::parse(b, ty) {
                Ok(l) => Some((b.clone(), l)),
                Err(e) => {
                    problems.push(format!("field '{}': {name} {e}", f.name));
                    None
                }
            },
        };
        let min = limit("min", &f.min);
        let max = limit("max", &f.max);
        if let (Some((lo, l)), Some((hi, h))) = (&min, &max)
            && h.compare(&limit_value(l)) == Some(std::cmp::Ordering::Greater)
        {
            problems.push(format!(
                "field '{}': min {lo} is above max {hi}, so no row could load",
                f.name
            ));
        }
        let is_text = matches!(ty, FieldType::Utf8);
        match f.max_length {
            Some(0) => problems.push(format!("field '{}': max_length must be at least 1", f.name)),
            Some(_) if !is_text => problems.push(format!(
                "field '{}': max_length applies only to string fields",
                f.name
            )),
            _ => {}
        }
        if f.allow_control_chars.is_some() && !is_text {
            problems.push(format!(
                "field '{}': allow_control_chars applies only to string fields",
                f.name
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            pattern,
            allowed,
            min,
            max,
            max_length: f.max_length,
            refuse_control_chars: is_text && !f.allow_control_chars.unwrap_or(false),
        })
    }

    /// Checks a value that parsed; `text` is its trimmed text. The reason starts with the rule.
    #[inline]
    pub(crate) fn check(&self, text: &str, value: &Value<'_>) -> Result<(), String> {
        if self.refuse_control_chars
            && let Some((at, c)) = control_char(text)
        {
            return Err(format!(
                "control_chars: a control character (U+{:04X}) at character {} (allow_control_chars = true keeps such text)",
                u32::from(c),
                at + 1
            ));
        }
        if let Some(n) = self.max_length {
            let length = text.chars().count();
            if length > n {
                return Err(format!("max_length: {length} characters, more than {n}"));
            }
        }
        if let Some((written, re)) = &self.pattern
            && !re.is_match(text)
        {
            return Err(format!(
                "pattern: '{}' does not match {written}",
                crate::values::clip(text)
            ));
        }
        if let Some(allowed) = &self.allowed
            && !allowed.contains(text)
        {
            let list: Vec<&str> = allowed.iter().map(String::as_str).take(12).collect();
            let more = if allowed.len() > 12 { ", ..." } else { "" };
            return Err(format!(
                "allowed: '{}' is not one of {}{more}",
                crate::values::clip(text),
                list.join(", ")
            ));
        }
        if let Some((bound, limit)) = &self.min
            && limit.compare(value) == Some(std::cmp::Ordering::Less)
        {
            return Err(format!(
                "min: '{}' is below the minimum {bound}",
                crate::values::clip(text)
            ));
        }
        if let Some((bound, limit)) = &self.max
            && limit.compare(value) == Some(std::cmp::Ordering::Greater)
        {
            return Err(format!(
                "max: '{}' is above the maximum {bound}",
                crate::values::clip(text)
            ));
        }
        Ok(())
    }
}

/// A limit as a value, to compare two limits of one field.
fn limit_value(l: &Limit) -> Value<'static> {
    match l {
        Limit::I64(v) => Value::I64(*v),
        Limit::F64(v) => Value::F64(*v),
        Limit::Dec(v) => Value::Dec(*v),
        Limit::Date(v) => Value::Date(*v),
        Limit::Ts(v) => Value::Ts(*v),
    }
}

/// The first control character of `text` and its position in characters: C0 (but tab, line feed
/// and carriage return, which a quoted CSV field or a JSON string may hold as text), DEL and C1.
#[inline]
fn control_char(text: &str) -> Option<(usize, char)> {
    let refused = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r');
    // C1 characters are encoded 0xC2 0x80..0x9F: only a text with one of these bytes needs the
    // character-by-character look.
    if !text
        .bytes()
        .any(|b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f || b == 0xc2)
    {
        return None;
    }
    text.chars().enumerate().find(|(_, c)| refused(*c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str, ty: &str) -> FieldSpec {
        toml::from_str(&format!("name = \"f\"\ntype = \"{ty}\"\n{extra}"))
            .unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn rules(extra: &str, ty: &str) -> (FieldRules, FieldType) {
        let f = spec(extra, ty);
        let t = crate::spec::parse_type(&f).unwrap_or_else(|e| unreachable!("{e}"));
        let r = FieldRules::plan(&f, &t).unwrap_or_else(|e| unreachable!("{e:?}"));
        (r, t)
    }

    #[test]
    fn a_pattern_matches_the_whole_text() {
        let (r, _) = rules(r#"pattern = "[0-9]{8}""#, "string");
        assert!(r.check("00012345", &Value::Str("00012345")).is_ok());
        let e = r
            .check("00A12345", &Value::Str("00A12345"))
            .err()
            .unwrap_or_default();
        assert_eq!(e, "pattern: '00A12345' does not match [0-9]{8}");
        // Not a search: a longer text with eight digits inside does not match.
        assert!(r.check("x000123456", &Value::Str("x000123456")).is_err());
    }

    #[test]
    fn control_characters_are_refused_unless_allowed() {
        let (r, _) = rules("", "string");
        assert!(r.check("SMITH", &Value::Str("SMITH")).is_ok());
        assert!(r.check("Zoë £5", &Value::Str("Zoë £5")).is_ok());
        let e = r
            .check("SM\u{7}ITH", &Value::Str(""))
            .err()
            .unwrap_or_default();
        assert!(
            e.starts_with("control_chars: a control character (U+0007) at character 3"),
            "{e}"
        );
        assert!(
            r.check("A\u{85}B", &Value::Str("")).is_err(),
            "C1 controls too"
        );
        assert!(
            r.check("line one\r\nline two\tend", &Value::Str(""))
                .is_ok(),
            "line breaks and tabs are text"
        );
        assert!(r.check("NUL\0", &Value::Str("")).is_err());
        let (allow, _) = rules("allow_control_chars = true", "string");
        assert!(allow.check("SM\u{7}ITH\0", &Value::Str("")).is_ok());
    }

    #[test]
    fn limits_compare_in_the_fields_type() {
        let (r, _) = rules("min = 0\nmax = 120", "int64");
        assert!(r.check("42", &Value::I64(42)).is_ok());
        assert!(
            r.check("-1", &Value::I64(-1))
                .is_err_and(|e| e.starts_with("min: '-1'"))
        );
        assert!(
            r.check("121", &Value::I64(121))
                .is_err_and(|e| e.starts_with("max: '121'"))
        );
        let (d, _) = rules(
            r#"format = "%Y%m%d"
min = "1900-01-02""#,
            "date",
        );
        let day = |s: &str| {
            crate::values::parse_date(s, "%Y%m%d").unwrap_or_else(|e| unreachable!("{e}"))
        };
        assert!(d.check("19000101", &Value::Date(day("19000101"))).is_err());
        assert!(d.check("19700101", &Value::Date(day("19700101"))).is_ok());
        let (m, _) = rules(r#"min = "0.01""#, "decimal(10,2)");
        assert!(m.check("0.00", &Value::Dec(0)).is_err());
        assert!(m.check("0.01", &Value::Dec(1)).is_ok());
    }

    #[test]
    fn allowed_values_and_lengths() {
        let (r, _) = rules(
            r#"allowed = ["M", "F", "U"]
max_length = 1"#,
            "string",
        );
        assert!(r.check("F", &Value::Str("F")).is_ok());
        assert_eq!(
            r.check("X", &Value::Str("X")).err().unwrap_or_default(),
            "allowed: 'X' is not one of F, M, U"
        );
        assert!(
            r.check("MF", &Value::Str("MF"))
                .is_err_and(|e| e.starts_with("max_length: 2 characters"))
        );
    }

    #[test]
    fn rules_that_cannot_hold_are_refused_with_the_field() {
        let bad = |extra: &str, ty: &str| {
            let f = spec(extra, ty);
            let t = crate::spec::parse_type(&f).unwrap_or_else(|e| unreachable!("{e}"));
            FieldRules::plan(&f, &t)
                .err()
                .unwrap_or_default()
                .join("; ")
        };
        assert!(
            bad(r#"pattern = "[0-9""#, "string")
                .contains("field 'f': pattern '[0-9' is not a regular expression")
        );
        assert!(bad("min = 5\nmax = 1", "int64").contains("min 5 is above max 1"));
        assert!(bad("min = 1", "string").contains("min and max apply only"));
        assert!(bad(r#"min = "01/02/1990""#, "date").contains("YYYY-MM-DD"));
        assert!(bad("max_length = 3", "int64").contains("only to string"));
        assert!(bad("allowed = []", "string").contains("allowed is empty"));
        assert!(bad("allow_control_chars = true", "date").contains("only to string"));
    }
}
