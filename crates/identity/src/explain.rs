//! The waterfall of one pair: the prior, then each comparison's level and how it moved the match
//! weight, then the total and the match probability.

use std::fmt::Write;

use crate::compare;
use crate::error::{Error, Result};
use crate::model::{Parameters, probability};
use crate::records::Records;
use crate::spec::Settings;

/// One step of the waterfall.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Step {
    pub column: String,
    pub value_a: Option<String>,
    pub value_b: Option<String>,
    pub level: String,
    /// Weight of the level, the term-frequency part included.
    pub weight: f64,
    pub term_frequency_adjustment: f64,
    pub running: f64,
    /// The comparison's group (its agreements count up to the group's cap).
    pub group: Option<String>,
    /// Exact agreement on a phone or email only one person holds: counted on its own, outside the
    /// comparison's group.
    pub personal: bool,
    /// The column this agreeing part of an address is a part of (`part_of`), when that column
    /// disagrees: the part weighs what it weighs among pairs whose whole differs.
    pub whole_differs: Option<String>,
}

/// The explanation of a pair.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Explanation {
    pub record_a: String,
    pub record_b: String,
    pub prior_weight: f64,
    pub steps: Vec<Step>,
    pub match_weight: f64,
    pub match_probability: f64,
    pub threshold: f64,
    /// Why clustering would never put the two into one customer, when it would not.
    pub conflict: Option<String>,
    /// The address (street with a house number, postcode, city) the two share: their customers are
    /// one household by it, whatever the match weight.
    pub shared_dwelling: Option<String>,
}

/// Explains the pair of records with ids `a` and `b`.
pub fn explain(
    records: &Records,
    settings: &Settings,
    params: &Parameters,
    a: &str,
    b: &str,
) -> Result<Explanation> {
    let find = |id: &str| {
        records
            .ids
            .iter()
            .position(|x| x == id)
            .ok_or_else(|| Error::UnknownRecord(id.to_string()))
    };
    let (ia, ib) = (find(a)?, find(b)?);
    let mut levels = Vec::new();
    compare::vector(&settings.comparisons, records, ia, ib, &mut levels);
    let (weights, tf) = params.weights(records, ia, &levels);
    let prior_weight = params.prior_weight();
    let mut running = prior_weight;
    let mut steps = Vec::new();
    for (c, p) in params.comparisons.iter().enumerate() {
        running += weights[c];
        let column = records.columns.get(c);
        let group = settings.comparisons.get(c).and_then(|s| s.group.clone());
        let personal = group.is_some()
            && levels.get(c) == Some(&1)
            && column.is_some_and(|x| {
                x.is_personal(x.codes.get(ia).copied().unwrap_or(crate::records::NULL))
            });
        steps.push(Step {
            column: p.column.clone(),
            value_a: column.and_then(|x| x.value(ia)).map(str::to_string),
            value_b: column.and_then(|x| x.value(ib)).map(str::to_string),
            level: p
                .labels
                .get(levels[c] as usize)
                .cloned()
                .unwrap_or_default(),
            weight: weights[c],
            term_frequency_adjustment: tf[c],
            running,
            group: if personal { None } else { group },
            personal,
            whole_differs: settings
                .comparisons
                .get(c)
                .and_then(|s| s.part_of)
                .filter(|_| p.weight(levels[c]) > 0.0 && params.whole_differs(c, &levels))
                .and_then(|w| settings.comparisons.get(w))
                .map(|w| w.column.clone()),
        });
    }
    Ok(Explanation {
        record_a: a.to_string(),
        record_b: b.to_string(),
        prior_weight,
        steps,
        match_weight: running,
        match_probability: probability(running),
        threshold: settings.match_probability,
        conflict: crate::conflict_reason(settings, records, ia, ib)
            .filter(|_| running < crate::CONFLICT_OVERRIDE_WEIGHT)
            .map(|why| {
                format!(
                    "{why}: the two are never one customer, whatever links them (unless their own match weight reaches {})",
                    crate::CONFLICT_OVERRIDE_WEIGHT
                )
            }),
        shared_dwelling: crate::household::shared_dwelling(settings, records, ia, ib),
    })
}

/// A bar of `weight` in characters, a character per bit up to 20.
fn bar(weight: f64) -> String {
    let n = weight.abs().round().min(20.0) as usize;
    let c = if weight >= 0.0 { '+' } else { '-' };
    std::iter::repeat_n(c, n).collect()
}

/// The explanation as a text waterfall.
pub fn waterfall(e: &Explanation) -> String {
    let mut out = String::new();
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(null)".into());
    let _ = writeln!(out, "{}  vs  {}", e.record_a, e.record_b);
    let _ = writeln!(
        out,
        "{:<18} {:<26} {:>8} {:>9}  ",
        "", "level", "weight", "running"
    );
    let _ = writeln!(
        out,
        "{:<18} {:<26} {:>8.2} {:>9.2}  {}",
        "prior",
        "",
        e.prior_weight,
        e.prior_weight,
        bar(e.prior_weight)
    );
    for s in &e.steps {
        let mut tf = if s.term_frequency_adjustment == 0.0 {
            String::new()
        } else {
            format!(" (tf {:+.2})", s.term_frequency_adjustment)
        };
        if let Some(g) = &s.group {
            tf.push_str(&format!(" [{g}]"));
        }
        if s.personal {
            tf.push_str(" [one person's]");
        }
        if let Some(whole) = &s.whole_differs {
            tf.push_str(&format!(" [{whole} differs]"));
        }
        let _ = writeln!(
            out,
            "{:<18} {:<26} {:>+8.2} {:>9.2}  {}{tf}\n{:<18}   {} | {}",
            s.column,
            s.level,
            s.weight,
            s.running,
            bar(s.weight),
            "",
            show(&s.value_a),
            show(&s.value_b)
        );
    }
    let verdict = if e.match_probability >= e.threshold {
        "a match"
    } else {
        "not a match"
    };
    let _ = writeln!(
        out,
        "match weight {:.2}, match probability {:.6}: {verdict} at the threshold {}",
        e.match_weight, e.match_probability, e.threshold
    );
    if e.steps.iter().any(|s| s.group.is_some()) {
        let _ = writeln!(
            out,
            "[group]: the group's agreements count up to its cap together, and only its strongest disagreement"
        );
    }
    if e.steps.iter().any(|s| s.personal) {
        let _ = writeln!(
            out,
            "[one person's]: a phone or email no one with another first name holds is evidence about the person and counts on its own"
        );
    }
    if let Some(whole) = e.steps.iter().find_map(|s| s.whole_differs.as_ref()) {
        let _ = writeln!(
            out,
            "[{whole} differs]: a part of the address agreeing where the {whole} differs weighs what it weighs among one person's records at two {whole}s"
        );
    }
    if let Some(c) = &e.conflict {
        let _ = writeln!(out, "conflict: {c}");
    }
    if let Some(address) = &e.shared_dwelling {
        let _ = writeln!(
            out,
            "household: both live at {address}; customers at one address with a house number are one household"
        );
    }
    out
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::spec::IdentitySpec;

    #[test]
    fn two_people_of_one_household_are_explained_as_a_conflict() -> Result<()> {
        let settings = IdentitySpec::default().validate()?;
        let mut records = Records::new(&settings);
        // first, last, birth, street, postcode, city, phone, email
        let home = [
            Some("12 High Street"),
            Some("LS1 4AB"),
            Some("Leeds"),
            Some("0113 496 0000"),
        ];
        let mother = [Some("Ann"), Some("Lee"), Some("1961-03-04")];
        let daughter = [Some("Zoe"), Some("Lee"), Some("1990-07-08")];
        for (id, person) in [("crm:1", mother), ("web:2", daughter)] {
            let row: Vec<Option<&str>> = person
                .iter()
                .chain(home.iter())
                .copied()
                .chain([None])
                .collect();
            records.push(id, id.split(':').next().unwrap_or("s"), &row);
        }
        let r = crate::resolve(&records, &settings, &crate::Previous::default())?;
        let e = explain(&records, &settings, &r.parameters, "crm:1", "web:2")?;
        let conflict = e.conflict.clone().unwrap_or_default();
        assert!(
            conflict.starts_with("their first names differ"),
            "{conflict}"
        );
        let text = waterfall(&e);
        assert!(
            text.contains("conflict: their first names differ"),
            "{text}"
        );
        assert!(text.contains("[household]"), "{text}");
        assert!(
            text.contains("household: both live at 12 high st, LS14AB, leeds"),
            "{text}"
        );
        assert_ne!(r.customer_id(0), r.customer_id(1));
        Ok(())
    }

    #[test]
    fn a_postcode_shared_at_two_streets_is_explained_as_such() -> Result<()> {
        let settings = IdentitySpec::default().validate()?;
        let mut records = Records::new(&settings);
        // first, last, birth, street, postcode, city, phone, email
        for (id, street) in [("crm:1", "157 Willow Close"), ("web:2", "135 Victoria Way")] {
            let row = [
                Some("Dennis"),
                Some("Davis"),
                None,
                Some(street),
                Some("4997"),
                Some("Cairns"),
                None,
                None,
            ];
            records.push(id, "s", &row);
        }
        let r = crate::resolve(&records, &settings, &crate::Previous::default())?;
        let mut params = r.parameters.clone();
        let postcode = 4;
        let u = params.comparisons[postcode].u.clone();
        let own = explain(&records, &settings, &params, "crm:1", "web:2")?;
        assert!(own.steps[postcode].weight > 0.0);
        assert_eq!(
            own.steps[postcode].whole_differs, None,
            "no such anchors yet"
        );
        // Among one person's records at two streets the postcode agrees as often as at random.
        params.comparisons[postcode].m_where_whole_differs = Some((u, 500));
        let e = explain(&records, &settings, &params, "crm:1", "web:2")?;
        let step = &e.steps[postcode];
        assert_eq!(step.whole_differs.as_deref(), Some("street"));
        assert!(step.weight.abs() < 1e-9, "{step:?}");
        assert!(e.match_weight < own.match_weight);
        let text = waterfall(&e);
        assert!(text.contains("[street differs]"), "{text}");
        Ok(())
    }

    #[test]
    fn a_mobile_only_one_person_holds_is_explained_as_theirs() -> Result<()> {
        let settings = IdentitySpec::default().validate()?;
        let mut records = Records::new(&settings);
        // first, last, birth, street, postcode, city, phone, email
        let ann = [
            Some("Ann"),
            Some("Lee"),
            None,
            Some("1 High Street"),
            Some("LS1 4AB"),
        ];
        let moved = [
            Some("Ann"),
            Some("Lee"),
            None,
            Some("9 Low Road"),
            Some("M1 1AA"),
        ];
        for (id, person) in [("crm:1", ann), ("web:2", moved)] {
            let row: Vec<Option<&str>> = person
                .iter()
                .copied()
                .chain([None, Some("07700 900123"), None])
                .collect();
            records.push(id, id.split(':').next().unwrap_or("s"), &row);
        }
        records.mark_shared_values(&settings);
        let r = crate::resolve(&records, &settings, &crate::Previous::default())?;
        let e = explain(&records, &settings, &r.parameters, "crm:1", "web:2")?;
        let phone = e.steps.iter().find(|s| s.column == "phone");
        assert!(
            phone.is_some_and(|s| s.personal && s.group.is_none()),
            "{phone:?}"
        );
        let text = waterfall(&e);
        assert!(text.contains("[one person's]"), "{text}");
        assert!(!text.contains("household:"), "{text}");
        Ok(())
    }
}
