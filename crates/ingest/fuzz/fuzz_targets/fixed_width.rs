//! Any bytes through a fixed-width source (latin-1, typed fields): rows or quarantine, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let spec: clientele_ingest::SourceSpec = toml::from_str(
        r#"name = "f"
        format = "fixed_width"
        location = "x"
        encoding = "latin1"
        max_line_bytes = 4096
        fields = [ { name = "id", type = "int64", start = 1, width = 4 },
                   { name = "d", type = "date", format = "%Y%m%d", start = 5, width = 8, unknown = ["00000000"] },
                   { name = "amt", type = "decimal(9,2)", start = 13, width = 10 },
                   { name = "name", type = "string", start = 23, width = 12 } ]"#,
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    let plan = spec.plan(std::path::Path::new(".")).unwrap_or_else(|p| unreachable!("{p:?}"));
    let _ = clientele_ingest::read_bytes(&plan, data);
});
