use std::collections::BTreeMap;

use super::*;

const MULTI: &str = "
       01  HEADER-REC.
           05  REC-TYPE         PIC X.
           05  RUN-DATE         PIC 9(8).
           05  FILLER           PIC X(11).
       01  CUSTOMER-REC.
           05  REC-TYPE-C       PIC X.
           05  CUST-ID          PIC 9(6).
           05  BALANCE          PIC S9(5)V99 COMP-3.
           05  PHONES OCCURS 2 TIMES.
               10  PHONE-NO     PIC X(4).
           05  ADDR.
               10  ADDR-TEXT    PIC X(2).
               10  ADDR-CODE REDEFINES ADDR-TEXT PIC 99.
";

#[test]
fn layout_offsets_occurs_and_filler() {
    let mut types = BTreeMap::new();
    types.insert("H".to_string(), "HEADER-REC".to_string());
    types.insert("C".to_string(), "CUSTOMER-REC".to_string());
    let plan = CopybookPlan::from_text(MULTI, None, None, Some("REC-TYPE"), Some(&types))
        .unwrap_or_else(|p| unreachable!("{p:?}"));
    let cols: Vec<(&str, usize, usize)> = plan
        .fields
        .iter()
        .map(|f| (f.column.as_str(), f.offset, f.length))
        .collect();
    assert_eq!(
        cols,
        [
            ("rec_type", 0, 1),
            ("run_date", 1, 8),
            ("rec_type_c", 0, 1),
            ("cust_id", 1, 6),
            ("balance", 7, 4),
            ("phone_no_1", 11, 4),
            ("phone_no_2", 15, 4),
            ("addr_text", 19, 2),
            ("addr_code", 19, 2),
        ]
    );
    assert_eq!(plan.record_length, 21);
    assert_eq!(plan.field_index("PHONE-NO(2)"), Some(6));
    // A header record reads the header's fields only; in the ADDR set the base item is read.
    let header = plan
        .selector
        .as_ref()
        .and_then(|(_, m)| m.get("H").copied());
    let customer = plan
        .selector
        .as_ref()
        .and_then(|(_, m)| m.get("C").copied());
    assert!(plan.is_active(1, header));
    assert!(!plan.is_active(3, header));
    assert!(plan.is_active(3, customer));
    assert!(plan.is_active(7, customer));
    assert!(!plan.is_active(8, customer));
    let defaults = plan.default_fields();
    assert_eq!(defaults[4].ty, "decimal(7,2)");
    assert_eq!(defaults[3].ty, "int64");
}

#[test]
fn selector_problems_are_reported() {
    let mut types = BTreeMap::new();
    types.insert("X".to_string(), "NO-SUCH-REC".to_string());
    let problems =
        CopybookPlan::from_text(MULTI, Some("cp500"), Some("vb"), Some("NOPE"), Some(&types))
            .err()
            .unwrap_or_default();
    assert_eq!(problems.len(), 3, "{problems:?}");
}
