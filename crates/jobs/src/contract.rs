//! The staging contract (docs/staging-contract.md): the columns and types of the staging models
//! that the shipped intermediate models, marts and queries read. `clientele validate` (and every
//! run's planning) checks a job's staging models against it, so that a business adopting clientele
//! learns of a missing or mistyped column from the model's file before a nightly fails on it.

use arrow::datatypes::{DataType, Schema};

/// The kind of values a contract column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Date,
    Timestamp,
    Integer,
    Decimal,
    Number,
    Boolean,
}

impl Kind {
    /// The word the doc uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Date => "date",
            Self::Timestamp => "timestamp",
            Self::Integer => "integer",
            Self::Decimal => "decimal",
            Self::Number => "number",
            Self::Boolean => "boolean",
        }
    }

    fn accepts(self, t: &DataType) -> bool {
        let integer = t.is_integer();
        let decimal = matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..));
        match self {
            Self::Text => matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View),
            Self::Date => matches!(t, DataType::Date32 | DataType::Date64),
            Self::Timestamp => matches!(t, DataType::Timestamp(..)),
            Self::Integer => integer,
            Self::Decimal => decimal,
            Self::Number => integer || decimal || t.is_floating(),
            Self::Boolean => matches!(t, DataType::Boolean),
        }
    }
}

/// One column of a contract model.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub meaning: &'static str,
}

/// One staging model of the contract.
#[derive(Debug, Clone, Copy)]
pub struct ContractModel {
    pub name: &'static str,
    pub columns: &'static [&'static [Column]],
}

const fn col(name: &'static str, kind: Kind, required: bool, meaning: &'static str) -> Column {
    Column {
        name,
        kind,
        required,
        meaning,
    }
}

use Kind::{Boolean, Date, Decimal, Integer, Number, Text, Timestamp};

/// The columns every record-level model (a person as one system knows them) has.
const PERSON: &[Column] = &[
    col(
        "record_id",
        Text,
        true,
        "`<system>:<key>`; orders, tickets and responses refer to it",
    ),
    col(
        "source_system",
        Text,
        true,
        "the business's name for the system, ranked by `[identity] trust`",
    ),
    col(
        "source_customer_id",
        Text,
        false,
        "the record's key in its own system",
    ),
    col("first_name", Text, false, "as given"),
    col("last_name", Text, false, ""),
    col(
        "street",
        Text,
        false,
        "the street line of the postal address",
    ),
    col("postcode", Text, false, ""),
    col("city", Text, false, ""),
    col("phone", Text, false, "as given, any format"),
    col("email_normalised", Text, false, "lower case, trimmed"),
    col("birth_date", Date, false, ""),
    col(
        "is_opted_out",
        Boolean,
        true,
        "the person asked this system not to be contacted",
    ),
    col("email_consent", Text, false, "`granted`, `denied`, or null"),
    col("phone_consent", Text, false, "as `email_consent`"),
    col("post_consent", Text, false, "as `email_consent`"),
    col("ads_consent", Text, false, "as `email_consent`"),
    col(
        "consent_date",
        Date,
        false,
        "when the system recorded the statement",
    ),
    col(
        "consent_can_grant",
        Boolean,
        false,
        "a grant from this system may lift an earlier denial",
    ),
    col("created_date", Date, false, "when the record was created"),
];

const CRM_EXTRA: &[Column] = &[col(
    "is_account_closed",
    Boolean,
    false,
    "the account is closed: never exported",
)];

const VENDOR_EXTRA: &[Column] = &[
    col("age_band", Text, false, ""),
    col("income_band", Text, false, ""),
    col("household_size", Integer, false, ""),
    col("home_ownership", Text, false, ""),
    col("lifestyle_segment", Text, false, "psychographic segment"),
    col("is_business", Boolean, false, "the record is of a business"),
    col("industry", Text, false, ""),
    col("employee_band", Text, false, ""),
];

const ORDERS: &[Column] = &[
    col("order_id", Text, true, ""),
    col("record_id", Text, true, "the buyer's record"),
    col("channel", Text, true, "`store` or `web`"),
    col("order_date", Date, true, "the date of the sale"),
    col("quantity", Integer, false, "items"),
    col(
        "order_amount",
        Decimal,
        true,
        "the amount paid, in `currency`",
    ),
    col(
        "currency",
        Text,
        false,
        "ISO 4217 code; null means the reporting currency",
    ),
];

const RATES: &[Column] = &[
    col("currency", Text, true, "ISO 4217 code, upper case"),
    col("valid_from", Date, false, "the rate holds from this date"),
    col(
        "rate",
        Number,
        true,
        "units of the reporting currency per unit of `currency`",
    ),
];

const RESPONSES: &[Column] = &[
    col("record_id", Text, true, "the contact's record"),
    col("contact_id", Text, true, ""),
    col("campaign_id", Text, true, ""),
    col("campaign_name", Text, false, ""),
    col("channel", Text, false, ""),
    col("sent_date", Date, true, ""),
    col("has_responded", Boolean, true, ""),
    col("response_date", Date, false, ""),
    col("has_unsubscribed", Boolean, false, ""),
];

const TICKETS: &[Column] = &[
    col("ticket_id", Text, true, ""),
    col("record_id", Text, true, "the requester's record"),
    col("opened_at", Timestamp, true, ""),
    col("closed_at", Timestamp, false, ""),
    col("opened_date", Date, true, ""),
    col("closed_date", Date, false, ""),
    col("category", Text, false, ""),
    col("status", Text, false, ""),
    col("subject", Text, false, ""),
];

/// Every staging model the shipped models read, with its columns.
pub const STAGING_CONTRACT: &[ContractModel] = &[
    ContractModel {
        name: "stg_crm__customers",
        columns: &[PERSON, CRM_EXTRA],
    },
    ContractModel {
        name: "stg_web__customers",
        columns: &[PERSON],
    },
    ContractModel {
        name: "stg_vendor__demographics",
        columns: &[PERSON, VENDOR_EXTRA],
    },
    ContractModel {
        name: "stg_campaigns__contacts",
        columns: &[PERSON],
    },
    ContractModel {
        name: "stg_service__requesters",
        columns: &[PERSON],
    },
    ContractModel {
        name: "stg_legacy__orders",
        columns: &[ORDERS],
    },
    ContractModel {
        name: "stg_web__orders",
        columns: &[ORDERS],
    },
    ContractModel {
        name: "stg_finance__exchange_rates",
        columns: &[RATES],
    },
    ContractModel {
        name: "stg_campaigns__responses",
        columns: &[RESPONSES],
    },
    ContractModel {
        name: "stg_service__tickets",
        columns: &[TICKETS],
    },
];

/// What is wrong with a staging model's columns against the contract: one entry per missing or
/// mistyped column; empty when it holds, or when the model is not in the contract.
pub fn check(model: &str, schema: &Schema) -> Vec<String> {
    let Some(contract) = STAGING_CONTRACT.iter().find(|m| m.name == model) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for c in contract.columns.iter().flat_map(|part| part.iter()) {
        match schema.field_with_name(c.name) {
            Err(_) => problems.push(if c.meaning.is_empty() {
                format!("column '{}' is missing ({})", c.name, c.kind.name())
            } else {
                format!(
                    "column '{}' is missing ({}: {})",
                    c.name,
                    c.kind.name(),
                    c.meaning
                )
            }),
            Ok(f) if !c.kind.accepts(f.data_type()) => problems.push(format!(
                "column '{}' is {}, the contract wants {}",
                c.name,
                describe(f.data_type()),
                c.kind.name()
            )),
            Ok(_) => {}
        }
    }
    problems
}

/// A type in the contract's words.
fn describe(t: &DataType) -> String {
    if t.is_floating() {
        return "floating point".into();
    }
    [Text, Date, Timestamp, Integer, Decimal, Boolean]
        .into_iter()
        .find(|k| k.accepts(t))
        .map_or_else(|| t.to_string(), |k| k.name().to_string())
        .replace("integer", "an integer")
        .replace("decimal", "a decimal")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;

    fn package_dir() -> std::path::PathBuf {
        std::path::PathBuf::from(
            std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
        )
    }

    #[test]
    fn a_missing_or_mistyped_column_is_named() {
        let schema = Schema::new(vec![
            Field::new("order_id", DataType::Utf8, false),
            Field::new("record_id", DataType::Utf8View, false),
            Field::new("channel", DataType::Utf8, false),
            Field::new("order_date", DataType::Utf8, false),
            Field::new("quantity", DataType::Int32, true),
            Field::new("order_amount", DataType::Float64, false),
        ]);
        let problems = check("stg_web__orders", &schema);
        assert_eq!(
            problems,
            [
                "column 'order_date' is text, the contract wants date",
                "column 'order_amount' is floating point, the contract wants decimal",
                "column 'currency' is missing (text: ISO 4217 code; null means the reporting currency)",
            ]
        );
        assert!(check("stg_my_own__model", &schema).is_empty());
    }

    /// The doc lists exactly the contract's models and columns, with the same types.
    #[test]
    fn the_doc_and_the_contract_agree() -> Result<(), String> {
        let path = package_dir().join("../../docs/staging-contract.md");
        let doc = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let rows: Vec<(String, String)> = doc
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                Some((name.to_string(), (*cells.get(2)?).to_string()))
            })
            .collect();
        for model in STAGING_CONTRACT {
            if !doc.contains(&format!("`{}`", model.name)) {
                return Err(format!("the doc does not name {}", model.name));
            }
            for c in model.columns.iter().flat_map(|p| p.iter()) {
                if !rows.iter().any(|(n, t)| n == c.name && t == c.kind.name()) {
                    return Err(format!(
                        "the doc has no row `{}` | {} (model {})",
                        c.name,
                        c.kind.name(),
                        model.name
                    ));
                }
            }
        }
        let known: Vec<&str> = STAGING_CONTRACT
            .iter()
            .flat_map(|m| m.columns.iter().flat_map(|p| p.iter().map(|c| c.name)))
            .collect();
        for (name, _) in &rows {
            if !known.contains(&name.as_str()) {
                return Err(format!(
                    "the doc lists `{name}`, which the contract does not have"
                ));
            }
        }
        Ok(())
    }
}
