//! Standardisation: the form in which values are blocked and compared. Every function returns
//! `None` for a value that carries no information (empty, or not a valid phone or email), so that
//! unknown stays unknown instead of agreeing with other unknowns.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::spec::Kind;

/// Lower case without accents; punctuation becomes a space, runs of spaces become one.
/// `"  O'Brien-Smith, Zoë "` becomes `"o brien smith zoe"`.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = true;
    for c in text.nfkd().filter(|c| !is_combining_mark(*c)) {
        let c = match c {
            'ø' | 'Ø' => 'o',
            'æ' | 'Æ' => 'a',
            'ß' => 's',
            'ł' | 'Ł' => 'l',
            'đ' | 'Đ' => 'd',
            c => c,
        };
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// Common English nicknames and their full forms.
const NICKNAMES: &[(&str, &str)] = &[
    ("abby", "abigail"),
    ("al", "albert"),
    ("alex", "alexander"),
    ("andy", "andrew"),
    ("annie", "anne"),
    ("barb", "barbara"),
    ("ben", "benjamin"),
    ("beth", "elizabeth"),
    ("betty", "elizabeth"),
    ("bill", "william"),
    ("billy", "william"),
    ("bob", "robert"),
    ("bobby", "robert"),
    ("cathy", "catherine"),
    ("charlie", "charles"),
    ("chris", "christopher"),
    ("chuck", "charles"),
    ("dan", "daniel"),
    ("danny", "daniel"),
    ("dave", "david"),
    ("deb", "deborah"),
    ("debbie", "deborah"),
    ("dick", "richard"),
    ("ed", "edward"),
    ("eddie", "edward"),
    ("fred", "frederick"),
    ("greg", "gregory"),
    ("harry", "henry"),
    ("jack", "john"),
    ("jen", "jennifer"),
    ("jenny", "jennifer"),
    ("jim", "james"),
    ("jimmy", "james"),
    ("joe", "joseph"),
    ("johnny", "john"),
    ("jon", "jonathan"),
    ("kate", "katherine"),
    ("kathy", "katherine"),
    ("katie", "katherine"),
    ("ken", "kenneth"),
    ("larry", "lawrence"),
    ("liz", "elizabeth"),
    ("maggie", "margaret"),
    ("matt", "matthew"),
    ("meg", "margaret"),
    ("mick", "michael"),
    ("mike", "michael"),
    ("nick", "nicholas"),
    ("pat", "patricia"),
    ("patty", "patricia"),
    ("peggy", "margaret"),
    ("pete", "peter"),
    ("phil", "philip"),
    ("rich", "richard"),
    ("rick", "richard"),
    ("rob", "robert"),
    ("ron", "ronald"),
    ("sam", "samuel"),
    ("sandy", "sandra"),
    ("steve", "steven"),
    ("sue", "susan"),
    ("susie", "susan"),
    ("ted", "edward"),
    ("tom", "thomas"),
    ("tommy", "thomas"),
    ("tony", "anthony"),
    ("will", "william"),
];

/// The full form of a nickname, or the name itself.
pub fn full_name(name: &str) -> &str {
    NICKNAMES
        .binary_search_by(|(nick, _)| (*nick).cmp(name))
        .map_or(name, |i| NICKNAMES[i].1)
}

/// Street words and their abbreviations (USPS and Royal Mail usage).
const STREET_WORDS: &[(&str, &str)] = &[
    ("apartment", "unit"),
    ("apt", "unit"),
    ("avenue", "ave"),
    ("boulevard", "blvd"),
    ("close", "cl"),
    ("court", "ct"),
    ("crescent", "cres"),
    ("drive", "dr"),
    ("east", "e"),
    ("flat", "unit"),
    ("gardens", "gdns"),
    ("grove", "gr"),
    ("highway", "hwy"),
    ("lane", "ln"),
    ("north", "n"),
    ("parkway", "pkwy"),
    ("place", "pl"),
    ("road", "rd"),
    ("south", "s"),
    ("square", "sq"),
    ("street", "st"),
    ("suite", "unit"),
    ("terrace", "ter"),
    ("west", "w"),
];

/// A street address: folded, street types abbreviated, unit words (flat, apartment, suite) as `unit`.
/// `"Flat 3, 12 Baker Street"` becomes `"unit 3 12 baker st"`.
pub fn address(text: &str) -> String {
    let folded = fold(text);
    let mut out = String::with_capacity(folded.len());
    for word in folded.split(' ') {
        let word = STREET_WORDS
            .binary_search_by(|(w, _)| (*w).cmp(word))
            .map_or(word, |i| STREET_WORDS[i].1);
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// A postcode: letters and digits, upper case. `"sw1a 1aa"` becomes `"SW1A1AA"`.
pub fn postcode(text: &str) -> String {
    text.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// A phone number in E.164: `+` and 8 to 15 digits. A number with `+` or `00` keeps its country
/// code; a national number (leading 0, or none) gets `default_country` (digits only, such as `44`).
/// Anything else (too short, too long, letters) is `None`.
pub fn phone(text: &str, default_country: &str) -> Option<String> {
    let trimmed = text.trim();
    if trimmed
        .chars()
        .any(|c| c.is_alphabetic() && !matches!(c, 'x' | 'X'))
    {
        return None;
    }
    // An extension ("x123") is not part of the number.
    let main = trimmed.split(['x', 'X']).next().unwrap_or(trimmed);
    let digits: String = main.chars().filter(char::is_ascii_digit).collect();
    let international = if main.starts_with('+') {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_string()
    } else if let Some(rest) = digits.strip_prefix('0') {
        format!("{default_country}{rest}")
    } else if digits.starts_with(default_country) && digits.len() >= 11 {
        digits
    } else {
        format!("{default_country}{digits}")
    };
    (8..=15)
        .contains(&international.len())
        .then(|| format!("+{international}"))
}

/// An email address trimmed and lower-cased; `None` unless it is `local@domain.tld` without spaces.
pub fn email(text: &str) -> Option<String> {
    let e = text.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    let valid = !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !e.contains(char::is_whitespace);
    valid.then_some(e)
}

/// A date as year, month and day from `YYYY-MM-DD`, `YYYYMMDD` or `DD/MM/YYYY`; `None` for anything
/// else, including the legacy unknowns `00000000` and `0000-00-00`.
pub fn date(text: &str) -> Option<(i32, u32, u32)> {
    let t = text.trim();
    if !t.is_ascii() {
        return None;
    }
    let num = |s: &str| s.parse::<u32>().ok();
    let (y, m, d) = if t.len() == 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-' {
        (num(&t[..4])?, num(&t[5..7])?, num(&t[8..])?)
    } else if t.len() == 8 && t.bytes().all(|b| b.is_ascii_digit()) {
        (num(&t[..4])?, num(&t[4..6])?, num(&t[6..])?)
    } else if t.len() == 10 && t.as_bytes()[2] == b'/' && t.as_bytes()[5] == b'/' {
        (num(&t[6..])?, num(&t[3..5])?, num(&t[..2])?)
    } else {
        return None;
    };
    let valid = (1800..=2200).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d);
    valid.then(|| (i32::try_from(y).unwrap_or(0), m, d))
}

/// A year (`1965`) or a range of years (`1962-1971`, either order), as the first and last year;
/// `None` for anything else.
pub fn year_range(text: &str) -> Option<(i32, i32)> {
    let year = |t: &str| {
        let t = t.trim();
        (t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<i32>().ok())
            .flatten()
            .filter(|y| (1800..=2200).contains(y))
    };
    match text.trim().split_once('-') {
        Some((a, b)) => {
            let (a, b) = (year(a)?, year(b)?);
            Some((a.min(b), a.max(b)))
        }
        None => year(text).map(|y| (y, y)),
    }
}

/// Standardises one value for a comparison of `kind`; `None` when nothing is left.
pub fn standardise(kind: Kind, text: &str, default_country: &str) -> Option<String> {
    let out = match kind {
        Kind::Forename => {
            let f = fold(text);
            // The first given name carries the identity; middle names are often left out.
            let first = f.split(' ').next().unwrap_or("");
            full_name(first).to_string()
        }
        Kind::Name | Kind::Text => fold(text),
        Kind::Address => address(text),
        Kind::Postcode => postcode(text),
        Kind::Phone => return phone(text, default_country),
        Kind::Email => return email(text),
        Kind::Date => return date(text).map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        Kind::Exact => text.trim().to_lowercase(),
        Kind::YearRange => {
            return year_range(text).map(|(low, high)| {
                if low == high {
                    format!("{low:04}")
                } else {
                    format!("{low:04}-{high:04}")
                }
            });
        }
    };
    (!out.is_empty()).then_some(out)
}

/// The postal key of a standardised street, postcode and first name: `street|postcode|initial`
/// (`12 high st|LS14AB|a`), the form contact-level suppression matches addresses in. The initial
/// keeps a partner at the same address apart; without a first name it is empty.
pub fn postal_key_of(street: &str, postcode: &str, first_name: Option<&str>) -> String {
    let initial: String = first_name
        .and_then(|f| f.chars().next())
        .map(|c| c.to_lowercase().collect())
        .unwrap_or_default();
    format!("{street}|{postcode}|{initial}")
}

/// The postal key ([`postal_key_of`]) of raw values, standardised as identity resolution does;
/// `None` without a street or a postcode.
pub fn postal_key(street: &str, postcode: &str, first_name: Option<&str>) -> Option<String> {
    let street = standardise(Kind::Address, street, "")?;
    let postcode = standardise(Kind::Postcode, postcode, "")?;
    let first = first_name.and_then(|f| standardise(Kind::Forename, f, ""));
    Some(postal_key_of(&street, &postcode, first.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postal_keys_compare_addresses_as_identity_does() {
        assert_eq!(
            postal_key("12 HIGH STREET", "ls1 4ab", Some("José")).as_deref(),
            Some("12 high st|LS14AB|j")
        );
        assert_eq!(
            postal_key("12 High St", "LS1 4AB", None).as_deref(),
            Some("12 high st|LS14AB|")
        );
        assert_eq!(postal_key("", "LS1 4AB", Some("Ann")), None);
    }

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(NICKNAMES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(STREET_WORDS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn names_fold_accents_case_punctuation_and_nicknames() {
        assert_eq!(fold("  O'Brien-Smith, Zoë "), "o brien smith zoe");
        assert_eq!(fold("SØREN"), "soren");
        assert_eq!(fold("Jürgen"), fold("JURGEN"));
        assert_eq!(
            standardise(Kind::Forename, "Bill", "44"),
            Some("william".into())
        );
        assert_eq!(
            standardise(Kind::Forename, "Mary Ann", "44"),
            Some("mary".into())
        );
        assert_eq!(standardise(Kind::Name, " - ", "44"), None);
    }

    #[test]
    fn addresses_abbreviate_street_types_and_units() {
        assert_eq!(address("Flat 3, 12 Baker Street"), "unit 3 12 baker st");
        assert_eq!(address("12 BAKER ST."), "12 baker st");
        assert_eq!(address("7 Kings Road"), address("7 kings rd"));
    }

    #[test]
    fn phones_become_e164() {
        for text in [
            "+44 7700 900123",
            "07700 900123",
            "(07700) 900-123",
            "0044 7700 900123",
            "447700900123",
            "7700900123",
        ] {
            assert_eq!(phone(text, "44"), Some("+447700900123".into()), "{text}");
        }
        assert_eq!(
            phone("+1 (212) 555-0100 x12", "44"),
            Some("+12125550100".into())
        );
        assert_eq!(phone("123", "44"), None);
        assert_eq!(phone("call me", "44"), None);
        assert_eq!(phone("", "44"), None);
    }

    #[test]
    fn emails_are_trimmed_lowercased_and_validated() {
        assert_eq!(
            email(" Ann.Lee@Example.COM "),
            Some("ann.lee@example.com".into())
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@x.com",
            "ann@localhost",
            "a b@x.com",
            "a@b@c.com",
        ] {
            assert_eq!(email(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_parse_three_ways_and_unknown_stays_unknown() {
        assert_eq!(date("1980-02-29"), Some((1980, 2, 29)));
        assert_eq!(date("19800229"), Some((1980, 2, 29)));
        assert_eq!(date("29/02/1980"), Some((1980, 2, 29)));
        assert_eq!(date("00000000"), None);
        assert_eq!(date("20251345"), None);
        assert_eq!(
            standardise(Kind::Date, "19800102", "44"),
            Some("1980-01-02".into())
        );
    }

    #[test]
    fn postcodes_keep_letters_and_digits() {
        assert_eq!(postcode("sw1a 1aa"), "SW1A1AA");
    }
}
