//! The time windows the classifiers are trained, validated and refitted on. Everything is a
//! function of the as-of date: nothing reads the clock.
//!
//! For an as-of date T and a churn window H days:
//! - churn is trained on customers as of T − 2H labelled by (T − 2H, T − H], validated on
//!   customers as of T − H labelled by (T − H, T], refitted on the latter and applied as of T;
//! - propensity is trained on the campaign sends up to T − response window, each as of the day
//!   before it, validated on the latest campaigns (a share of them), refitted on all the sends
//!   and applied to every contactable customer as of T.

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};

use crate::{Error, Result};

fn days_before(d: NaiveDate, days: u32) -> Result<NaiveDate> {
    d.checked_sub_days(Days::new(u64::from(days)))
        .ok_or_else(|| Error::BadInput(format!("{days} days before {d} is out of range")))
}

/// The churn model's windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChurnWindows {
    /// Training snapshot date, T − 2H; labels from (T − 2H, T − H].
    pub train_cutoff: NaiveDate,
    /// Validation (and refit) snapshot date, T − H; labels from (T − H, T].
    pub validation_cutoff: NaiveDate,
    /// H: churn is no purchase in this many days.
    pub horizon_days: u32,
}

impl ChurnWindows {
    /// The windows for as-of `as_of` and a churn window of `horizon_days`.
    pub fn new(as_of: NaiveDate, horizon_days: u32) -> Result<Self> {
        let validation_cutoff = days_before(as_of, horizon_days)?;
        Ok(Self {
            train_cutoff: days_before(validation_cutoff, horizon_days)?,
            validation_cutoff,
            horizon_days,
        })
    }

    /// The windows as the model artifact records them.
    pub fn describe(&self) -> BTreeMap<String, String> {
        [
            ("train_cutoff", self.train_cutoff.to_string()),
            ("validation_cutoff", self.validation_cutoff.to_string()),
            ("refit_cutoff", self.validation_cutoff.to_string()),
            ("horizon_days", self.horizon_days.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// The propensity model's window: sends up to the last one whose responses are all in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropensityWindow {
    /// The latest send trained on: T − the response window.
    pub last_send: NaiveDate,
    /// Days after a send within which responses count.
    pub response_window_days: u32,
}

impl PropensityWindow {
    /// The window for as-of `as_of`.
    pub fn new(as_of: NaiveDate, response_window_days: u32) -> Result<Self> {
        Ok(Self {
            last_send: days_before(as_of, response_window_days)?,
            response_window_days,
        })
    }

    /// The window as the model artifact records it, with the campaigns held back to validate.
    pub fn describe(&self, validation_campaigns: &[&str]) -> BTreeMap<String, String> {
        [
            ("last_send", self.last_send.to_string()),
            ("validation_campaigns", validation_campaigns.join(",")),
            (
                "response_window_days",
                self.response_window_days.to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
    }

    #[test]
    fn churn_trains_two_windows_back_and_validates_one_back() -> Result<()> {
        let w = ChurnWindows::new(date(2025, 12, 31), 90)?;
        assert_eq!(w.validation_cutoff, date(2025, 10, 2));
        assert_eq!(w.train_cutoff, date(2025, 7, 4));
        assert_eq!(w.describe()["refit_cutoff"], "2025-10-02");
        let p = PropensityWindow::new(date(2025, 12, 31), 30)?;
        assert_eq!(p.last_send, date(2025, 12, 1));
        assert_eq!(p.describe(&["K7", "K8"])["validation_campaigns"], "K7,K8");
        assert!(ChurnWindows::new(NaiveDate::MIN, 1).is_err());
        Ok(())
    }
}
