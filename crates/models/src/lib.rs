//! Customer models: RFM scoring by the Drilling Down method (recency, frequency and monetary
//! quintiles and the three-digit cell code such as `545`), and buy-till-you-die models (BG/NBD for
//! purchase counts and P(alive), MBG/NBD, Gamma-Gamma for spend) fitted by maximum likelihood.
//!
//! # Overview
//! - [`quintile_scores`] turns one measure into scores 1..=5 (5 best). Customers are ranked from worst
//!   to best and cut into fifths by rank; customers with equal values always get the same score (the
//!   score of the first of them), so the result never depends on input order or ids.
//! - [`score_rfm`] scores a batch with the columns `customer_id`, `recency_days`, `frequency` and
//!   `monetary`, and returns the `customer_rfm` table ([`rfm_schema`]).
//!
//! - [`summarise`] turns transactions into each customer's calibration summary (repeat purchases
//!   `x`, recency `t_x`, age `T`, mean repeat spend) the way the published CDNOW results do;
//!   [`BgNbd::fit`] and [`GammaGamma::fit`] fit the models and predict per customer.
//! - [`score_clv`] fits both on every customer's purchases up to an as-of date and writes P(alive),
//!   expected purchases and spend, discounted CLV and the simple CLV formula per customer.
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

mod btyd;
mod clv;
mod rfm;
mod special;
mod summary;

pub use btyd::{BgNbd, CustomerSummary, Fit, FitError, GammaGamma, MbgNbd, ParetoNbd};
pub use clv::{ClvOptions, MODEL_VERSION, clv_schema, metrics_schema, score_clv};
pub use rfm::{Error, Result, quintile_scores, rfm_schema, score_rfm};
pub use summary::{Transaction, summarise};
