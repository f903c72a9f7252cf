//! The records to resolve, held column by column as dictionary codes: equal standardised values get
//! equal codes, so exact agreement, blocking keys and term frequencies are integer work, and a
//! million records with eight compared columns take a few tens of megabytes.

use std::collections::HashMap;

use crate::spec::{Kind, Settings};
use crate::standardise;

/// The code of a missing value.
pub const NULL: u32 = u32::MAX;

/// One compared column: a code per record and the distinct standardised values.
#[derive(Debug, Clone, Default)]
pub struct Column {
    pub codes: Vec<u32>,
    pub values: Vec<Box<str>>,
    /// How many records hold each value.
    pub counts: Vec<u32>,
    /// Records with a value.
    pub non_null: u32,
    /// For date columns: year, month and day of each value.
    pub dates: Vec<(i32, u32, u32)>,
    index: HashMap<Box<str>, u32>,
}

impl Column {
    fn push(&mut self, value: Option<String>, kind: Kind) {
        let Some(value) = value else {
            self.codes.push(NULL);
            return;
        };
        let code = match self.index.get(value.as_str()) {
            Some(c) => *c,
            None => {
                let c = u32::try_from(self.values.len()).unwrap_or(NULL - 1);
                if kind == Kind::Date {
                    self.dates
                        .push(standardise::date(&value).unwrap_or((0, 0, 0)));
                }
                let value: Box<str> = value.into();
                self.values.push(value.clone());
                self.counts.push(0);
                self.index.insert(value, c);
                c
            }
        };
        if let Some(n) = self.counts.get_mut(code as usize) {
            *n += 1;
        }
        self.non_null += 1;
        self.codes.push(code);
    }

    /// The standardised value of a record.
    pub fn value(&self, record: usize) -> Option<&str> {
        let code = *self.codes.get(record)?;
        self.values.get(code as usize).map(|v| &**v)
    }

    /// The share of records holding this value among records with one.
    pub fn frequency(&self, code: u32) -> f64 {
        let n = self.counts.get(code as usize).copied().unwrap_or(0);
        f64::from(n.max(1)) / f64::from(self.non_null.max(1))
    }
}

/// Records with their ids, sources and compared columns (in the order of the comparisons).
#[derive(Debug, Clone, Default)]
pub struct Records {
    pub ids: Vec<String>,
    /// Source of each record, as an index into `source_names`.
    pub sources: Vec<u16>,
    pub source_names: Vec<String>,
    pub columns: Vec<Column>,
    kinds: Vec<Kind>,
    country: String,
}

impl Records {
    /// An empty set for the comparisons of `settings`.
    pub fn new(settings: &Settings) -> Self {
        Self {
            columns: vec![Column::default(); settings.comparisons.len()],
            kinds: settings.comparisons.iter().map(|c| c.kind).collect(),
            country: settings.default_country_code.clone(),
            ..Self::default()
        }
    }

    /// Adds a record with raw values in the order of the comparisons; they are standardised here.
    pub fn push(&mut self, id: &str, source: &str, raw: &[Option<&str>]) {
        let source = match self.source_names.iter().position(|s| s == source) {
            Some(i) => i,
            None => {
                self.source_names.push(source.to_string());
                self.source_names.len() - 1
            }
        };
        self.ids.push(id.to_string());
        self.sources.push(u16::try_from(source).unwrap_or(u16::MAX));
        for (i, column) in self.columns.iter_mut().enumerate() {
            let kind = self.kinds[i];
            let value = raw
                .get(i)
                .copied()
                .flatten()
                .and_then(|v| standardise::standardise(kind, v, &self.country));
            column.push(value, kind);
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}
