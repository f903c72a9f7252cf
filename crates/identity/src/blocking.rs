//! Blocking: the candidate pairs, from a union of rules. Records agreeing on every key of a rule
//! (none of them null) fall in one block and each pair in it is a candidate, once, credited to the
//! first rule that produces it. A block larger than the cap is skipped and reported, so that one
//! common value (a shop's own phone number typed into every account) cannot explode the pair count.

use std::collections::HashMap;

use crate::records::{NULL, Records};
use crate::spec::{BlockingRule, Settings};

/// Keys per rule at most.
pub const MAX_KEYS: usize = 4;
/// Rules at most (one bit each in a 32-bit mask).
pub const MAX_RULES: usize = 32;

type Key = [u32; MAX_KEYS];

/// What one rule produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleReport {
    pub rule: String,
    /// Candidate pairs first produced by this rule.
    pub pairs: u64,
    /// Blocks of two or more records.
    pub blocks: u64,
    /// Blocks over the cap, skipped, and the records in them.
    pub skipped_blocks: u64,
    pub skipped_records: u64,
    /// The largest skipped block: its key and size.
    pub largest_skipped: Option<(String, u64)>,
}

/// The candidate pairs (`a < b`) with, for each, the rules whose blocks hold both records.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    pub pairs: Vec<(u32, u32)>,
    /// Bit `r` set: rule `r` puts both records in one (kept) block.
    pub rules: Vec<u32>,
    pub reports: Vec<RuleReport>,
}

/// Blocking keys of every record for one rule (`None` when a key column is null).
fn rule_keys(rule: &BlockingRule, settings: &Settings, records: &Records) -> Vec<Option<Key>> {
    let mut parts: Vec<Vec<u32>> = Vec::new();
    for key in &rule.keys {
        let Some(col) = settings
            .comparisons
            .iter()
            .position(|c| c.column == key.column)
            .and_then(|i| records.columns.get(i))
        else {
            parts.push(vec![NULL; records.len()]);
            continue;
        };
        match key.prefix {
            None => parts.push(col.codes.clone()),
            Some(n) => {
                // Code of the prefix of each distinct value, then of each record.
                let mut ids: HashMap<String, u32> = HashMap::new();
                let prefix_of: Vec<u32> = col
                    .values
                    .iter()
                    .map(|v| {
                        let p: String = v.chars().take(n).collect();
                        let next = u32::try_from(ids.len()).unwrap_or(NULL - 1);
                        *ids.entry(p).or_insert(next)
                    })
                    .collect();
                parts.push(
                    col.codes
                        .iter()
                        .map(|c| prefix_of.get(*c as usize).copied().unwrap_or(NULL))
                        .collect(),
                );
            }
        }
    }
    (0..records.len())
        .map(|i| {
            let mut key = [0u32; MAX_KEYS];
            for (k, p) in parts.iter().enumerate().take(MAX_KEYS) {
                let v = p.get(i).copied().unwrap_or(NULL);
                if v == NULL {
                    return None;
                }
                key[k] = v;
            }
            Some(key)
        })
        .collect()
}

/// The key of a record as text, for reports.
fn key_text(rule: &BlockingRule, settings: &Settings, records: &Records, record: usize) -> String {
    rule.keys
        .iter()
        .map(|k| {
            let value = settings
                .comparisons
                .iter()
                .position(|c| c.column == k.column)
                .and_then(|i| records.columns.get(i))
                .and_then(|c| c.value(record))
                .unwrap_or("");
            match k.prefix {
                Some(n) => value.chars().take(n).collect(),
                None => value.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The candidate pairs of `records` under the rules of `settings`.
pub fn candidates(settings: &Settings, records: &Records) -> Candidates {
    let rules = &settings.blocking_rules;
    let keys: Vec<Vec<Option<Key>>> = rules
        .iter()
        .map(|r| rule_keys(r, settings, records))
        .collect();
    // Pass 1: blocks per rule; records in skipped blocks are marked so that no rule counts a pair
    // as produced by a block it skipped.
    let mut skipped: Vec<u32> = vec![0; records.len()];
    let mut blocks_of: Vec<Vec<Vec<u32>>> = Vec::with_capacity(rules.len());
    let mut reports = Vec::with_capacity(rules.len());
    for (r, rule) in rules.iter().enumerate() {
        let mut order: Vec<(Key, u32)> = keys[r]
            .iter()
            .enumerate()
            .filter_map(|(i, k)| k.map(|k| (k, u32::try_from(i).unwrap_or(u32::MAX))))
            .collect();
        order.sort_unstable();
        let mut report = RuleReport {
            rule: rule.label.clone(),
            ..RuleReport::default()
        };
        let mut blocks = Vec::new();
        for run in order.chunk_by(|x, y| x.0 == y.0) {
            if run.len() < 2 {
                continue;
            }
            if run.len() > settings.max_block_size {
                report.skipped_blocks += 1;
                report.skipped_records += run.len() as u64;
                for (_, i) in run {
                    skipped[*i as usize] |= 1 << r;
                }
                let size = run.len() as u64;
                if report
                    .largest_skipped
                    .as_ref()
                    .is_none_or(|(_, s)| *s < size)
                {
                    let text = key_text(rule, settings, records, run[0].1 as usize);
                    report.largest_skipped = Some((text, size));
                }
                continue;
            }
            report.blocks += 1;
            blocks.push(run.iter().map(|(_, i)| *i).collect());
        }
        blocks_of.push(blocks);
        reports.push(report);
    }
    // Pass 2: pairs, each once, with the mask of rules that hold it.
    let shares = |r: usize, a: usize, b: usize| -> bool {
        skipped[a] & (1 << r) == 0 && keys[r][a].is_some() && keys[r][a] == keys[r][b]
    };
    let mut out = Candidates {
        reports,
        ..Candidates::default()
    };
    for (r, blocks) in blocks_of.iter().enumerate() {
        for block in blocks {
            for (x, &a) in block.iter().enumerate() {
                for &b in &block[x + 1..] {
                    let (a, b) = (a.min(b), a.max(b));
                    if (0..r).any(|e| shares(e, a as usize, b as usize)) {
                        continue;
                    }
                    let mask = (r..rules.len())
                        .filter(|e| shares(*e, a as usize, b as usize))
                        .fold(0u32, |m, e| m | (1 << e));
                    out.pairs.push((a, b));
                    out.rules.push(mask);
                    out.reports[r].pairs += 1;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ComparisonSpec, IdentitySpec, Kind};

    fn settings(rules: &[&[&str]], cap: usize) -> Settings {
        let spec = IdentitySpec {
            comparisons: Some(vec![
                ComparisonSpec {
                    column: "name".into(),
                    kind: Kind::Name,
                    thresholds: None,
                    term_frequency: false,
                },
                ComparisonSpec {
                    column: "phone".into(),
                    kind: Kind::Phone,
                    thresholds: None,
                    term_frequency: false,
                },
            ]),
            blocking_rules: Some(
                rules
                    .iter()
                    .map(|r| r.iter().map(|k| (*k).to_string()).collect())
                    .collect(),
            ),
            max_block_size: Some(cap),
            ..IdentitySpec::default()
        };
        match spec.validate() {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn pairs_come_once_from_the_first_rule_and_big_blocks_are_skipped() {
        let s = settings(&[&["name"], &["phone"], &["name:1"]], 3);
        let mut r = Records::new(&s);
        let phone = "07700 900123";
        for (i, (name, phone)) in [
            ("ann", Some(phone)),
            ("ann", Some(phone)),
            ("anna", Some(phone)),
            ("bob", None),
            ("bob", None),
            ("bob", None),
            ("bob", None),
        ]
        .iter()
        .enumerate()
        {
            r.push(&i.to_string(), "s", &[Some(name), *phone]);
        }
        let c = candidates(&s, &r);
        // name: (0,1); the bob block of 4 is over the cap. phone: (0,2), (1,2) new.
        // name:1: the "a" block adds nothing new; the "b" block of 4 is skipped again.
        assert_eq!(c.pairs, vec![(0, 1), (0, 2), (1, 2)]);
        assert_eq!(c.rules, vec![0b111, 0b110, 0b110]);
        assert_eq!(c.reports[0].pairs, 1);
        assert_eq!(c.reports[0].skipped_blocks, 1);
        assert_eq!(c.reports[0].largest_skipped, Some(("bob".into(), 4)));
        assert_eq!(c.reports[1].pairs, 2);
        assert_eq!(c.reports[2].pairs, 0);
        assert_eq!(c.reports[2].skipped_records, 4);
    }
}
