//! Tombstones of people who asked to be forgotten: SHA-256 hashes of their identifiers (emails,
//! phones, customer, record and source keys), never the plain values, kept under
//! `_privacy/tombstones/` so that later loads leave them out.
//!
//! A value is compared by its forms: trimmed and lower-cased (a leading spreadsheet quote
//! dropped), and, in a column whose name speaks of a phone, `tel:` and its last nine digits (the
//! same for `+44 7700 900123` and `07700 900123`). Free text such as a quarantined line is
//! compared word by word.

use std::collections::HashSet;

use arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use sha2::{Digest, Sha256};

use crate::{Result, Warehouse};

/// Where tombstones are kept.
pub const TOMBSTONE_DIR: &str = "_privacy/tombstones";

/// One forgotten person, as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tombstone {
    /// The erasure's id (also its audit entry's).
    pub id: String,
    pub forgotten_at: String,
    /// SHA-256 (hex) of each form of each identifier.
    pub hashes: Vec<String>,
    /// [`quick`] of each form.
    #[serde(default)]
    pub quick: Vec<u16>,
}

/// A 16-bit FNV-1a digest of a form: a cheap first test, so that only the few values that pass
/// it are hashed with SHA-256 (16 bits tell next to nothing of a value).
pub fn quick(form: &str) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in form.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h & 0xffff) as u16
}

/// Whether a column holds phone numbers, by its name.
pub fn is_phone_column(column: &str) -> bool {
    let c = column.to_ascii_lowercase();
    ["phone", "mobile", "tel"].iter().any(|p| c.contains(p))
}

/// The forms a value is compared by (see the module doc).
pub fn forms(column: &str, value: &str) -> Vec<String> {
    let v = value.trim().trim_start_matches('\'').trim().to_lowercase();
    if v.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(2);
    if is_phone_column(column) || v.starts_with('+') {
        let digits: String = v.chars().filter(char::is_ascii_digit).collect();
        if digits.len() >= 9 {
            out.push(format!("tel:{}", &digits[digits.len() - 9..]));
        }
    }
    out.push(v);
    out
}

/// SHA-256 of a form, lower-case hex.
pub fn hash(form: &str) -> String {
    hex::encode(Sha256::digest(form.as_bytes()))
}

/// The hashed forms of every identifier of every forgotten person.
#[derive(Debug, Clone, Default)]
pub struct Tombstones {
    hashes: HashSet<String>,
    /// [`quick`] of every form, or `None` when some tombstone lacks them (then every value is
    /// hashed).
    quick: Option<HashSet<u16>>,
}

impl Tombstones {
    /// Every tombstone of the warehouse.
    pub async fn load(warehouse: &Warehouse) -> Result<Self> {
        let mut hashes = HashSet::new();
        let mut quick = Some(HashSet::new());
        for (path, _) in warehouse.list(TOMBSTONE_DIR).await? {
            let body = warehouse.get(&path).await?;
            let t: Tombstone =
                serde_json::from_slice(&body).map_err(|source| crate::Error::Json {
                    path: path.clone(),
                    source,
                })?;
            if t.quick.is_empty() && !t.hashes.is_empty() {
                quick = None;
            }
            if let Some(q) = quick.as_mut() {
                q.extend(t.quick);
            }
            hashes.extend(t.hashes);
        }
        Ok(Self { hashes, quick })
    }

    /// From forms ([`forms`]): what a tombstone of them holds ([`Tombstones::tombstone`]).
    pub fn from_forms<'a>(forms: impl IntoIterator<Item = &'a str>) -> Self {
        let (mut hashes, mut quicks) = (HashSet::new(), HashSet::new());
        for f in forms {
            hashes.insert(hash(f));
            quicks.insert(quick(f));
        }
        Self {
            hashes,
            quick: Some(quicks),
        }
    }

    /// The tombstone to write for these identifiers.
    pub fn tombstone(&self, id: &str, forgotten_at: &str) -> Tombstone {
        let mut hashes: Vec<String> = self.hashes.iter().cloned().collect();
        hashes.sort();
        let mut quicks: Vec<u16> = self.quick.iter().flatten().copied().collect();
        quicks.sort_unstable();
        Tombstone {
            id: id.to_string(),
            forgotten_at: forgotten_at.to_string(),
            hashes,
            quick: quicks,
        }
    }

    /// How many hashed forms.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether a value of `column` is one of a forgotten person's identifiers.
    pub fn matches(&self, column: &str, value: &str) -> bool {
        forms(column, value).iter().any(|f| {
            self.quick.as_ref().is_none_or(|q| q.contains(&quick(f)))
                && self.hashes.contains(&hash(f))
        })
    }

    /// Whether free text holds one: word by word, split at whitespace and punctuation that cannot
    /// be part of an email or a key.
    pub fn matches_text(&self, text: &str) -> bool {
        text.split(|c: char| c.is_whitespace() || ",;|\"'<>()[]{}".contains(c))
            .any(|w| self.matches("", w))
    }

    /// The rows of `batch` that hold none of them (`true` = keep). A column named `raw` (the line
    /// of a quarantined row) is compared as free text.
    pub fn keep_mask(&self, batch: &RecordBatch) -> BooleanArray {
        let mut keep = vec![true; batch.num_rows()];
        if self.is_empty() {
            return BooleanArray::from(keep);
        }
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            if !matches!(
                field.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) {
                continue;
            }
            let Ok(text) = cast(column, &DataType::Utf8) else {
                continue;
            };
            let Some(text) = text.as_any().downcast_ref::<StringArray>() else {
                continue;
            };
            let free_text = field.name() == "raw";
            for (i, k) in keep.iter_mut().enumerate() {
                if *k && text.is_valid(i) {
                    let v = text.value(i);
                    if (free_text && self.matches_text(v)) || self.matches(field.name(), v) {
                        *k = false;
                    }
                }
            }
        }
        BooleanArray::from(keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_forgotten_persons_rows_are_found_by_any_form_of_their_identifiers()
    -> std::result::Result<(), arrow::error::ArrowError> {
        let t = Tombstones::from_forms(["jane@example.com", "tel:700900123", "00000042"]);
        assert!(t.matches("email", " Jane@Example.com "));
        assert!(t.matches("phone", "07700 900123") && t.matches("phone", "+44 7700 900123"));
        assert!(t.matches("customer_no", "00000042"));
        assert!(!t.matches("phone", "07700 900124") && !t.matches("email", "jan@example.com"));
        assert!(t.matches_text("00000043 SMITH x jane@example.com N"));
        let batch = RecordBatch::try_from_iter(vec![
            (
                "email",
                Arc::new(StringArray::from(vec![
                    Some("a@b.co"),
                    Some("JANE@example.com"),
                ])) as Arc<dyn Array>,
            ),
            (
                "raw",
                Arc::new(StringArray::from(vec![Some("00000042|x"), Some("ok")])),
            ),
        ])?;
        let keep = t.keep_mask(&batch);
        assert!(!keep.value(0) && !keep.value(1));
        assert!(Tombstones::default().keep_mask(&batch).value(0));
        // Written (hashed, never plain), and read back without the quick digests an older
        // tombstone lacks, it finds the same rows.
        let written = t.tombstone("e1", "2026-01-01T00:00:00Z");
        assert!(!written.hashes.iter().any(|h| h.contains("jane")));
        assert_eq!(written.quick.len(), 3);
        let older = Tombstones {
            hashes: written.hashes.into_iter().collect(),
            quick: None,
        };
        assert!(older.matches("email", "jane@example.com"));
        assert!(!older.matches("email", "john@example.com"));
        Ok(())
    }
}
