//! The run report: what a person reads to know how last night went.

use clientele_segments::thousands;
use std::fmt::Write;

use crate::manifest::{RunManifest, RunStatus, StepStatus};

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// Renders a manifest as a short plain-text report.
pub fn render_report(m: &RunManifest) -> String {
    let mut out = String::new();
    let status = match m.status {
        RunStatus::Succeeded => "SUCCEEDED",
        RunStatus::Failed => "FAILED",
    };
    let _ = writeln!(
        out,
        "run {}  job {}  as-of {}  {status} in {}",
        m.run_id,
        m.job,
        m.as_of,
        seconds(m.duration_ms)
    );
    let _ = writeln!(out, "\nsteps");
    for s in &m.steps {
        let mark = match s.status {
            StepStatus::Succeeded => "ok  ",
            StepStatus::Failed => "FAIL",
            StepStatus::Skipped => "skip",
        };
        let peak = s
            .peak_memory_mib
            .map_or_else(String::new, |m| format!("  peak {} MiB", thousands(m)));
        let cpu = s
            .cpu_ms
            .map_or_else(String::new, |c| format!("  cpu {:>7}", seconds(c)));
        let _ = writeln!(
            out,
            "  {mark} {:<12} {:<9} {:>7}{cpu}  rows in {:>11}  out {:>11}{peak}",
            s.name,
            s.kind,
            seconds(s.duration_ms),
            thousands(s.rows_in),
            thousands(s.rows_out)
        );
        if let Some(e) = &s.error {
            let _ = writeln!(out, "       {e}");
        }
    }
    if !m.sources.is_empty() {
        let _ = writeln!(out, "\nsources (read = loaded + quarantined)");
        let width = m
            .sources
            .iter()
            .map(|s| s.source.len())
            .max()
            .unwrap_or(0)
            .max(16);
        for s in &m.sources {
            let _ = writeln!(
                out,
                "  {:<width$} {:>11} = {:>11} + {:>7}   {} file(s){}",
                s.source,
                thousands(s.rows_read),
                thousands(s.rows_loaded),
                thousands(s.rows_quarantined),
                s.files.len(),
                if s.rows_forgotten > 0 {
                    format!(
                        "; {} row(s) of forgotten people left out",
                        thousands(s.rows_forgotten)
                    )
                } else {
                    String::new()
                }
            );
        }
    }
    if !m.tables.is_empty() {
        let _ = writeln!(out, "\ntables");
        for t in &m.tables {
            let _ = writeln!(
                out,
                "  {:<32} {:>11} rows   {}",
                t.table,
                thousands(t.rows),
                t.path
            );
        }
    }
    if let Some(id) = &m.identity {
        let s = &id.summary;
        let _ = writeln!(
            out,
            "\nidentity: {} records -> {} customers; {} candidate pairs, {} links; {} merged, {} split since the last run",
            thousands(s.records),
            thousands(s.customers),
            thousands(s.candidate_pairs),
            thousands(s.links_above_threshold),
            thousands(s.merges),
            thousands(s.splits)
        );
        for r in &s.rules {
            let mut skipped = String::new();
            if r.attach_only {
                skipped.push_str("   attaching only");
            }
            if r.refined_blocks > 0 {
                skipped.push_str(&format!(
                    "   {} block(s) over the cap refined",
                    thousands(r.refined_blocks)
                ));
            }
            if r.skipped_blocks > 0 {
                skipped.push_str(&format!(
                    "   {} block(s) over the cap skipped ({} records)",
                    thousands(r.skipped_blocks),
                    thousands(r.skipped_records)
                ));
            }
            let _ = writeln!(
                out,
                "  {:<40} {:>11} pairs{skipped}",
                r.rule,
                thousands(r.pairs)
            );
        }
        if s.records_without_rule > 0 {
            let _ = writeln!(
                out,
                "  {} record(s) left with no blocking rule (every key missing or every block skipped): they cannot be linked",
                thousands(s.records_without_rule)
            );
        }
        for p in &s.placeholders {
            let _ = writeln!(
                out,
                "  placeholder set aside: {} value {} ({}) on {} records, treated as missing",
                p.column,
                p.masked,
                p.fingerprint,
                thousands(p.records)
            );
        }
        if s.clusters.links_refused_by_conflict > 0 {
            let _ = writeln!(
                out,
                "  {} link(s) refused: they would make one customer of two records with different first names or birth dates",
                thousands(s.clusters.links_refused_by_conflict)
            );
        }
        if s.clusters.records_attached > 0 {
            let _ = writeln!(
                out,
                "  {} record(s) attached: no link of their own, but every candidate points to one customer",
                thousands(s.clusters.records_attached)
            );
        }
        if s.clusters.links_refused_by_guard > 0 {
            let _ = writeln!(
                out,
                "  {} link(s) refused: they would put two records of a duplicate-free source together",
                thousands(s.clusters.links_refused_by_guard)
            );
        }
        if let Some(a) = &id.accuracy {
            let _ = writeln!(
                out,
                "  accuracy against the truth ({} records, {} persons): pairwise precision {:.4} recall {:.4} F1 {:.4}; clusters precision {:.4} recall {:.4} F1 {:.4}",
                thousands(a.records),
                thousands(a.persons),
                a.pairwise.precision,
                a.pairwise.recall,
                a.pairwise.f1,
                a.cluster.precision,
                a.cluster.recall,
                a.cluster.f1
            );
        }
        let h = &s.households;
        let _ = writeln!(
            out,
            "  households: {} ({} customers share theirs, the largest {}{})",
            thousands(h.households),
            thousands(h.customers_sharing),
            thousands(h.largest),
            if h.joins_refused_by_size > 0 {
                format!(
                    "; {} join(s) refused at the size cap",
                    thousands(h.joins_refused_by_size)
                )
            } else {
                String::new()
            }
        );
        if let Some(a) = &id.household_accuracy {
            let _ = writeln!(
                out,
                "  households against the truth ({} households): recovered exactly {:.4}, exactly one household {:.4}; pairwise precision {:.4} recall {:.4}",
                thousands(a.persons),
                a.cluster.recall,
                a.cluster.precision,
                a.pairwise.precision,
                a.pairwise.recall
            );
        }
        for w in &s.warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
    }
    if !m.models.is_empty() {
        let _ = writeln!(out, "\nmodels");
        for model in &m.models {
            if model.status != "ran" {
                let _ = writeln!(
                    out,
                    "  {:<11} {:>11} scored   {}",
                    model.model, "-", model.status
                );
                continue;
            }
            let get = |k: &str| model.metrics.get(k).copied().unwrap_or(f64::NAN);
            let line = match model.model.as_str() {
                "clv" => format!(
                    "BG/NBD r {:.3} alpha {:.2} a {:.3} b {:.3}; Gamma-Gamma p {:.2} q {:.2} gamma {:.2}",
                    get("bgnbd_r"),
                    get("bgnbd_alpha"),
                    get("bgnbd_a"),
                    get("bgnbd_b"),
                    get("gamma_gamma_p"),
                    get("gamma_gamma_q"),
                    get("gamma_gamma_gamma")
                ),
                _ => {
                    format!(
                        "validation AUC {:.3} (logistic {:.3}, boosted trees {:.3}), PR AUC {:.3}, Brier {:.3}, top-decile lift {:.2} on {} rows",
                        get("validation_roc_auc"),
                        get("logistic_regression_validation_roc_auc"),
                        get("boosted_trees_validation_roc_auc"),
                        get("validation_pr_auc"),
                        get("validation_brier"),
                        get("validation_top_decile_lift"),
                        thousands(get("validation_rows") as u64)
                    ) + &match model.metrics.get("validation_window_rows") {
                        // The validation window was read as a sample (MAX_VALIDATION_ROWS).
                        Some(w) => format!(" (a sample of {})", thousands(*w as u64)),
                        None => String::new(),
                    }
                }
            };
            let _ = writeln!(
                out,
                "  {:<11} {:>11} scored   {line}",
                model.model,
                thousands(model.scored)
            );
            let _ = writeln!(out, "              {}", model.version);
            if let Some(rule) = &model.top_rule {
                let _ = writeln!(out, "              highest: {rule}");
            }
        }
    }
    if !m.segments.is_empty() {
        let _ = writeln!(out, "\nsegments");
        for s in &m.segments {
            let _ = match &s.skipped {
                Some(why) => writeln!(out, "  {:<32} {:>11} skipped: {why}", s.segment, "-"),
                None => writeln!(
                    out,
                    "  {:<32} {:>11} customers   {}",
                    s.segment,
                    thousands(s.customers),
                    s.name
                ),
            };
        }
    }
    if !m.campaigns.is_empty() {
        let _ = writeln!(
            out,
            "\ncampaigns (purchases in the response window, treated against control)"
        );
        for c in &m.campaigns {
            let _ = writeln!(
                out,
                "  {:<24} sent {}  {} days{}: treated {} of {} ({:.1}%), control {} of {} ({:.1}%), lift {:+.1} points (95% CI {:+.1} to {:+.1}), incremental revenue {:.2} per customer, {:.0} in all",
                c.campaign_id,
                c.sent_date,
                c.window_days,
                if c.window_closed {
                    ""
                } else {
                    " (window still open)"
                },
                thousands(c.treated_responders),
                thousands(c.treated),
                100.0 * c.treated_response_rate,
                thousands(c.control_responders),
                thousands(c.control),
                100.0 * c.control_response_rate,
                100.0 * c.lift,
                100.0 * c.lift_ci_low,
                100.0 * c.lift_ci_high,
                c.incremental_revenue_per_customer,
                c.incremental_revenue
            );
        }
    }
    if !m.alarms.is_empty() {
        let _ = writeln!(out, "\nalarms");
        for a in &m.alarms {
            let _ = writeln!(out, "  ! {a}");
        }
    }
    if !m.exports.is_empty() {
        let _ = writeln!(out, "\nexports");
        for e in &m.exports {
            if let Some(why) = &e.skipped {
                let _ = writeln!(out, "  {:<26} {:<13} skipped: {why}", e.export, e.format);
                continue;
            }
            let suppressed: Vec<String> = e
                .suppressed
                .iter()
                .map(|(k, v)| format!("{k} {}", thousands(*v)))
                .collect();
            let suppressed = if suppressed.is_empty() {
                "none".to_string()
            } else {
                suppressed.join(", ")
            };
            let held = if e.held_out > 0 {
                format!(", {} held out", thousands(e.held_out))
            } else {
                String::new()
            };
            let changes = if e.changes.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} since {})",
                    e.changes
                        .iter()
                        .map(|(k, v)| format!("{} {k}", thousands(*v)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    e.previous_as_of.as_deref().unwrap_or("nothing")
                )
            };
            let _ = writeln!(
                out,
                "  {:<26} {:<13} {} eligible, suppressed: {suppressed}{held}, {} sent{changes}",
                e.export,
                e.format,
                thousands(e.eligible),
                thousands(e.exported),
            );
            for f in &e.files {
                let _ = writeln!(
                    out,
                    "  {:<40} {:>9} rows  {}",
                    "",
                    thousands(f.rows),
                    f.path
                );
            }
        }
    }
    if let Some(r) = m.retention.as_ref().filter(|r| !r.dropped.is_empty()) {
        let _ = writeln!(
            out,
            "\nretention: {} raw/quarantine partition(s) older than {} ({} days) dropped",
            r.dropped.len(),
            r.cutoff,
            r.days
        );
    }
    if !m.deliveries.is_empty() {
        let _ = writeln!(out, "\ndeliveries (after publishing)");
        for d in &m.deliveries {
            let what = format!("{} as_of={}", d.export, d.as_of);
            match (&d.delivered_to, &d.error) {
                (Some(to), _) if d.delivered => {
                    let _ = writeln!(
                        out,
                        "  ok   {what:<45} {} file(s) to {to}{}",
                        d.files,
                        if d.published_by == m.run_id {
                            String::new()
                        } else {
                            format!(
                                " (retry {}, published by run {})",
                                d.attempts, d.published_by
                            )
                        }
                    );
                }
                (_, error) => {
                    let _ = writeln!(
                        out,
                        "  FAIL {what:<45} try {}: {}{}",
                        d.attempts,
                        error.as_deref().unwrap_or("not delivered"),
                        if d.dropped {
                            ""
                        } else {
                            "; the next run tries again"
                        }
                    );
                }
            }
        }
    }
    let _ = writeln!(out, "\nwarehouse {}", m.warehouse);
    match m.status {
        RunStatus::Succeeded => {}
        RunStatus::Failed => {
            let _ = writeln!(
                out,
                "nothing was published: the last good outputs are untouched"
            );
            if let Some(dir) = &m.staging_dir {
                let _ = writeln!(
                    out,
                    "this run's staged outputs (quarantine included) stay until the next run: {dir}"
                );
            }
            if let Some(e) = &m.error {
                let _ = writeln!(out, "error: {e}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
