//! Any bytes as RDW records of a copybook with zoned, packed and binary fields and two layouts; and
//! any text as a copybook. Never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

const BOOK: &str = "
       01  HDR.
           05  REC-TYPE   PIC X.
           05  RUN-DATE   PIC 9(8).
       01  DTL.
           05  REC-TYPE-D PIC X.
           05  ID         PIC 9(6).
           05  BAL        PIC S9(7)V99 COMP-3.
           05  N          PIC S9(4) COMP.
           05  AREA OCCURS 2 TIMES PIC S9(3) SIGN LEADING SEPARATE.
";

fuzz_target!(|data: &[u8]| {
    let mut types = std::collections::BTreeMap::new();
    types.insert("H".to_string(), "HDR".to_string());
    types.insert("D".to_string(), "DTL".to_string());
    for format in ["fixed", "rdw"] {
        let Ok(book) = clientele_ingest::copybook::CopybookPlan::from_text(
            BOOK, Some("cp037"), Some(format), Some("REC-TYPE"), Some(&types),
        ) else {
            unreachable!("the layout is valid")
        };
        for f in &book.fields {
            let _ = clientele_ingest::copybook::decode_field(f, data, book.code_page);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = clientele_ingest::copybook::CopybookPlan::from_text(text, None, None, None, None);
    }
});
