//! Embeds the demo job and every SQL file, so that `clientele demo` works from any directory.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "sql") {
            out.push(path);
        }
    }
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir.join("../..");
    let sql_dir = root.join("sql");
    let job = root.join("jobs/demo.toml");
    println!("cargo:rerun-if-changed={}", sql_dir.display());
    println!("cargo:rerun-if-changed={}", job.display());
    let mut files = Vec::new();
    walk(&sql_dir, &mut files);
    files.sort();
    let mut code = String::from(
        "/// Every file under sql/, as (path relative to sql/, content).\npub static SQL_FILES: &[(&str, &str)] = &[\n",
    );
    for f in &files {
        let rel = f
            .strip_prefix(&sql_dir)
            .unwrap_or(f)
            .to_string_lossy()
            .replace('\\', "/");
        let _ = writeln!(
            code,
            "    ({rel:?}, include_str!({:?})),",
            f.display().to_string()
        );
    }
    code.push_str("];\n");
    let _ = writeln!(
        code,
        "/// jobs/demo.toml.\npub static DEMO_JOB: &str = include_str!({:?});",
        job.display().to_string()
    );
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("embedded.rs");
    if let Err(e) = std::fs::write(&out, code) {
        println!("cargo:warning=cannot write {}: {e}", out.display());
    }
}
