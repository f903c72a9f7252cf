//! Customer models: RFM scoring by the Drilling Down method (recency, frequency and monetary
//! quintiles, the three-digit cell code such as `545` and its named segment), buy-till-you-die
//! models (BG/NBD for purchase counts and P(alive), MBG/NBD, Pareto/NBD, Gamma-Gamma for spend)
//! fitted by maximum likelihood, and churn and campaign-propensity classifiers evaluated on
//! held-back time, saved as artifacts that score again on their own.
//!
//! # Overview
//! - [`quintile_scores`] turns one measure into scores 1..=5 (5 best). Customers are ranked from worst
//!   to best and cut into fifths by rank; customers with equal values always get the same score (the
//!   score of the first of them), so the result never depends on input order or ids.
//! - [`score_rfm`] scores a batch with the columns `customer_id`, `recency_days`, `frequency` and
//!   `monetary_value`, and returns the `customer_rfm` table ([`rfm_schema`]).
//!
//! - [`summarise`] turns transactions into each customer's calibration summary (repeat purchases
//!   `x`, recency `t_x`, age `T`, mean repeat spend) the way the published CDNOW results do;
//!   [`BgNbd::fit`] and [`GammaGamma::fit`] fit the models and predict per customer.
//! - [`score_clv`] fits both on every customer's purchases up to an as-of date and writes P(alive),
//!   expected purchases and spend, discounted CLV and the simple CLV formula per customer.
//! - Churn and campaign propensity: `sql/queries/` builds snapshot rows (features as of a date,
//!   labels from the following window, [`ChurnWindows`], [`PropensityWindow`]) from the marts;
//!   [`FeatureTable`] reads them;
//!   [`train_and_select`] fits a [`Logistic`] regression and gradient-boosted trees on one window,
//!   evaluates both on a later one ([`evaluate`]: ROC and PR AUC, Brier, lift and gains by
//!   decile), keeps the better, refits it on the latest window and grows a readable CART
//!   [`profile`]; [`train_classifier`] adds the floor check and the [`Artifact`] that scores again on
//!   its own, and [`TrainedClassifier::scored`] takes the [`Scores`] of its rows, scored part by part
//!   with its [`Predictor`]; [`CustomerScores`] lines every model up per customer.
//!
//! # Example
//! ```
//! use clientele_models::quintile_scores;
//! // Higher is better: the top fifth gets 5.
//! assert_eq!(quintile_scores(&[10.0, 20.0, 30.0, 40.0, 50.0], true), vec![1, 2, 3, 4, 5]);
//! // Lower is better (recency). The two most recent tie: both get the score of the first of them
//! // (two fifths of the customers are not the top fifth), so nobody gets 5 here.
//! assert_eq!(quintile_scores(&[1.0, 1.0, 300.0, 20.0, 90.0], false), vec![4, 4, 1, 3, 2]);
//! ```

mod artifact;
mod btyd;
mod classifier;
mod clv;
mod evaluate;
mod features;
mod linalg;
mod logistic;
mod profile;
mod rfm;
mod scores;
mod special;
mod summary;
mod windows;

pub use artifact::{ARTIFACT_FORMAT, AS_OF_PLACEHOLDER, Artifact, ArtifactModel};
pub use btyd::{BgNbd, CustomerSummary, Fit, FitError, GammaGamma, MbgNbd, ParetoNbd};
pub use classifier::{
    Algorithm, MAX_TRAINING_ROWS, MAX_VALIDATION_ROWS, PREDICT_ROWS, Predictor, Selection,
    train_and_select,
};
pub use clv::{
    ClvOptions, ClvParams, MODEL_VERSION, clv_schema, clv_scores, metrics_schema, score_clv,
};
pub use evaluate::{Decile, Evaluation, average_precision, evaluate, roc_auc};
pub use features::{
    CodedColumn, ColumnMeaning, Encoding, FeatureColumn, FeatureTable, FeatureTableBuilder,
    TextColumn,
};
pub use logistic::Logistic;
pub use profile::{ProfileRule, profile};
pub use rfm::{Error, Result, RfmSegmentNames, quintile_scores, rfm_schema, score_rfm};
pub use scores::{
    CampaignHoldout, CampaignSplit, ClassifierData, ClassifierRun, CustomerScores, Scores,
    TrainedClassifier, customer_scores_schema, deciles_batch, deciles_schema, joined_text,
    metrics_with_classifiers, model_metrics_schema, model_metrics_table, profiles_batch,
    profiles_schema, split_campaign_sends, train_classifier,
};
pub use summary::{Histories, HistoriesBuilder, Transaction, summarise};
pub use windows::{ChurnWindows, PropensityWindow};
