//! The `export` step: every declared export of the step written with suppression, control
//! groups and diffs against the last export, the audiences recorded in `export_audience`, earlier
//! campaigns measured against their control groups. Copies to each export's location are
//! delivered by the runner after the run publishes (`crate::delivery`).

use std::sync::Arc;

use clientele_segments::formats::Locale;
use clientele_segments::{
    CustomerViewColumns, ExportContext, ExportOutput, ExportSpec, audience_schema,
    campaign_results_batch, export_segment, listed_customers, load_suppression_lists,
    measure_campaigns, opted_out_contacts, previous_audience, suppression_batch,
};
use clientele_store::layout;

use super::{
    CheckProblem, Checked, Declaration, Operation, PlanContext, SpecContext, StepContext,
    StepOutput, chain, table_for,
};
use crate::error::{Error, Result};
use crate::spec::{Problem, TableId};

/// The tables the step writes (layer, table): who each export sent and held out, the global
/// suppression list as applied, and the earlier campaigns measured.
pub const WRITES: [(&str, &str); 3] = [
    ("segments", "export_audience"),
    ("segments", "suppression_list"),
    ("segments", "campaign_results"),
];

/// The model of the contact points opted-out customers hold (`sql/intermediate/`).
pub const CONTACT_SUPPRESSION: &str = "int_customer_contact_suppression";

/// `kind = "export"` as written.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportStepSpec {
    /// The exports (default: all).
    #[serde(default)]
    exports: Option<Vec<String>>,
}

/// Writes exports.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    /// The exports, by name.
    pub exports: Vec<String>,
    /// Whether the job resolves identities: then every customer's contact points
    /// (`int_customer_contacts`) are checked against the suppression lists, and the customer view
    /// must carry contact-level suppression (`has_opted_out_contact`).
    pub contacts: bool,
}

impl Declaration for ExportStepSpec {
    fn check(&self, cx: &SpecContext<'_>, problems: &mut Vec<CheckProblem>) -> Option<Checked> {
        let names = self
            .exports
            .clone()
            .unwrap_or_else(|| cx.exports.iter().map(|e| e.name.clone()).collect());
        for n in &names {
            if !cx.exports.iter().any(|e| &e.name == n) {
                problems.push(CheckProblem::Step(format!("export '{n}' is not declared")));
            }
        }
        let mut reads = vec![
            TableId::new(super::segments::WRITES[0].0, super::segments::WRITES[0].1),
            table_for("customer_view", cx.models),
            table_for("fct_orders", cx.models),
        ];
        // A segment that needs a score is checked against customer_scores before it is sent.
        let needs_scores = names
            .iter()
            .filter_map(|n| cx.exports.iter().find(|e| &e.name == n))
            .filter_map(|e| cx.segments.iter().find(|s| s.id == e.segment))
            .any(|s| !s.needs.is_empty());
        if needs_scores {
            let (layer, table) = super::score::WRITES[3];
            reads.push(TableId::new(layer, table));
        }
        if cx.has_identity_step {
            let (layer, table) = super::identity::WRITES[4];
            reads.push(TableId::new(layer, table));
            if cx.models.get(CONTACT_SUPPRESSION).is_some() {
                reads.push(table_for(CONTACT_SUPPRESSION, cx.models));
            }
        }
        Some(Checked {
            operation: Arc::new(Export {
                exports: names,
                contacts: cx.has_identity_step,
            }),
            reads,
            writes: WRITES.iter().map(|(l, t)| TableId::new(l, t)).collect(),
        })
    }
}

#[async_trait::async_trait]
impl Operation for Export {
    fn kind(&self) -> &'static str {
        "export"
    }

    fn describe_writes(&self, _writes: &[TableId]) -> Vec<String> {
        self.exports
            .iter()
            .map(|e| format!("exports/{e}"))
            .collect()
    }

    async fn plan(&self, cx: &PlanContext<'_>, problems: &mut Vec<Problem>) -> Result<Vec<String>> {
        let mut details = Vec::new();
        for name in &self.exports {
            let Some(export) = cx.spec.exports.iter().find(|e| &e.name == name) else {
                continue;
            };
            let view = CustomerViewColumns {
                closed_accounts: false,
                opted_out_contact: self.contacts,
                consent: true,
            };
            match cx.engine.plan_schema(&export.query(view)?).await {
                Ok(_) => details.push(format!(
                    "export {name}: segment {} as {}, mode {}{}{} -> exports/{name}/as_of={}/",
                    export.segment,
                    export.format,
                    export.mode(),
                    export
                        .holdout_share
                        .filter(|s| *s > 0.0)
                        .map(|s| format!(
                            ", {:.0}% held out for campaign {}",
                            s * 100.0,
                            export.campaign()
                        ))
                        .unwrap_or_default(),
                    export
                        .location
                        .as_ref()
                        .map(|l| format!(", delivered to {l}"))
                        .unwrap_or_default(),
                    cx.as_of
                )),
                Err(e) => problems.push(cx.problem(format!("export '{name}': {}", chain(&e)))),
            }
        }
        Ok(details)
    }

    async fn run(&self, cx: &StepContext<'_>) -> Result<StepOutput> {
        let spec = cx.spec;
        let (engine, as_of) = (cx.engine, cx.as_of);
        let chosen: Vec<&ExportSpec> = self
            .exports
            .iter()
            .map(|name| {
                spec.exports
                    .iter()
                    .find(|e| &e.name == name)
                    .ok_or_else(|| Error::Internal(format!("export '{name}' is not declared")))
            })
            .collect::<Result<_>>()?;
        let suppression = load_suppression_lists(
            &spec.suppression_lists,
            &spec.base_dir,
            &spec.identity.default_country_code,
        )?;
        let view = crate::published::customer_view_columns(engine).await?;
        if self.contacts && !view.opted_out_contact {
            return Err(Error::Input(
                "customer_view has no column has_opted_out_contact: a job that resolves identities must suppress by contact point (join int_customer_contact_suppression as sql/marts/customer_view.sql does; docs/privacy.md)".into(),
            ));
        }
        let listed = listed_customers(engine, &suppression).await?;
        let opted_out = opted_out_contacts(engine).await?;
        let (audience_layer, audience_table) = WRITES[0];
        engine.register_empty(audience_table, audience_schema())?;
        engine
            .register_history(audience_layer, audience_table, audience_table)
            .await?;
        let campaigns = measure_campaigns(engine, &spec.exports, as_of).await?;
        let mut outputs: Vec<(&ExportSpec, ExportOutput)> = Vec::new();
        for export in chosen {
            // A segment that needs a score no customer has this run sends nothing; its last
            // audience stays what the next diff is against.
            if let Some(segment) = spec.segments.iter().find(|s| s.id == export.segment)
                && let Some(why) = clientele_segments::unmet_needs(engine, segment).await?
            {
                tracing::warn!(export = %export.name, reason = %why, "export skipped");
                outputs.push((export, clientele_segments::skipped_export(export, &why)));
                continue;
            }
            let dir = format!("exports/{}/as_of={as_of}", export.name);
            let previous = if export.mode() == "full" {
                None
            } else {
                previous_audience(engine, &export.name, as_of).await?
            };
            let ecx = ExportContext {
                engine,
                warehouse: cx.warehouse,
                as_of,
                staged_dir: layout::staged(cx.run_id, &dir),
                published_dir: dir,
                locale: Locale {
                    country: export.country.clone().unwrap_or_else(|| "GB".into()),
                    calling_code: spec.identity.default_country_code.clone(),
                },
                suppression: &suppression,
                listed_customers: &listed,
                opted_out_contacts: &opted_out,
                view,
                previous,
            };
            outputs.push((export, export_segment(export, &ecx).await?));
        }
        let mut step = StepOutput::default();
        let mut audiences = Vec::new();
        for (_, out) in outputs {
            step.rows_in += out.report.eligible;
            step.rows_out += out.report.exported;
            for file in out.files {
                step.add_file(file);
            }
            audiences.push(out.audience);
            step.report.exports.push(out.report);
        }
        // The audiences are counted as exported rows above, not as table rows. Each export's
        // audience is written as it is, one after another, not first copied into one batch (at
        // ten million customers, a copy of 1.4 GB).
        let (layer, table) = WRITES[0];
        step.push_table(
            cx.stage_slices(layer, table, audience_schema(), audiences.len(), |i| {
                audiences
                    .get(i)
                    .cloned()
                    .ok_or_else(|| Error::Internal(format!("no audience {i}")))
            })
            .await?,
        );
        drop(audiences);
        let batches = [
            suppression_batch(&suppression)?,
            campaign_results_batch(&campaigns)?,
        ];
        for ((layer, table), batch) in WRITES[1..].iter().zip(&batches) {
            step.push_table(cx.stage(layer, table, batch).await?);
        }
        step.report.campaigns = campaigns;
        Ok(step)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
