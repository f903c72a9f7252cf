//! The read side: what runs have published, for every command that reads a warehouse without
//! running a job (`query`, `segments`, `export`, `score`, `demo --respond`) and for the steps that
//! read earlier runs. Each rule (which dates exist, which tables a date has, which suppression list
//! a run applied, how segments changed) has its one definition here.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use clientele_segments::formats::Locale;
use clientele_segments::{
    CustomerViewColumns, ExportContext, ExportSpec, PreviousRows, SegmentSize, SuppressionList,
    export_segment, listed_customers, opted_out_contacts, suppression_from_batches,
};
use clientele_sql::{Engine, EngineOptions};
use clientele_store::{Snapshot, Warehouse, layout};

use crate::error::{Error, Result};
use crate::manifest::RunManifest;

/// The global suppression list as a run applied it (written by the export step).
pub const SUPPRESSION_TABLE: (&str, &str) = crate::steps::export::WRITES[1];

/// A warehouse's published runs and tables.
pub struct Published {
    warehouse: Warehouse,
    /// The committed snapshot everything is read through (loaded once, on first use).
    snapshot: std::sync::Mutex<Option<Arc<Snapshot>>>,
}

impl Published {
    /// Opens the warehouse at `url` (a directory, relative to `base_dir`, or an object-store URL).
    pub fn open(url: &str, base_dir: &Path) -> Result<Self> {
        Ok(Self {
            warehouse: Warehouse::open(url, base_dir)?,
            snapshot: std::sync::Mutex::new(None),
        })
    }

    /// The latest committed snapshot (read once; every read of this `Published` sees that one
    /// commit, even if a run commits meanwhile).
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>> {
        if let Some(s) = self.snapshot.lock().ok().and_then(|s| s.clone()) {
            return Ok(s);
        }
        let loaded = Arc::new(self.warehouse.snapshot().await?);
        if let Ok(mut s) = self.snapshot.lock() {
            *s = Some(Arc::clone(&loaded));
        }
        Ok(loaded)
    }

    /// Whether a logical path is committed and its file is there (a file deleted by hand counts
    /// as missing).
    async fn present(&self, rel: &str) -> Result<bool> {
        let snapshot = self.snapshot().await?;
        match snapshot.resolve(rel) {
            Some(physical) => Ok(self.warehouse.exists(physical).await?),
            None => Ok(false),
        }
    }

    /// An engine reading this snapshot.
    async fn engine(&self, as_of: NaiveDate) -> Result<Engine> {
        let engine = Engine::new(&self.warehouse, as_of, &EngineOptions::default())?;
        engine.use_snapshot(self.snapshot().await?);
        Ok(engine)
    }

    /// The warehouse.
    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    /// Every run's manifest, oldest first.
    pub async fn runs(&self) -> Result<Vec<RunManifest>> {
        crate::history::list_runs(&self.warehouse).await
    }

    /// The as-of dates with a published `layer/table` partition, ascending.
    pub async fn dates(&self, layer: &str, table: &str) -> Result<Vec<NaiveDate>> {
        let snapshot = self.snapshot().await?;
        let mut dates: Vec<NaiveDate> = snapshot
            .under(&format!("{layer}/{table}/"))
            .filter_map(|(p, _)| {
                p.split('/')
                    .find_map(|s| s.strip_prefix("as_of="))
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            })
            .collect();
        dates.sort();
        dates.dedup();
        Ok(dates)
    }

    /// An engine whose `as_of_date()` is `as_of`, with the given tables (layer, table) of that
    /// date registered by name. A table not published for that date is [`Error::NotPublished`],
    /// listing the dates it has.
    pub async fn engine_at(&self, as_of: NaiveDate, tables: &[(&str, &str)]) -> Result<Engine> {
        let engine = self.engine(as_of).await?;
        for (layer, table) in tables {
            let rel = layout::partition_file(layer, table, as_of);
            if !engine.is_published(&rel).await? {
                let dates = self.dates(layer, table).await?;
                return Err(Error::NotPublished(format!(
                    "the warehouse {} has no {table} published as of {as_of} (published: {})",
                    self.warehouse.display(),
                    if dates.is_empty() {
                        "none".to_string()
                    } else {
                        dates
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )));
            }
            engine.register_file(table, &rel).await?;
        }
        Ok(engine)
    }

    /// An engine with every published table, each with its `as_of` column, for ad-hoc queries.
    /// `as_of_date()` is `today`. Returns the tables registered (name, layer).
    pub async fn engine_over_all(
        &self,
        today: NaiveDate,
    ) -> Result<(Engine, Vec<(String, String)>)> {
        let engine = self.engine(today).await?;
        let tables = engine.register_published().await?;
        Ok((engine, tables))
    }

    /// The suppression list the run as of `as_of` applied, or `None` when it published none (its
    /// job has no export step).
    pub async fn suppression_list(&self, as_of: NaiveDate) -> Result<Option<SuppressionList>> {
        let (layer, table) = SUPPRESSION_TABLE;
        let rel = layout::partition_file(layer, table, as_of);
        let engine = self.engine(as_of).await?;
        if !self.present(&rel).await? {
            return Ok(None);
        }
        engine.register_file(table, &rel).await?;
        let batches = engine
            .collect(
                "reading the suppression list",
                &format!("select kind, value from {table}"),
            )
            .await?;
        Ok(Some(suppression_from_batches(&batches)?))
    }

    /// The segments of the latest published run that evaluated segments, against the run before
    /// it that did; `None` when no run has.
    pub async fn segment_changes(&self) -> Result<Option<SegmentChanges>> {
        let runs = self.runs().await?;
        let mut published = runs
            .into_iter()
            .rev()
            .filter(|r| r.published && !r.segments.is_empty());
        let Some(latest) = published.next() else {
            return Ok(None);
        };
        let before = published
            .next()
            .map(|r| {
                r.segments
                    .iter()
                    .map(|s| (s.segment.clone(), s.customers))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(SegmentChanges {
            run_id: latest.run_id,
            as_of: latest.as_of,
            alarms: latest.alarms,
            segments: latest.segments,
            before,
        }))
    }
}

/// Every customer's contact points, written by the identity step: a pull checks the suppression
/// list against all of them when the run published it.
pub const CONTACTS_TABLE: (&str, &str) = crate::steps::identity::WRITES[4];

/// The contact points opted-out customers hold (the demo's model): a pull suppresses rows that
/// would send to one when the run published it.
pub const CONTACT_SUPPRESSION_TABLE: (&str, &str) =
    ("intermediate", crate::steps::export::CONTACT_SUPPRESSION);

/// The tables a pull of a segment reads.
pub const PULL_TABLES: [(&str, &str); 2] = [
    ("segments", "segment_membership"),
    ("marts", "customer_view"),
];

impl Published {
    /// What a pull of a segment needs as of `as_of`: an engine with the segments and the
    /// customer view of that date (and every customer's contact points, when that run's identity
    /// step listed them), and the suppression list that run applied (`None` when it published
    /// none).
    pub async fn pull_engine(&self, as_of: NaiveDate) -> Result<(Engine, Option<SuppressionList>)> {
        let engine = self.engine_at(as_of, &PULL_TABLES).await?;
        for (layer, table) in [CONTACTS_TABLE, CONTACT_SUPPRESSION_TABLE] {
            let rel = layout::partition_file(layer, table, as_of);
            if self.present(&rel).await? {
                engine.register_file(table, &rel).await?;
            }
        }
        Ok((engine, self.suppression_list(as_of).await?))
    }

    /// The rows a command-line pull (`clientele export`, which has no audience history of its
    /// own) sent last time: the same pull in full mode on the latest date before `as_of` with
    /// published segments, under that run's suppression list. `None` when there is no such date.
    pub async fn previous_pull(
        &self,
        spec: &ExportSpec,
        locale: &Locale,
        as_of: NaiveDate,
    ) -> Result<Option<(NaiveDate, PreviousRows)>> {
        let (layer, table) = PULL_TABLES[0];
        let dates = self.dates(layer, table).await?;
        let Some(before) = dates.iter().rev().find(|d| **d < as_of).copied() else {
            return Ok(None);
        };
        let (engine, list) = self.pull_engine(before).await?;
        let scratch = Warehouse::open("memory://previous-pull", Path::new("/"))?;
        let mut full = spec.clone();
        full.mode = Some("full".into());
        let list = list.unwrap_or_default();
        let listed = listed_customers(&engine, &list).await?;
        let opted_out = opted_out_contacts(&engine).await?;
        let ctx = ExportContext {
            engine: &engine,
            warehouse: &scratch,
            as_of: before,
            staged_dir: "previous".into(),
            published_dir: "previous".into(),
            locale: locale.clone(),
            suppression: &list,
            listed_customers: &listed,
            opted_out_contacts: &opted_out,
            view: customer_view_columns(&engine).await?,
            previous: None,
        };
        let out = export_segment(&full, &ctx).await?;
        Ok(Some((
            before,
            clientele_segments::sent_rows(&out.audience)?,
        )))
    }
}

/// Which optional columns the customer view registered in `engine` has (`is_account_closed`,
/// `has_opted_out_contact`; warehouses of older versions lack them).
pub async fn customer_view_columns(engine: &Engine) -> Result<CustomerViewColumns> {
    let schema = engine.plan_schema("select * from customer_view").await?;
    Ok(CustomerViewColumns {
        closed_accounts: schema.field_with_name("is_account_closed").is_ok(),
        opted_out_contact: schema.field_with_name("has_opted_out_contact").is_ok(),
        consent: ["email", "phone", "post", "ads"]
            .iter()
            .all(|c| schema.field_with_name(&format!("{c}_consent")).is_ok()),
    })
}

/// The latest run's segments and how they changed.
#[derive(Debug, Clone)]
pub struct SegmentChanges {
    pub run_id: String,
    pub as_of: String,
    pub segments: Vec<SegmentSize>,
    pub alarms: Vec<String>,
    /// Sizes in the run before (empty when there is none).
    pub before: BTreeMap<String, u64>,
}

impl SegmentChanges {
    /// The change of one segment since the run before: `+12 (+3%)`, or `new`.
    pub fn change(&self, segment: &SegmentSize) -> String {
        match self.before.get(&segment.segment) {
            Some(&old) => {
                let diff = segment.customers as i64 - old as i64;
                format!(
                    "{diff:+} ({:+.0}%)",
                    100.0 * diff as f64 / (old.max(1) as f64)
                )
            }
            None => "new".to_string(),
        }
    }

    /// Whether the run raised an alarm for the segment.
    pub fn has_alarm(&self, segment: &str) -> bool {
        let prefix = format!("segment {segment} ");
        self.alarms.iter().any(|a| a.starts_with(&prefix))
    }
}
