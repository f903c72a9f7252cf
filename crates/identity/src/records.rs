//! The records to resolve, held column by column as dictionary codes: equal standardised values get
//! equal codes, so exact agreement, blocking keys and term frequencies are integer work, and a
//! million records with eight compared columns take a few tens of megabytes.

use std::collections::HashSet;
use std::hash::BuildHasher;

use sha2::{Digest, Sha256};

use crate::spec::{Kind, Settings};
use crate::standardise;

/// The code of a missing value.
pub const NULL: u32 = u32::MAX;

/// Strings held end to end in one buffer, each found by where it ends: a record id or a distinct
/// value costs its bytes and four more, where a `String` each would cost a heap allocation and a
/// 24-byte handle (at ten million persons, twenty-nine million ids and tens of millions of values).
///
/// An end is held as its low [`END_BITS`] bits; the rare strings past each multiple of
/// 2^[`END_BITS`] bytes are found by `wraps`, so a buffer of any size works while each string
/// costs four bytes, not the eight of a 64-bit end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Strings {
    bytes: String,
    /// The low [`END_BITS`] bits of where each string ends.
    ends: Vec<u32>,
    /// The positions where the ends pass each further multiple of 2^[`END_BITS`]: the high bits of
    /// string `i`'s end are the number of positions here at or before `i`.
    wraps: Vec<usize>,
}

/// The bits of a string's end held per string: 32, and 8 in the tests, so that every test's
/// strings pass many multiples and the high bits are exercised without gigabytes of text.
const END_BITS: u32 = if cfg!(test) { 8 } else { 32 };

impl Strings {
    /// Adds `value` at the end.
    pub fn push(&mut self, value: &str) {
        self.bytes.push_str(value);
        let end = self.bytes.len();
        let high = end >> END_BITS;
        while self.wraps.len() < high {
            self.wraps.push(self.ends.len());
        }
        let low = end & ((1usize << END_BITS) - 1);
        self.ends.push(u32::try_from(low).unwrap_or(u32::MAX));
    }

    /// Where string `i` ends in the buffer.
    #[inline]
    fn end(&self, i: usize) -> Option<usize> {
        let low = *self.ends.get(i)? as usize;
        if self.wraps.is_empty() {
            return Some(low);
        }
        let high = self.wraps.partition_point(|w| *w <= i);
        Some((high << END_BITS) | low)
    }

    /// The string at `i`.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = self.end(i)?;
        let start = match i.checked_sub(1) {
            Some(before) => self.end(before)?,
            None => 0,
        };
        self.bytes.get(start..end)
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Every string in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i).unwrap_or(""))
    }
}

impl Strings {
    /// Writes the strings to a new unnamed temporary file in `dir`: the counts of ends, wraps and
    /// bytes, then each (little-endian).
    fn write_to(&self, dir: &std::path::Path) -> std::io::Result<std::fs::File> {
        use std::io::Write;
        let file = tempfile::tempfile_in(dir)?;
        let mut out = std::io::BufWriter::new(&file);
        for n in [self.ends.len(), self.wraps.len(), self.bytes.len()] {
            out.write_all(&(n as u64).to_le_bytes())?;
        }
        crate::compared::write_le(&mut out, &self.ends, u32::to_le_bytes)?;
        crate::compared::write_le(&mut out, &self.wraps, |w| (w as u64).to_le_bytes())?;
        out.write_all(self.bytes.as_bytes())?;
        out.flush()?;
        drop(out);
        Ok(file)
    }

    /// The strings [`Strings::write_to`] wrote to `file`.
    fn read_from(mut file: std::fs::File) -> std::io::Result<Strings> {
        use std::io::{Read, Seek};
        file.seek(std::io::SeekFrom::Start(0))?;
        let mut input = std::io::BufReader::new(file);
        let mut word = [0u8; 8];
        let mut count = || -> std::io::Result<usize> {
            input.read_exact(&mut word)?;
            usize::try_from(u64::from_le_bytes(word))
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        };
        let (ends, wraps, bytes) = (count()?, count()?, count()?);
        let mut out = Strings {
            bytes: String::new(),
            ends: Vec::with_capacity(ends),
            wraps: Vec::with_capacity(wraps),
        };
        let mut chunk = vec![0u8; 4 << 16];
        let mut left = ends;
        while left > 0 {
            let n = left.min(1 << 16);
            input.read_exact(&mut chunk[..4 * n])?;
            out.ends.extend(
                chunk[..4 * n]
                    .chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            left -= n;
        }
        for _ in 0..wraps {
            input.read_exact(&mut word)?;
            out.wraps.push(
                usize::try_from(u64::from_le_bytes(word))
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
            );
        }
        let mut text = vec![0u8; bytes];
        input.read_exact(&mut text)?;
        out.bytes = String::from_utf8(text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        Ok(out)
    }
}

impl<S: AsRef<str>> FromIterator<S> for Strings {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut out = Self::default();
        for s in iter {
            out.push(s.as_ref());
        }
        out
    }
}

/// Finds a string's position in a [`Strings`] by its hash: the table holds four bytes a string
/// (and its slack), not a second copy of the strings. At ten million persons, 29 million record
/// ids cost 320 MB here where a `HashMap<&str, u32>` took 1.6 GB.
#[derive(Debug, Clone, Default)]
pub struct StringIndex {
    table: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl StringIndex {
    /// Every string of `strings` by its position; a string held twice is found at its last.
    pub fn of(strings: &Strings) -> Self {
        let mut index = StringIndex::default();
        index.table.reserve(strings.len(), |_| 0);
        for (i, value) in strings.iter().enumerate() {
            let position = u32::try_from(i).unwrap_or(NULL - 1);
            let hash = index.hasher.hash_one(value);
            let hasher = &index.hasher;
            match index
                .table
                .find_mut(hash, |p| strings.get(*p as usize) == Some(value))
            {
                Some(held) => *held = position,
                None => {
                    index.table.insert_unique(hash, position, |p| {
                        hasher.hash_one(strings.get(*p as usize).unwrap_or(""))
                    });
                }
            }
        }
        index
    }

    /// The position of `value` in `strings` (those this index was built from or grew with).
    pub fn get(&self, strings: &Strings, value: &str) -> Option<u32> {
        self.table
            .find(self.hasher.hash_one(value), |p| {
                strings.get(*p as usize) == Some(value)
            })
            .copied()
    }

    /// The position of `value` in `strings`, pushed onto them first when absent (then `true`).
    pub fn intern(&mut self, strings: &mut Strings, value: &str) -> (u32, bool) {
        self.build_when_empty(strings);
        let hash = self.hasher.hash_one(value);
        if let Some(p) = self
            .table
            .find(hash, |p| strings.get(*p as usize) == Some(value))
        {
            return (*p, false);
        }
        (self.append(strings, value, hash), true)
    }

    /// Pushes `value` onto `strings` and indexes it, held already or not (a value held twice is
    /// then found at either position).
    pub fn push(&mut self, strings: &mut Strings, value: &str) {
        self.build_when_empty(strings);
        let hash = self.hasher.hash_one(value);
        self.append(strings, value, hash);
    }

    /// Builds the table from `strings` when it was cleared (or never built) while they grew.
    fn build_when_empty(&mut self, strings: &Strings) {
        if self.table.is_empty() && !strings.is_empty() {
            *self = StringIndex::of(strings);
        }
    }

    /// Pushes `value` (of hash `hash`) onto `strings` and indexes it at its position.
    fn append(&mut self, strings: &mut Strings, value: &str, hash: u64) -> u32 {
        let position = u32::try_from(strings.len()).unwrap_or(NULL - 1);
        strings.push(value);
        let (held, hasher) = (&*strings, &self.hasher);
        self.table.insert_unique(hash, position, |p| {
            hasher.hash_one(held.get(*p as usize).unwrap_or(""))
        });
        position
    }

    /// The table's room, in strings (0 once [`StringIndex::clear`] freed it).
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Frees the table; [`StringIndex::intern`] builds it again when next called.
    pub fn clear(&mut self) {
        self.table = hashbrown::HashTable::new();
    }
}

/// One compared column: a code per record and the distinct standardised values.
#[derive(Debug, Clone, Default)]
pub struct Column {
    pub codes: Vec<u32>,
    pub values: Strings,
    /// How many records hold each value.
    pub counts: Vec<u32>,
    /// Records with a value.
    pub non_null: u32,
    /// For date columns: year, month and day of each value; for year ranges: the first year, the
    /// last year and 0.
    pub dates: Vec<(i32, u32, u32)>,
    /// For grouped phone and email columns, once [`Records::mark_shared_values`] has run: whether
    /// each value is held by records of people with different first names (a family's landline or
    /// email) rather than by one person's records. Empty: not known, every value counts as shared.
    pub shared: Vec<bool>,
    /// The code of each value, found by the value's hash and compared against `values`: the table
    /// holds codes only, not a second copy of every value.
    index: StringIndex,
}

impl Column {
    fn push(&mut self, value: Option<String>, kind: Kind) {
        let Some(value) = value else {
            self.codes.push(NULL);
            return;
        };
        let (code, new) = self.index.intern(&mut self.values, &value);
        if new {
            self.counts.push(0);
            if kind == Kind::Date {
                self.dates
                    .push(standardise::date(&value).unwrap_or((0, 0, 0)));
            } else if kind == Kind::YearRange {
                let (low, high) = standardise::year_range(&value).unwrap_or((0, 0));
                self.dates.push((low, u32::try_from(high).unwrap_or(0), 0));
            }
        }
        if let Some(n) = self.counts.get_mut(code as usize) {
            *n += 1;
        }
        self.non_null += 1;
        self.codes.push(code);
    }

    /// The standardised value of a record.
    pub fn value(&self, record: usize) -> Option<&str> {
        let code = *self.codes.get(record)?;
        self.values.get(code as usize)
    }

    /// Makes the values of `codes` missing on every record that holds them.
    fn set_aside(&mut self, codes: &HashSet<u32>) {
        for code in &mut self.codes {
            if codes.contains(code) {
                *code = NULL;
            }
        }
        for &c in codes {
            if let Some(n) = self.counts.get_mut(c as usize) {
                self.non_null -= *n;
                *n = 0;
            }
        }
    }

    /// Whether a value is known to be one person's: [`Records::mark_shared_values`] found no two
    /// records holding it whose first names differ.
    pub fn is_personal(&self, code: u32) -> bool {
        self.shared.get(code as usize).is_some_and(|shared| !shared)
    }

    /// The share of records holding this value among records with one.
    pub fn frequency(&self, code: u32) -> f64 {
        let n = self.counts.get(code as usize).copied().unwrap_or(0);
        f64::from(n.max(1)) / f64::from(self.non_null.max(1))
    }
}

/// A value held by an implausible number of records (`0000000000`, `noemail@example.com`, the
/// shop's own phone number, `1900-01-01`), treated as missing for matching. The report never shows
/// the value itself: a fingerprint and a masked form.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Placeholder {
    pub column: String,
    /// Records that held it.
    pub records: u64,
    /// The first 8 hex digits of the SHA-256 of the standardised value.
    pub fingerprint: String,
    /// The first and last character, the rest starred: `+4*********0`.
    pub masked: String,
}

/// Records with their ids, sources and compared columns (in the order of the comparisons).
#[derive(Debug, Clone, Default)]
pub struct Records {
    pub ids: Strings,
    /// Source of each record, as an index into `source_names`.
    pub sources: Vec<u16>,
    pub source_names: Vec<String>,
    pub columns: Vec<Column>,
    /// Values set aside as placeholders ([`Records::set_aside_placeholders`]), most held first.
    pub placeholders: Vec<Placeholder>,
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
        self.ids.push(id);
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

    /// Adds `ids.len()` records, as [`Records::push`] does one by one: `ids` and `sources` per
    /// record, and `value(c, r)` the raw value of comparison `c` in record `r`. The columns are
    /// standardised and coded each on its own thread (a column's codes depend only on its own
    /// values, in record order, so they are those of pushing record by record).
    pub fn push_many<'v>(
        &mut self,
        ids: &[&str],
        sources: &[&str],
        value: impl Fn(usize, usize) -> Option<&'v str> + Sync,
    ) {
        for (id, source) in ids.iter().zip(sources) {
            let source = match self.source_names.iter().position(|s| s == source) {
                Some(i) => i,
                None => {
                    self.source_names.push((*source).to_string());
                    self.source_names.len() - 1
                }
            };
            self.ids.push(id);
            self.sources.push(u16::try_from(source).unwrap_or(u16::MAX));
        }
        let (country, kinds, value) = (&self.country, &self.kinds, &value);
        std::thread::scope(|scope| {
            for (c, column) in self.columns.iter_mut().enumerate() {
                let kind = kinds.get(c).copied().unwrap_or(Kind::Exact);
                scope.spawn(move || {
                    for r in 0..ids.len() {
                        let v =
                            value(c, r).and_then(|v| standardise::standardise(kind, v, country));
                        column.push(v, kind);
                    }
                });
            }
        });
    }

    /// Puts the records in the order of their ids (byte order, as SQL's `order by` on text),
    /// numbering each column's values and the sources again in order of first appearance: the
    /// records are then exactly those pushed in id order, whatever order they were pushed in (so
    /// that an input read as it comes, without a sort holding all of it, resolves the same). Fails
    /// with the id when one is held twice.
    pub fn sort_by_id(&mut self) -> Result<(), String> {
        let mut order: Vec<u32> = (0..u32::try_from(self.len()).unwrap_or(NULL)).collect();
        {
            let id = |r: u32| self.ids.get(r as usize).unwrap_or("");
            order.sort_unstable_by(|x, y| id(*x).cmp(id(*y)));
            if let Some(pair) = order.windows(2).find(|w| id(w[0]) == id(w[1])) {
                return Err(id(pair[0]).to_string());
            }
        }
        if order.iter().enumerate().all(|(i, r)| i == *r as usize) {
            return Ok(());
        }
        self.ids = order
            .iter()
            .map(|r| self.ids.get(*r as usize).unwrap_or(""))
            .collect();
        let (sources, names) = first_appearance(
            order
                .iter()
                .map(|r| u32::from(self.sources.get(*r as usize).copied().unwrap_or(0))),
            self.source_names.len(),
        );
        self.sources = sources
            .into_iter()
            .map(|s| u16::try_from(s).unwrap_or(u16::MAX))
            .collect();
        self.source_names = names
            .iter()
            .map(|old| {
                self.source_names
                    .get(*old as usize)
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        for column in &mut self.columns {
            let (codes, values) = first_appearance(
                order
                    .iter()
                    .map(|r| column.codes.get(*r as usize).copied().unwrap_or(NULL)),
                column.values.len(),
            );
            column.codes = codes;
            column.values = values
                .iter()
                .map(|old| column.values.get(*old as usize).unwrap_or(""))
                .collect();
            column.counts = values
                .iter()
                .map(|old| column.counts.get(*old as usize).copied().unwrap_or(0))
                .collect();
            if !column.dates.is_empty() {
                column.dates = values
                    .iter()
                    .map(|old| {
                        column
                            .dates
                            .get(*old as usize)
                            .copied()
                            .unwrap_or((0, 0, 0))
                    })
                    .collect();
            }
            if !column.shared.is_empty() {
                column.shared = values
                    .iter()
                    .map(|old| column.shared.get(*old as usize).copied().unwrap_or(true))
                    .collect();
            }
            // Built on the old numbering: built again from the values when next needed.
            column.index.clear();
        }
        Ok(())
    }

    /// Frees what only loading needs (the lookup from each value to its code, a second copy of
    /// every distinct value: at a million persons hundreds of megabytes). A later
    /// [`Records::push`] rebuilds the lookup first, so a value already held keeps its code.
    pub fn finish_loading(&mut self) {
        for column in &mut self.columns {
            column.index.clear();
        }
    }

    /// Treats as missing, in the identifier columns (kinds phone, email, date and exact), every
    /// value held by more than `min_records` records and by more than twenty times as many records
    /// as the column's values on average: such a value is a placeholder or a shared system value,
    /// not evidence about a person. Names, addresses and postcodes are left alone (many people share
    /// them; term frequencies weigh them). `min_records` 0 turns this off. Call it once, after the
    /// last [`Records::push`].
    pub fn set_aside_placeholders(&mut self, settings: &Settings) {
        let min = settings.placeholder_min_records;
        if min == 0 {
            return;
        }
        for (c, comparison) in settings.comparisons.iter().enumerate() {
            if !matches!(
                comparison.kind,
                Kind::Phone | Kind::Email | Kind::Date | Kind::Exact
            ) {
                continue;
            }
            let Some(column) = self.columns.get_mut(c) else {
                continue;
            };
            let distinct = column.counts.iter().filter(|n| **n > 0).count().max(1);
            let average = f64::from(column.non_null) / distinct as f64;
            let limit = f64::from(min).max(20.0 * average);
            let mut found: Vec<(u32, u32)> = column
                .counts
                .iter()
                .enumerate()
                .filter(|(_, n)| f64::from(**n) > limit)
                .map(|(code, n)| (u32::try_from(code).unwrap_or(NULL), *n))
                .collect();
            if found.is_empty() {
                continue;
            }
            found.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            for &(code, n) in &found {
                let value = column.values.get(code as usize).unwrap_or("");
                self.placeholders.push(Placeholder {
                    column: comparison.column.clone(),
                    records: u64::from(n),
                    fingerprint: hex::encode(&Sha256::digest(value.as_bytes())[..4]),
                    masked: mask(value),
                });
            }
            column.set_aside(&found.iter().map(|x| x.0).collect());
        }
    }

    /// Marks, in every grouped phone and email column, which values are shared by several people
    /// (held by two records whose first names disagree at the forename's last level, as a family's
    /// landline or email is) and which are one person's (a mobile, a personal email). Agreement on a
    /// person's own value is evidence about the person and counts outside its group (see
    /// [`crate::Parameters::weights`]). Without a forename comparison nothing is marked. Call it
    /// once, after [`Records::set_aside_placeholders`].
    pub fn mark_shared_values(&mut self, settings: &Settings) {
        let Some(holders) = Holders::new(self, settings) else {
            return;
        };
        let mut marks = Vec::new();
        for (c, comparison) in settings.comparisons.iter().enumerate() {
            if comparison.group.is_none() || !matches!(comparison.kind, Kind::Phone | Kind::Email) {
                continue;
            }
            let Some(column) = self.columns.get(c) else {
                continue;
            };
            let mut held: Vec<Vec<usize>> = vec![Vec::new(); column.values.len()];
            for (r, code) in column.codes.iter().enumerate() {
                if let Some(h) = held.get_mut(*code as usize) {
                    holders.add(h, r);
                }
            }
            marks.push((c, held.iter().map(|h| holders.several_people(h)).collect()));
        }
        for (c, shared) in marks {
            if let Some(column) = self.columns.get_mut(c) {
                column.shared = shared;
            }
        }
    }

    /// How many records there are (counted by their sources: their ids may be set aside).
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Writes the record ids to an unnamed temporary file in `dir` and lets them go (`ids` is
    /// empty until [`Records::take_ids_back`]): [`crate::link_and_cluster`] never reads them, and
    /// at ten million persons they are 540 MB beside the candidate pairs.
    pub fn set_ids_aside(&mut self, dir: &std::path::Path) -> crate::Result<IdsAside> {
        let failed = crate::Error::spill("the record ids", Some(dir));
        let ids = std::mem::take(&mut self.ids);
        let file = ids.write_to(dir).map_err(failed)?;
        Ok(IdsAside {
            file,
            dir: dir.to_path_buf(),
        })
    }

    /// Reads back the ids [`Records::set_ids_aside`] wrote.
    pub fn take_ids_back(&mut self, aside: IdsAside) -> crate::Result<()> {
        let failed = crate::Error::spill("the record ids", Some(&aside.dir));
        let ids = Strings::read_from(aside.file).map_err(&failed)?;
        if ids.len() != self.len() {
            return Err(failed(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} ids read back for {} records", ids.len(), self.len()),
            )));
        }
        self.ids = ids;
        Ok(())
    }
}

/// Record ids on disk ([`Records::set_ids_aside`]); the file goes with the process however it
/// ends.
#[derive(Debug)]
pub struct IdsAside {
    file: std::fs::File,
    dir: std::path::PathBuf,
}

/// Whether the records holding one value are one person or several: several when two of them
/// have first names that disagree at the forename comparison's last level (Ann and Bob; not Ann
/// and Anne, nor a record without a first name), or when more than [`Holders::LOOK_AT`] records
/// with a first name hold it. The one rule behind [`Records::mark_shared_values`] and the
/// `is_shared` of `int_customer_contacts`.
pub(crate) struct Holders<'a> {
    names: &'a Column,
    forename: &'a crate::spec::Comparison,
}

impl<'a> Holders<'a> {
    /// Holders with a first name looked at per value.
    const LOOK_AT: usize = 16;

    /// The rule for `records`; `None` without a forename comparison.
    pub(crate) fn new(records: &'a Records, settings: &'a Settings) -> Option<Self> {
        let (f, forename) = settings
            .comparisons
            .iter()
            .enumerate()
            .find(|(_, c)| c.kind == Kind::Forename)?;
        Some(Self {
            names: records.columns.get(f)?,
            forename,
        })
    }

    /// Adds record `r` to one value's holders (only records with a first name, and no more than
    /// needed to decide).
    pub(crate) fn add(&self, holders: &mut Vec<usize>, r: usize) {
        if holders.len() <= Self::LOOK_AT && self.names.codes.get(r).is_some_and(|n| *n != NULL) {
            holders.push(r);
        }
    }

    /// Whether the holders collected with [`Holders::add`] are several people.
    pub(crate) fn several_people(&self, holders: &[usize]) -> bool {
        let differ = self.forename.level_count() - 1;
        holders.len() > Self::LOOK_AT
            || holders.iter().enumerate().any(|(i, &a)| {
                holders[i + 1..].iter().any(|&b| {
                    usize::from(crate::compare::level(self.forename, self.names, a, b)) == differ
                })
            })
    }
}

/// `codes` (of `distinct` values; [`NULL`] for none) numbered again in order of first appearance:
/// the new codes, and for each new code the old one.
fn first_appearance(codes: impl Iterator<Item = u32>, distinct: usize) -> (Vec<u32>, Vec<u32>) {
    let mut new_of = vec![NULL; distinct];
    let mut old_of = Vec::with_capacity(distinct);
    let codes = codes
        .map(|code| match new_of.get_mut(code as usize) {
            None => NULL,
            Some(new) => {
                if *new == NULL {
                    *new = u32::try_from(old_of.len()).unwrap_or(NULL);
                    old_of.push(code);
                }
                *new
            }
        })
        .collect();
    (codes, old_of)
}

/// The first and last character of a value with the rest starred.
pub(crate) fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    match chars.len() {
        0 => String::new(),
        1 | 2 => "*".repeat(chars.len()),
        n => format!("{}{}{}", chars[0], "*".repeat(n - 2), chars[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::IdentitySpec;

    #[test]
    fn records_pushed_in_any_order_and_sorted_by_id_are_those_pushed_in_id_order() {
        use rand::{SeedableRng, seq::SliceRandom};
        let Ok(settings) = IdentitySpec::default().validate() else {
            panic!("the default spec is valid");
        };
        let (firsts, lasts) = (["ann", "bob", "cy", "dee"], ["lee", "stone", "hill"]);
        // 200 records of three sources, with repeated values, missing ones and dates.
        let rows: Vec<(String, &str, Vec<Option<String>>)> = (0..200usize)
            .map(|i| {
                let source = ["crm", "web", "vendor"][i * 7 % 3];
                let values = vec![
                    Some(firsts[i % 4].to_string()),
                    (i % 5 != 0).then(|| lasts[i % 3].to_string()),
                    (i % 3 == 0)
                        .then(|| format!("19{:02}-0{}-1{}", 40 + i % 50, 1 + i % 9, i % 10)),
                    Some(format!("{} high street", i % 17)),
                    Some(format!("ls{} 4ab", i % 6)),
                    Some("leeds".to_string()),
                    (i % 4 == 1).then(|| format!("07700 900{:03}", i % 40)),
                    (i % 2 == 0).then(|| format!("p{}@example.com", i % 60)),
                ];
                (
                    format!("{source}:{:05}", (i * 7919) % 100_000),
                    source,
                    values,
                )
            })
            .collect();
        let push_all = |rows: &[&(String, &str, Vec<Option<String>>)]| {
            let mut records = Records::new(&settings);
            for (id, source, values) in rows {
                let raw: Vec<Option<&str>> = values.iter().map(|v| v.as_deref()).collect();
                records.push(id, source, &raw);
            }
            records
        };
        let mut sorted: Vec<&(String, &str, Vec<Option<String>>)> = rows.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let expected = push_all(&sorted);
        let mut shuffled = sorted.clone();
        shuffled.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
        let mut records = push_all(&shuffled);
        assert_ne!(records.ids, expected.ids);
        assert_eq!(records.sort_by_id(), Ok(()));
        assert_eq!(records.ids, expected.ids);
        assert_eq!(records.sources, expected.sources);
        assert_eq!(records.source_names, expected.source_names);
        for (c, (got, want)) in records.columns.iter().zip(&expected.columns).enumerate() {
            assert_eq!(got.codes, want.codes, "column {c}");
            assert_eq!(got.values, want.values, "column {c}");
            assert_eq!(got.counts, want.counts, "column {c}");
            assert_eq!(got.dates, want.dates, "column {c}");
            assert_eq!(got.non_null, want.non_null, "column {c}");
        }
        // A value pushed after sorting finds the code its value holds.
        let raw: Vec<Option<&str>> = sorted[0].2.iter().map(|v| v.as_deref()).collect();
        records.push("zzz:1", "crm", &raw);
        assert_eq!(
            records.columns[0].codes.last(),
            expected.columns[0].codes.first()
        );
        // An id held twice is named.
        let mut twice = push_all(&[sorted[3], sorted[1], sorted[3]]);
        assert_eq!(twice.sort_by_id(), Err(sorted[3].0.clone()));
    }

    #[test]
    fn a_string_index_finds_each_string_where_it_is_held() {
        let mut ids: Strings = ["crm:2", "web:7", "crm:2", "pos:1"].iter().collect();
        let index = StringIndex::of(&ids);
        // Held twice: found at its last position, as a map built by inserting in order would.
        assert_eq!(index.get(&ids, "crm:2"), Some(2));
        assert_eq!(index.get(&ids, "web:7"), Some(1));
        assert_eq!(index.get(&ids, "pos:"), None);
        let mut index = StringIndex::default();
        // Built from the strings when first used, then grown with them.
        assert_eq!(index.intern(&mut ids, "web:7"), (1, false));
        assert_eq!(index.intern(&mut ids, "web:8"), (4, true));
        assert_eq!(index.intern(&mut ids, "web:8"), (4, false));
        index.push(&mut ids, "web:9");
        assert_eq!((ids.len(), index.get(&ids, "web:9")), (6, Some(5)));
        index.clear();
        assert_eq!(index.capacity(), 0);
        assert_eq!(index.intern(&mut ids, "web:9"), (5, false));
        assert_eq!(ids.get(4), Some("web:8"));
    }

    #[test]
    fn strings_give_back_what_was_pushed_empty_and_accented_ones_too() {
        let held = ["crm:1", "", "José Müller", "web:77", ""];
        let strings: Strings = held.iter().collect();
        assert_eq!(strings.len(), 5);
        for (i, s) in held.iter().enumerate() {
            assert_eq!(strings.get(i), Some(*s), "string {i}");
        }
        assert_eq!(strings.get(5), None);
        assert_eq!(strings.iter().collect::<Vec<_>>(), held);
        assert!(Strings::default().is_empty());
        assert_eq!(Strings::default().get(0), None);
    }

    #[test]
    fn strings_past_many_multiples_of_the_held_end_bits_are_found_whole() {
        // In tests an end keeps 8 bits: these strings pass 256 bytes again and again, end on
        // multiples exactly, and one is longer than 256 bytes by itself (two multiples at once).
        let long = "x".repeat(600);
        let mut held: Vec<String> = Vec::new();
        for i in 0..400 {
            held.push(match i % 7 {
                0 => String::new(),
                3 => "é".repeat(i % 11),
                5 if i == 250 => long.clone(),
                _ => format!("crm:{i:05}"),
            });
        }
        // One string ending exactly on a multiple of 256.
        let so_far: usize = held.iter().map(String::len).sum();
        held.push("y".repeat(256 - so_far % 256));
        held.push("after".into());
        let strings: Strings = held.iter().collect();
        assert_eq!(strings.len(), held.len());
        for (i, s) in held.iter().enumerate() {
            assert_eq!(strings.get(i), Some(s.as_str()), "string {i}");
        }
        assert_eq!(strings.get(held.len()), None);
        let total: usize = held.iter().map(String::len).sum();
        assert_eq!(
            strings.wraps.len(),
            total / 256,
            "every multiple passed is a wrap"
        );
        assert!(strings.wraps.len() > 10, "the test passes many multiples");
    }

    #[test]
    fn records_pushed_many_at_once_are_those_pushed_one_by_one() {
        let Ok(settings) = IdentitySpec::default().validate() else {
            panic!("default settings")
        };
        // first, last, birth, street, postcode, city, phone, email
        let rows: [[Option<&str>; 8]; 4] = [
            [
                Some("Ann"),
                Some("Lee"),
                Some("1980-03-04"),
                Some("1 High Street"),
                Some("LS1 4AB"),
                Some("Leeds"),
                Some("07700 900123"),
                Some("ann@example.com"),
            ],
            [
                Some("ANN"),
                Some("LEE"),
                None,
                Some("1 High St"),
                Some("ls1 4ab"),
                None,
                Some("+44 7700 900123"),
                None,
            ],
            [
                Some("Bob"),
                None,
                Some("1990-01-01"),
                None,
                Some("M1 1AA"),
                Some("Manchester"),
                None,
                Some("bob@example.org"),
            ],
            [
                Some("Ann"),
                Some("Stone"),
                Some("1980-03-04"),
                Some("9 Low Road"),
                Some("M1 1AA"),
                Some("Leeds"),
                None,
                Some("ann@example.com"),
            ],
        ];
        let mut one_by_one = Records::new(&settings);
        for (i, row) in rows.iter().enumerate() {
            one_by_one.push(
                &format!("r{i}"),
                if i % 2 == 0 { "crm" } else { "web" },
                row,
            );
        }
        let mut at_once = Records::new(&settings);
        let ids = ["r0", "r1", "r2", "r3"];
        at_once.push_many(&ids, &["crm", "web", "crm", "web"], |c, r| rows[r][c]);
        assert_eq!(at_once.ids, one_by_one.ids);
        assert_eq!(at_once.sources, one_by_one.sources);
        assert_eq!(at_once.source_names, one_by_one.source_names);
        for (x, y) in at_once.columns.iter().zip(&one_by_one.columns) {
            assert_eq!(
                (&x.codes, &x.values, &x.counts),
                (&y.codes, &y.values, &y.counts)
            );
            assert_eq!((x.non_null, &x.dates), (y.non_null, &y.dates));
        }
    }

    #[test]
    fn finishing_the_load_frees_the_value_lookup_and_keeps_every_code() {
        let Ok(settings) = IdentitySpec::default().validate() else {
            panic!("default settings")
        };
        let mut r = Records::new(&settings);
        for (i, name) in ["Ann", "Bob", "Ann"].iter().enumerate() {
            r.push(&format!("r{i}"), "s", &[Some(name), Some("Lee")]);
        }
        let codes = r.columns[0].codes.clone();
        r.finish_loading();
        assert!(r.columns.iter().all(|c| c.index.capacity() == 0));
        assert_eq!(r.columns[0].codes, codes);
        assert_eq!(codes[0], codes[2]);
        assert_eq!(r.columns[0].value(1), Some("robert"));
        assert_eq!(r.columns[0].counts[codes[0] as usize], 2);
        // Pushed after it, a value already held keeps its code.
        r.push("r3", "s", &[Some("Bob"), Some("Lee")]);
        assert_eq!(r.columns[0].codes[3], codes[1]);
        assert_eq!(r.columns[1].codes[3], r.columns[1].codes[0]);
    }

    #[test]
    fn a_value_held_by_too_many_records_is_set_aside_and_reported_masked() {
        let Ok(settings) = IdentitySpec::default().validate() else {
            panic!("default settings")
        };
        let mut r = Records::new(&settings);
        for i in 0..120 {
            // first, last, birth, street, postcode, city, phone, email
            let phone = if i < 60 {
                "0000000000".to_string()
            } else {
                format!("07700 9{i:05}")
            };
            let email = format!("p{i}@example.com");
            let birth = if i < 70 {
                "1900-01-01".to_string()
            } else {
                format!("1980-01-{:02}", i - 69)
            };
            r.push(
                &format!("r{i}"),
                "s",
                &[
                    Some("Ann"),
                    Some("Lee"),
                    Some(&birth),
                    None,
                    None,
                    None,
                    Some(&phone),
                    Some(&email),
                ],
            );
        }
        r.set_aside_placeholders(&settings);
        let phone = &r.columns[6];
        assert!(phone.codes[..60].iter().all(|c| *c == NULL));
        assert!(phone.codes[60..].iter().all(|c| *c != NULL));
        assert_eq!(phone.non_null, 60);
        // The placeholder birth date and phone; the first name all share is a name, kept.
        let columns: Vec<(&str, u64)> = r
            .placeholders
            .iter()
            .map(|p| (p.column.as_str(), p.records))
            .collect();
        assert_eq!(columns, vec![("birth_date", 70), ("phone", 60)]);
        assert!(r.columns[0].codes.iter().all(|c| *c != NULL));
        let shown = format!("{:?}", r.placeholders);
        assert!(
            !shown.contains("000000") && !shown.contains("1900") && shown.contains("+*******"),
            "{shown}"
        );
    }

    #[test]
    fn a_value_held_by_two_first_names_is_shared_and_one_persons_is_personal() {
        let Ok(settings) = IdentitySpec::default().validate() else {
            panic!("default settings")
        };
        let mut r = Records::new(&settings);
        // first, last, birth, street, postcode, city, phone, email
        let rows = [
            (Some("Ann"), "01632 960000", "ann@example.com"),
            (Some("Bob"), "01632 960000", "ann@example.com"),
            (Some("Ann"), "07700 900001", "a.lee@example.com"),
            (Some("Anne"), "07700 900001", "a.lee@example.com"),
            (None, "07700 900001", "a.lee@example.com"),
        ];
        for (i, (first, phone, email)) in rows.iter().enumerate() {
            r.push(
                &format!("r{i}"),
                "s",
                &[
                    *first,
                    Some("Lee"),
                    None,
                    None,
                    None,
                    None,
                    Some(phone),
                    Some(email),
                ],
            );
        }
        // Before marking nothing is known to be personal.
        assert!(!r.columns[6].is_personal(r.columns[6].codes[2]));
        r.mark_shared_values(&settings);
        for c in [6, 7] {
            let column = &r.columns[c];
            assert!(
                !column.is_personal(column.codes[0]),
                "column {c}: the family's value"
            );
            assert!(
                column.is_personal(column.codes[2]),
                "column {c}: Ann's own (Anne is her)"
            );
        }
    }

    #[test]
    fn a_shared_family_landline_is_not_a_placeholder() {
        let Ok(settings) = IdentitySpec::default().validate() else {
            panic!("default settings")
        };
        let mut r = Records::new(&settings);
        for i in 0..200 {
            let phone = if i < 18 {
                "01632 960000".to_string()
            } else {
                format!("07700 9{i:05}")
            };
            r.push(
                &format!("r{i}"),
                "s",
                &[None, None, None, None, None, None, Some(&phone), None],
            );
        }
        r.set_aside_placeholders(&settings);
        assert!(r.placeholders.is_empty());
    }
}
