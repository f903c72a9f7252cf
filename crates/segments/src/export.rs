//! Exports: one segment written for one destination, with suppression that cannot be turned off,
//! a deterministic control group, and full, adds-only or diff files against the last export.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray, Date32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::Bytes;
use chrono::NaiveDate;
use clientele_sql::Engine;
use clientele_store::{Warehouse, WrittenFile};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::formats::{Contact, Format, Locale};

/// The contact fields a destination format reads, and their default `customer_view` columns.
pub const CONTACT_FIELDS: [&str; 7] = [
    "email",
    "phone",
    "first_name",
    "last_name",
    "postcode",
    "city",
    "street",
];

/// One export as the job spec declares it.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSpec {
    /// Name of the export (its directory under `exports/`).
    pub name: String,
    /// The segment id (file stem in `sql/segments/`).
    pub segment: String,
    /// Destination format (see [`crate::formats`]).
    pub format: String,
    /// Generic formats: columns of `customer_view` to write after `customer_id`.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Where a contact field comes from when it is not the `customer_view` column of its name:
    /// `{ email = "work_email" }`.
    #[serde(default)]
    pub mapping: BTreeMap<String, String>,
    /// `full` (every member), `adds` (members new since the last export) or `diff` (added,
    /// removed and changed files).
    #[serde(default)]
    pub mode: Option<String>,
    /// A directory or object-store URL the files are also delivered to.
    #[serde(default)]
    pub location: Option<String>,
    /// The campaign the export feeds (default: the export name); control groups are drawn per
    /// campaign.
    #[serde(default)]
    pub campaign: Option<String>,
    /// Share of the eligible members held out as a control group (0 to 0.5; default 0).
    #[serde(default)]
    pub holdout_share: Option<f64>,
    /// ISO 3166 country of the customers for the ad platforms (default `GB`).
    #[serde(default)]
    pub country: Option<String>,
    /// Days after a send in which a purchase counts as a response, for campaign results
    /// (default 30).
    #[serde(default)]
    pub response_window_days: Option<u32>,
    /// Direct mail: one row per household (`household_id` of `customer_view`), its first eligible
    /// member by customer id; the other members count as suppressed `same_household`, and the
    /// control group is drawn by household, so that a home is either mailed or held out.
    #[serde(default)]
    pub one_per_household: bool,
    /// The channel the destination reaches: `email`, `phone`, `sms`, `post` or `ads`. A member
    /// is sent only when their consent on it (`customer_view.<channel>_consent`; `sms` uses the
    /// phone consent) is `granted`. Default: `email` for the email tools, `ads` for Google Ads and
    /// Meta; csv and parquet exports name theirs (without one, only the general opt-out applies).
    #[serde(default)]
    pub channel: Option<String>,
    /// Also send members whose consent on the channel is `unknown` (never those who denied it):
    /// for channels a business may use on legitimate interest, such as post.
    #[serde(default)]
    pub allow_unknown_consent: bool,
}

/// The channels an export may declare.
pub const CHANNELS: [&str; 5] = ["email", "phone", "sms", "post", "ads"];

/// What one export did. Counts and checksums only: no personal data.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExportReport {
    pub export: String,
    pub segment: String,
    pub format: String,
    /// Why nothing was exported this run (its segment was skipped): no file is written and the
    /// audience last sent stays what the next diff is against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    #[serde(default)]
    pub mode: String,
    /// The campaign id of this send: `<campaign>-<as-of>`.
    #[serde(default)]
    pub campaign_id: String,
    /// Members of the segment.
    pub eligible: u64,
    /// Members left out, by reason.
    pub suppressed: BTreeMap<String, u64>,
    /// Members held out as the control group.
    #[serde(default)]
    pub held_out: u64,
    /// Members sent (the treatment group).
    pub exported: u64,
    /// The as-of date of the export the diff is against, when there was one.
    #[serde(default)]
    pub previous_as_of: Option<String>,
    /// Rows added, removed and changed since then (diff and adds modes).
    #[serde(default)]
    pub changes: BTreeMap<String, u64>,
    /// The main file (for `diff`, the added rows).
    pub file: WrittenFile,
    /// Every file written.
    #[serde(default)]
    pub files: Vec<WrittenFile>,
    /// Where copies were delivered.
    #[serde(default)]
    pub delivered_to: Option<String>,
}

/// The `export_audience` table: who each export sent and held out, with a fingerprint of the row
/// sent and the row itself, so that the next export can tell added, removed and changed rows and
/// campaign results can compare the two groups.
pub fn audience_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("as_of_date", DataType::Date32, false),
        Field::new("export", DataType::Utf8, false),
        Field::new("segment", DataType::Utf8, false),
        Field::new("campaign_id", DataType::Utf8, false),
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("group", DataType::Utf8, false),
        Field::new("fingerprint", DataType::Utf8, true),
        Field::new("row", DataType::Utf8, true),
    ]))
}

/// A suppression list: standardised emails, E.164 phones and postal keys
/// ([`clientele_identity::standardise::postal_key`]) that are never exported. The job's global
/// lists hold emails and phones; the contact points of opted-out customers all three.
#[derive(Debug, Clone, Default)]
pub struct SuppressionList {
    pub emails: BTreeSet<String>,
    pub phones: BTreeSet<String>,
    pub postal: BTreeSet<String>,
}

impl SuppressionList {
    /// Reads CSV files with a header and an `email` and/or `phone` column; `what` names the file
    /// in errors; `calling_code` completes national phone numbers.
    pub fn read(&mut self, what: &str, text: &str, calling_code: &str) -> Result<()> {
        let mut r = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(text.as_bytes());
        let bad = |reason: String| Error::BadExport {
            export: "suppression list".into(),
            reason: format!("{what}: {reason}"),
        };
        let headers = r.headers().map_err(|e| bad(e.to_string()))?.clone();
        let col = |n: &str| {
            headers
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(n))
        };
        let (email, phone) = (col("email"), col("phone"));
        if email.is_none() && phone.is_none() {
            return Err(bad("needs an 'email' or a 'phone' column".into()));
        }
        for (i, rec) in r.records().enumerate() {
            let rec = rec.map_err(|e| bad(format!("line {}: {e}", i + 2)))?;
            if let Some(e) = email
                .and_then(|c| rec.get(c))
                .and_then(clientele_identity::standardise::email)
            {
                self.emails.insert(e);
            }
            if let Some(p) = phone
                .and_then(|c| rec.get(c))
                .filter(|p| !p.trim().is_empty())
                .and_then(|p| clientele_identity::standardise::phone(p, calling_code))
            {
                self.phones.insert(p);
            }
        }
        Ok(())
    }

    /// Whether the contact's email, phone or postal address is on the list.
    pub fn contains(&self, c: &Contact, calling_code: &str) -> bool {
        self.contains_sent(c, calling_code, SentContacts::ALL)
    }

    /// Whether one of the contact points an export sends (`sent`) is on the list.
    pub fn contains_sent(&self, c: &Contact, calling_code: &str, sent: SentContacts) -> bool {
        let email = c
            .email
            .as_deref()
            .filter(|_| sent.email)
            .and_then(clientele_identity::standardise::email);
        let phone = c
            .phone
            .as_deref()
            .filter(|_| sent.phone)
            .and_then(|p| clientele_identity::standardise::phone(p, calling_code));
        let postal = || match (&c.street, &c.postcode) {
            (Some(street), Some(postcode)) if sent.postal && !self.postal.is_empty() => {
                clientele_identity::standardise::postal_key(
                    street,
                    postcode,
                    c.first_name.as_deref(),
                )
            }
            _ => None,
        };
        email.is_some_and(|e| self.emails.contains(&e))
            || phone.is_some_and(|p| self.phones.contains(&p))
            || postal().is_some_and(|k| self.postal.contains(&k))
    }

    /// Entries in the list.
    pub fn len(&self) -> usize {
        self.emails.len() + self.phones.len() + self.postal.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The contact points an export sends, which an opted-out contact point must not be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentContacts {
    pub email: bool,
    pub phone: bool,
    /// The street with the postcode (direct mail).
    pub postal: bool,
}

impl SentContacts {
    /// Every kind.
    pub const ALL: Self = Self {
        email: true,
        phone: true,
        postal: true,
    };
}

fn ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl ExportSpec {
    /// The format, when known.
    pub fn destination(&self) -> Option<Format> {
        Format::parse(&self.format)
    }

    /// The mode, `full` by default.
    pub fn mode(&self) -> &str {
        self.mode.as_deref().unwrap_or("full")
    }

    /// The channel whose consent the export needs: the declared one, or the format's.
    pub fn channel(&self) -> Option<&str> {
        if let Some(c) = &self.channel {
            return Some(c);
        }
        match self.destination()? {
            Format::Mailchimp | Format::Hubspot | Format::SalesforceMc | Format::Braze => {
                Some("email")
            }
            Format::GoogleAds | Format::Meta => Some("ads"),
            Format::Csv | Format::Parquet => None,
        }
    }

    /// The campaign name control groups are drawn for.
    pub fn campaign(&self) -> &str {
        self.campaign.as_deref().unwrap_or(&self.name)
    }

    /// Checks names, format, mode and shares; returns every problem.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !ident(&self.name) {
            p.push(format!(
                "export name '{}' must be lower_snake_case",
                self.name
            ));
        }
        match self.destination() {
            None => p.push(format!(
                "format '{}' is unknown ({})",
                self.format,
                crate::formats::FORMATS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some(f) if !f.is_generic() && !self.columns.is_empty() => p.push(format!(
                "'columns' applies to the csv and parquet formats; {} has its own columns ({})",
                self.format,
                f.columns().join(", ")
            )),
            Some(_) => {}
        }
        if !matches!(self.mode(), "full" | "adds" | "diff") {
            p.push(format!(
                "mode '{}' is unknown (full, adds, diff)",
                self.mode()
            ));
        }
        if let Some(c) = &self.channel
            && !CHANNELS.contains(&c.as_str())
        {
            p.push(format!(
                "channel '{c}' is unknown ({})",
                CHANNELS.join(", ")
            ));
        }
        if self.allow_unknown_consent && self.channel().is_none() {
            p.push("allow_unknown_consent needs a channel (channel = \"post\", say)".to_string());
        }
        if let Some(s) = self.holdout_share
            && !(0.0..=0.5).contains(&s)
        {
            p.push(format!(
                "holdout_share {s} must lie between 0 and 0.5 (0.1 holds out a tenth)"
            ));
        }
        if let Some(c) = &self.country
            && !(c.len() == 2 && c.chars().all(|c| c.is_ascii_uppercase()))
        {
            p.push(format!(
                "country '{c}' must be an ISO 3166 two-letter code such as GB"
            ));
        }
        for c in self.columns.iter().chain(self.mapping.values()) {
            if !ident(c) {
                p.push(format!(
                    "column '{c}' must be a lower_snake_case column of customer_view"
                ));
            }
        }
        for k in self.mapping.keys() {
            if !CONTACT_FIELDS.contains(&k.as_str()) {
                p.push(format!(
                    "mapping key '{k}' is not a contact field ({})",
                    CONTACT_FIELDS.join(", ")
                ));
            }
        }
        if let Some(w) = self.response_window_days
            && !(1..=365).contains(&w)
        {
            p.push(format!(
                "response_window_days {w} must be between 1 and 365"
            ));
        }
        if let Some(c) = &self.campaign
            && (c.is_empty() || c.contains(char::is_whitespace))
        {
            p.push(format!("campaign '{c}' must be a word without spaces"));
        }
        p
    }

    /// The contact points the export sends: the campaign-tool formats send email and phone (no
    /// street); csv and parquet send what their `columns` name (email, phone, and the street as
    /// an address).
    pub fn sent_contacts(&self) -> SentContacts {
        match self.destination() {
            Some(f) if f.is_generic() => {
                let has = |field: &str| self.columns.iter().any(|c| *c == self.column_of(field));
                SentContacts {
                    email: has("email"),
                    phone: has("phone"),
                    postal: has("street"),
                }
            }
            _ => SentContacts {
                email: true,
                phone: true,
                postal: false,
            },
        }
    }

    fn column_of(&self, field: &str) -> String {
        self.mapping
            .get(field)
            .cloned()
            .unwrap_or_else(|| field.to_string())
    }

    /// The query behind the export: members joined to the customer view, with the contact fields,
    /// the generic columns, and the suppression reason (empty when none); `view` says which
    /// optional columns the customer view has.
    pub fn query(&self, view: CustomerViewColumns) -> Result<String> {
        let mut cols = String::new();
        for f in CONTACT_FIELDS {
            cols.push_str(&format!(
                ", cast(v.\"{}\" as varchar) as \"__{f}\"",
                self.column_of(f)
            ));
        }
        for (i, c) in self.columns.iter().enumerate() {
            cols.push_str(&format!(", v.\"{c}\" as \"__col{i}\""));
        }
        if self.one_per_household {
            cols.push_str(", cast(v.\"household_id\" as varchar) as \"__household\"");
        }
        let closed = if view.closed_accounts {
            "when coalesce(v.is_account_closed, false) then 'account_closed'"
        } else {
            ""
        };
        let consent = match self.channel() {
            None => "when v.is_opted_out is null then 'consent_unknown'\n            \
                     when v.is_opted_out then 'opted_out'"
                .to_string(),
            Some(_) if !view.consent => {
                return Err(Error::BadExport {
                    export: self.name.clone(),
                    reason: "customer_view has no consent per channel (email_consent, ...): join int_customer_consent as sql/marts/customer_view.sql does, or rerun the job that published it (docs/privacy.md)".into(),
                });
            }
            Some(channel) => {
                let column = if channel == "sms" { "phone" } else { channel };
                let mut rules = format!(
                    "when v.{column}_consent = 'denied' then 'opted_out'\n            \
                     when v.is_opted_out and v.{column}_consent is distinct from 'granted' then 'opted_out'"
                );
                if !self.allow_unknown_consent {
                    rules.push_str(&format!(
                        "\n            when v.{column}_consent is distinct from 'granted' then 'consent_unknown'"
                    ));
                }
                rules
            }
        };
        let contact = if view.opted_out_contact {
            "when v.has_opted_out_contact then 'contact_opted_out'"
        } else {
            ""
        };
        Ok(clientele_sql::queries::EXPORT_AUDIENCE.fill(&[
            ("segment", &self.segment.replace('\'', "''")),
            ("columns", &cols),
            ("consent", &consent),
            ("contact", contact),
            ("closed", closed),
        ])?)
    }
}

/// Which optional columns a customer view has: warehouses published by older versions lack them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CustomerViewColumns {
    /// `is_account_closed`: such customers are suppressed `account_closed`.
    pub closed_accounts: bool,
    /// `has_opted_out_contact`: contact-level suppression (`contact_opted_out`).
    pub opted_out_contact: bool,
    /// `email_consent`, `phone_consent`, `post_consent`, `ads_consent`: consent per channel. An
    /// export with a channel refuses a view without them.
    pub consent: bool,
}

impl CustomerViewColumns {
    /// Every optional column: what a job's own customer view is planned with.
    pub const ALL: Self = Self {
        closed_accounts: true,
        opted_out_contact: true,
        consent: true,
    };
}

/// Prefixes a cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage
/// return at the start) with a single quote, as OWASP recommends for CSV injection.
pub fn neutralise_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => {
            std::borrow::Cow::Owned(format!("'{cell}"))
        }
        _ => std::borrow::Cow::Borrowed(cell),
    }
}

/// A phone in E.164 and nothing else (`+447700900123`): a value the formats produce that starts
/// with `+` yet cannot run as a formula. Every other cell, validated emails included, goes through
/// [`neutralise_formula`].
fn is_plain_e164(cell: &str) -> bool {
    cell.strip_prefix('+')
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether the deterministic draw puts `customer` in the control group of `campaign`: the first
/// eight bytes of SHA-256(`campaign:customer`) as a fraction of 2^64, below `share`.
pub fn in_control_group(campaign: &str, customer: &str, share: f64) -> bool {
    if share <= 0.0 {
        return false;
    }
    let digest = Sha256::digest(format!("{campaign}:{customer}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) as f64 / 18_446_744_073_709_551_616.0) < share
}

/// The rows an export sent: customer id → (fingerprint, the row as a JSON array of cells).
pub type PreviousRows = BTreeMap<String, (String, String)>;

/// Everything an export needs besides its spec.
pub struct ExportContext<'a> {
    pub engine: &'a Engine,
    pub warehouse: &'a Warehouse,
    pub as_of: NaiveDate,
    /// Warehouse-relative directories: where files are staged and where they will be published.
    pub staged_dir: String,
    pub published_dir: String,
    pub locale: Locale,
    pub suppression: &'a SuppressionList,
    /// Customers any of whose contact points (on any linked record) a global suppression list
    /// holds ([`crate::listed_customers`]): suppressed `suppression_list`.
    pub listed_customers: &'a std::collections::HashSet<String>,
    /// The emails and phones an opted-out customer holds ([`crate::opted_out_contacts`]): a row
    /// that would send to one is suppressed `contact_opted_out`, even when the contact point is
    /// shared (a family's landline or email) and its customer is otherwise reachable.
    pub opted_out_contacts: &'a SuppressionList,
    /// The optional columns `customer_view` has.
    pub view: CustomerViewColumns,
    /// The last export's rows and its date.
    pub previous: Option<(NaiveDate, PreviousRows)>,
}

/// One sent row.
struct Sent {
    customer_id: String,
    cells: Vec<String>,
    fingerprint: String,
}

fn fingerprint(cells: &[String]) -> String {
    let mut h = Sha256::new();
    for c in cells {
        h.update(c.as_bytes());
        h.update([0x1f]);
    }
    hex::encode(h.finalize())
}

fn csv_file(
    header: &[String],
    rows: &[&[String]],
    validated: &dyn Fn(usize) -> bool,
) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    w.write_record(header)
        .map_err(|e| Error::Internal(e.to_string()))?;
    for row in rows {
        let record: Vec<std::borrow::Cow<'_, str>> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if validated(i) && is_plain_e164(cell) {
                    std::borrow::Cow::Borrowed(cell.as_str())
                } else {
                    neutralise_formula(cell)
                }
            })
            .collect();
        w.write_record(record.iter().map(|c| c.as_bytes()))
            .map_err(|e| Error::Internal(e.to_string()))?;
    }
    w.into_inner().map_err(|e| Error::Internal(e.to_string()))
}

fn parquet_file(header: &[String], rows: &[&[String]]) -> Result<Vec<u8>> {
    let schema = Arc::new(Schema::new(
        header
            .iter()
            .map(|h| Field::new(h, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let columns: Vec<arrow::array::ArrayRef> = (0..header.len())
        .map(|i| {
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| {
                        let v = r.get(i).map(String::as_str).unwrap_or_default();
                        (!v.is_empty()).then_some(v)
                    })
                    .collect::<Vec<_>>(),
            )) as arrow::array::ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None)
        .map_err(|e| Error::Internal(e.to_string()))?;
    w.write(&batch)
        .map_err(|e| Error::Internal(e.to_string()))?;
    w.close().map_err(|e| Error::Internal(e.to_string()))?;
    Ok(buf)
}

/// What [`export_segment`] returns: the report, the files to publish, and the audience rows.
pub struct ExportOutput {
    pub report: ExportReport,
    /// The files staged (their bytes are in the staging area, not held here: at ten million
    /// customers one export's files are hundreds of MB).
    pub files: Vec<WrittenFile>,
    pub audience: RecordBatch,
}

/// An export not made this run because its segment was skipped: no files, no audience rows (so
/// the audience last sent stays the one the next diff is against), and the reason.
pub fn skipped_export(spec: &ExportSpec, why: &str) -> ExportOutput {
    ExportOutput {
        report: ExportReport {
            skipped: Some(format!("segment {} {why}", spec.segment)),
            ..blank_report(spec, String::new())
        },
        files: Vec::new(),
        audience: RecordBatch::new_empty(audience_schema()),
    }
}

/// The report of an export before anything was counted or written.
fn blank_report(spec: &ExportSpec, campaign_id: String) -> ExportReport {
    ExportReport {
        export: spec.name.clone(),
        segment: spec.segment.clone(),
        format: spec.format.clone(),
        mode: spec.mode().to_string(),
        campaign_id,
        eligible: 0,
        suppressed: BTreeMap::new(),
        held_out: 0,
        exported: 0,
        previous_as_of: None,
        changes: BTreeMap::new(),
        file: WrittenFile::of_bytes("", 0, &[]),
        files: Vec::new(),
        delivered_to: None,
        skipped: None,
    }
}

/// Writes one export: the file(s) for its mode under `staged_dir` and a manifest beside them.
pub async fn export_segment(spec: &ExportSpec, ctx: &ExportContext<'_>) -> Result<ExportOutput> {
    let problems = spec.problems();
    let bad = |reason: String| Error::BadExport {
        export: spec.name.clone(),
        reason,
    };
    if !problems.is_empty() {
        return Err(bad(problems.join("; ")));
    }
    let format = spec
        .destination()
        .ok_or_else(|| bad(format!("format '{}' is unknown", spec.format)))?;
    let batches = ctx
        .engine
        .collect(&format!("export '{}'", spec.name), &spec.query(ctx.view)?)
        .await?;
    let campaign_id = format!("{}-{}", spec.campaign(), ctx.as_of.format("%Y-%m-%d"));
    let share = spec.holdout_share.unwrap_or(0.0);
    let header: Vec<String> = if format.is_generic() {
        std::iter::once("customer_id".to_string())
            .chain(spec.columns.iter().cloned())
            .collect()
    } else {
        format.columns().iter().map(|c| c.to_string()).collect()
    };
    let mut report = blank_report(spec, campaign_id.clone());
    let mut sent: Vec<Sent> = Vec::new();
    let sent_contacts = spec.sent_contacts();
    let mut control: Vec<String> = Vec::new();
    let mut households_seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    // With one row per household, the household id is the column before the suppression reason.
    let extra = usize::from(spec.one_per_household);
    let opts = FormatOptions::default().with_null("");
    for batch in &batches {
        let n = batch.num_columns();
        let text = |i: usize| batch.column(i).as_string_opt::<i32>();
        let ids = text(0).ok_or_else(|| Error::Internal("customer_id is not text".into()))?;
        let reason = text(n - 1)
            .ok_or_else(|| Error::Internal("the suppression reason is not text".into()))?;
        let fields: Vec<&StringArray> = (1..=CONTACT_FIELDS.len())
            .map(|i| text(i).ok_or_else(|| Error::Internal("a contact field is not text".into())))
            .collect::<Result<_>>()?;
        let household = if spec.one_per_household {
            Some(text(n - 2).ok_or_else(|| Error::Internal("household_id is not text".into()))?)
        } else {
            None
        };
        let generic: Vec<ArrayFormatter<'_>> = batch.columns()
            [1 + CONTACT_FIELDS.len()..n - 1 - extra]
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Internal(e.to_string()))?;
        for row in 0..batch.num_rows() {
            report.eligible += 1;
            if reason.is_valid(row) {
                *report
                    .suppressed
                    .entry(reason.value(row).to_string())
                    .or_default() += 1;
                continue;
            }
            let get = |k: usize| {
                let a = fields[k];
                (a.is_valid(row)).then(|| a.value(row).to_string())
            };
            let contact = Contact {
                customer_id: ids.value(row).to_string(),
                email: get(0),
                phone: get(1),
                first_name: get(2),
                last_name: get(3),
                postcode: get(4),
                city: get(5),
                street: get(6),
            };
            if ctx.opted_out_contacts.contains_sent(
                &contact,
                &ctx.locale.calling_code,
                sent_contacts,
            ) {
                *report
                    .suppressed
                    .entry("contact_opted_out".into())
                    .or_default() += 1;
                continue;
            }
            if ctx.listed_customers.contains(&contact.customer_id)
                || ctx.suppression.contains(&contact, &ctx.locale.calling_code)
            {
                *report
                    .suppressed
                    .entry("suppression_list".into())
                    .or_default() += 1;
                continue;
            }
            let cells = if format.is_generic() {
                std::iter::once(contact.customer_id.clone())
                    .chain(generic.iter().map(|f| f.value(row).to_string()))
                    .collect()
            } else {
                match format.row(&contact, &ctx.locale) {
                    Ok(cells) => cells,
                    Err(why) => {
                        *report.suppressed.entry(why.into()).or_default() += 1;
                        continue;
                    }
                }
            };
            let draw_key = match household {
                Some(h) => {
                    let key = if h.is_valid(row) {
                        h.value(row).to_string()
                    } else {
                        contact.customer_id.clone()
                    };
                    if !households_seen.insert(key.clone()) {
                        *report
                            .suppressed
                            .entry("same_household".into())
                            .or_default() += 1;
                        continue;
                    }
                    key
                }
                None => contact.customer_id.clone(),
            };
            if in_control_group(spec.campaign(), &draw_key, share) {
                report.held_out += 1;
                control.push(contact.customer_id);
                continue;
            }
            let fp = fingerprint(&cells);
            sent.push(Sent {
                customer_id: contact.customer_id,
                cells,
                fingerprint: fp,
            });
        }
    }
    report.exported = sent.len() as u64;
    // The rows are in `sent` now: the query's batches are let go before the files are made.
    drop(batches);

    // Which rows go in which file: each file's rows are the sent rows themselves (or the removed
    // rows read back from the last audience), never copies of them.
    let mut removed: Vec<Vec<String>> = Vec::new();
    let mut outputs: Vec<(String, Vec<&[String]>)> = Vec::new();
    let stem = &spec.name;
    let ext = format.extension();
    match spec.mode() {
        "full" => outputs.push((
            format!("{stem}.{ext}"),
            sent.iter().map(|s| s.cells.as_slice()).collect(),
        )),
        mode => {
            let previous = ctx.previous.as_ref();
            report.previous_as_of = previous.map(|(d, _)| d.to_string());
            let empty = BTreeMap::new();
            let before = previous.map_or(&empty, |(_, rows)| rows);
            let (mut added, mut changed): (Vec<&[String]>, Vec<&[String]>) =
                (Vec::new(), Vec::new());
            for s in &sent {
                match before.get(&s.customer_id) {
                    None => added.push(&s.cells),
                    Some((fp, _)) if *fp != s.fingerprint => changed.push(&s.cells),
                    Some(_) => {}
                }
            }
            let now: BTreeSet<&str> = sent.iter().map(|s| s.customer_id.as_str()).collect();
            removed = before
                .iter()
                .filter(|(id, _)| !now.contains(id.as_str()))
                .map(|(_, (_, row))| serde_json::from_str::<Vec<String>>(row).unwrap_or_default())
                .collect();
            let removed_rows: Vec<&[String]> = removed.iter().map(Vec::as_slice).collect();
            report.changes.insert("added".into(), added.len() as u64);
            report
                .changes
                .insert("removed".into(), removed.len() as u64);
            report
                .changes
                .insert("changed".into(), changed.len() as u64);
            if mode == "adds" {
                // The members sent before and not now (left the segment, opted out, suppressed):
                // the tools keep what was uploaded, so an opt-out reaches them only by removal.
                outputs.push((format!("{stem}.{ext}"), added));
                outputs.push((format!("{stem}_removed.{ext}"), removed_rows));
            } else {
                outputs.push((format!("{stem}_added.{ext}"), added));
                outputs.push((format!("{stem}_removed.{ext}"), removed_rows));
                outputs.push((format!("{stem}_changed.{ext}"), changed));
            }
        }
    }
    let mut files = Vec::new();
    for (name, rows) in &outputs {
        let data = if format == Format::Parquet {
            parquet_file(&header, rows)?
        } else {
            csv_file(&header, rows, &|i| format.is_validated_column(i))?
        };
        let file = WrittenFile::of_bytes(
            format!("{}/{name}", ctx.published_dir),
            rows.len() as u64,
            &data,
        );
        // One copy of the file's bytes, shared by the staging write and the delivery.
        let data = Bytes::from(data);
        ctx.warehouse
            .put(&format!("{}/{name}", ctx.staged_dir), data.clone())
            .await?;
        files.push(file);
    }
    drop(outputs);
    drop(removed);
    report.files = files.clone();
    report.file = report
        .files
        .first()
        .cloned()
        .unwrap_or_else(|| WrittenFile::of_bytes("", 0, &[]));
    let manifest =
        serde_json::to_vec_pretty(&report).map_err(|e| Error::Internal(e.to_string()))?;
    let manifest_file = WrittenFile::of_bytes(
        format!("{}/export_manifest.json", ctx.published_dir),
        0,
        &manifest,
    );
    let manifest = Bytes::from(manifest);
    ctx.warehouse
        .put(
            &format!("{}/export_manifest.json", ctx.staged_dir),
            manifest.clone(),
        )
        .await?;
    files.push(manifest_file);

    // The audience: who was sent (with the row) and who was held out.
    let days = clientele_sql::date32(ctx.as_of);
    let n = sent.len() + control.len();
    let mut ids: Vec<&str> = sent.iter().map(|s| s.customer_id.as_str()).collect();
    ids.extend(control.iter().map(String::as_str));
    let mut groups = vec!["treatment"; sent.len()];
    groups.extend(vec!["control"; control.len()]);
    let mut fps: Vec<Option<&str>> = sent.iter().map(|s| Some(s.fingerprint.as_str())).collect();
    fps.extend(vec![None; control.len()]);
    // Each sent row as JSON, written straight into the column (no list of strings beside it).
    let mut rows = arrow::array::StringBuilder::new();
    for s in &sent {
        match serde_json::to_string(&s.cells) {
            Ok(json) => rows.append_value(json),
            Err(_) => rows.append_null(),
        }
    }
    for _ in &control {
        rows.append_null();
    }
    let audience = RecordBatch::try_new(
        audience_schema(),
        vec![
            Arc::new(Date32Array::from(vec![days; n])),
            Arc::new(StringArray::from(vec![spec.name.as_str(); n])),
            Arc::new(StringArray::from(vec![spec.segment.as_str(); n])),
            Arc::new(StringArray::from(vec![campaign_id.as_str(); n])),
            Arc::new(StringArray::from(ids)),
            Arc::new(StringArray::from(groups)),
            Arc::new(StringArray::from(fps)),
            Arc::new(rows.finish()),
        ],
    )
    .map_err(|e| Error::Internal(e.to_string()))?;
    tracing::info!(export = %spec.name, eligible = report.eligible, exported = report.exported, held_out = report.held_out, "export written");
    Ok(ExportOutput {
        report,
        files,
        audience,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_plain_text_is_not() {
        assert_eq!(
            neutralise_formula("=HYPERLINK(\"x\")"),
            "'=HYPERLINK(\"x\")"
        );
        assert_eq!(neutralise_formula("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise_formula("+49 30 1234"), "'+49 30 1234");
        assert_eq!(neutralise_formula("Zoë"), "Zoë");
    }

    fn spec() -> ExportSpec {
        ExportSpec {
            name: "e".into(),
            segment: "s".into(),
            format: "csv".into(),
            columns: Vec::new(),
            mapping: BTreeMap::new(),
            mode: None,
            location: None,
            campaign: None,
            holdout_share: None,
            country: None,
            response_window_days: None,
            one_per_household: false,
            channel: None,
            allow_unknown_consent: false,
        }
    }

    #[test]
    fn an_export_needs_granted_consent_on_its_channel() -> Result<()> {
        let mut s = spec();
        assert_eq!(s.channel(), None, "csv names its channel");
        let legacy = s.query(CustomerViewColumns::ALL)?;
        assert!(legacy.contains("when v.is_opted_out then 'opted_out'"));
        assert!(!legacy.contains("_consent"));
        for (format, channel) in [("mailchimp", "email"), ("braze", "email"), ("meta", "ads")] {
            s.format = format.into();
            assert_eq!(s.channel(), Some(channel), "{format}");
        }
        s.format = "csv".into();
        s.channel = Some("sms".into());
        let q = s.query(CustomerViewColumns::ALL)?;
        assert!(
            q.contains("when v.phone_consent = 'denied' then 'opted_out'"),
            "{q}"
        );
        assert!(q.contains("v.phone_consent is distinct from 'granted' then 'consent_unknown'"));
        s.channel = Some("post".into());
        s.allow_unknown_consent = true;
        let q = s.query(CustomerViewColumns::ALL)?;
        assert!(
            q.contains("when v.post_consent = 'denied' then 'opted_out'"),
            "{q}"
        );
        assert!(
            !q.contains("consent_unknown"),
            "unknown consent allowed: {q}"
        );
        // A customer view without consent per channel is refused, never read as consent.
        let old = CustomerViewColumns {
            consent: false,
            ..CustomerViewColumns::ALL
        };
        assert!(matches!(s.query(old), Err(Error::BadExport { .. })));
        s.channel = Some("fax".into());
        assert!(s.problems().iter().any(|p| p.contains("channel 'fax'")));
        s.channel = None;
        assert!(
            s.problems()
                .iter()
                .any(|p| p.contains("allow_unknown_consent"))
        );
        Ok(())
    }

    #[test]
    fn bad_specs_list_every_problem() {
        let mut s = spec();
        s.name = "Bad".into();
        s.format = "xlsx".into();
        s.columns = vec!["e-mail".into()];
        s.mode = Some("sometimes".into());
        s.holdout_share = Some(0.9);
        s.mapping.insert("fax".into(), "fax".into());
        assert_eq!(s.problems().len(), 6, "{:?}", s.problems());
        let mut s = spec();
        s.format = "mailchimp".into();
        s.columns = vec!["email".into()];
        assert!(s.problems()[0].contains("has its own columns"));
    }

    #[test]
    fn control_groups_are_deterministic_and_near_their_share() {
        let held = (0..10_000)
            .filter(|i| in_control_group("winback", &format!("C{i}"), 0.1))
            .count();
        assert!((900..1100).contains(&held), "{held}");
        for i in 0..100 {
            let id = format!("C{i}");
            assert_eq!(
                in_control_group("winback", &id, 0.1),
                in_control_group("winback", &id, 0.1)
            );
        }
        assert!(!in_control_group("winback", "C1", 0.0));
        // Another campaign draws another group.
        let other = (0..10_000)
            .filter(|i| {
                in_control_group("winback", &format!("C{i}"), 0.1)
                    && in_control_group("upsell", &format!("C{i}"), 0.1)
            })
            .count();
        assert!(other < 200, "{other}");
    }

    #[test]
    fn suppression_lists_match_standardised_emails_and_phones() -> Result<()> {
        let mut list = SuppressionList::default();
        list.read(
            "list.csv",
            "email,phone\n JANE@example.com ,\n,07700 900123\n",
            "44",
        )?;
        assert_eq!(list.len(), 2);
        let c = Contact {
            customer_id: "C1".into(),
            email: Some("jane@EXAMPLE.com".into()),
            ..Contact::default()
        };
        assert!(list.contains(&c, "44"));
        let c = Contact {
            customer_id: "C2".into(),
            phone: Some("+44 7700 900123".into()),
            ..Contact::default()
        };
        assert!(list.contains(&c, "44"));
        assert!(list.read("bad.csv", "name\nx\n", "44").is_err());
        Ok(())
    }

    #[test]
    fn an_address_matches_by_its_postal_key_with_the_first_names_initial() {
        let mut list = SuppressionList::default();
        list.postal.insert("12 high st|LS14AB|b".into());
        let at = |first: &str, street: &str| Contact {
            customer_id: "C1".into(),
            first_name: Some(first.into()),
            street: Some(street.into()),
            postcode: Some("ls1 4ab".into()),
            ..Contact::default()
        };
        // Brenda (or Brian) at 12 High Street, written either way, is on it; Ann at the same
        // address is not, nor is a contact without a street. Nicknames count by their full form
        // (Beth is Elizabeth), as in identity resolution.
        assert!(list.contains(&at("Brenda", "12 HIGH STREET"), "44"));
        assert!(list.contains(&at("Brian", "12 High St"), "44"));
        assert!(!list.contains(&at("Ann", "12 High Street"), "44"));
        assert!(!list.contains(&at("Beth", "12 High Street"), "44"));
        let mut no_street = at("Brenda", "");
        no_street.street = None;
        assert!(!list.contains(&no_street, "44"));
        // An export that does not send the address is not stopped by it.
        let email_only = SentContacts {
            email: true,
            phone: false,
            postal: false,
        };
        assert!(!list.contains_sent(&at("Brenda", "12 High St"), "44", email_only));
    }

    #[test]
    fn no_cell_of_any_format_can_run_as_a_formula() -> Result<()> {
        let header = vec!["Email Address".to_string(), "Phone Number".to_string()];
        let row = vec![
            "=cmd|'/c calc'!a0@x.co".to_string(),
            "+447700900123".to_string(),
        ];
        let evil_phone = vec!["-2+3@x.co".to_string(), "+1+cmd|'/c calc'!A0".to_string()];
        let out = csv_file(&header, &[&row, &evil_phone], &|_| true)?;
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("'=cmd"), "{text}");
        assert!(
            text.contains(",+447700900123"),
            "a phone is left as it is: {text}"
        );
        assert!(
            text.contains("'-2+3@x.co") && text.contains("'+1+cmd"),
            "{text}"
        );
        Ok(())
    }

    #[test]
    fn an_export_sends_the_contact_points_its_format_or_columns_carry() {
        let spec = |format: &str, columns: &[&str]| ExportSpec {
            format: format.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            ..spec()
        };
        let mail = spec("csv", &["first_name", "street", "postcode"]).sent_contacts();
        assert_eq!((mail.email, mail.phone, mail.postal), (false, false, true));
        let ads = spec("meta", &[]).sent_contacts();
        assert_eq!((ads.email, ads.phone, ads.postal), (true, true, false));
    }
}
