//! Mainframe records described by a COBOL copybook: the layout, the EBCDIC code pages and the decoders
//! for zoned, packed (COMP-3) and binary numbers. The subset follows what Cobrix reads: PIC X / A / 9 /
//! S / V, DISPLAY, COMP-3, COMP/BINARY, SIGN LEADING/TRAILING [SEPARATE], OCCURS (fixed), FILLER,
//! REDEFINES (chosen per record by a record-type field), fixed-length and RDW variable-length records.

mod decode;
mod ebcdic;
mod parse;

use std::collections::BTreeMap;
use std::path::Path;

pub use decode::decode_field;
pub use ebcdic::CodePage;
pub use parse::{Picture, SignPosition, Usage};

use crate::spec::FieldSpec;

/// One alternative of a REDEFINES set: (set, alternative within the set).
pub type Alternative = (usize, usize);

/// How records follow each other in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    /// Every record is as long as the copybook's longest record.
    Fixed,
    /// Each record starts with a 4-byte record descriptor word: a big-endian length (including the
    /// four bytes) and two zero bytes.
    Rdw,
}

/// One elementary field at its place in the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaidOutField {
    /// COBOL name with occurrence indexes, as `PHONE-NO(2)`.
    pub cobol_name: String,
    /// Column name: lower snake case with occurrence suffixes, as `phone_no_2`.
    pub column: String,
    pub offset: usize,
    pub length: usize,
    pub picture: Picture,
    pub usage: Usage,
    pub sign: SignPosition,
    /// For each REDEFINES set the field sits in: (set, alternative).
    pub alternatives: Vec<(usize, usize)>,
    /// Copybook line of the field.
    pub line: usize,
}

/// A validated copybook source: the layout and how to read records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopybookPlan {
    pub code_page: CodePage,
    pub record_format: RecordFormat,
    /// Length of the longest record layout.
    pub record_length: usize,
    pub fields: Vec<LaidOutField>,
    /// Names of the alternatives of each REDEFINES set: set -> [alternative names].
    pub sets: Vec<Vec<String>>,
    /// The field holding the record type, and record-type value -> (set, alternative).
    pub selector: Option<(usize, BTreeMap<String, Alternative>)>,
}

struct Builder {
    fields: Vec<LaidOutField>,
    sets: Vec<Vec<String>>,
}

fn snake(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("f_{s}")
    } else {
        s
    }
}

impl Builder {
    /// Size in bytes of one occurrence of an item.
    fn size(item: &parse::Item) -> usize {
        match &item.picture {
            Some(p) => decode::storage_length(p, item.usage, item.sign),
            None => Self::children_size(&item.children),
        }
    }

    /// Size of a list of sibling items, where a REDEFINES overlays the item it names.
    fn children_size(children: &[parse::Item]) -> usize {
        let mut offset = 0usize;
        let mut end = 0usize;
        let mut starts: BTreeMap<&str, usize> = BTreeMap::new();
        for c in children {
            let start = match &c.redefines {
                Some(target) => starts.get(target.as_str()).copied().unwrap_or(offset),
                None => offset,
            };
            starts.insert(c.name.as_str(), start);
            let stop = start + Self::size(c) * c.occurs;
            if c.redefines.is_none() {
                offset = stop;
            }
            end = end.max(stop);
        }
        end
    }

    /// Lays out a list of siblings starting at `base`. `alts` is the REDEFINES context so far.
    fn lay_out(
        &mut self,
        children: &[parse::Item],
        base: usize,
        suffix: &str,
        alts: &[(usize, usize)],
    ) -> Result<(), String> {
        // REDEFINES sets among these siblings: the redefined item is alternative 0 of its set, each
        // item redefining it the next alternative.
        let mut member: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        for (i, c) in children.iter().enumerate() {
            let Some(target) = &c.redefines else { continue };
            let Some(t) = children[..i]
                .iter()
                .rposition(|x| x.name == *target && x.redefines.is_none())
            else {
                return Err(format!(
                    "line {}: {} REDEFINES {target}, which is not an earlier item at the same level",
                    c.line, c.name
                ));
            };
            let set = match member.get(&t) {
                Some(&(set, _)) => set,
                None => {
                    self.sets.push(vec![target.clone()]);
                    let set = self.sets.len() - 1;
                    member.insert(t, (set, 0));
                    set
                }
            };
            self.sets[set].push(c.name.clone());
            member.insert(i, (set, self.sets[set].len() - 1));
        }
        let mut offset = base;
        let mut starts: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, c) in children.iter().enumerate() {
            let mut my_alts = alts.to_vec();
            my_alts.extend(member.get(&i).copied());
            let start = match &c.redefines {
                Some(target) => starts.get(target.as_str()).copied().unwrap_or(offset),
                None => offset,
            };
            starts.insert(c.name.as_str(), start);
            let one = Self::size(c);
            for occ in 0..c.occurs {
                let s = if c.occurs > 1 {
                    if suffix.is_empty() {
                        format!("({})", occ + 1)
                    } else {
                        format!("{},{})", suffix.trim_end_matches(')'), occ + 1)
                    }
                } else {
                    suffix.to_string()
                };
                let at = start + occ * one;
                match &c.picture {
                    Some(_) if c.is_filler() => {}
                    Some(picture) => {
                        let column = format!(
                            "{}{}",
                            snake(&c.name),
                            s.trim_matches(|ch| ch == '(' || ch == ')')
                                .split(',')
                                .filter(|x| !x.is_empty())
                                .map(|x| format!("_{x}"))
                                .collect::<String>()
                        );
                        self.fields.push(LaidOutField {
                            cobol_name: format!("{}{s}", c.name),
                            column,
                            offset: at,
                            length: one,
                            picture: picture.clone(),
                            usage: c.usage,
                            sign: c.sign,
                            alternatives: my_alts.clone(),
                            line: c.line,
                        });
                    }
                    None => self.lay_out(&c.children, at, &s, &my_alts)?,
                }
            }
            if c.redefines.is_none() {
                offset = start + one * c.occurs;
            }
        }
        Ok(())
    }
}

impl CopybookPlan {
    /// Reads and lays out a copybook file. Returns the plan and the copybook text (for fingerprints),
    /// or every problem, each naming the copybook and line.
    pub fn load(
        path: &Path,
        code_page: Option<&str>,
        record_format: Option<&str>,
        record_type_field: Option<&str>,
        record_types: Option<&BTreeMap<String, String>>,
    ) -> Result<(Self, String), Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![format!("copybook '{}' cannot be read: {e}", path.display())])?;
        let plan = Self::from_text(
            &text,
            code_page,
            record_format,
            record_type_field,
            record_types,
        )
        .map_err(|problems| {
            problems
                .into_iter()
                .map(|p| format!("copybook '{}': {p}", path.display()))
                .collect::<Vec<_>>()
        })?;
        Ok((plan, text))
    }

    /// Lays out copybook text.
    pub fn from_text(
        text: &str,
        code_page: Option<&str>,
        record_format: Option<&str>,
        record_type_field: Option<&str>,
        record_types: Option<&BTreeMap<String, String>>,
    ) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let code_page = match code_page {
            None => CodePage::Cp037,
            Some(name) => CodePage::parse(name).unwrap_or_else(|| {
                problems.push(format!("code_page '{name}' is unknown (cp037, cp1047)"));
                CodePage::Cp037
            }),
        };
        let record_format = match record_format {
            None | Some("fixed" | "f" | "fb") => RecordFormat::Fixed,
            Some("rdw" | "v" | "vb" | "variable") => RecordFormat::Rdw,
            Some(other) => {
                problems.push(format!("record_format '{other}' is unknown (fixed, rdw)"));
                RecordFormat::Fixed
            }
        };
        let records = parse::parse(text).map_err(|e| vec![e.to_string()])?;
        // Several 01 records are alternatives of one set: whole-record REDEFINES.
        let mut builder = Builder {
            fields: Vec::new(),
            sets: Vec::new(),
        };
        let whole_record_set = (records.len() > 1).then(|| {
            builder
                .sets
                .push(records.iter().map(|r| r.name.clone()).collect());
            0usize
        });
        let mut record_length = 0;
        for (i, rec) in records.iter().enumerate() {
            let alts: Vec<(usize, usize)> = whole_record_set.map(|s| (s, i)).into_iter().collect();
            let one = [rec.clone()];
            let result = match &rec.picture {
                Some(_) => builder.lay_out(&one, 0, "", &alts),
                None => builder.lay_out(&rec.children, 0, "", &alts),
            };
            if let Err(p) = result {
                problems.push(p);
            }
            record_length = record_length.max(Builder::size(rec));
        }
        let mut seen = BTreeMap::new();
        for f in &builder.fields {
            if let Some(line) = seen.insert(f.column.clone(), f.line) {
                problems.push(format!(
                    "line {}: the field name {} is used twice (also line {line}); columns need distinct names",
                    f.line, f.cobol_name
                ));
            }
        }
        let selector = match (record_type_field, record_types) {
            (None, None) => None,
            (Some(field), Some(types)) => {
                let wanted = field.to_ascii_uppercase();
                let index = builder
                    .fields
                    .iter()
                    .position(|f| f.cobol_name == wanted || f.column == field);
                let mut map = BTreeMap::new();
                for (value, alt_name) in types {
                    let upper = alt_name.to_ascii_uppercase();
                    let found = builder.sets.iter().enumerate().find_map(|(s, names)| {
                        names.iter().position(|n| *n == upper).map(|a| (s, a))
                    });
                    match found {
                        Some(sa) => {
                            map.insert(value.clone(), sa);
                        }
                        None => problems.push(format!(
                            "record_types: '{alt_name}' is not a record or REDEFINES alternative of the copybook"
                        )),
                    }
                }
                match index {
                    Some(i) => Some((i, map)),
                    None => {
                        problems.push(format!(
                            "record_type_field '{field}' is not an elementary field of the copybook"
                        ));
                        None
                    }
                }
            }
            _ => {
                problems.push("record_type_field and record_types go together".into());
                None
            }
        };
        if record_length == 0 {
            problems.push("the copybook's record has no bytes".into());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            code_page,
            record_format,
            record_length,
            fields: builder.fields,
            sets: builder.sets,
            selector,
        })
    }

    /// The index of an elementary field, by COBOL name (`PHONE-NO(2)`) or column name (`phone_no_2`).
    pub fn field_index(&self, name: &str) -> Option<usize> {
        let upper = name.to_ascii_uppercase();
        self.fields
            .iter()
            .position(|f| f.cobol_name == upper || f.column == name)
    }

    /// The fields a source gets when it declares none: every elementary field, typed by its PIC.
    pub fn default_fields(&self) -> Vec<FieldSpec> {
        self.fields
            .iter()
            .map(|f| FieldSpec {
                name: f.column.clone(),
                ty: match f.picture {
                    Picture::Alphanumeric { .. } => "string".into(),
                    Picture::Numeric {
                        scale: 0, digits, ..
                    } if digits <= 18 => "int64".into(),
                    Picture::Numeric { digits, scale, .. } => format!("decimal({digits},{scale})"),
                },
                start: None,
                width: None,
                column: None,
                header: None,
                path: Some(f.cobol_name.clone()),
                format: None,
                unknown: Vec::new(),
                nullable: None,
                trim: None,
                true_values: None,
                false_values: None,
                pattern: None,
                allowed: None,
                min: None,
                max: None,
                max_length: None,
                allow_control_chars: None,
            })
            .collect()
    }

    /// Whether a field is read for a record of the given alternative (None: no selector).
    pub fn is_active(&self, field: usize, chosen: Option<(usize, usize)>) -> bool {
        let Some(f) = self.fields.get(field) else {
            return false;
        };
        f.alternatives.iter().all(|&(set, alt)| match chosen {
            Some((s, a)) if s == set => a == alt,
            // A set the record type does not choose: its first item (the one redefined) is read.
            _ => alt == 0,
        })
    }
}

#[cfg(test)]
mod tests;
