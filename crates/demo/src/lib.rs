//! The demo data: a mid-sized retailer's customer files, generated deterministically from a seed.
//!
//! # Overview
//! [`generate`] writes seven sources shaped like the real thing, plus the truth behind them:
//! - `sources/crm/customers.dat`: the legacy CRM extract, fixed-width, latin-1, upper-case names with
//!   accents, free-format phones, often no email, birth dates `YYYYMMDD` with `00000000` for unknown,
//!   a `Y`/`N` opt-out flag and an `A`/`C` (active or closed) account status ([`CRM_LAYOUT`] gives
//!   the positions).
//! - `sources/orders/order_log.txt`: the legacy order log in the CDNOW layout (whitespace-aligned
//!   customer number, `YYYYMMDD`, quantity, amount).
//! - `sources/web/customers.jsonl`: web-shop accounts as JSON lines with a nested name and address,
//!   ISO-8601 timestamps with offsets and a marketing-consent flag.
//! - `sources/web/orders.csv`: web orders.
//! - `sources/vendor/demographics.csv`: a data vendor's append for about two persons in three, keyed
//!   only by name and address (capitals, initials, abbreviated streets), with age band, income band
//!   (which follows spend), household size, tenure, lifestyle, and industry and employee band for
//!   businesses; plus records of people who are not customers.
//! - `sources/campaigns/responses.csv`: the campaign tool's export of eight past campaigns
//!   ([`CAMPAIGNS`]), one row per contact per send, under the tool's own contact id; a purchase within
//!   two weeks of a send is usually a response; a few contacts unsubscribe.
//! - `sources/service/tickets.csv`: service-desk tickets under the requester's full name, email and
//!   phone; complaints, questions, returns and delivery queries, recent ones often still open.
//! - `sources/suppression/do_not_contact.csv`: the global suppression list, about one person in
//!   ninety, by email (in capitals) or phone (in a format no source uses).
//! - `truth/person_map.csv`: which person and household are behind every source record (to measure
//!   identity resolution).
//!
//! Persons are legacy-only, web-only or in both systems with noisy fields (case, typos, a moved
//! address, a different email). The realistic demo (the default, [`DemoOptions::new`]) has what
//! real customer bases have and the simple one lacks: households of up to six people sharing a
//! surname, an address, a landline and sometimes an email, with twins and parents and children of
//! one first name; second accounts of one person within the CRM and within the web shop;
//! placeholders (`0000000000`, the shop's own number, `noemail@example.com`, `19000101`); and, with
//! [`Country::Au`] or [`Country::Us`], postal areas of thousands of people. Purchases follow a buy-till-you-die process: each buyer has a
//! purchase rate (gamma distributed) and a dropout probability after each purchase (beta distributed),
//! and spend follows the gamma-gamma model, so models fitted on the data find real signal. About one line
//! in three hundred is malformed, as in real extracts.
//!
//! # Example
//! ```
//! let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
//! let as_of = chrono::NaiveDate::from_ymd_opt(2025, 12, 31).ok_or("date")?;
//! let summary = clientele_demo::generate(dir.path(), &clientele_demo::DemoOptions::new(200, 7, as_of))
//!     .map_err(|e| e.to_string())?;
//! assert!(summary.crm_records > 0 && summary.web_orders > 0);
//! # Ok::<(), String>(())
//! ```

mod generate;
mod names;
mod responses;

pub use generate::{CAMPAIGNS, CRM_LAYOUT, Country, DemoOptions, DemoSummary, Error, generate};
pub use responses::{Recipient, ResponseSummary, simulate_responses};
