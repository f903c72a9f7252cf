//! Segments and exports: who marketing should talk to, and the files that carry them to campaign tools.
//!
//! # Overview
//! - A segment is a SQL file in `sql/segments/` whose header comment gives its `name`, `description`
//!   and `owner`, and whose query returns `customer_id` plus any attributes to carry along
//!   ([`load_segments`]).
//! - [`evaluate_segments`] runs them all into one `segment_membership` table (as_of, segment,
//!   customer_id, attributes as JSON), sorted, and refuses a segment that lists a customer twice.
//! - [`export_segment`] writes one segment as CSV (RFC 4180, UTF-8, spreadsheet formulas neutralised)
//!   with the columns the job asks for from `customer_view`. Suppression is applied inside the query
//!   and cannot be turned off: a customer who opted out in any linked record, or whose consent is unknown,
//!   or who holds an email, phone or postal address that any opted-out record holds, linked to them or
//!   not (`has_opted_out_contact`, contact-level suppression), never reaches the file. An export manifest records eligible, suppressed by reason, exported, and the
//!   file's checksum, and no personal data.
//! - [`load_suppression_lists`] reads the global suppression lists and [`listed_customers`] finds
//!   every customer holding a listed email or phone on any linked record; [`previous_audience`] finds
//!   what an export sent last time (adds and diffs); both serve the export step and
//!   `clientele export` alike.
//! - [`measure_campaigns`] measures every earlier campaign sent with a control group
//!   ([`CampaignResult`]: lift with a 95% interval, incremental revenue); [`size_alarms`] flags
//!   segments whose size changed sharply since the last run.
//!
//! # Example
//! ```
//! use clientele_segments::parse_segment_header;
//! let h = parse_segment_header("-- name: Lapsed best customers\n-- owner: crm-team\nselect 1");
//! assert_eq!(h.get("name").map(String::as_str), Some("Lapsed best customers"));
//! ```

mod alarms;
mod audience;
mod campaigns;
mod error;
mod export;
pub mod formats;
mod segment;

pub use alarms::{AlarmRule, EarlierSizes, size_alarms, thousands};
pub use audience::{
    listed_customers, load_suppression_lists, opted_out_contacts, previous_audience, sent_rows,
    suppression_batch, suppression_from_batches, suppression_schema,
};
pub use campaigns::{
    CampaignResult, campaign_results_batch, campaign_results_schema, measure_campaigns,
};
pub use error::{Error, Result};
pub use export::{
    CONTACT_FIELDS, CustomerViewColumns, ExportContext, ExportOutput, ExportReport, ExportSpec,
    PreviousRows, SentContacts, SuppressionList, audience_schema, export_segment, in_control_group,
    neutralise_formula, skipped_export,
};
pub use segment::{
    Segment, SegmentSize, evaluate_segments, load_segments, membership_schema,
    parse_segment_header, unmet_needs,
};
