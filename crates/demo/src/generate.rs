use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{Duration, FixedOffset, NaiveDate, Offset, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Exp, Gamma};

use crate::names::{
    AU_SUBURBS, CITIES, EMAIL_DOMAINS, FIRST_NAMES, LAST_NAMES, NICKNAMES, STREET_TYPES, STREETS,
    Surnames, US_CITIES,
};

/// Errors of the generator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Options out of range.
    #[error("demo options: {0}")]
    BadOptions(String),
    /// Writing a file failed.
    #[error("i/o error on '{path}': {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Number of persons behind the records.
    pub persons: u64,
    /// Seed: the same seed, persons and as-of date give byte-identical files.
    pub seed: u64,
    /// The last day of history.
    pub as_of: NaiveDate,
    /// The postal and phone system.
    pub country: Country,
    /// Whether the customer base has what real ones have (households, duplicates within one
    /// system, placeholder values); `false` gives the simple demo of earlier versions, for
    /// comparison.
    pub realistic: bool,
}

impl DemoOptions {
    /// The realistic demo of `persons` in Great Britain.
    pub fn new(persons: u64, seed: u64, as_of: NaiveDate) -> Self {
        Self {
            persons,
            seed,
            as_of,
            country: Country::Gb,
            realistic: true,
        }
    }
}

/// The country of the demo retailer: its postal areas, phone numbers and currency of address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Country {
    /// Great Britain: postcodes of about fifteen households, +44.
    #[default]
    Gb,
    /// Australia: four-digit postcodes of thousands of people, +61.
    Au,
    /// The United States: five-digit ZIP codes of thousands of people, +1.
    Us,
}

impl Country {
    /// The calling code, as the identity step's `default_country_code` wants it.
    pub fn calling_code(self) -> &'static str {
        match self {
            Country::Gb => "44",
            Country::Au => "61",
            Country::Us => "1",
        }
    }

    /// The ISO 3166 code.
    pub fn iso(self) -> &'static str {
        match self {
            Country::Gb => "GB",
            Country::Au => "AU",
            Country::Us => "US",
        }
    }

    /// The currency the retailer reports in (ISO 4217).
    pub fn currency(self) -> &'static str {
        match self {
            Country::Gb => "GBP",
            Country::Au => "AUD",
            Country::Us => "USD",
        }
    }

    /// The other currencies the web shop takes (realistic demo), with a typical rate: units of the
    /// reporting currency per unit, and the share of web orders paid in each.
    fn foreign_currencies(self) -> [(&'static str, f64, f64); 2] {
        match self {
            Country::Gb => [("EUR", 0.86, 0.08), ("USD", 0.79, 0.04)],
            Country::Au => [("NZD", 0.92, 0.08), ("USD", 1.52, 0.04)],
            Country::Us => [("CAD", 0.73, 0.08), ("EUR", 1.08, 0.04)],
        }
    }

    /// The codes of [`Country::foreign_currencies`].
    pub fn foreign_currency_codes(self) -> Vec<&'static str> {
        self.foreign_currencies().iter().map(|c| c.0).collect()
    }

    /// The retailer's own customer-service number, typed into accounts when the customer gave none.
    fn shop_phone(self) -> &'static str {
        match self {
            Country::Gb => "020 7946 0000",
            Country::Au => "1300 000 000",
            Country::Us => "(800) 555-0199",
        }
    }
}

/// Counts of what was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoSummary {
    pub persons: u64,
    pub crm_records: u64,
    pub order_log_lines: u64,
    pub web_customers: u64,
    pub web_orders: u64,
    /// Records of the data vendor's demographic file (some of persons who are not customers).
    pub vendor_records: u64,
    /// Rows of the campaign response file: one per contact per campaign.
    pub campaign_contacts: u64,
    /// Service desk tickets.
    pub service_tickets: u64,
    /// Lines written malformed on purpose (they should end in quarantine).
    pub malformed_lines: u64,
    /// Realistic demo: web orders paid in another currency than the reporting one.
    pub foreign_currency_orders: u64,
    /// Realistic demo: corrupted lines that parse as their types and only the job's validation
    /// rules catch: CRM records repeated with a control byte in the name or a letter in the
    /// customer number, and order lines with a mangled customer number. Not in the truth.
    pub corrupted_lines: u64,
    /// Entries of the global suppression list.
    pub suppression_entries: u64,
    /// Households (one per person in the simple demo).
    pub households: u64,
    /// Persons sharing their household with at least one other person.
    pub persons_in_shared_households: u64,
    /// Second accounts of one person within the CRM.
    pub crm_duplicates: u64,
    /// Second accounts of one person within the web shop.
    pub web_duplicates: u64,
    /// Values written as placeholders (`0000000000`, the shop's number, `noemail@example.com`,
    /// `19000101`).
    pub placeholders: u64,
}

/// The legacy CRM layout: (field, first character 1-based, width).
pub const CRM_LAYOUT: [(&str, usize, usize); 12] = [
    ("customer_no", 1, 8),
    ("last_name", 9, 30),
    ("first_name", 39, 20),
    ("street", 59, 40),
    ("postcode", 99, 8),
    ("city", 107, 25),
    ("phone", 132, 20),
    ("email", 152, 50),
    ("birth_date", 202, 8),
    ("opt_out", 210, 1),
    ("created_date", 211, 8),
    ("account_status", 219, 1),
];
const CRM_RECORD_LEN: usize = 219;

/// Share of lines written malformed.
const MALFORMED_ONE_IN: u32 = 300;

/// The exchange rate of a foreign currency in the month of `day`: its typical rate moving a few
/// per cent over the years, deterministic (units of the reporting currency per unit).
fn monthly_rate(typical: f64, day: NaiveDate) -> f64 {
    let month = f64::from(
        chrono::Datelike::year(&day) * 12
            + i32::try_from(chrono::Datelike::month(&day)).unwrap_or(1),
    );
    let rate = typical * (1.0 + 0.04 * (month / 5.0).sin());
    (rate * 1e6).round() / 1e6
}

/// The finance team's rate table: one rate per foreign currency and month over the demo's
/// history (`valid_from` the first of the month), and an undated rate per currency for anything
/// older.
fn write_exchange_rates(out: &mut impl Write, opts: &DemoOptions) -> std::io::Result<()> {
    writeln!(out, "currency,valid_from,rate")?;
    for (code, typical, _) in opts.country.foreign_currencies() {
        writeln!(out, "{code},,{typical}")?;
        let mut month =
            chrono::Datelike::with_day(&(opts.as_of - Duration::days(HISTORY_DAYS + 400)), 1);
        while let Some(m) = month.filter(|m| *m <= opts.as_of) {
            writeln!(
                out,
                "{code},{},{}",
                m.format("%Y-%m-%d"),
                monthly_rate(typical, m)
            )?;
            month = m.checked_add_months(chrono::Months::new(1));
        }
    }
    Ok(())
}
/// Share of CRM records repeated as corrupted copies, and of order lines with a mangled customer
/// number (realistic demo).
const CORRUPTED_COPY_ONE_IN: u32 = 1500;

/// The past campaigns of the campaign response file: id, name, channel, days before the as-of date
/// it was sent.
pub const CAMPAIGNS: [(&str, &str, &str, i64); 8] = [
    ("CMP01", "New year sale", "email", 700),
    ("CMP02", "Spring catalogue", "direct_mail", 610),
    ("CMP03", "Summer sale", "email", 520),
    ("CMP04", "Autumn collection", "email", 430),
    ("CMP05", "Christmas gifts", "direct_mail", 340),
    ("CMP06", "Spring sale", "email", 250),
    ("CMP07", "We miss you", "email", 160),
    ("CMP08", "Autumn preview", "direct_mail", 70),
];

/// Days after a send in which a purchase counts as a response.
const RESPONSE_WINDOW_DAYS: i64 = 14;

const AGE_BANDS: [(u32, &str); 6] = [
    (25, "18-24"),
    (35, "25-34"),
    (45, "35-44"),
    (55, "45-54"),
    (65, "55-64"),
    (200, "65+"),
];
const INCOME_BANDS: [&str; 5] = ["<20k", "20-40k", "40-60k", "60-100k", "100k+"];
const LIFESTYLES: [&str; 6] = [
    "affluent achievers",
    "urban professionals",
    "young families",
    "comfortable retirees",
    "students and starters",
    "rural traditionalists",
];
const INDUSTRIES: [&str; 6] = [
    "retail",
    "manufacturing",
    "professional services",
    "health",
    "hospitality",
    "construction",
];
const EMPLOYEE_BANDS: [&str; 4] = ["1-9", "10-49", "50-249", "250+"];
const TICKET_CATEGORIES: [(&str, &str); 5] = [
    ("complaint", "Item arrived damaged"),
    ("complaint", "Refund not received"),
    ("question", "Question about my order"),
    ("return", "Return request"),
    ("delivery", "Where is my parcel?"),
];

/// How many years of history the demo holds.
const HISTORY_DAYS: i64 = 3 * 365;

#[derive(Clone)]
struct Address {
    street: String,
    postcode: String,
    city: String,
}

struct Person {
    first: String,
    last: String,
    birth: Option<NaiveDate>,
    address: Address,
    /// The person's own (mobile) number, national digits without the trunk 0.
    phone_digits: String,
    /// The household's landline, shared by its members (realistic demo only).
    landline: Option<String>,
    email: String,
    opted_out: bool,
    in_crm: bool,
    in_web: bool,
    purchases: Vec<(NaiveDate, u32, i64)>, // day, quantity, amount in cents
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn address(rng: &mut ChaCha8Rng) -> Address {
    let (city, area) = *pick(rng, CITIES);
    let (full, _abbr) = *pick(rng, STREET_TYPES);
    let letters = b"ABDEFGHJLNPQRSTUWXYZ";
    let l1 = char::from(letters[rng.random_range(0..letters.len())]);
    let l2 = char::from(letters[rng.random_range(0..letters.len())]);
    Address {
        street: format!(
            "{} {} {}",
            rng.random_range(1..300),
            pick(rng, STREETS),
            full
        ),
        postcode: format!(
            "{area}{} {}{l1}{l2}",
            rng.random_range(1..20),
            rng.random_range(1..10)
        ),
        city: city.to_string(),
    }
}

/// An address as a number, for the set of dwellings taken.
fn dwelling_key(a: &Address) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    (&a.street, &a.postcode, &a.city).hash(&mut h);
    h.finish()
}

fn ascii_fold(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            'à' | 'á' | 'â' | 'ä' | 'å' | 'Å' | 'Á' | 'À' => Some('a'),
            'ç' => Some('c'),
            'è' | 'é' | 'ê' | 'ë' => Some('e'),
            'ì' | 'í' | 'î' | 'ï' => Some('i'),
            'ñ' => Some('n'),
            'ò' | 'ó' | 'ô' | 'ö' | 'ø' => Some('o'),
            'ù' | 'ú' | 'û' | 'ü' => Some('u'),
            '\'' | ' ' => None,
            c => Some(c.to_ascii_lowercase()),
        })
        .collect()
}

/// The street with its type abbreviated, as legacy systems often store it: "12 Oak Road" -> "12 Oak Rd".
fn abbreviated(street: &str) -> String {
    for (full, abbr) in STREET_TYPES {
        if let Some(stem) = street.strip_suffix(full) {
            return format!("{stem}{abbr}");
        }
    }
    street.to_string()
}

/// The nickname of a given name, if it has a common one.
fn nickname(first: &str) -> Option<&'static str> {
    NICKNAMES
        .iter()
        .find(|(n, _)| *n == first)
        .map(|(_, nick)| *nick)
}

/// The date with day and month swapped, when that is a date (a classic keying error).
fn transposed(d: NaiveDate) -> Option<NaiveDate> {
    use chrono::Datelike;
    NaiveDate::from_ymd_opt(d.year(), d.day(), d.month()).filter(|t| *t != d)
}

fn with_typo(rng: &mut ChaCha8Rng, s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    if chars.len() < 4 {
        return s.to_string();
    }
    let i = rng.random_range(1..chars.len() - 1);
    if rng.random_bool(0.5) {
        chars.swap(i, i + 1);
    } else {
        chars.remove(i);
    }
    chars.into_iter().collect()
}

/// A phone number as people type it: `digits` are the national digits (without a trunk 0).
fn phone_text_in(rng: &mut ChaCha8Rng, country: Country, digits: &str) -> String {
    match country {
        Country::Gb => {}
        Country::Au => {
            let (a, rest) = digits.split_at(3.min(digits.len()));
            let (b, c) = rest.split_at(3.min(rest.len()));
            return match rng.random_range(0..4) {
                0 => format!("+61 {a} {b} {c}"),
                1 => format!("0{a} {b} {c}"),
                2 => format!("(0{}) {}", &digits[..1], &digits[1..]),
                _ => format!("0{digits}"),
            };
        }
        Country::Us => {
            let (a, rest) = digits.split_at(3.min(digits.len()));
            let (b, c) = rest.split_at(3.min(rest.len()));
            return match rng.random_range(0..4) {
                0 => format!("+1 ({a}) {b}-{c}"),
                1 => format!("({a}) {b}-{c}"),
                2 => format!("{a}-{b}-{c}"),
                _ => digits.to_string(),
            };
        }
    }
    // digits: 10 national digits after the leading 0, e.g. 7700900123
    let (a, b) = digits.split_at(4);
    match rng.random_range(0..4) {
        0 => format!("+44 {a} {b}"),
        1 => format!("0{a} {b}"),
        2 => format!("(0{a}) {}-{}", &b[..3], &b[3..]),
        _ => format!("0{digits}"),
    }
}

/// A person's own email: `first.last<index>@domain`, accents folded.
fn personal_email(first: &str, last: &str, index: u64, domain: &str) -> String {
    format!("{}.{}{index}@{domain}", ascii_fold(first), ascii_fold(last))
}

fn person(rng: &mut ChaCha8Rng, as_of: NaiveDate, index: u64) -> Result<Person, Error> {
    let first = pick(rng, FIRST_NAMES).to_string();
    let last = pick(rng, LAST_NAMES).to_string();
    let birth = rng.random_bool(0.8).then(|| {
        let year = rng.random_range(1940..2006);
        NaiveDate::from_ymd_opt(year, rng.random_range(1..=12), rng.random_range(1..=28))
            .unwrap_or(as_of)
    });
    let membership = rng.random::<f64>();
    let (in_crm, in_web) = if membership < 0.45 {
        (true, false)
    } else if membership < 0.80 {
        (false, true)
    } else {
        (true, true)
    };
    let domain = *pick(rng, EMAIL_DOMAINS);
    let email = personal_email(&first, &last, index, domain);
    let phone_digits = format!("7{:09}", rng.random_range(0..1_000_000_000u64));
    let opted_out = rng.random_bool(0.08);

    let bad = |e: String| Error::BadOptions(e);
    let mut purchases = Vec::new();
    if rng.random_bool(0.85) {
        // Buy till you die: rate ~ Gamma(r, 1/alpha) per day, dropout after each purchase ~ Beta(a, b);
        // spend per purchase ~ Gamma(p, 1/nu) with nu ~ Gamma(q, 1/gamma) (the gamma-gamma model).
        let rate: f64 = Gamma::new(0.9, 1.0 / 75.0)
            .map_err(|e| bad(e.to_string()))?
            .sample(rng);
        let dropout = Beta::new(0.9, 4.0)
            .map_err(|e| bad(e.to_string()))?
            .sample(rng);
        let nu: f64 = Gamma::new(3.74, 1.0 / 15.44)
            .map_err(|e| bad(e.to_string()))?
            .sample(rng);
        let spend = Gamma::<f64>::new(6.25, 1.0 / nu.max(1e-3)).map_err(|e| bad(e.to_string()))?;
        let gap = Exp::new(rate.max(1e-6)).map_err(|e| bad(e.to_string()))?;
        let mut day = as_of - Duration::days(HISTORY_DAYS)
            + Duration::days(rng.random_range(0..HISTORY_DAYS - 7));
        loop {
            let amount = (spend.sample(rng).clamp(0.5, 5000.0) * 100.0).round() as i64;
            let qty = 1 + u32::try_from((amount / 2500).min(8)).unwrap_or(0);
            purchases.push((day, qty, amount));
            if purchases.len() >= 300 || rng.random_bool(dropout) {
                break;
            }
            day += Duration::days(gap.sample(rng).ceil().max(1.0) as i64);
            if day > as_of {
                break;
            }
        }
    }
    Ok(Person {
        first,
        last,
        birth,
        address: address(rng),
        phone_digits,
        landline: None,
        email,
        opted_out,
        in_crm,
        in_web,
        purchases,
    })
}

/// The placeholders legacy systems hold where a value was required and unknown.
const PLACEHOLDER_PHONE: &str = "0000000000";
const PLACEHOLDER_EMAIL: &str = "noemail@example.com";
const PLACEHOLDER_BIRTH: &str = "19000101";

/// Where people live: British postcodes of a few households, or large Australian postcodes and
/// American ZIP codes (about 2,500 of the demo's persons each, at any size).
#[derive(Debug, Clone, Copy)]
struct Postal {
    country: Country,
    areas: u64,
}

impl Postal {
    fn of(opts: &DemoOptions) -> Self {
        Self {
            country: opts.country,
            areas: (opts.persons / 2_500).clamp(20, 6_000),
        }
    }

    fn address(&self, rng: &mut ChaCha8Rng) -> Address {
        if self.country == Country::Gb {
            return address(rng);
        }
        let area = rng.random_range(0..self.areas);
        let (full, _abbr) = *pick(rng, STREET_TYPES);
        let street = format!(
            "{} {} {}",
            rng.random_range(1..300),
            pick(rng, STREETS),
            full
        );
        let (postcode, city) = if self.country == Country::Au {
            // 37 and 6,000 share no factor: every area has its own postcode.
            let suburb = (area as usize * 3 + rng.random_range(0..2usize)) % AU_SUBURBS.len();
            (format!("{}", 2_000 + area * 37 % 6_000), AU_SUBURBS[suburb])
        } else {
            (
                format!("{:05}", 10_000 + area * 131 % 89_000),
                US_CITIES[area as usize % US_CITIES.len()],
            )
        };
        Address {
            street,
            postcode,
            city: city.to_string(),
        }
    }

    /// A mobile number's national digits.
    fn mobile(&self, rng: &mut ChaCha8Rng) -> String {
        match self.country {
            Country::Gb => format!("7{:09}", rng.random_range(0..1_000_000_000u64)),
            Country::Au => format!("4{:08}", rng.random_range(0..100_000_000u64)),
            Country::Us => us_number(rng),
        }
    }

    /// A landline's national digits.
    fn landline(&self, rng: &mut ChaCha8Rng) -> String {
        match self.country {
            Country::Gb => format!("1{:09}", rng.random_range(0..1_000_000_000u64)),
            Country::Au => format!(
                "{}{:08}",
                [2, 3, 7, 8][rng.random_range(0..4usize)],
                rng.random_range(0..100_000_000u64)
            ),
            Country::Us => us_number(rng),
        }
    }

    /// The share of households with a landline.
    fn landline_share(&self) -> f64 {
        match self.country {
            Country::Gb => 0.55,
            Country::Au => 0.45,
            Country::Us => 0.4,
        }
    }
}

/// Ten digits: an area code (200 to 989), an exchange (200 to 999) and a line.
fn us_number(rng: &mut ChaCha8Rng) -> String {
    format!(
        "{}{}{:04}",
        rng.random_range(200..990u32),
        rng.random_range(200..1000u32),
        rng.random_range(0..10_000u32)
    )
}

/// The household being filled: its first member's details, which the others share.
struct Household {
    id: u64,
    left: u32,
    members: u32,
    first: String,
    last: String,
    birth: Option<NaiveDate>,
    address: Address,
    landline: Option<String>,
    family_email: Option<String>,
    last_child_birth: Option<NaiveDate>,
    /// The first names its members have so far.
    firsts: Vec<String>,
}

/// Places person `index` in a household and makes them look like one: consecutive persons form
/// households of one to six (28%, 35%, 15%, 14%, 6%, 2%). Members share the address and the
/// landline; a partner usually and a child nearly always takes the surname; a partner is born
/// within five years of the first member and a child 22 to 38 years after; one child in ten after the
/// first is a twin (the same birth date), one in twenty-five has a parent's first name (Jr/Sr);
/// otherwise no two members share a first name (siblings are not given one name); one
/// multi-person household in seven has a family email the adults often use. Returns the
/// household id.
fn join_household(
    world: &mut ChaCha8Rng,
    home: &mut Option<Household>,
    p: &mut Person,
    postal: Postal,
    index: u64,
    summary: &mut DemoSummary,
    homes: &mut HashSet<u64>,
) -> u64 {
    use chrono::Datelike;
    let h = match home {
        Some(h) if h.left > 0 => h,
        _ => {
            // Every household its own dwelling: house number, street, suburb and postcode drawn
            // again while another household has them (no two unrelated families live at one
            // address without a flat number; in a postcode of 2,500 people, drawing at random
            // gave about one household in 200 another's address).
            for _ in 0..100 {
                if homes.insert(dwelling_key(&p.address)) {
                    break;
                }
                p.address = postal.address(world);
            }
            let size: u32 = match world.random_range(0..100) {
                0..28 => 1,
                28..63 => 2,
                63..78 => 3,
                78..92 => 4,
                92..98 => 5,
                _ => 6,
            };
            let landline = world
                .random_bool(postal.landline_share())
                .then(|| postal.landline(world));
            let family_email = (size > 1 && world.random_bool(0.15)).then(|| {
                format!(
                    "the{}family{index}@{}",
                    ascii_fold(&p.last),
                    pick(world, EMAIL_DOMAINS)
                )
            });
            p.landline.clone_from(&landline);
            if let Some(e) = family_email.as_ref().filter(|_| world.random_bool(0.6)) {
                p.email.clone_from(e);
            }
            summary.households += 1;
            if size > 1 {
                summary.persons_in_shared_households += 1;
            }
            *home = Some(Household {
                id: index,
                left: size - 1,
                members: 1,
                first: p.first.clone(),
                last: p.last.clone(),
                birth: p.birth,
                address: p.address.clone(),
                landline,
                family_email,
                last_child_birth: None,
                firsts: vec![p.first.clone()],
            });
            return index;
        }
    };
    h.left -= 1;
    h.members += 1;
    summary.persons_in_shared_households += 1;
    for _ in 0..50 {
        if !h.firsts.contains(&p.first) {
            break;
        }
        p.first = pick(world, FIRST_NAMES).to_string();
    }
    p.address = h.address.clone();
    p.landline.clone_from(&h.landline);
    let born = |year: i32, rng: &mut ChaCha8Rng| {
        NaiveDate::from_ymd_opt(
            year.min(2007),
            rng.random_range(1..=12),
            rng.random_range(1..=28),
        )
    };
    if h.members == 2 {
        // A partner.
        if world.random_bool(0.75) {
            p.last.clone_from(&h.last);
        }
        if let (Some(_), Some(hb)) = (p.birth, h.birth) {
            p.birth = born(hb.year() + world.random_range(-5..=5), world);
        }
        if let Some(e) = h.family_email.as_ref().filter(|_| world.random_bool(0.6)) {
            p.email.clone_from(e);
        }
    } else {
        // A child.
        if world.random_bool(0.95) {
            p.last.clone_from(&h.last);
        }
        if h.last_child_birth.is_some() && world.random_bool(0.1) {
            p.birth = h.last_child_birth;
        } else {
            if let (Some(_), Some(hb)) = (p.birth, h.birth) {
                p.birth = born(hb.year() + world.random_range(22..=38), world);
            }
            if world.random_bool(0.04) {
                p.first.clone_from(&h.first);
            }
        }
        h.last_child_birth = p.birth;
    }
    h.firsts.push(p.first.clone());
    h.id
}

/// A time-zone offset of a web shop visitor: UTC, +01:00, -05:00 or +02:00.
fn pick_offset(rng: &mut ChaCha8Rng) -> FixedOffset {
    const OFFSETS: [i32; 4] = [0, 3600, -5 * 3600, 2 * 3600];
    FixedOffset::east_opt(OFFSETS[rng.random_range(0..OFFSETS.len())]).unwrap_or_else(|| Utc.fix())
}

/// ISO 8601 with the offset, as web shops export it: `2025-03-01T10:00:00+02:00`.
fn local_timestamp(offset: FixedOffset, at: chrono::NaiveDateTime) -> String {
    offset
        .from_local_datetime(&at)
        .single()
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%:z").to_string())
        .unwrap_or_default()
}

/// Cuts or pads to exactly `width` characters.
fn fixed(out: &mut String, value: &str, width: usize) {
    let mut n = 0;
    for c in value.chars().take(width) {
        out.push(c);
        n += 1;
    }
    for _ in n..width {
        out.push(' ');
    }
}

fn latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

struct Writers {
    crm: BufWriter<File>,
    order_log: BufWriter<File>,
    web_customers: BufWriter<File>,
    web_orders: BufWriter<File>,
    truth: BufWriter<File>,
    vendor: BufWriter<File>,
    campaigns: BufWriter<File>,
    tickets: BufWriter<File>,
    suppression: BufWriter<File>,
    rates: BufWriter<File>,
}

fn create(path: &Path) -> Result<BufWriter<File>, Error> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    File::create(path)
        .map(|f| BufWriter::with_capacity(1 << 20, f))
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes the demo sources below `dir` (see the crate docs for the files).
pub fn generate(dir: &Path, opts: &DemoOptions) -> Result<DemoSummary, Error> {
    if opts.persons == 0 || opts.persons > 50_000_000 {
        return Err(Error::BadOptions(format!(
            "persons must be between 1 and 50,000,000, not {}",
            opts.persons
        )));
    }
    let paths = [
        dir.join("sources/crm/customers.dat"),
        dir.join("sources/orders/order_log.txt"),
        dir.join("sources/web/customers.jsonl"),
        dir.join("sources/web/orders.csv"),
        dir.join("truth/person_map.csv"),
        dir.join("sources/vendor/demographics.csv"),
        dir.join("sources/campaigns/responses.csv"),
        dir.join("sources/service/tickets.csv"),
        dir.join("sources/suppression/do_not_contact.csv"),
        dir.join("sources/finance/exchange_rates.csv"),
    ];
    let mut w = Writers {
        crm: create(&paths[0])?,
        order_log: create(&paths[1])?,
        web_customers: create(&paths[2])?,
        web_orders: create(&paths[3])?,
        truth: create(&paths[4])?,
        vendor: create(&paths[5])?,
        campaigns: create(&paths[6])?,
        tickets: create(&paths[7])?,
        suppression: create(&paths[8])?,
        rates: create(&paths[9])?,
    };
    let paths = &paths;
    let io = |i: usize| {
        move |source| Error::Io {
            path: paths[i].clone(),
            source,
        }
    };
    writeln!(
        w.web_orders,
        "order_id,customer_id,ordered_at,items,total_amount,currency"
    )
    .map_err(io(3))?;
    writeln!(w.truth, "source,record_id,person_id,household_id").map_err(io(4))?;
    writeln!(
        w.vendor,
        "VENDOR_REF,FORENAME,SURNAME,ADDRESS1,POSTCODE,TOWN,AGE_BAND,INCOME_BAND,HOUSEHOLD_SIZE,TENURE,LIFESTYLE,BUSINESS,INDUSTRY,EMPLOYEES"
    )
    .map_err(io(5))?;
    writeln!(
        w.campaigns,
        "contact_id,email,first_name,last_name,postcode,campaign_id,campaign_name,channel,sent_date,responded,response_date,unsubscribed"
    )
    .map_err(io(6))?;
    writeln!(
        w.tickets,
        "ticket_id,requester_id,requester_name,requester_email,requester_phone,opened_at,closed_at,category,status,subject"
    )
    .map_err(io(7))?;
    writeln!(w.suppression, "email,phone,reason").map_err(io(8))?;
    write_exchange_rates(&mut w.rates, opts).map_err(io(9))?;

    let mut summary = DemoSummary {
        persons: opts.persons,
        ..DemoSummary::default()
    };
    let (mut crm_seq, mut web_seq, mut order_seq) = (0u64, 0u64, 0u64);
    let mut seq = Sequences::default();
    let mut line = String::with_capacity(CRM_RECORD_LEN + 8);
    let postal = Postal::of(opts);
    // The realistic demo's own randomness (households, duplicates, placeholders), apart from each
    // person's stream, so that the simple demo stays as it was.
    let mut world = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x5245_414c_4953_5449);
    // Corrupted copies have a stream of their own, so that everything else stays as it was; so
    // does the currency of each web order.
    let mut garble = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x4741_5242_4c45_4421);
    let mut pricing = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x4355_5252_454e_4359);
    // Surnames with a real population's skew (realistic demo), from a stream of their own too.
    let surnames = Surnames::new();
    let mut naming = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x5355_524e_414d_4553);
    let mut home: Option<Household> = None;
    // The dwellings households (and the vendor's unknown persons) have taken, as numbers.
    let mut homes: HashSet<u64> = HashSet::new();
    for index in 0..opts.persons {
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        rng.set_stream(index);
        let mut p = person(&mut rng, opts.as_of, index)?;
        if opts.realistic {
            p.last = surnames.pick(&mut naming);
            let domain = p.email.rsplit('@').next().unwrap_or_default().to_string();
            p.email = personal_email(&p.first, &p.last, index, &domain);
        }
        if opts.country != Country::Gb {
            p.address = postal.address(&mut rng);
            p.phone_digits = postal.mobile(&mut rng);
        }
        // About one person in ninety asked never to be contacted again (a complaint to the
        // regulator, a legal request): the global suppression list has their email, in capitals,
        // or their phone, in another format than any source. Chosen by index so that the rest of
        // the data does not change.
        if index % 89 == 7 {
            if index % 2 == 0 {
                writeln!(
                    w.suppression,
                    "{},,regulator complaint",
                    p.email.to_uppercase()
                )
            } else {
                match opts.country {
                    Country::Gb => {
                        writeln!(w.suppression, ",+44 (0){},legal request", p.phone_digits)
                    }
                    c => writeln!(
                        w.suppression,
                        ",+{} {},legal request",
                        c.calling_code(),
                        p.phone_digits
                    ),
                }
            }
            .map_err(io(8))?;
            summary.suppression_entries += 1;
        }
        let household = if opts.realistic {
            join_household(
                &mut world,
                &mut home,
                &mut p,
                postal,
                index,
                &mut summary,
                &mut homes,
            )
        } else {
            summary.households += 1;
            index
        };
        // The truth key: the person, then the household (the truth file's last two columns).
        let person_id = format!("P{index:08},H{household:08}");
        let first_day = p.purchases.first().map_or(
            opts.as_of - Duration::days(rng.random_range(30..HISTORY_DAYS)),
            |x| x.0,
        );
        let web_first = p.in_crm && p.in_web;

        let mut crm_no = 0u64;
        if p.in_crm {
            crm_seq += 1;
            crm_no = crm_seq;
            let no = format!("{crm_seq:08}");
            line.clear();
            let mut crm_email = if rng.random_bool(0.4) {
                String::new()
            } else {
                p.email.clone()
            };
            if opts.realistic && crm_email.is_empty() && world.random_bool(0.1) {
                crm_email = PLACEHOLDER_EMAIL.to_string();
                summary.placeholders += 1;
            }
            let opt_out = if p.opted_out && rng.random_bool(0.9) {
                "Y"
            } else {
                "N"
            };
            let mut birth = p.birth.map_or_else(
                || "00000000".to_string(),
                |d| d.format("%Y%m%d").to_string(),
            );
            if opts.realistic && p.birth.is_none() && world.random_bool(0.15) {
                birth = PLACEHOLDER_BIRTH.to_string();
                summary.placeholders += 1;
            }
            let created = (first_day - Duration::days(rng.random_range(0..30)))
                .format("%Y%m%d")
                .to_string();
            // The CRM often holds the household's landline rather than the person's mobile.
            let digits = match &p.landline {
                Some(l) if world.random_bool(0.6) => l.as_str(),
                _ => p.phone_digits.as_str(),
            };
            let mut phone = phone_text_in(&mut rng, opts.country, digits);
            if opts.realistic && world.random_bool(0.03) {
                phone = PLACEHOLDER_PHONE.to_string();
                summary.placeholders += 1;
            }
            let street = if rng.random_bool(0.5) {
                abbreviated(&p.address.street)
            } else {
                p.address.street.clone()
            };
            for (value, (_, _, width)) in [
                no.as_str(),
                &p.last.to_uppercase(),
                &p.first.to_uppercase(),
                &street.to_uppercase(),
                &p.address.postcode,
                &p.address.city.to_uppercase(),
                &phone,
                &crm_email,
                &birth,
                opt_out,
                &created,
                // About one CRM account in 150 is closed (chosen by index: the rest of the data
                // stays as it was).
                if index % 151 == 3 { "C" } else { "A" },
            ]
            .into_iter()
            .zip(CRM_LAYOUT)
            {
                fixed(&mut line, value, width);
            }
            if rng.random_ratio(1, MALFORMED_ONE_IN) {
                summary.malformed_lines += 1;
                let kind = rng.random_range(0..3);
                // The cut is drawn for a cut line only, so the seeded demo stays as it was.
                let cut = if kind == 0 {
                    rng.random_range(20..200)
                } else {
                    0
                };
                malform_crm_line(&mut line, kind, cut);
            }
            let mut bytes = latin1(&line);
            bytes.push(b'\n');
            w.crm.write_all(&bytes).map_err(io(0))?;
            writeln!(w.truth, "crm_customers,{no},{person_id}").map_err(io(4))?;
            summary.crm_records += 1;
            // About one CRM record in 1,500 is repeated as a corrupted copy (a transfer garbled a
            // block): a control byte in the surname, or a letter in the customer number. Copies
            // are not in the truth: the job's validation rules quarantine them.
            if opts.realistic && garble.random_ratio(1, CORRUPTED_COPY_ONE_IN) {
                let mut chars: Vec<char> = line.chars().collect();
                let (at, c) = if garble.random_bool(0.5) {
                    (
                        8 + garble.random_range(1..4),
                        *pick(&mut garble, &['\u{7}', '\u{1a}', '\u{0}']),
                    )
                } else {
                    (
                        garble.random_range(2..8),
                        *pick(&mut garble, &['A', 'O', 'l']),
                    )
                };
                if let Some(slot) = chars.get_mut(at) {
                    *slot = c;
                }
                let mut bytes = latin1(&chars.into_iter().collect::<String>());
                bytes.push(b'\n');
                w.crm.write_all(&bytes).map_err(io(0))?;
                summary.corrupted_lines += 1;
            }
            // About one CRM customer in seventy has a second account: a branch did not find the
            // first, so the name is keyed again (sometimes with a typo), often at an older address,
            // with another phone or none, usually no email, and an opt-out that did not carry over.
            if opts.realistic && world.random_bool(0.015) {
                crm_seq += 1;
                let no = format!("{crm_seq:08}");
                let first = if world.random_bool(0.15) {
                    with_typo(&mut world, &p.first)
                } else {
                    p.first.clone()
                };
                let addr = if world.random_bool(0.7) {
                    p.address.clone()
                } else {
                    postal.address(&mut world)
                };
                let street = if world.random_bool(0.5) {
                    abbreviated(&addr.street)
                } else {
                    addr.street.clone()
                };
                let phone = match world.random_range(0..3) {
                    0 => String::new(),
                    1 => phone_text_in(&mut world, opts.country, &p.phone_digits),
                    _ => phone_text_in(
                        &mut world,
                        opts.country,
                        p.landline.as_deref().unwrap_or(&p.phone_digits),
                    ),
                };
                let email = if world.random_bool(0.25) {
                    p.email.clone()
                } else {
                    String::new()
                };
                let birth = match p.birth {
                    Some(d) if world.random_bool(0.6) => d.format("%Y%m%d").to_string(),
                    _ => "00000000".to_string(),
                };
                let opt_out = if p.opted_out && world.random_bool(0.5) {
                    "Y"
                } else {
                    "N"
                };
                let created = (first_day + Duration::days(world.random_range(30..400)))
                    .min(opts.as_of)
                    .format("%Y%m%d")
                    .to_string();
                line.clear();
                for (value, (_, _, width)) in [
                    no.as_str(),
                    &p.last.to_uppercase(),
                    &first.to_uppercase(),
                    &street.to_uppercase(),
                    &addr.postcode,
                    &addr.city.to_uppercase(),
                    &phone,
                    &email,
                    &birth,
                    opt_out,
                    &created,
                    "A",
                ]
                .into_iter()
                .zip(CRM_LAYOUT)
                {
                    fixed(&mut line, value, width);
                }
                let mut bytes = latin1(&line);
                bytes.push(b'\n');
                w.crm.write_all(&bytes).map_err(io(0))?;
                writeln!(w.truth, "crm_customers,{no},{person_id}").map_err(io(4))?;
                summary.crm_records += 1;
                summary.crm_duplicates += 1;
            }
        }

        let mut web_id = String::new();
        if p.in_web {
            web_seq += 1;
            web_id = format!("W{web_seq:07}");
            // Persons known to both systems differ in small ways, as they do in real data.
            let (first, last) = if web_first && rng.random_bool(0.15) {
                (with_typo(&mut rng, &p.first), p.last.clone())
            } else if let Some(nick) = nickname(&p.first).filter(|_| rng.random_bool(0.3)) {
                (nick.to_string(), p.last.clone())
            } else {
                (p.first.clone(), p.last.clone())
            };
            let addr = if web_first && rng.random_bool(0.25) {
                postal.address(&mut rng)
            } else {
                p.address.clone()
            };
            let email = if web_first && rng.random_bool(0.3) {
                format!(
                    "{}{}@{}",
                    ascii_fold(&first),
                    rng.random_range(1..999),
                    pick(&mut rng, EMAIL_DOMAINS)
                )
            } else if rng.random_bool(0.3) {
                format!(" {} ", p.email.to_uppercase())
            } else {
                p.email.clone()
            };
            let offset = pick_offset(&mut rng);
            let created_day = first_day - Duration::days(rng.random_range(0..30));
            let created = created_day
                .and_hms_opt(
                    rng.random_range(7..23),
                    rng.random_range(0..60),
                    rng.random_range(0..60),
                )
                .unwrap_or_default();
            let created_text = local_timestamp(offset, created);
            let consent = !(p.opted_out && rng.random_bool(0.9));
            let phone = if rng.random_bool(0.7) {
                let digits = match &p.landline {
                    Some(l) if world.random_bool(0.15) => l.as_str(),
                    _ => p.phone_digits.as_str(),
                };
                let text = phone_text_in(&mut rng, opts.country, digits);
                if opts.realistic && world.random_bool(0.02) {
                    summary.placeholders += 1;
                    serde_json::Value::String(opts.country.shop_phone().to_string())
                } else {
                    serde_json::Value::String(text)
                }
            } else {
                serde_json::Value::Null
            };
            let birth = match p.birth {
                Some(d) if rng.random_bool(0.7) => {
                    let d = transposed(d).filter(|_| rng.random_bool(0.05)).unwrap_or(d);
                    serde_json::Value::String(d.format("%Y-%m-%d").to_string())
                }
                _ => serde_json::Value::Null,
            };
            let record = serde_json::json!({
                "id": web_id,
                "email": email,
                "name": { "first": first, "last": last },
                "address": { "street": addr.street, "postcode": addr.postcode, "city": addr.city, "country": opts.country.iso() },
                "phone": phone,
                "birth_date": birth,
                "created_at": created_text,
                "marketing_consent": consent,
            });
            let mut text = record.to_string();
            if rng.random_ratio(1, MALFORMED_ONE_IN) {
                summary.malformed_lines += 1;
                if rng.random_bool(0.5) {
                    let cut = text.len() / 2;
                    text.truncate(
                        text.char_indices()
                            .map(|(i, _)| i)
                            .take_while(|i| *i <= cut)
                            .last()
                            .unwrap_or(0),
                    );
                } else {
                    text = text.replace(&created_text, "not a date");
                }
            }
            writeln!(w.web_customers, "{text}").map_err(io(2))?;
            writeln!(w.truth, "web_customers,{web_id},{person_id}").map_err(io(4))?;
            summary.web_customers += 1;
            // Some people open a second account (a forgotten password, a work email): same name and
            // address, another email, usually no phone.
            if rng.random_bool(0.04) {
                web_seq += 1;
                let second_id = format!("W{web_seq:07}");
                let mut second = record.clone();
                second["id"] = serde_json::Value::String(second_id.clone());
                second["email"] = serde_json::Value::String(format!(
                    "{}.{}{}@{}",
                    ascii_fold(&p.first),
                    ascii_fold(&p.last),
                    rng.random_range(100..999),
                    pick(&mut rng, EMAIL_DOMAINS)
                ));
                if rng.random_bool(0.7) {
                    second["phone"] = serde_json::Value::Null;
                }
                writeln!(w.web_customers, "{second}").map_err(io(2))?;
                writeln!(w.truth, "web_customers,{second_id},{person_id}").map_err(io(4))?;
                summary.web_customers += 1;
                summary.web_duplicates += 1;
            }
        }

        for &(day, qty, cents) in &p.purchases {
            let to_web = match (p.in_crm, p.in_web) {
                (true, false) => false,
                (false, true) => true,
                _ => rng.random_bool(0.5),
            };
            let amount = format!("{}.{:02}", cents / 100, cents % 100);
            if to_web {
                order_seq += 1;
                let offset = pick_offset(&mut rng);
                let at = day
                    .and_hms_opt(
                        rng.random_range(8..22),
                        rng.random_range(0..60),
                        rng.random_range(0..60),
                    )
                    .unwrap_or_default();
                let at_text = local_timestamp(offset, at);
                // The realistic shop takes other currencies too: the amount is written in the
                // currency paid, at the month's rate.
                let mut paid = (amount.clone(), opts.country.currency());
                if opts.realistic {
                    let draw: f64 = pricing.random();
                    let mut share = 0.0;
                    for (code, typical, part) in opts.country.foreign_currencies() {
                        share += part;
                        if draw < share {
                            let foreign = (cents as f64 / 100.0) / monthly_rate(typical, day);
                            paid = (format!("{foreign:.2}"), code);
                            summary.foreign_currency_orders += 1;
                            break;
                        }
                    }
                }
                let (amount, currency) = paid;
                let mut text =
                    format!("WO{order_seq:09},{web_id},{at_text},{qty},{amount},{currency}");
                if rng.random_ratio(1, MALFORMED_ONE_IN) {
                    summary.malformed_lines += 1;
                    text = if rng.random_bool(0.5) {
                        text.replace(&amount, "12.x5")
                    } else {
                        format!("{text},extra")
                    };
                }
                writeln!(w.web_orders, "{text}").map_err(io(3))?;
                summary.web_orders += 1;
            } else {
                let mut text = format!(
                    "{crm_no:08} {} {qty:>3} {:>9}",
                    day.format("%Y%m%d"),
                    amount
                );
                // A mangled customer number (`00A12345`) now and then, as legacy extracts have.
                if opts.realistic && garble.random_ratio(1, CORRUPTED_COPY_ONE_IN) {
                    let at = garble.random_range(2..8);
                    text.replace_range(at..at + 1, "A");
                    summary.corrupted_lines += 1;
                }
                if rng.random_ratio(1, MALFORMED_ONE_IN) {
                    summary.malformed_lines += 1;
                    text = match rng.random_range(0..3) {
                        0 => text.replace(&amount, "12.x5"),
                        1 => format!("{crm_no:08} {}", day.format("%Y%m%d")),
                        _ => format!(
                            "{crm_no:08} {} {qty:>3} {:>9}",
                            day.format("%Y0231"),
                            amount
                        ),
                    };
                }
                writeln!(w.order_log, "{text}").map_err(io(1))?;
                summary.order_log_lines += 1;
            }
        }
        // The sources that came later to the demo draw their randomness last, so that the files
        // above stay the same for a seed.
        let known_since = if p.in_crm || p.in_web {
            Some(first_day - Duration::days(30))
        } else {
            None
        };
        vendor_record(
            &mut w,
            &mut rng,
            &p,
            &person_id,
            opts,
            &surnames,
            &mut seq,
            &mut summary,
            &mut homes,
        )?;
        if let Some(since) = known_since {
            campaign_rows(
                &mut w,
                &mut rng,
                &p,
                &person_id,
                since,
                opts,
                &mut seq,
                &mut summary,
            )?;
        }
        service_tickets(
            &mut w,
            &mut rng,
            &p,
            &person_id,
            opts,
            &mut seq,
            &mut summary,
        )?;
    }
    for (i, writer) in [
        &mut w.crm,
        &mut w.order_log,
        &mut w.web_customers,
        &mut w.web_orders,
        &mut w.truth,
        &mut w.vendor,
        &mut w.campaigns,
        &mut w.tickets,
        &mut w.suppression,
        &mut w.rates,
    ]
    .into_iter()
    .enumerate()
    {
        writer.flush().map_err(io(i))?;
    }
    Ok(summary)
}

/// Record numbers of the later sources.
#[derive(Default)]
struct Sequences {
    vendor: u64,
    contact: u64,
    requester: u64,
    ticket: u64,
}

fn io_err(path: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: PathBuf::from(path),
        source,
    }
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The data vendor's append: about two persons in three, keyed only by name and address (names in
/// capitals, one forename in five cut to its initial, streets often abbreviated), with
/// demographic, psychographic and firmographic attributes; plus persons who are not customers
/// (surnames from `surnames` in the realistic demo).
#[allow(clippy::too_many_arguments)]
fn vendor_record(
    w: &mut Writers,
    rng: &mut ChaCha8Rng,
    p: &Person,
    person_id: &str,
    opts: &DemoOptions,
    surnames: &Surnames,
    seq: &mut Sequences,
    summary: &mut DemoSummary,
    homes: &mut HashSet<u64>,
) -> Result<(), Error> {
    let path = "sources/vendor/demographics.csv";
    let mean_spend = if p.purchases.is_empty() {
        None
    } else {
        Some(p.purchases.iter().map(|x| x.2).sum::<i64>() / p.purchases.len() as i64)
    };
    let mut write = |rng: &mut ChaCha8Rng,
                     first: &str,
                     last: &str,
                     addr: &Address,
                     birth: Option<NaiveDate>,
                     spend: Option<i64>,
                     truth_id: &str|
     -> Result<(), Error> {
        seq.vendor += 1;
        let vendor_ref = format!("V{:08}", seq.vendor);
        let forename = if rng.random_bool(0.2) {
            first.chars().take(1).collect::<String>()
        } else {
            first.to_string()
        };
        let street = if rng.random_bool(0.5) {
            abbreviated(&addr.street)
        } else {
            addr.street.clone()
        };
        let age = birth.map(|b| opts.as_of.years_since(b).unwrap_or(0));
        let age_band = match age {
            Some(a) => AGE_BANDS
                .iter()
                .find(|(limit, _)| a < *limit)
                .map_or("65+", |x| x.1),
            None => AGE_BANDS[rng.random_range(0..AGE_BANDS.len())].1,
        };
        // Income follows spend (a customer's average order), give or take a band.
        let base = match spend {
            Some(c) if c >= 12_000 => 4,
            Some(c) if c >= 8_000 => 3,
            Some(c) if c >= 5_000 => 2,
            Some(c) if c >= 3_000 => 1,
            Some(_) => 0,
            None => rng.random_range(0..5),
        };
        let income = (base + rng.random_range(0..3usize))
            .saturating_sub(1)
            .min(4);
        let business = rng.random_bool(0.08);
        let (industry, employees) = if business {
            (*pick(rng, &INDUSTRIES), *pick(rng, &EMPLOYEE_BANDS))
        } else {
            ("", "")
        };
        let tenure = match rng.random_range(0..10) {
            0..=5 => "OWNER",
            6..=8 => "RENTER",
            _ => "",
        };
        let fields = [
            vendor_ref.clone(),
            forename.to_uppercase(),
            last.to_uppercase(),
            street.to_uppercase(),
            addr.postcode.clone(),
            addr.city.to_uppercase(),
            age_band.to_string(),
            INCOME_BANDS[income].to_string(),
            rng.random_range(1..=5u32).to_string(),
            tenure.to_string(),
            pick(rng, &LIFESTYLES).to_string(),
            if business { "Y" } else { "N" }.to_string(),
            industry.to_string(),
            employees.to_string(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        writeln!(w.vendor, "{}", line.join(",")).map_err(io_err(path))?;
        writeln!(w.truth, "vendor_demographics,{vendor_ref},{truth_id}")
            .map_err(io_err("truth/person_map.csv"))?;
        summary.vendor_records += 1;
        Ok(())
    };
    if rng.random_bool(0.65) {
        write(
            rng, &p.first, &p.last, &p.address, p.birth, mean_spend, person_id,
        )?;
    }
    if rng.random_bool(0.1) {
        // Somebody the retailer does not know.
        let first = pick(rng, FIRST_NAMES).to_string();
        let last = if opts.realistic {
            surnames.pick(rng)
        } else {
            pick(rng, LAST_NAMES).to_string()
        };
        let mut addr = Postal::of(opts).address(rng);
        if opts.realistic {
            // At an address of its own: a vendor's record of somebody at a customer's own address
            // is somebody who lives there, one household with them.
            for _ in 0..100 {
                if homes.insert(dwelling_key(&addr)) {
                    break;
                }
                addr = Postal::of(opts).address(rng);
            }
        }
        let id = person_id.get(1..9).unwrap_or_default();
        let other = format!("N{id},HN{id}");
        write(rng, &first, &last, &addr, None, None, &other)?;
    }
    Ok(())
}

/// The campaign tool's response file: one row per contact per campaign. Known persons who have not
/// opted out are contacted now and then; a purchase within two weeks of a send is a response
/// (most of the time), and a few respond without buying. One contact in a hundred unsubscribes.
#[allow(clippy::too_many_arguments)]
fn campaign_rows(
    w: &mut Writers,
    rng: &mut ChaCha8Rng,
    p: &Person,
    person_id: &str,
    known_since: NaiveDate,
    opts: &DemoOptions,
    seq: &mut Sequences,
    summary: &mut DemoSummary,
) -> Result<(), Error> {
    if p.opted_out {
        return Ok(());
    }
    let path = "sources/campaigns/responses.csv";
    let mut contact_id = None;
    let mut unsubscribed = false;
    for (id, name, channel, days_before) in CAMPAIGNS {
        let sent = opts.as_of - Duration::days(days_before);
        if unsubscribed || sent < known_since || !rng.random_bool(0.5) {
            continue;
        }
        let contact = contact_id.get_or_insert_with(|| {
            seq.contact += 1;
            format!("S{:07}", seq.contact)
        });
        let bought = p
            .purchases
            .iter()
            .find(|x| x.0 >= sent && x.0 <= sent + Duration::days(RESPONSE_WINDOW_DAYS));
        let response = match bought {
            Some(x) if rng.random_bool(0.8) => Some(x.0),
            _ if rng.random_bool(0.02) => {
                Some(sent + Duration::days(rng.random_range(0..RESPONSE_WINDOW_DAYS)))
            }
            _ => None,
        };
        unsubscribed = rng.random_bool(0.01);
        let fields = [
            contact.clone(),
            p.email.clone(),
            p.first.clone(),
            p.last.clone(),
            p.address.postcode.clone(),
            id.to_string(),
            name.to_string(),
            channel.to_string(),
            sent.format("%Y-%m-%d").to_string(),
            if response.is_some() { "1" } else { "0" }.to_string(),
            response.map_or_else(String::new, |d| d.format("%Y-%m-%d").to_string()),
            if unsubscribed { "1" } else { "0" }.to_string(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        writeln!(w.campaigns, "{}", line.join(",")).map_err(io_err(path))?;
        summary.campaign_contacts += 1;
    }
    if let Some(contact) = contact_id {
        writeln!(w.truth, "campaign_responses,{contact},{person_id}")
            .map_err(io_err("truth/person_map.csv"))?;
    }
    Ok(())
}

/// The service desk: about one buyer in eight opens one to three tickets after a purchase, under a
/// full name (sometimes a nickname), with an email, a phone or both. Recent tickets are often still
/// open.
fn service_tickets(
    w: &mut Writers,
    rng: &mut ChaCha8Rng,
    p: &Person,
    person_id: &str,
    opts: &DemoOptions,
    seq: &mut Sequences,
    summary: &mut DemoSummary,
) -> Result<(), Error> {
    if p.purchases.is_empty() || !rng.random_bool(0.12) {
        return Ok(());
    }
    let path = "sources/service/tickets.csv";
    seq.requester += 1;
    let requester = format!("Z{:07}", seq.requester);
    let first = match nickname(&p.first) {
        Some(n) if rng.random_bool(0.2) => n.to_string(),
        _ => p.first.clone(),
    };
    let name = format!("{first} {}", p.last);
    let email = if rng.random_bool(0.7) {
        p.email.clone()
    } else {
        String::new()
    };
    // The desk needs a way to answer: a phone when there is no email, often both.
    let phone = if email.is_empty() || rng.random_bool(0.5) {
        phone_text_in(rng, opts.country, &p.phone_digits)
    } else {
        String::new()
    };
    for _ in 0..rng.random_range(1..=3) {
        let after = p.purchases[rng.random_range(0..p.purchases.len())].0;
        let opened_day = (after + Duration::days(rng.random_range(1..20))).min(opts.as_of);
        let opened = opened_day
            .and_hms_opt(rng.random_range(8..20), rng.random_range(0..60), 0)
            .unwrap_or_default();
        let recent = opts.as_of - opened_day < Duration::days(21);
        let open = if recent {
            rng.random_bool(0.6)
        } else {
            rng.random_bool(0.03)
        };
        let closed = if open {
            String::new()
        } else {
            let c = (opened + Duration::days(rng.random_range(0..10)) + Duration::hours(2))
                .min(opts.as_of.and_hms_opt(23, 0, 0).unwrap_or_default());
            format!("{}Z", c.format("%Y-%m-%dT%H:%M:%S"))
        };
        let (category, subject) = *pick(rng, &TICKET_CATEGORIES);
        seq.ticket += 1;
        let fields = [
            format!("T{:08}", seq.ticket),
            requester.clone(),
            name.clone(),
            email.clone(),
            phone.clone(),
            format!("{}Z", opened.format("%Y-%m-%dT%H:%M:%S")),
            closed,
            category.to_string(),
            if open { "open" } else { "resolved" }.to_string(),
            subject.to_string(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        writeln!(w.tickets, "{}", line.join(",")).map_err(io_err(path))?;
        summary.service_tickets += 1;
    }
    writeln!(w.truth, "service_tickets,{requester},{person_id}")
        .map_err(io_err("truth/person_map.csv"))?;
    Ok(())
}

/// Breaks a CRM line the way a corrupted extract does: cut short after `cut` characters (kind
/// 0), an impossible birth date (1: columns 202 to 209 of the layout) or an opt-out flag that is
/// neither Y nor N (2: column 210). Places are counted in
/// characters, as the layout's columns are (the file is Latin-1: one byte a character), so an
/// accented name never moves the corruption into another field or cuts a character in two.
fn malform_crm_line(line: &mut String, kind: u32, cut: usize) {
    let byte_at = |chars: usize| {
        line.char_indices()
            .nth(chars)
            .map_or(line.len(), |(at, _)| at)
    };
    match kind {
        0 => line.truncate(byte_at(cut)),
        1 => line.replace_range(byte_at(201)..byte_at(209), "20251345"),
        _ => line.replace_range(byte_at(209)..byte_at(210), "X"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_crm_line_is_corrupted_at_its_columns_never_mid_character() {
        let ascii = "A".repeat(CRM_RECORD_LEN);
        // Characters of two bytes before the birth date and the opt-out flag.
        let accented = format!("{}{}", "Zoë ".repeat(50), "B".repeat(19));
        assert_eq!(accented.chars().count(), CRM_RECORD_LEN);
        assert!(
            accented.len() > CRM_RECORD_LEN,
            "the accents come before the date"
        );
        for line in [ascii, accented] {
            let columns = |s: &str, from: usize, to: usize| -> String {
                s.chars().skip(from).take(to - from).collect()
            };
            for cut in 20..200 {
                let mut cut_short = line.clone();
                malform_crm_line(&mut cut_short, 0, cut);
                assert_eq!(cut_short.chars().count(), cut);
                assert!(line.starts_with(&cut_short));
            }
            let mut bad_date = line.clone();
            malform_crm_line(&mut bad_date, 1, 0);
            assert_eq!(columns(&bad_date, 201, 209), "20251345");
            assert_eq!(bad_date.chars().count(), CRM_RECORD_LEN);
            assert_eq!(columns(&bad_date, 0, 201), columns(&line, 0, 201));
            let mut bad_status = line.clone();
            malform_crm_line(&mut bad_status, 2, 0);
            assert_eq!(columns(&bad_status, 209, 210), "X");
            assert_eq!(
                columns(&bad_status, 210, CRM_RECORD_LEN),
                columns(&line, 210, CRM_RECORD_LEN)
            );
        }
    }

    fn opts(persons: u64, seed: u64) -> DemoOptions {
        DemoOptions::new(
            persons,
            seed,
            NaiveDate::from_ymd_opt(2025, 12, 31).unwrap_or_default(),
        )
    }

    fn read_all(dir: &Path) -> Vec<Vec<u8>> {
        [
            "sources/crm/customers.dat",
            "sources/orders/order_log.txt",
            "sources/web/customers.jsonl",
            "sources/web/orders.csv",
        ]
        .iter()
        .map(|p| std::fs::read(dir.join(p)).unwrap_or_default())
        .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_files() -> Result<(), Error> {
        let a = tempfile::tempdir().map_err(|source| Error::Io {
            path: "a".into(),
            source,
        })?;
        let b = tempfile::tempdir().map_err(|source| Error::Io {
            path: "b".into(),
            source,
        })?;
        let c = tempfile::tempdir().map_err(|source| Error::Io {
            path: "c".into(),
            source,
        })?;
        let sa = generate(a.path(), &opts(500, 1))?;
        generate(b.path(), &opts(500, 1))?;
        generate(c.path(), &opts(500, 2))?;
        assert_eq!(read_all(a.path()), read_all(b.path()));
        assert_ne!(read_all(a.path()), read_all(c.path()));
        assert!(
            sa.crm_records > 100
                && sa.web_customers > 100
                && sa.order_log_lines > 100
                && sa.web_orders > 100,
            "{sa:?}"
        );
        Ok(())
    }

    #[test]
    fn crm_records_are_fixed_width_latin1() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|source| Error::Io {
            path: "d".into(),
            source,
        })?;
        let s = generate(dir.path(), &opts(2000, 3))?;
        let crm =
            std::fs::read(dir.path().join("sources/crm/customers.dat")).map_err(|source| {
                Error::Io {
                    path: "crm".into(),
                    source,
                }
            })?;
        let lines: Vec<&[u8]> = crm
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        // Every record, and the corrupted copies of a few (counted with the order log's).
        let lines_count = lines.len() as u64;
        assert!(
            lines_count >= s.crm_records && lines_count <= s.crm_records + s.corrupted_lines,
            "{lines_count} lines for {} records and {} corrupted lines",
            s.crm_records,
            s.corrupted_lines
        );
        let full = lines.iter().filter(|l| l.len() == CRM_RECORD_LEN).count();
        assert!(full as u64 >= s.crm_records - s.malformed_lines);
        assert!(
            crm.iter().any(|b| *b >= 0xC0),
            "accented latin-1 letters expected"
        );
        assert!(std::str::from_utf8(&crm).is_err(), "latin-1 is not UTF-8");
        Ok(())
    }
}
