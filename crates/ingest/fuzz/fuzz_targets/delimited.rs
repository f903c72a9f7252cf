//! Any bytes through a delimited source with a header: rows, quarantine or a file error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let spec: clientele_ingest::SourceSpec = toml::from_str(
        r#"name = "f"
        format = "csv"
        location = "x"
        max_line_bytes = 4096
        fields = [ { name = "id", type = "int64" }, { name = "when", type = "timestamp" },
                   { name = "ok", type = "bool" }, { name = "x", type = "float64" } ]"#,
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    let plan = spec.plan(std::path::Path::new(".")).unwrap_or_else(|p| unreachable!("{p:?}"));
    let mut input = b"id,when,ok,x\n".to_vec();
    input.extend_from_slice(data);
    let _ = clientele_ingest::read_bytes(&plan, &input);
});
