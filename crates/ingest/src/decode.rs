//! Bytes to text, by the source's declared encoding.

use std::borrow::Cow;

use crate::spec::Encoding;

/// Decodes one record. UTF-8 that is not valid is an error naming the byte offset.
pub(crate) fn decode(bytes: &[u8], encoding: Encoding) -> Result<Cow<'_, str>, String> {
    match encoding {
        Encoding::Utf8 => std::str::from_utf8(bytes).map(Cow::Borrowed).map_err(|e| {
            format!(
                "not valid UTF-8 at byte {} of the record (is the source's encoding right?)",
                e.valid_up_to()
            )
        }),
        Encoding::Latin1 => Ok(if bytes.is_ascii() {
            // ASCII is valid UTF-8 as it is.
            Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default())
        } else {
            Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect())
        }),
        Encoding::Windows1252 => {
            let (text, _had_errors) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
            Ok(text)
        }
    }
}

/// The raw text of a rejected record as it is kept in quarantine: decoded as well as possible and cut at
/// 2,000 characters.
pub(crate) fn raw_text(bytes: &[u8], encoding: Encoding) -> String {
    let text = match decode(bytes, encoding) {
        Ok(t) => t.into_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    };
    const MAX: usize = 2000;
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}… ({} bytes in all)", bytes.len())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_maps_every_byte() {
        assert_eq!(
            decode(b"Jos\xe9 M\xfcller", Encoding::Latin1).as_deref(),
            Ok("José Müller")
        );
        assert_eq!(decode(b"\x80", Encoding::Windows1252).as_deref(), Ok("€"));
    }

    #[test]
    fn bad_utf8_names_the_byte() {
        assert!(decode(b"ab\xff", Encoding::Utf8).is_err_and(|e| e.contains("byte 2")));
    }

    #[test]
    fn long_raw_text_is_cut() {
        let long = vec![b'x'; 10_000];
        let kept = raw_text(&long, Encoding::Utf8);
        assert!(kept.ends_with("(10000 bytes in all)"));
    }
}
