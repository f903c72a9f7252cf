//! Households: the customers who share a home. After clustering, two customers are one household
//! when a candidate pair of their records has the same postcode and the same or nearly the same
//! street, or the same postcode and the same phone (a landline) or email (a family address), or
//! when records of theirs have the same postcode, city and street with a house number. A
//! phone or email held by more than [`MAX_SHARED_RECORDS`] records is no household's (a
//! switchboard), and the postcode keeps a placeholder too rare to have been set aside (a few
//! `0000000000` in a small base) from joining strangers. A household stops growing at
//! [`MAX_HOUSEHOLD_CUSTOMERS`]: a care home, a block of flats without flat numbers or an office
//! switchboard is not a family, and the joins it would take are counted instead.

use sha2::{Digest, Sha256};

use crate::compared::Pattern;
use crate::records::{Column, NULL, Records};
use crate::spec::{Kind, Settings};

/// Customers in one household at most.
pub const MAX_HOUSEHOLD_CUSTOMERS: u32 = 12;
/// Records sharing a phone or an email at most for it to be a household's.
pub const MAX_SHARED_RECORDS: u32 = 20;

/// What household grouping did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HouseholdReport {
    pub households: u64,
    /// Customers who share their household with another customer.
    pub customers_sharing: u64,
    pub largest: u64,
    /// Joins refused because the household would pass [`MAX_HOUSEHOLD_CUSTOMERS`].
    pub joins_refused_by_size: u64,
}

/// Which candidate pairs say their two records share a home: found by a linking rule (not only by
/// an attaching one: a name without an address), with the same postcode and the same or nearly the
/// same street, or the same postcode and a phone or email few records hold. It needs neither the
/// clusters nor other pairs, so the pairs can be kept as they are first scored and the candidates
/// let go before clustering.
pub struct HomeEvidence<'a> {
    settings: &'a Settings,
    records: &'a Records,
    street: Option<usize>,
    postcode: Option<usize>,
    phone: Option<usize>,
    email: Option<usize>,
    linking: u32,
}

impl<'a> HomeEvidence<'a> {
    pub fn new(settings: &'a Settings, records: &'a Records) -> Self {
        let kind_of = |kind: Kind| settings.comparisons.iter().position(|c| c.kind == kind);
        Self {
            settings,
            records,
            street: kind_of(Kind::Address),
            postcode: kind_of(Kind::Postcode),
            phone: kind_of(Kind::Phone),
            email: kind_of(Kind::Email),
            linking: crate::blocking::linking_rules(settings),
        }
    }

    /// Whether the candidate pair `a`, `b` of `pattern` is evidence that they share a home.
    pub fn shares_a_home(&self, a: u32, b: u32, pattern: &Pattern) -> bool {
        if pattern.mask & self.linking == 0 {
            // Found only by an attaching rule (a name without an address).
            return false;
        }
        let (records, v) = (self.records, &*pattern.levels);
        let exact = |c: Option<usize>| c.is_some_and(|c| v.get(c) == Some(&1));
        // Exact agreement on a value few records hold (`a` holds it).
        let private = |c: Option<usize>| {
            exact(c)
                && c.and_then(|c| records.columns.get(c)).is_some_and(|col| {
                    let code = col.codes.get(a as usize).copied().unwrap_or(NULL);
                    col.counts
                        .get(code as usize)
                        .is_some_and(|n| *n <= MAX_SHARED_RECORDS)
                })
        };
        if !exact(self.postcode) {
            return false;
        }
        // A street nearly the same (a typo) is one address only with the same house and unit
        // numbers and the same street type: "78 Maple St" is not "7 Maple St", nor "252 Mill Cl"
        // "252 Mill Rd".
        let near_street = self.street.is_some_and(|c| {
            self.settings.comparisons[c].level_count() > 3
                && match v.get(c) {
                    Some(1) => true,
                    Some(2) => records.columns.get(c).is_some_and(|col| {
                        match (col.value(a as usize), col.value(b as usize)) {
                            (Some(x), Some(y)) => one_dwelling(x, y),
                            _ => false,
                        }
                    }),
                    _ => false,
                }
        });
        near_street || private(self.phone) || private(self.email)
    }
}

/// [`households`] from the pairs [`HomeEvidence`] kept, in candidate order (the order decides
/// which joins a full household refuses).
pub fn households_of_pairs(
    settings: &Settings,
    records: &Records,
    pairs: impl IntoIterator<Item = (u32, u32)>,
    clusters: &[u32],
) -> (Vec<u32>, HouseholdReport) {
    let customers = clusters.iter().max().map_or(0, |m| *m as usize + 1);
    let mut parent: Vec<u32> = (0..u32::try_from(customers).unwrap_or(u32::MAX)).collect();
    let mut size: Vec<u32> = vec![1; customers];
    fn find(parent: &mut [u32], mut x: u32) -> u32 {
        while parent[x as usize] != x {
            let p = parent[x as usize];
            parent[x as usize] = parent[p as usize];
            x = p;
        }
        x
    }
    let mut report = HouseholdReport::default();
    let mut join = |ca: u32, cb: u32, report: &mut HouseholdReport| {
        let (ra, rb) = (find(&mut parent, ca), find(&mut parent, cb));
        if ra == rb {
            return;
        }
        if size[ra as usize] + size[rb as usize] > MAX_HOUSEHOLD_CUSTOMERS {
            report.joins_refused_by_size += 1;
            return;
        }
        let (big, small) = if size[ra as usize] >= size[rb as usize] {
            (ra, rb)
        } else {
            (rb, ra)
        };
        parent[small as usize] = big;
        size[big as usize] += size[small as usize];
    };
    for (a, b) in pairs {
        let (Some(&ca), Some(&cb)) = (clusters.get(a as usize), clusters.get(b as usize)) else {
            continue;
        };
        if ca != cb {
            join(ca, cb, &mut report);
        }
    }
    // Customers at one address (the same postcode and the same street with a house number) are
    // one household even when no candidate pair joins them: a partner of another surname with no
    // shared phone or email was never a candidate (the blocking rules want one surname).
    // The city, where the records have one, keeps apart two "12 Oak Street" of one large postal
    // area in two suburbs.
    let mut first_at: hashbrown::HashMap<(u32, u32, u32), u32> = hashbrown::HashMap::new();
    let columns = AddressColumns::of(settings, records);
    for (r, &c) in clusters.iter().enumerate() {
        if let Some(key) = columns.as_ref().and_then(|cols| cols.dwelling(r)) {
            // The first customer at the address; joining it to itself does nothing.
            let first = *first_at.entry(key).or_insert(c);
            join(first, c, &mut report);
        }
    }
    let mut number = vec![u32::MAX; customers];
    let mut next = 0u32;
    let mut out = Vec::with_capacity(clusters.len());
    for &c in clusters {
        let root = find(&mut parent, c) as usize;
        if number[root] == u32::MAX {
            number[root] = next;
            next += 1;
            let members = u64::from(size[root]);
            report.largest = report.largest.max(members);
            if members > 1 {
                report.customers_sharing += members;
            }
        }
        out.push(number[root]);
    }
    report.households = u64::from(next);
    (out, report)
}

/// The id of a household: `H` and 16 hex digits of a hash of its first record's id.
pub fn household_id(first_record_id: &str) -> String {
    let digest = Sha256::digest(format!("household:{first_record_id}").as_bytes());
    format!("H{}", &hex::encode(digest)[..16])
}

/// The columns a dwelling is read from: the street (the comparison of kind `address`), the postcode
/// (kind `postcode`) and the city (the comparison of the column named `city`; without one, every
/// record's city is the same unknown).
struct AddressColumns<'a> {
    street: &'a Column,
    postcode: &'a Column,
    city: Option<&'a Column>,
}

impl<'a> AddressColumns<'a> {
    fn of(settings: &Settings, records: &'a Records) -> Option<Self> {
        let column = |at: Option<usize>| at.and_then(|c| records.columns.get(c));
        let kind_of = |kind: Kind| settings.comparisons.iter().position(|c| c.kind == kind);
        Some(Self {
            street: column(kind_of(Kind::Address))?,
            postcode: column(kind_of(Kind::Postcode))?,
            city: column(settings.comparisons.iter().position(|c| c.column == "city")),
        })
    }

    /// The address of record `r` as the household pass keys it (postcode, street and city codes),
    /// when it has a postcode and a street with a house number.
    fn dwelling(&self, r: usize) -> Option<(u32, u32, u32)> {
        let (sc, pc) = (*self.street.codes.get(r)?, *self.postcode.codes.get(r)?);
        if sc == NULL || pc == NULL || !self.street.value(r).is_some_and(has_house_number) {
            return None;
        }
        let cc = self
            .city
            .and_then(|col| col.codes.get(r).copied())
            .unwrap_or(NULL);
        Some((pc, sc, cc))
    }
}

/// The address two records share as one dwelling (the street, postcode and city, as standardised),
/// when the household pass puts their customers in one household by it.
pub fn shared_dwelling(
    settings: &Settings,
    records: &Records,
    a: usize,
    b: usize,
) -> Option<String> {
    let columns = AddressColumns::of(settings, records)?;
    let key = columns.dwelling(a)?;
    if columns.dwelling(b)? != key {
        return None;
    }
    let parts: Vec<&str> = [
        columns.street.value(a),
        columns.postcode.value(a),
        columns.city.and_then(|col| col.value(a)),
    ]
    .into_iter()
    .flatten()
    .collect();
    Some(parts.join(", "))
}

/// A standardised street that names a dwelling by its house number: `"12 oak st"`,
/// `"3 12 oak st"` (written 3/12), `"unit 3 12 oak st"`, `"12 oak st unit 3"`. Not a post box
/// (`"po box 12"`) nor a unit without its building's number (`"unit 3 oak st"`), which could be
/// on any stretch of the street.
fn has_house_number(street: &str) -> bool {
    let mut words = street.split(' ');
    let mut first = words.next();
    if first == Some("unit") {
        words.next();
        first = words.next();
    }
    first.is_some_and(|w| w.starts_with(|c: char| c.is_ascii_digit()))
}

/// Two spellings of a street that may be one dwelling: the same numbers (house, unit) in the same
/// order and the same last word (the street type, once standardised).
fn one_dwelling(a: &str, b: &str) -> bool {
    let numbers = |s: &str| {
        s.split(' ')
            .filter(|w| w.contains(|c: char| c.is_ascii_digit()))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    numbers(a) == numbers(b) && a.rsplit(' ').next() == b.rsplit(' ').next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocking::Candidates;
    use crate::compared::Compared;
    use crate::spec::IdentitySpec;

    /// The household number of every record and the report, from the customers' clusters and
    /// the candidate pairs with their comparison vectors: [`households_of_pairs`] over the pairs
    /// [`HomeEvidence`] keeps, in one walk over every pair (the resolution keeps them as it
    /// scores the pairs).
    fn households(
        settings: &Settings,
        records: &Records,
        candidates: &Candidates,
        compared: &Compared,
        clusters: &[u32],
    ) -> (Vec<u32>, HouseholdReport) {
        let evidence = HomeEvidence::new(settings, records);
        let mut pairs = Vec::new();
        compared.for_each(candidates, |a, b, _, pattern| {
            if evidence.shares_a_home(a, b, pattern) {
                pairs.push((a, b));
            }
        });
        households_of_pairs(settings, records, pairs, clusters)
    }

    fn records_with_phones(settings: &Settings, phones: &[Option<&str>]) -> Records {
        let mut r = Records::new(settings);
        for (i, phone) in phones.iter().enumerate() {
            r.push(
                &format!("r{i}"),
                "s",
                &[None, None, None, None, None, None, *phone, None],
            );
        }
        r
    }

    #[test]
    fn customers_sharing_an_address_or_a_landline_are_one_household() -> Result<(), String> {
        let settings = IdentitySpec::default()
            .validate()
            .map_err(|e| e.to_string())?;
        // Records 0..5; customers: {0, 1}, {2}, {3}, {4}, {5}. Comparisons: first, last, birth,
        // street, postcode, city, phone, email.
        let clusters = [0, 0, 1, 2, 3, 4];
        let landline = Some("01632 960000");
        let records = records_with_phones(&settings, &[None, None, landline, landline, None, None]);
        let same_home = [5u8, 1, 5, 1, 1, 1, 0, 0]; // street and postcode agree
        let phone = [5u8, 4, 5, 3, 1, 4, 1, 0]; // the postcode and the phone agree
        let street_only = [5u8, 1, 5, 1, 4, 1, 0, 0]; // same street, another postcode
        let candidates = Candidates::from_pairs(vec![(1, 2, 1), (2, 3, 1), (4, 5, 1)]);
        let levels: Vec<u8> = [same_home, phone, street_only].concat();
        let compared = Compared::from_levels(&[1, 1, 1], &levels, 8);
        let (h, report) = households(&settings, &records, &candidates, &compared, &clusters);
        assert_eq!(h, vec![0, 0, 0, 0, 1, 2]);
        assert_eq!(report.households, 3);
        assert_eq!(report.customers_sharing, 3);
        assert_eq!(report.largest, 3);
        Ok(())
    }

    #[test]
    fn a_dwelling_is_named_by_its_house_number_after_a_unit_but_not_by_a_post_box() {
        use crate::standardise::address;
        for street in [
            "12 Oak Street",
            "3/12 Oak Street",
            "Unit 3, 12 Oak Street",
            "Flat 3 12 Oak Street",
            "Apt 4B 200 Main St",
            "12 Oak Street Apt 3",
        ] {
            assert!(has_house_number(&address(street)), "{street}");
        }
        for street in [
            "PO Box 12",
            "P.O. Box 12",
            "Unit 3 Oak Street",
            "Oak Street",
            "",
        ] {
            assert!(!has_house_number(&address(street)), "{street}");
        }
    }

    #[test]
    fn a_street_nearly_the_same_is_one_dwelling_only_with_its_numbers_and_street_type() {
        assert!(one_dwelling("12 oak st", "12 oka st"));
        assert!(one_dwelling("unit 3 12 oak st", "unit 3 12 oaks st"));
        assert!(!one_dwelling("78 maple st", "7 maple st"));
        assert!(!one_dwelling("unit 3 12 oak st", "unit 4 12 oak st"));
        assert!(!one_dwelling("252 mill cl", "252 mill rd"));
    }

    #[test]
    fn customers_at_one_numbered_address_are_one_household_without_a_candidate_pair()
    -> Result<(), String> {
        let settings = IdentitySpec::default()
            .validate()
            .map_err(|e| e.to_string())?;
        let mut records = Records::new(&settings);
        // first, last, birth, street, postcode, city, phone, email: partners of two surnames at
        // one address (written two ways), two customers on one street without a number, one at
        // the address in another postcode and one in another suburb of the postcode.
        let rows = [
            ["Ann", "Lee", "12 Oak Street", "2000", "Newtown"],
            ["Bob", "Stone", "12 OAK ST", "2000", "NEWTOWN"],
            ["Cy", "Ray", "Oak Street", "2000", "Newtown"],
            ["Di", "Fox", "Oak Street", "2000", "Newtown"],
            ["Ed", "Lee", "12 Oak Street", "3000", "Newtown"],
            ["Flo", "Hart", "12 Oak Street", "2000", "Enmore"],
        ];
        for (i, [first, last, street, postcode, city]) in rows.iter().enumerate() {
            records.push(
                &format!("r{i}"),
                "s",
                &[
                    Some(*first),
                    Some(*last),
                    None,
                    Some(*street),
                    Some(*postcode),
                    Some(*city),
                    None,
                    None,
                ],
            );
        }
        let clusters = [0, 1, 2, 3, 4, 5];
        let candidates = Candidates::from_pairs(Vec::new());
        let compared = Compared::from_levels(&[], &[], 8);
        let (h, report) = households(&settings, &records, &candidates, &compared, &clusters);
        assert_eq!(h, vec![0, 0, 1, 2, 3, 4], "{report:?}");
        Ok(())
    }

    #[test]
    fn a_household_stops_growing_at_the_cap_and_a_widely_shared_number_joins_nobody()
    -> Result<(), String> {
        let settings = IdentitySpec::default()
            .validate()
            .map_err(|e| e.to_string())?;
        let phone = [5u8, 4, 5, 3, 1, 4, 1, 0];
        let run = |n: u32| {
            // `n` customers on one number, each pair of the first with the others a candidate.
            let clusters: Vec<u32> = (0..n).collect();
            let numbers = vec![Some("020 7946 0000"); n as usize];
            let records = records_with_phones(&settings, &numbers);
            let candidates = Candidates::from_pairs((1..n).map(|b| (0, b, 1)).collect());
            let levels: Vec<u8> = (1..n).flat_map(|_| phone).collect();
            let compared = Compared::from_levels(&vec![1; candidates.len()], &levels, 8);
            households(&settings, &records, &candidates, &compared, &clusters).1
        };
        // Twenty: a switchboard; the household stops at the cap.
        let report = run(20);
        assert_eq!(report.largest, u64::from(MAX_HOUSEHOLD_CUSTOMERS));
        assert_eq!(
            report.joins_refused_by_size,
            u64::from(20 - MAX_HOUSEHOLD_CUSTOMERS)
        );
        // Thirty records share it: no household's number at all.
        let report = run(30);
        assert_eq!((report.largest, report.households), (1, 30));
        Ok(())
    }
}
