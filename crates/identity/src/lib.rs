//! Identity resolution: one `customer_id` per real person across sources that share no key.
//!
//! # Overview
//! The pipeline, each stage in its own module:
//! 1. [`standardise`]: names without accents, case or punctuation and with nicknames mapped to full
//!    forms; street types abbreviated; postcodes compacted; phones in E.164; emails validated; dates
//!    parsed. Unknown stays unknown (`None`).
//! 2. [`records::Records`]: the records column by column as dictionary codes.
//! 3. [`blocking::candidates`]: candidate pairs from a union of blocking rules, capped per block, with
//!    the pairs per rule reported.
//! 4. [`compare::level`]: per compared column, a level (null, exact, partial levels, else);
//!    [`compared::Compared`] keeps one pattern number per candidate pair (the pairs are not held:
//!    they are produced again from the blocks when needed).
//! 5. [`model::fit`]: Fellegi-Sunter m and u probabilities (u from random pairs, m by EM without
//!    labels), the prior, and term-frequency adjustments.
//! 6. [`cluster::cluster`]: connected components over links above the threshold, strongest first,
//!    at most one record per duplicate-free source in a cluster; [`attach::attach`] then joins a
//!    record left alone to the one customer it could be.
//! 7. [`stable::assign`]: customer ids kept from the previous run; merges and splits recorded.
//!    [`household::households_of_pairs`] then groups the customers who share a home, from the
//!    pairs [`household::HomeEvidence`] kept while the pairs were scored (the candidates and their
//!    pattern numbers are let go once the pairs are scored: at ten million persons, 2.5 GB).
//! 8. [`explain::waterfall`]: how each field moved the weight of one pair.
//!
//! [`resolve`] runs stages 3 to 7; [`tables`] turns Arrow batches into records and the result into
//! the `int_customer_identity`, `int_identity_links`, `int_identity_changes`,
//! `int_identity_parameters` and `int_customer_contacts` tables (the last: every record's emails,
//! phones and postal keys in the forms destinations receive, for contact-level suppression).
//!
//! # Example
//! ```
//! use clientele_identity::{IdentitySpec, Previous, Records, resolve};
//!
//! // Three records give the model little to estimate from: a lower threshold for the example.
//! let spec = IdentitySpec { match_probability: Some(0.75), ..IdentitySpec::default() };
//! let settings = spec.validate()?;
//! let mut records = Records::new(&settings);
//! // first_name, last_name, birth_date, street, postcode, city, phone, email
//! let ann = [Some("Ann"), Some("Lee"), Some("1980-03-04"), Some("1 High Street"), Some("LS1 4AB"),
//!            Some("Leeds"), Some("07700 900123"), Some("ann.lee@example.com")];
//! let ann_again = [Some("ANN"), Some("LEE"), None, Some("1 High St"), Some("ls1 4ab"),
//!                  Some("LEEDS"), Some("+44 7700 900123"), None];
//! let bob = [Some("Bob"), Some("Stone"), None, Some("9 Low Road"), Some("M1 1AA"),
//!            Some("Manchester"), None, Some("bob@example.org")];
//! records.push("crm:1", "crm", &ann);
//! records.push("web:7", "web", &ann_again);
//! records.push("web:8", "web", &bob);
//! let r = resolve(&records, &settings, &Previous::default())?;
//! assert_eq!(r.customer_id(0), r.customer_id(1));
//! assert_ne!(r.customer_id(0), r.customer_id(2));
//! # Ok::<(), clientele_identity::Error>(())
//! ```

pub mod attach;
pub mod blocking;
pub mod cluster;
pub mod compare;
pub mod compared;
mod error;
pub mod evaluate;
pub mod explain;
pub mod household;
pub mod links;
pub mod model;
pub mod records;
mod spec;
pub mod stable;
pub mod standardise;
pub mod tables;

pub use error::{Error, Result};
pub use evaluate::Accuracy;
pub use links::{LinkSink, Links};
pub use model::Parameters;
pub use records::Records;
pub use spec::{BlockingRule, Comparison, ComparisonSpec, IdentitySpec, Kind, Settings};
pub use stable::Previous;

/// A scored candidate pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    pub a: u32,
    pub b: u32,
    /// The first blocking rule that produced the pair.
    pub rule: u8,
    /// The match weight (log2 of the odds); [`Link::probability`] is its probability.
    pub weight: f64,
    /// The pair's comparison pattern, in [`Resolution::patterns`]: its levels, one per comparison
    /// ([`Resolution::levels`]; each comparison's weight, which sums with the prior to `weight`,
    /// is [`Parameters::weights`] of these). A number, not the levels, for memory.
    pub pattern: u32,
    /// Above the threshold and kept by clustering (not refused by the duplicate-free guard).
    pub accepted: bool,
}

impl Link {
    /// The match probability of the link's weight: computed, not held (tens of millions of links
    /// at ten million persons: a number less per link is hundreds of megabytes).
    pub fn probability(&self) -> f64 {
        model::probability(self.weight)
    }
}

/// Counts of a resolution, for the run report.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub records: u64,
    pub records_per_source: Vec<(String, u64)>,
    pub rules: Vec<blocking::RuleReport>,
    pub candidate_pairs: u64,
    pub links_above_threshold: u64,
    pub clusters: cluster::ClusterReport,
    pub customers: u64,
    pub merges: u64,
    pub splits: u64,
    pub prior: f64,
    /// Problems worth a look (a comparison whose m could not be estimated, skipped blocks).
    pub warnings: Vec<String>,
    /// Values treated as missing because implausibly many records hold them.
    #[serde(default)]
    pub placeholders: Vec<records::Placeholder>,
    /// Records that no blocking rule can pair (every key missing or every block skipped).
    #[serde(default)]
    pub records_without_rule: u64,
    /// The customers grouped into households.
    #[serde(default)]
    pub households: household::HouseholdReport,
}

/// The result of [`resolve`].
#[derive(Debug, Clone)]
pub struct Resolution {
    /// Customer id of each cluster ([`Resolution::customer_id`] gives a record's).
    pub customer_ids_by_cluster: records::Strings,
    /// Cluster number of each record.
    pub clusters: Vec<u32>,
    /// Household id of each household ([`Resolution::household_id`] gives a record's).
    pub household_ids_by_household: records::Strings,
    /// Household number of each record.
    pub households: Vec<u32>,
    /// Candidate pairs at or above `links_min_probability` (none when the caller wrote them and
    /// let them go first: [`Clustered::let_links_go`]).
    pub links: Links,
    /// The distinct comparison patterns of the candidate pairs ([`Link::pattern`]).
    pub patterns: Vec<compared::Pattern>,
    pub changes: Vec<stable::Change>,
    pub parameters: Parameters,
    pub summary: Summary,
}

/// What `int_identity_links` is made of ([`tables::LinksTable`]): the links, the patterns they
/// number and the parameters that weighed them.
#[derive(Debug, Clone, Copy)]
pub struct LinksOf<'a> {
    pub links: &'a Links,
    pub patterns: &'a [compared::Pattern],
    pub parameters: &'a Parameters,
}

impl LinksOf<'_> {
    /// The comparison levels of a link, one per comparison.
    pub fn levels(&self, link: &Link) -> &[u8] {
        self.patterns
            .get(link.pattern as usize)
            .map_or(&[], |p| &p.levels)
    }
}

impl Resolution {
    /// Its links with what their table needs.
    pub fn links_of(&self) -> LinksOf<'_> {
        LinksOf {
            links: &self.links,
            patterns: &self.patterns,
            parameters: &self.parameters,
        }
    }

    /// The comparison levels of a link, one per comparison.
    pub fn levels(&self, link: &Link) -> &[u8] {
        self.patterns
            .get(link.pattern as usize)
            .map_or(&[], |p| &p.levels)
    }

    /// The customer id of record `r` ("" for a record out of range).
    pub fn customer_id(&self, r: usize) -> &str {
        self.clusters
            .get(r)
            .and_then(|c| self.customer_ids_by_cluster.get(*c as usize))
            .unwrap_or("")
    }

    /// The household id of record `r` ("" for a record out of range).
    pub fn household_id(&self, r: usize) -> &str {
        self.households
            .get(r)
            .and_then(|h| self.household_ids_by_household.get(*h as usize))
            .unwrap_or("")
    }
}

/// A conflicting pair may still be one customer when its own match weight reaches this (a
/// probability of 1 - 1e-6): the evidence between them is overwhelming.
pub const CONFLICT_OVERRIDE_WEIGHT: f64 = 20.0;

/// Why two records are surely different people, if they are: their first names (kind forename)
/// differ at every level, or their birth dates (kind date) do, both known on both (twins share a
/// birth date and a parent and child a first name, never both).
pub fn conflict_reason(
    settings: &Settings,
    records: &Records,
    a: usize,
    b: usize,
) -> Option<&'static str> {
    settings
        .comparisons
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c.kind, Kind::Forename | Kind::Date))
        .find(|(i, spec)| {
            records.columns.get(*i).is_some_and(|col| {
                usize::from(compare::level(spec, col, a, b)) == spec.level_count() - 1
            })
        })
        .map(|(_, spec)| {
            if spec.kind == Kind::Forename {
                "their first names differ"
            } else {
                "their birth dates differ"
            }
        })
}

/// Whether two records may never be one customer: a [`conflict_reason`], unless the pair's own
/// match weight reaches [`CONFLICT_OVERRIDE_WEIGHT`]. `None` when the comparisons have no forename
/// and no date.
fn identity_conflict<'a>(
    settings: &'a Settings,
    records: &'a Records,
    params: &'a Parameters,
) -> Option<impl Fn(u32, u32) -> bool + Sync + 'a> {
    if !settings
        .comparisons
        .iter()
        .any(|c| matches!(c.kind, Kind::Forename | Kind::Date))
    {
        return None;
    }
    let prior = params.prior_weight();
    let weigher = params.weigher(records);
    Some(move |a: u32, b: u32| {
        let (a, b) = (a as usize, b as usize);
        if conflict_reason(settings, records, a, b).is_none() {
            return false;
        }
        let mut levels = Vec::with_capacity(settings.comparisons.len());
        compare::vector(&settings.comparisons, records, a, b, &mut levels);
        prior + weigher.evidence_weight(a, &levels) < CONFLICT_OVERRIDE_WEIGHT
    })
}

/// Each stage's time in the log (`identity phase`, with `phase` and `seconds`, at debug level:
/// `clientele -vv`): where a slow resolution spends it. On Linux also the resident memory at the
/// end of the stage and the process's high-water mark so far (`resident_mib`, `peak_mib`), where
/// a large one holds its memory.
pub struct StageClock(std::time::Instant);

/// `VmRSS` and `VmHWM` of `/proc/self/status`, in MiB (`None` where there is no such file).
fn resident_mib() -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

impl StageClock {
    /// A clock started now.
    pub fn start() -> Self {
        Self(std::time::Instant::now())
    }

    /// Logs the time since the start or the last lap as the time of `phase`, and starts again.
    pub fn lap(&mut self, phase: &str) {
        let (resident_mib, peak_mib) = if tracing::enabled!(tracing::Level::DEBUG) {
            resident_mib()
        } else {
            (None, None)
        };
        tracing::debug!(
            phase,
            seconds = self.0.elapsed().as_secs_f64(),
            resident_mib,
            peak_mib,
            "identity phase"
        );
        self.0 = std::time::Instant::now();
    }
}

/// Whether a link whose first rule is `rule` was found by a rule of the `linking` mask
/// ([`blocking::linking_rules`]).
fn found_by_linking_rule(rule: u8, linking: u32) -> bool {
    rule < 32 && linking & (1u32 << rule) != 0
}

/// Resolves `records`: candidate pairs, model, links, clusters and customer ids. `previous` holds
/// the customer ids of the last run (empty on the first). How well the clusters match a known
/// truth is [`evaluate::accuracy`] of [`Resolution::clusters`], measured after it (the truth need
/// not be held while resolving).
///
/// The same as [`link_and_cluster`] then [`Clustered::finish`], which a caller with a large base
/// uses to read the last run's ids only once the pairs are let go.
pub fn resolve(
    records: &Records,
    settings: &Settings,
    previous: &stable::Previous,
) -> Result<Resolution> {
    link_and_cluster(records, settings)?.finish(records, settings, previous)
}

/// A resolution up to its clusters: the model, the links and each record's cluster, with the
/// candidate pairs and their blocks let go. [`Clustered::finish`] names the customers against the
/// last run's ids and groups households; nothing before it needs those ids, so a caller can read
/// them after this (at ten million persons 400 MB that are then never held beside the pairs).
#[derive(Debug)]
pub struct Clustered {
    clusters: Vec<u32>,
    cluster_report: cluster::ClusterReport,
    links: Links,
    patterns: Vec<compared::Pattern>,
    /// The pairs that say two records share a home, part by part.
    home_parts: Vec<Vec<(u32, u32)>>,
    parameters: Parameters,
    rules: Vec<blocking::RuleReport>,
    candidate_pairs: u64,
    records_without_rule: u64,
    links_above_threshold: u64,
}

/// The first part of [`resolve`]: candidate pairs, model, links and clusters.
pub fn link_and_cluster(records: &Records, settings: &Settings) -> Result<Clustered> {
    let mut clock = StageClock::start();
    let mut lap = |phase: &str| clock.lap(phase);
    let mut candidates = blocking::candidates(settings, records);
    lap("blocking");
    let compared = compared::Compared::compare(settings, records, &candidates)?;
    // The pairs' rule masks are in their patterns now: the walks from here on need only which
    // pairs of the blocks are candidates, not each record's block under every rule.
    candidates.let_rule_blocks_go();
    lap("comparing");
    let parameters = model::fit(settings, records, &candidates, &compared)?;
    lap("fitting");
    let prior = parameters.prior_weight();

    // Pairs kept: those of the links table, and those attaching reads (dropped after it).
    let keep_from = settings
        .links_min_probability
        .min(settings.attach_competitor_probability);
    let linking = blocking::linking_rules(settings);
    let weigher = parameters.weigher(records);
    // Scored part by part on every core; the parts' pairs joined in order are those of one walk.
    // The pairs that say two records share a home are kept as they go by, so that the candidates
    // and their pattern numbers can be let go before clustering.
    let home = household::HomeEvidence::new(settings, records);
    // Each part's pattern numbers are let go once the part is scored.
    // Under a memory limit each part's links go to a temporary file as they are scored.
    let spill = settings.spill_dir.as_deref();
    let (parts, patterns) = compared.into_each_part(
        &candidates,
        || (LinkSink::new(spill), Vec::new()),
        |(links, homes): &mut (LinkSink, Vec<(u32, u32)>), a, b, number, pattern| {
            let weight = prior + weigher.evidence_weight(a as usize, &pattern.levels);
            if model::probability(weight) >= keep_from {
                links.push(Link {
                    a,
                    b,
                    rule: u8::try_from(pattern.mask.trailing_zeros()).unwrap_or(u8::MAX),
                    weight,
                    pattern: number,
                    accepted: false,
                });
            }
            if home.shares_a_home(a, b, pattern) {
                homes.push((a, b));
            }
        },
        // Each part's lists at their size (or its links written) as soon as it is walked: grown
        // by doubling, eight parts of links would hold up to twice their size together (at ten
        // million persons, 600 MB).
        |(links, homes)| {
            links.end();
            homes.shrink_to_fit();
        },
    )?;
    let (link_parts, home_parts): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    let mut links = Links::from_sinks(link_parts, spill)?;
    // What the summary reports of the candidates; the pairs themselves are not needed past here.
    let (rules, candidate_pairs, records_without_rule) = (
        candidates.reports.clone(),
        candidates.len() as u64,
        candidates.records_without_rule,
    );
    drop(candidates);
    // Its per-value tables are not needed past scoring (the conflict check keeps its own).
    drop(weigher);
    lap("scoring pairs");
    // The links clustering joins (the threshold is at least `keep_from`, so every one is a kept
    // link): a pair only an attaching rule found never links by itself, attaching weighs it.
    let is_above = |l: &Link| {
        l.probability() >= settings.match_probability
            && patterns
                .get(l.pattern as usize)
                .is_some_and(|p| p.mask & linking != 0)
    };
    // Counted first, so that the list is made at its size: grown by doubling, it would hold its
    // last two sizes at once (at ten million persons, 400 MB and 200 MB more beside it).
    let mut above: Vec<(u32, u32, f64)> =
        Vec::with_capacity(links.iter().filter(|l| is_above(l)).count());
    above.extend(
        links
            .iter()
            .filter(|l| is_above(l))
            .map(|l| (l.a, l.b, l.weight)),
    );
    links.read_error()?;
    let links_above_threshold = above.len() as u64;
    lap("links above the threshold");
    // The duplicate-free bit of each record's source (0: none): clustering takes one copy,
    // attaching reads another.
    let source_bits: Vec<u64> = records
        .source_names
        .iter()
        .map(|s| {
            settings
                .duplicate_free_sources
                .iter()
                .position(|d| d == s)
                .map_or(0, |i| 1u64 << (i % 64))
        })
        .collect();
    let guard_bits = || -> Vec<u64> {
        records
            .sources
            .iter()
            .map(|s| source_bits.get(*s as usize).copied().unwrap_or(0))
            .collect()
    };
    let (clusters, cluster_report) = {
        let conflict = identity_conflict(settings, records, &parameters);
        let conflict = conflict
            .as_ref()
            .map(|f| f as &(dyn Fn(u32, u32) -> bool + Sync));
        let (mut clusters, mut report) =
            cluster::cluster(records.len(), above, guard_bits(), conflict);
        if settings.attach_probability < settings.match_probability {
            let disagrees: Vec<bool> = patterns
                .iter()
                .map(|p| attach::disagrees_on_the_person(&p.levels, &settings.comparisons))
                .collect();
            // A link's rule is the first rule that found it, and attaching rules come after the
            // linking ones: its rule is an attaching one only when no linking rule found it.
            let attach_only = |l: &Link| !found_by_linking_rule(l.rule, linking);
            // Per attaching rule, the column its `without:` names (None: every record lacks it).
            let without: Vec<Option<&records::Column>> = settings
                .blocking_rules
                .iter()
                .map(|r| {
                    r.without.as_ref().and_then(|column| {
                        settings
                            .comparisons
                            .iter()
                            .position(|c| &c.column == column)
                            .and_then(|i| records.columns.get(i))
                    })
                })
                .collect();
            // Per side, whether the pair is a name pair for that record: an attaching rule's pair
            // whose record lacks that column.
            let name_sides = |l: &Link| -> [bool; 2] {
                if !attach_only(l) {
                    return [false; 2];
                }
                let lacks = |r: u32| {
                    without
                        .get(usize::from(l.rule))
                        .copied()
                        .flatten()
                        .is_none_or(|c| c.codes.get(r as usize).is_none_or(|v| *v == records::NULL))
                };
                [lacks(l.a), lacks(l.b)]
            };
            // Read from the links as attaching goes, not gathered.
            let weak = links
                .iter()
                .filter(|l| {
                    // An attaching rule's pair at any probability: for the record with only a
                    // name, another customer of that name competes however weak its pair.
                    attach_only(l)
                        || (l.probability() >= settings.attach_competitor_probability
                            && l.probability() < settings.match_probability)
                })
                .map(|l| attach::WeakPair {
                    a: l.a,
                    b: l.b,
                    probability: l.probability(),
                    disagrees: disagrees.get(l.pattern as usize).copied().unwrap_or(true),
                    by_name: name_sides(&l),
                });
            // A lone record joins no customer holding a record that is surely someone else, nor
            // one that differs from it on who the person is (first name, birth date or years),
            // whether or not that pair was a candidate.
            let barred = |x: u32, m: u32| {
                conflict.is_some_and(|conflicts| conflicts(x, m))
                    || attach::records_disagree_on_the_person(
                        settings, records, x as usize, m as usize,
                    )
            };
            report.records_attached = attach::attach(
                &mut clusters,
                links.iter().filter(|l| is_above(l)).map(|l| (l.a, l.b)),
                weak,
                attach::Thresholds {
                    attach: settings.attach_probability,
                    by_name: settings.attach_name_probability,
                    competitor: settings.attach_competitor_probability,
                },
                &guard_bits(),
                Some(&barred),
            );
            links.read_error()?;
            report.recount(&clusters);
        }
        (clusters, report)
    };
    lap("clustering");
    links.settle(
        |l| l.probability() >= settings.links_min_probability,
        |l| {
            l.probability() >= settings.match_probability
                && found_by_linking_rule(l.rule, linking)
                && clusters.get(l.a as usize) == clusters.get(l.b as usize)
        },
    )?;
    Ok(Clustered {
        clusters,
        cluster_report,
        links,
        patterns,
        home_parts,
        parameters,
        rules,
        candidate_pairs,
        records_without_rule,
        links_above_threshold,
    })
}

impl Clustered {
    /// Its links with what their table needs: `int_identity_links` can be written before
    /// [`Clustered::finish`] and the links let go ([`Clustered::let_links_go`]).
    pub fn links_of(&self) -> LinksOf<'_> {
        LinksOf {
            links: &self.links,
            patterns: &self.patterns,
            parameters: &self.parameters,
        }
    }

    /// Lets the links go once their table is written: the [`Resolution`] then has none (at ten
    /// million persons they are 600 MB that giving customer ids does not need).
    pub fn let_links_go(&mut self) {
        self.links = Links::default();
    }

    /// The rest of [`resolve`]: each cluster's customer id (the last run's where its records had
    /// one, `previous`), the changes since then, and the households.
    pub fn finish(
        self,
        records: &Records,
        settings: &Settings,
        previous: &stable::Previous,
    ) -> Result<Resolution> {
        let Clustered {
            clusters,
            cluster_report,
            links,
            patterns,
            home_parts,
            parameters,
            rules,
            candidate_pairs,
            records_without_rule,
            links_above_threshold,
        } = self;
        let mut clock = StageClock::start();
        let mut lap = |phase: &str| clock.lap(phase);
        // Households first, so that the pairs that say two records share a home are let go
        // before the customer ids are given (households do not depend on them).
        let (households, household_report) = household::households_of_pairs(
            settings,
            records,
            home_parts.into_iter().flatten(),
            &clusters,
        );
        lap("households");
        let (ids, changes) = stable::assign(&records.ids, &clusters, previous);
        lap("stable ids");
        let mut first_of: Vec<Option<usize>> = vec![None; household_report.households as usize];
        for (r, h) in households.iter().enumerate() {
            if let Some(slot) = first_of.get_mut(*h as usize) {
                slot.get_or_insert(r);
            }
        }
        let household_names: records::Strings = first_of
            .iter()
            .map(|r| household::household_id(r.and_then(|r| records.ids.get(r)).unwrap_or("")))
            .collect();

        let mut warnings = Vec::new();
        for p in &parameters.comparisons {
            if p.m_sessions == 0 {
                warnings.push(format!(
                "the m probabilities of '{}' could not be estimated (every blocking rule blocks on it); the starting guess is used",
                p.column
            ));
            }
        }
        for r in &rules {
            if let Some((key, size)) = &r.largest_skipped {
                warnings.push(format!(
                "blocking rule '{}': {} block(s) over the cap of {} skipped ({} records), the largest '{key}' with {size}",
                r.rule, r.skipped_blocks, settings.max_block_size, r.skipped_records
            ));
            }
        }
        let mut per_source = vec![0u64; records.source_names.len()];
        for s in &records.sources {
            if let Some(n) = per_source.get_mut(*s as usize) {
                *n += 1;
            }
        }
        let summary = Summary {
            records: records.len() as u64,
            records_per_source: records
                .source_names
                .iter()
                .cloned()
                .zip(per_source)
                .collect(),
            rules,
            candidate_pairs,
            links_above_threshold,
            customers: ids.len() as u64,
            merges: changes.iter().filter(|c| c.change == "merged").count() as u64,
            splits: changes.iter().filter(|c| c.change == "split").count() as u64,
            clusters: cluster_report,
            prior: parameters.prior,
            warnings,
            placeholders: records.placeholders.clone(),
            records_without_rule,
            households: household_report,
        };
        Ok(Resolution {
            customer_ids_by_cluster: ids,
            clusters,
            household_ids_by_household: household_names,
            households,
            links,
            patterns,
            changes,
            parameters,
            summary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_patterns_and_links_set_aside_while_linking_give_the_resolution_of_all_held() -> Result<()>
    {
        let settings = IdentitySpec::default().validate()?;
        let mut records = Records::new(&settings);
        // 240 records of 80 people in 40 homes: each person in two or three systems, with a
        // shared home phone and surname, typos in some first names.
        let firsts = ["ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal"];
        for i in 0..240usize {
            let person = i % 80;
            let home = person / 2;
            let first = if i % 13 == 0 {
                format!("{}x", firsts[person % 8])
            } else {
                firsts[person % 8].to_string()
            };
            let last = format!("surname{home}");
            let street = format!("{home} high street");
            let phone = format!("07700 900{home:03}");
            let email = format!("p{person}@example.com");
            let born = format!(
                "19{:02}-0{}-1{}",
                40 + person % 50,
                1 + person % 9,
                person % 10
            );
            let source = ["crm", "web", "vendor"][i / 80];
            records.push(
                &format!("{source}:{i:04}"),
                source,
                &[
                    Some(&first),
                    Some(&last),
                    (i % 3 != 2).then_some(born.as_str()),
                    Some(&street),
                    Some("ls1 4ab"),
                    Some("leeds"),
                    (i % 4 != 3).then_some(phone.as_str()),
                    (i % 5 != 4).then_some(email.as_str()),
                ],
            );
        }
        let held = resolve(&records, &settings, &Previous::default())?;
        assert!(
            held.summary.links_above_threshold > 50,
            "{:?}",
            held.summary
        );
        let ids = records.ids.clone();
        let dir = tempfile::tempdir().map_err(Error::spill("a test directory", None))?;
        let aside = records.set_ids_aside(dir.path())?;
        assert!(records.ids.is_empty());
        assert_eq!(records.len(), 240);
        // Under a memory limit the step also spills the pairs' patterns and the links there.
        let spilling = Settings {
            spill_dir: Some(dir.path().to_path_buf()),
            ..settings.clone()
        };
        let mut clustered = link_and_cluster(&records, &spilling)?;
        records.take_ids_back(aside)?;
        assert_eq!(records.ids, ids);
        // The links' table written before the customer ids are given is the resolution's.
        assert!(clustered.links_of().links.is_spilled());
        assert!(!held.links.is_spilled());
        assert_eq!(clustered.links_of().links, &held.links);
        let early = tables::LinksTable::new(&records, &settings, clustered.links_of());
        let slices = (0..early.slices())
            .map(|i| early.slice(i))
            .collect::<Result<Vec<_>>>()?;
        let whole = tables::links_table(&records, &settings, &held)?;
        let schema = whole.schema();
        let joined =
            arrow::compute::concat_batches(&schema, &slices).map_err(|source| Error::Arrow {
                table: "int_identity_links",
                source,
            })?;
        assert_eq!(joined, whole);
        drop(early);
        clustered.let_links_go();
        let finished = clustered.finish(&records, &settings, &Previous::default())?;
        assert!(finished.links.is_empty());
        assert_eq!(finished.clusters, held.clusters);
        assert_eq!(
            finished.customer_ids_by_cluster,
            held.customer_ids_by_cluster
        );
        assert_eq!(finished.households, held.households);
        assert_eq!(
            finished.household_ids_by_household,
            held.household_ids_by_household
        );
        assert_eq!(finished.summary, held.summary);
        Ok(())
    }

    #[test]
    fn ids_that_cannot_be_read_back_are_an_error_naming_them() -> Result<()> {
        let settings = IdentitySpec::default().validate()?;
        let mut records = Records::new(&settings);
        records.push("crm:1", "crm", &[Some("ann")]);
        let dir = tempfile::tempdir().map_err(Error::spill("a test directory", None))?;
        let aside = records.set_ids_aside(dir.path())?;
        // One record more than were set aside.
        records.push("crm:2", "crm", &[Some("bob")]);
        let back = records.take_ids_back(aside);
        assert!(
            matches!(
                &back,
                Err(Error::Spill {
                    what: "the record ids",
                    ..
                })
            ),
            "{back:?}"
        );
        let message = back.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(
            message.contains("1 ids read back for 2 records"),
            "{message}"
        );
        Ok(())
    }
}
