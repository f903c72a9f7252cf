//! Text to typed values. Each parser says in plain words why a text does not fit.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::spec::{FieldPlan, FieldType};

/// A parsed field value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Str(&'a str),
    I64(i64),
    F64(f64),
    Dec(i128),
    Date(i32),
    Ts(i64),
    Bool(bool),
}

const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

/// Converts one field's text (already cut out of the record) into a value of its declared type.
/// `None` text means the field is absent from the record (JSON) and is treated like an empty one.
#[inline(always)]
pub(crate) fn convert<'a>(
    field: &FieldPlan,
    text: Option<&'a str>,
    null_values: &[String],
) -> Result<Value<'a>, String> {
    let raw = text.unwrap_or("");
    // Most values have no spaces around them: skip the Unicode-aware trim when the ends are plain.
    let plain_ends = |b: &[u8]| {
        let ok = |c: &u8| c.is_ascii() && !c.is_ascii_whitespace();
        b.first().is_some_and(ok) && b.last().is_some_and(ok)
    };
    let t = if field.trim && !plain_ends(raw.as_bytes()) {
        raw.trim()
    } else {
        raw
    };
    let is_null =
        t.is_empty() || null_values.iter().any(|n| n == t) || field.unknown.iter().any(|u| u == t);
    if is_null {
        return if field.nullable {
            Ok(Value::Null)
        } else {
            Err("a value is required but the field is empty".into())
        };
    }
    let value = match &field.ty {
        FieldType::Utf8 => Ok(Value::Str(t)),
        FieldType::Int64 => parse_i64(t).map(Value::I64),
        FieldType::Float64 => parse_f64(t).map(Value::F64),
        FieldType::Decimal { precision, scale } => {
            parse_decimal(t, *precision, *scale).map(Value::Dec)
        }
        FieldType::Date { format } => parse_date(t, format).map(Value::Date),
        FieldType::Timestamp { format } => parse_timestamp(t, format.as_deref()).map(Value::Ts),
        FieldType::Boolean {
            true_values,
            false_values,
        } => {
            let l = t.to_lowercase();
            if true_values.contains(&l) {
                Ok(Value::Bool(true))
            } else if false_values.contains(&l) {
                Ok(Value::Bool(false))
            } else {
                Err(format!(
                    "'{}' is not a boolean (true: {}; false: {})",
                    clip(t),
                    true_values.join(", "),
                    false_values.join(", ")
                ))
            }
        }
    }?;
    field.rules.check(t, &value)?;
    Ok(value)
}

/// Shortens a value quoted in a reason.
pub(crate) fn clip(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

pub(crate) fn parse_i64(t: &str) -> Result<i64, String> {
    t.parse::<i64>().map_err(|e| match e.kind() {
        std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
            format!("'{}' overflows a 64-bit integer", clip(t))
        }
        _ => format!("'{}' is not an integer", clip(t)),
    })
}

pub(crate) fn parse_f64(t: &str) -> Result<f64, String> {
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("'{}' is not a finite number", clip(t))),
        Err(_) => Err(format!("'{}' is not a number", clip(t))),
    }
}

/// Parses `-123.45` into the unscaled integer of a decimal(precision, scale). More fractional digits
/// than the scale allows are refused rather than silently rounded.
pub(crate) fn parse_decimal(t: &str, precision: u8, scale: i8) -> Result<i128, String> {
    let bad = || format!("'{}' is not a decimal number", clip(t));
    let bytes = t.as_bytes();
    let (neg, digits) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        Some(b'+') => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    let scale = scale.max(0) as usize;
    // One pass: the value so far, the significant integer digits, and the fraction digits kept
    // (trailing zeros of the fraction are counted but only kept when a non-zero follows them).
    let mut v: i128 = 0;
    let (mut int_digits, mut frac_kept, mut frac_zeros) = (0usize, 0usize, 0usize);
    let (mut seen_digit, mut in_frac) = (false, false);
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                seen_digit = true;
                let d = i128::from(b - b'0');
                if !in_frac {
                    if int_digits > 0 || d != 0 {
                        int_digits += 1;
                        if int_digits > 38 {
                            return Err(format!(
                                "'{}' does not fit decimal({precision},{scale})",
                                clip(t)
                            ));
                        }
                        v = v * 10 + d;
                    }
                } else if d == 0 {
                    frac_zeros += 1;
                } else {
                    for _ in 0..frac_zeros {
                        if frac_kept < scale {
                            v *= 10;
                        }
                        frac_kept += 1;
                    }
                    frac_zeros = 0;
                    frac_kept += 1;
                    if frac_kept > scale {
                        return Err(format!(
                            "'{}' has more than {scale} decimal places",
                            clip(t)
                        ));
                    }
                    v = v * 10 + d;
                }
            }
            b'.' if !in_frac => in_frac = true,
            _ => return Err(bad()),
        }
    }
    if !seen_digit {
        return Err(bad());
    }
    if int_digits + scale > precision as usize {
        return Err(format!(
            "'{}' does not fit decimal({precision},{scale})",
            clip(t)
        ));
    }
    for _ in frac_kept..scale {
        v *= 10;
    }
    Ok(if neg { -v } else { v })
}

pub(crate) fn parse_date(t: &str, format: &str) -> Result<i32, String> {
    if let Some(d) = numeric_date(t, format) {
        // Days from 0001-01-01 (day 1) to 1970-01-01 are 719,163.
        return Ok(chrono::Datelike::num_days_from_ce(&d) - 719_163);
    }
    let d = NaiveDate::parse_from_str(t, format)
        .map_err(|_| format!("'{}' is not a valid date in the format '{format}'", clip(t)))?;
    i32::try_from(d.signed_duration_since(EPOCH).num_days())
        .map_err(|_| format!("'{}' is out of range", clip(t)))
}

/// The fast path of [`parse_date`] for formats made of `%Y`, `%m`, `%d` and literal characters, with
/// every number at its full width (`2025-03-01` for `%Y-%m-%d`). It answers only for texts that are
/// valid dates in exactly that shape; everything else goes to chrono, which accepts or explains.
fn numeric_date(t: &str, format: &str) -> Option<NaiveDate> {
    let (t, f) = (t.as_bytes(), format.as_bytes());
    let (mut ti, mut fi) = (0, 0);
    let (mut y, mut m, mut d) = (None, None, None);
    let digits = |at: usize, n: usize| -> Option<u32> {
        let s = t.get(at..at + n)?;
        s.iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    };
    while fi < f.len() {
        if f[fi] == b'%' {
            let (slot, n) = match f.get(fi + 1)? {
                b'Y' => (&mut y, 4),
                b'm' => (&mut m, 2),
                b'd' => (&mut d, 2),
                _ => return None,
            };
            *slot = Some(digits(ti, n)?);
            ti += n;
            fi += 2;
        } else {
            if t.get(ti) != Some(&f[fi]) {
                return None;
            }
            ti += 1;
            fi += 1;
        }
    }
    if ti != t.len() {
        return None;
    }
    NaiveDate::from_ymd_opt(i32::try_from(y?).ok()?, m?, d?)
}

/// Timestamps become microseconds since the epoch, UTC. Without a format, RFC 3339 (with `T` or a space,
/// an offset or `Z`) is accepted, and a value with no offset is taken as UTC.
pub(crate) fn parse_timestamp(t: &str, format: Option<&str>) -> Result<i64, String> {
    let utc: Option<DateTime<Utc>> = match format {
        Some(f) => DateTime::parse_from_str(t, f)
            .map(|d| d.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                NaiveDateTime::parse_from_str(t, f)
                    .ok()
                    .map(|n| n.and_utc())
            }),
        None => DateTime::parse_from_rfc3339(t)
            .or_else(|_| DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%:z"))
            .or_else(|_| DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z"))
            .map(|d| d.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
                    .ok()
                    .map(|n| n.and_utc())
            })
            .or_else(|| {
                NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
                    .ok()
                    .map(|n| n.and_utc())
            }),
    };
    let shown = format.unwrap_or("RFC 3339");
    utc.map(|d| d.timestamp_micros()).ok_or_else(|| {
        format!(
            "'{}' is not a valid timestamp in the format '{shown}'",
            clip(t)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Position;

    fn field(ty: FieldType, nullable: bool) -> FieldPlan {
        FieldPlan {
            name: "f".into(),
            ty,
            position: Position::Column(0),
            nullable,
            trim: true,
            unknown: vec!["00000000".into()],
            rules: Default::default(),
        }
    }

    #[test]
    fn decimals_are_exact_and_refuse_silent_rounding() {
        assert_eq!(parse_decimal("12.5", 12, 2), Ok(1250));
        assert_eq!(parse_decimal("-0.07", 12, 2), Ok(-7));
        assert_eq!(parse_decimal("+3", 12, 2), Ok(300));
        assert_eq!(parse_decimal("1.230", 12, 2), Ok(123));
        assert!(
            parse_decimal("1.234", 12, 2).is_err_and(|e| e.contains("more than 2 decimal places"))
        );
        assert!(parse_decimal("12.x5", 12, 2).is_err_and(|e| e.contains("not a decimal")));
        assert!(parse_decimal("123456789012", 12, 2).is_err_and(|e| e.contains("does not fit")));
        assert!(parse_decimal(".", 12, 2).is_err());
        assert_eq!(parse_decimal("0.05", 12, 2), Ok(5));
        assert_eq!(parse_decimal("1.50", 12, 2), Ok(150));
        assert_eq!(parse_decimal("1.", 12, 2), Ok(100));
        assert_eq!(parse_decimal(".5", 12, 2), Ok(50));
        assert_eq!(parse_decimal("0001.2000", 12, 2), Ok(120));
        assert_eq!(parse_decimal("-12", 12, 0), Ok(-12));
        assert!(parse_decimal("1.2.3", 12, 2).is_err());
        assert!(parse_decimal("1.005", 12, 2).is_err_and(|e| e.contains("more than 2")));
        assert!(parse_decimal("1e5", 12, 2).is_err());
        assert_eq!(parse_decimal("9999999999.99", 12, 2), Ok(999_999_999_999));
        assert!(parse_decimal("-", 12, 2).is_err());
    }

    #[test]
    fn the_fast_date_path_agrees_with_chrono() {
        for (t, f) in [
            ("2025-03-01", "%Y-%m-%d"),
            ("20250301", "%Y%m%d"),
            ("01/03/2025", "%d/%m/%Y"),
            ("03/01/2025", "%m/%d/%Y"),
            ("2024-02-29", "%Y-%m-%d"),
        ] {
            let fast = numeric_date(t, f);
            assert!(fast.is_some(), "{t} {f}");
            assert_eq!(fast, NaiveDate::parse_from_str(t, f).ok(), "{t} {f}");
        }
        // Not valid or not full width: left to chrono.
        for (t, f) in [
            ("2025-02-29", "%Y-%m-%d"),
            ("2025-3-01", "%Y-%m-%d"),
            ("2025-03-01x", "%Y-%m-%d"),
            ("2025/03/01", "%Y-%m-%d"),
            ("01 Mar 2025", "%d %b %Y"),
        ] {
            assert_eq!(numeric_date(t, f), None, "{t} {f}");
        }
        assert_eq!(
            parse_date("2025-3-01", "%Y-%m-%d"),
            parse_date("2025-03-01", "%Y-%m-%d")
        );
    }

    #[test]
    fn days_count_from_the_epoch() {
        assert_eq!(parse_date("1970-01-01", "%Y-%m-%d"), Ok(0));
        assert_eq!(parse_date("1969-12-31", "%Y-%m-%d"), Ok(-1));
        assert_eq!(parse_date("2000-03-01", "%Y-%m-%d"), Ok(11_017));
    }

    #[test]
    fn impossible_dates_are_named() {
        assert_eq!(parse_date("19700102", "%Y%m%d"), Ok(1));
        assert!(
            parse_date("20251345", "%Y%m%d")
                .is_err_and(|e| e.contains("'20251345' is not a valid date"))
        );
    }

    #[test]
    fn timestamps_with_offsets_become_utc() {
        let a = parse_timestamp("2025-03-01T10:00:00+02:00", None);
        let b = parse_timestamp("2025-03-01T08:00:00Z", None);
        assert!(a.is_ok());
        assert_eq!(a, b);
        assert_eq!(parse_timestamp("2025-03-01 08:00:00", None), b);
        assert!(parse_timestamp("yesterday", None).is_err());
    }

    #[test]
    fn unknown_tokens_are_null_and_required_fields_refuse_them() {
        let date = FieldType::Date {
            format: "%Y%m%d".into(),
        };
        assert_eq!(
            convert(&field(date.clone(), true), Some("00000000"), &[]),
            Ok(Value::Null)
        );
        assert!(convert(&field(date, false), Some("  "), &[]).is_err());
        assert_eq!(
            convert(&field(FieldType::Int64, true), Some("N/A"), &["N/A".into()]),
            Ok(Value::Null)
        );
        assert!(
            convert(
                &field(FieldType::Int64, true),
                Some("99999999999999999999"),
                &[]
            )
            .is_err_and(|e| e.contains("overflows"))
        );
    }

    #[test]
    fn booleans_follow_their_token_lists() {
        let b = FieldType::Boolean {
            true_values: vec!["y".into()],
            false_values: vec!["n".into()],
        };
        assert_eq!(
            convert(&field(b.clone(), true), Some("Y"), &[]),
            Ok(Value::Bool(true))
        );
        assert!(convert(&field(b, true), Some("maybe"), &[]).is_err());
    }
}
