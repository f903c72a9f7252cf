//! Model artifacts: each fit of a run saved as JSON with everything needed to score again: the
//! model and its parameters, the features, the query that builds the scoring rows from the
//! warehouse, the training window, the validation metrics, the version and data checksums.
//!
//! `clientele score --artifact FILE` reads one back, runs its query as of a date on a warehouse's
//! published tables and applies the model: the same inputs give the same scores as the run did.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::classifier::Predictor;
use crate::clv::{ClvOptions, ClvParams};
use crate::rfm::{Error, Result};

/// The artifact layout version; readers refuse other versions.
pub const ARTIFACT_FORMAT: u32 = 1;

/// How the scoring date is written in [`Artifact::scoring_query`], to be filled in.
pub const AS_OF_PLACEHOLDER: &str = "{as_of}";

/// What an artifact holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ArtifactModel {
    /// A churn or propensity classifier.
    Classifier {
        /// The classifier.
        predictor: Predictor,
    },
    /// BG/NBD and Gamma-Gamma with the valuation options.
    Clv {
        /// Fitted parameters.
        params: ClvParams,
        /// Horizon in months.
        horizon_months: u32,
        /// Monthly discount rate.
        monthly_discount_rate: f64,
    },
}

/// One saved model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// [`ARTIFACT_FORMAT`].
    pub artifact_format: u32,
    /// `churn`, `propensity` or `clv`.
    pub model: String,
    /// The version string written beside every score the model made.
    pub version: String,
    /// The as-of date of the run that trained it.
    pub trained_as_of: String,
    /// The training and validation windows, by name (such as `train_cutoff`).
    pub training_window: BTreeMap<String, String>,
    /// The features the model reads (empty for CLV, which reads transactions).
    pub features: Vec<String>,
    /// The query returning the rows to score, with [`AS_OF_PLACEHOLDER`] for the date.
    pub scoring_query: String,
    /// The model.
    pub model_params: ArtifactModel,
    /// Validation metrics (classifiers) or fit statistics (CLV), by name.
    pub metrics: BTreeMap<String, f64>,
    /// SHA-256 of the training data, by table.
    pub data_checksums: BTreeMap<String, String>,
}

impl Artifact {
    /// The artifact as pretty JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Internal(e.to_string()))
    }

    /// Reads an artifact; `what` names it (a file) in errors.
    pub fn from_json(what: &str, text: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::BadInput(format!("{what}: not JSON: {e}")))?;
        match value
            .get("artifact_format")
            .and_then(serde_json::Value::as_u64)
        {
            Some(v) if v == u64::from(ARTIFACT_FORMAT) => {}
            Some(v) => {
                return Err(Error::BadInput(format!(
                    "{what}: artifact format {v} is not the {ARTIFACT_FORMAT} this version reads"
                )));
            }
            None => {
                return Err(Error::BadInput(format!(
                    "{what}: not a clientele model artifact (no artifact_format)"
                )));
            }
        }
        serde_json::from_value(value)
            .map_err(|e| Error::BadInput(format!("{what}: not a valid model artifact: {e}")))
    }

    /// The scoring query as of `as_of`.
    pub fn scoring_query(&self, as_of: NaiveDate) -> String {
        self.scoring_query
            .replace(AS_OF_PLACEHOLDER, &as_of.format("%Y-%m-%d").to_string())
    }

    /// The CLV options of a CLV artifact.
    pub fn clv_options(&self) -> Option<(ClvParams, ClvOptions)> {
        match &self.model_params {
            ArtifactModel::Clv {
                params,
                horizon_months,
                monthly_discount_rate,
            } => Some((
                *params,
                ClvOptions {
                    horizon_months: *horizon_months,
                    monthly_discount_rate: *monthly_discount_rate,
                },
            )),
            ArtifactModel::Classifier { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btyd::{BgNbd, GammaGamma};

    fn clv() -> Artifact {
        Artifact {
            artifact_format: ARTIFACT_FORMAT,
            model: "clv".into(),
            version: "v".into(),
            trained_as_of: "2025-12-31".into(),
            training_window: BTreeMap::new(),
            features: Vec::new(),
            scoring_query: "select * from t where d <= cast('{as_of}' as date)".into(),
            model_params: ArtifactModel::Clv {
                params: ClvParams {
                    counts: BgNbd {
                        r: 0.24,
                        alpha: 4.4,
                        a: 0.79,
                        b: 2.4,
                    },
                    spend: GammaGamma {
                        p: 6.25,
                        q: 3.74,
                        gamma: 15.44,
                    },
                },
                horizon_months: 12,
                monthly_discount_rate: 0.01,
            },
            metrics: BTreeMap::new(),
            data_checksums: BTreeMap::new(),
        }
    }

    #[test]
    fn artifacts_round_trip_and_fill_in_the_date() -> Result<()> {
        let a = clv();
        let back = Artifact::from_json("a.json", &a.to_json()?)?;
        assert_eq!(back, a);
        let Some(d) = NaiveDate::from_ymd_opt(2026, 1, 31) else {
            unreachable!()
        };
        assert!(a.scoring_query(d).ends_with("cast('2026-01-31' as date)"));
        Ok(())
    }

    #[test]
    fn other_formats_and_other_json_are_refused_by_name() {
        let e = Artifact::from_json("m.json", r#"{"artifact_format": 7}"#);
        assert!(e.is_err_and(|e| e.to_string().contains("m.json: artifact format 7")));
        let e = Artifact::from_json("m.json", r#"{"hello": 1}"#);
        assert!(e.is_err_and(|e| e.to_string().contains("not a clientele model artifact")));
    }
}
