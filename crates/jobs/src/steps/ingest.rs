//! The `ingest` step: each source's files into `raw.<source>` and `quarantine.<source>`.

use clientele_ingest::{
    LoadOptions, OutputPaths, SourceReport, ingest_source, quarantine_schema, resolve_inputs,
};
use clientele_store::layout;

use super::{
    CheckProblem, Checked, Declaration, Operation, PlanContext, SpecContext, StagedTable,
    StepContext, StepOutput,
};
use crate::error::{Error, Result};
use crate::spec::{Problem, TableId};

/// `kind = "ingest"` as written.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSpec {
    /// The sources (default: all).
    #[serde(default)]
    sources: Option<Vec<String>>,
}

/// Loads sources.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingest {
    /// The sources, by name.
    pub sources: Vec<String>,
}

impl Declaration for IngestSpec {
    fn check(&self, cx: &SpecContext<'_>, problems: &mut Vec<CheckProblem>) -> Option<Checked> {
        let names = self
            .sources
            .clone()
            .unwrap_or_else(|| cx.sources.iter().map(|s| s.name.clone()).collect());
        for n in &names {
            if !cx.sources.iter().any(|s| &s.name == n) {
                problems.push(CheckProblem::Step(format!("source '{n}' is not declared")));
            }
        }
        let writes = names
            .iter()
            .flat_map(|n| [TableId::new("raw", n), TableId::new("quarantine", n)])
            .collect();
        Some(Checked {
            operation: std::sync::Arc::new(Ingest { sources: names }),
            reads: Vec::new(),
            writes,
        })
    }
}

#[async_trait::async_trait]
impl Operation for Ingest {
    fn kind(&self) -> &'static str {
        "ingest"
    }

    async fn plan(&self, cx: &PlanContext<'_>, problems: &mut Vec<Problem>) -> Result<Vec<String>> {
        let spec = cx.spec;
        let mut details = Vec::new();
        for name in &self.sources {
            let Some(source) = spec.source(name) else {
                continue;
            };
            cx.engine
                .register_empty(&format!("raw.{name}"), source.arrow_schema())?;
            cx.engine
                .register_empty(&format!("quarantine.{name}"), quarantine_schema())?;
            let is_db = matches!(source.format, clientele_ingest::Format::Postgres { .. });
            let files = if is_db {
                1
            } else {
                resolve_inputs(source, &spec.base_dir)
                    .await
                    .map(|f| f.len())
                    .unwrap_or(0)
            };
            details.push(if is_db {
                format!("source {name}: postgres '{}'", source.display_location())
            } else {
                format!(
                    "source {name}: {} '{}' ({files} file(s) now)",
                    source.format.name(),
                    source.location
                )
            });
            if cx.strict && files == 0 && source.required {
                problems.push(Problem {
                    file: spec.path.clone(),
                    line: spec.source_lines.get(name).copied(),
                    message: format!(
                        "source '{name}': no file matches '{}' (the source is required)",
                        source.location
                    ),
                });
            }
        }
        Ok(details)
    }

    async fn run(&self, cx: &StepContext<'_>) -> Result<StepOutput> {
        let mut out = StepOutput::default();
        let tombstones =
            std::sync::Arc::new(clientele_store::tombstone::Tombstones::load(cx.warehouse).await?);
        let reload = cx.warehouse.exists(crate::forget::RELOAD_MARKER).await?;
        for name in &self.sources {
            let source = cx
                .spec
                .source(name)
                .ok_or_else(|| Error::Internal(format!("source '{name}' is not declared")))?;
            let data = layout::partition_file("raw", name, cx.as_of);
            let quarantine = layout::partition_file("quarantine", name, cx.as_of);
            let paths = OutputPaths {
                data_staged: layout::staged(cx.run_id, &data),
                data_published: data,
                quarantine_staged: layout::staged(cx.run_id, &quarantine),
                quarantine_published: quarantine,
            };
            let options = LoadOptions {
                // An erasure rewrote the raw tables since the last load: their rows no longer
                // match its counts, so every file is parsed again.
                full_refresh: cx.full_refresh || reload,
                previous: previous_load(cx, name).await,
                now: Some(freshness_reference(cx.now, cx.as_of)),
                tombstones: std::sync::Arc::clone(&tombstones),
            };
            let report =
                ingest_source(source, &cx.spec.base_dir, cx.warehouse, &paths, &options).await?;
            tracing::info!(
                source = %name, read = report.rows_read, loaded = report.rows_loaded,
                quarantined = report.rows_quarantined, forgotten = report.rows_forgotten,
                files = report.files.len(), "source ingested"
            );
            out.rows_in += report.rows_read;
            out.rows_out += report.rows_loaded;
            for (table, staged, file) in [
                (format!("raw.{name}"), &paths.data_staged, &report.data),
                (
                    format!("quarantine.{name}"),
                    &paths.quarantine_staged,
                    &report.quarantine,
                ),
            ] {
                cx.engine.register_file(&table, staged).await?;
                out.push_table(StagedTable {
                    name: table,
                    staged: staged.clone(),
                    file: file.clone(),
                });
            }
            if let Err(e) = report.check_limits(source)
                && out.failure.is_none()
            {
                out.failure = Some(e.into());
            }
            out.report.sources.push(report);
        }
        Ok(out)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The source's last published load whose two tables are still in the committed snapshot (with
/// their paths turned into the physical files that hold them): the rows of files that have not
/// changed since are kept from it. A manifest or snapshot that cannot be read means a full load.
async fn previous_load(cx: &StepContext<'_>, source: &str) -> Option<SourceReport> {
    let snapshot = match cx.engine.snapshot().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "the committed snapshot is unreadable; loading every file");
            return None;
        }
    };
    let runs = match crate::history::list_runs(cx.warehouse).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "run history unreadable; loading every file");
            return None;
        }
    };
    for run in runs.iter().rev().filter(|r| r.published) {
        let Some(report) = run.sources.iter().find(|s| s.source == source) else {
            continue;
        };
        let (Some(data), Some(quarantine)) = (
            snapshot.resolve(&report.data.path),
            snapshot.resolve(&report.quarantine.path),
        ) else {
            return None;
        };
        let mut previous = report.clone();
        previous.data.path = data.to_string();
        previous.quarantine.path = quarantine.to_string();
        return Some(previous);
    }
    None
}

/// The moment a source's freshness is measured at: now, or the end of the as-of date when that is
/// earlier (a backfill), so that rerunning an old date judges the files as they were then rather
/// than failing on files that were fresh at the time.
fn freshness_reference(
    now: chrono::DateTime<chrono::Utc>,
    as_of: chrono::NaiveDate,
) -> chrono::DateTime<chrono::Utc> {
    as_of
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(now, |end| now.min(end.and_utc()))
}

#[cfg(test)]
mod freshness_tests {
    use super::freshness_reference;
    use chrono::{NaiveDate, TimeZone, Utc};

    #[test]
    fn a_backfill_measures_freshness_at_the_end_of_its_as_of_date() {
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 21, 0, 0).single();
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        let (Some(now), Some(old), Some(today)) = (now, day(2025, 6, 30), day(2026, 12, 3)) else {
            unreachable!("valid dates")
        };
        assert_eq!(
            freshness_reference(now, old),
            Utc.with_ymd_and_hms(2025, 7, 1, 0, 0, 0)
                .single()
                .unwrap_or(now)
        );
        assert_eq!(freshness_reference(now, today), now);
    }
}
