//! The `[identity]` table of a job spec: raw TOML first, then a validated [`Settings`].

use serde::Deserialize;

use crate::error::{Error, Result};

/// How a column is standardised and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A given name: accents, case and punctuation folded, nicknames mapped to their full form
    /// (Bill to William); levels exact, Jaro-Winkler thresholds, else.
    Forename,
    /// A surname or other name: folded as a forename, without nicknames.
    Name,
    /// A street address: street types abbreviated (STREET to st), unit words unified; levels exact,
    /// Levenshtein distance thresholds, else.
    Address,
    /// A postcode: letters and digits only, upper case; levels exact, same sector (all but the last
    /// two characters), same district (all but the last three), else.
    Postcode,
    /// A phone number in E.164 with the default country code; levels exact, same last 7 digits, else.
    Phone,
    /// An email address, trimmed and lower-cased, null when not `local@domain.tld`; levels exact,
    /// same local part, Levenshtein thresholds, else.
    Email,
    /// A date (of birth): levels exact, day and month transposed, same year and month, same year, else.
    Date,
    /// Free text, folded like a name; levels exact, Levenshtein thresholds, else.
    Text,
    /// Compared as is after trimming and lower-casing: exact or else.
    Exact,
    /// Years of birth, known to the year (`1965`) or only to a range (`1962-1971`, a data vendor's
    /// age band); levels "within" (the year or range meets the other's) and else. Two records that
    /// both know the year are not compared here (null level): the birth date compares them.
    YearRange,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Forename => "forename",
            Self::Name => "name",
            Self::Address => "address",
            Self::Postcode => "postcode",
            Self::Phone => "phone",
            Self::Email => "email",
            Self::Date => "date",
            Self::Text => "text",
            Self::Exact => "exact",
            Self::YearRange => "year_range",
        }
    }
}

/// One comparison as written in the spec.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ComparisonSpec {
    /// The input column.
    pub column: String,
    pub kind: Kind,
    /// Jaro-Winkler similarities (forename, name; default `[0.92, 0.80]`) or Levenshtein distances
    /// (address, email, text; default `[2]`), best level first.
    #[serde(default)]
    pub thresholds: Option<Vec<f64>>,
    /// Term-frequency adjustment of the exact level: agreeing on a rare value counts more.
    #[serde(default)]
    pub term_frequency: bool,
    /// Comparisons of one group describe one thing (an address: street, postcode and city; a
    /// household: its surname, address, landline and family email) and count once: the group adds
    /// its strongest agreement and its strongest disagreement, not the sum of its members.
    #[serde(default)]
    pub group: Option<String>,
    /// The compared column this one is a coarser part of (`part_of = "street"` for a postcode or a
    /// city): when that column disagrees, agreeing on this one weighs what it weighs among the
    /// pairs whose `part_of` column disagrees (neighbours share a postcode; one person's records
    /// at two streets seldom do).
    #[serde(default)]
    pub part_of: Option<String>,
}

/// The `[identity]` table as written.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    /// Country calling code for phone numbers written without one (default `44`).
    #[serde(default)]
    pub default_country_code: Option<String>,
    /// Blocking rules, any of which makes a candidate pair: each a list of keys, `column` or
    /// `column:N` (the first N characters of the standardised value), and at most one
    /// `without:column` (only the pairs where one record or both lack that column).
    #[serde(default)]
    pub blocking_rules: Option<Vec<Vec<String>>>,
    /// Rules whose pairs only attach lone records (see `attach_probability`): such a pair never
    /// links two records by itself and does not train the model (default
    /// `[["first_name", "last_name", "without:postcode"]]` where those columns are compared: a
    /// service ticket or web account with a name and nothing else known joins the one customer of
    /// that name, and stays alone where two customers have it; `[]` turns it off).
    #[serde(default)]
    pub attach_blocking_rules: Option<Vec<Vec<String>>>,
    /// Blocks larger than this are refined by the next key of `blocking_refinements`, and skipped
    /// (and reported) when no refinement is left (default 100: about 50 pairs per record).
    #[serde(default)]
    pub max_block_size: Option<usize>,
    /// Keys that split a block over `max_block_size`, tried in order (default `first_name:1`,
    /// `birth_date:4`, `street:4`, `first_name:3`, those of them that are compared).
    #[serde(default)]
    pub blocking_refinements: Option<Vec<String>>,
    /// The comparisons (default: the demo's customer columns).
    #[serde(default)]
    pub comparisons: Option<Vec<ComparisonSpec>>,
    /// A pair is linked when its match probability reaches this (default 0.9).
    #[serde(default)]
    pub match_probability: Option<f64>,
    /// A record left alone by clustering joins the one customer it could be: when every candidate
    /// pair of the record at `attach_competitor_probability` or more points into one customer of
    /// two or more records, with no comparison disagreeing and no conflict, and the best of them
    /// reaches this (default 0.7; 1 turns it off). See docs/identity.md, "Attaching".
    #[serde(default)]
    pub attach_probability: Option<f64>,
    /// A pair of a lone record at this match probability or more makes its customer a candidate
    /// (default 0.5): two candidates, and the record stays alone.
    #[serde(default)]
    pub attach_competitor_probability: Option<f64>,
    /// A lone record whose every candidate pair comes from an attaching rule (it shares a full
    /// name with other records and nothing else is compared) joins the one customer holding every
    /// record of that name when the best pair reaches this (default 0.3, at most
    /// `attach_probability`); each such pair, at any probability, makes its customer a candidate.
    #[serde(default)]
    pub attach_name_probability: Option<f64>,
    /// Sources whose records are never duplicates of each other: a cluster holds at most one of each.
    #[serde(default)]
    pub duplicate_free_sources: Vec<String>,
    /// Source systems (`source_system` values) from most to least trusted: the golden record takes
    /// a customer's name from the most trusted source that has one (models read it through
    /// `source_trust_rank(source_system)`). Sources not listed come after, alike.
    #[serde(default)]
    pub trust: Vec<String>,
    /// Random pairs drawn to estimate u probabilities (default 1,000,000).
    #[serde(default)]
    pub u_sample_pairs: Option<usize>,
    /// Seed of that draw (default 42).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Pairs below this match probability are left out of the links table (default 0.01).
    #[serde(default)]
    pub links_min_probability: Option<f64>,
    /// A table with `record_id` and `person_id`, the truth for the accuracy figures (demo data).
    #[serde(default)]
    pub truth: Option<String>,
    /// An identifier value (phone, email, date, exact) held by more records than this, and by
    /// twenty times the column's average, is a placeholder: missing for matching (default 50; 0
    /// turns it off).
    #[serde(default)]
    pub placeholder_min_records: Option<u32>,
}

/// One blocking key: a column, optionally cut to its first characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlockingKey {
    pub column: String,
    pub prefix: Option<usize>,
}

/// A blocking rule: records agreeing on every key (all non-null) become a candidate pair.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlockingRule {
    /// As written, for reports: `postcode + last_name:1`.
    pub label: String,
    pub keys: Vec<BlockingKey>,
    /// From `attach_blocking_rules`: its pairs only attach lone records.
    pub attach_only: bool,
    /// `without:COLUMN`: of the pairs agreeing on the keys, only those where one record or both
    /// lack COLUMN (a full name compared across the country only for the records that have no
    /// postcode to be compared within).
    pub without: Option<String>,
}

/// A validated comparison.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Comparison {
    pub column: String,
    pub kind: Kind,
    pub thresholds: Vec<f64>,
    pub term_frequency: bool,
    pub group: Option<String>,
    /// The index of the comparison this one is a coarser part of (`part_of`).
    pub part_of: Option<usize>,
    /// Levels including null, computed once (comparisons ask for it per pair).
    levels: usize,
}

impl Comparison {
    /// Labels of the levels after the null level, best first (the last is "else").
    pub fn level_labels(&self) -> Vec<String> {
        if self.kind == Kind::YearRange {
            return vec!["within".into(), "else".into()];
        }
        let mut out = vec!["exact".to_string()];
        match self.kind {
            Kind::Forename => {
                out.extend(
                    self.thresholds
                        .iter()
                        .map(|t| format!("jaro_winkler>={t:.2}")),
                );
                out.push("initial".into());
            }
            Kind::Name => out.extend(
                self.thresholds
                    .iter()
                    .map(|t| format!("jaro_winkler>={t:.2}")),
            ),
            Kind::Address | Kind::Text => out.extend(
                self.thresholds
                    .iter()
                    .map(|t| format!("levenshtein<={t:.0}")),
            ),
            Kind::Email => {
                out.push("same_local_part".into());
                out.extend(
                    self.thresholds
                        .iter()
                        .map(|t| format!("levenshtein<={t:.0}")),
                );
            }
            Kind::Postcode => out.extend(["same_sector".into(), "same_district".into()]),
            Kind::Phone => out.push("same_last_7_digits".into()),
            Kind::Date => out.extend([
                "day_month_transposed".into(),
                "same_year_month".into(),
                "same_year".into(),
            ]),
            Kind::Exact | Kind::YearRange => {}
        }
        out.push("else".into());
        out
    }

    /// Levels including null (level 0).
    pub fn level_count(&self) -> usize {
        self.levels
    }
}

/// The validated settings of identity resolution.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Settings {
    pub default_country_code: String,
    pub blocking_rules: Vec<BlockingRule>,
    pub max_block_size: usize,
    pub blocking_refinements: Vec<BlockingKey>,
    pub comparisons: Vec<Comparison>,
    pub match_probability: f64,
    /// `[identity] attach_probability` (1: no attaching).
    pub attach_probability: f64,
    /// `[identity] attach_competitor_probability`.
    pub attach_competitor_probability: f64,
    /// `[identity] attach_name_probability`.
    pub attach_name_probability: f64,
    pub duplicate_free_sources: Vec<String>,
    /// The survivorship trust order (`[identity] trust`).
    pub trust: Vec<String>,
    pub u_sample_pairs: usize,
    pub seed: u64,
    pub links_min_probability: f64,
    pub truth: Option<String>,
    pub placeholder_min_records: u32,
    /// Where the candidate pairs' comparison patterns are written instead of held while the
    /// model is fitted and the pairs scored (`None`: held in memory). Not an `[identity]` key:
    /// the job sets it to the temporary directory when it has a `memory_limit_mb`.
    #[serde(skip)]
    pub spill_dir: Option<std::path::PathBuf>,
}

/// Comparisons used when the spec names none: the customer columns of the demo's unioned records.
pub fn default_comparisons() -> Vec<ComparisonSpec> {
    let c = |column: &str, kind, term_frequency, group: Option<&str>| ComparisonSpec {
        column: column.into(),
        kind,
        thresholds: None,
        term_frequency,
        group: group.map(str::to_string),
        part_of: None,
    };
    let household = Some("household");
    let of_street = |mut c: ComparisonSpec| {
        c.part_of = Some("street".into());
        c
    };
    vec![
        c("first_name", Kind::Forename, true, None),
        c("last_name", Kind::Name, true, household),
        c("birth_date", Kind::Date, false, None),
        c("street", Kind::Address, true, household),
        of_street(c("postcode", Kind::Postcode, false, household)),
        of_street(c("city", Kind::Name, true, household)),
        c("phone", Kind::Phone, true, household),
        c("email", Kind::Email, true, household),
    ]
}

/// Attaching rules used when the spec names none (those whose columns are all compared).
pub fn default_attach_blocking_rules() -> Vec<Vec<String>> {
    vec![vec![
        "first_name".to_string(),
        "last_name".to_string(),
        "without:postcode".to_string(),
    ]]
}

/// Blocking rules used when the spec names none.
pub fn default_blocking_rules() -> Vec<Vec<String>> {
    [
        &["postcode", "last_name:1"][..],
        &["phone"],
        &["email"],
        &["first_name", "last_name", "birth_date"],
        &["last_name", "street:6"],
    ]
    .iter()
    .map(|r| r.iter().map(|k| (*k).to_string()).collect())
    .collect()
}

impl IdentitySpec {
    /// Validates the spec; every problem is reported, not just the first.
    pub fn validate(&self) -> Result<Settings> {
        let mut problems = Vec::new();
        let code = self
            .default_country_code
            .clone()
            .unwrap_or_else(|| "44".into());
        let code = code.trim_start_matches('+').to_string();
        if code.is_empty() || code.len() > 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            problems.push(format!(
                "default_country_code '{code}' is not a calling code of 1 to 3 digits"
            ));
        }
        let specs = self.comparisons.clone().unwrap_or_else(default_comparisons);
        let parts: Vec<(String, String)> = specs
            .iter()
            .filter_map(|c| Some((c.column.clone(), c.part_of.clone()?)))
            .collect();
        let mut comparisons = Vec::new();
        for c in specs {
            if comparisons
                .iter()
                .any(|o: &Comparison| o.column == c.column)
            {
                problems.push(format!("column '{}' is compared twice", c.column));
                continue;
            }
            let thresholds = match (c.kind, c.thresholds) {
                (Kind::Forename | Kind::Name, None) => vec![0.92, 0.80],
                (Kind::Address | Kind::Email | Kind::Text, None) => vec![2.0],
                (_, None) => Vec::new(),
                (Kind::Forename | Kind::Name, Some(t)) => {
                    if t.is_empty()
                        || t.iter().any(|x| !(0.0..1.0).contains(x))
                        || t.windows(2).any(|w| w[0] <= w[1])
                    {
                        problems.push(format!(
                            "comparison '{}': thresholds must be Jaro-Winkler similarities in [0, 1), highest first",
                            c.column
                        ));
                    }
                    t
                }
                (Kind::Address | Kind::Email | Kind::Text, Some(t)) => {
                    if t.is_empty()
                        || t.iter().any(|x| *x < 1.0 || x.fract() != 0.0)
                        || t.windows(2).any(|w| w[0] >= w[1])
                    {
                        problems.push(format!(
                            "comparison '{}': thresholds must be Levenshtein distances of 1 or more, smallest first",
                            c.column
                        ));
                    }
                    t
                }
                (kind, Some(_)) => {
                    problems.push(format!(
                        "comparison '{}': kind '{}' takes no thresholds",
                        c.column,
                        kind.name()
                    ));
                    Vec::new()
                }
            };
            let mut comparison = Comparison {
                column: c.column,
                kind: c.kind,
                thresholds,
                term_frequency: c.term_frequency,
                group: c.group.filter(|g| !g.trim().is_empty()),
                part_of: None,
                levels: 0,
            };
            comparison.levels = comparison.level_labels().len() + 1;
            comparisons.push(comparison);
        }
        if comparisons.is_empty() {
            problems.push("identity resolution needs at least one comparison".into());
        }
        for (column, whole) in &parts {
            let whole_at = comparisons.iter().position(|o| &o.column == whole);
            let part_at = comparisons.iter().position(|o| &o.column == column);
            match (whole_at, part_at) {
                (Some(w), Some(p)) if w != p => {
                    if let Some(part) = comparisons.get_mut(p) {
                        part.part_of = Some(w);
                    }
                }
                _ => problems.push(format!(
                    "comparison '{column}': part_of '{whole}' is not another compared column"
                )),
            }
        }
        let mut groups: Vec<&str> = comparisons
            .iter()
            .filter_map(|c| c.group.as_deref())
            .collect();
        groups.sort_unstable();
        groups.dedup();
        if groups.len() > 32 {
            problems.push(format!(
                "at most 32 comparison groups, not {}",
                groups.len()
            ));
        }
        let rules = self
            .blocking_rules
            .clone()
            .unwrap_or_else(default_blocking_rules);
        let attach_rules = match &self.attach_blocking_rules {
            Some(rules) => rules.clone(),
            None => default_attach_blocking_rules()
                .into_iter()
                .filter(|rule| {
                    rule.iter().all(|k| {
                        let column = k.strip_prefix("without:").unwrap_or(k);
                        comparisons.iter().any(|c| c.column == column)
                    })
                })
                .collect(),
        };
        let parse_key = |key: &str, problems: &mut Vec<String>| -> Option<BlockingKey> {
            let (column, prefix) = match key.split_once(':') {
                Some((c, n)) => match n.parse::<usize>() {
                    Ok(n) if n > 0 => (c.trim(), Some(n)),
                    _ => {
                        problems.push(format!(
                            "blocking key '{key}': after ':' comes a number of characters (1 or more)"
                        ));
                        return None;
                    }
                },
                None => (key.trim(), None),
            };
            if !comparisons.iter().any(|c| c.column == column) {
                problems.push(format!(
                    "blocking key '{key}': column '{column}' is not one of the comparisons"
                ));
            }
            Some(BlockingKey {
                column: column.to_string(),
                prefix,
            })
        };
        let blocking_refinements: Vec<BlockingKey> = match &self.blocking_refinements {
            Some(keys) => keys
                .iter()
                .filter_map(|k| parse_key(k, &mut problems))
                .collect(),
            None => ["first_name:1", "birth_date:4", "street:4", "first_name:3"]
                .iter()
                .filter_map(|k| parse_key(k, &mut Vec::new()))
                .filter(|k| comparisons.iter().any(|c| c.column == k.column))
                .collect(),
        };
        let mut blocking_rules = Vec::new();
        let rules = rules
            .into_iter()
            .map(|r| (r, false))
            .chain(attach_rules.into_iter().map(|r| (r, true)));
        for (rule, attach_only) in rules {
            let mut keys = Vec::new();
            let mut without: Option<String> = None;
            for key in &rule {
                if let Some(column) = key.trim().strip_prefix("without:") {
                    let column = column.trim();
                    if !comparisons.iter().any(|c| c.column == column) {
                        problems.push(format!(
                            "blocking rule '{}': '{key}' names column '{column}', which is not one of the comparisons",
                            rule.join(" + ")
                        ));
                    }
                    if without.is_some() {
                        problems.push(format!(
                            "blocking rule '{}' has more than one 'without:' (one column at most)",
                            rule.join(" + ")
                        ));
                    }
                    without = Some(column.to_string());
                } else if let Some(k) = parse_key(key, &mut problems) {
                    keys.push(k);
                }
            }
            if rule.iter().all(|k| k.trim().starts_with("without:")) {
                problems.push(format!(
                    "blocking rule '{}' has no keys ('without:' only narrows a rule's pairs)",
                    rule.join(" + ")
                ));
            }
            if keys.len() > crate::blocking::MAX_KEYS {
                problems.push(format!(
                    "blocking rule '{}' has more than {} keys",
                    rule.join(" + "),
                    crate::blocking::MAX_KEYS
                ));
            }
            blocking_rules.push(BlockingRule {
                label: rule.join(" + "),
                keys,
                attach_only,
                without,
            });
        }
        if blocking_rules.len() > crate::blocking::MAX_RULES {
            problems.push(format!(
                "at most {} blocking rules (attach_blocking_rules included)",
                crate::blocking::MAX_RULES
            ));
        }
        if blocking_rules.iter().all(|r| r.attach_only) {
            problems.push("identity resolution needs at least one blocking rule".into());
        }
        let match_probability = self.match_probability.unwrap_or(0.9);
        if !(match_probability > 0.0 && match_probability < 1.0) {
            problems.push(format!(
                "match_probability {match_probability} is not between 0 and 1"
            ));
        }
        // The value as written is checked; above match_probability it means "as the links".
        let attach_written = self.attach_probability.unwrap_or(0.7);
        let attach_probability = attach_written.min(match_probability);
        let attach_competitor_probability = self
            .attach_competitor_probability
            .unwrap_or(attach_probability.min(0.5));
        if !(attach_written > 0.0 && attach_written <= 1.0) {
            problems.push(format!(
                "attach_probability {attach_written} is not between 0 and 1"
            ));
        }
        if !(attach_competitor_probability > 0.0
            && attach_competitor_probability <= attach_probability)
        {
            problems.push(format!(
                "attach_competitor_probability {attach_competitor_probability} is not between 0 and attach_probability ({attach_probability})"
            ));
        }
        let attach_name_probability = self
            .attach_name_probability
            .unwrap_or(0.3)
            .min(attach_probability);
        if attach_name_probability.is_nan() || attach_name_probability <= 0.0 {
            problems.push(format!(
                "attach_name_probability {attach_name_probability} is not above 0"
            ));
        }
        let links_min_probability = self.links_min_probability.unwrap_or(0.01);
        if !(0.0..=1.0).contains(&links_min_probability) {
            problems.push(format!(
                "links_min_probability {links_min_probability} is not between 0 and 1"
            ));
        }
        let max_block_size = self.max_block_size.unwrap_or(100);
        if max_block_size < 2 {
            problems.push("max_block_size must be 2 or more".into());
        }
        let u_sample_pairs = self.u_sample_pairs.unwrap_or(1_000_000);
        if u_sample_pairs < 1000 {
            problems.push("u_sample_pairs must be 1,000 or more".into());
        }
        if !problems.is_empty() {
            return Err(Error::Spec(problems.join("; ")));
        }
        Ok(Settings {
            default_country_code: code,
            blocking_rules,
            max_block_size,
            blocking_refinements,
            comparisons,
            match_probability,
            attach_probability,
            attach_competitor_probability,
            attach_name_probability,
            duplicate_free_sources: self.duplicate_free_sources.clone(),
            trust: self.trust.clone(),
            u_sample_pairs,
            seed: self.seed.unwrap_or(42),
            links_min_probability,
            truth: self.truth.clone(),
            placeholder_min_records: self.placeholder_min_records.unwrap_or(50),
            spill_dir: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let s = IdentitySpec::default().validate();
        assert!(s.is_ok(), "{s:?}");
        let Ok(s) = s else { return };
        let street = s.comparisons.iter().position(|c| c.column == "street");
        for c in &s.comparisons {
            let is_part = matches!(c.column.as_str(), "postcode" | "city");
            assert_eq!(
                c.part_of,
                if is_part { street } else { None },
                "{}",
                c.column
            );
        }
    }

    #[test]
    fn every_problem_is_reported() {
        let spec: IdentitySpec = match toml::from_str(
            r#"
            default_country_code = "4x"
            blocking_rules = [["nope"], ["postcode:0"], ["postcode", "without:nope"], ["without:postcode"]]
            match_probability = 1.5
            comparisons = [
              { column = "postcode", kind = "postcode", part_of = "street" },
              { column = "first_name", kind = "forename", thresholds = [0.8, 0.9], part_of = "first_name" },
            ]"#,
        ) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let Err(Error::Spec(msg)) = spec.validate() else {
            panic!("invalid spec accepted")
        };
        for part in [
            "default_country_code",
            "column 'nope'",
            "'postcode:0'",
            "'without:nope' names column 'nope'",
            "'without:postcode' has no keys",
            "match_probability 1.5",
            "highest first",
            "comparison 'postcode': part_of 'street' is not another compared column",
            "comparison 'first_name': part_of 'first_name'",
        ] {
            assert!(msg.contains(part), "{part} missing from: {msg}");
        }
    }
}
