//! Decoding one field of a mainframe record into text: EBCDIC characters, zoned decimal with sign
//! overpunch, packed decimal (COMP-3) and big-endian binary, with the implied decimal point applied.

use super::LaidOutField;
use super::ebcdic::CodePage;
use super::parse::{Picture, SignPosition, Usage};

/// Bytes one occurrence of an elementary item takes.
pub(crate) fn storage_length(picture: &Picture, usage: Usage, sign: SignPosition) -> usize {
    match (picture, usage) {
        (Picture::Alphanumeric { chars }, _) => *chars,
        (Picture::Numeric { digits, .. }, Usage::Packed) => digits / 2 + 1,
        (Picture::Numeric { digits, .. }, Usage::Binary) => match digits {
            1..=4 => 2,
            5..=9 => 4,
            _ => 8,
        },
        (Picture::Numeric { digits, signed, .. }, Usage::Display) => {
            let separate = matches!(
                sign,
                SignPosition::LeadingSeparate | SignPosition::TrailingSeparate
            );
            digits + usize::from(*signed && separate)
        }
    }
}

/// Formats digits with the implied decimal point: `("12345", 2, true)` -> `-123.45`.
fn with_scale(digits: &str, scale: usize, negative: bool) -> String {
    let digits = digits.trim_start_matches('0');
    let mut out = String::with_capacity(digits.len() + 3);
    if negative && !digits.is_empty() {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(if digits.is_empty() { "0" } else { digits });
        return out;
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    out.push_str(int);
    out.push('.');
    out.push_str(frac);
    out
}

/// Decodes one field of a record into its text, `None` when the field is blank (all spaces or all
/// low-values) or lies past the end of a short variable-length record. Errors say which byte is wrong.
pub fn decode_field(
    field: &LaidOutField,
    record: &[u8],
    code_page: CodePage,
) -> Result<Option<String>, String> {
    let Some(bytes) = record.get(field.offset..field.offset + field.length) else {
        return Ok(None);
    };
    let blank = bytes.iter().all(|&b| b == 0x40) || bytes.iter().all(|&b| b == 0x00);
    if blank && field.usage != Usage::Binary {
        // Blank numeric fields are common in extracts; for text the caller's trimming does the same.
        return Ok(None);
    }
    match (&field.picture, field.usage) {
        (Picture::Alphanumeric { .. }, _) => Ok(Some(code_page.decode(bytes))),
        (Picture::Numeric { signed, scale, .. }, Usage::Packed) => {
            packed(bytes, *signed, *scale).map(Some)
        }
        (Picture::Numeric { signed, scale, .. }, Usage::Binary) => {
            binary(bytes, *signed, *scale).map(Some)
        }
        (Picture::Numeric { signed, scale, .. }, Usage::Display) => {
            zoned(bytes, *signed, *scale, field.sign).map(Some)
        }
    }
}

fn packed(bytes: &[u8], signed: bool, scale: usize) -> Result<String, String> {
    let mut digits = String::with_capacity(bytes.len() * 2);
    let last = bytes.len() - 1;
    let mut negative = false;
    for (i, &b) in bytes.iter().enumerate() {
        let (hi, lo) = (b >> 4, b & 0x0F);
        if hi > 9 {
            return Err(format!(
                "packed decimal: invalid digit nibble {hi:X} in byte {} (0x{b:02X})",
                i + 1
            ));
        }
        digits.push(char::from(b'0' + hi));
        if i == last {
            negative = match lo {
                0xC | 0xF | 0xA | 0xE => false,
                0xD | 0xB => true,
                _ => {
                    return Err(format!(
                        "packed decimal: invalid sign nibble {lo:X} in the last byte (0x{b:02X})"
                    ));
                }
            };
            if negative && !signed {
                return Err("packed decimal: a negative value in an unsigned field".into());
            }
        } else if lo > 9 {
            return Err(format!(
                "packed decimal: invalid digit nibble {lo:X} in byte {} (0x{b:02X})",
                i + 1
            ));
        } else {
            digits.push(char::from(b'0' + lo));
        }
    }
    Ok(with_scale(&digits, scale, negative))
}

fn binary(bytes: &[u8], signed: bool, scale: usize) -> Result<String, String> {
    let mut v: i128 = 0;
    for &b in bytes {
        v = (v << 8) | i128::from(b);
    }
    let bits = bytes.len() * 8;
    if signed && bytes.first().is_some_and(|b| b & 0x80 != 0) {
        v -= 1i128 << bits;
    }
    let negative = v < 0;
    Ok(with_scale(&v.unsigned_abs().to_string(), scale, negative))
}

fn zoned(bytes: &[u8], signed: bool, scale: usize, sign: SignPosition) -> Result<String, String> {
    let (digits_bytes, separate) = match (signed, sign) {
        (true, SignPosition::LeadingSeparate) => (&bytes[1..], bytes.first().copied()),
        (true, SignPosition::TrailingSeparate) => {
            (&bytes[..bytes.len() - 1], bytes.last().copied())
        }
        _ => (bytes, None),
    };
    let mut negative = match separate {
        Some(0x4E) => false,
        Some(0x60) => true,
        Some(b) => {
            return Err(format!(
                "zoned decimal: the separate sign byte is 0x{b:02X}, not '+' (0x4E) or '-' (0x60)"
            ));
        }
        None => false,
    };
    let overpunch_at = match sign {
        SignPosition::Leading => 0,
        _ => digits_bytes.len().saturating_sub(1),
    };
    let mut digits = String::with_capacity(digits_bytes.len());
    for (i, &b) in digits_bytes.iter().enumerate() {
        let (zone, digit) = (b >> 4, b & 0x0F);
        if digit > 9 {
            return Err(format!(
                "zoned decimal: byte {} (0x{b:02X}) is not a digit",
                i + 1
            ));
        }
        let zone_ok = if signed && separate.is_none() && i == overpunch_at {
            match zone {
                0xF | 0xC | 0xA | 0xE => true,
                0xD | 0xB => {
                    negative = true;
                    true
                }
                _ => false,
            }
        } else {
            // Unsigned fields sometimes carry a C (positive) zone on the last digit.
            zone == 0xF || (i == overpunch_at && zone == 0xC)
        };
        if !zone_ok {
            return Err(format!(
                "zoned decimal: byte {} (0x{b:02X}) is not a digit",
                i + 1
            ));
        }
        digits.push(char::from(b'0' + digit));
    }
    if negative && !signed {
        return Err("zoned decimal: a negative value in an unsigned field".into());
    }
    if !signed && scale == 0 {
        // Unsigned whole numbers are often codes and identifiers: keep their leading zeros (an
        // integer column parses them all the same).
        return Ok(digits);
    }
    Ok(with_scale(&digits, scale, negative))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(picture: Picture, usage: Usage, sign: SignPosition) -> LaidOutField {
        let length = storage_length(&picture, usage, sign);
        LaidOutField {
            cobol_name: "F".into(),
            column: "f".into(),
            offset: 0,
            length,
            picture,
            usage,
            sign,
            alternatives: vec![],
            line: 1,
        }
    }

    fn num(signed: bool, digits: usize, scale: usize) -> Picture {
        Picture::Numeric {
            signed,
            digits,
            scale,
        }
    }

    #[test]
    fn packed_decimal_known_vectors() {
        // S9(5)V99 COMP-3: 4 bytes.
        let f = field(num(true, 7, 2), Usage::Packed, SignPosition::Trailing);
        assert_eq!(f.length, 4);
        let d = |b: &[u8]| decode_field(&f, b, CodePage::Cp037);
        assert_eq!(d(&[0x01, 0x23, 0x45, 0x6C]), Ok(Some("1234.56".into())));
        assert_eq!(d(&[0x00, 0x00, 0x01, 0x2D]), Ok(Some("-0.12".into())));
        assert_eq!(d(&[0x00, 0x00, 0x00, 0x0F]), Ok(Some("0.00".into())));
        assert!(d(&[0x0A, 0x00, 0x00, 0x0C]).is_err_and(|e| e.contains("nibble A in byte 1")));
        assert!(d(&[0x00, 0x00, 0x00, 0x05]).is_err_and(|e| e.contains("sign nibble 5")));
    }

    #[test]
    fn zoned_decimal_with_overpunch() {
        let f = field(num(true, 5, 2), Usage::Display, SignPosition::Trailing);
        let d = |b: &[u8]| decode_field(&f, b, CodePage::Cp037);
        // 123.45 positive: F1 F2 F3 F4 C5; negative: ... D5.
        assert_eq!(
            d(&[0xF1, 0xF2, 0xF3, 0xF4, 0xC5]),
            Ok(Some("123.45".into()))
        );
        assert_eq!(
            d(&[0xF1, 0xF2, 0xF3, 0xF4, 0xD5]),
            Ok(Some("-123.45".into()))
        );
        assert_eq!(d(&[0xF0, 0xF0, 0xF0, 0xF0, 0xF7]), Ok(Some("0.07".into())));
        assert!(d(&[0xF1, 0x4B, 0xF3, 0xF4, 0xC5]).is_err_and(|e| e.contains("byte 2")));
        let lead = field(
            num(true, 3, 0),
            Usage::Display,
            SignPosition::LeadingSeparate,
        );
        assert_eq!(
            decode_field(&lead, &[0x60, 0xF0, 0xF4, 0xF2], CodePage::Cp037),
            Ok(Some("-42".into()))
        );
        let unsigned = field(num(false, 4, 0), Usage::Display, SignPosition::Trailing);
        assert_eq!(
            decode_field(&unsigned, &[0x40; 4], CodePage::Cp037),
            Ok(None)
        );
    }

    #[test]
    fn binary_big_endian() {
        let f = field(num(true, 4, 0), Usage::Binary, SignPosition::Trailing);
        assert_eq!(f.length, 2);
        assert_eq!(
            decode_field(&f, &[0xFF, 0xFE], CodePage::Cp037),
            Ok(Some("-2".into()))
        );
        let g = field(num(false, 9, 2), Usage::Binary, SignPosition::Trailing);
        assert_eq!(
            decode_field(&g, &[0x00, 0x01, 0xE2, 0x40], CodePage::Cp037),
            Ok(Some("1234.56".into()))
        );
    }
}
