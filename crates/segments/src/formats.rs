//! Destination formats: the columns each campaign tool's import expects, how each value is
//! normalised (and hashed, for the ad platforms), and which contact key a row needs to be
//! accepted at all. A customer without that key is suppressed with the reason, never sent.
//!
//! | format | file | columns | key |
//! |---|---|---|---|
//! | `csv` | CSV | `customer_id` and the export's `columns` | — |
//! | `parquet` | Parquet | `customer_id` and the export's `columns` | — |
//! | `mailchimp` | CSV | Email Address, First Name, Last Name, Phone Number | a valid email |
//! | `hubspot` | CSV | Email, First Name, Last Name, Phone Number, Postal Code, City | a valid email |
//! | `salesforce_mc` | CSV | SubscriberKey, EmailAddress, FirstName, LastName, Phone, PostalCode | a valid email (the subscriber key is the customer id) |
//! | `braze` | CSV | external_id, email, first_name, last_name, phone, home_city, country | the customer id |
//! | `google_ads` | CSV | Email, Phone, First Name, Last Name, Country, Zip | an email or a phone, or first and last name with zip |
//! | `meta` | CSV | EMAIL, PHONE, FN, LN, ZIP, CT, ST, COUNTRY | an email or a phone |

use clientele_identity::standardise;
use sha2::{Digest, Sha256};

/// A destination format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Generic CSV with the export's columns.
    Csv,
    /// Generic Parquet with the export's columns.
    Parquet,
    /// Mailchimp audience import.
    Mailchimp,
    /// HubSpot contacts import.
    Hubspot,
    /// Salesforce Marketing Cloud data extension.
    SalesforceMc,
    /// Braze user import.
    Braze,
    /// Google Ads Customer Match.
    GoogleAds,
    /// Meta custom audience.
    Meta,
}

/// The formats by name, in documentation order.
pub const FORMATS: [(&str, Format); 8] = [
    ("csv", Format::Csv),
    ("parquet", Format::Parquet),
    ("mailchimp", Format::Mailchimp),
    ("hubspot", Format::Hubspot),
    ("salesforce_mc", Format::SalesforceMc),
    ("braze", Format::Braze),
    ("google_ads", Format::GoogleAds),
    ("meta", Format::Meta),
];

/// One customer's contact data from `customer_view`, as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contact {
    pub customer_id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub postcode: Option<String>,
    pub city: Option<String>,
    /// The street line (for postal suppression; no ad or email format sends it).
    pub street: Option<String>,
}

/// Settings the normalisation needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Locale {
    /// ISO 3166 two-letter country of the customers, upper case (`GB`).
    pub country: String,
    /// The calling code of national phone numbers, digits only (`44`).
    pub calling_code: String,
}

/// Why a customer cannot be sent to a destination.
pub const NO_VALID_EMAIL: &str = "invalid_email";
/// Why a customer cannot be matched by an ad platform.
pub const NO_IDENTIFIER: &str = "no_identifier";

/// SHA-256 of `text`, lower-case hex.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Google's email rule: trimmed, lower case, and for gmail.com and googlemail.com addresses the
/// dots of the local part removed. `None` for an invalid address.
pub fn google_email(email: &str) -> Option<String> {
    let e = standardise::email(email)?;
    let (local, domain) = e.split_once('@')?;
    Some(if matches!(domain, "gmail.com" | "googlemail.com") {
        format!("{}@{domain}", local.replace('.', ""))
    } else {
        e
    })
}

/// A name as the ad platforms hash it: lower case, trimmed; Meta also wants letters only.
fn name_lower(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Meta's rule for names and cities: lower case, accents removed, letters only (no spaces or
/// punctuation).
pub fn meta_letters(text: &str) -> String {
    standardise::fold(text)
        .chars()
        .filter(|c| c.is_alphabetic())
        .collect()
}

/// Meta's zip rule: lower case without spaces; a UK postcode is cut to area, district and sector
/// (the outward code and the first character of the inward code: `SW1A 1AA` is `sw1a1`).
pub fn meta_zip(postcode: &str, country: &str) -> String {
    let plain: String = postcode
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if country.eq_ignore_ascii_case("GB") && plain.len() >= 5 {
        plain[..plain.len() - 2].to_string()
    } else {
        plain
    }
}

impl Format {
    /// The format of a name.
    pub fn parse(name: &str) -> Option<Self> {
        FORMATS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// The name.
    pub fn name(self) -> &'static str {
        FORMATS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("csv", |(n, _)| *n)
    }

    /// The file extension.
    pub fn extension(self) -> &'static str {
        if self == Self::Parquet {
            "parquet"
        } else {
            "csv"
        }
    }

    /// Whether the columns come from the export's `columns` list.
    pub fn is_generic(self) -> bool {
        matches!(self, Self::Csv | Self::Parquet)
    }

    /// The destination's column names, for the fixed formats.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Self::Csv | Self::Parquet => &[],
            Self::Mailchimp => &["Email Address", "First Name", "Last Name", "Phone Number"],
            Self::Hubspot => &[
                "Email",
                "First Name",
                "Last Name",
                "Phone Number",
                "Postal Code",
                "City",
            ],
            Self::SalesforceMc => &[
                "SubscriberKey",
                "EmailAddress",
                "FirstName",
                "LastName",
                "Phone",
                "PostalCode",
            ],
            Self::Braze => &[
                "external_id",
                "email",
                "first_name",
                "last_name",
                "phone",
                "home_city",
                "country",
            ],
            Self::GoogleAds => &[
                "Email",
                "Phone",
                "First Name",
                "Last Name",
                "Country",
                "Zip",
            ],
            Self::Meta => &["EMAIL", "PHONE", "FN", "LN", "ZIP", "CT", "ST", "COUNTRY"],
        }
    }

    /// Whether a cell of this format holds a value this module produced and validated (a hash, an
    /// E.164 phone, a normalised email). Of these only a plain E.164 phone skips spreadsheet-formula
    /// neutralisation (`+447700900123` is a phone number the tool needs as it is, not a formula);
    /// an email that starts like a formula is neutralised like any other cell.
    pub fn is_validated_column(self, column: usize) -> bool {
        match self {
            Self::Csv | Self::Parquet => false,
            Self::GoogleAds => column < 4,
            Self::Meta => true,
            Self::Mailchimp => matches!(column, 0 | 3),
            Self::Hubspot => matches!(column, 0 | 3),
            Self::SalesforceMc => matches!(column, 1 | 4),
            Self::Braze => matches!(column, 1 | 4),
        }
    }

    /// The destination row of a fixed format, or the suppression reason when the contact lacks
    /// the destination's key.
    pub fn row(self, c: &Contact, locale: &Locale) -> Result<Vec<String>, &'static str> {
        let email = present(&c.email).and_then(standardise::email);
        let phone = present(&c.phone).and_then(|p| standardise::phone(p, &locale.calling_code));
        let first = present(&c.first_name).unwrap_or_default();
        let last = present(&c.last_name).unwrap_or_default();
        let postcode = present(&c.postcode).unwrap_or_default();
        let city = present(&c.city).unwrap_or_default();
        let text = |s: Option<String>| s.unwrap_or_default();
        let hashed = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                sha256_hex(s)
            }
        };
        match self {
            Self::Csv | Self::Parquet => Ok(vec![c.customer_id.clone()]),
            Self::Mailchimp => {
                let email = email.ok_or(NO_VALID_EMAIL)?;
                Ok(vec![email, first.into(), last.into(), text(phone)])
            }
            Self::Hubspot => {
                let email = email.ok_or(NO_VALID_EMAIL)?;
                Ok(vec![
                    email,
                    first.into(),
                    last.into(),
                    text(phone),
                    postcode.into(),
                    city.into(),
                ])
            }
            Self::SalesforceMc => {
                let email = email.ok_or(NO_VALID_EMAIL)?;
                Ok(vec![
                    c.customer_id.clone(),
                    email,
                    first.into(),
                    last.into(),
                    text(phone),
                    postcode.into(),
                ])
            }
            Self::Braze => Ok(vec![
                c.customer_id.clone(),
                text(email),
                first.into(),
                last.into(),
                text(phone),
                city.into(),
                locale.country.clone(),
            ]),
            Self::GoogleAds => {
                let email = present(&c.email).and_then(google_email);
                let by_address = !first.is_empty() && !last.is_empty() && !postcode.is_empty();
                if email.is_none() && phone.is_none() && !by_address {
                    return Err(NO_IDENTIFIER);
                }
                Ok(vec![
                    hashed(&text(email)),
                    hashed(&text(phone)),
                    hashed(&name_lower(first)),
                    hashed(&name_lower(last)),
                    locale.country.clone(),
                    postcode.to_string(),
                ])
            }
            Self::Meta => {
                if email.is_none() && phone.is_none() {
                    return Err(NO_IDENTIFIER);
                }
                let digits = phone
                    .map(|p| p.trim_start_matches('+').to_string())
                    .unwrap_or_default();
                Ok(vec![
                    hashed(&text(email)),
                    hashed(&digits),
                    hashed(&meta_letters(first)),
                    hashed(&meta_letters(last)),
                    hashed(&meta_zip(postcode, &locale.country)),
                    hashed(&meta_letters(city)),
                    String::new(),
                    hashed(&locale.country.to_lowercase()),
                ])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locale() -> Locale {
        Locale {
            country: "GB".into(),
            calling_code: "44".into(),
        }
    }

    fn jane() -> Contact {
        Contact {
            customer_id: "C1".into(),
            email: Some("  Jane.Doe@Example.com ".into()),
            phone: Some("07700 900123".into()),
            first_name: Some(" Jane ".into()),
            last_name: Some("O'Brien".into()),
            postcode: Some("SW1A 1AA".into()),
            city: Some("London".into()),
            street: Some("1 The Mall".into()),
        }
    }

    // The expected hashes are SHA-256 of the normalised text, computed independently with
    // Python's hashlib.
    const EMAIL: &str = "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d";
    const PHONE_E164: &str = "a8acc3a90a7b4e4dc65e93db9240ed26523050ef754d63b75b5161de76781436";
    const PHONE_DIGITS: &str = "033134b911b137918338415ee3d20a064b24773d36a3b02e8b99fdd3fcd6b4cd";
    const JANE: &str = "81f8f6dde88365f3928796ec7aa53f72820b06db8664f5fe76a7eb13e24546a2";

    #[test]
    fn google_ads_hashes_normalised_email_phone_and_names_and_keeps_country_and_zip() {
        let row = Format::GoogleAds.row(&jane(), &locale());
        assert_eq!(
            row,
            Ok(vec![
                EMAIL.into(),
                PHONE_E164.into(),
                JANE.into(),
                "65b87174be3b1b122e2b0929f0b84888637d31a4a83bb96a860bcff411f5e668".into(),
                "GB".into(),
                "SW1A 1AA".into(),
            ])
        );
        // Gmail addresses lose the dots of the local part.
        assert_eq!(
            google_email("Jane.Doe@GMAIL.com").as_deref(),
            Some("janedoe@gmail.com")
        );
    }

    #[test]
    fn meta_hashes_digits_letters_and_the_uk_sector() {
        let row = Format::Meta.row(&jane(), &locale());
        assert_eq!(
            row,
            Ok(vec![
                EMAIL.into(),
                PHONE_DIGITS.into(),
                JANE.into(),
                "b4cb6cb33fe4b865868de825023a1e2790dc12ac01ecc8d7c5afe8254071c8ba".into(),
                "949af780a19e6f6d4b99d7044743348dbbb7ab2245fe146863573b23d02c5890".into(),
                "6089854c94ca5454b76be6752c562901a985f64c9a946f62976aeab593b83161".into(),
                String::new(),
                "0b407281768f0e833afef47ed464b6571d01ca4d53c12ce5c51d1462f4ad6677".into(),
            ])
        );
        assert_eq!(meta_letters("Zoë-Anne"), "zoeanne");
        assert_eq!(meta_zip("sw1a 1aa", "GB"), "sw1a1");
        assert_eq!(meta_zip("10115", "DE"), "10115");
    }

    #[test]
    fn email_tools_need_a_valid_email_and_ad_platforms_an_identifier() {
        let mut c = jane();
        c.email = Some("not an email".into());
        for f in [Format::Mailchimp, Format::Hubspot, Format::SalesforceMc] {
            assert_eq!(f.row(&c, &locale()), Err(NO_VALID_EMAIL), "{f:?}");
        }
        // Braze keys on the customer id: the row goes, without an email.
        let braze = Format::Braze.row(&c, &locale());
        assert_eq!(braze.map(|r| r[1].clone()), Ok(String::new()));
        c.phone = None;
        assert_eq!(Format::Meta.row(&c, &locale()), Err(NO_IDENTIFIER));
        // Google can still match on name and zip.
        assert!(Format::GoogleAds.row(&c, &locale()).is_ok());
        c.postcode = None;
        assert_eq!(Format::GoogleAds.row(&c, &locale()), Err(NO_IDENTIFIER));
    }

    #[test]
    fn email_tools_get_plain_normalised_values() {
        assert_eq!(
            Format::Mailchimp.row(&jane(), &locale()),
            Ok(vec![
                "jane.doe@example.com".into(),
                "Jane".into(),
                "O'Brien".into(),
                "+447700900123".into()
            ])
        );
        assert_eq!(
            Format::SalesforceMc
                .row(&jane(), &locale())
                .map(|r| r[0].clone()),
            Ok("C1".to_string())
        );
        for (name, f) in FORMATS {
            assert_eq!(Format::parse(name), Some(f));
            assert_eq!(f.name(), name);
            assert_eq!(f.columns().is_empty(), f.is_generic());
        }
    }
}
