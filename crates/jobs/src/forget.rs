//! Erasure, the right to be forgotten: `clientele forget` removes one person from every published
//! table and export file, records a tombstone of hashed identifiers so that later loads leave
//! them out, and writes an audit entry without personal data.
//!
//! The person is found by an email, a phone or a customer id: every customer holding that email
//! or phone (in any published `int_customer_contacts`), every record identity resolution gave
//! those customers (any published `int_customer_identity`), and the emails and phones of those
//! records that no one else holds. An email or phone a family shares is refused (it would erase
//! the family): the customer id names the person then. Their identifiers (customer and record ids,
//! the source systems' keys, emails, phones, and the hashes the ad platforms were sent) are
//! matched in every Parquet file and export file of the warehouse; files that hold any are
//! rewritten without those rows, staged, then published together. The tombstone is written first,
//! so a crash part way leaves the person at least kept out of every later load; rerunning the
//! command finishes the job.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, AsArray, RecordBatch};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use clientele_identity::standardise;
use clientele_segments::formats::{google_email, sha256_hex};
use clientele_store::layout::{self, RunId};
use clientele_store::tombstone::{TOMBSTONE_DIR, Tombstones, forms};
use clientele_store::{RunLock, Warehouse};

use crate::error::{Error, Result};
use crate::spec::JobSpec;

/// Present while the raw tables have been rewritten by an erasure and not loaded since: the next
/// ingest parses every file again.
pub const RELOAD_MARKER: &str = "_privacy/reload.json";
/// One audit entry per erasure.
pub const AUDIT_DIR: &str = "_privacy/audit";
/// The layers whose tables are searched.
const LAYERS: [&str; 8] = [
    "raw",
    "quarantine",
    "staging",
    "intermediate",
    "marts",
    "scores",
    "segments",
    "exports",
];

/// Whom to forget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Person {
    Email(String),
    Phone(String),
    CustomerId(String),
}

/// One file rewritten.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErasedFile {
    pub path: String,
    pub rows_removed: u64,
}

/// The audit entry of one erasure: counts and paths, no personal data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErasureAudit {
    pub id: String,
    pub at: String,
    /// Who asked for it (the operator as given, or the login).
    pub by: String,
    /// `email`, `phone` or `customer_id`.
    pub identified_by: String,
    pub customers: u64,
    pub records: u64,
    /// Identifiers hashed into the tombstone.
    pub identifiers: u64,
    pub rows_removed: u64,
    pub files: Vec<ErasedFile>,
}

/// Forgets one person in the job's warehouse (see the module doc); holds the warehouse lock.
pub async fn forget(
    spec: &JobSpec,
    person: &Person,
    by: &str,
    now: DateTime<Utc>,
) -> Result<ErasureAudit> {
    let warehouse = Warehouse::open(&spec.warehouse, &spec.base_dir)?;
    if warehouse.list(layout::RUNS_DIR).await?.is_empty() {
        return Err(Error::Input(format!(
            "no run has written the warehouse {} (is it the job's?); nothing to forget there",
            warehouse.display()
        )));
    }
    let suffix = u16::try_from(std::process::id() % 65_536).unwrap_or(0);
    let id = RunId::from_start(now, suffix);
    let lock = RunLock::acquire(&warehouse, &id, now, spec.stale_lock_hours).await?;
    let result = forget_locked(spec, &warehouse, &id, person, by, now).await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the warehouse lock");
    }
    result
}

/// The person's identifiers, plain (in memory only).
#[derive(Debug, Default)]
struct Identifiers {
    customers: BTreeSet<String>,
    records: BTreeSet<String>,
    emails: BTreeSet<String>,
    phones: BTreeSet<String>,
}

async fn forget_locked(
    spec: &JobSpec,
    warehouse: &Warehouse,
    id: &RunId,
    person: &Person,
    by: &str,
    now: DateTime<Utc>,
) -> Result<ErasureAudit> {
    let country = &spec.identity.default_country_code;
    warehouse.delete_prefix(layout::STAGING_DIR).await?;
    let snapshot = warehouse.snapshot().await?;
    let contacts = read_table(warehouse, &snapshot, "intermediate/int_customer_contacts").await?;
    let identity = read_table(warehouse, &snapshot, "intermediate/int_customer_identity").await?;

    let mut ids = Identifiers::default();
    let (kind, key) = match person {
        Person::Email(e) => (
            "email",
            standardise::email(e)
                .ok_or_else(|| Error::Input(format!("'{e}' is not an email address")))?,
        ),
        Person::Phone(p) => (
            "phone",
            standardise::phone(p, country)
                .ok_or_else(|| Error::Input("the phone number is not valid".into()))?,
        ),
        Person::CustomerId(c) => ("customer_id", c.trim().to_string()),
    };
    if kind == "customer_id" {
        ids.customers.insert(key.clone());
    } else {
        for row in rows(
            &contacts,
            &["customer_id", "contact_kind", "contact_key", "is_shared"],
        ) {
            if row[1].as_deref() == Some(kind) && row[2].as_deref() == Some(key.as_str()) {
                if row[3].as_deref() == Some("true") {
                    return Err(Error::Input(format!(
                        "that {kind} is held by several people (a family's); forget by --customer-id (clientele query can find it)"
                    )));
                }
                ids.customers.extend(row[0].clone());
            }
        }
        if kind == "email" {
            ids.emails.insert(key.clone());
        } else {
            ids.phones.insert(key.clone());
        }
    }
    for row in rows(&identity, &["customer_id", "record_id"]) {
        if let (Some(c), Some(r)) = (&row[0], &row[1])
            && ids.customers.contains(c)
        {
            ids.records.insert(r.clone());
        }
    }
    for row in rows(
        &contacts,
        &["record_id", "contact_kind", "contact_key", "is_shared"],
    ) {
        let (Some(r), Some(k), Some(v)) = (&row[0], &row[1], &row[2]) else {
            continue;
        };
        if ids.records.contains(r) && row[3].as_deref() != Some("true") {
            match k.as_str() {
                "email" => {
                    ids.emails.insert(v.clone());
                }
                "phone" => {
                    ids.phones.insert(v.clone());
                }
                _ => {}
            }
        }
    }

    // The forms for the tombstone, and the hashes the ad platforms were sent.
    let mut all_forms: BTreeSet<String> = BTreeSet::new();
    let mut add = |column: &str, value: &str| {
        all_forms.extend(forms(column, value));
    };
    for c in &ids.customers {
        add("", c);
    }
    for r in &ids.records {
        add("", r);
        if let Some((_, source_key)) = r.split_once(':') {
            add("", source_key);
        }
    }
    // The SHA-256 the ad platforms were sent counts as one more form of an email or phone: a
    // cell holding it is the person's like a cell holding the plain value.
    for e in &ids.emails {
        add("email", e);
        add("", &sha256_hex(e));
        if let Some(g) = google_email(e) {
            add("", &sha256_hex(&g));
        }
    }
    for p in &ids.phones {
        add("phone", p);
        add("", &sha256_hex(p));
        add("", &sha256_hex(p.trim_start_matches('+')));
    }
    let tombstones = Tombstones::from_forms(all_forms.iter().map(String::as_str));

    // The tombstone first: from now on no load brings the person back.
    let tombstone = tombstones.tombstone(id.as_str(), &now.to_rfc3339());
    put_json(warehouse, &format!("{TOMBSTONE_DIR}/{id}.json"), &tombstone).await?;

    // Every file that holds the person, rewritten without them and staged.
    let mut erased = Vec::new();
    for layer in LAYERS {
        for (path, physical) in snapshot.under(&format!("{layer}/")) {
            let removed = if path.ends_with(".parquet") {
                rewrite_parquet(warehouse, id, path, physical, &tombstones).await?
            } else if path.ends_with(".csv") {
                rewrite_csv(warehouse, id, path, physical, &tombstones).await?
            } else {
                0
            };
            if removed > 0 {
                erased.push(ErasedFile {
                    path: path.to_string(),
                    rows_removed: removed,
                });
            }
        }
    }
    let changes = clientele_store::Changes {
        files: erased.iter().map(|f| f.path.clone()).collect(),
        removed: Vec::new(),
    };
    warehouse.publish(id, &snapshot, &changes, now).await?;
    if erased.iter().any(|f| f.path.starts_with("raw/")) {
        put_json(
            warehouse,
            RELOAD_MARKER,
            &serde_json::json!({ "erasure": id.as_str() }),
        )
        .await?;
    }
    let audit = ErasureAudit {
        id: id.to_string(),
        at: now.to_rfc3339(),
        by: by.to_string(),
        identified_by: kind.to_string(),
        customers: ids.customers.len() as u64,
        records: ids.records.len() as u64,
        identifiers: tombstones.len() as u64,
        rows_removed: erased.iter().map(|f| f.rows_removed).sum(),
        files: erased,
    };
    put_json(warehouse, &format!("{AUDIT_DIR}/{id}.json"), &audit).await?;
    tracing::info!(erasure = %id, files = audit.files.len(), rows = audit.rows_removed, "person forgotten");
    Ok(audit)
}

async fn put_json(warehouse: &Warehouse, path: &str, value: &impl serde::Serialize) -> Result<()> {
    let body = serde_json::to_vec_pretty(value).map_err(|e| Error::Manifest {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    warehouse.put(path, Bytes::from(body)).await?;
    Ok(())
}

/// Every batch of every committed partition of a table (`layer/table`).
async fn read_table(
    warehouse: &Warehouse,
    snapshot: &clientele_store::Snapshot,
    dir: &str,
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    for (path, physical) in snapshot.under(&format!("{dir}/")) {
        if path.ends_with(".parquet") {
            out.extend(read_parquet(warehouse, physical).await?);
        }
    }
    Ok(out)
}

async fn read_parquet(warehouse: &Warehouse, path: &str) -> Result<Vec<RecordBatch>> {
    let data = warehouse.get(path).await?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(data)
        .and_then(|b| b.build())
        .map_err(|e| Error::Input(format!("reading {path}: {e}")))?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Input(format!("reading {path}: {e}")))
}

/// The values of `columns` in every row, as text (`true`/`false` for booleans).
fn rows(batches: &[RecordBatch], columns: &[&str]) -> Vec<Vec<Option<String>>> {
    let mut out = Vec::new();
    for b in batches {
        let cols: Vec<Option<arrow::array::ArrayRef>> = columns
            .iter()
            .map(|c| {
                b.column_by_name(c)
                    .and_then(|a| arrow::compute::cast(a, &arrow::datatypes::DataType::Utf8).ok())
            })
            .collect();
        for i in 0..b.num_rows() {
            out.push(
                cols.iter()
                    .map(|c| {
                        c.as_ref()
                            .map(|a| a.as_string::<i32>())
                            .filter(|a| a.is_valid(i))
                            .map(|a| a.value(i).to_string())
                    })
                    .collect(),
            );
        }
    }
    out
}

/// Stages `path` (read from its committed file `physical`) without the person's rows; returns how
/// many were removed (0: left as it is).
async fn rewrite_parquet(
    warehouse: &Warehouse,
    id: &RunId,
    path: &str,
    physical: &str,
    tombstones: &Tombstones,
) -> Result<u64> {
    let batches = read_parquet(warehouse, physical).await?;
    let Some(schema) = batches.first().map(|b| b.schema()) else {
        return Ok(0);
    };
    let mut removed = 0u64;
    let mut kept = Vec::new();
    for b in &batches {
        let keep = tombstones.keep_mask(b);
        removed += (b.num_rows() - keep.true_count()) as u64;
        kept.push(arrow::compute::filter_record_batch(b, &keep)?);
    }
    if removed == 0 {
        return Ok(0);
    }
    let mut writer = warehouse.parquet_writer(&layout::staged(id, path), schema)?;
    for b in &kept {
        writer.write(b).await?;
    }
    writer.finish(path).await?;
    Ok(removed)
}

/// Stages a CSV export file without the person's rows (the header kept, CRLF line ends, quoting
/// as needed); returns how many were removed.
async fn rewrite_csv(
    warehouse: &Warehouse,
    id: &RunId,
    path: &str,
    physical: &str,
    tombstones: &Tombstones,
) -> Result<u64> {
    let data = warehouse.get(physical).await?;
    let bad = |e: csv::Error| Error::Input(format!("reading {path}: {e}"));
    let mut reader = csv::ReaderBuilder::new().from_reader(&data[..]);
    let header = reader.headers().map_err(bad)?.clone();
    let mut kept = Vec::new();
    let mut removed = 0u64;
    for record in reader.records() {
        let record = record.map_err(bad)?;
        let holds = record
            .iter()
            .zip(header.iter())
            .any(|(cell, column)| tombstones.matches(column, cell));
        if holds {
            removed += 1;
        } else {
            kept.push(record);
        }
    }
    if removed == 0 {
        return Ok(0);
    }
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    writer.write_record(&header).map_err(bad)?;
    for r in &kept {
        writer.write_record(r).map_err(bad)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| Error::Input(format!("writing {path}: {e}")))?;
    warehouse
        .put(&layout::staged(id, path), Bytes::from(bytes))
        .await?;
    Ok(removed)
}

/// Counts for a summary line, by layer.
pub fn rows_by_layer(audit: &ErasureAudit) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for f in &audit.files {
        let layer = f.path.split('/').next().unwrap_or_default().to_string();
        *out.entry(layer).or_insert(0) += f.rows_removed;
    }
    out
}
