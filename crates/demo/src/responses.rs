//! The demo's second act: customers respond to the campaigns the first run exported. Treated
//! customers buy within the response window more often than the held-out control group, so that
//! the next run measures a real lift.

use std::io::Write;
use std::path::Path;

use chrono::{Days, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::generate::Error;

/// One customer of one campaign, with the source records an order can be placed under.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipient {
    pub campaign_id: String,
    pub customer_id: String,
    /// `treatment` or `control`.
    pub group: String,
    /// The customer's web-shop account (`W0000001`), if any.
    pub web_customer: Option<String>,
    /// The customer's legacy CRM number (`00000001`), if any.
    pub crm_customer: Option<String>,
}

/// How the simulation went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseSummary {
    pub treated: u64,
    pub control: u64,
    pub treated_buyers: u64,
    pub control_buyers: u64,
    pub web_orders: u64,
    pub legacy_orders: u64,
}

/// Chance of a purchase in the window: the campaign adds to what the customer would have done.
const BASELINE: f64 = 0.08;
const TREATED: f64 = 0.20;

/// Writes the follow-up orders of `recipients` (sent on `sent`, answered within `days`) as
/// `sources/web/orders_followup.csv` and `sources/orders/order_log_followup.txt` under `dir`.
pub fn simulate_responses(
    dir: &Path,
    recipients: &[Recipient],
    sent: NaiveDate,
    days: u32,
    seed: u64,
) -> Result<ResponseSummary, Error> {
    let web_path = dir.join("sources/web/orders_followup.csv");
    let legacy_path = dir.join("sources/orders/order_log_followup.txt");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io {
            path: path.clone(),
            source,
        }
    };
    let mut web = std::io::BufWriter::new(std::fs::File::create(&web_path).map_err(io(&web_path))?);
    let mut legacy =
        std::io::BufWriter::new(std::fs::File::create(&legacy_path).map_err(io(&legacy_path))?);
    writeln!(
        web,
        "order_id,customer_id,ordered_at,items,total_amount,currency"
    )
    .map_err(io(&web_path))?;
    let mut summary = ResponseSummary::default();
    for (i, r) in recipients.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_f011_0000_0000);
        rng.set_stream(i as u64);
        let treated = r.group == "treatment";
        if treated {
            summary.treated += 1;
        } else {
            summary.control += 1;
        }
        let chance = if treated { TREATED } else { BASELINE };
        if !rng.random_bool(chance) {
            continue;
        }
        let day = sent + Days::new(rng.random_range(1..=u64::from(days.max(1))));
        let amount = 15.0 + 60.0 * rng.random::<f64>();
        if let Some(w) = &r.web_customer {
            summary.web_orders += 1;
            writeln!(
                web,
                "WF{:09},{w},{}T14:00:00+00:00,1,{amount:.2},GBP",
                summary.web_orders,
                day.format("%Y-%m-%d")
            )
            .map_err(io(&web_path))?;
        } else if let Some(c) = &r.crm_customer {
            summary.legacy_orders += 1;
            writeln!(legacy, "{c} {}   1 {amount:>9.2}", day.format("%Y%m%d"))
                .map_err(io(&legacy_path))?;
        } else {
            // Known only to the campaign tool or the service desk: no account to buy with.
            continue;
        }
        if treated {
            summary.treated_buyers += 1;
        } else {
            summary.control_buyers += 1;
        }
    }
    web.flush().map_err(io(&web_path))?;
    legacy.flush().map_err(io(&legacy_path))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn treated_customers_buy_more_often_and_the_files_are_in_the_source_layouts() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        std::fs::create_dir_all(dir.path().join("sources/web")).unwrap_or_default();
        std::fs::create_dir_all(dir.path().join("sources/orders")).unwrap_or_default();
        let recipients: Vec<Recipient> = (0..4000)
            .map(|i| Recipient {
                campaign_id: "winback-2025-12-31".into(),
                customer_id: format!("C{i}"),
                group: if i % 5 == 0 { "control" } else { "treatment" }.into(),
                web_customer: (i % 2 == 0).then(|| format!("W{i:07}")),
                crm_customer: Some(format!("{i:08}")),
            })
            .collect();
        let sent = NaiveDate::from_ymd_opt(2025, 12, 31).unwrap_or_default();
        let s = simulate_responses(dir.path(), &recipients, sent, 30, 42);
        let Ok(s) = s else { unreachable!("{s:?}") };
        let rate = |b: u64, n: u64| b as f64 / n as f64;
        assert!(rate(s.treated_buyers, s.treated) > rate(s.control_buyers, s.control) + 0.07);
        let web = std::fs::read_to_string(dir.path().join("sources/web/orders_followup.csv"))
            .unwrap_or_default();
        let line = web.lines().nth(1).unwrap_or_default();
        assert!(
            line.starts_with("WF000000001,W") && line.ends_with(",GBP"),
            "{line}"
        );
        assert_eq!(web.lines().count() as u64, s.web_orders + 1);
        let legacy =
            std::fs::read_to_string(dir.path().join("sources/orders/order_log_followup.txt"))
                .unwrap_or_default();
        assert_eq!(legacy.lines().count() as u64, s.legacy_orders);
        // Rerun: the same files.
        let again = simulate_responses(dir.path(), &recipients, sent, 30, 42);
        assert_eq!(again.ok(), Some(s));
    }
}
